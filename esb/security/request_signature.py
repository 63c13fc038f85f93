"""Checking (and, for clients and tests, making) the signatures of ``Authenticate`` requests.

HMAC-SHA256 and HMAC-SHA1 use the application's secret key; RSA-SHA256 is PKCS#1 v1.5 over
SHA-256 with the application's private key, checked with its registered public key or
certificate.  Comparisons are constant-time.  See :func:`esb.domain.access.string_to_sign`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from esb.domain.access import SignatureAlgorithm
from esb.errors import ClientError

# One alphabet or the other (standard or URL-safe), padding optional.
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}|[A-Za-z0-9_-]+={0,2}")
_HMAC_DIGESTS = {SignatureAlgorithm.HMAC_SHA256: hashlib.sha256, SignatureAlgorithm.HMAC_SHA1: hashlib.sha1}


class InvalidPublicKey(ClientError):
    default_code = "Client.InvalidPublicKey"


def decode_signature(value: str) -> bytes | None:
    """The signature bytes from base64 (standard or URL-safe alphabet), or None if not base64."""
    text = value.strip()
    if _BASE64.fullmatch(text) is None:
        return None
    standard = text.rstrip("=").replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def hmac_signature(secret: bytes, message: bytes, algorithm: SignatureAlgorithm) -> bytes:
    return hmac.new(secret, message, _HMAC_DIGESTS[algorithm]).digest()


def verify_hmac(secret: bytes, message: bytes, algorithm: SignatureAlgorithm, signature: bytes) -> bool:
    return hmac.compare_digest(hmac_signature(secret, message, algorithm), signature)


def verify_rsa(public_key_pem: str, message: bytes, signature: bytes) -> bool:
    key = load_public_key(public_key_pem)
    try:
        key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def sign_rsa(private_key: rsa.RSAPrivateKey, message: bytes) -> bytes:
    return private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())


def load_public_key(pem: str) -> rsa.RSAPublicKey:
    """An RSA public key from a PEM public key or a PEM X.509 certificate."""
    data = pem.encode("ascii", errors="replace")
    key: object
    try:
        if b"CERTIFICATE" in data:
            key = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise InvalidPublicKey("not a PEM RSA public key or certificate") from None
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < 2048:
        raise InvalidPublicKey("the key must be an RSA key of at least 2048 bits")
    return key


def certificate_fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def load_certificate(data: bytes) -> x509.Certificate:
    """An X.509 certificate from PEM or DER bytes."""
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise InvalidPublicKey("not an X.509 certificate (PEM or DER)") from None
