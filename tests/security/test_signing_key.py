"""Loading a signing key: matching key and certificate, passwords, bad files, and a repr without secrets."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree

from esb.errors import ClientError, ConfigurationError
from esb.security import pki
from esb.security.signing_key import SigningKey
from esb.security.xml_signature import sign_enveloped
from esb.xml_processing.namespaces import DS

NOW = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Files:
    key: Path
    cert: Path  # leaf then issuing CA
    leaf: pki.IssuedCertificate
    issuing: pki.IssuedCertificate
    other: pki.IssuedCertificate


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> Files:
    directory = tmp_path_factory.mktemp("signing-key")
    root = pki.make_root_ca("Root", now=NOW)
    issuing = pki.make_intermediate_ca(root, "Issuing", now=NOW)
    leaf = pki.issue_signing_certificate(issuing, "Sở Tài chính", now=NOW, agency_code="000.00.01.H53")
    other = pki.issue_signing_certificate(issuing, "Sở Xây dựng", now=NOW)
    key, cert = directory / "key.pem", directory / "cert.pem"
    key.write_bytes(leaf.key_pem())
    cert.write_bytes(leaf.certificate_pem() + issuing.certificate_pem())
    return Files(key, cert, leaf, issuing, other)


def test_loads_the_key_the_certificate_and_its_chain(material: Files) -> None:
    key = SigningKey.from_files(material.key, material.cert)
    assert key.certificate == material.leaf.certificate
    assert key.chain == (material.issuing.certificate,)
    assert key.certificates == (material.leaf.certificate, material.issuing.certificate)
    assert key.sha256 == material.leaf.sha256
    assert key.subject == material.leaf.subject
    assert "000.00.01.H53" in key.subject


def test_the_xmlsec_key_fills_x509_data_leaf_first(material: Files) -> None:
    """xmlsec leaves X509Data empty unless the certificates were loaded into the key."""
    key = SigningKey.from_files(material.key, material.cert)
    root = etree.fromstring(b"<doc><body>text</body></doc>")
    signature = sign_enveloped(root, root, key)
    carried = [
        base64.b64decode("".join((element.text or "").split()))
        for element in signature.iter(f"{{{DS}}}X509Certificate")
    ]
    assert carried == [
        material.leaf.certificate.public_bytes(serialization.Encoding.DER),
        material.issuing.certificate.public_bytes(serialization.Encoding.DER),
    ]


def test_a_key_that_is_not_the_certificates_is_refused(material: Files, tmp_path: Path) -> None:
    cert = tmp_path / "other.pem"
    cert.write_bytes(material.other.certificate_pem())
    with pytest.raises(ClientError) as raised:
        SigningKey.from_files(material.key, cert)
    assert raised.value.code == "Client.BadKey"
    assert str(material.key) in raised.value.message
    assert str(cert) in raised.value.message
    with pytest.raises(ClientError) as in_memory:
        SigningKey.from_pem(material.leaf.key_pem(), material.other.certificate_pem())
    assert in_memory.value.code == "Client.BadKey"


def test_an_encrypted_key_needs_its_password(material: Files, tmp_path: Path) -> None:
    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_bytes(material.leaf.key_pem(password=b"mat khau 123"))
    key = SigningKey.from_files(encrypted, material.cert, password=b"mat khau 123")
    assert key.sha256 == material.leaf.sha256
    for password in (None, b"wrong"):
        with pytest.raises(ClientError) as raised:
            SigningKey.from_files(encrypted, material.cert, password=password)
        assert raised.value.code == "Client.BadKey"
        assert str(encrypted) in raised.value.message
        assert "mat khau" not in raised.value.message


def test_garbage_files_are_refused_naming_the_file(material: Files, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ClientError) as bad_key:
        SigningKey.from_files(garbage, material.cert)
    assert bad_key.value.code == "Client.BadKey"
    assert str(garbage) in bad_key.value.message
    assert "bm90IGEga2V5" not in bad_key.value.message
    with pytest.raises(ClientError) as bad_cert:
        SigningKey.from_files(material.key, garbage)
    assert bad_cert.value.code == "Client.BadCertificate"
    assert str(garbage) in bad_cert.value.message


def test_unreadable_files_are_a_configuration_error_naming_the_path(material: Files, tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(ConfigurationError) as no_key:
        SigningKey.from_files(missing, material.cert)
    assert str(missing) in no_key.value.message
    with pytest.raises(ConfigurationError) as no_cert:
        SigningKey.from_files(material.key, missing)
    assert str(missing) in no_cert.value.message
    with pytest.raises(ConfigurationError):
        SigningKey.from_files(tmp_path, material.cert)  # a directory


def test_only_rsa_keys(material: Files) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    pem = ec_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ClientError) as raised:
        SigningKey.from_pem(pem, material.leaf.certificate_pem())
    assert raised.value.code == "Client.BadKey"
    assert "RSA" in raised.value.message


def test_repr_shows_the_subject_and_fingerprint_never_the_key(material: Files) -> None:
    key = SigningKey.from_files(material.key, material.cert)
    shown = repr(key)
    assert shown == f"SigningKey(subject={material.leaf.subject!r}, sha256={material.leaf.sha256!r})"
    numbers = material.leaf.key.private_numbers()
    secrets = [format(numbers.d, "x")[:16], format(numbers.p, "x")[:16], "PRIVATE KEY"]
    body = material.leaf.key_pem().decode().splitlines()[1]
    for secret in (*secrets, body[:20]):
        assert secret not in shown
        assert secret not in str(key)
