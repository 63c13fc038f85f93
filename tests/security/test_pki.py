"""Tests for esb.security.pki: the certificates it makes, PEM/DER loading, and the demo PKI on disk.

Keys are made once per module and reused; ``NOW`` is fixed.
"""

from __future__ import annotations

import hashlib
import stat
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from esb.errors import ClientError, InvalidIdentifier
from esb.security.pki import (
    DemoPki,
    IssuedCertificate,
    issue_signing_certificate,
    load_certificates,
    load_crls,
    load_private_key,
    make_crl,
    make_intermediate_ca,
    make_root_ca,
    make_self_signed_signing_certificate,
    write_demo_pki,
)
from esb.security.trust_store import TrustStore

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
AGENCIES = (("000.00.00.H53", "UBND tỉnh Tây Ninh"), ("000.00.32.H53", "Sở Nội vụ tỉnh Tây Ninh"))
HUB_ID = "000.00.00.G22"

E = TypeVar("E", bound=x509.ExtensionType)


@dataclass(frozen=True)
class Pki:
    root: IssuedCertificate
    issuing: IssuedCertificate
    leaf: IssuedCertificate


@pytest.fixture(scope="module")
def pki() -> Pki:
    root = make_root_ca("Test Root CA", now=NOW, organization="Test PKI")
    issuing = make_intermediate_ca(root, "Test Issuing CA", now=NOW)
    leaf = issue_signing_certificate(
        issuing, "Văn thư UBND", now=NOW, agency_code="000.00.00.H53", organization="UBND tỉnh Tây Ninh"
    )
    return Pki(root, issuing, leaf)


def extension(certificate: x509.Certificate, kind: type[E]) -> x509.Extension[E]:
    return certificate.extensions.get_extension_for_class(kind)


def ski(certificate: x509.Certificate) -> bytes:
    return extension(certificate, x509.SubjectKeyIdentifier).value.digest


def aki(certificate: x509.Certificate) -> bytes | None:
    return extension(certificate, x509.AuthorityKeyIdentifier).value.key_identifier


def attribute(name: x509.Name, oid: x509.ObjectIdentifier) -> list[str]:
    return [str(a.value) for a in name.get_attributes_for_oid(oid)]


# -- the certificates ------------------------------------------------------------------------------


def test_root_ca(pki: Pki) -> None:
    cert = pki.root.certificate
    assert cert.subject == cert.issuer
    assert cert.subject.rfc4514_string() == "CN=Test Root CA,O=Test PKI,C=VN"
    cert.verify_directly_issued_by(cert)
    constraints = extension(cert, x509.BasicConstraints)
    assert constraints.critical
    assert (constraints.value.ca, constraints.value.path_length) == (True, None)
    usage = extension(cert, x509.KeyUsage)
    assert usage.critical
    assert (usage.value.key_cert_sign, usage.value.crl_sign, usage.value.digital_signature) == (
        True,
        True,
        False,
    )
    assert ski(cert) == x509.SubjectKeyIdentifier.from_public_key(pki.root.key.public_key()).digest
    assert (cert.not_valid_before_utc, cert.not_valid_after_utc) == (NOW, NOW + 3650 * DAY)
    public_key = cert.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    assert public_key.key_size == 2048


def test_intermediate_ca_links_to_the_root(pki: Pki) -> None:
    cert = pki.issuing.certificate
    assert cert.issuer == pki.root.certificate.subject
    cert.verify_directly_issued_by(pki.root.certificate)
    assert aki(cert) == ski(pki.root.certificate)
    assert ski(cert) != ski(pki.root.certificate)
    constraints = extension(cert, x509.BasicConstraints).value
    assert (constraints.ca, constraints.path_length) == (True, 0)
    usage = extension(cert, x509.KeyUsage).value
    assert (usage.key_cert_sign, usage.crl_sign) == (True, True)
    assert cert.not_valid_after_utc == NOW + 1825 * DAY


def test_signing_certificate(pki: Pki) -> None:
    cert = pki.leaf.certificate
    cert.verify_directly_issued_by(pki.issuing.certificate)
    assert aki(cert) == ski(pki.issuing.certificate)
    assert attribute(cert.subject, NameOID.USER_ID) == ["000.00.00.H53"]
    assert attribute(cert.subject, NameOID.COUNTRY_NAME) == ["VN"]
    assert attribute(cert.subject, NameOID.COMMON_NAME) == ["Văn thư UBND"]
    assert attribute(cert.subject, NameOID.ORGANIZATION_NAME) == ["UBND tỉnh Tây Ninh"]
    constraints = extension(cert, x509.BasicConstraints)
    assert (constraints.critical, constraints.value.ca) == (True, False)
    usage = extension(cert, x509.KeyUsage)
    assert usage.critical
    assert (usage.value.digital_signature, usage.value.content_commitment) == (True, True)
    assert (usage.value.key_encipherment, usage.value.key_cert_sign) == (False, False)
    for absent in (x509.SubjectAlternativeName, x509.ExtendedKeyUsage):
        with pytest.raises(x509.ExtensionNotFound):
            cert.extensions.get_extension_for_class(absent)
    assert cert.not_valid_after_utc == NOW + 730 * DAY


def test_signing_certificate_options(pki: Pki) -> None:
    key = pki.leaf.key
    plain = issue_signing_certificate(
        pki.issuing,
        "no code",
        now=NOW,
        key=key,
        not_before=NOW - 5 * DAY,
        not_after=NOW + 5 * DAY,
        key_usage="encipherment-only",
    )
    cert = plain.certificate
    assert cert.subject.rfc4514_string() == "CN=no code,C=VN"
    assert (cert.not_valid_before_utc, cert.not_valid_after_utc) == (NOW - 5 * DAY, NOW + 5 * DAY)
    usage = extension(cert, x509.KeyUsage).value
    assert (usage.key_encipherment, usage.digital_signature, usage.content_commitment) == (True, False, False)
    assert cert.public_key() == key.public_key()
    assert cert.serial_number != pki.leaf.certificate.serial_number


def test_times_are_whole_seconds_and_naive_means_utc(pki: Pki) -> None:
    moment = datetime(2026, 3, 1, 9, 0, 0, 987654)
    cert = issue_signing_certificate(pki.issuing, "t", now=moment, days=1, key=pki.leaf.key).certificate
    assert cert.not_valid_before_utc == NOW


def test_self_signed_signing_certificate(pki: Pki) -> None:
    hub = make_self_signed_signing_certificate(
        "LGSP hub", now=NOW, days=365, key=pki.leaf.key, agency_code=HUB_ID
    )
    cert = hub.certificate
    assert cert.subject == cert.issuer
    cert.verify_directly_issued_by(cert)
    assert attribute(cert.subject, NameOID.USER_ID) == [HUB_ID]
    assert extension(cert, x509.BasicConstraints).value.ca is False
    usage = extension(cert, x509.KeyUsage).value
    assert (usage.digital_signature, usage.content_commitment, usage.key_cert_sign) == (True, True, False)
    assert aki(cert) == ski(cert)
    assert cert.not_valid_after_utc == NOW + 365 * DAY
    assert TrustStore.of([cert]).check(cert, at=NOW).reason == "ok"


def test_crl(pki: Pki) -> None:
    serial = pki.leaf.certificate.serial_number
    crl = make_crl(pki.issuing, [(serial, NOW - DAY), (12345, NOW - 2 * DAY)], now=NOW, number=7)
    assert crl.issuer == pki.issuing.certificate.subject
    assert crl.is_signature_valid(pki.issuing.key.public_key())
    assert not crl.is_signature_valid(pki.root.key.public_key())
    assert (crl.last_update_utc, crl.next_update_utc) == (NOW, NOW + 30 * DAY)
    entry = crl.get_revoked_certificate_by_serial_number(serial)
    assert entry is not None
    assert entry.revocation_date_utc == NOW - DAY
    assert len(crl) == 2
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 7
    assert crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier == ski(
        pki.issuing.certificate
    )
    assert len(make_crl(pki.issuing, [], now=NOW, next_update_days=3)) == 0


# -- IssuedCertificate ------------------------------------------------------------------------------


def test_pem_round_trips(pki: Pki) -> None:
    assert load_certificates(pki.leaf.certificate_pem()) == [pki.leaf.certificate]
    key = load_private_key(pki.leaf.key_pem())
    assert key.private_numbers() == pki.leaf.key.private_numbers()
    assert pki.leaf.key_pem().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    der = pki.leaf.certificate.public_bytes(serialization.Encoding.DER)
    assert pki.leaf.sha256 == hashlib.sha256(der).hexdigest()


def test_encrypted_key_round_trip(pki: Pki) -> None:
    encrypted = pki.leaf.key_pem(password=b"correct horse")
    assert encrypted.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert load_private_key(encrypted, b"correct horse").private_numbers() == pki.leaf.key.private_numbers()
    with pytest.raises(ClientError, match="password is required") as caught:
        load_private_key(encrypted)
    assert caught.value.code == "Client.BadKey"
    with pytest.raises(ClientError, match="wrong password") as caught:
        load_private_key(encrypted, b"battery staple")
    assert caught.value.code == "Client.BadKey"


def test_repr_does_not_show_the_key(pki: Pki) -> None:
    text = repr(pki.leaf)
    assert pki.leaf.sha256 in text
    assert "Văn thư UBND" in text
    numbers = pki.leaf.key.private_numbers()
    for secret in (numbers.d, numbers.p, numbers.q):
        assert str(secret)[:12] not in text
        assert f"{secret:x}"[:12] not in text
    assert "PRIVATE" not in text


# -- loading ------------------------------------------------------------------------------------------


def test_load_certificates_bundle_and_der(pki: Pki) -> None:
    bundle = pki.leaf.certificate_pem() + pki.leaf.key_pem() + pki.issuing.certificate_pem()
    assert load_certificates(bundle) == [pki.leaf.certificate, pki.issuing.certificate]
    der = pki.root.certificate.public_bytes(serialization.Encoding.DER)
    assert load_certificates(der) == [pki.root.certificate]
    crlf = pki.root.certificate_pem().replace(b"\n", b"\r\n")
    assert load_certificates(crlf) == [pki.root.certificate]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n",
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    ],
)
def test_load_certificates_refuses_garbage(data: bytes) -> None:
    with pytest.raises(ClientError) as caught:
        load_certificates(data)
    assert caught.value.code == "Client.BadCertificate"


def test_load_crls(pki: Pki) -> None:
    first, second = make_crl(pki.root, [], now=NOW), make_crl(pki.issuing, [], now=NOW)
    pem = first.public_bytes(serialization.Encoding.PEM) + second.public_bytes(serialization.Encoding.PEM)
    assert load_crls(pem) == [first, second]
    assert load_crls(first.public_bytes(serialization.Encoding.DER)) == [first]
    for garbage in (b"garbage", pki.root.certificate_pem()):
        with pytest.raises(ClientError) as caught:
            load_crls(garbage)
        assert caught.value.code == "Client.BadCrl"


def test_load_private_key_der_and_pkcs1(pki: Pki) -> None:
    key = pki.root.key
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pkcs1 = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    assert load_private_key(der).private_numbers() == key.private_numbers()
    assert load_private_key(pkcs1).private_numbers() == key.private_numbers()


def test_load_private_key_errors(pki: Pki) -> None:
    damaged = pki.leaf.key_pem()[:200] + b"\n-----END PRIVATE KEY-----\n"
    with pytest.raises(ClientError) as caught:
        load_private_key(damaged)
    assert caught.value.code == "Client.BadKey"
    body = pki.leaf.key_pem().splitlines()[1].decode()
    assert body not in caught.value.message
    assert body[:16] not in str(caught.value)

    with pytest.raises(ClientError, match="not encrypted") as caught:
        load_private_key(pki.leaf.key_pem(), b"a password")
    assert caught.value.code == "Client.BadKey"

    for garbage in (b"", b"\x00\x01garbage", pki.leaf.certificate_pem()):
        with pytest.raises(ClientError) as caught:
            load_private_key(garbage)
        assert caught.value.code == "Client.BadKey"

    ec_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ClientError, match="only RSA") as caught:
        load_private_key(ec_key)
    assert caught.value.code == "Client.BadKey"


# -- the demo PKI on disk -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoPki:
    return write_demo_pki(tmp_path_factory.mktemp("demo"), AGENCIES, now=NOW, hub_organ_id=HUB_ID)


def test_demo_pki_layout_and_permissions(demo: DemoPki) -> None:
    files = {
        path.relative_to(demo.out_dir).as_posix(): stat.S_IMODE(path.stat().st_mode)
        for path in demo.out_dir.rglob("*")
        if path.is_file()
    }
    private, public = 0o600, 0o644
    assert files == {
        "trust/anchors/demo-root-ca.pem": public,
        "trust/intermediates/demo-issuing-ca.pem": public,
        "trust/crls/demo-issuing-ca.crl.pem": public,
        "agencies/000.00.00.H53/key.pem": private,
        "agencies/000.00.00.H53/cert.pem": public,
        "agencies/000.00.32.H53/key.pem": private,
        "agencies/000.00.32.H53/cert.pem": public,
        "hub/key.pem": private,
        "hub/cert.pem": public,
        "ca/root-key.pem": private,
        "ca/issuing-key.pem": private,
    }
    assert demo.trust_dir == demo.out_dir / "trust"
    assert demo.root_certificate == demo.out_dir / "trust/anchors/demo-root-ca.pem"
    assert demo.agency_certificates["000.00.32.H53"] == demo.out_dir / "agencies/000.00.32.H53/cert.pem"
    assert set(demo.agency_keys) == {code for code, _ in AGENCIES}


def test_demo_pki_certificates(demo: DemoPki) -> None:
    root = load_certificates(demo.root_certificate.read_bytes())
    issuing = load_certificates(demo.issuing_certificate.read_bytes())
    assert len(root) == len(issuing) == 1
    issuing[0].verify_directly_issued_by(root[0])
    root_key = load_private_key(demo.root_key.read_bytes())
    issuing_key = load_private_key(demo.issuing_key.read_bytes())
    assert root_key.public_key() == root[0].public_key()
    assert issuing_key.public_key() == issuing[0].public_key()
    (crl,) = load_crls(demo.crl.read_bytes())
    assert crl.is_signature_valid(issuing_key.public_key())
    assert len(crl) == 0

    for code, name in AGENCIES:
        chain = load_certificates(demo.agency_certificates[code].read_bytes())
        assert chain[1:] == issuing  # leaf, then the issuing CA
        assert attribute(chain[0].subject, NameOID.USER_ID) == [code]
        assert attribute(chain[0].subject, NameOID.COMMON_NAME) == [name]
        assert load_private_key(demo.agency_keys[code].read_bytes()).public_key() == chain[0].public_key()

    hub_chain = load_certificates(demo.hub_certificate.read_bytes())
    assert hub_chain[1:] == issuing
    assert attribute(hub_chain[0].subject, NameOID.USER_ID) == [HUB_ID]
    assert attribute(hub_chain[0].subject, NameOID.COMMON_NAME) == ["LGSP hub"]
    assert load_private_key(demo.hub_key.read_bytes()).public_key() == hub_chain[0].public_key()


def test_demo_trust_directory_trusts_the_demo_certificates(demo: DemoPki) -> None:
    store = TrustStore.from_directory(demo.trust_dir)
    assert (len(store.anchors), len(store.intermediates), len(store.crls)) == (1, 1, 1)
    for path in (*demo.agency_certificates.values(), demo.hub_certificate):
        leaf = load_certificates(path.read_bytes())[0]
        result = store.check(leaf, at=NOW + 30 * DAY)
        assert (result.trusted, result.reason, result.warnings) == (True, "ok", ())
        assert len(result.chain) == 3
        # The agency's own file (leaf + issuing CA) is enough with the root alone.
        alone = TrustStore.load(anchors=[demo.root_certificate])
        leaf, *carried = load_certificates(path.read_bytes())
        assert alone.check(leaf, untrusted_intermediates=carried, at=NOW).reason == "ok"


def test_demo_pki_refuses_to_overwrite(demo: DemoPki) -> None:
    before = demo.root_certificate.read_bytes(), demo.root_key.read_bytes()
    with pytest.raises(ClientError) as caught:
        write_demo_pki(demo.out_dir, AGENCIES, now=NOW, hub_organ_id=HUB_ID)
    assert caught.value.code == "Client.PkiExists"
    assert (demo.root_certificate.read_bytes(), demo.root_key.read_bytes()) == before


def test_demo_pki_overwrite(tmp_path: Path) -> None:
    first = write_demo_pki(tmp_path, [], now=NOW, hub_organ_id=HUB_ID, hub_name="Trục LGSP")
    old_root = first.root_certificate.read_bytes()
    first.root_key.chmod(0o644)  # a loosened key file is tightened again when rewritten
    second = write_demo_pki(tmp_path, [], now=NOW, hub_organ_id=HUB_ID, overwrite=True)
    assert second == first
    assert second.root_certificate.read_bytes() != old_root
    assert stat.S_IMODE(second.root_key.stat().st_mode) == 0o600
    assert dict(second.agency_certificates) == {}
    hub = load_certificates(second.hub_certificate.read_bytes())[0]
    assert attribute(hub.subject, NameOID.COMMON_NAME) == ["LGSP hub"]


@pytest.mark.parametrize("code", ["../evil", "a/b", "", ".hidden", "x..y"])
def test_demo_pki_refuses_unsafe_agency_codes(tmp_path: Path, code: str) -> None:
    with pytest.raises(InvalidIdentifier):
        write_demo_pki(tmp_path, [(code, "x")], now=NOW, hub_organ_id=HUB_ID)
    assert list(tmp_path.iterdir()) == []


def test_demo_pki_refuses_duplicate_agency_codes(tmp_path: Path) -> None:
    with pytest.raises(ClientError, match=r"000\.00\.00\.H53"):
        write_demo_pki(tmp_path, [AGENCIES[0], AGENCIES[0]], now=NOW, hub_organ_id=HUB_ID)
    assert list(tmp_path.iterdir()) == []
