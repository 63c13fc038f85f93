"""The hub's receipts (biên nhận): signed statements of what the hub accepted and delivered.

A receipt is issued when a package is accepted (``accepted``: to the sender) and when a
recipient confirms it received the package (``delivered``: to the sender and that
recipient).  It names the package by its digests, the parties, the times, the signature
verdict of the package, and the trace event it attests by that event's chained hash, so a
receipt also anchors the whole tamper-evident trace up to that event.

Pure data; the XML form and its signature are :mod:`esb.security.hub_receipts`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ReceiptKind(StrEnum):
    ACCEPTED = "accepted"  # the hub accepted the package from the sender
    DELIVERED = "delivered"  # a recipient confirmed it received exactly the delivered bytes


@dataclass(frozen=True)
class HubReceipt:
    receipt_id: str
    kind: ReceiptKind
    hub_organ_id: str  # the hub's identifier code (OrganId of its TraceHeader)
    hub_document_id: str
    document_id: str | None  # the package's DocumentId (edoc) or None
    message_type: str  # edoc | status
    sender: str
    recipients: tuple[str, ...]  # every recipient (accepted) or the one that confirmed (delivered)
    accepted_sha256: str  # SHA-256 of the bytes the sender sent
    accepted_size: int
    delivered_sha256: str | None  # SHA-256 of the bytes recipients get (with the hub's TraceHeader)
    event_time: str  # ISO 8601 UTC: when the attested event happened
    issued_at: str  # ISO 8601 UTC: when the receipt was signed
    signature_verdict: str  # the package's signature verdict (esb.domain.signatures.Verdict)
    signature_reason: str
    signer_sha256: str | None  # fingerprint of the package signer's certificate, when signed
    trace_seq: int  # position of the attested event in the global trace chain
    trace_hash: str  # that event's chained hash (hex SHA-256)
