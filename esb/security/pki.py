"""A small PKI made with ``cryptography``: root and issuing CAs, document-signing certificates, CRLs.

What for: ``esb pki demo`` writes a complete demonstration PKI (trust anchors, an issuing CA,
its CRL, a certificate and key for every demo agency and for the hub) so that signed edXML
packages can be exchanged and verified end to end without a real CA; the tests and benchmarks
make the same certificates in memory.  Real deployments use the certificates of the
Vietnamese CAs instead and only load them here (:func:`load_certificates`,
:func:`load_private_key`).

The certificates follow what document-signing certificates in Vietnam look like: subject
``C=VN, O=…, CN=…`` plus the agency's identifier code (mã định danh, e.g. ``000.00.00.H53``)
as ``UID``; end-entity certificates carry KeyUsage digitalSignature + nonRepudiation
(contentCommitment), no SAN and no ExtendedKeyUsage.  CAs carry SKI, and everything they
issue carries the matching AKI, so chains can be built by key identifier as well as by name.

Every function takes the current time as ``now`` instead of reading the clock, so that the
result depends only on the arguments (apart from the fresh keys and random serial numbers).
A naive ``datetime`` is taken to be UTC, as ``cryptography`` does.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from esb.errors import ClientError, InvalidIdentifier

DEFAULT_CA_ORGANIZATION = "LGSP demo PKI (not for production)"

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.DOTALL)
# The agency code becomes a directory name: a conservative alphabet, no separators, no "..".
_SAFE_CODE = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,63}\Z")

_PRIVATE_MODE = 0o600
_PUBLIC_MODE = 0o644


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate with its private key.  ``repr`` shows the subject and fingerprint, never the key."""

    certificate: x509.Certificate
    key: rsa.RSAPrivateKey = field(repr=False, compare=False)

    @property
    def subject(self) -> str:
        return self.certificate.subject.rfc4514_string()

    @property
    def sha256(self) -> str:
        """Hex SHA-256 fingerprint of the DER certificate."""
        return hashlib.sha256(self.certificate.public_bytes(serialization.Encoding.DER)).hexdigest()

    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def key_pem(self, password: bytes | None = None) -> bytes:
        """The private key as PKCS#8 PEM, encrypted with the best available algorithm when ``password``."""
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
        )
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )

    def __repr__(self) -> str:
        return f"IssuedCertificate(subject={self.subject!r}, sha256={self.sha256!r})"


@dataclass(frozen=True)
class DemoPki:
    """Where :func:`write_demo_pki` put everything (private keys are 0600, the rest 0644)."""

    out_dir: Path
    trust_dir: Path  # anchors/, intermediates/, crls/: what TrustStore.from_directory reads
    root_certificate: Path
    issuing_certificate: Path
    crl: Path
    root_key: Path
    issuing_key: Path
    hub_certificate: Path  # leaf then issuing CA
    hub_key: Path
    agency_certificates: Mapping[str, Path] = field(hash=False)  # by agency code; leaf then issuing CA
    agency_keys: Mapping[str, Path] = field(hash=False)


def _utc(moment: datetime) -> datetime:
    """An aware UTC datetime to whole seconds (X.509 times have no fractions)."""
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return aware.replace(microsecond=0)


def _name(common_name: str, *, organization: str | None = None, agency_code: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COUNTRY_NAME, "VN")]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    if agency_code:
        attributes.append(x509.NameAttribute(NameOID.USER_ID, agency_code))
    return x509.Name(attributes)


def _key_usage(
    *,
    digital_signature: bool = False,
    content_commitment: bool = False,
    key_encipherment: bool = False,
    key_cert_sign: bool = False,
    crl_sign: bool = False,
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=content_commitment,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _authority_key_identifier(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        public_key = issuer.public_key()
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise ClientError("the issuer's key is not an RSA key", code="Client.BadCertificate") from None
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key)
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: rsa.RSAPrivateKey,
    *,
    not_before: datetime,
    not_after: datetime,
) -> x509.CertificateBuilder:
    public_key = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(_utc(not_before))
        .not_valid_after(_utc(not_after))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def new_rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def make_root_ca(
    common_name: str,
    *,
    now: datetime,
    days: int = 3650,
    organization: str = DEFAULT_CA_ORGANIZATION,
    key: rsa.RSAPrivateKey | None = None,
) -> IssuedCertificate:
    """A self-signed root CA: BasicConstraints cA (critical), KeyUsage keyCertSign + cRLSign, SKI."""
    key = key or new_rsa_key()
    name = _name(common_name, organization=organization)
    start = _utc(now)
    certificate = (
        _builder(name, name, key, not_before=start, not_after=start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .sign(key, hashes.SHA256())
    )
    return IssuedCertificate(certificate, key)


def make_intermediate_ca(
    issuer: IssuedCertificate,
    common_name: str,
    *,
    now: datetime,
    days: int = 1825,
    path_length: int | None = 0,
    organization: str = DEFAULT_CA_ORGANIZATION,
    key: rsa.RSAPrivateKey | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> IssuedCertificate:
    """An issuing CA under ``issuer``: BasicConstraints cA with ``path_length``, AKI and SKI.

    ``not_before``/``not_after`` override ``now``/``days`` (for expired or future CAs in tests).
    """
    key = key or new_rsa_key()
    start = _utc(not_before or now)
    end = _utc(not_after) if not_after is not None else start + timedelta(days=days)
    certificate = (
        _builder(
            _name(common_name, organization=organization),
            issuer.certificate.subject,
            key,
            not_before=start,
            not_after=end,
        )
        .add_extension(_authority_key_identifier(issuer.certificate), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .sign(issuer.key, hashes.SHA256())
    )
    return IssuedCertificate(certificate, key)


def _signing_key_usage(key_usage: Literal["signing", "encipherment-only"]) -> x509.KeyUsage:
    if key_usage == "signing":
        return _key_usage(digital_signature=True, content_commitment=True)
    return _key_usage(key_encipherment=True)


def issue_signing_certificate(
    issuer: IssuedCertificate,
    common_name: str,
    *,
    now: datetime,
    days: int = 730,
    agency_code: str | None = None,
    organization: str | None = None,
    key: rsa.RSAPrivateKey | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    key_usage: Literal["signing", "encipherment-only"] = "signing",
) -> IssuedCertificate:
    """An end-entity certificate for signing documents, issued by ``issuer``.

    BasicConstraints cA=false, KeyUsage digitalSignature + nonRepudiation (``key_usage=
    "encipherment-only"``: keyEncipherment alone, a certificate that must not sign documents),
    AKI and SKI, no SAN, no EKU.  ``agency_code`` goes into the subject as ``UID``.
    ``not_before``/``not_after`` override ``now``/``days``.
    """
    key = key or new_rsa_key()
    start = _utc(not_before or now)
    end = _utc(not_after) if not_after is not None else start + timedelta(days=days)
    certificate = (
        _builder(
            _name(common_name, organization=organization, agency_code=agency_code),
            issuer.certificate.subject,
            key,
            not_before=start,
            not_after=end,
        )
        .add_extension(_authority_key_identifier(issuer.certificate), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_signing_key_usage(key_usage), critical=True)
        .sign(issuer.key, hashes.SHA256())
    )
    return IssuedCertificate(certificate, key)


def make_self_signed_signing_certificate(
    common_name: str,
    *,
    now: datetime,
    days: int,
    key: rsa.RSAPrivateKey | None = None,
    agency_code: str | None = None,
    organization: str | None = None,
) -> IssuedCertificate:
    """A self-signed end-entity signing certificate, for a hub without a CA.

    Not a CA (cA=false, digitalSignature + nonRepudiation): it can only sign documents, and it
    is trusted by listing it as its own trust anchor.  It carries an AKI equal to its SKI.
    """
    key = key or new_rsa_key()
    name = _name(common_name, organization=organization, agency_code=agency_code)
    start = _utc(now)
    certificate = (
        _builder(name, name, key, not_before=start, not_after=start + timedelta(days=days))
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_signing_key_usage("signing"), critical=True)
        .sign(key, hashes.SHA256())
    )
    return IssuedCertificate(certificate, key)


def make_crl(
    issuer: IssuedCertificate,
    revoked: Sequence[tuple[int, datetime]],
    *,
    now: datetime,
    next_update_days: int = 30,
    number: int = 1,
) -> x509.CertificateRevocationList:
    """A CRL of ``issuer`` listing ``(serial number, revocation date)`` pairs (may be empty).

    lastUpdate is ``now``, nextUpdate ``now + next_update_days``; it carries a CRL number and
    the issuer's AKI, and is signed with ``issuer.key``.
    """
    start = _utc(now)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.certificate.subject)
        .last_update(start)
        .next_update(start + timedelta(days=next_update_days))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(_authority_key_identifier(issuer.certificate), critical=False)
    )
    for serial, revoked_at in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(_utc(revoked_at)).build()
        )
    return builder.sign(issuer.key, hashes.SHA256())


# -- loading ---------------------------------------------------------------------------------------


def _pem_blocks(data: bytes, label: bytes) -> list[bytes]:
    return [match.group(0) for match in _PEM_BLOCK.finditer(data) if match.group(1) == label]


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM text (in order; other PEM blocks are skipped), or the one DER certificate.

    Raises ``ClientError`` ``Client.BadCertificate`` when there is none or one cannot be read.
    """
    if b"-----BEGIN" in data:
        blocks = _pem_blocks(data, b"CERTIFICATE")
        if not blocks:
            raise ClientError("no PEM CERTIFICATE block found", code="Client.BadCertificate")
        certificates = []
        for index, block in enumerate(blocks, start=1):
            try:
                certificates.append(x509.load_pem_x509_certificate(block))
            except ValueError:
                raise ClientError(
                    f"PEM certificate #{index} is not a readable X.509 certificate",
                    code="Client.BadCertificate",
                ) from None
        return certificates
    try:
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise ClientError(
            "not an X.509 certificate (neither PEM nor DER)", code="Client.BadCertificate"
        ) from None


def load_crls(data: bytes) -> list[x509.CertificateRevocationList]:
    """Every CRL of a PEM text (``X509 CRL`` blocks, in order), or the one DER CRL.

    Raises ``ClientError`` ``Client.BadCrl`` when there is none or one cannot be read.
    """
    if b"-----BEGIN" in data:
        blocks = _pem_blocks(data, b"X509 CRL")
        if not blocks:
            raise ClientError("no PEM X509 CRL block found", code="Client.BadCrl")
        crls = []
        for index, block in enumerate(blocks, start=1):
            try:
                crls.append(x509.load_pem_x509_crl(block))
            except ValueError:
                raise ClientError(
                    f"PEM CRL #{index} is not a readable X.509 CRL", code="Client.BadCrl"
                ) from None
        return crls
    try:
        return [x509.load_der_x509_crl(data)]
    except ValueError:
        raise ClientError("not an X.509 CRL (neither PEM nor DER)", code="Client.BadCrl") from None


def load_private_key(data: bytes, password: bytes | None = None) -> rsa.RSAPrivateKey:
    """An RSA private key from PEM or DER (PKCS#8 or PKCS#1), decrypted with ``password`` if encrypted.

    Raises ``ClientError`` ``Client.BadKey``; the message never quotes the key.
    """
    pem = b"-----BEGIN" in data
    try:
        if pem:
            key = serialization.load_pem_private_key(data, password)
        else:
            key = serialization.load_der_private_key(data, password)
    except TypeError:
        # cryptography's way of saying the password does not fit the key's encryption state.
        if password is None:
            raise ClientError(
                "the private key is encrypted: a password is required", code="Client.BadKey"
            ) from None
        raise ClientError(
            "the private key is not encrypted, but a password was given", code="Client.BadKey"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        if password is not None and (not pem or b"ENCRYPTED" in data):
            message = "cannot decrypt the private key: wrong password, or not a private key"
        else:
            message = "not a readable private key (PEM or DER, PKCS#8 or PKCS#1)"
        raise ClientError(message, code="Client.BadKey") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ClientError("only RSA private keys are supported", code="Client.BadKey")
    return key


# -- the demo PKI on disk --------------------------------------------------------------------------


def _write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(descriptor, mode)  # an existing file keeps its mode, and umask trims new ones
        with os.fdopen(descriptor, "wb", closefd=False) as handle:
            handle.write(data)
    finally:
        os.close(descriptor)


def _chain_pem(leaf: IssuedCertificate, *issuers: IssuedCertificate) -> bytes:
    return leaf.certificate_pem() + b"".join(issuer.certificate_pem() for issuer in issuers)


def write_demo_pki(
    out_dir: Path,
    agencies: Sequence[tuple[str, str]],
    *,
    now: datetime,
    hub_name: str = "LGSP hub",
    hub_organ_id: str,
    overwrite: bool = False,
) -> DemoPki:
    """Make a demo PKI and write it under ``out_dir``.

    ``agencies`` are ``(identifier code, name)`` pairs.  Layout::

        trust/anchors/demo-root-ca.pem            the root CA (the trust anchor)
        trust/intermediates/demo-issuing-ca.pem   the issuing CA
        trust/crls/demo-issuing-ca.crl.pem        its CRL, empty, valid for a year
        agencies/<code>/key.pem, cert.pem         per agency: key, and certificate + issuing CA
        hub/key.pem, hub/cert.pem                 the hub (CN=hub_name, UID=hub_organ_id)
        ca/root-key.pem, ca/issuing-key.pem       the CA keys, to issue or revoke more demo certs

    Private keys are unencrypted and written 0600, everything else 0644.  Refuses with
    ``Client.PkiExists`` when the root certificate is already there, unless ``overwrite``.
    """
    codes = [code for code, _ in agencies]
    for code in codes:
        if _SAFE_CODE.match(code) is None or ".." in code:
            raise InvalidIdentifier(f"agency code {code!r} cannot be used as a directory name")
    duplicates = sorted({code for code in codes if codes.count(code) > 1})
    if duplicates:
        raise ClientError(f"agency code(s) listed twice: {', '.join(duplicates)}")
    trust_dir = out_dir / "trust"
    root_path = trust_dir / "anchors" / "demo-root-ca.pem"
    if root_path.exists() and not overwrite:
        raise ClientError(
            f"a demo PKI already exists in {out_dir} ({root_path} is there); pass overwrite to replace it",
            code="Client.PkiExists",
        )

    root = make_root_ca("LGSP Demo Root CA", now=now)
    issuing = make_intermediate_ca(root, "LGSP Demo Issuing CA", now=now)
    crl = make_crl(issuing, [], now=now, next_update_days=365)
    hub = issue_signing_certificate(
        issuing, hub_name, now=now, agency_code=hub_organ_id, organization=hub_name
    )

    paths = DemoPki(
        out_dir=out_dir,
        trust_dir=trust_dir,
        root_certificate=root_path,
        issuing_certificate=trust_dir / "intermediates" / "demo-issuing-ca.pem",
        crl=trust_dir / "crls" / "demo-issuing-ca.crl.pem",
        root_key=out_dir / "ca" / "root-key.pem",
        issuing_key=out_dir / "ca" / "issuing-key.pem",
        hub_certificate=out_dir / "hub" / "cert.pem",
        hub_key=out_dir / "hub" / "key.pem",
        agency_certificates=MappingProxyType(
            {code: out_dir / "agencies" / code / "cert.pem" for code in codes}
        ),
        agency_keys=MappingProxyType({code: out_dir / "agencies" / code / "key.pem" for code in codes}),
    )
    _write(paths.root_key, root.key_pem(), _PRIVATE_MODE)
    _write(paths.issuing_key, issuing.key_pem(), _PRIVATE_MODE)
    _write(paths.issuing_certificate, issuing.certificate_pem(), _PUBLIC_MODE)
    _write(paths.crl, crl.public_bytes(serialization.Encoding.PEM), _PUBLIC_MODE)
    _write(paths.hub_key, hub.key_pem(), _PRIVATE_MODE)
    _write(paths.hub_certificate, _chain_pem(hub, issuing), _PUBLIC_MODE)
    for code, name in agencies:
        agency = issue_signing_certificate(issuing, name, now=now, agency_code=code, organization=name)
        _write(paths.agency_keys[code], agency.key_pem(), _PRIVATE_MODE)
        _write(paths.agency_certificates[code], _chain_pem(agency, issuing), _PUBLIC_MODE)
    # The anchor last: its presence is what marks a complete demo PKI.
    _write(root_path, root.certificate_pem(), _PUBLIC_MODE)
    return paths
