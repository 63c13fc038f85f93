"""A document-signing key (the hub's, or an agency's): loaded once, used for every signature.

Why a class rather than PEM bytes passed around: ``cryptography`` validates an RSA key when it
loads it (about 36 ms, python-stack-notes §3), so a key loaded per signature costs ×50.  A
:class:`SigningKey` is loaded once, holds the ``cryptography`` key and certificates, and a
pre-loaded :class:`xmlsec.Key` with the leaf certificate loaded *into* it: xmlsec fills
``KeyInfo/X509Data`` only from the certificate of the signing key (it leaves the element
empty otherwise, and it writes that one certificate only, whatever else was loaded), so
:func:`esb.security.xml_signature.sign_enveloped` adds the chain after it.

Only RSA keys: every signature we make is RSA-SHA256 (the algorithm Vietnamese CAs issue
keys for and every partner verifies).  The private key and the certificate must match; a
mismatch is refused when the key is loaded, not discovered as an unverifiable signature later.

Secrets: ``repr`` shows the subject and the fingerprint only; error messages name the file,
never its content.  The password is bytes the caller read from its own file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from esb.errors import ClientError, ConfigurationError
from esb.security.pki import load_certificates, load_private_key

BAD_KEY = "Client.BadKey"


class SigningKey:
    """An RSA private key, its certificate (and chain), and the matching pre-loaded xmlsec key."""

    __slots__ = ("_certificates", "_private_key", "_sha256", "_xmlsec_key")

    def __init__(self, private_key: rsa.RSAPrivateKey, certificates: Sequence[x509.Certificate]) -> None:
        """``certificates``: the leaf (the key's certificate) first, then any issuing CAs."""
        if not certificates:
            raise ClientError("no certificate was given for the signing key", code="Client.BadCertificate")
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise ClientError("only RSA private keys can sign (RSA-SHA256)", code=BAD_KEY)
        leaf = certificates[0]
        public_key = leaf.public_key()
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise ClientError(
                "the signing certificate does not hold an RSA key: RSA keys are required (RSA-SHA256)",
                code=BAD_KEY,
            )
        if public_key.public_numbers() != private_key.public_key().public_numbers():
            raise ClientError(
                f"the private key does not match the certificate {leaf.subject.rfc4514_string()}",
                code=BAD_KEY,
            )
        self._private_key = private_key
        self._certificates = tuple(certificates)
        self._sha256 = hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest()
        self._xmlsec_key = _xmlsec_key(private_key, leaf)

    # -- loading -------------------------------------------------------------------------------

    @classmethod
    def from_pem(cls, key_pem: bytes, cert_pem: bytes, *, password: bytes | None = None) -> SigningKey:
        """From a PEM (or DER) private key and a PEM certificate file's content (leaf, then chain).

        Raises ``ClientError`` ``Client.BadKey`` (unreadable key, wrong password, not RSA, not
        the certificate's key) or ``Client.BadCertificate``.
        """
        private_key = load_private_key(key_pem, password)
        certificates = load_certificates(cert_pem)
        return cls(private_key, certificates)

    @classmethod
    def from_files(cls, key_path: Path, cert_path: Path, *, password: bytes | None = None) -> SigningKey:
        """As :meth:`from_pem`, from files; an unreadable file is a ``ConfigurationError`` naming it."""
        key_pem = _read(key_path, "signing key")
        cert_pem = _read(cert_path, "signing certificate")
        try:
            private_key = load_private_key(key_pem, password)
        except ClientError as error:
            raise ClientError(f"{key_path}: {error.message}", code=error.code) from None
        try:
            certificates = load_certificates(cert_pem)
        except ClientError as error:
            raise ClientError(f"{cert_path}: {error.message}", code=error.code) from None
        try:
            return cls(private_key, certificates)
        except ClientError as error:
            raise ClientError(f"{key_path} and {cert_path}: {error.message}", code=error.code) from None

    # -- what it is ----------------------------------------------------------------------------

    @property
    def certificate(self) -> x509.Certificate:
        """The leaf certificate: the one whose key signs."""
        return self._certificates[0]

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        """The issuing CA certificates that followed the leaf in the certificate file (may be empty)."""
        return self._certificates[1:]

    @property
    def certificates(self) -> tuple[x509.Certificate, ...]:
        """Leaf first, then the chain: what every signature carries in ``KeyInfo/X509Data``."""
        return self._certificates

    @property
    def sha256(self) -> str:
        """Hex SHA-256 fingerprint of the leaf certificate's DER."""
        return self._sha256

    @property
    def subject(self) -> str:
        return self.certificate.subject.rfc4514_string()

    @property
    def xmlsec_key(self) -> Any:
        """The pre-loaded ``xmlsec.Key`` (a ``SignatureContext`` copies it when assigned)."""
        return self._xmlsec_key

    def __repr__(self) -> str:
        return f"SigningKey(subject={self.subject!r}, sha256={self.sha256!r})"


def _read(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ConfigurationError(f"cannot read the {what} file {path}: {error.strerror or error}") from None


def _xmlsec_key(private_key: rsa.RSAPrivateKey, leaf: x509.Certificate) -> Any:
    """The xmlsec key with its certificate loaded into it, so that X509Data gets filled."""
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        key = xmlsec.Key.from_memory(pem, xmlsec.constants.KeyDataFormatPem)
        key.load_cert_from_memory(
            leaf.public_bytes(serialization.Encoding.DER), xmlsec.constants.KeyDataFormatCertDer
        )
    except xmlsec.Error:
        raise ClientError("xmlsec cannot load the signing key or its certificate", code=BAD_KEY) from None
    return key
