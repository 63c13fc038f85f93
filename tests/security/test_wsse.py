"""WS-Security verification: the attack matrix, every case through a real zeep-signed envelope.

Each refusal asserts its exact stable code.  Envelopes are edited after signing the way an
attacker would edit the bytes, then go through the same hardened parser as a real request.
"""

from __future__ import annotations

import base64
import copy
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import xmlsec
from lxml import etree

from esb.security import wsse
from esb.security.wsse import (
    SecurityToken,
    VerifiedSecurity,
    WsseError,
    WssePolicy,
    find_security_header,
    read_security_token,
    verify_security,
)
from esb.xml_processing.namespaces import DS, SOAP11_ENV, WSSE, WSU
from esb.xml_processing.parsing import parse_untrusted

XML_NS = "http://www.w3.org/XML/1998/namespace"
EVIL_NS = "urn:evil"
XPATH = "http://www.w3.org/TR/1999/REC-xpath-19991116"
XSLT = "http://www.w3.org/TR/1999/REC-xslt-19991116"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
STR_TRANSFORM = (
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#STR-Transform"
)
INCLUSIVE_C14N = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
EXC_C14N_WITH_COMMENTS = "http://www.w3.org/2001/10/xml-exc-c14n#WithComments"

Resign = Callable[..., etree._Element]


# ------------------------------------------------------------------------------------------ helpers


def q(namespace: str, local: str) -> str:
    return f"{{{namespace}}}{local}"


def reparse(envelope: etree._Element) -> etree._Element:
    return parse_untrusted(etree.tostring(envelope))


def one(parent: etree._Element, path: str) -> etree._Element:
    found = parent.find(path)
    assert found is not None, path
    return found


def header_of(envelope: etree._Element) -> etree._Element:
    return one(envelope, q(SOAP11_ENV, "Header"))


def body_of(envelope: etree._Element) -> etree._Element:
    return one(envelope, q(SOAP11_ENV, "Body"))


def security_of(envelope: etree._Element) -> etree._Element:
    return one(header_of(envelope), q(WSSE, "Security"))


def signature_of(envelope: etree._Element) -> etree._Element:
    return one(security_of(envelope), q(DS, "Signature"))


def timestamp_of(envelope: etree._Element) -> etree._Element:
    return one(security_of(envelope), q(WSU, "Timestamp"))


def token_of(envelope: etree._Element) -> etree._Element:
    return one(security_of(envelope), q(WSSE, "BinarySecurityToken"))


def first_transforms(envelope: etree._Element) -> etree._Element:
    return one(signature_of(envelope), f"{q(DS, 'SignedInfo')}/{q(DS, 'Reference')}/{q(DS, 'Transforms')}")


def evil_body(wsu_id: str | None = None) -> etree._Element:
    body = etree.Element(q(SOAP11_ENV, "Body"))
    if wsu_id is not None:
        body.set(q(WSU, "Id"), wsu_id)
    etree.SubElement(etree.SubElement(body, q(EVIL_NS, "SendPackage")), q(EVIL_NS, "text")).text = "evil"
    return body


def token_for(certificate_der: bytes) -> SecurityToken:
    return SecurityToken(certificate_der, hashlib.sha256(certificate_der).hexdigest())


def verify(
    envelope: etree._Element,
    token: SecurityToken | None = None,
    *,
    now: datetime | None = None,
    policy: WssePolicy | None = None,
) -> VerifiedSecurity:
    """As the service does it: read the claimed token, then verify (pinning is the caller's job)."""
    return verify_security(
        envelope,
        token or read_security_token(envelope),
        now=now or datetime.now(UTC),
        policy=policy or WssePolicy(),
    )


def refused(code: str, call: Callable[[], object]) -> WsseError:
    with pytest.raises(WsseError) as caught:
        call()
    assert caught.value.code == code, caught.value
    return caught.value


# --------------------------------------------------------------------------------------- accepted


def test_valid_request_is_accepted(sign_request, pki) -> None:
    envelope = sign_request()
    token = read_security_token(envelope)
    assert token.certificate_der == pki.client.certificate_der
    assert token.certificate_sha256 == pki.client.sha256

    verified = verify_security(envelope, token, now=datetime.now(UTC))

    assert verified.certificate_sha256 == hashlib.sha256(pki.client.certificate_der).hexdigest()
    assert verified.created.utcoffset() == timedelta(0)
    assert verified.expires.utcoffset() == timedelta(0)
    assert verified.expires - verified.created == timedelta(minutes=5)
    assert verified.algorithms == (wsse.RSA_SHA256, wsse.SHA256)
    signature_value = base64.b64decode(one(signature_of(envelope), q(DS, "SignatureValue")).text or "")
    assert verified.signature_digest == hashlib.sha256(signature_value).hexdigest()


def test_find_security_header_returns_the_security_element(sign_request) -> None:
    envelope = sign_request()
    assert find_security_header(envelope) is security_of(envelope)


def test_two_signatures_have_different_replay_keys(sign_request) -> None:
    assert verify(sign_request()).signature_digest != verify(sign_request()).signature_digest


def test_verifying_the_same_tree_twice_gives_the_same_result(sign_request) -> None:
    envelope = sign_request()
    assert verify(envelope) == verify(envelope)


def test_clock_skew_is_tolerated(sign_request) -> None:
    now = datetime.now(UTC)
    verify(sign_request(created=now + timedelta(minutes=4)), now=now)
    verify(sign_request(created=now - timedelta(minutes=10), lifetime=timedelta(minutes=6)), now=now)


def test_inclusive_namespaces_prefix_list_is_accepted(sign_request, resign, pki) -> None:
    envelope = sign_request()
    for transform in signature_of(envelope).iter(q(DS, "Transform")):
        xmlsec.template.transform_add_c14n_inclusive_namespaces(transform, ["soap", "m"])
    canonicalization = one(signature_of(envelope), f"{q(DS, 'SignedInfo')}/{q(DS, 'CanonicalizationMethod')}")
    xmlsec.template.transform_add_c14n_inclusive_namespaces(canonicalization, "soap")
    envelope = resign(envelope, pki.client)
    assert signature_of(envelope).find(f".//{q(wsse.EXC_C14N, 'InclusiveNamespaces')}") is not None

    assert verify(envelope).certificate_sha256 == pki.client.sha256


def test_sha1_is_accepted_when_the_operator_allows_it(sign_request) -> None:
    envelope = sign_request(signature_method=None, digest_method=None)  # zeep's defaults
    verified = verify(envelope, policy=WssePolicy(allow_sha1=True))
    assert verified.algorithms == (wsse.RSA_SHA1, wsse.SHA1)


# ------------------------------------------------------------------------------- tampering, keys


def test_body_tampered_after_signing(sign_request) -> None:
    envelope = sign_request(text="hello")
    one(body_of(envelope), ".//{*}text").text = "tampered"
    error = refused("Client.WsseSignatureInvalid", lambda: verify(reparse(envelope)))
    assert "tampered" not in str(error)


def test_timestamp_tampered_after_signing(sign_request) -> None:
    envelope = sign_request()
    expires = one(timestamp_of(envelope), q(WSU, "Expires"))
    later = datetime.now(UTC) + timedelta(minutes=20)
    expires.text = later.strftime("%Y-%m-%dT%H:%M:%SZ")
    refused("Client.WsseSignatureInvalid", lambda: verify(reparse(envelope)))


def test_security_header_stripped(sign_request) -> None:
    envelope = sign_request()
    header_of(envelope).remove(security_of(envelope))
    envelope = reparse(envelope)
    assert find_security_header(envelope) is None
    refused("Client.WsseMalformed", lambda: read_security_token(envelope))


def test_signed_by_attacker_with_the_same_cn(sign_request, pki) -> None:
    envelope = sign_request(pki.attacker)
    claimed = read_security_token(envelope)
    assert claimed.certificate_sha256 != pki.client.sha256  # the caller's pin lookup fails here
    # ... and a caller that verifies with the registered certificate instead refuses it too
    refused("Client.WsseSignatureInvalid", lambda: verify(envelope, token_for(pki.client.certificate_der)))


def test_verifying_with_another_certificate_fails(sign_request, pki) -> None:
    envelope = sign_request(pki.client)
    refused("Client.WsseSignatureInvalid", lambda: verify(envelope, token_for(pki.attacker.certificate_der)))


def test_attacker_swaps_the_binary_security_token(sign_request, pki) -> None:
    envelope = sign_request(pki.attacker)
    token_of(envelope).text = base64.b64encode(pki.client.certificate_der).decode()
    envelope = reparse(envelope)
    assert read_security_token(envelope).certificate_sha256 == pki.client.sha256
    refused("Client.WsseSignatureInvalid", lambda: verify(envelope))


def test_expired_certificate(sign_request, pki) -> None:
    refused("Client.WsseCertificateExpired", lambda: verify(sign_request(pki.expired)))


def test_certificate_not_yet_valid(sign_request, pki) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=30)
    envelope = sign_request(pki.client, created=long_ago)
    refused("Client.WsseCertificateExpired", lambda: verify(envelope, now=long_ago))


# ------------------------------------------------------------------------------- signature wrapping


def test_xsw_signed_body_moved_into_header_and_evil_body_without_id(sign_request) -> None:
    envelope = sign_request()
    header_of(envelope).append(body_of(envelope))
    envelope.append(evil_body())
    envelope = reparse(envelope)
    read_security_token(envelope)  # structurally fine: only the identity check catches it
    refused("Client.WsseNotSigned", lambda: verify(envelope))


def test_xsw_signed_body_wrapped_in_a_custom_header(sign_request) -> None:
    envelope = sign_request()
    wrapper = etree.SubElement(header_of(envelope), q(EVIL_NS, "Wrapper"))
    wrapper.append(body_of(envelope))
    envelope.append(evil_body())
    refused("Client.WsseNotSigned", lambda: verify(reparse(envelope)))


def test_xsw_evil_body_with_the_same_id_placed_first(sign_request) -> None:
    envelope = sign_request()
    body = body_of(envelope)
    body.addprevious(evil_body(body.get(q(WSU, "Id"))))
    envelope = reparse(envelope)
    refused("Client.WsseDuplicateId", lambda: read_security_token(envelope))
    refused("Client.WsseDuplicateId", lambda: verify(envelope, token_for(b"unused")))


def test_xsw_signed_body_moved_and_evil_body_reuses_its_id(sign_request) -> None:
    envelope = sign_request()
    body = body_of(envelope)
    header_of(envelope).append(body)
    envelope.append(evil_body(body.get(q(WSU, "Id"))))
    refused("Client.WsseDuplicateId", lambda: verify(reparse(envelope)))


@pytest.mark.parametrize("attribute", ["Id", "ID", "id", q(XML_NS, "id"), q(EVIL_NS, "Id")])
def test_any_id_attribute_reusing_a_signed_id_is_refused(sign_request, attribute) -> None:
    envelope = sign_request()
    decoy = etree.SubElement(header_of(envelope), q(EVIL_NS, "Decoy"))
    decoy.set(attribute, body_of(envelope).get(q(WSU, "Id")) or "")
    refused("Client.WsseDuplicateId", lambda: verify(reparse(envelope)))


def test_xsw_signed_timestamp_moved_and_evil_timestamp_without_id(sign_request) -> None:
    envelope = sign_request(created=datetime.now(UTC) - timedelta(hours=2))
    security, timestamp = security_of(envelope), timestamp_of(envelope)
    etree.SubElement(header_of(envelope), q(EVIL_NS, "Wrapper")).append(timestamp)
    fresh = copy.deepcopy(timestamp)
    del fresh.attrib[q(WSU, "Id")]
    security.append(fresh)
    refused("Client.WsseNotSigned", lambda: verify(reparse(envelope)))


# --------------------------------------------------------------------------------------- structure


def test_extra_signature_inside_body(sign_request) -> None:
    envelope = sign_request()
    body_of(envelope).append(copy.deepcopy(signature_of(envelope)))
    refused("Client.WsseMalformed", lambda: verify(reparse(envelope)))


def test_signature_outside_security(sign_request) -> None:
    envelope = sign_request()
    header_of(envelope).append(signature_of(envelope))
    refused("Client.WsseMalformed", lambda: verify(reparse(envelope)))


def test_two_security_headers(sign_request) -> None:
    envelope = sign_request()
    etree.SubElement(header_of(envelope), q(WSSE, "Security"))
    refused("Client.WsseMalformed", lambda: verify(reparse(envelope)))


def test_two_soap_headers(sign_request) -> None:
    envelope = sign_request()
    header_of(envelope).addnext(etree.Element(q(SOAP11_ENV, "Header")))
    refused("Client.WsseMalformed", lambda: verify(reparse(envelope)))


def test_not_a_soap11_envelope() -> None:
    envelope = parse_untrusted(
        b'<Envelope xmlns="http://www.w3.org/2003/05/soap-envelope"><Body/></Envelope>'
    )
    assert find_security_header(envelope) is None
    refused("Client.WsseMalformed", lambda: read_security_token(envelope))


def test_missing_timestamp(sign_request) -> None:
    envelope = sign_request(timestamp=False)
    refused("Client.WsseMalformed", lambda: read_security_token(envelope))
    refused("Client.WsseMalformed", lambda: verify(envelope, token_for(b"unused")))


def test_timestamp_outside_security(sign_request) -> None:
    envelope = sign_request()
    header_of(envelope).append(timestamp_of(envelope))
    refused("Client.WsseMalformed", lambda: verify(reparse(envelope)))


def test_timestamp_inserted_after_signing_is_not_signed(sign_request) -> None:
    envelope = sign_request(timestamp=False)
    now = datetime.now(UTC)
    timestamp = etree.SubElement(security_of(envelope), q(WSU, "Timestamp"), {q(WSU, "Id"): "ts-1"})
    etree.SubElement(timestamp, q(WSU, "Created")).text = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    etree.SubElement(timestamp, q(WSU, "Expires")).text = (now + timedelta(minutes=5)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    refused("Client.WsseNotSigned", lambda: verify(reparse(envelope)))


@pytest.mark.parametrize(
    "value", ["yesterday", "2026-01-01T00:00:00", "2026-13-01T00:00:00Z", "20260101T000000Z"]
)
def test_unreadable_timestamp_created(sign_request, value) -> None:
    envelope = sign_request()
    one(timestamp_of(envelope), q(WSU, "Created")).text = value
    refused("Client.WsseMalformed", lambda: verify(reparse(envelope)))


def test_garbage_base64_in_binary_security_token(sign_request) -> None:
    envelope = sign_request()
    token_of(envelope).text = "MIIC!!not*base64"
    refused("Client.WsseMalformed", lambda: read_security_token(reparse(envelope)))


def test_binary_security_token_that_is_not_a_certificate(sign_request) -> None:
    envelope = sign_request()
    token_of(envelope).text = base64.b64encode(b"not a certificate").decode()
    refused("Client.WsseMalformed", lambda: read_security_token(reparse(envelope)))


def test_binary_security_token_of_another_type(sign_request) -> None:
    envelope = sign_request()
    token_of(envelope).set("ValueType", "urn:some-other-token")
    refused("Client.WsseMalformed", lambda: read_security_token(reparse(envelope)))


def test_token_reference_to_an_element_outside_security(sign_request) -> None:
    envelope = sign_request()
    header_of(envelope).append(token_of(envelope))
    refused("Client.WsseMalformed", lambda: read_security_token(reparse(envelope)))


def test_garbage_signature_value(sign_request) -> None:
    envelope = sign_request()
    one(signature_of(envelope), q(DS, "SignatureValue")).text = "%%%"
    refused("Client.WsseMalformed", lambda: verify(reparse(envelope)))


@pytest.mark.parametrize("uri", ["", "#xpointer(/)", "http://example.org/x#id-1", "id-1", "#"])
def test_reference_uri_that_is_not_a_local_id(sign_request, uri) -> None:
    envelope = sign_request()
    one(signature_of(envelope), f"{q(DS, 'SignedInfo')}/{q(DS, 'Reference')}").set("URI", uri)
    refused("Client.WsseMalformed", lambda: verify(reparse(envelope)))


def test_reference_to_a_missing_id(sign_request) -> None:
    envelope = sign_request()
    one(signature_of(envelope), f"{q(DS, 'SignedInfo')}/{q(DS, 'Reference')}").set("URI", "#nowhere")
    refused("Client.WsseMalformed", lambda: verify(reparse(envelope)))


# -------------------------------------------------------------------------------------- algorithms


def test_zeep_default_sha1_is_forbidden(sign_request) -> None:
    envelope = sign_request(signature_method=None, digest_method=None)
    refused("Client.WsseAlgorithmForbidden", lambda: verify(envelope))


@pytest.mark.parametrize(
    ("signature_method", "digest_method"),
    [
        (xmlsec.constants.TransformRsaSha1, xmlsec.constants.TransformSha256),
        (xmlsec.constants.TransformRsaSha256, xmlsec.constants.TransformSha1),
    ],
)
def test_sha1_mixed_with_sha256_is_forbidden(sign_request, signature_method, digest_method) -> None:
    envelope = sign_request(signature_method=signature_method, digest_method=digest_method)
    refused("Client.WsseAlgorithmForbidden", lambda: verify(envelope))
    verify(envelope, policy=WssePolicy(allow_sha1=True))


@pytest.mark.parametrize(
    ("signature_method", "digest_method"),
    [
        (xmlsec.constants.TransformRsaSha384, xmlsec.constants.TransformSha384),
        (xmlsec.constants.TransformRsaSha512, xmlsec.constants.TransformSha512),
    ],
)
def test_stronger_sha2_algorithms_are_accepted(sign_request, signature_method, digest_method) -> None:
    verified = verify(sign_request(signature_method=signature_method, digest_method=digest_method))
    assert verified.algorithms == (signature_method.href, digest_method.href)


@pytest.mark.parametrize(
    "algorithm", [XPATH, XSLT, ENVELOPED, STR_TRANSFORM, INCLUSIVE_C14N, EXC_C14N_WITH_COMMENTS]
)
def test_forbidden_reference_transform(sign_request, algorithm) -> None:
    envelope = sign_request()
    transform = etree.SubElement(first_transforms(envelope), q(DS, "Transform"), Algorithm=algorithm)
    if algorithm == XPATH:
        etree.SubElement(transform, q(DS, "XPath")).text = "true()"
    refused("Client.WsseAlgorithmForbidden", lambda: verify(reparse(envelope)))


def test_validly_signed_xpath_transform_is_forbidden(sign_request, resign, pki) -> None:
    envelope = sign_request()
    transform = etree.SubElement(first_transforms(envelope), q(DS, "Transform"), Algorithm=XPATH)
    etree.SubElement(transform, q(DS, "XPath")).text = "true()"
    envelope = resign(envelope, pki.client)
    refused("Client.WsseAlgorithmForbidden", lambda: verify(envelope))


def check_inside_xmlsec(envelope: etree._Element, policy: WssePolicy, der: bytes) -> None:
    """Only xmlsec's verification step, bypassing our own allow-list."""
    signature = signature_of(envelope)
    signed = wsse._resolve_references(envelope, one(signature, q(DS, "SignedInfo")))
    wsse._check_signature(signature, signed, der, policy)


def test_xmlsec_itself_refuses_forbidden_algorithms(sign_request, resign, pki) -> None:
    """Second line of defence: only the allowed transforms are enabled inside xmlsec."""
    der = pki.client.certificate_der
    with_xpath = sign_request()
    transform = etree.SubElement(first_transforms(with_xpath), q(DS, "Transform"), Algorithm=XPATH)
    etree.SubElement(transform, q(DS, "XPath")).text = "true()"
    with_xpath = resign(with_xpath, pki.client)
    refused("Client.WsseSignatureInvalid", lambda: check_inside_xmlsec(with_xpath, WssePolicy(), der))

    with_sha1 = sign_request(signature_method=None, digest_method=None)
    refused("Client.WsseSignatureInvalid", lambda: check_inside_xmlsec(with_sha1, WssePolicy(), der))
    check_inside_xmlsec(with_sha1, WssePolicy(allow_sha1=True), der)


def test_reference_without_transforms_is_forbidden(sign_request) -> None:
    envelope = sign_request()
    transforms = first_transforms(envelope)
    for transform in list(transforms):
        transforms.remove(transform)
    refused("Client.WsseAlgorithmForbidden", lambda: verify(reparse(envelope)))


@pytest.mark.parametrize("algorithm", [INCLUSIVE_C14N, EXC_C14N_WITH_COMMENTS, XSLT])
def test_forbidden_canonicalization_method(sign_request, algorithm) -> None:
    envelope = sign_request()
    one(signature_of(envelope), f"{q(DS, 'SignedInfo')}/{q(DS, 'CanonicalizationMethod')}").set(
        "Algorithm", algorithm
    )
    refused("Client.WsseAlgorithmForbidden", lambda: verify(reparse(envelope)))


@pytest.mark.parametrize(
    "algorithm",
    ["http://www.w3.org/2000/09/xmldsig#hmac-sha1", "http://www.w3.org/2001/04/xmldsig-more#rsa-md5"],
)
def test_forbidden_signature_method(sign_request, algorithm) -> None:
    envelope = sign_request()
    method = one(signature_of(envelope), f"{q(DS, 'SignedInfo')}/{q(DS, 'SignatureMethod')}")
    method.set("Algorithm", algorithm)
    refused("Client.WsseAlgorithmForbidden", lambda: verify(reparse(envelope)))


# --------------------------------------------------------------------------------------- freshness


def test_expired_timestamp_validly_signed(sign_request) -> None:
    envelope = sign_request(created=datetime.now(UTC) - timedelta(hours=2))
    refused("Client.WsseExpired", lambda: verify(envelope))


def test_created_in_the_future_beyond_skew(sign_request) -> None:
    envelope = sign_request(created=datetime.now(UTC) + timedelta(minutes=10))
    refused("Client.WsseExpired", lambda: verify(envelope))


def test_lifetime_too_long(sign_request) -> None:
    envelope = sign_request(lifetime=timedelta(hours=2))
    refused("Client.WsseExpired", lambda: verify(envelope))
    verify(envelope, policy=WssePolicy(max_lifetime=timedelta(hours=3)))


def test_expires_not_after_created(sign_request) -> None:
    refused("Client.WsseExpired", lambda: verify(sign_request(lifetime=timedelta(0))))


def test_now_must_be_timezone_aware(sign_request) -> None:
    envelope = sign_request()
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_security(envelope, read_security_token(envelope), now=datetime.now())
