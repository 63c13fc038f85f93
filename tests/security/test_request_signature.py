"""Tests for esb.security.request_signature: HMAC and RSA signatures of Authenticate requests."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from esb.domain.access import SignatureAlgorithm
from esb.security.request_signature import (
    InvalidPublicKey,
    certificate_fingerprint,
    decode_signature,
    hmac_signature,
    load_certificate,
    load_public_key,
    sign_rsa,
    verify_hmac,
    verify_rsa,
)

MESSAGE = b"AK1\n2026-11-21T09:30:00+07:00\nabcdefgh\nRSA-SHA256\n000.00.00.H53"


@dataclass(frozen=True)
class RsaIdentity:
    key: rsa.RSAPrivateKey
    public_pem: str
    certificate: x509.Certificate

    @property
    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def certificate_der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)


def _identity(self_signed: Any, bits: int) -> RsaIdentity:
    certificate, key = self_signed(bits=bits, cn="qlvb.tayninh.gov.vn")
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return RsaIdentity(key, public_pem, certificate)


@pytest.fixture(scope="module")
def rsa2048(self_signed: Any) -> RsaIdentity:
    return _identity(self_signed, 2048)


@pytest.fixture(scope="module")
def rsa1024(self_signed: Any) -> RsaIdentity:
    return _identity(self_signed, 1024)


# HMAC ---------------------------------------------------------------------------------------------

# RFC 4231 test case 2 and RFC 2202 test case 2: key "Jefe".
RFC_KEY, RFC_DATA = b"Jefe", b"what do ya want for nothing?"
RFC_VECTORS = {
    SignatureAlgorithm.HMAC_SHA256: "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
    SignatureAlgorithm.HMAC_SHA1: "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79",
}


@pytest.mark.parametrize("algorithm", list(RFC_VECTORS))
def test_hmac_matches_the_rfc_test_vector(algorithm: SignatureAlgorithm) -> None:
    expected = bytes.fromhex(RFC_VECTORS[algorithm])
    assert hmac_signature(RFC_KEY, RFC_DATA, algorithm) == expected
    assert verify_hmac(RFC_KEY, RFC_DATA, algorithm, expected)


@pytest.mark.parametrize("algorithm", list(RFC_VECTORS))
def test_hmac_verification_fails_on_any_difference(algorithm: SignatureAlgorithm) -> None:
    good = bytes.fromhex(RFC_VECTORS[algorithm])
    assert not verify_hmac(RFC_KEY, RFC_DATA + b"!", algorithm, good)
    assert not verify_hmac(b"Jeff", RFC_DATA, algorithm, good)
    assert not verify_hmac(RFC_KEY, RFC_DATA, algorithm, good[:-1])
    assert not verify_hmac(RFC_KEY, RFC_DATA, algorithm, b"")
    other = next(a for a in RFC_VECTORS if a is not algorithm)
    assert not verify_hmac(RFC_KEY, RFC_DATA, other, good)


# decode_signature ---------------------------------------------------------------------------------

RAW = bytes([0xFB, 0xFF, 0xBF, 0x00, 0x01, 0x02, 0xFE])  # "+", "/" (standard) or "-", "_" (URL-safe)


def test_decode_signature_reads_standard_base64() -> None:
    text = base64.b64encode(RAW).decode()
    assert "+" in text
    assert "/" in text
    assert decode_signature(text) == RAW
    assert decode_signature(f"  {text}\n") == RAW


@pytest.mark.parametrize("strip_padding", [False, True])
def test_decode_signature_reads_url_safe_base64(strip_padding: bool) -> None:
    text = base64.urlsafe_b64encode(RAW).decode()
    text = text.rstrip("=") if strip_padding else text
    assert "-" in text
    assert "_" in text
    assert decode_signature(text) == RAW


@pytest.mark.parametrize("garbage", ["not base64!", "%%%%", "abcde", "YWJj\x00", "YW Jj", "a-b!c", "ab+-cd"])
def test_decode_signature_of_garbage_is_none(garbage: str) -> None:
    assert decode_signature(garbage) is None


def test_decode_signature_reads_unpadded_url_safe_base64_without_dash_or_underscore() -> None:
    # bytes 0..31 as Node's Buffer.toString("base64url") sends them: unpadded, no "-" or "_".
    assert decode_signature("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8") == bytes(range(32))


# RSA ----------------------------------------------------------------------------------------------


def test_rsa_signature_verifies_with_the_public_key(rsa2048: RsaIdentity) -> None:
    signature = rsa2048.key.sign(MESSAGE, padding.PKCS1v15(), hashes.SHA256())
    assert verify_rsa(rsa2048.public_pem, MESSAGE, signature)
    assert sign_rsa(rsa2048.key, MESSAGE) == signature  # PKCS#1 v1.5 is deterministic


def test_rsa_signature_verifies_with_the_certificate(rsa2048: RsaIdentity) -> None:
    signature = rsa2048.key.sign(MESSAGE, padding.PKCS1v15(), hashes.SHA256())
    assert verify_rsa(rsa2048.certificate_pem.decode(), MESSAGE, signature)


def test_rsa_verification_fails_on_other_message_key_or_padding(rsa2048: RsaIdentity) -> None:
    signature = rsa2048.key.sign(MESSAGE, padding.PKCS1v15(), hashes.SHA256())
    assert not verify_rsa(rsa2048.public_pem, MESSAGE + b"x", signature)
    assert not verify_rsa(rsa2048.public_pem, MESSAGE, signature[:-1] + bytes([signature[-1] ^ 1]))
    assert not verify_rsa(rsa2048.public_pem, MESSAGE, b"")
    sha1 = rsa2048.key.sign(MESSAGE, padding.PKCS1v15(), hashes.SHA1())  # noqa: S303 - a refused input
    assert not verify_rsa(rsa2048.public_pem, MESSAGE, sha1)
    pss = rsa2048.key.sign(
        MESSAGE, padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.MAX_LENGTH), hashes.SHA256()
    )
    assert not verify_rsa(rsa2048.public_pem, MESSAGE, pss)


def test_rsa_key_shorter_than_2048_bits_is_refused(rsa1024: RsaIdentity) -> None:
    for pem in (rsa1024.public_pem, rsa1024.certificate_pem.decode()):
        with pytest.raises(InvalidPublicKey, match="2048") as caught:
            load_public_key(pem)
        assert caught.value.code == "Client.InvalidPublicKey"


def test_non_rsa_key_is_refused() -> None:
    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    with pytest.raises(InvalidPublicKey, match="RSA"):
        load_public_key(pem)


@pytest.mark.parametrize(
    "pem",
    [
        "",
        "not a key",
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        "khóa công khai",
    ],
)
def test_garbage_public_key_is_refused(pem: str) -> None:
    with pytest.raises(InvalidPublicKey):
        load_public_key(pem)


# certificates -------------------------------------------------------------------------------------


def test_load_certificate_reads_pem_and_der(rsa2048: RsaIdentity) -> None:
    assert load_certificate(rsa2048.certificate_pem) == rsa2048.certificate
    assert load_certificate(rsa2048.certificate_der) == rsa2048.certificate
    assert (
        certificate_fingerprint(rsa2048.certificate_der)
        == hashlib.sha256(rsa2048.certificate_der).hexdigest()
    )


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        b"\x30\x03\x02\x01\x00",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    ],
)
def test_load_certificate_refuses_garbage(data: bytes) -> None:
    with pytest.raises(InvalidPublicKey, match=r"X\.509"):
        load_certificate(data)
