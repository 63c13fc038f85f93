"""``/soap/DocumentExchange``: send, receive, confirm and trace edXML packages.

The package travels as opaque bytes (``base64Binary``), never mapped element by element:
the hub reads it with its own streaming edXML reader.  Large packages go through an upload
space (``RequestSendSpace`` + HTTP PUT) and come back through a download URL.  See
docs/document-exchange.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from spyne import Array, Boolean, ByteArray, ComplexModel, Date, DateTime, Int, Long, Unicode, rpc

from esb.domain.exchange import MessageType, Outcome, PendingItem, Receipt, TraceEvent
from esb.errors import ClientError
from esb.soap.context import request_context, require_caller
from esb.soap.faults import TranslatingService, make_fault_class
from esb.soap.soap_types import auth_header, out, text

NAMESPACE = "urn:lgsp-esb:exchange:1"
SERVICE = "DocumentExchange"

EsbFault = make_fault_class(NAMESPACE)
AuthHeader = auth_header(NAMESPACE)


class SendPolicy(ComplexModel):  # type: ignore[misc]
    """What the sender asks of the hub for this package."""

    __namespace__ = NAMESPACE
    _type_info = [  # noqa: RUF012
        # Purge undelivered content sooner than the hub's retention (never later).
        ("retentionDays", Int(min_occurs=0, nillable=False, ge=1, le=3650)),
    ]


class RecipientStatus(ComplexModel):  # type: ignore[misc]
    __namespace__ = NAMESPACE
    _type_info = [("organId", out(Unicode)), ("state", out(Unicode))]  # noqa: RUF012


class SendReceipt(ComplexModel):  # type: ignore[misc]
    __namespace__ = NAMESPACE
    _type_info = [  # noqa: RUF012
        ("hubDocumentId", out(Unicode)),
        ("documentId", out(Unicode, 0)),
        ("sha256", out(Unicode)),
        ("size", out(Long)),
        ("acceptedAt", out(DateTime)),
        ("duplicate", out(Boolean)),
        ("recipient", RecipientStatus.customize(min_occurs=1, max_occurs="unbounded", nillable=False)),
        # The package's XML signature as the hub found it (docs/signatures.md).
        ("signatureVerdict", out(Unicode)),
        ("signatureReason", out(Unicode)),
    ]


class SendSpace(ComplexModel):  # type: ignore[misc]
    __namespace__ = NAMESPACE
    _type_info = [  # noqa: RUF012
        ("spaceId", out(Unicode)),
        ("uploadUrl", out(Unicode)),
        ("maxBytes", out(Long)),
        ("expiresAt", out(DateTime)),
    ]


class PendingDocument(ComplexModel):  # type: ignore[misc]
    __namespace__ = NAMESPACE
    _type_info = [  # noqa: RUF012
        ("hubDocumentId", out(Unicode)),
        ("documentId", out(Unicode, 0)),
        ("messageType", out(Unicode)),
        ("from", out(Unicode)),
        ("subject", out(Unicode)),
        ("priority", out(Int)),
        ("dueDate", out(Date, 0)),
        ("size", out(Long)),
        ("sha256", out(Unicode)),
        ("receivedAt", out(DateTime)),
        ("businessDocType", out(Int, 0)),
        ("relatesTo", out(Unicode, 0)),
        ("statusCode", out(Unicode, 0)),
        ("attempts", out(Int)),
        ("signatureVerdict", out(Unicode)),
        ("signatureReason", out(Unicode)),
    ]


class DocumentContent(ComplexModel):  # type: ignore[misc]
    __namespace__ = NAMESPACE
    _type_info = [  # noqa: RUF012
        ("hubDocumentId", out(Unicode)),
        ("sha256", out(Unicode)),
        ("size", out(Long)),
        ("edxmlPackage", ByteArray(min_occurs=0, nillable=False)),
        ("downloadUrl", out(Unicode, 0)),
    ]


class Confirmation(ComplexModel):  # type: ignore[misc]
    __namespace__ = NAMESPACE
    _type_info = [("hubDocumentId", out(Unicode)), ("state", out(Unicode))]  # noqa: RUF012


class TraceEntry(ComplexModel):  # type: ignore[misc]
    __namespace__ = NAMESPACE
    _type_info = [  # noqa: RUF012
        ("at", out(DateTime)),
        ("kind", out(Unicode)),
        ("actor", out(Unicode)),
        ("recipient", out(Unicode, 0)),
        ("sha256", out(Unicode, 0)),
        ("detail", out(Unicode, 0)),
        # The event's place and hash in the hub's tamper-evident chain (docs/audit.md).
        ("seq", out(Long)),
        ("hash", out(Unicode)),
    ]


class DocumentTrace(ComplexModel):  # type: ignore[misc]
    __namespace__ = NAMESPACE
    _type_info = [  # noqa: RUF012
        ("hubDocumentId", out(Unicode)),
        ("event", TraceEntry.customize(min_occurs=0, max_occurs="unbounded", nillable=False)),
    ]


class SignedReceipt(ComplexModel):  # type: ignore[misc]
    """A receipt signed by the hub (XML-DSig), as issued; verify it with ``esb verify``."""

    __namespace__ = NAMESPACE
    _type_info = [  # noqa: RUF012
        ("receiptId", out(Unicode)),
        ("kind", out(Unicode)),
        ("recipient", out(Unicode, 0)),
        ("issuedAt", out(DateTime)),
        ("traceSeq", out(Long)),
        ("sha256", out(Unicode)),
        ("receiptXml", out(ByteArray)),
    ]


class ExchangeService(TranslatingService):
    fault_class = EsbFault

    @rpc(
        ByteArray(min_occurs=0, nillable=False),
        text(0, 64),
        SendPolicy.customize(min_occurs=0, nillable=False),
        _in_header=(AuthHeader,),
        _returns=SendReceipt.customize(min_occurs=1, nillable=False),
        _throws=[EsbFault],
    )
    def SendDocument(
        ctx: Any, edxmlPackage: Any, spaceId: str | None, policy: SendPolicy | None
    ) -> SendReceipt:
        """Send an edoc package (inline base64, or the spaceId of an upload); returns once it is stored."""
        caller = require_caller(ctx, SERVICE)
        exchange = request_context(ctx).services.exchange
        receipt = exchange.send_document(
            caller, package=_bytes(edxmlPackage), space_id=spaceId or None, retention_days=_retention(policy)
        )
        return _receipt(receipt)

    @rpc(
        ByteArray(min_occurs=0, nillable=False),
        text(0, 64),
        _in_header=(AuthHeader,),
        _returns=SendReceipt.customize(min_occurs=1, nillable=False),
        _throws=[EsbFault],
    )
    def SendStatus(ctx: Any, edxmlPackage: Any, spaceId: str | None) -> SendReceipt:
        """Send a status package (gói tin trạng thái); it goes to ResponseFor/OrganId."""
        caller = require_caller(ctx, SERVICE)
        exchange = request_context(ctx).services.exchange
        return _receipt(exchange.send_status(caller, package=_bytes(edxmlPackage), space_id=spaceId or None))

    @rpc(
        Unicode(min_occurs=1, max_occurs=1000, nillable=False, max_len=64),
        text(1, 2048),
        Int(min_occurs=1, nillable=False),
        text(1, 16),
        text(1, 32),
        _in_header=(AuthHeader,),
        _returns=SendSpace.customize(min_occurs=1, nillable=False),
        _throws=[EsbFault],
    )
    def RequestSendSpace(
        ctx: Any, recipient: list[str], subject: str, priority: int, dataType: str, protocol: str
    ) -> SendSpace:
        """Allocate a space for a large package: recipients are checked before any byte is uploaded."""
        caller = require_caller(ctx, SERVICE)
        exchange = request_context(ctx).services.exchange
        space = exchange.request_space(caller, list(recipient or ()), subject, priority, dataType, protocol)
        return SendSpace(
            spaceId=space.space_id,
            uploadUrl=space.upload_url,
            maxBytes=space.max_bytes,
            expiresAt=space.expires_at,
        )

    @rpc(
        text(1, 16),
        _in_header=(AuthHeader,),
        _returns=Array(PendingDocument.customize(nillable=False), min_occurs=1, nillable=False),
        _throws=[EsbFault],
    )
    def GetPendingDocuments(ctx: Any, messageType: str) -> list[PendingDocument]:
        """What waits in the caller's mailbox, most urgent first (edoc or status)."""
        caller = require_caller(ctx, SERVICE)
        try:
            kind = MessageType(messageType.strip().lower())
        except ValueError:
            raise ClientError(
                f"messageType must be edoc or status, not {messageType!r}", code="Client.UnsupportedDataType"
            ) from None
        items = request_context(ctx).services.exchange.pending(caller, kind)
        return [_pending(item) for item in items]

    @rpc(
        text(1, 64),
        _in_header=(AuthHeader,),
        _returns=DocumentContent.customize(min_occurs=1, nillable=False),
        _throws=[EsbFault],
    )
    def GetDocument(ctx: Any, hubDocumentId: str) -> DocumentContent:
        """The package as delivered (a signed one as sent, others with the hub's TraceHeader), or its URL."""
        caller = require_caller(ctx, SERVICE)
        fetched = request_context(ctx).services.exchange.get_document(caller, hubDocumentId)
        return DocumentContent(
            hubDocumentId=fetched.hub_document_id,
            sha256=fetched.sha256,
            size=fetched.size,
            edxmlPackage=[fetched.package] if fetched.package is not None else None,
            downloadUrl=fetched.download_url,
        )

    @rpc(
        text(1, 64),
        text(0, 64),
        text(1, 8),
        text(0, 512),
        _in_header=(AuthHeader,),
        _returns=Confirmation.customize(min_occurs=1, nillable=False),
        _throws=[EsbFault],
    )
    def ConfirmReceived(
        ctx: Any, hubDocumentId: str, sha256: str | None, outcome: str, reason: str | None
    ) -> Confirmation:
        """Confirm (done) with the SHA-256 of the bytes received, or report a failure (fail)."""
        caller = require_caller(ctx, SERVICE)
        try:
            result = Outcome(outcome.strip().lower())
        except ValueError:
            raise ClientError(
                f"outcome must be done or fail, not {outcome!r}", code="Client.BadOutcome"
            ) from None
        state = request_context(ctx).services.exchange.confirm(caller, hubDocumentId, sha256, result, reason)
        return Confirmation(hubDocumentId=hubDocumentId, state=state.value)

    @rpc(
        text(0, 64),
        text(0, 512),
        _in_header=(AuthHeader,),
        _returns=DocumentTrace.customize(min_occurs=1, nillable=False),
        _throws=[EsbFault],
    )
    def GetTrace(ctx: Any, hubDocumentId: str | None, documentId: str | None) -> DocumentTrace:
        """The ordered events of a document; only its sender and recipients may read them."""
        caller = require_caller(ctx, SERVICE)
        hub_id, events = request_context(ctx).services.exchange.trace(
            caller, hub_id=hubDocumentId or None, document_id=documentId or None
        )
        return DocumentTrace(hubDocumentId=hub_id, event=[_event(event) for event in events])

    @rpc(
        text(1, 64),
        _in_header=(AuthHeader,),
        _returns=Array(SignedReceipt.customize(nillable=False), min_occurs=1, nillable=False),
        _throws=[EsbFault],
    )
    def GetReceipt(ctx: Any, hubDocumentId: str) -> list[SignedReceipt]:
        """The hub's signed receipts of a document: its acceptance, and each confirmed delivery."""
        caller = require_caller(ctx, SERVICE)
        receipts = request_context(ctx).services.exchange.get_receipts(caller, hubDocumentId)
        return [
            SignedReceipt(
                receiptId=r.receipt_id,
                kind=r.kind.value,
                recipient=r.recipient,
                issuedAt=r.issued_at,
                traceSeq=r.trace_seq,
                sha256=r.sha256,
                receiptXml=[r.xml],
            )
            for r in receipts
        ]


def _bytes(value: Any) -> bytes | None:
    """spyne hands base64Binary over as a sequence of byte strings."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    if isinstance(value, Iterable):
        return b"".join(bytes(part) for part in value)
    raise ClientError("edxmlPackage must be base64Binary", code="Client.BadRequest")


def _retention(policy: SendPolicy | None) -> int | None:
    return int(policy.retentionDays) if policy is not None and policy.retentionDays is not None else None


def _receipt(receipt: Receipt) -> SendReceipt:
    return SendReceipt(
        hubDocumentId=receipt.hub_document_id,
        documentId=receipt.document_id,
        sha256=receipt.sha256,
        size=receipt.size,
        acceptedAt=receipt.accepted_at,
        duplicate=receipt.duplicate,
        recipient=[RecipientStatus(organId=r.organ_id, state=r.state.value) for r in receipt.recipients],
        signatureVerdict=receipt.signature_verdict,
        signatureReason=receipt.signature_reason,
    )


def _pending(item: PendingItem) -> PendingDocument:
    due: date | None = item.due_date
    received: datetime = item.received_at
    values: dict[str, Any] = {
        "hubDocumentId": item.hub_document_id,
        "documentId": item.document_id,
        "messageType": item.message_type.value,
        "from": item.sender,
        "subject": item.subject,
        "priority": int(item.priority),
        "dueDate": due,
        "size": item.size,
        "sha256": item.sha256,
        "receivedAt": received,
        "businessDocType": int(item.business_doc_type) if item.business_doc_type is not None else None,
        "relatesTo": item.relates_to,
        "statusCode": item.status_code.value if item.status_code else None,
        "attempts": item.attempts,
        "signatureVerdict": item.signature_verdict,
        "signatureReason": item.signature_reason,
    }
    return PendingDocument(**values)


def _event(event: TraceEvent) -> TraceEntry:
    return TraceEntry(
        at=event.at,
        kind=event.kind.value,
        actor=event.actor,
        recipient=event.recipient,
        sha256=event.sha256,
        detail=event.detail,
        seq=event.seq,
        hash=event.hash,
    )
