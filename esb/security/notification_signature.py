"""The signed ``Notify`` message the hub POSTs to a subscribed callback endpoint, and its check.

A SOAP 1.1 envelope whose Body holds one ``Notify`` element (namespace
``urn:lgsp-esb:notifications:1``), its fields in this fixed order, and as its last child an
enveloped XML-DSig signature made with the hub's key (the key of its receipts)::

    <soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>
      <Notify xmlns="urn:lgsp-esb:notifications:1">
        <notificationId>42</notificationId>        the cursor (also in WaitForNotifications)
        <kind>document</kind>                      document | status | undeliverable
        <agency>000.00.01.H53</agency>             whom the notification is for
        <hubDocumentId>…</hubDocumentId>
        <from>000.00.00.H53</from>
        <to>000.00.01.H53</to>                     optional
        <messageType>edoc</messageType>            edoc | status
        <priority>0</priority>
        <detail>…</detail>                         optional: why (undeliverable)
        <at>2026-11-21T02:30:00+00:00</at>         when the notification was made
        <sentAt>2026-11-21T02:30:01+00:00</sentAt>  when this attempt was signed
        <Signature xmlns="http://www.w3.org/2000/09/xmldsig#">…</Signature>
      </Notify>
    </soap:Body></soap:Envelope>

The signature is the same form as the hub's receipts (:mod:`esb.security.xml_signature`:
RSA-SHA256, exclusive c14n, ``Reference URI=""`` with the enveloped-signature transform)
over the ``Notify`` element **as a document of its own**: to verify, take ``Notify`` out of
the Body into a new document and check the signature there, with the hub's certificate
(carried in ``KeyInfo``; pin its SHA-256 fingerprint).  Then check that ``agency`` is you and
that ``sentAt`` is recent; a retried push carries the same ``notificationId``.
"""

from __future__ import annotations

from collections.abc import Collection
from copy import deepcopy
from dataclasses import dataclass
from datetime import UTC, datetime

from lxml import etree

from esb.domain.notifications import Notification, NotificationKind
from esb.domain.signatures import SignatureReport, report
from esb.errors import ClientError, XmlInputError
from esb.security.signing_key import SigningKey
from esb.security.trust_store import TrustStore
from esb.security.xml_signature import iso_utc, sign_enveloped, verify_enveloped
from esb.xml_processing.namespaces import DS
from esb.xml_processing.parsing import XmlLimits, parse_untrusted

NOTIFY_NS = "urn:lgsp-esb:notifications:1"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP_ACTION = f'"{NOTIFY_NS}#Notify"'
CONTENT_TYPE = "text/xml; charset=utf-8"
MALFORMED = "Client.NotifyMalformed"
COVERED = "the whole Notify element (every field), minus this Signature"

_LIMITS = XmlLimits(max_bytes=1024 * 1024, max_depth=16, max_elements=200)
_SIGNATURE = f"{{{DS}}}Signature"
_FIELDS = (
    "notificationId",
    "kind",
    "agency",
    "hubDocumentId",
    "from",
    "to",
    "messageType",
    "priority",
    "detail",
    "at",
    "sentAt",
)
_OPTIONAL = frozenset({"to", "detail"})


@dataclass(frozen=True)
class NotifyMessage:
    notification: Notification
    sent_at: datetime


@dataclass(frozen=True)
class NotifyCheck:
    """A Notify as read (None when its fields cannot be read) and what its signature proves.

    Trust the fields only when ``report.verdict`` is ``valid``.
    """

    message: NotifyMessage | None
    report: SignatureReport


def _q(local: str) -> str:
    return f"{{{NOTIFY_NS}}}{local}"


def notify_element(notification: Notification, sent_at: datetime) -> etree._Element:
    """The unsigned ``Notify`` element, one child per field."""
    values: dict[str, str | None] = {
        "notificationId": str(notification.id),
        "kind": notification.kind.value,
        "agency": notification.agency,
        "hubDocumentId": notification.hub_document_id,
        "from": notification.sender,
        "to": notification.recipient,
        "messageType": notification.message_type,
        "priority": str(notification.priority),
        "detail": notification.detail,
        "at": iso_utc(notification.at),
        "sentAt": iso_utc(sent_at),
    }
    root = etree.Element(_q("Notify"), nsmap={None: NOTIFY_NS})  # type: ignore[dict-item]  # lxml-stubs
    root.text = "\n"
    for name in _FIELDS:
        value = values[name]
        if value is None:
            continue
        child = etree.SubElement(root, _q(name))
        child.text = value
        child.tail = "\n"
    return root


def sign_notify(notification: Notification, key: SigningKey, *, sent_at: datetime) -> bytes:
    """The SOAP 1.1 request the hub POSTs: Notify signed by ``key``, in a Body (UTF-8)."""
    notify = notify_element(notification, sent_at)
    sign_enveloped(notify, notify, key)
    envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"soap": SOAP_ENV})
    body = etree.SubElement(envelope, f"{{{SOAP_ENV}}}Body")
    body.append(notify)
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


def verify_notify(
    data: bytes,
    *,
    hub_certificates: Collection[str] = (),
    trust: TrustStore | None = None,
    at: datetime | None = None,
) -> NotifyCheck:
    """Read a Notify request and check its signature (at ``at``, else at its ``sentAt``).

    ``hub_certificates``: hex SHA-256 fingerprints of the hub's certificates; when given the
    signer must be one of them.  Otherwise its chain must lead to ``trust``'s anchors.
    Bytes that are not a SOAP envelope with one Notify in the Body raise ``ClientError``
    ``Client.NotifyMalformed``; every signature problem is a report.
    """
    notify = _standalone(_notify_of(data))
    try:
        message: NotifyMessage | None = _message_of(notify)
    except ClientError:
        message = None
    moment = at if at is not None else (message.sent_at if message is not None else None)
    if moment is None:
        raise ClientError(
            "the Notify fields cannot be read, so it gives no sentAt to check its certificate at",
            code=MALFORMED,
        )
    checked_at = iso_utc(moment)
    signatures = [child for child in notify if child.tag == _SIGNATURE]
    if len(signatures) != 1:
        reason = "no-signature" if not signatures else "multiple-signatures"
        return NotifyCheck(message, report(reason, checked_at=checked_at))
    warnings = [] if notify[-1] is signatures[0] else ["signature-not-last"]
    found = verify_enveloped(
        signatures[0],
        trust=trust,
        at=moment,
        covered=COVERED,
        pinned=hub_certificates,
        pinned_name="hub certificates",
        warnings=warnings,
    )
    return NotifyCheck(message, found)


def parse_notify(data: bytes) -> NotifyMessage:
    """The fields of a Notify request, without checking its signature."""
    return _message_of(_notify_of(data))


def _notify_of(data: bytes) -> etree._Element:
    try:
        root = parse_untrusted(data, _LIMITS)
    except XmlInputError as failure:
        raise _malformed(f"not XML: {failure.message}") from None
    if root.tag != f"{{{SOAP_ENV}}}Envelope":
        raise _malformed("the root element is not a SOAP 1.1 Envelope")
    bodies = [child for child in root if child.tag == f"{{{SOAP_ENV}}}Body"]
    if len(bodies) != 1:
        raise _malformed("the envelope must have exactly one Body")
    payload = [child for child in bodies[0] if isinstance(child.tag, str)]
    if len(payload) != 1 or payload[0].tag != _q("Notify"):
        raise _malformed(f"the Body must hold exactly one Notify in {NOTIFY_NS}")
    return payload[0]


def _standalone(element: etree._Element) -> etree._Element:
    """``element`` as the root of a document of its own (what the signature covers)."""
    copy = deepcopy(element)
    etree.ElementTree(copy)
    return copy


def _message_of(notify: etree._Element) -> NotifyMessage:
    children = [c for c in notify if isinstance(c.tag, str) and c.tag != _SIGNATURE]
    values: dict[str, str] = {}
    index = 0
    for name in _FIELDS:
        element = children[index] if index < len(children) else None
        if element is None or element.tag != _q(name):
            if name not in _OPTIONAL:
                raise _malformed(f"{name} is missing or out of order")
            continue
        if len(element):
            raise _malformed(f"{name} must hold text, not elements")
        values[name] = element.text or ""
        index += 1
    if index != len(children):
        raise _malformed(f"unexpected element {etree.QName(children[index]).localname}")
    try:
        notification = Notification(
            id=int(values["notificationId"]),
            agency=values["agency"],
            kind=NotificationKind(values["kind"]),
            hub_document_id=values["hubDocumentId"],
            sender=values["from"],
            recipient=values.get("to"),
            message_type=values["messageType"],
            priority=int(values["priority"]),
            detail=values.get("detail"),
            at=_time(values["at"]),
        )
        return NotifyMessage(notification, _time(values["sentAt"]))
    except ValueError:
        raise _malformed("a field does not hold a valid value") from None


def _time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _malformed(message: str) -> ClientError:
    return ClientError(f"malformed Notify: {message}", code=MALFORMED)
