"""Server-side WS-Security verification (OASIS WSS 1.0/1.1, X.509 token profile, SOAP 1.1).

The caller works in two steps so that it can pin the certificate in between::

    token = read_security_token(envelope)          # structure + the certificate the message claims
    registered = lookup(token.certificate_sha256)  # the application's pinned certificate, or refuse
    verified = verify_security(envelope, token, now=now)
    replay_cache.add(verified.signature_digest, until=verified.expires)

The certificate carried in the message is never trusted by itself.  The checks defend against
XML signature wrapping: exactly one Header, Body, Security and ds:Signature; every Id value is
unique in the whole envelope; each reference URI is a local ``#id`` that resolves to exactly one
element; and the signed set must contain *the very element* that is the Envelope's Body and the
Timestamp under Security (an identity check, not a first-match lookup by Id).  Algorithms are
allow-listed before xmlsec sees the signature, and again inside xmlsec.

Every refusal is a :class:`WsseError` with a stable ``Client.Wsse*`` code; no xmlsec or lxml
exception escapes.  Code that reads the verified Body must not see comments (exc-c14n ignores
them): :func:`esb.xml_processing.parsing.parse_untrusted` drops them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import xmlsec
from cryptography import x509
from lxml import etree

from esb.errors import ClientError
from esb.xml_processing.namespaces import DS, SOAP11_ENV, WSS_BASE64, WSS_X509V3, WSSE, WSU

MALFORMED = "Client.WsseMalformed"
DUPLICATE_ID = "Client.WsseDuplicateId"
ALGORITHM_FORBIDDEN = "Client.WsseAlgorithmForbidden"
NOT_SIGNED = "Client.WsseNotSigned"
SIGNATURE_INVALID = "Client.WsseSignatureInvalid"
EXPIRED = "Client.WsseExpired"
CERTIFICATE_EXPIRED = "Client.WsseCertificateExpired"

EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
RSA_SHA384 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384"
RSA_SHA512 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512"
SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
SHA384 = "http://www.w3.org/2001/04/xmldsig-more#sha384"
SHA512 = "http://www.w3.org/2001/04/xmlenc#sha512"

_STRONG_SIGNATURE_METHODS = frozenset({RSA_SHA256, RSA_SHA384, RSA_SHA512})
_STRONG_DIGEST_METHODS = frozenset({SHA256, SHA384, SHA512})
_ID_ATTRIBUTES = frozenset({"Id", "ID", "id"})
_LOCAL_REFERENCE = re.compile(r"#([A-Za-z_][A-Za-z0-9_.\-]*)")
_XSD_DATETIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})",
)


class WsseError(ClientError):
    """A request whose WS-Security header we refuse; ``code`` says which check failed."""

    default_code = "Client.WsseInvalid"


@dataclass(frozen=True)
class WssePolicy:
    max_clock_skew: timedelta = timedelta(seconds=300)
    max_lifetime: timedelta = timedelta(hours=1)  # Expires - Created may not exceed this
    allow_sha1: bool = False  # legacy clients (RSA-SHA1 / SHA1), operator opt-in


@dataclass(frozen=True)
class SecurityToken:
    """What the message claims: read from the BinarySecurityToken, NOT yet trusted."""

    certificate_der: bytes
    certificate_sha256: str  # lowercase hex SHA-256 of the DER, used to look up the pinned registered cert


@dataclass(frozen=True)
class VerifiedSecurity:
    certificate_sha256: str
    signature_digest: str  # lowercase hex SHA-256 of the SignatureValue bytes (replay-cache key)
    created: datetime  # aware UTC
    expires: datetime  # aware UTC
    algorithms: tuple[str, ...]  # signature + digest algorithm URIs used


@dataclass(frozen=True)
class _Parts:
    """The elements the checks work on, each found by its position, never by Id."""

    envelope: etree._Element
    header: etree._Element
    body: etree._Element
    security: etree._Element
    signature: etree._Element
    timestamp: etree._Element


@dataclass(frozen=True)
class _SignedElement:
    element: etree._Element
    id_attribute: str  # local name of the attribute that carries the Id
    id_namespace: str | None


# --------------------------------------------------------------------------------------- public API


def find_security_header(envelope: etree._Element) -> etree._Element | None:
    """The wsse:Security element that is a direct child of the SOAP 1.1 Header, or None."""
    if envelope.tag != _q(SOAP11_ENV, "Envelope"):
        return None
    header = envelope.find(_q(SOAP11_ENV, "Header"))
    return None if header is None else header.find(_q(WSSE, "Security"))


def read_security_token(envelope: etree._Element) -> SecurityToken:
    """Structural checks + extract the signing certificate (not yet trusted).

    Follows ds:KeyInfo/wsse:SecurityTokenReference/wsse:Reference URI='#id' to a
    BinarySecurityToken that is a direct child of Security (X509v3, Base64Binary).
    """
    parts = _locate_parts(envelope)
    token = _referenced_binary_security_token(parts)
    der = _decode_base64(token.text, "the BinarySecurityToken")
    _load_certificate(der)
    return SecurityToken(certificate_der=der, certificate_sha256=hashlib.sha256(der).hexdigest())


def verify_security(
    envelope: etree._Element,
    token: SecurityToken,
    *,
    now: datetime,
    policy: WssePolicy = WssePolicy(),
) -> VerifiedSecurity:
    """Verify with the certificate in ``token``.

    The caller has already checked that the token's fingerprint is the application's
    registered, pinned certificate.  ``now`` must be timezone-aware.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    parts = _locate_parts(envelope)
    signed_info = _signed_info(parts.signature)
    algorithms = _check_algorithms(signed_info, policy)
    signed = _resolve_references(parts.envelope, signed_info)
    _check_body_and_timestamp_signed(parts, signed)
    created, expires = _read_timestamp(parts.timestamp)
    signature_digest = hashlib.sha256(_signature_value(parts.signature)).hexdigest()
    certificate = _load_certificate(token.certificate_der)
    _check_certificate_validity(certificate, now)
    _check_signature(parts.signature, signed, token.certificate_der, policy)
    _check_freshness(created, expires, now, policy)
    return VerifiedSecurity(
        certificate_sha256=hashlib.sha256(token.certificate_der).hexdigest(),
        signature_digest=signature_digest,
        created=created,
        expires=expires,
        algorithms=algorithms,
    )


# ---------------------------------------------------------------------------------------- structure


def _locate_parts(envelope: etree._Element) -> _Parts:
    """Exactly one of each part, at its place; every Id unique in the whole document."""
    if envelope.tag != _q(SOAP11_ENV, "Envelope") or envelope.getparent() is not None:
        raise WsseError("the document is not a SOAP 1.1 Envelope", code=MALFORMED)
    _check_unique_ids(envelope)
    header = _only_child(envelope, SOAP11_ENV, "Header", "soap:Header")
    body = _only_child(envelope, SOAP11_ENV, "Body", "soap:Body")
    security = _only_child(header, WSSE, "Security", "wsse:Security")
    signature = _the_signature(envelope, security)
    timestamp = _only_child(security, WSU, "Timestamp", "wsu:Timestamp under wsse:Security")
    return _Parts(envelope, header, body, security, signature, timestamp)


def _check_unique_ids(root: etree._Element) -> None:
    """No Id/ID/id value (in any namespace: wsu:Id, xml:id, ...) is carried by two elements."""
    owners: dict[str, etree._Element] = {}
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue
        for name, value in element.attrib.items():
            if _local(str(name)) not in _ID_ATTRIBUTES:
                continue
            owner = owners.setdefault(str(value), element)
            if owner is not element:
                raise WsseError("two elements carry the same Id value", code=DUPLICATE_ID)


def _the_signature(envelope: etree._Element, security: etree._Element) -> etree._Element:
    """The only ds:Signature in the envelope, and it is a direct child of wsse:Security."""
    signatures = list(envelope.iter(_q(DS, "Signature")))
    if len(signatures) != 1:
        raise WsseError(
            f"expected exactly one ds:Signature in the envelope, found {len(signatures)}", code=MALFORMED
        )
    if signatures[0].getparent() is not security:
        raise WsseError("the ds:Signature is not a direct child of wsse:Security", code=MALFORMED)
    return signatures[0]


def _referenced_binary_security_token(parts: _Parts) -> etree._Element:
    key_info = _only_child(parts.signature, DS, "KeyInfo", "ds:KeyInfo")
    if len(key_info) != 1:
        raise WsseError("ds:KeyInfo must hold only a wsse:SecurityTokenReference", code=MALFORMED)
    reference = _only_child(
        _only_child(key_info, WSSE, "SecurityTokenReference", "wsse:SecurityTokenReference"),
        WSSE,
        "Reference",
        "wsse:Reference in the SecurityTokenReference",
    )
    if reference.get("ValueType") not in (None, WSS_X509V3):
        raise WsseError("the token reference is not to an X.509 v3 certificate", code=MALFORMED)
    token = _resolve(parts.envelope, reference.get("URI")).element
    if token.tag != _q(WSSE, "BinarySecurityToken") or token.getparent() is not parts.security:
        raise WsseError(
            "the token reference does not point to a BinarySecurityToken in wsse:Security", code=MALFORMED
        )
    if token.get("ValueType") != WSS_X509V3 or token.get("EncodingType") != WSS_BASE64 or len(token):
        raise WsseError("the BinarySecurityToken is not a base64 X.509 v3 certificate", code=MALFORMED)
    return token


def _signed_info(signature: etree._Element) -> etree._Element:
    return _only_child(signature, DS, "SignedInfo", "ds:SignedInfo")


def _signature_value(signature: etree._Element) -> bytes:
    value = _only_child(signature, DS, "SignatureValue", "ds:SignatureValue")
    return _decode_base64(value.text, "the SignatureValue")


# --------------------------------------------------------------------------------------- algorithms


def _check_algorithms(signed_info: etree._Element, policy: WssePolicy) -> tuple[str, ...]:
    """Allow-list every algorithm in SignedInfo; returns (signature method, digest methods...)."""
    _check_exc_c14n(_only_child(signed_info, DS, "CanonicalizationMethod", "ds:CanonicalizationMethod"))
    signature_method = _algorithm(_only_child(signed_info, DS, "SignatureMethod", "ds:SignatureMethod"))
    allowed = _STRONG_SIGNATURE_METHODS | ({RSA_SHA1} if policy.allow_sha1 else set())
    if signature_method not in allowed:
        raise WsseError("the signature method is not allowed", code=ALGORITHM_FORBIDDEN)
    references = signed_info.findall(_q(DS, "Reference"))
    if not references:
        raise WsseError("ds:SignedInfo has no ds:Reference", code=MALFORMED)
    digests: list[str] = []
    for reference in references:
        _check_transforms(reference)
        digest = _check_digest_method(reference, policy)
        if digest not in digests:
            digests.append(digest)
    return (signature_method, *digests)


def _check_transforms(reference: etree._Element) -> None:
    """Exactly the exc-c14n transform(s): no XPath, XSLT, enveloped or STR-transform."""
    transforms = _only_child(reference, DS, "Transforms", "ds:Transforms in each ds:Reference")
    if len(transforms) == 0:
        raise WsseError("a ds:Reference has no canonicalization transform", code=ALGORITHM_FORBIDDEN)
    for transform in transforms:
        if transform.tag != _q(DS, "Transform"):
            raise WsseError("unexpected element in ds:Transforms", code=MALFORMED)
        _check_exc_c14n(transform)


def _check_exc_c14n(method: etree._Element) -> None:
    """Exclusive c14n without comments, optionally with an InclusiveNamespaces PrefixList."""
    if _algorithm(method) != EXC_C14N:
        raise WsseError("only exclusive XML canonicalization is allowed", code=ALGORITHM_FORBIDDEN)
    for parameter in method:
        if parameter.tag != _q(EXC_C14N, "InclusiveNamespaces"):
            raise WsseError("unexpected canonicalization parameter", code=ALGORITHM_FORBIDDEN)


def _check_digest_method(reference: etree._Element, policy: WssePolicy) -> str:
    digest = _algorithm(_only_child(reference, DS, "DigestMethod", "ds:DigestMethod in each ds:Reference"))
    allowed = _STRONG_DIGEST_METHODS | ({SHA1} if policy.allow_sha1 else set())
    if digest not in allowed:
        raise WsseError("the digest method is not allowed", code=ALGORITHM_FORBIDDEN)
    return digest


def _algorithm(method: etree._Element) -> str:
    algorithm = method.get("Algorithm")
    if not algorithm:
        raise WsseError("an algorithm element has no Algorithm attribute", code=MALFORMED)
    return algorithm


# ----------------------------------------------------------------------------------- what is signed


def _resolve_references(envelope: etree._Element, signed_info: etree._Element) -> list[_SignedElement]:
    return [_resolve(envelope, ref.get("URI")) for ref in signed_info.findall(_q(DS, "Reference"))]


def _resolve(envelope: etree._Element, uri: str | None) -> _SignedElement:
    """A local ``#id`` reference to exactly one element of the envelope."""
    match = _LOCAL_REFERENCE.fullmatch(uri or "")
    if match is None:
        raise WsseError("a reference URI is not a local '#id' reference", code=MALFORMED)
    wanted = match.group(1)
    found = [
        _SignedElement(element, *_split(str(name)))
        for element in envelope.iter()
        if isinstance(element.tag, str)
        for name, value in element.attrib.items()
        if value == wanted and _local(str(name)) in _ID_ATTRIBUTES
    ]
    if len(found) != 1:
        raise WsseError("a reference does not resolve to exactly one element", code=MALFORMED)
    return found[0]


def _check_body_and_timestamp_signed(parts: _Parts, signed: list[_SignedElement]) -> None:
    """The signed set holds the very Body and Timestamp elements the service will act on."""
    if not any(item.element is parts.body for item in signed):
        raise WsseError("the SOAP Body is not signed", code=NOT_SIGNED)
    if not any(item.element is parts.timestamp for item in signed):
        raise WsseError("the wsu:Timestamp is not signed", code=NOT_SIGNED)


# ------------------------------------------------------------------------------------ cryptography


def _load_certificate(der: bytes) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError:
        raise WsseError("the security token is not an X.509 certificate", code=MALFORMED) from None


def _check_certificate_validity(certificate: x509.Certificate, now: datetime) -> None:
    if now < certificate.not_valid_before_utc:
        raise WsseError("the signing certificate is not valid yet", code=CERTIFICATE_EXPIRED)
    if now > certificate.not_valid_after_utc:
        raise WsseError("the signing certificate has expired", code=CERTIFICATE_EXPIRED)


def _check_signature(
    signature: etree._Element, signed: list[_SignedElement], certificate_der: bytes, policy: WssePolicy
) -> None:
    """xmlsec verification with the pinned certificate's key, transforms restricted inside xmlsec too."""
    try:
        key = xmlsec.Key.from_memory(certificate_der, xmlsec.constants.KeyDataFormatCertDer)
    except xmlsec.Error:
        raise WsseError("the certificate has no usable public key", code=MALFORMED) from None
    context = xmlsec.SignatureContext()
    context.key = key
    try:
        for item in signed:
            context.register_id(item.element, item.id_attribute, item.id_namespace)
        _restrict_xmlsec_transforms(context, policy)
    except xmlsec.Error:
        raise WsseError("the signed elements cannot be registered", code=MALFORMED) from None
    try:
        context.verify(signature)
    except xmlsec.Error:
        raise WsseError("the signature does not verify", code=SIGNATURE_INVALID) from None


def _restrict_xmlsec_transforms(context: xmlsec.SignatureContext, policy: WssePolicy) -> None:
    """The same allow-list, enforced by xmlsec itself (a second line of defence)."""
    c = xmlsec.constants
    signature_methods = [c.TransformRsaSha256, c.TransformRsaSha384, c.TransformRsaSha512]
    digest_methods = [c.TransformSha256, c.TransformSha384, c.TransformSha512]
    if policy.allow_sha1:
        signature_methods.append(c.TransformRsaSha1)
        digest_methods.append(c.TransformSha1)
    for transform in (c.TransformExclC14N, *signature_methods):
        context.enable_signature_transform(transform)
    for transform in (c.TransformExclC14N, *digest_methods):
        context.enable_reference_transform(transform)


# --------------------------------------------------------------------------------------- timestamp


def _read_timestamp(timestamp: etree._Element) -> tuple[datetime, datetime]:
    created = _only_child(timestamp, WSU, "Created", "wsu:Created in the Timestamp")
    expires = _only_child(timestamp, WSU, "Expires", "wsu:Expires in the Timestamp")
    return _parse_utc(created.text, "Created"), _parse_utc(expires.text, "Expires")


def _check_freshness(created: datetime, expires: datetime, now: datetime, policy: WssePolicy) -> None:
    if expires <= created:
        raise WsseError("the Timestamp expires before it is created", code=EXPIRED)
    if expires - created > policy.max_lifetime:
        raise WsseError("the Timestamp lifetime is longer than allowed", code=EXPIRED)
    if created > now + policy.max_clock_skew:
        raise WsseError("the Timestamp is created in the future", code=EXPIRED)
    if expires < now - policy.max_clock_skew:
        raise WsseError("the message has expired", code=EXPIRED)


def _parse_utc(text: str | None, what: str) -> datetime:
    """An xsd:dateTime with a time zone (``Z`` or ``±hh:mm``), as aware UTC."""
    match = _XSD_DATETIME.fullmatch((text or "").strip())
    if match is None:
        raise WsseError(f"the Timestamp {what} is not a date-time with a time zone", code=MALFORMED)
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        offset = timedelta(0) if zone == "Z" else _zone_offset(zone)
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second),
            int((fraction or "0")[:6].ljust(6, "0")),
            tzinfo=timezone(offset),
        )
    except ValueError:
        raise WsseError(f"the Timestamp {what} is not a valid date-time", code=MALFORMED) from None
    return moment.astimezone(UTC)


def _zone_offset(zone: str) -> timedelta:
    sign = -1 if zone[0] == "-" else 1
    return sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))


# ------------------------------------------------------------------------------------------ helpers


def _q(namespace: str, local: str) -> str:
    return f"{{{namespace}}}{local}"


def _local(name: str) -> str:
    return name.rpartition("}")[2]


def _split(name: str) -> tuple[str, str | None]:
    """``{ns}local`` → (local, ns); ``local`` → (local, None)."""
    if name.startswith("{"):
        namespace, _, local = name[1:].partition("}")
        return local, namespace
    return name, None


def _only_child(parent: etree._Element, namespace: str, local: str, label: str) -> etree._Element:
    found = parent.findall(_q(namespace, local))
    if len(found) != 1:
        raise WsseError(f"expected exactly one {label}, found {len(found)}", code=MALFORMED)
    return found[0]


def _decode_base64(text: str | None, what: str) -> bytes:
    compact = "".join((text or "").split())
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise WsseError(f"{what} is not valid base64", code=MALFORMED) from None
    if not data:
        raise WsseError(f"{what} is empty", code=MALFORMED)
    return data
