"""Signed hub receipts: issued for every acceptance and every confirmed delivery.

A receipt attests one committed trace event (``accepted``, or ``confirmed`` by a
recipient): it is built from the document's recorded facts and that event's chained hash,
signed with the hub's key outside any transaction, and stored once (the event's ``seq`` is
unique among receipts, so two nodes issuing the same receipt at once keep one).
SendDocument and ConfirmReceived issue theirs right after their commit; should that fail
(a crash, a database hiccup), :meth:`ReceiptIssuer.receipts_for` issues whatever is
missing when someone asks, so every attested event ends up with its receipt.

Who sees what: the sender sees every receipt of its document; a recipient sees the
acceptance receipt and the delivery receipt of its own confirmation; operators see all.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy.exc import IntegrityError

from esb.clock import Clock, utc_now
from esb.domain.access import Caller
from esb.domain.exchange import TraceKind
from esb.domain.receipts import HubReceipt, ReceiptKind
from esb.domain.trace_chain import timestamp
from esb.security.hub_receipts import sign_receipt
from esb.security.signing_key import SigningKey
from esb.storage import exchange_store, receipt_store
from esb.storage.database import Database
from esb.storage.tables import Document, HubReceiptRow, TraceEventRow

log = logging.getLogger(__name__)

_KIND_OF_EVENT = {
    TraceKind.ACCEPTED.value: ReceiptKind.ACCEPTED,
    TraceKind.CONFIRMED.value: ReceiptKind.DELIVERED,
}


@dataclass(frozen=True)
class IssuedReceipt:
    receipt_id: str
    kind: ReceiptKind
    recipient: str | None
    issued_at: datetime
    trace_seq: int
    sha256: str
    xml: bytes


class ReceiptIssuer:
    def __init__(
        self, database: Database, key: SigningKey, *, hub_organ_id: str, clock: Clock = utc_now
    ) -> None:
        self.database = database
        self.key = key
        self.hub_organ_id = hub_organ_id
        self.clock = clock
        self._certificate_recorded = False

    def issue(self, hub_id: str, seq: int) -> IssuedReceipt:
        """The receipt of event ``seq`` of document ``hub_id`` (issued now unless it exists)."""
        now = self.clock()
        with self.database.transaction() as session:
            existing = receipt_store.receipt_for_event(session, seq)
            if existing is not None:
                return _issued(existing)
            document = exchange_store.find_document(session, hub_id)
            event = receipt_store.event_at(session, document, seq) if document is not None else None
            if document is None or event is None or event.kind not in _KIND_OF_EVENT:
                raise ValueError(f"event {seq} of {hub_id} is not one the hub issues receipts for")
            recipients = tuple(d.recipient_code for d in document.deliveries)
            receipt = self._receipt(document, event, now, recipients)
            document_pk = document.id
        return self._store(receipt, document_pk, now)

    def issue_committed(
        self, document: Document, event: TraceEventRow, recipients: tuple[str, ...]
    ) -> IssuedReceipt:
        """The receipt of an event the caller has just committed, from the rows it still holds
        (no reading back: one transaction, the insert)."""
        now = self.clock()
        return self._store(self._receipt(document, event, now, recipients), document.id, now)

    def _store(self, receipt: HubReceipt, document_pk: int, now: datetime) -> IssuedReceipt:
        xml = sign_receipt(receipt, self.key)  # outside any transaction: no lock held while signing
        row = HubReceiptRow(
            receipt_id=receipt.receipt_id,
            document_id=document_pk,
            kind=receipt.kind.value,
            recipient_code=receipt.recipients[0] if receipt.kind is ReceiptKind.DELIVERED else None,
            trace_seq=receipt.trace_seq,
            issued_at=now,
            hub_certificate_sha256=self.key.sha256,
            sha256=hashlib.sha256(xml).hexdigest(),
            xml=xml,
        )
        self._record_certificate(now)
        try:
            with self.database.transaction() as session:
                session.add(row)
        except IntegrityError:  # another node issued it at the same moment: theirs stands
            with self.database.transaction() as session:
                existing = receipt_store.receipt_for_event(session, receipt.trace_seq)
                if existing is None:
                    raise
                return _issued(existing)
        return _issued(row)

    def _receipt(
        self, document: Document, event: TraceEventRow, now: datetime, all_recipients: tuple[str, ...]
    ) -> HubReceipt:
        """``all_recipients``: the document's, named by an acceptance receipt (a delivery
        receipt names the recipient that confirmed)."""
        kind = _KIND_OF_EVENT[event.kind]
        recipients = all_recipients if kind is ReceiptKind.ACCEPTED else (str(event.recipient_code),)
        return HubReceipt(
            receipt_id=str(uuid.uuid4()),
            kind=kind,
            hub_organ_id=self.hub_organ_id,
            hub_document_id=document.hub_id,
            document_id=document.document_id,
            message_type=document.message_type,
            sender=document.sender_code,
            recipients=recipients,
            accepted_sha256=document.sha256,
            accepted_size=document.size,
            delivered_sha256=document.delivered_sha256,
            event_time=timestamp(event.at),
            issued_at=timestamp(now),
            signature_verdict=document.signature_verdict or "not-checked",
            signature_reason=document.signature_reason or "policy-off",
            signer_sha256=document.signer_sha256,
            trace_seq=event.seq,
            trace_hash=event.hash,
        )

    def receipts_for(self, caller: Caller | None, hub_id: str) -> list[IssuedReceipt]:
        """GetReceipt: the receipts of ``hub_id`` the caller may see (``None``: an operator)."""
        with self.database.transaction() as session:
            document = exchange_store.find_document(session, hub_id)
            visible = document is not None and (
                caller is None
                or caller.agency_code == document.sender_code
                or exchange_store.delivery_for(session, document, caller.agency_code) is not None
            )
            if document is None or not visible:
                raise exchange_store.DocumentNotFound(f"no document {hub_id} visible to you")
            missing = receipt_store.events_needing_receipts(session, document, tuple(_KIND_OF_EVENT))
        for seq in missing:
            self.issue(hub_id, seq)
        with self.database.transaction() as session:
            document = exchange_store.find_document(session, hub_id)
            if document is None:  # documents are never deleted; a restore from backup might
                raise exchange_store.DocumentNotFound(f"no document {hub_id} visible to you")
            rows = receipt_store.receipts_of(session, document)
            sender = document.sender_code
        return [
            _issued(row)
            for row in rows
            if caller is None
            or caller.agency_code == sender
            or row.kind == ReceiptKind.ACCEPTED.value
            or row.recipient_code == caller.agency_code
        ]

    def _record_certificate(self, now: datetime) -> None:
        """Remember the certificate receipts are signed with (once per process), for rotation."""
        if self._certificate_recorded:
            return
        pem = b"".join(cert.public_bytes(Encoding.PEM) for cert in (self.key.certificate, *self.key.chain))
        try:
            with self.database.transaction() as session:
                receipt_store.remember_hub_certificate(
                    session,
                    sha256=self.key.sha256,
                    pem=pem.decode("ascii"),
                    subject=self.key.subject,
                    not_after=self.key.certificate.not_valid_after_utc.astimezone(UTC),
                    now=now,
                )
        except IntegrityError:  # another worker or node recorded it at the same moment
            pass
        self._certificate_recorded = True


def _issued(row: HubReceiptRow) -> IssuedReceipt:
    return IssuedReceipt(
        receipt_id=row.receipt_id,
        kind=ReceiptKind(row.kind),
        recipient=row.recipient_code,
        issued_at=row.issued_at,
        trace_seq=row.trace_seq,
        sha256=row.sha256,
        xml=bytes(row.xml),
    )
