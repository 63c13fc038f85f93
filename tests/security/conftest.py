"""Shared fixtures for the security tests: a throw-away PKI and zeep-signed SOAP 1.1 requests.

The PKI is made once per session with ``cryptography``: the registered client certificate, an
"attacker" certificate with the same CN (a different key), and a certificate that has expired.
Requests are signed by zeep's own ``BinarySignature`` (the client library our partners use),
with a small Timestamp plugin in front of it because zeep has none.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import xmlsec
from lxml import etree
from zeep.wsse import BinarySignature, Compose

from esb.clients.zeep_wsse import Timestamp
from esb.xml_processing.namespaces import SOAP11_ENV
from esb.xml_processing.parsing import parse_untrusted

CLIENT_CN = "so-tttt.tinh.gov.vn"
BODY_NS = "urn:lgsp:test"


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
def sign_request(pki: Any) -> SignRequest:
    """``sign_request(identity=client, *, created=now, lifetime=5 min, timestamp=True, ...)``.

    Returns the signed envelope as the service would parse it.  Defaults are our policy:
    RSA-SHA256 and SHA-256 (zeep's own defaults are RSA-SHA1/SHA1: pass ``None`` for those).
    """

    def sign(
        identity: Any = None,
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


def _resign(envelope: etree._Element, identity: Any) -> etree._Element:
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
def resign() -> Callable[[etree._Element, Any], etree._Element]:
    """``resign(envelope, identity)``: after editing SignedInfo, recompute the digests and the
    SignatureValue, giving a validly signed variant (e.g. with an InclusiveNamespaces PrefixList)."""
    return _resign
