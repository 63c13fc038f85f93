"""Signed edXML packages: a W3C-style matrix of sign → tamper → verify, each with its exact verdict.

A small PKI is made once for the module (root CA → issuing CA → agency certificates, plus
certificates that are expired, not yet valid, revoked, of the wrong key usage, or from an
unknown CA).  Packages are signed with :func:`sign_package`; the cases that need a signature
we would never make (SHA-1, an ``#id`` reference, a second reference, inclusive c14n, ECDSA, a
Signature that is not last) are made with xmlsec directly.  Every tampering helper checks that
it changed something, so a case cannot pass by testing the untouched package.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import hashlib
import io
import json
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree

from esb.domain.edxml_model import SignatureInfo
from esb.domain.signatures import SignatureReport, Verdict
from esb.errors import ClientError, EdxmlInvalid, XmlInputError
from esb.security import pki
from esb.security.package_signature import (
    COVERED,
    SignedPackage,
    sign_package,
    verify_package,
)
from esb.security.signing_key import SigningKey
from esb.security.trust_store import TrustStore
from esb.xml_processing.edxml_reader import read_package
from esb.xml_processing.namespaces import DS, EDXML

C = xmlsec.constants
NOW = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
VPCP_EXC_C14N = "http://www.w3.org/TR/xml-exc-c14n#"  # the unregistered URI of the VPCP fixtures
XPATH = "http://www.w3.org/TR/1999/REC-xpath-19991116"
SUBJECT = "Báo cáo tình hình thực hiện nhiệm vụ"
ATTACHMENT = base64.b64encode(bytes(range(256)) * 12).decode("ascii")


def q(local: str, namespace: str = EDXML) -> str:
    return f"{{{namespace}}}{local}"


def unsigned_package(
    *, subject: str = SUBJECT, attachment: str = ATTACHMENT, organ: str = "000.00.01.H53"
) -> bytes:
    """An edoc as the project's writer lays it out (one attachment)."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016">
  <edXML:edXMLEnvelope xmlns:edXML="http://www.mic.gov.vn/TBT/QCVN_102_2016">
    <edXML:edXMLHeader>
      <edXML:MessageHeader>
        <edXML:From>
          <edXML:OrganId>{organ}</edXML:OrganId>
          <edXML:OrganName>Sở Tài chính</edXML:OrganName>
        </edXML:From>
        <edXML:To>
          <edXML:OrganId>000.00.00.H30</edXML:OrganId>
          <edXML:OrganName>Văn phòng UBND tỉnh</edXML:OrganName>
        </edXML:To>
        <edXML:DocumentId>{organ},2025/02/28,123/STC-BC</edXML:DocumentId>
        <edXML:Code>
          <edXML:CodeNumber>123</edXML:CodeNumber>
          <edXML:CodeNotation>STC-BC</edXML:CodeNotation>
        </edXML:Code>
        <edXML:PromulgationInfo>
          <edXML:Place>Tây Ninh</edXML:Place>
          <edXML:PromulgationDate>2025/02/28</edXML:PromulgationDate>
        </edXML:PromulgationInfo>
        <edXML:DocumentType>
          <edXML:Type>1</edXML:Type>
          <edXML:TypeName>Công văn</edXML:TypeName>
        </edXML:DocumentType>
        <edXML:Subject>{subject}</edXML:Subject>
        <edXML:Content>{subject}</edXML:Content>
        <edXML:SignerInfo>
          <edXML:Position>Giám đốc</edXML:Position>
          <edXML:FullName>Nguyễn Văn A</edXML:FullName>
        </edXML:SignerInfo>
        <edXML:OtherInfo>
          <edXML:Priority>0</edXML:Priority>
          <edXML:Direction>false</edXML:Direction>
        </edXML:OtherInfo>
        <edXML:SteeringType>0</edXML:SteeringType>
      </edXML:MessageHeader>
      <edXML:TraceHeaderList>
        <edXML:TraceHeader>
          <edXML:OrganId>{organ}</edXML:OrganId>
          <edXML:Timestamp>2025/02/28 07:00:00</edXML:Timestamp>
        </edXML:TraceHeader>
        <edXML:Bussiness>
          <edXML:BussinessDocType>0</edXML:BussinessDocType>
          <edXML:BussinessDocReason>Văn bản điện tử mới</edXML:BussinessDocReason>
          <edXML:Paper>0</edXML:Paper>
        </edXML:Bussiness>
      </edXML:TraceHeaderList>
    </edXML:edXMLHeader>
    <edXML:edXMLBody>
      <edXML:edXMLManifest version="1.0">
        <edXML:Reference>
          <edXML:ContentId>cid:bao-cao-1</edXML:ContentId>
          <edXML:ContentType>application/octet-stream</edXML:ContentType>
          <edXML:Description>bao-cao.bin</edXML:Description>
          <edXML:AttachmentName>bao-cao.bin</edXML:AttachmentName>
        </edXML:Reference>
      </edXML:edXMLManifest>
    </edXML:edXMLBody>
  </edXML:edXMLEnvelope>
  <AttachmentEncoded>
    <Attachment>
      <ContentId>cid:bao-cao-1</ContentId>
      <AttachmentName>bao-cao.bin</AttachmentName>
      <Description>bao-cao.bin</Description>
      <ContentType>application/octet-stream</ContentType>
      <edXML:ContentTransferEncoded xmlns:edXML="http://www.mic.gov.vn/TBT/QCVN_102_2016">{attachment}</edXML:ContentTransferEncoded>
    </Attachment>
  </AttachmentEncoded>
</edXML>
""".encode()


# -- the PKI ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certs:
    root: pki.IssuedCertificate
    issuing: pki.IssuedCertificate
    agency: pki.IssuedCertificate  # valid NOW - 30 days .. NOW + 335 days
    other_agency: pki.IssuedCertificate
    expired: pki.IssuedCertificate
    not_yet_valid: pki.IssuedCertificate
    revoked: pki.IssuedCertificate
    encipherment: pki.IssuedCertificate
    foreign: pki.IssuedCertificate  # issued by a CA nobody configured
    trust: TrustStore

    def key(self, issued: pki.IssuedCertificate, *chain: pki.IssuedCertificate) -> SigningKey:
        return SigningKey(issued.key, [issued.certificate, *(c.certificate for c in chain)])


@pytest.fixture(scope="module")
def certs() -> Certs:
    start = NOW - timedelta(days=400)
    root = pki.make_root_ca("Test Root CA", now=start)
    issuing = pki.make_intermediate_ca(root, "Test Issuing CA", now=start)
    leaf_key, other_key = pki.new_rsa_key(), pki.new_rsa_key()

    def leaf(cn: str, key: Any = leaf_key, **kwargs: Any) -> pki.IssuedCertificate:
        kwargs.setdefault("now", NOW - timedelta(days=30))
        kwargs.setdefault("days", 365)
        return pki.issue_signing_certificate(issuing, cn, key=key, **kwargs)

    revoked = leaf("Sở Nội vụ (revoked)", other_key)
    foreign_root = pki.make_root_ca("Unknown CA", now=start, key=other_key)
    crl = pki.make_crl(issuing, [(revoked.certificate.serial_number, NOW - timedelta(days=1))], now=NOW)
    return Certs(
        root=root,
        issuing=issuing,
        agency=leaf("Sở Tài chính", agency_code="000.00.01.H53"),
        other_agency=leaf("Sở Xây dựng", other_key, agency_code="000.00.02.H53"),
        expired=leaf("Expired", not_before=NOW - timedelta(days=400), not_after=NOW - timedelta(days=35)),
        not_yet_valid=leaf(
            "Future", not_before=NOW + timedelta(days=10), not_after=NOW + timedelta(days=400)
        ),
        revoked=revoked,
        encipherment=leaf("Encipherment only", key_usage="encipherment-only"),
        foreign=pki.issue_signing_certificate(foreign_root, "Foreign", now=start, key=leaf_key),
        trust=TrustStore.of(anchors=[root.certificate], crls=[crl]),
    )


# -- helpers ---------------------------------------------------------------------------------------


def sign(data: bytes, key: SigningKey, *, replace: bool = False) -> bytes:
    out = io.BytesIO()
    sign_package(data, out, key=key, replace=replace)
    return out.getvalue()


def verify(data: bytes, certs: Certs, **kwargs: Any) -> SignatureReport:
    kwargs.setdefault("trust", certs.trust)
    kwargs.setdefault("at", NOW)
    return verify_package(data, **kwargs)


def expect(found: SignatureReport, verdict: Verdict, reason: str) -> None:
    assert (found.verdict, found.reason) == (verdict, reason), found.message


def swap(data: bytes, old: bytes, new: bytes) -> bytes:
    """Replace the first ``old`` (which must be there)."""
    assert old in data, old
    return data.replace(old, new, 1)


def parsed(data: bytes) -> etree._Element:
    return etree.fromstring(data, etree.XMLParser(huge_tree=True))


def serialized(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def header_of(root: etree._Element) -> etree._Element:
    found = root.find(f"{q('edXMLEnvelope')}/{q('edXMLHeader')}")
    assert found is not None
    return found


def signature_of(root: etree._Element) -> etree._Element:
    found = header_of(root).find(q("Signature", DS))
    assert found is not None
    return found


def edited(data: bytes, change: Any) -> bytes:
    """Parse, let ``change(root)`` edit the tree, serialize again."""
    root = parsed(data)
    change(root)
    return serialized(root)


def ds(element: etree._Element, path: str) -> etree._Element:
    found = element.find(path, {"ds": DS})
    assert found is not None, path
    return found


def xmlsec_signed(
    data: bytes,
    key: Any,
    *,
    c14n: Any = C.TransformExclC14N,
    method: Any = C.TransformRsaSha256,
    digest: Any = C.TransformSha256,
    references: Sequence[tuple[str, Sequence[Any]]] = (("", (C.TransformEnveloped, C.TransformExclC14N)),),
    index: int | None = None,
    with_id: bool = False,
    chain: Sequence[x509.Certificate] = (),
) -> bytes:
    """A signature in edXMLHeader made with xmlsec directly, with the algorithms we never use.

    xmlsec writes the key's own certificate into X509Data; ``chain`` is added after it.
    """
    root = parsed(data)
    header = header_of(root)
    registered = []
    if with_id:
        message = header.find(q("MessageHeader"))
        assert message is not None
        message.set("Id", "x")
        registered.append(message)
    signature = xmlsec.template.create(root, c14n, method)
    if index is None:
        header.append(signature)
    else:
        header.insert(index, signature)
    for uri, transforms in references:
        reference = xmlsec.template.add_reference(signature, digest, uri=uri)
        for transform in transforms:
            xmlsec.template.add_transform(reference, transform)
    xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(signature))
    context = xmlsec.SignatureContext()
    context.key = key
    for element in registered:
        context.register_id(element, "Id")
    context.sign(signature)
    (x509_data,) = [e for e in signature.iter() if e.tag == q("X509Data", DS)]
    for certificate in chain:
        der = certificate.public_bytes(serialization.Encoding.DER)
        etree.SubElement(x509_data, q("X509Certificate", DS)).text = base64.b64encode(der).decode()
    return serialized(root)


@pytest.fixture(scope="module")
def signed(certs: Certs) -> bytes:
    """The package signed by the agency, its chain (issuing CA) in KeyInfo."""
    return sign(unsigned_package(), certs.key(certs.agency, certs.issuing))


# -- valid -----------------------------------------------------------------------------------------


def test_a_package_signed_through_a_chain_verifies_and_the_report_says_what_was_checked(
    certs: Certs, signed: bytes
) -> None:
    found = verify(signed, certs)
    expect(found, Verdict.VALID, "ok")
    assert found.signer is not None
    assert found.signer.sha256 == certs.agency.sha256
    assert found.signer.subject == certs.agency.subject
    assert found.chain == (certs.agency.subject, certs.issuing.subject, certs.root.subject)
    assert found.covered == COVERED
    assert found.signature_method == RSA_SHA256
    assert found.digest_methods == (SHA256,)
    assert found.canonicalization == EXC_C14N
    assert len(found.digests) == 1
    assert len(base64.b64decode(found.digests[0])) == 32
    assert found.certificates == tuple(
        base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode()
        for c in (certs.agency.certificate, certs.issuing.certificate)
    )
    assert not found.weak
    assert found.warnings == ()
    assert found.checked_at == "2025-03-01T08:00:00Z"


def test_a_registered_certificate_is_trusted_without_anchors(certs: Certs, signed: bytes) -> None:
    colons = ":".join(certs.agency.sha256[i : i + 2] for i in range(0, 64, 2)).upper()
    for pin in (certs.agency.sha256, colons):
        found = verify(signed, certs, trust=None, registered_signers=[pin, certs.other_agency.sha256])
        expect(found, Verdict.VALID, "ok")
        assert found.chain == (certs.agency.subject,)


def test_without_anchors_or_pins_the_signature_is_sound_but_untrusted(certs: Certs, signed: bytes) -> None:
    found = verify(signed, certs, trust=None)
    expect(found, Verdict.UNTRUSTED, "no-trust-anchors")
    assert found.covered == COVERED
    assert found.signer is not None


def test_verified_at_signing_time_it_is_valid_and_a_year_later_the_certificate_has_expired(
    certs: Certs, signed: bytes
) -> None:
    expect(verify(signed, certs, at=NOW), Verdict.VALID, "ok")
    later = verify(signed, certs, at=NOW + timedelta(days=400))
    expect(later, Verdict.UNTRUSTED, "certificate-expired")
    # the maths passed: the rest of the report is still there
    assert later.covered == COVERED
    assert later.signer is not None
    assert later.digests
    assert later.checked_at == "2026-04-05T08:00:00Z"


def test_an_unsigned_package_is_unsigned(certs: Certs) -> None:
    found = verify(unsigned_package(), certs)
    expect(found, Verdict.UNSIGNED, "no-signature")
    assert found.signer is None
    assert found.covered == ""


# -- the content changed ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new"),
    [
        pytest.param(f"<edXML:Subject>{SUBJECT}".encode(), b"<edXML:Subject>Evil subject", id="body-text"),
        pytest.param(ATTACHMENT[:8].encode(), b"AAAAAAAA", id="attachment-base64"),
        pytest.param(b"<edXML:OrganId>000.00.01.H53", b"<edXML:OrganId>000.00.09.H53", id="header-field"),
        pytest.param(b"<edXML:Paper>0</edXML:Paper>", b"<edXML:Paper>1</edXML:Paper>", id="trace-field"),
        pytest.param(
            b'<edXML:edXMLManifest version="1.0">', b'<edXML:edXMLManifest version="2.0">', id="attribute"
        ),
    ],
)
def test_any_change_to_the_content_is_a_digest_mismatch(
    certs: Certs, signed: bytes, old: bytes, new: bytes
) -> None:
    found = verify(swap(signed, old, new), certs)
    expect(found, Verdict.INVALID, "digest-mismatch")
    assert found.covered == ""
    assert found.signer is None
    assert found.signature_method == RSA_SHA256  # what the package claimed is still reported


def test_whitespace_and_serialisation_do_not_matter(certs: Certs, signed: bytes) -> None:
    """Re-serialising (another prefix spelling of empty elements, quotes) keeps the digest."""
    again = serialized(parsed(signed))
    assert again != signed
    expect(verify(again, certs), Verdict.VALID, "ok")


def test_a_tampered_signature_value_is_a_signature_value_mismatch(certs: Certs, signed: bytes) -> None:
    def flip(root: etree._Element) -> None:
        value = ds(signature_of(root), "ds:SignatureValue")
        raw = bytearray(base64.b64decode("".join((value.text or "").split())))
        raw[10] ^= 0x01
        value.text = base64.b64encode(bytes(raw)).decode()

    expect(verify(edited(signed, flip), certs), Verdict.INVALID, "signature-value-mismatch")


def test_a_changed_digest_method_breaks_the_signature_value_or_is_not_accepted(
    certs: Certs, signed: bytes
) -> None:
    # an accepted algorithm: SignedInfo no longer matches its SignatureValue
    sha512 = swap(signed, SHA256.encode(), b"http://www.w3.org/2001/04/xmlenc#sha512")
    expect(verify(sha512, certs), Verdict.INVALID, "signature-value-mismatch")
    # an algorithm outside the list is refused before any maths
    md5 = swap(signed, SHA256.encode(), b"http://www.w3.org/2001/04/xmldsig-more#md5")
    expect(verify(md5, certs), Verdict.INVALID, "unsupported-algorithm")


def test_a_digest_value_changed_alone_is_a_signature_value_mismatch(certs: Certs, signed: bytes) -> None:
    def change(root: etree._Element) -> None:
        value = ds(signature_of(root), "ds:SignedInfo/ds:Reference/ds:DigestValue")
        value.text = base64.b64encode(b"\x00" * 32).decode()

    expect(verify(edited(signed, change), certs), Verdict.INVALID, "signature-value-mismatch")


# -- broken signatures -----------------------------------------------------------------------------


def test_garbage_in_the_signature_value_is_malformed(certs: Certs, signed: bytes) -> None:
    def garbage(root: etree._Element) -> None:
        ds(signature_of(root), "ds:SignatureValue").text = "this is not base64 !!!"

    expect(verify(edited(signed, garbage), certs), Verdict.INVALID, "malformed-signature")


def test_a_signature_without_signed_info_is_malformed(certs: Certs, signed: bytes) -> None:
    def drop(root: etree._Element) -> None:
        signature = signature_of(root)
        signature.remove(ds(signature, "ds:SignedInfo"))

    expect(verify(edited(signed, drop), certs), Verdict.INVALID, "malformed-signature")


def test_elements_in_the_wrong_order_are_malformed(certs: Certs, signed: bytes) -> None:
    def reorder(root: etree._Element) -> None:
        signature = signature_of(root)
        signature.append(ds(signature, "ds:SignedInfo"))

    expect(verify(edited(signed, reorder), certs), Verdict.INVALID, "malformed-signature")


def test_a_signature_without_key_info_has_no_key(certs: Certs, signed: bytes) -> None:
    def drop(root: etree._Element) -> None:
        signature = signature_of(root)
        signature.remove(ds(signature, "ds:KeyInfo"))

    found = verify(edited(signed, drop), certs)
    expect(found, Verdict.INVALID, "missing-key-info")
    assert found.signature_method == RSA_SHA256


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        pytest.param(
            lambda s: [s.remove(child) for child in list(s)], "empty-signature", id="empty-signature"
        ),
        pytest.param(
            lambda s: setattr(ds(s, "ds:SignatureValue"), "text", "  "),
            "empty-signature-value",
            id="empty-signature-value",
        ),
        pytest.param(
            lambda s: setattr(ds(s, "ds:SignedInfo/ds:Reference/ds:DigestValue"), "text", None),
            "empty-signature-value",
            id="empty-digest-value",
        ),
        pytest.param(
            lambda s: setattr(ds(s, "ds:KeyInfo/ds:X509Data/ds:X509Certificate"), "text", "MIIFqTCCBJG"),
            "truncated-certificate",
            id="truncated-certificate",
        ),
    ],
)
def test_placeholders(certs: Certs, signed: bytes, change: Any, reason: str) -> None:
    found = verify(edited(signed, lambda root: change(signature_of(root))), certs)
    expect(found, Verdict.PLACEHOLDER, reason)


# -- certificates ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("which", "reason"),
    [
        ("expired", "certificate-expired"),
        ("not_yet_valid", "certificate-not-yet-valid"),
        ("revoked", "certificate-revoked"),
        ("encipherment", "key-usage"),
    ],
)
def test_certificates_that_must_not_sign(certs: Certs, which: str, reason: str) -> None:
    issued = getattr(certs, which)
    found = verify(sign(unsigned_package(), certs.key(issued, certs.issuing)), certs)
    expect(found, Verdict.UNTRUSTED, reason)
    assert found.covered == COVERED
    assert found.signer is not None
    assert found.signer.sha256 == issued.sha256


def test_a_certificate_from_an_unknown_ca_is_untrusted(certs: Certs) -> None:
    found = verify(sign(unsigned_package(), certs.key(certs.foreign)), certs)
    expect(found, Verdict.UNTRUSTED, "chain-untrusted")


def test_a_leaf_without_its_chain_in_key_info_does_not_chain(certs: Certs) -> None:
    """The issuing CA is not configured as an intermediate: the package must carry it."""
    found = verify(sign(unsigned_package(), certs.key(certs.agency)), certs)
    expect(found, Verdict.UNTRUSTED, "chain-untrusted")
    with_intermediate = TrustStore.of(
        anchors=[certs.root.certificate], intermediates=[certs.issuing.certificate]
    )
    found = verify(sign(unsigned_package(), certs.key(certs.agency)), certs, trust=with_intermediate)
    expect(found, Verdict.VALID, "ok")


def test_a_package_signed_by_another_agency_than_the_registered_one(certs: Certs) -> None:
    by_other = sign(unsigned_package(), certs.key(certs.other_agency, certs.issuing))
    expect(verify(by_other, certs), Verdict.VALID, "ok")  # it does chain to the anchor...
    found = verify(by_other, certs, registered_signers=[certs.agency.sha256])
    expect(found, Verdict.UNTRUSTED, "signer-not-registered")  # ...but it is not the From agency's
    assert found.signer is not None
    assert found.signer.sha256 == certs.other_agency.sha256


# -- algorithms ------------------------------------------------------------------------------------


def test_sha1_is_weak_invalid_by_default_and_valid_when_legacy_is_allowed(certs: Certs) -> None:
    key = certs.key(certs.agency, certs.issuing)
    data = xmlsec_signed(
        unsigned_package(), key.xmlsec_key, method=C.TransformRsaSha1, digest=C.TransformSha1, chain=key.chain
    )
    found = verify(data, certs)
    expect(found, Verdict.INVALID, "weak-algorithm")
    assert found.weak
    assert found.signature_method == "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
    legacy = verify(data, certs, allow_legacy=True)
    expect(legacy, Verdict.VALID, "ok")
    assert legacy.weak
    assert legacy.digest_methods == ("http://www.w3.org/2000/09/xmldsig#sha1",)


def test_sha256_with_a_sha1_digest_is_still_weak(certs: Certs) -> None:
    key = certs.key(certs.agency, certs.issuing)
    data = xmlsec_signed(unsigned_package(), key.xmlsec_key, digest=C.TransformSha1, chain=key.chain)
    expect(verify(data, certs), Verdict.INVALID, "weak-algorithm")


@pytest.mark.parametrize(
    ("c14n", "method", "digest"),
    [
        (C.TransformInclC14N, C.TransformRsaSha512, C.TransformSha512),
        (C.TransformInclC14NWithComments, C.TransformRsaSha384, C.TransformSha384),
        (C.TransformInclC14N11, C.TransformRsaSha256, C.TransformSha256),
        (C.TransformExclC14NWithComments, C.TransformRsaSha256, C.TransformSha384),
    ],
    ids=["c14n-sha512", "c14n-comments-sha384", "c14n11", "exc-c14n-comments"],
)
def test_other_accepted_algorithms_verify_and_a_change_is_still_told_apart(
    certs: Certs, c14n: Any, method: Any, digest: Any
) -> None:
    """SignedInfo canonicalised by lxml (inclusive, with the ancestors' namespaces) matches xmlsec's."""
    key = certs.key(certs.agency, certs.issuing)
    data = xmlsec_signed(
        unsigned_package(), key.xmlsec_key, c14n=c14n, method=method, digest=digest, chain=key.chain
    )
    found = verify(data, certs)
    expect(found, Verdict.VALID, "ok")
    assert found.canonicalization == c14n.href
    tampered = swap(data, f"<edXML:Subject>{SUBJECT}".encode(), b"<edXML:Subject>Evil")
    expect(verify(tampered, certs), Verdict.INVALID, "digest-mismatch")


def test_an_ecdsa_signature_verifies(certs: Certs) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "ECDSA signer")]))
        .issuer_name(certs.issuing.certificate.subject)
        .public_key(ec_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(certs.issuing.key, hashes.SHA256())
    )
    key = xmlsec.Key.from_memory(
        ec_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        C.KeyDataFormatPem,
    )
    key.load_cert_from_memory(certificate.public_bytes(serialization.Encoding.DER), C.KeyDataFormatCertDer)
    data = xmlsec_signed(unsigned_package(), key, method=C.TransformEcdsaSha256)
    sha256 = hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()
    found = verify(data, certs, trust=None, registered_signers=[sha256])
    expect(found, Verdict.VALID, "ok")
    assert found.signature_method == C.TransformEcdsaSha256.href
    tampered_value = edited(data, lambda root: _flip_last_byte(ds(signature_of(root), "ds:SignatureValue")))
    expect(
        verify(tampered_value, certs, trust=None, registered_signers=[sha256]),
        Verdict.INVALID,
        "signature-value-mismatch",
    )
    tampered = swap(data, f"<edXML:Subject>{SUBJECT}".encode(), b"<edXML:Subject>Evil")
    expect(
        verify(tampered, certs, trust=None, registered_signers=[sha256]), Verdict.INVALID, "digest-mismatch"
    )


def _flip_last_byte(value: etree._Element) -> None:
    raw = bytearray(base64.b64decode("".join((value.text or "").split())))
    raw[-1] ^= 0x01
    value.text = base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        pytest.param(
            lambda t: t.addnext(etree.Element(q("Transform", DS), Algorithm=XPATH)),
            "unsupported-algorithm",
            id="xpath-transform-added",
        ),
        pytest.param(
            # an unknown transform is named before the missing enveloped one
            lambda t: t.set("Algorithm", XPATH),
            "unsupported-algorithm",
            id="enveloped-replaced-by-xpath",
        ),
        pytest.param(
            lambda t: t.getnext().set("Algorithm", VPCP_EXC_C14N), "unsupported-algorithm", id="vpcp-c14n-uri"
        ),
        pytest.param(
            lambda t: t.getnext().set("Algorithm", "http://www.w3.org/TR/1999/REC-xslt-19991116"),
            "unsupported-algorithm",
            id="xslt",
        ),
        pytest.param(
            lambda t: t.getparent().remove(t), "reference-not-document", id="no-enveloped-transform"
        ),
        pytest.param(
            lambda t: t.getparent().append(copy.deepcopy(t)), "unsupported-algorithm", id="enveloped-twice"
        ),
    ],
)
def test_transforms_outside_the_accepted_chain(certs: Certs, signed: bytes, edit: Any, reason: str) -> None:
    def change(root: etree._Element) -> None:
        enveloped = ds(signature_of(root), "ds:SignedInfo/ds:Reference/ds:Transforms/ds:Transform")
        edit(enveloped)

    expect(verify(edited(signed, change), certs), Verdict.INVALID, reason)


def test_an_xpath_transform_signed_with_xmlsec_is_refused_before_xmlsec_runs(certs: Certs) -> None:
    key = certs.key(certs.agency, certs.issuing)
    root = parsed(unsigned_package())
    signature = xmlsec.template.create(root, C.TransformExclC14N, C.TransformRsaSha256)
    header_of(root).append(signature)
    reference = xmlsec.template.add_reference(signature, C.TransformSha256, uri="")
    xmlsec.template.add_transform(reference, C.TransformEnveloped)
    xpath = xmlsec.template.add_transform(reference, C.TransformXPath)
    etree.SubElement(xpath, q("XPath", DS)).text = "not(ancestor-or-self::*[local-name()='Subject'])"
    xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(signature))
    context = xmlsec.SignatureContext()
    context.key = key.xmlsec_key
    context.sign(signature)
    data = serialized(root)
    # The XPath hides the Subject from the digest: a changed Subject would still "verify" in xmlsec.
    tampered = swap(data, f"<edXML:Subject>{SUBJECT}".encode(), b"<edXML:Subject>Evil")
    for candidate in (data, tampered):
        expect(verify(candidate, certs), Verdict.INVALID, "unsupported-algorithm")


# -- signature wrapping ----------------------------------------------------------------------------


def test_a_reference_to_an_element_by_id_is_not_the_document(certs: Certs) -> None:
    key = certs.key(certs.agency, certs.issuing)
    data = xmlsec_signed(
        unsigned_package(),
        key.xmlsec_key,
        references=[("#x", (C.TransformExclC14N,))],
        with_id=True,
    )
    expect(verify(data, certs), Verdict.INVALID, "reference-not-document")


def test_a_second_reference_is_not_accepted(certs: Certs) -> None:
    key = certs.key(certs.agency, certs.issuing)
    data = xmlsec_signed(
        unsigned_package(),
        key.xmlsec_key,
        references=[("", (C.TransformEnveloped, C.TransformExclC14N)), ("#x", (C.TransformExclC14N,))],
        with_id=True,
    )
    expect(verify(data, certs), Verdict.INVALID, "reference-not-document")


def test_an_external_reference_is_not_the_document(certs: Certs, signed: bytes) -> None:
    def external(root: etree._Element) -> None:
        ds(signature_of(root), "ds:SignedInfo/ds:Reference").set("URI", "http://example.invalid/x.xml")

    expect(verify(edited(signed, external), certs), Verdict.INVALID, "reference-not-document")


def test_a_valid_signature_copied_from_another_package(certs: Certs, signed: bytes) -> None:
    evil = unsigned_package(subject="Quyết định giả mạo")
    stolen = signature_of(parsed(signed))

    def paste(root: etree._Element) -> None:
        header_of(root).append(copy.deepcopy(stolen))

    expect(verify(edited(evil, paste), certs), Verdict.INVALID, "digest-mismatch")


def test_evil_content_added_as_a_new_sibling_element(certs: Certs, signed: bytes) -> None:
    def add(root: etree._Element) -> None:
        message = header_of(root).find(q("MessageHeader"))
        assert message is not None
        evil_to = etree.SubElement(message, q("To"))
        etree.SubElement(evil_to, q("OrganId")).text = "000.00.66.H99"
        envelope = root.find(q("edXMLEnvelope"))
        assert envelope is not None
        envelope.append(copy.deepcopy(header_of(root)))  # a whole second header, signature included

    expect(verify(edited(signed, add), certs), Verdict.INVALID, "digest-mismatch")


def test_a_signature_moved_out_of_the_header_is_misplaced(certs: Certs, signed: bytes) -> None:
    def move(root: etree._Element) -> None:
        signature = signature_of(root)
        body = root.find(f"{q('edXMLEnvelope')}/{q('edXMLBody')}")
        assert body is not None
        body.append(signature)

    found = verify(edited(signed, move), certs)
    expect(found, Verdict.INVALID, "misplaced-signature")


def test_two_signatures_in_the_header(certs: Certs, signed: bytes) -> None:
    def duplicate(root: etree._Element) -> None:
        header_of(root).append(copy.deepcopy(signature_of(root)))

    expect(verify(edited(signed, duplicate), certs), Verdict.INVALID, "multiple-signatures")


# -- namespace and placement -----------------------------------------------------------------------


def test_a_signature_that_lost_its_xmldsig_namespace_still_verifies_with_a_warning(
    certs: Certs, signed: bytes
) -> None:
    """What a re-serialising hub does to ``<Signature xmlns="…xmldsig#">``: it lands in the QCVN namespace."""
    stripped = swap(signed, f'<Signature xmlns="{DS}">'.encode(), b"<Signature>")
    assert parsed(stripped).find(f".//{q('Signature')}") is not None
    found = verify(stripped, certs)
    expect(found, Verdict.VALID, "ok")
    assert found.warnings == ("signature-namespace",)
    # and a change to the content is still seen
    tampered = swap(stripped, f"<edXML:Subject>{SUBJECT}".encode(), b"<edXML:Subject>Evil")
    expect(verify(tampered, certs), Verdict.INVALID, "digest-mismatch")


def test_a_signature_that_is_not_the_last_child_verifies_with_a_warning(certs: Certs) -> None:
    key = certs.key(certs.agency, certs.issuing)
    data = xmlsec_signed(unsigned_package(), key.xmlsec_key, index=0, chain=key.chain)
    found = verify(data, certs)
    expect(found, Verdict.VALID, "ok")
    assert found.warnings == ("signature-not-last",)


def test_a_document_that_is_not_edxml(certs: Certs, signed: bytes) -> None:
    expect(verify(b"<root><a>1</a></root>", certs), Verdict.UNSIGNED, "no-signature")
    signature = etree.tostring(signature_of(parsed(signed)))
    found = verify(b"<root>" + signature + b"</root>", certs)
    expect(found, Verdict.INVALID, "misplaced-signature")


def test_input_that_is_not_xml_raises(certs: Certs) -> None:
    with pytest.raises(XmlInputError):
        verify(b"%PDF-1.7 not xml", certs)
    with pytest.raises(XmlInputError) as raised:
        verify(b'<!DOCTYPE edXML [<!ENTITY x "y">]><edXML>&x;</edXML>', certs)
    assert raised.value.code == "Client.XmlDtdForbidden"
    with pytest.raises(XmlInputError) as too_large:
        verify(unsigned_package(), certs, max_bytes=1000)
    assert too_large.value.code == "Client.XmlTooLarge"


# -- reports ---------------------------------------------------------------------------------------


def test_reports_survive_a_json_round_trip(certs: Certs, signed: bytes) -> None:
    for found in (
        verify(signed, certs),
        verify(signed, certs, at=NOW + timedelta(days=400)),
        verify(swap(signed, ATTACHMENT[:8].encode(), b"AAAAAAAA"), certs),
        verify(unsigned_package(), certs),
    ):
        text = found.to_json()
        assert json.loads(text)["verdict"] == found.verdict.value
        assert SignatureReport.from_json(text) == found


# -- sign_package ----------------------------------------------------------------------------------


def test_the_signature_is_the_last_child_of_the_header_in_the_xmldsig_namespace(signed: bytes) -> None:
    header = header_of(parsed(signed))
    last = header[-1]
    assert last.tag == q("Signature", DS)
    assert last.prefix is None
    assert [child.tag for child in header].count(q("Signature", DS)) == 1
    transforms = [t.get("Algorithm") for t in last.iter(q("Transform", DS))]
    assert transforms == ["http://www.w3.org/2000/09/xmldsig#enveloped-signature", EXC_C14N]
    assert ds(last, "ds:SignedInfo/ds:Reference").get("URI") == ""


def test_the_signed_package_reads_as_before(certs: Certs, signed: bytes) -> None:
    before = read_package(unsigned_package())
    after = read_package(signed)
    assert [w.code for w in after.warnings] == [w.code for w in before.warnings]
    assert after.package.signature == SignatureInfo(True, RSA_SHA256, SHA256, True)
    assert after.package == dataclasses.replace(before.package, signature=after.package.signature)


def test_signing_refuses_an_already_signed_package_unless_replacing(certs: Certs, signed: bytes) -> None:
    with pytest.raises(ClientError) as raised:
        sign(signed, certs.key(certs.other_agency, certs.issuing))
    assert raised.value.code == "Client.AlreadySigned"
    again = sign(signed, certs.key(certs.other_agency, certs.issuing), replace=True)
    assert len(parsed(again).findall(f".//{q('Signature', DS)}")) == 1
    found = verify(again, certs)
    expect(found, Verdict.VALID, "ok")
    assert found.signer is not None
    assert found.signer.sha256 == certs.other_agency.sha256
    # the placeholder signatures of real packages (in the QCVN namespace) are replaced too
    placeholder = swap(signed, f'<Signature xmlns="{DS}">'.encode(), b"<Signature>")
    with pytest.raises(ClientError):
        sign(placeholder, certs.key(certs.agency, certs.issuing))
    expect(
        verify(sign(placeholder, certs.key(certs.agency, certs.issuing), replace=True), certs),
        Verdict.VALID,
        "ok",
    )


def test_signing_writes_to_a_path_and_reports_what_it_wrote(certs: Certs, tmp_path: Path) -> None:
    source = tmp_path / "in.edxml"
    source.write_bytes(unsigned_package())
    target = tmp_path / "out.edxml"
    result = sign_package(source, target, key=certs.key(certs.agency, certs.issuing))
    data = target.read_bytes()
    assert result == SignedPackage(hashlib.sha256(data).hexdigest(), len(data))
    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<edXML')
    expect(verify_package(target, trust=certs.trust, at=NOW), Verdict.VALID, "ok")


def test_signing_refuses_what_is_not_an_edoc_package(certs: Certs) -> None:
    key = certs.key(certs.agency, certs.issuing)
    with pytest.raises(EdxmlInvalid) as wrong_root:
        sign(b"<Envelope/>", key)
    assert wrong_root.value.code == "Client.EdxmlWrongRoot"
    with pytest.raises(EdxmlInvalid) as no_header:
        sign(f'<edXML xmlns="{EDXML}"><edXMLEnvelope/></edXML>'.encode(), key)
    assert no_header.value.code == "Client.EdxmlMissingElement"
    status = (
        f'<edXML xmlns="{EDXML}"><edXMLEnvelope><edXMLHeader><MessageHeader>'
        "<StatusCode>01</StatusCode></MessageHeader></edXMLHeader></edXMLEnvelope></edXML>"
    ).encode()
    with pytest.raises(EdxmlInvalid) as is_status:
        sign(status, key)
    assert "status package" in is_status.value.message
    with pytest.raises(XmlInputError):
        sign(b"not xml at all", key)


def test_large_attachments_are_verified_in_pieces(certs: Certs) -> None:
    """Over 1 MiB of base64: the text is rebuilt as several text nodes; every piece is covered."""
    big = base64.b64encode(bytes(range(256)) * 9300).decode()  # over 3 MiB of base64: 4 pieces
    assert len(big) > 3 * (1 << 20)
    data = sign(unsigned_package(attachment=big), certs.key(certs.agency, certs.issuing))
    expect(verify(data, certs), Verdict.VALID, "ok")
    for offset in (10, (1 << 20) + 10, len(big) - 40):  # in the first, second and last piece
        original = big[offset : offset + 8].encode()
        changed = b"ABCDEFGH" if original != b"ABCDEFGH" else b"HGFEDCBA"
        at = data.index(big[: offset + 8].encode()) + offset
        tampered = data[:at] + changed + data[at + 8 :]
        expect(verify(tampered, certs), Verdict.INVALID, "digest-mismatch")


def test_an_attachment_element_holding_elements_is_read_whole(certs: Certs) -> None:
    """No real package does this; the pieces cannot be rebuilt, so the document is parsed again whole."""
    odd = swap(
        unsigned_package(),
        b"</edXML:ContentTransferEncoded>",
        b"<edXML:Extra>QUJD</edXML:Extra>RA==</edXML:ContentTransferEncoded>",
    )
    data = sign(odd, certs.key(certs.agency, certs.issuing))
    assert b"<edXML:Extra>QUJD</edXML:Extra>RA==" in data
    expect(verify(data, certs), Verdict.VALID, "ok")
    moved = swap(data, b"<edXML:Extra>QUJD</edXML:Extra>RA==", b"<edXML:Extra></edXML:Extra>QUJDRA==")
    expect(verify(moved, certs), Verdict.INVALID, "digest-mismatch")


# -- memory ----------------------------------------------------------------------------------------

_MEMORY_PROBE = textwrap.dedent(
    """
    import json, sys
    from datetime import UTC, datetime
    from pathlib import Path
    from esb.security.package_signature import sign_package, verify_package
    from esb.security.signing_key import SigningKey

    def status(field):
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024

    step, source, target, keys = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
    now = datetime(2025, 3, 2, tzinfo=UTC)  # the test's certificate is valid from 2025-03-01 08:00
    key = SigningKey.from_files(keys / "key.pem", keys / "cert.pem")
    base = status("VmRSS")  # the peak so far (imports, one key) is below base + the package
    if step == "sign":
        sign_package(source, target, key=key)
    else:
        found = verify_package(target, trust=None, at=now, registered_signers=[key.sha256])
        assert found.reason == "ok", found
    print(json.dumps(status("VmHWM") - base))
    """
)


def _growth(step: str, source: Path, target: Path, keys: Path) -> int:
    """Peak RSS growth of one call, in a fresh process (so nothing earlier counts)."""
    result = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, step, str(source), str(target), str(keys)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return int(json.loads(result.stdout))


@pytest.mark.slow
def test_memory_stays_near_the_package_size(tmp_path: Path) -> None:
    """A 50 MB package: peak RSS growth below 1.5x its size for signing and verifying (module doc)."""
    block = base64.b64encode(bytes(range(256)) * 3072)  # 1 MiB of base64
    source = tmp_path / "package.edxml"
    head, tail = unsigned_package(attachment="@@").split(b"@@")
    with source.open("wb") as out:
        out.write(head)
        for _ in range(48):
            out.write(block)
        out.write(tail)
    size = source.stat().st_size
    target = tmp_path / "signed.edxml"
    leaf = pki.make_self_signed_signing_certificate("Leaf", now=NOW, days=30)
    (tmp_path / "key.pem").write_bytes(leaf.key_pem())
    (tmp_path / "cert.pem").write_bytes(leaf.certificate_pem())
    signing = _growth("sign", source, target, tmp_path)
    verifying = _growth("verify", source, target, tmp_path)
    assert signing < 1.5 * size, (signing, size)
    assert verifying < 1.5 * size, (verifying, size)
