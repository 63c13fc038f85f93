"""Tests for esb.security.trust_store: chains, validity, key usage, CRLs, pinning, loading.

One throw-away PKI per module (RSA keys are made once and reused across certificates):
root CA → issuing CA → document-signing leaf, at a fixed ``NOW``.  Every check asserts its
``reason`` exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from esb.domain.signatures import REASONS, Verdict
from esb.errors import ConfigurationError
from esb.security.pki import (
    IssuedCertificate,
    issue_signing_certificate,
    make_crl,
    make_intermediate_ca,
    make_root_ca,
    make_self_signed_signing_certificate,
    new_rsa_key,
)
from esb.security.trust_store import ChainCheck, TrustStore

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
AGENCY = "000.00.00.H53"


@dataclass(frozen=True)
class Keys:
    root: rsa.RSAPrivateKey
    issuing: rsa.RSAPrivateKey
    leaf: rsa.RSAPrivateKey
    other: rsa.RSAPrivateKey


@dataclass(frozen=True)
class Pki:
    keys: Keys
    root: IssuedCertificate
    issuing: IssuedCertificate
    leaf: IssuedCertificate

    def subjects(self) -> tuple[str, ...]:
        return tuple(c.certificate.subject.rfc4514_string() for c in (self.leaf, self.issuing, self.root))

    def leaf_issued(
        self,
        *,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        key_usage: Literal["signing", "encipherment-only"] = "signing",
    ) -> IssuedCertificate:
        """Another leaf from the issuing CA with the leaf's key (fresh keys are slow)."""
        return issue_signing_certificate(
            self.issuing,
            "Sở Tư pháp",
            now=NOW - 30 * DAY,
            agency_code=AGENCY,
            key=self.keys.leaf,
            not_before=not_before,
            not_after=not_after,
            key_usage=key_usage,
        )


@pytest.fixture(scope="module")
def pki() -> Pki:
    keys = Keys(new_rsa_key(), new_rsa_key(), new_rsa_key(), new_rsa_key())
    root = make_root_ca("Test Root CA", now=NOW - 365 * DAY, key=keys.root)
    issuing = make_intermediate_ca(root, "Test Issuing CA", now=NOW - 365 * DAY, key=keys.issuing)
    leaf = issue_signing_certificate(
        issuing, "Sở Tư pháp", now=NOW - 30 * DAY, agency_code=AGENCY, key=keys.leaf
    )
    return Pki(keys, root, issuing, leaf)


@pytest.fixture(scope="module")
def store(pki: Pki) -> TrustStore:
    return TrustStore.of([pki.root.certificate], [pki.issuing.certificate])


def assert_untrusted(result: ChainCheck, reason: str) -> None:
    assert (result.trusted, result.reason) == (False, reason), result
    assert REASONS[reason][0] is Verdict.UNTRUSTED


# -- chains ----------------------------------------------------------------------------------------


def test_trusted_via_configured_intermediate(pki: Pki, store: TrustStore) -> None:
    result = store.check(pki.leaf.certificate, at=NOW)
    assert (result.trusted, result.reason) == (True, "ok")
    assert result.chain == pki.subjects()
    assert result.chain[0] == f"UID={AGENCY},CN=Sở Tư pháp,C=VN"
    assert result.warnings == ()
    assert "Test Root CA" in result.message


def test_trusted_via_intermediate_carried_by_the_package(pki: Pki) -> None:
    store = TrustStore.of([pki.root.certificate])
    result = store.check(pki.leaf.certificate, untrusted_intermediates=[pki.issuing.certificate], at=NOW)
    assert (result.trusted, result.reason) == (True, "ok")
    assert result.chain == pki.subjects()


def test_missing_intermediate_is_untrusted(pki: Pki) -> None:
    result = TrustStore.of([pki.root.certificate]).check(pki.leaf.certificate, at=NOW)
    assert_untrusted(result, "chain-untrusted")
    assert result.chain == ()
    assert "Sở Tư pháp" in result.message
    assert "Test Issuing CA" in result.message  # the issuer it could not find


def test_root_with_the_same_name_but_another_key_is_untrusted(pki: Pki) -> None:
    impostor = make_root_ca("Test Root CA", now=NOW - 365 * DAY, key=pki.keys.other)
    assert impostor.certificate.subject == pki.root.certificate.subject
    store = TrustStore.of([impostor.certificate], [pki.issuing.certificate])
    assert_untrusted(store.check(pki.leaf.certificate, at=NOW), "chain-untrusted")


def test_unrelated_root_is_untrusted(pki: Pki) -> None:
    other = make_root_ca("Some Other Root", now=NOW - 365 * DAY, key=pki.keys.other)
    store = TrustStore.of([other.certificate], [pki.issuing.certificate])
    assert_untrusted(store.check(pki.leaf.certificate, at=NOW), "chain-untrusted")


def test_intermediate_offered_as_leaf_fails_key_usage(pki: Pki, store: TrustStore) -> None:
    result = store.check(pki.issuing.certificate, at=NOW)
    assert_untrusted(result, "key-usage")
    assert "keyCertSign" in result.message


def test_extended_key_usages_do_not_matter(pki: Pki) -> None:
    """Vietnamese document-signing certificates carry various EKUs, on the leaf and on CAs."""
    ca_builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "EKU Issuing CA")]))
        .issuer_name(pki.root.certificate.subject)
        .public_key(pki.keys.issuing.public_key())
        .serial_number(1001)
        .not_valid_before(NOW - 10 * DAY)
        .not_valid_after(NOW + 300 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(pki.keys.issuing.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(pki.keys.root.public_key()), critical=False
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
    )
    ca = IssuedCertificate(ca_builder.sign(pki.keys.root, hashes.SHA256()), pki.keys.issuing)
    leaf_builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "EKU signer")]))
        .issuer_name(ca.certificate.subject)
        .public_key(pki.keys.leaf.public_key())
        .serial_number(1002)
        .not_valid_before(NOW - 10 * DAY)
        .not_valid_after(NOW + 300 * DAY)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(pki.keys.issuing.public_key()), critical=False
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION, ExtendedKeyUsageOID.CODE_SIGNING]),
            critical=False,
        )
    )
    leaf = leaf_builder.sign(pki.keys.issuing, hashes.SHA256())
    result = TrustStore.of([pki.root.certificate], [ca.certificate]).check(leaf, at=NOW)
    assert (result.trusted, result.reason) == (True, "ok"), result.message


# -- validity --------------------------------------------------------------------------------------


def test_expired_leaf(pki: Pki, store: TrustStore) -> None:
    expired = pki.leaf_issued(not_before=NOW - 400 * DAY, not_after=NOW - DAY)
    result = store.check(expired.certificate, at=NOW)
    assert_untrusted(result, "certificate-expired")
    assert "Sở Tư pháp" in result.message
    assert "2026-02-28T09:00:00Z" in result.message


def test_not_yet_valid_leaf(pki: Pki, store: TrustStore) -> None:
    future = pki.leaf_issued(not_before=NOW + DAY, not_after=NOW + 400 * DAY)
    result = store.check(future.certificate, at=NOW)
    assert_untrusted(result, "certificate-not-yet-valid")
    assert "Sở Tư pháp" in result.message


def test_expired_leaf_checked_at_signing_time_is_trusted(pki: Pki, store: TrustStore) -> None:
    expired = pki.leaf_issued(not_before=NOW - 400 * DAY, not_after=NOW - DAY)
    result = store.check(expired.certificate, at=NOW - 10 * DAY)
    assert (result.trusted, result.reason) == (True, "ok")


def test_naive_time_is_utc(pki: Pki, store: TrustStore) -> None:
    expired = pki.leaf_issued(not_before=NOW - 400 * DAY, not_after=NOW - DAY)
    just_after = (NOW - DAY + timedelta(seconds=1)).replace(tzinfo=None)
    assert_untrusted(store.check(expired.certificate, at=just_after), "certificate-expired")
    assert store.check(expired.certificate, at=just_after - timedelta(seconds=2)).trusted


@pytest.mark.parametrize(
    ("window", "reason"),
    [
        ((-400, -1), "certificate-expired"),
        ((1, 400), "certificate-not-yet-valid"),
    ],
)
def test_issuing_ca_outside_its_validity(pki: Pki, window: tuple[int, int], reason: str) -> None:
    issuing = make_intermediate_ca(
        pki.root,
        "Test Issuing CA",
        now=NOW,
        key=pki.keys.issuing,
        not_before=NOW + window[0] * DAY,
        not_after=NOW + window[1] * DAY,
    )
    leaf = pki.leaf_issued()  # same issuer name and key: it chains through either CA certificate
    store = TrustStore.of([pki.root.certificate], [issuing.certificate])
    result = store.check(leaf.certificate, at=NOW)
    assert_untrusted(result, reason)
    assert "CA CN=Test Issuing CA" in result.message
    # With a valid certificate of the same CA also available, the chain is built through that one.
    both = TrustStore.of([pki.root.certificate], [issuing.certificate, pki.issuing.certificate])
    assert both.check(leaf.certificate, at=NOW).trusted


def test_expired_trust_anchor(pki: Pki) -> None:
    root = make_root_ca("Test Root CA", now=NOW - 4000 * DAY, days=3000, key=pki.keys.root)
    store = TrustStore.of([root.certificate], [pki.issuing.certificate])
    result = store.check(pki.leaf.certificate, at=NOW)
    assert_untrusted(result, "certificate-expired")
    assert "trust anchor" in result.message
    assert "Test Root CA" in result.message


# -- key usage ---------------------------------------------------------------------------------------


def test_encipherment_only_certificate_may_not_sign(pki: Pki, store: TrustStore) -> None:
    leaf = pki.leaf_issued(key_usage="encipherment-only")
    result = store.check(leaf.certificate, at=NOW)
    assert_untrusted(result, "key-usage")
    assert "keyEncipherment" in result.message
    # Key usage is checked even for a pinned certificate.
    assert_untrusted(store.check(leaf.certificate, at=NOW, pinned=True), "key-usage")


# -- CRLs --------------------------------------------------------------------------------------------


def test_revoked_leaf(pki: Pki) -> None:
    crl = make_crl(pki.issuing, [(pki.leaf.certificate.serial_number, NOW - 2 * DAY)], now=NOW - DAY)
    store = TrustStore.of([pki.root.certificate], [pki.issuing.certificate], [crl])
    result = store.check(pki.leaf.certificate, at=NOW)
    assert_untrusted(result, "certificate-revoked")
    assert "Sở Tư pháp" in result.message
    assert "2026-02-27T09:00:00Z" in result.message
    assert result.chain == pki.subjects()
    # Before the revocation date the same certificate is fine.
    assert store.check(pki.leaf.certificate, at=NOW - 3 * DAY).reason == "ok"


def test_revoked_intermediate(pki: Pki) -> None:
    crl = make_crl(pki.root, [(pki.issuing.certificate.serial_number, NOW - 5 * DAY)], now=NOW - DAY)
    store = TrustStore.of([pki.root.certificate], [pki.issuing.certificate], [crl])
    result = store.check(pki.leaf.certificate, at=NOW)
    assert_untrusted(result, "certificate-revoked")
    assert "Test Issuing CA" in result.message


def test_revocation_after_the_check_time_is_noted_not_fatal(pki: Pki) -> None:
    crl = make_crl(pki.issuing, [(pki.leaf.certificate.serial_number, NOW + DAY)], now=NOW + 2 * DAY)
    store = TrustStore.of([pki.root.certificate], [pki.issuing.certificate], [crl])
    result = store.check(pki.leaf.certificate, at=NOW)
    assert (result.trusted, result.reason) == (True, "ok")
    assert len(result.warnings) == 1
    assert "after the verification time" in result.warnings[0]


def test_other_serials_on_the_crl_do_not_matter(pki: Pki) -> None:
    crl = make_crl(pki.issuing, [(pki.leaf.certificate.serial_number + 1, NOW - DAY)], now=NOW - DAY)
    store = TrustStore.of([pki.root.certificate], [pki.issuing.certificate], [crl])
    result = store.check(pki.leaf.certificate, at=NOW)
    assert (result.reason, result.warnings) == ("ok", ())


def test_crl_signed_by_another_key_is_ignored_with_a_warning(pki: Pki) -> None:
    forger = IssuedCertificate(pki.issuing.certificate, pki.keys.other)  # same name, wrong key
    crl = make_crl(forger, [(pki.leaf.certificate.serial_number, NOW - 2 * DAY)], now=NOW - DAY)
    assert crl.issuer == pki.issuing.certificate.subject
    store = TrustStore.of([pki.root.certificate], [pki.issuing.certificate], [crl])
    result = store.check(pki.leaf.certificate, at=NOW)
    assert (result.trusted, result.reason) == (True, "ok")
    assert len(result.warnings) == 1
    assert "signature does not verify" in result.warnings[0]
    assert "Test Issuing CA" in result.warnings[0]


def test_stale_crl_still_counts_with_a_warning(pki: Pki) -> None:
    stale_empty = make_crl(pki.issuing, [], now=NOW - 60 * DAY, next_update_days=30)
    store = TrustStore.of([pki.root.certificate], [pki.issuing.certificate], [stale_empty])
    result = store.check(pki.leaf.certificate, at=NOW)
    assert (result.trusted, result.reason) == (True, "ok")
    assert len(result.warnings) == 1
    assert "past its nextUpdate" in result.warnings[0]
    assert "2026-01-30T09:00:00Z" in result.warnings[0]

    stale_revoking = make_crl(
        pki.issuing, [(pki.leaf.certificate.serial_number, NOW - 50 * DAY)], now=NOW - 40 * DAY
    )
    store = TrustStore.of([pki.root.certificate], [pki.issuing.certificate], [stale_revoking])
    result = store.check(pki.leaf.certificate, at=NOW)
    assert_untrusted(result, "certificate-revoked")
    assert any("past its nextUpdate" in warning for warning in result.warnings)


# -- pinning and the absence of anchors -----------------------------------------------------------------


def test_no_anchors_and_not_pinned(pki: Pki) -> None:
    store = TrustStore.of([], [pki.issuing.certificate])
    assert store.is_empty
    assert_untrusted(store.check(pki.leaf.certificate, at=NOW), "no-trust-anchors")


def test_pinned_certificate_without_anchors_is_trusted(pki: Pki) -> None:
    result = TrustStore.of().check(pki.leaf.certificate, at=NOW, pinned=True)
    assert (result.trusted, result.reason) == (True, "ok")
    assert result.chain == (pki.subjects()[0],)


def test_pinned_certificate_reports_the_chain_when_one_builds(pki: Pki, store: TrustStore) -> None:
    result = store.check(pki.leaf.certificate, at=NOW, pinned=True)
    assert (result.reason, result.chain) == ("ok", pki.subjects())
    # ... and is still trusted when none builds.
    result = TrustStore.of([pki.root.certificate]).check(pki.leaf.certificate, at=NOW, pinned=True)
    assert (result.reason, result.chain) == ("ok", pki.subjects()[:1])


def test_pinned_but_expired(pki: Pki) -> None:
    expired = pki.leaf_issued(not_before=NOW - 400 * DAY, not_after=NOW - DAY)
    assert_untrusted(TrustStore.of().check(expired.certificate, at=NOW, pinned=True), "certificate-expired")


def test_pinned_but_revoked(pki: Pki) -> None:
    crl = make_crl(pki.issuing, [(pki.leaf.certificate.serial_number, NOW - 2 * DAY)], now=NOW - DAY)
    # No anchors: the CRL is checked with the issuing CA's key from the intermediates.
    store = TrustStore.of([], [pki.issuing.certificate], [crl])
    result = store.check(pki.leaf.certificate, at=NOW, pinned=True)
    assert_untrusted(result, "certificate-revoked")
    assert result.chain == (pki.subjects()[0],)
    # The issuing CA may also come with the package.
    store = TrustStore.of(crls=[crl])
    result = store.check(
        pki.leaf.certificate, at=NOW, pinned=True, untrusted_intermediates=[pki.issuing.certificate]
    )
    assert_untrusted(result, "certificate-revoked")


def test_pinned_with_a_crl_whose_issuer_is_unknown(pki: Pki) -> None:
    crl = make_crl(pki.issuing, [(pki.leaf.certificate.serial_number, NOW - 2 * DAY)], now=NOW - DAY)
    result = TrustStore.of(crls=[crl]).check(pki.leaf.certificate, at=NOW, pinned=True)
    assert (result.trusted, result.reason) == (True, "ok")
    assert len(result.warnings) == 1
    assert "issuer's certificate is not known" in result.warnings[0]


# -- self-signed hub certificate ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def hub(pki: Pki) -> IssuedCertificate:
    return make_self_signed_signing_certificate(
        "LGSP hub", now=NOW - 10 * DAY, days=365, key=pki.keys.other, agency_code="000.00.00.G01"
    )


def test_self_signed_hub_certificate_as_its_own_anchor(hub: IssuedCertificate, pki: Pki) -> None:
    store = TrustStore.of([hub.certificate, pki.root.certificate])
    result = store.check(hub.certificate, at=NOW)
    assert (result.trusted, result.reason) == (True, "ok")
    assert result.chain == (hub.subject,)
    # Not listed: untrusted.
    assert_untrusted(TrustStore.of([pki.root.certificate]).check(hub.certificate, at=NOW), "chain-untrusted")
    # Listed, but checked outside its validity.
    assert_untrusted(store.check(hub.certificate, at=NOW + 400 * DAY), "certificate-expired")


def test_self_signed_anchor_without_key_identifiers(pki: Pki) -> None:
    """A bare self-signed certificate (no AKI/SKI, no extensions) listed as an anchor is trusted."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bare hub")])
    bare = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(pki.keys.other.public_key())
        .serial_number(77)
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + DAY)
        .sign(pki.keys.other, hashes.SHA256())
    )
    result = TrustStore.of([bare]).check(bare, at=NOW)
    assert (result.reason, result.chain) == ("ok", ("CN=bare hub",))


def test_self_signed_anchor_revoking_itself(hub: IssuedCertificate) -> None:
    crl = make_crl(hub, [(hub.certificate.serial_number, NOW - DAY)], now=NOW - DAY)
    result = TrustStore.of([hub.certificate], crls=[crl]).check(hub.certificate, at=NOW)
    assert_untrusted(result, "certificate-revoked")


# -- the result type ---------------------------------------------------------------------------------


def test_chain_check_refuses_unknown_reasons() -> None:
    with pytest.raises(ValueError, match="unknown reason"):
        ChainCheck(False, "bad-luck", "", ())


# -- loading -------------------------------------------------------------------------------------------


def pem(*certificates: IssuedCertificate) -> bytes:
    return b"".join(c.certificate_pem() for c in certificates)


def test_load_pem_bundle_der_and_directories(pki: Pki, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(pem(pki.root, pki.issuing))
    der = tmp_path / "issuing.cer"
    der.write_bytes(pki.issuing.certificate.public_bytes(serialization.Encoding.DER))
    crl_dir = tmp_path / "crls"
    crl_dir.mkdir()
    revoking = make_crl(pki.issuing, [(pki.leaf.certificate.serial_number, NOW - DAY)], now=NOW - DAY)
    (crl_dir / "b.crl").write_bytes(revoking.public_bytes(serialization.Encoding.DER))
    (crl_dir / "a.pem").write_bytes(make_crl(pki.root, [], now=NOW).public_bytes(serialization.Encoding.PEM))
    (crl_dir / "README.txt").write_text("not read")

    store = TrustStore.load(anchors=[bundle], intermediates=[der], crls=[crl_dir])
    assert store.anchors == (pki.root.certificate, pki.issuing.certificate)
    assert store.intermediates == (pki.issuing.certificate,)
    assert [crl.issuer for crl in store.crls] == [
        pki.root.certificate.subject,
        pki.issuing.certificate.subject,
    ]
    assert not store.is_empty
    assert_untrusted(store.check(pki.leaf.certificate, at=NOW), "certificate-revoked")


def test_load_several_crls_from_one_pem(pki: Pki, tmp_path: Path) -> None:
    crls = tmp_path / "all.crl"
    crls.write_bytes(
        make_crl(pki.root, [], now=NOW).public_bytes(serialization.Encoding.PEM)
        + make_crl(pki.issuing, [], now=NOW).public_bytes(serialization.Encoding.PEM)
    )
    assert len(TrustStore.load(crls=[crls]).crls) == 2


def test_from_directory(pki: Pki, tmp_path: Path) -> None:
    (tmp_path / "anchors").mkdir()
    (tmp_path / "anchors" / "root.crt").write_bytes(pem(pki.root))
    (tmp_path / "intermediates").mkdir()
    (tmp_path / "intermediates" / "issuing.pem").write_bytes(pem(pki.issuing))
    store = TrustStore.from_directory(tmp_path)  # no crls/ directory: no CRLs
    assert (len(store.anchors), len(store.intermediates), store.crls) == (1, 1, ())
    assert store.check(pki.leaf.certificate, at=NOW).reason == "ok"
    assert TrustStore.from_directory(tmp_path / "intermediates").is_empty  # no subdirectories at all


def test_from_missing_directory_is_empty(tmp_path: Path) -> None:
    store = TrustStore.from_directory(tmp_path / "nowhere")
    assert (store.is_empty, store.intermediates, store.crls) == (True, (), ())


def test_from_directory_that_is_a_file(tmp_path: Path) -> None:
    file = tmp_path / "trust"
    file.write_text("not a directory")
    with pytest.raises(ConfigurationError, match="not a directory") as caught:
        TrustStore.from_directory(file)
    assert caught.value.code == "Server.Configuration"


def test_missing_file_is_a_configuration_error(tmp_path: Path) -> None:
    missing = tmp_path / "root.pem"
    with pytest.raises(ConfigurationError) as caught:
        TrustStore.load(anchors=[missing])
    assert caught.value.code == "Server.Configuration"
    assert str(missing) in caught.value.message


@pytest.mark.parametrize(
    ("kind", "content"),
    [
        ("anchors", b"this is not a certificate"),
        ("anchors", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
        ("intermediates", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
        ("crls", b"\x30\x03\x02\x01\x00"),
    ],
)
def test_garbage_file_is_a_configuration_error(tmp_path: Path, kind: str, content: bytes) -> None:
    directory = tmp_path / kind
    directory.mkdir()
    (directory / "ok-but-empty.txt").write_bytes(b"ignored")
    bad = directory / "bad.pem"
    bad.write_bytes(content)
    with pytest.raises(ConfigurationError) as caught:
        TrustStore.from_directory(tmp_path)
    assert caught.value.code == "Server.Configuration"
    assert str(bad) in caught.value.message


def test_certificate_in_the_crl_directory_is_refused(pki: Pki, tmp_path: Path) -> None:
    misplaced = tmp_path / "root.pem"
    misplaced.write_bytes(pem(pki.root))
    with pytest.raises(ConfigurationError, match="CRL"):
        TrustStore.load(crls=[misplaced])
