"""The document exchange use cases: accept, route, list, fetch, confirm, trace, purge.

One package's path through the hub:

1. **accept** (SendDocument / SendStatus): the bytes (inline, or an upload space's file)
   are read by the lenient edXML reader (streaming, attachments decoded and checked, never
   held in memory) and checked against the caller (From = authenticated agency).  The bytes
   recipients will get, the accepted ones with the hub's TraceHeader spliced in
   (:mod:`esb.xml_processing.trace_splice`), go to the content store (``fsync``); the
   accepted bytes themselves are kept only as digest and size.
2. **route**, in the same single transaction: every recipient is resolved by the routing
   rules and the registry (:mod:`esb.pipeline.routing`).  A local recipient (registered,
   active) gets a ``pending`` delivery (its mailbox entry, with the digest of the bytes it
   will receive) and a notification; a recipient in another zone gets a ``queued``
   delivery for its bridge adapter, which the worker's bridge step hands over
   (:mod:`esb.pipeline.undeliverable`); an unknown recipient refuses an edoc
   (``Client.UnknownRecipient``), while a status to an unknown destination is accepted and
   at once reported undeliverable to its sender.  The document and the ``accepted`` and
   ``routed`` trace events are written with them.  A failure anywhere before the commit
   removes the stored bytes: nothing partial remains.
3. **fetch / confirm** per recipient: the stored bytes are re-checked against their digest
   on every read; ``done`` with the right digest ends a delivery.
4. **purge**: when every delivery is done (confirmed, or handed to its bridge) the content
   is deleted; metadata, digests and the trace stay.  Undelivered content, including that of
   deliveries reported undeliverable (kept so that an operator can re-drive them), is purged
   when the retention ends (``expired``).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import IO

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from esb.clock import Clock, utc_now
from esb.domain.access import AgencyState, Caller
from esb.domain.edxml_enums import BusinessDocType, Priority, StatusCode
from esb.domain.edxml_model import EdocPackage
from esb.domain.exchange import (
    DeliveryState,
    DocumentState,
    Envelope,
    MessageType,
    Outcome,
    PendingItem,
    Receipt,
    RecipientState,
    TraceEvent,
    TraceKind,
    UploadSpace,
    check_sender,
    envelope_of,
)
from esb.domain.routing import ADAPTER_LOCAL, Route, RouteKind
from esb.domain.signatures import SignatureReport, Verdict
from esb.errors import ClientError, ServerError
from esb.pipeline.receipts import IssuedReceipt, ReceiptIssuer
from esb.pipeline.routing import Router
from esb.pipeline.signature_policy import SignatureRules, enforce, may_be_signed, trace_detail
from esb.storage import delivery_store, registry
from esb.storage import exchange_store as store
from esb.storage.content_store import ContentCorrupted, ContentStore, new_key, read_all
from esb.storage.database import Database
from esb.storage.tables import Delivery, Document, TraceEventRow, UploadSpaceRow
from esb.xml_processing.edxml_reader import ReadResult, read_package
from esb.xml_processing.parsing import XmlLimits
from esb.xml_processing.trace_splice import SpliceResult, append_trace_header, append_trace_header_bytes

log = logging.getLogger(__name__)

SPOOL_CHUNK = 1 << 20
MAILBOX_LIMIT = 500
SUPPORTED_PROTOCOLS = frozenset({"edxml", "qcvn102", "qcvn_102_2016"})


@dataclass(frozen=True)
class ExchangePolicy:
    hub_organ_id: str
    public_url: str
    max_package_bytes: int = 1 << 30
    inline_package_bytes: int = 4 << 20
    space_ttl: timedelta = timedelta(hours=1)
    retention: timedelta = timedelta(days=30)
    node_name: str = "node"


@dataclass(frozen=True)
class FetchedDocument:
    """GetDocument's answer: the bytes (small packages) or where to stream them from (large ones)."""

    hub_document_id: str
    sha256: str
    size: int
    package: bytes | None
    download_url: str | None


@dataclass(frozen=True)
class Upload:
    space_id: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Download:
    """A verified stream of a delivered package (for the HTTP download URL)."""

    hub_document_id: str
    size: int
    sha256: str
    chunks: Iterator[bytes]


class Exchange:
    def __init__(
        self,
        database: Database,
        content: ContentStore,
        work_dir: Path,
        policy: ExchangePolicy,
        clock: Clock = utc_now,
        *,
        signatures: SignatureRules | None = None,
        receipts: ReceiptIssuer | None = None,
        router: Router | None = None,
    ) -> None:
        self.database = database
        self.content = content
        self.work_dir = work_dir
        self.spaces_dir = work_dir / "spaces"
        self.policy = policy
        self.clock = clock
        self.signatures = signatures or SignatureRules(max_bytes=policy.max_package_bytes)
        self.receipts = receipts
        self.router = router or Router(database)
        self.spaces_dir.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ sending

    def send_document(
        self,
        caller: Caller,
        *,
        package: bytes | None = None,
        space_id: str | None = None,
        retention_days: int | None = None,
    ) -> Receipt:
        """SendDocument: an edoc package, inline or from an upload space."""
        return self._send(caller, MessageType.EDOC, package, space_id, retention_days)

    def send_status(
        self, caller: Caller, *, package: bytes | None = None, space_id: str | None = None
    ) -> Receipt:
        """SendStatus: a status package, routed to ResponseFor/OrganId."""
        return self._send(caller, MessageType.STATUS, package, space_id, None)

    def _send(
        self,
        caller: Caller,
        expected: MessageType,
        package: bytes | None,
        space_id: str | None,
        retention_days: int | None,
    ) -> Receipt:
        if (package is None) == (space_id is None):
            raise ClientError("give either the package or the spaceId of an upload", code="Client.BadRequest")
        retention = self.policy.retention
        if retention_days is not None:
            retention = min(retention, timedelta(days=retention_days))
        source: bytes | Path
        space: UploadSpaceRow | None = None
        if package is not None:
            if len(package) > self.policy.max_package_bytes:
                raise _too_large(len(package), self.policy.max_package_bytes)
            source = package
        else:
            space = self._open_space(caller, str(space_id), for_upload=False)
            if space.data_type != expected.value:
                raise ClientError(
                    f"space {space_id} was requested for a {space.data_type} package",
                    code="Client.WrongPackageKind",
                )
            source = self._space_path(space.space_id)
        receipt = self._accept(caller, expected, source, space, retention)
        if space is not None:  # used: its bytes are in the content store now
            self._space_path(space.space_id).unlink(missing_ok=True)
        return receipt

    def _accept(
        self,
        caller: Caller,
        expected: MessageType,
        source: bytes | Path,
        space: UploadSpaceRow | None,
        retention: timedelta,
    ) -> Receipt:
        """Read, check, store the bytes recipients will get, record: all of it or nothing."""
        result = read_package(source, limits=XmlLimits(max_bytes=self.policy.max_package_bytes))
        envelope = envelope_of(result.package)
        if envelope.message_type is not expected:
            other = "SendStatus" if envelope.message_type is MessageType.STATUS else "SendDocument"
            raise ClientError(
                f"this is a {envelope.message_type.value} package: send it with {other}",
                code="Client.WrongPackageKind",
            )
        check_sender(envelope, caller.agency_code)
        if space is not None:
            _check_space_matches(space, envelope)
        now = self.clock()
        actor = _actor(caller)
        signed = isinstance(result.package, EdocPackage) and may_be_signed(
            source, in_header=result.package.signature is not None
        )
        signature = self._verify_signature(source, envelope, now) if signed else None
        key = new_key()
        # The bytes are stored before the transaction (a database content store writes in its
        # own), and removed again unless the transaction commits a document that names them.
        # A signature that verifies (valid, or sound but untrusted), or one not checked, must
        # reach the recipients intact; a broken or placeholder one gets the TraceHeader as usual.
        intact = signature is not None and (
            signature.verdict is Verdict.NOT_CHECKED or bool(signature.covered)
        )
        with self.content.writer(key) as out:
            delivered = self._write_delivered(source, envelope, result, out, now, signed=intact)
        keep = False
        try:
            try:
                receipt, recorded = self._record(
                    caller, envelope, result, delivered, key, space, retention, now, actor, source, signature
                )
            except IntegrityError:
                # The same new document sent twice at the same moment: the unique idempotency
                # key let one of them in; this one answers with its receipt.
                receipt, recorded = self._duplicate(envelope, result.sha256, space, now, actor), None
            keep = not receipt.duplicate
        finally:
            if not keep:
                with contextlib.suppress(Exception):
                    self.content.delete(key)
        if recorded is not None:
            self._issue_receipt(*recorded, envelope.recipients)
        return receipt

    def _verify_signature(
        self, source: bytes | Path, envelope: Envelope, now: datetime
    ) -> SignatureReport | None:
        """Verify a signed package before anything is stored (``require`` refuses here)."""
        parties = [envelope.sender, *envelope.recipients]
        with self.database.transaction() as session:
            rows = registry.agency_rows(session, parties)
            signers = registry.registered_signers(session, envelope.sender, now=now)
        policy = self.signatures.effective({code: row[1] for code, row in rows.items()}, parties)
        found = self.signatures.verify(
            source, signed=True, policy=policy, registered_signers=signers, at=now, sender=envelope.sender
        )
        if found.verdict is Verdict.UNSIGNED:  # the scan's false hit: decided in the transaction
            return None
        enforce(found, policy)
        # What the verdict was reached with, so that an auditor can reproduce it offline.
        return replace(found, extra={**found.extra, "registered_signers": signers})

    def _issue_receipt(
        self, document: Document, event: TraceEventRow, recipients: tuple[str, ...] = ()
    ) -> None:
        """The signed receipt for an event just committed; GetReceipt issues it later if this fails."""
        if self.receipts is None:
            return
        hub_id = document.hub_id
        try:
            self.receipts.issue_committed(document, event, recipients)
        except Exception:  # noqa: BLE001 - the event is committed; the receipt can be issued on demand
            log.warning("receipt for event %s of %s not issued; GetReceipt will issue it", event.seq, hub_id)

    def _write_delivered(
        self,
        source: bytes | Path,
        envelope: Envelope,
        result: ReadResult,
        out: IO[bytes],
        now: datetime,
        *,
        signed: bool,
    ) -> SpliceResult:
        """The bytes recipients get: the accepted ones plus the hub's TraceHeader (unsigned edoc).

        A signed package is delivered exactly as sent: a TraceHeader inside edXMLHeader would
        break the sender's signature, and recipients must be able to verify it.  The hub's
        hop is then recorded in its trace and its signed receipts instead.
        """
        if envelope.message_type is MessageType.EDOC and not signed:
            if isinstance(source, bytes):
                data, spliced = append_trace_header_bytes(source, self.policy.hub_organ_id, now)
                out.write(data)
                return spliced
            return append_trace_header(source, out, self.policy.hub_organ_id, now)
        if isinstance(source, bytes):
            out.write(source)
        else:
            with source.open("rb") as handle:
                shutil.copyfileobj(handle, out, SPOOL_CHUNK)
        reason = (
            "a signed package is delivered as sent (a TraceHeader would break its signature)"
            if signed
            else "a status package is delivered as sent"
        )
        return SpliceResult(result.sha256, result.size, appended=False, reason=reason)

    def _duplicate(
        self,
        envelope: Envelope,
        sha256: str,
        space: UploadSpaceRow | None,
        now: datetime,
        actor: str,
    ) -> Receipt:
        with self.database.transaction() as session:
            first = store.find_by_idempotency_key(session, str(envelope.idempotency_key))
            if first is None:
                raise ClientError("the document could not be recorded; send it again", code="Client.Conflict")
            _check_same_recipients(first, envelope)
            return self._answer_duplicate(session, first, sha256, space, now, actor)

    def _answer_duplicate(
        self,
        session: Session,
        first: Document,
        sha256: str,
        space: UploadSpaceRow | None,
        now: datetime,
        actor: str,
    ) -> Receipt:
        store.add_event(
            session,
            first,
            TraceKind.DUPLICATE,
            at=now,
            actor=actor,
            sha256=sha256,
            detail="the same DocumentId was sent again; the first receipt was returned",
        )
        if space is not None:
            self._use_space(session, space, first.hub_id)
        return _receipt(first, duplicate=True)

    def _record(
        self,
        caller: Caller,
        envelope: Envelope,
        result: ReadResult,
        delivered: SpliceResult,
        key: str,
        space: UploadSpaceRow | None,
        retention: timedelta,
        now: datetime,
        actor: str,
        source: bytes | Path,
        signature: SignatureReport | None,
    ) -> tuple[Receipt, tuple[Document, TraceEventRow]]:
        """One transaction: the document, a delivery per recipient, the trace's first events."""
        with self.database.transaction() as session:
            parties = [envelope.sender, *envelope.recipients]
            rows = registry.agency_rows(session, parties)
            routes = self.router.resolve(session, envelope.recipients, registered=rows)
            _check_routes(routes, rows, envelope)
            policy = self.signatures.effective(
                {code: row[1] for code, row in rows.items()},
                parties,
                status=envelope.message_type is MessageType.STATUS,
            )
            if signature is None:  # unsigned: only the policy matters
                signature = self.signatures.verify(
                    source, signed=False, policy=policy, registered_signers=(), at=now, sender=envelope.sender
                )
            enforce(signature, policy)
            # A re-sent new document breaks the unique idempotency key at the flush below;
            # _accept then answers with the first receipt (no SELECT here on the hot path).
            relates_to, link_note = self._related(
                session, envelope, local=routes[envelope.recipients[0]].kind is RouteKind.LOCAL
            )
            document = Document(
                hub_id=str(uuid.uuid4()),
                message_type=envelope.message_type.value,
                sender_code=envelope.sender,
                sender_application_id=caller.application_id,
                document_id=envelope.document_id,
                idempotency_key=envelope.idempotency_key,
                business_doc_type=(
                    int(envelope.business_doc_type) if envelope.business_doc_type is not None else None
                ),
                status_code=envelope.status_code.value if envelope.status_code else None,
                relates_to_id=relates_to.id if relates_to is not None else None,
                subject=envelope.subject[:2048],
                priority=int(envelope.priority),
                due_date=envelope.due_date.isoformat() if envelope.due_date else None,
                size=result.size,
                sha256=result.sha256,
                delivered_size=delivered.size,
                delivered_sha256=delivered.sha256,
                delivery_note=_delivery_note(delivered, self.policy.hub_organ_id),
                content_key=key,
                state=DocumentState.ROUTED.value,
                accepted_at=now,
                routed_at=now,
                retain_until=now + retention,
                warnings=len(result.warnings),
                signature_verdict=signature.verdict.value,
                signature_reason=signature.reason,
                signer_sha256=signature.signer.sha256 if signature.signer else None,
                signature_report=signature.to_json(),
            )
            session.add(document)
            session.flush()
            # Routing is the delivery rows themselves, written with the document: a mailbox
            # entry (pending) for a local recipient, a queued hand-over for a bridge, and for a
            # status to an unknown destination a delivery that is undeliverable from the start.
            deliveries = [
                _delivery(document, recipient, routes[recipient], envelope, delivered.sha256, now)
                for recipient in envelope.recipients
            ]
            session.add_all(deliveries)
            detail = (
                f"{len(envelope.recipients)} recipient(s); {len(result.warnings)} warning(s); "
                f"signature {trace_detail(signature)}"
            )
            if link_note:
                detail = f"{detail}; {link_note}"
            accepted = store.add_event(
                session,
                document,
                TraceKind.ACCEPTED,
                at=now,
                actor=actor,
                sha256=result.sha256,
                detail=detail,
            )
            for delivery in deliveries:
                self._routed(session, document, delivery, routes[delivery.recipient_code], now)
            if relates_to is not None:
                self._record_relation(session, relates_to, document, envelope, now, actor)
            if space is not None:
                self._use_space(session, space, document.hub_id)
            receipt = Receipt(
                hub_document_id=document.hub_id,
                document_id=document.document_id,
                sha256=result.sha256,
                size=result.size,
                accepted_at=now,
                recipients=tuple(
                    RecipientState(d.recipient_code, DeliveryState(d.state)) for d in deliveries
                ),
                signature_verdict=signature.verdict.value,
                signature_reason=signature.reason,
            )
        return receipt, (document, accepted)

    def _related(
        self, session: Session, envelope: Envelope, *, local: bool = True
    ) -> tuple[Document | None, str | None]:
        """The document a revoke/update/replace or a status refers to.

        A status to a destination outside this hub's mailboxes (``local`` false: a bridge, or
        nowhere) may be about a document that never passed through this hub: it is accepted
        without the link.
        """
        target_id, target_sender = envelope.refers_to_document_id, envelope.refers_to_sender
        if envelope.message_type is MessageType.STATUS:
            if not target_id or not target_sender:
                raise ClientError(
                    "a status package needs ResponseFor/DocumentId naming the document it reports on",
                    code="Client.StatusUnknownDocument",
                )
            # Normally the status comes from a recipient of the document; 13 goes to one.
            party = (
                envelope.recipients[0]
                if envelope.status_code is StatusCode.RECALL_REQUESTED
                else envelope.sender
            )
            document = store.find_sent_document(session, target_sender, target_id, recipient=party)
            if document is None and not local:
                return None, f"document {target_id} reported on is not known to this hub"
            if document is None:
                raise ClientError(
                    f"no document {target_id} from {target_sender} to {party} is known to this hub",
                    code="Client.StatusUnknownDocument",
                )
            return document, None
        if target_id is None or envelope.business_doc_type in (None, BusinessDocType.NEW):
            return None, None
        document = store.find_sent_document(session, envelope.sender, target_id)
        if document is None:
            return None, f"target document {target_id} is not known to this hub"
        return document, None

    def _record_relation(
        self,
        session: Session,
        target: Document,
        document: Document,
        envelope: Envelope,
        now: datetime,
        actor: str,
    ) -> None:
        if envelope.status_code is not None:
            store.add_event(
                session,
                target,
                TraceKind.STATUS,
                at=now,
                actor=actor,
                recipient=envelope.recipients[0],
                sha256=document.sha256,
                detail=f"{envelope.status_code.value} {envelope.status_code.label_vi} ({document.hub_id})",
            )
        else:
            doc_type = envelope.business_doc_type or BusinessDocType.NEW
            store.add_event(
                session,
                target,
                TraceKind.LINKED,
                at=now,
                actor=actor,
                sha256=document.sha256,
                detail=f"{doc_type.name.lower()} by {document.hub_id}",
            )

    # ------------------------------------------------------------------ routing

    def route(self, hub_id: str | None = None, *, limit: int = 50) -> int:
        """Route documents still ``accepted``; returns how many were routed (the worker's step).

        Acceptance routes local recipients in its own transaction, so nothing is left here in
        normal operation; deliveries that wait for another zone (bridges to VXP and other
        provinces) go through this step.  Documents are claimed row by row, skipping those
        another worker holds, and routed in the same transaction: a document is routed once.
        """
        now = self.clock()
        with self.database.transaction() as session:
            documents = store.claim_documents(
                session, state=DocumentState.ACCEPTED, limit=limit, hub_id=hub_id
            )
            for document in documents:
                self._route_in(session, document, now)
            return len(documents)

    def _route_in(self, session: Session, document: Document, now: datetime) -> None:
        """Queued deliveries to local agencies enter their mailboxes, each with a ``routed`` event."""
        for recipient in store.route_deliveries(session, document, now):
            self._routed_event(session, document, recipient, now)
            delivery_store.notify_waiting(session, document, recipient, at=now)
        document.state = DocumentState.ROUTED.value
        document.routed_at = now

    def _routed_event(
        self, session: Session, document: Document, recipient: str, now: datetime, detail: str | None = None
    ) -> None:
        store.add_event(
            session,
            document,
            TraceKind.ROUTED,
            at=now,
            actor=f"hub:{self.policy.node_name}",
            recipient=recipient,
            sha256=document.delivered_sha256,
            detail=detail or document.delivery_note,
        )

    def _routed(
        self, session: Session, document: Document, delivery: Delivery, route: Route, now: datetime
    ) -> None:
        """What acceptance decided for one recipient: its trace event and whom it notifies."""
        recipient = delivery.recipient_code
        if delivery.state == DeliveryState.UNDELIVERABLE.value:
            delivery_store.mark_undeliverable(
                session,
                document,
                delivery,
                reason=str(delivery.dead_reason),
                at=now,
                actor=f"hub:{self.policy.node_name}",
            )
            return
        if delivery.state == DeliveryState.QUEUED.value:
            note = f"to {route.describe}; {document.delivery_note}" if document.delivery_note else None
            self._routed_event(session, document, recipient, now, note or f"to {route.describe}")
            return
        self._routed_event(session, document, recipient, now)
        delivery_store.notify_waiting(session, document, recipient, at=now)

    # ------------------------------------------------------------------ receiving

    def pending(
        self, caller: Caller, message_type: MessageType, *, limit: int = MAILBOX_LIMIT
    ) -> list[PendingItem]:
        with self.database.transaction() as session:
            rows = store.mailbox(session, caller.agency_code, message_type.value, limit=limit)
            relates = {doc.relates_to_id for doc, _ in rows if doc.relates_to_id is not None}
            hub_ids = _hub_ids(session, relates)
            return [
                PendingItem(
                    hub_document_id=doc.hub_id,
                    document_id=doc.document_id,
                    message_type=MessageType(doc.message_type),
                    sender=doc.sender_code,
                    subject=doc.subject,
                    priority=Priority(doc.priority),
                    due_date=_date(doc.due_date),
                    size=int(doc.delivered_size or doc.size),
                    sha256=str(delivery.delivered_sha256 or doc.delivered_sha256 or doc.sha256),
                    received_at=doc.accepted_at,
                    business_doc_type=(
                        BusinessDocType(doc.business_doc_type) if doc.business_doc_type is not None else None
                    ),
                    relates_to=hub_ids.get(doc.relates_to_id) if doc.relates_to_id is not None else None,
                    status_code=StatusCode(doc.status_code) if doc.status_code else None,
                    attempts=delivery.attempts,
                    signature_verdict=doc.signature_verdict or "not-checked",
                    signature_reason=doc.signature_reason or "policy-off",
                )
                for doc, delivery in rows
            ]

    def get_document(self, caller: Caller, hub_id: str) -> FetchedDocument:
        """GetDocument: the delivered bytes (verified), or a download URL for large packages."""
        key, sha256, size = self._fetchable(caller, hub_id)
        if size > self.policy.inline_package_bytes:
            url = f"{self.policy.public_url}/download/{hub_id}"
            return FetchedDocument(hub_id, sha256, size, None, url)
        try:
            data = read_all(self.content, key, sha256=sha256, size=size)
        except ContentCorrupted:
            self._record_corruption(hub_id, "delivered")
            raise
        self._record_fetch(caller, hub_id, sha256, None)
        return FetchedDocument(hub_id, sha256, size, data, None)

    def download(self, caller: Caller, hub_id: str, *, head: bool = False) -> Download:
        """The delivered bytes as a stream: checked once in full before the first byte is sent.

        ``head`` (HTTP HEAD) only describes them: nothing is read, no fetch is recorded.
        """
        key, sha256, size = self._fetchable(caller, hub_id)
        if head:
            return Download(hub_id, size, sha256, iter(()))
        try:
            self.content.verify(key, sha256=sha256, size=size)
        except ContentCorrupted:
            self._record_corruption(hub_id, "delivered")
            raise
        self._record_fetch(caller, hub_id, sha256, "streamed")
        return Download(hub_id, size, sha256, self.content.read(key, sha256=sha256, size=size))

    def _fetchable(self, caller: Caller, hub_id: str) -> tuple[str, str, int]:
        with self.database.transaction() as session:
            document, delivery = store.lock_delivery(session, hub_id, caller.agency_code)
            if delivery.state == DeliveryState.UNDELIVERABLE.value:
                raise _reported_undeliverable(hub_id, delivery)
            if delivery.state == DeliveryState.QUEUED.value:
                raise ClientError(f"document {hub_id} is not in your mailbox yet", code="Client.NotYetRouted")
            if document.content_key is None or delivery.state == DeliveryState.EXPIRED.value:
                raise ClientError(
                    f"the content of document {hub_id} was purged ({document.state})",
                    code="Client.ContentPurged",
                )
            return document.content_key, str(document.delivered_sha256), int(document.delivered_size or 0)

    def _record_fetch(self, caller: Caller, hub_id: str, sha256: str, detail: str | None) -> None:
        now = self.clock()
        with self.database.transaction() as session:
            document, delivery = store.lock_delivery(session, hub_id, caller.agency_code)
            delivery.attempts += 1
            delivery.fetched_at = now
            store.add_event(
                session,
                document,
                TraceKind.FETCHED,
                at=now,
                actor=_actor(caller),
                recipient=caller.agency_code,
                sha256=sha256,
                detail=detail,
            )

    def _record_corruption(self, hub_id: str, which: str) -> None:
        log.error("stored %s content of document %s does not match its digest", which, hub_id)
        with contextlib.suppress(Exception), self.database.transaction() as session:
            document = store.find_document(session, hub_id)
            if document is not None:
                store.add_event(
                    session,
                    document,
                    TraceKind.CONTENT_CORRUPTED,
                    at=self.clock(),
                    actor=f"hub:{self.policy.node_name}",
                    detail=f"the stored {which} bytes do not match the recorded SHA-256; not delivered",
                )

    def confirm(
        self, caller: Caller, hub_id: str, sha256: str | None, outcome: Outcome, reason: str | None = None
    ) -> DeliveryState:
        """ConfirmReceived: ``done`` with the digest of the bytes received ends this delivery.

        Confirming ``done`` again with the right digest answers ``done`` (a retried call); a
        wrong digest or ``fail`` on a delivery already done is refused, so the answer always
        says what the hub holds.
        """
        now = self.clock()
        actor = _actor(caller)
        claimed = (sha256 or "").strip().lower()
        if outcome is Outcome.DONE and not claimed:
            raise ClientError(
                "confirming done needs the SHA-256 of the bytes received", code="Client.BadRequest"
            )
        mismatch: str | None = None
        confirmed: TraceEventRow | None = None
        with self.database.transaction() as session:
            document, delivery = store.lock_delivery(session, hub_id, caller.agency_code)
            if delivery.state == DeliveryState.DONE.value:
                if outcome is Outcome.DONE and claimed == delivery.delivered_sha256:
                    return DeliveryState.DONE
                raise ClientError(
                    f"document {hub_id} was already confirmed done with the digest of the bytes delivered",
                    code="Client.NotPending",
                )
            if delivery.state == DeliveryState.UNDELIVERABLE.value:
                raise _reported_undeliverable(hub_id, delivery)
            if delivery.state != DeliveryState.PENDING.value:
                raise ClientError(
                    f"document {hub_id} cannot be confirmed: its delivery is {delivery.state}",
                    code="Client.NotPending",
                )
            if outcome is Outcome.FAIL:
                delivery.last_failure = (reason or "no reason given")[:512]
                store.add_event(
                    session,
                    document,
                    TraceKind.FETCH_FAILED,
                    at=now,
                    actor=actor,
                    recipient=caller.agency_code,
                    sha256=claimed or None,
                    detail=reason or "no reason given",
                )
                return DeliveryState.PENDING
            if claimed != delivery.delivered_sha256:
                mismatch = str(delivery.delivered_sha256)
                store.add_event(
                    session,
                    document,
                    TraceKind.DIGEST_MISMATCH,
                    at=now,
                    actor=actor,
                    recipient=caller.agency_code,
                    sha256=claimed or None,
                    detail="confirmation refused: the digest differs from the bytes delivered; still pending",
                )
            else:
                delivery.state = DeliveryState.DONE.value
                delivery.confirmed_at = now
                confirmed = store.add_event(
                    session,
                    document,
                    TraceKind.CONFIRMED,
                    at=now,
                    actor=actor,
                    recipient=caller.agency_code,
                    sha256=claimed,
                )
                session.flush()
                if store.open_deliveries(session, document) == 0:
                    document.state = DocumentState.COMPLETED.value
        if mismatch is not None:
            raise ClientError(
                f"the SHA-256 you computed ({claimed[:16]}…) is not that of the package delivered to you "
                f"({mismatch[:16]}…); fetch it again (the document stays pending)",
                code="Client.DigestMismatch",
            )
        if confirmed is not None:
            self._issue_receipt(document, confirmed)
        try:
            self.purge(hub_id)
        except Exception:  # noqa: BLE001 - the confirmation is recorded; the worker finishes the purge
            log.warning("purge of %s after its last confirmation failed; the worker will retry", hub_id)
        return DeliveryState.DONE

    # ------------------------------------------------------------------ purge and expiry

    def purge(self, hub_id: str | None = None, *, limit: int = 50) -> int:
        """Delete the content of completed or expired documents; returns how many were purged."""
        with self.database.transaction() as session:
            if hub_id is not None:
                document = store.find_document(session, hub_id)
                candidates = [document] if document is not None and document.purged_at is None else []
                candidates = [
                    doc
                    for doc in candidates
                    if doc.state in (DocumentState.COMPLETED.value, DocumentState.EXPIRED.value)
                ]
            else:
                candidates = store.awaiting_purge(session, limit)
            work = [(doc.hub_id, doc.content_key) for doc in candidates]
        purged = 0
        for doc_hub_id, key in work:
            if key is not None:
                self.content.delete(key)
            now = self.clock()
            with self.database.transaction() as session:
                document = _require(store.find_document(session, doc_hub_id, lock=True), doc_hub_id)
                if document.purged_at is not None:
                    continue
                document.content_key = None
                document.purged_at = now
                store.add_event(
                    session,
                    document,
                    TraceKind.PURGED,
                    at=now,
                    actor=f"hub:{self.policy.node_name}",
                    detail="content deleted; metadata, digests and trace kept",
                )
                purged += 1
        return purged

    def expire(self, *, limit: int = 50) -> int:
        """Documents past their retention: undelivered recipients are marked expired, content purged.

        Deliveries reported undeliverable stay so (with their reason): their content was kept
        only so that an operator could re-drive them, and goes now.
        """
        now = self.clock()
        with self.database.transaction() as session:
            documents = store.due_for_expiry(session, now, limit)
            for document in documents:
                undelivered = [
                    d.recipient_code for d in document.deliveries if d.state != DeliveryState.DONE.value
                ]
                for delivery in document.deliveries:
                    if delivery.state in (DeliveryState.PENDING.value, DeliveryState.QUEUED.value):
                        delivery.state = DeliveryState.EXPIRED.value
                        delivery.lease_owner = delivery.lease_until = delivery.next_attempt_at = None
                document.state = DocumentState.EXPIRED.value
                store.add_event(
                    session,
                    document,
                    TraceKind.EXPIRED,
                    at=now,
                    actor=f"hub:{self.policy.node_name}",
                    detail=f"retention ended before {', '.join(undelivered)} confirmed",
                )
            count = len(documents)
        if count:
            self.purge(limit=limit)
        return count

    def expire_spaces(self, *, limit: int = 100) -> int:
        now = self.clock()
        with self.database.transaction() as session:
            spaces = store.expired_spaces(session, now, limit)
            for space in spaces:
                space.state = "expired"
                self._space_path(space.space_id).unlink(missing_ok=True)
            return len(spaces)

    # ------------------------------------------------------------------ status of a document

    def receipt(self, hub_id: str, *, duplicate: bool = False) -> Receipt:
        with self.database.transaction() as session:
            return _receipt(_require(store.find_document(session, hub_id), hub_id), duplicate=duplicate)

    def trace(
        self, caller: Caller | None, *, hub_id: str | None = None, document_id: str | None = None
    ) -> tuple[str, list[TraceEvent]]:
        """GetTrace: the sender, the recipients (``caller``) and operators (``caller=None``) may read it."""
        with self.database.transaction() as session:
            document: Document | None
            if hub_id:
                document = store.find_document(session, hub_id)
            elif document_id and caller is not None:
                document = store.find_visible_by_document_id(session, document_id, caller.agency_code)
            elif document_id:
                document = (
                    session.query(Document)
                    .filter(Document.document_id == document_id)
                    .order_by(Document.id)
                    .first()
                )
            else:
                raise ClientError("give a hubDocumentId or a documentId", code="Client.BadRequest")
            wanted = hub_id or document_id
            if document is None:
                raise store.DocumentNotFound(f"no document {wanted} visible to you")
            if (
                caller is not None
                and caller.agency_code != document.sender_code
                and store.delivery_for(session, document, caller.agency_code) is None
            ):
                raise store.DocumentNotFound(f"no document {wanted} visible to you")
            return document.hub_id, store.events_of(session, document)

    def get_receipts(self, caller: Caller | None, hub_id: str) -> list[IssuedReceipt]:
        """GetReceipt: the hub's signed receipts of a document the caller sent or received."""
        if self.receipts is None:
            raise ServerError(
                "this hub has no receipt signing key configured", code="Server.ReceiptsUnavailable"
            )
        return self.receipts.receipts_for(caller, hub_id)

    # ------------------------------------------------------------------ upload spaces

    def request_space(
        self,
        caller: Caller,
        recipients: Sequence[str],
        subject: str,
        priority: int,
        data_type: str,
        protocol: str,
    ) -> UploadSpace:
        """RequestSendSpace: check the request (recipients first), then allocate a space to PUT into."""
        try:
            kind = MessageType(data_type.strip().lower())
        except ValueError:
            raise ClientError(
                f"dataType must be edoc or status, not {data_type!r}", code="Client.UnsupportedDataType"
            ) from None
        if protocol.strip().lower().replace(" ", "").replace(":", "_") not in SUPPORTED_PROTOCOLS:
            raise ClientError(
                f"protocol {protocol!r} is not supported: use edXML (QCVN 102:2016)",
                code="Client.UnsupportedProtocol",
            )
        try:
            level = Priority(priority)
        except ValueError:
            raise ClientError(
                f"priority must be 0-4, not {priority}", code="Client.InvalidPriority"
            ) from None
        codes = tuple(dict.fromkeys(code.strip() for code in recipients if code.strip()))
        if not codes:
            raise ClientError("name at least one recipient", code="Client.NoRecipient")
        now = self.clock()
        envelope = Envelope(
            kind, caller.agency_code, codes, None, subject, level, None, None, None, None, None
        )
        space_id = uuid.uuid4().hex
        expires_at = now + self.policy.space_ttl
        with self.database.transaction() as session:
            rows = registry.agency_rows(session, codes)
            _check_routes(self.router.resolve(session, codes, registered=rows), rows, envelope)
            session.add(
                UploadSpaceRow(
                    space_id=space_id,
                    agency_code=caller.agency_code,
                    application_id=caller.application_id,
                    recipients="\n".join(codes),
                    subject=subject[:2048],
                    priority=int(level),
                    data_type=kind.value,
                    protocol=protocol[:32],
                    max_bytes=self.policy.max_package_bytes,
                    state="open",
                    created_at=now,
                    expires_at=expires_at,
                )
            )
        return UploadSpace(
            space_id=space_id,
            upload_url=f"{self.policy.public_url}/upload/{space_id}",
            max_bytes=self.policy.max_package_bytes,
            expires_at=expires_at,
        )

    def upload(self, caller: Caller, space_id: str, body: IO[bytes], content_length: int | None) -> Upload:
        """The HTTP PUT into a space: streamed to disk, never held in memory; a re-PUT replaces it."""
        # The size promised by RequestSendSpace, unless this node's limit is lower now.
        limit = min(
            self._open_space(caller, space_id, for_upload=True).max_bytes, self.policy.max_package_bytes
        )
        if content_length is not None and content_length > limit:
            raise _too_large(content_length, limit)
        handle, name = tempfile.mkstemp(prefix=f"{space_id}-", suffix=".partial", dir=self.spaces_dir)
        partial = Path(name)
        digest = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(handle, "wb") as out:
                remaining = content_length
                while remaining is None or remaining > 0:
                    chunk = body.read(SPOOL_CHUNK if remaining is None else min(SPOOL_CHUNK, remaining))
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > limit:
                        raise _too_large(size, limit)
                    digest.update(chunk)
                    out.write(chunk)
                    if remaining is not None:
                        remaining -= len(chunk)
                out.flush()
                os.fsync(out.fileno())
            if content_length is not None and size != content_length:
                raise ClientError(
                    f"the upload ended after {size} of {content_length} bytes", code="Client.UploadIncomplete"
                )
            if size == 0:
                raise ClientError("the upload is empty", code="Client.UploadIncomplete")
            with self.database.transaction() as session:
                space = self._open_space(caller, space_id, for_upload=True, session=session)
                os.replace(partial, self._space_path(space_id))
                space.state = "uploaded"
                space.size = size
                space.sha256 = digest.hexdigest()
        finally:
            partial.unlink(missing_ok=True)
        return Upload(space_id, size, digest.hexdigest())

    def _open_space(
        self, caller: Caller, space_id: str, *, for_upload: bool, session: Session | None = None
    ) -> UploadSpaceRow:
        if session is None:
            with self.database.transaction() as own:
                return self._open_space(caller, space_id, for_upload=for_upload, session=own)
        space = store.find_space(session, space_id, lock=True)
        if (
            space is None
            or space.agency_code != caller.agency_code
            or space.application_id != caller.application_id
        ):
            raise ClientError(f"no upload space {space_id} for this application", code="Client.SpaceNotFound")
        if space.state == "used":
            raise ClientError(
                f"upload space {space_id} was already used for {space.hub_document_id}",
                code="Client.SpaceUsed",
            )
        if space.state == "expired" or space.expires_at <= self.clock():
            raise ClientError(
                f"upload space {space_id} expired at {space.expires_at:%Y-%m-%d %H:%M:%S} UTC",
                code="Client.SpaceExpired",
            )
        if not for_upload and space.state != "uploaded":
            raise ClientError(f"nothing was uploaded into space {space_id} yet", code="Client.SpaceEmpty")
        return space

    def _use_space(self, session: Session, space: UploadSpaceRow, hub_id: str) -> None:
        row = store.find_space(session, space.space_id, lock=True)
        if row is None or row.state != "uploaded":
            raise ClientError(f"upload space {space.space_id} was used meanwhile", code="Client.SpaceUsed")
        row.state = "used"
        row.hub_document_id = hub_id
        session.flush()

    def _space_path(self, space_id: str) -> Path:
        if not space_id.isalnum():
            raise ClientError(f"no upload space {space_id[:64]}", code="Client.SpaceNotFound")
        return self.spaces_dir / f"{space_id}.edxml"


def _check_routes(
    routes: dict[str, Route], rows: dict[str, tuple[str, str | None]], envelope: Envelope
) -> None:
    """Every edoc recipient must have somewhere to go; a local one must be active.

    A status to an unknown destination is not refused: it is reported back undeliverable.
    """
    for code in envelope.recipients:
        route = routes[code]
        if route.kind is RouteKind.UNKNOWN and envelope.message_type is MessageType.EDOC:
            why = f" (rule {route.rule} sends it to this hub's mailboxes)" if route.rule else ""
            raise ClientError(
                f"recipient {code} is not a registered agency{why}", code="Client.UnknownRecipient"
            )
        row = rows.get(code)
        if route.kind is RouteKind.LOCAL and row is not None and row[0] != AgencyState.ACTIVE.value:
            raise ClientError(f"recipient {code} is locked", code="Client.RecipientLocked")


def _delivery(
    document: Document, recipient: str, route: Route, envelope: Envelope, sha256: str, now: datetime
) -> Delivery:
    """The delivery row acceptance writes for one recipient, by its route."""
    delivery = Delivery(
        document_id=document.id,
        recipient_code=recipient,
        message_type=envelope.message_type.value,
        priority=int(envelope.priority),
        state=DeliveryState.PENDING.value,
        delivered_sha256=sha256,
        available_at=now,
        attempts=0,
        route=ADAPTER_LOCAL,
    )
    if route.kind is RouteKind.BRIDGE:
        delivery.state = DeliveryState.QUEUED.value
        delivery.route = str(route.adapter)
        delivery.next_attempt_at = now
    elif route.kind is RouteKind.UNKNOWN:
        delivery.state = DeliveryState.UNDELIVERABLE.value
        delivery.route = delivery_store.NO_ROUTE
        delivery.dead_at = now
        delivery.dead_reason = no_route_reason(recipient, route)
    return delivery


def no_route_reason(recipient: str, route: Route) -> str:
    """Why there is nowhere to deliver to ``recipient``."""
    if route.rule:
        return (
            f"{recipient} is not a registered agency of this hub (rule {route.rule} sends it to "
            "this hub's mailboxes)"
        )
    return f"{recipient} is not a registered agency of this hub, and no routing rule covers it"


def _check_space_matches(space: UploadSpaceRow, envelope: Envelope) -> None:
    announced = set(space.recipients.split("\n"))
    if set(envelope.recipients) != announced:
        raise ClientError(
            "the package's recipients differ from those given to RequestSendSpace "
            f"({', '.join(sorted(envelope.recipients))} vs {', '.join(sorted(announced))})",
            code="Client.SpaceMismatch",
        )


def _check_same_recipients(first: Document, envelope: Envelope) -> None:
    """A re-send is the same document only if it goes to the same agencies."""
    before = {delivery.recipient_code for delivery in first.deliveries}
    if set(envelope.recipients) != before:
        raise ClientError(
            f"DocumentId {envelope.document_id} was already sent ({first.hub_id}) to "
            f"{', '.join(sorted(before))}; to reach other agencies send an update (BussinessDocType 2) "
            "or a document with a new DocumentId",
            code="Client.DuplicateDocumentId",
        )


def _reported_undeliverable(hub_id: str, delivery: Delivery) -> ClientError:
    when = f"{delivery.dead_at:%Y-%m-%d %H:%M} UTC" if delivery.dead_at else "earlier"
    return ClientError(
        f"document {hub_id} was reported undeliverable to you ({when}: {delivery.dead_reason}); "
        "it is no longer pending: the sender was told, and an operator may re-drive it",
        code="Client.NotPending",
    )


def _too_large(size: int, limit: int) -> ClientError:
    return ClientError(
        f"the package has {size:,} bytes; the limit is {limit:,}", code="Client.PackageTooLarge"
    )


def _actor(caller: Caller) -> str:
    return f"{caller.agency_code}/{caller.application_name}"


def _require(document: Document | None, hub_id: str) -> Document:
    if document is None:
        raise store.DocumentNotFound(f"no document {hub_id}")
    return document


def _receipt(document: Document, *, duplicate: bool = False) -> Receipt:
    return Receipt(
        hub_document_id=document.hub_id,
        document_id=document.document_id,
        sha256=document.sha256,
        size=document.size,
        accepted_at=document.accepted_at,
        recipients=tuple(
            RecipientState(d.recipient_code, DeliveryState(d.state)) for d in document.deliveries
        ),
        duplicate=duplicate,
        signature_verdict=document.signature_verdict or "not-checked",
        signature_reason=document.signature_reason or "policy-off",
    )


def _hub_ids(session: Session, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = session.query(Document.id, Document.hub_id).filter(Document.id.in_(ids)).all()
    return {int(row[0]): str(row[1]) for row in rows}


def _date(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


def _delivery_note(spliced: SpliceResult, hub_organ_id: str) -> str:
    if spliced.appended:
        return f"TraceHeader {hub_organ_id} appended"
    return f"delivered as accepted: {spliced.reason or 'the TraceHeader could not be appended'}"
