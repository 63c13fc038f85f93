"""The hub's receipts (biên nhận) as signed XML, and their verification by anyone holding one.

A receipt must stand on its own: a sender shows it to an auditor years later, after the hub's
key has been rotated.  So it is a small XML document that carries its own signature and the
signing certificate chain (the same enveloped signature as packages,
:mod:`esb.security.xml_signature`), and it is verified at the moment it says it was issued
(``IssuedAt``): the certificate must have been valid and trusted *then*, and an old receipt
keeps verifying against the anchors it chains to, whatever the hub's current key is.  The
signature covers every field; editing any of them breaks the digest.

The format, namespace ``urn:lgsp-esb:receipt:1``, one element per
:class:`~esb.domain.receipts.HubReceipt` field in this fixed order (optional fields are
absent when they have no value)::

    <Receipt xmlns="urn:lgsp-esb:receipt:1">
      <ReceiptId/> <Kind/> (accepted | delivered) <HubOrganId/> <HubDocumentId/>
      <DocumentId/>? <MessageType/> <Sender/> <Recipients><Recipient/>*</Recipients>
      <AcceptedSha256/> <AcceptedSize/> <DeliveredSha256/>? <EventTime/> <IssuedAt/>
      <SignatureVerdict/> <SignatureReason/> <SignerSha256/>? <TraceSeq/> <TraceHash/>
      <Signature xmlns="http://www.w3.org/2000/09/xmldsig#">…</Signature>   (last child)
    </Receipt>
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lxml import etree

from esb.domain.receipts import HubReceipt, ReceiptKind
from esb.domain.signatures import SignatureReport, report
from esb.errors import ClientError, XmlInputError
from esb.security.signing_key import SigningKey
from esb.security.trust_store import TrustStore
from esb.security.xml_signature import iso_utc, sign_enveloped, verify_enveloped
from esb.xml_processing.namespaces import DS
from esb.xml_processing.parsing import XmlLimits, parse_untrusted

RECEIPT_NS = "urn:lgsp-esb:receipt:1"
RECEIPT_MALFORMED = "Client.ReceiptMalformed"
COVERED = "the whole receipt (every field), minus this Signature"

_LIMITS = XmlLimits(max_bytes=16 * 1024 * 1024)
_SIGNATURE = f"{{{DS}}}Signature"


@dataclass(frozen=True)
class ReceiptCheck:
    """A receipt as read (None when its fields cannot be read) and what its signature proves.

    Trust the fields only when ``report.verdict`` is ``valid``.
    """

    receipt: HubReceipt | None
    report: SignatureReport


@dataclass(frozen=True)
class _Field:
    element: str
    attribute: str
    optional: bool
    write: Callable[[Any], str]
    read: Callable[[str], Any]


def _time(text: str) -> str:
    _parse_time(text)  # refuses what is not ISO 8601
    return text


_FIELDS: tuple[_Field, ...] = (
    _Field("ReceiptId", "receipt_id", False, str, str),
    _Field("Kind", "kind", False, lambda kind: ReceiptKind(kind).value, ReceiptKind),
    _Field("HubOrganId", "hub_organ_id", False, str, str),
    _Field("HubDocumentId", "hub_document_id", False, str, str),
    _Field("DocumentId", "document_id", True, str, str),
    _Field("MessageType", "message_type", False, str, str),
    _Field("Sender", "sender", False, str, str),
    # Recipients is handled apart (repeated Recipient elements), at this place in the order.
    _Field("Recipients", "recipients", False, str, str),
    _Field("AcceptedSha256", "accepted_sha256", False, str, str),
    _Field("AcceptedSize", "accepted_size", False, str, int),
    _Field("DeliveredSha256", "delivered_sha256", True, str, str),
    _Field("EventTime", "event_time", False, str, _time),
    _Field("IssuedAt", "issued_at", False, str, _time),
    _Field("SignatureVerdict", "signature_verdict", False, str, str),
    _Field("SignatureReason", "signature_reason", False, str, str),
    _Field("SignerSha256", "signer_sha256", True, str, str),
    _Field("TraceSeq", "trace_seq", False, str, int),
    _Field("TraceHash", "trace_hash", False, str, str),
)


def _q(local: str) -> str:
    return f"{{{RECEIPT_NS}}}{local}"


# ------------------------------------------------------------------------------------------ writing


def receipt_xml(receipt: HubReceipt) -> etree._Element:
    """The unsigned receipt document (indented, one element per field)."""
    root = etree.Element(_q("Receipt"), nsmap={None: RECEIPT_NS})  # type: ignore[dict-item]  # lxml-stubs
    root.text = "\n  "
    last: etree._Element | None = None
    for spec in _FIELDS:
        value = getattr(receipt, spec.attribute)
        if value is None and spec.optional:
            continue
        last = etree.SubElement(root, _q(spec.element))
        last.tail = "\n  "
        if spec.attribute == "recipients":
            last.text = "\n    "
            recipient: etree._Element | None = None
            for code in value:
                recipient = etree.SubElement(last, _q("Recipient"))
                recipient.text = str(code)
                recipient.tail = "\n    "
            if recipient is not None:
                recipient.tail = "\n  "
            else:
                last.text = None
        else:
            last.text = spec.write(value)
    if last is not None:
        last.tail = "\n"
    return root


def sign_receipt(receipt: HubReceipt, key: SigningKey) -> bytes:
    """The receipt signed by ``key`` (the hub's): UTF-8 XML with a declaration."""
    root = receipt_xml(receipt)
    sign_enveloped(root, root, key)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


# ------------------------------------------------------------------------------------------ reading


def parse_receipt(data: bytes) -> HubReceipt:
    """The fields of a receipt, without checking its signature; ``Client.ReceiptMalformed`` otherwise."""
    return _receipt_of(_parse(data))


def verify_receipt(
    data: bytes,
    *,
    trust: TrustStore | None,
    hub_certificates: Collection[str] = (),
    at: datetime | None = None,
) -> ReceiptCheck:
    """The receipt and its signature report, checked at ``at`` or else at the receipt's IssuedAt.

    ``hub_certificates``: hex SHA-256 fingerprints of the hub's certificates (every one it
    ever signed with); when given, the signer must be one of them (``signer-not-registered``
    otherwise) and is trusted as pinned.  Otherwise the certificate chain carried in the
    receipt must lead to ``trust``'s anchors.  Bytes that are not a receipt document raise
    ``ClientError`` ``Client.ReceiptMalformed``; every signature problem is a report.
    """
    root = _parse(data)
    try:
        receipt: HubReceipt | None = _receipt_of(root)
    except ClientError:
        receipt = None
    moment = at if at is not None else (_parse_time(receipt.issued_at) if receipt is not None else None)
    if moment is None:
        raise ClientError(
            "the receipt's fields cannot be read, so it gives no IssuedAt to check its certificate at; "
            "pass the time explicitly",
            code=RECEIPT_MALFORMED,
        )
    signatures = [child for child in root if child.tag == _SIGNATURE]
    checked_at = iso_utc(moment)
    if not signatures:
        if next(root.iter(_SIGNATURE), None) is not None:
            found = report(
                "misplaced-signature",
                "an XML-DSig Signature is in the receipt, but not as a child of Receipt",
                checked_at=checked_at,
            )
        else:
            found = report("no-signature", "the receipt carries no Signature", checked_at=checked_at)
        return ReceiptCheck(receipt, found)
    if len(signatures) > 1:
        found = report(
            "multiple-signatures", f"the receipt carries {len(signatures)} Signatures", checked_at=checked_at
        )
        return ReceiptCheck(receipt, found)
    warnings = [] if root[-1] is signatures[0] else ["signature-not-last"]
    found = verify_enveloped(
        signatures[0],
        trust=trust,
        at=moment,
        covered=COVERED,
        pinned=hub_certificates,
        pinned_name="hub certificates",
        warnings=warnings,
    )
    return ReceiptCheck(receipt, found)


def _parse(data: bytes) -> etree._Element:
    try:
        root = parse_untrusted(data, _LIMITS)
    except XmlInputError as failure:
        raise ClientError(f"not a receipt: {failure.message}", code=RECEIPT_MALFORMED) from None
    if root.tag != _q("Receipt"):
        raise ClientError(
            f"not a receipt: the root element is {root.tag}, not Receipt in {RECEIPT_NS}",
            code=RECEIPT_MALFORMED,
        )
    return root


def _receipt_of(root: etree._Element) -> HubReceipt:
    """The fields, in the fixed order (optional ones may be absent); anything else is malformed."""
    children = [child for child in root if isinstance(child.tag, str) and child.tag != _SIGNATURE]
    values: dict[str, Any] = {}
    index = 0
    for spec in _FIELDS:
        element = children[index] if index < len(children) else None
        if element is None or element.tag != _q(spec.element):
            if not spec.optional:
                raise _malformed(f"{spec.element} is missing or out of order")
            values[spec.attribute] = None
            continue
        index += 1
        values[spec.attribute] = (
            _recipients(element) if spec.attribute == "recipients" else _value(element, spec)
        )
    if index != len(children):
        raise _malformed(f"unexpected element {etree.QName(children[index]).localname}")
    return HubReceipt(**values)


def _recipients(element: etree._Element) -> tuple[str, ...]:
    codes: list[str] = []
    for child in element:
        if child.tag != _q("Recipient") or len(child):
            raise _malformed("Recipients may hold only Recipient elements with text")
        codes.append(child.text or "")
    return tuple(codes)


def _value(element: etree._Element, spec: _Field) -> Any:
    if len(element):
        raise _malformed(f"{spec.element} must hold text, not elements")
    try:
        return spec.read(element.text or "")
    except ValueError:
        raise _malformed(f"{spec.element} does not hold a valid value") from None


def _parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _malformed(message: str) -> ClientError:
    return ClientError(f"malformed receipt: {message}", code=RECEIPT_MALFORMED)
