"""Document exchange as a pure model: what a package asks for, who it goes to, in which order.

A *document* here is one accepted package (edoc or status) with its hub id
(``hubDocumentId``); a *delivery* is that document's journey to one recipient, with a state
of its own.  Nothing in this module touches storage, the network or the clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum

from esb.domain import edxml_model as m
from esb.domain.edxml_enums import BusinessDocType, Priority, StatusCode
from esb.errors import ClientError


class MessageType(StrEnum):
    """``messageType`` of GetPendingDocuments: documents (edoc) or status notices (status)."""

    EDOC = "edoc"
    STATUS = "status"


class DocumentState(StrEnum):
    ACCEPTED = "accepted"  # stored, not yet routed to the recipients' mailboxes
    ROUTED = "routed"  # every delivery has its route: a mailbox, a bridge queue (or is done)
    COMPLETED = "completed"  # every recipient confirmed done (or its bridge took it); content purged
    EXPIRED = "expired"  # retention ran out before every recipient confirmed; content purged


class DeliveryState(StrEnum):
    QUEUED = "queued"  # accepted, waiting for its bridge adapter (or, locally, its mailbox)
    PENDING = "pending"  # in the mailbox: listed by GetPendingDocuments
    DONE = "done"  # the recipient confirmed with the right digest, or its bridge took it
    EXPIRED = "expired"  # retention ran out
    UNDELIVERABLE = "undeliverable"  # reported to the sender as undeliverable; an operator may re-drive

    @property
    def is_final(self) -> bool:
        """Nothing more happens to the delivery on its own (an operator may re-drive it)."""
        return self in (DeliveryState.DONE, DeliveryState.EXPIRED, DeliveryState.UNDELIVERABLE)


class Outcome(StrEnum):
    """What a recipient reports in ConfirmReceived."""

    DONE = "done"
    FAIL = "fail"


class TraceKind(StrEnum):
    """Events of a document's trace (GetTrace), in the order they normally happen."""

    ACCEPTED = "accepted"
    ROUTED = "routed"
    NOTIFIED = "notified"
    FETCHED = "fetched"
    CONFIRMED = "confirmed"
    FETCH_FAILED = "fetch-failed"
    DIGEST_MISMATCH = "digest-mismatch"
    STATUS = "status"
    LINKED = "linked"
    DUPLICATE = "duplicate"
    CONTENT_CORRUPTED = "content-corrupted"
    PURGED = "purged"
    EXPIRED = "expired"
    HANDED_OVER = "handed-over"  # a bridge adapter took the delivery (another zone's hub)
    HANDOVER_FAILED = "handover-failed"  # a bridge hand-over attempt failed; retried by policy
    UNDELIVERABLE = "undeliverable"  # reported to the sender: no route, offline too long, retries exhausted
    REDRIVEN = "redriven"  # an operator put an undeliverable delivery back on its way


@dataclass(frozen=True)
class Envelope:
    """What routing needs from a package, whatever its kind."""

    message_type: MessageType
    sender: str
    recipients: tuple[str, ...]
    document_id: str | None
    subject: str
    priority: Priority
    due_date: date | None
    business_doc_type: BusinessDocType | None
    refers_to_document_id: str | None  # revoke/update/replace target, or the document a status is about
    refers_to_sender: str | None  # who sent the document referred to
    status_code: StatusCode | None

    @property
    def idempotency_key(self) -> str | None:
        """The same sender's new document with the same DocumentId is the same document."""
        new_document = self.message_type is MessageType.EDOC and self.business_doc_type is BusinessDocType.NEW
        return f"{self.sender}\n{self.document_id}" if new_document and self.document_id else None


def envelope_of(package: m.Package) -> Envelope:
    """The routing view of a package the reader accepted."""
    if isinstance(package, m.StatusPackage):
        return _status_envelope(package)
    header = package.header
    business = package.business
    doc_type = package.business_doc_type
    target: str | None = None
    if doc_type in (BusinessDocType.REVOKE, BusinessDocType.UPDATE) and business is not None:
        target = business.document_id or header.document_id
    elif doc_type is BusinessDocType.REPLACE and business is not None and business.replacements:
        target = business.replacements[0].document_id
    return Envelope(
        message_type=MessageType.EDOC,
        sender=header.from_.organ_id,
        recipients=tuple(dict.fromkeys(org.organ_id for org in header.to)),
        document_id=header.document_id,
        subject=header.subject,
        priority=header.priority,
        due_date=header.due_date,
        business_doc_type=doc_type,
        refers_to_document_id=target,
        refers_to_sender=header.from_.organ_id if target else None,
        status_code=None,
    )


def _status_envelope(package: m.StatusPackage) -> Envelope:
    """A status goes to ``ResponseFor/OrganId``.

    Normally the recipient of a document reports to its sender (ResponseFor names the sender);
    for 13 (recall request) the sender asks the recipient, and ResponseFor names the recipient.
    Either way the document concerned was sent by ``refers_to_sender``.
    """
    target = package.response_for.organ_id
    original_sender = package.from_.organ_id if package.status_code.sent_by_original_sender else target
    label = f"{package.status_code.value} {package.status_code.label_vi}"
    return Envelope(
        message_type=MessageType.STATUS,
        sender=package.from_.organ_id,
        recipients=(target,),
        document_id=None,
        subject=label,
        priority=Priority.THUONG,
        due_date=None,
        business_doc_type=None,
        refers_to_document_id=package.response_for.document_id,
        refers_to_sender=original_sender,
        status_code=package.status_code,
    )


def check_sender(envelope: Envelope, caller_agency: str) -> None:
    """A package's From must be the authenticated agency (a QLVB cannot send in another's name)."""
    if envelope.sender != caller_agency:
        raise ClientError(
            f"the package is from {envelope.sender} but the caller is authenticated as {caller_agency}",
            code="Client.SenderMismatch",
        )


def pending_order_key(
    priority: Priority, due_date: date | None, received_at: datetime
) -> tuple[int, date, datetime]:
    """Mailbox order: hỏa tốc hẹn giờ > hỏa tốc > thượng khẩn > khẩn > thường, then due date, then age."""
    return (-int(priority), due_date or date.max, received_at.astimezone(UTC))


@dataclass(frozen=True)
class RecipientState:
    organ_id: str
    state: DeliveryState


@dataclass(frozen=True)
class Receipt:
    """What the sender gets back for an accepted package."""

    hub_document_id: str
    document_id: str | None
    sha256: str
    size: int
    accepted_at: datetime
    recipients: tuple[RecipientState, ...]
    duplicate: bool = False
    signature_verdict: str = "unsigned"
    signature_reason: str = "no-signature"


@dataclass(frozen=True)
class PendingItem:
    hub_document_id: str
    document_id: str | None
    message_type: MessageType
    sender: str
    subject: str
    priority: Priority
    due_date: date | None
    size: int
    sha256: str
    received_at: datetime
    business_doc_type: BusinessDocType | None
    relates_to: str | None  # hub id of the document revoked/updated/replaced, or a status is about
    status_code: StatusCode | None
    attempts: int
    signature_verdict: str = "unsigned"  # esb.domain.signatures.Verdict, found at acceptance
    signature_reason: str = "no-signature"


@dataclass(frozen=True)
class TraceEvent:
    at: datetime
    kind: TraceKind
    actor: str
    recipient: str | None
    sha256: str | None
    detail: str | None
    seq: int = 0  # place in the hub's tamper-evident chain (esb.domain.trace_chain)
    hash: str = ""  # the event's chained hash


@dataclass(frozen=True)
class UploadSpace:
    space_id: str
    upload_url: str
    max_bytes: int
    expires_at: datetime
