"""Shared fixtures for the security tests: a throw-away PKI and zeep-signed SOAP 1.1 requests.

The PKI is made once per session with ``cryptography``: the registered client certificate, an
"attacker" certificate with the same CN (a different key), and a certificate that has expired.
Requests are signed by zeep's own ``BinarySignature`` (the client library our partners use),
with a small Timestamp plugin in front of it because zeep has none.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from zeep.wsse import BinarySignature, Compose
from zeep.wsse.utils import WSU, get_security_header, get_timestamp

from esb.xml_processing.namespaces import SOAP11_ENV
from esb.xml_processing.parsing import parse_untrusted

CLIENT_CN = "so-tttt.tinh.gov.vn"
BODY_NS = "urn:lgsp:test"


@dataclass(frozen=True)
class Identity:
    """A key pair and its self-signed certificate, as the PEM files zeep reads."""

    key_path: Path
    cert_path: Path
    certificate_der: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.certificate_der).hexdigest()


@dataclass(frozen=True)
class Pki:
    client: Identity
    attacker: Identity  # same CN as the client, another key
    expired: Identity  # the client's CN, validity ended a year ago


def _identity(directory: Path, name: str, *, not_before: datetime, not_after: datetime) -> Identity:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CLIENT_CN)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = directory / f"{name}.key.pem", directory / f"{name}.cert.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return Identity(key_path, cert_path, certificate.public_bytes(serialization.Encoding.DER))


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    now = datetime.now(UTC)
    valid = {"not_before": now - timedelta(days=1), "not_after": now + timedelta(days=365)}
    return Pki(
        client=_identity(directory, "client", **valid),
        attacker=_identity(directory, "attacker", **valid),
        expired=_identity(
            directory,
            "expired",
            not_before=now - timedelta(days=730),
            not_after=now - timedelta(days=365),
        ),
    )


class Timestamp:
    """zeep wsse plugin: adds wsu:Timestamp (Created, Expires) under wsse:Security.

    Put it before the signature in ``zeep.wsse.Compose``: zeep signs the Timestamp only if it
    is already there.
    """

    def __init__(self, created: datetime, expires: datetime) -> None:
        self.created, self.expires = created, expires

    def apply(
        self, envelope: etree._Element, headers: dict[str, str]
    ) -> tuple[etree._Element, dict[str, str]]:
        security = get_security_header(envelope)
        security.append(
            WSU.Timestamp(
                WSU.Created(get_timestamp(self.created, zulu_timestamp=True)),
                WSU.Expires(get_timestamp(self.expires, zulu_timestamp=True)),
            )
        )
        return envelope, headers

    def verify(self, envelope: etree._Element) -> etree._Element:
        return envelope


def unsigned_envelope(text: str = "hello") -> etree._Element:
    """A minimal SOAP 1.1 request: an empty Header and a Body with one operation element."""
    envelope = etree.Element(f"{{{SOAP11_ENV}}}Envelope", nsmap={"soap": SOAP11_ENV})
    etree.SubElement(envelope, f"{{{SOAP11_ENV}}}Header")
    body = etree.SubElement(envelope, f"{{{SOAP11_ENV}}}Body")
    operation = etree.SubElement(body, f"{{{BODY_NS}}}SendPackage", nsmap={"m": BODY_NS})
    etree.SubElement(operation, f"{{{BODY_NS}}}text").text = text
    return envelope


def reparse(envelope: etree._Element) -> etree._Element:
    """Through the wire: serialize, then parse with the hardened parser the service uses."""
    return parse_untrusted(etree.tostring(envelope))


SignRequest = Callable[..., etree._Element]


@pytest.fixture(scope="session")
def sign_request(pki: Pki) -> SignRequest:
    """``sign_request(identity=client, *, created=now, lifetime=5 min, timestamp=True, ...)``.

    Returns the signed envelope as the service would parse it.  Defaults are our policy:
    RSA-SHA256 and SHA-256 (zeep's own defaults are RSA-SHA1/SHA1: pass ``None`` for those).
    """

    def sign(
        identity: Identity | None = None,
        *,
        created: datetime | None = None,
        lifetime: timedelta = timedelta(minutes=5),
        timestamp: bool = True,
        signature_method: object = xmlsec.constants.TransformRsaSha256,
        digest_method: object = xmlsec.constants.TransformSha256,
        text: str = "hello",
    ) -> etree._Element:
        signer = identity or pki.client
        plugins: list[object] = []
        if timestamp:
            start = created or datetime.now(UTC)
            plugins.append(Timestamp(start, start + lifetime))
        plugins.append(
            BinarySignature(
                str(signer.key_path),
                str(signer.cert_path),
                signature_method=signature_method,
                digest_method=digest_method,
            )
        )
        envelope, _ = Compose(plugins).apply(unsigned_envelope(text), {})
        return reparse(envelope)

    return sign


def _resign(envelope: etree._Element, identity: Identity) -> etree._Element:
    wsu = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
    signature = envelope.find(f".//{{{xmlsec.constants.DSigNs}}}Signature")
    assert signature is not None
    context = xmlsec.SignatureContext()
    context.key = xmlsec.Key.from_file(str(identity.key_path), xmlsec.constants.KeyDataFormatPem)
    for element in envelope.iter():
        if isinstance(element.tag, str) and element.get(f"{{{wsu}}}Id"):
            context.register_id(element, "Id", wsu)
    context.sign(signature)
    return reparse(envelope)


@pytest.fixture(scope="session")
def resign() -> Callable[[etree._Element, Identity], etree._Element]:
    """``resign(envelope, identity)``: after editing SignedInfo, recompute the digests and the
    SignatureValue, giving a validly signed variant (e.g. with an InclusiveNamespaces PrefixList)."""
    return _resign
