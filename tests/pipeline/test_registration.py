"""Tests for esb.pipeline.registration and demo_seed on both engines: keys, imports, applications."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from esb.domain.access import KeyKind
from esb.domain.agencies import AgencyRecord
from esb.domain.signatures import SignaturePolicy
from esb.errors import ClientError
from esb.pipeline.demo_seed import DEMO_AGENCIES, seed_demo
from esb.pipeline.registration import IssuedKey, Registration
from esb.security.pki import IssuedCertificate, issue_signing_certificate, make_intermediate_ca, make_root_ca
from esb.security.request_signature import InvalidPublicKey
from esb.storage import registry
from esb.storage.tables import AccessKey, Agency, Application, AuditEvent, Base
from esb.wiring import Runtime

if TYPE_CHECKING:
    from conftest import FakeClock

A = "000.00.00.H53"
B = "000.00.01.H53"


@pytest.fixture
def application(registration: Registration) -> str:
    registration.add_agency(AgencyRecord(A, "UBND tỉnh Tây Ninh"))
    registration.register_application(A, "QLVB")
    return "QLVB"


def _all_stored_text(runtime: Runtime) -> list[bytes]:
    """Every value of every column of every table, as bytes."""
    values: list[bytes] = []
    with runtime.database.transaction() as session:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(select(table)):
                for value in row:
                    values.append(value if isinstance(value, bytes) else str(value).encode())
    return values


def test_issued_secret_is_returned_once_and_stored_only_as_ciphertext(
    registration: Registration, application: str, runtime: Runtime
) -> None:
    issued = registration.issue_key(A, application)
    assert issued.kind is KeyKind.SECRET
    assert issued.secret_key is not None
    assert len(issued.secret_key) >= 43
    secret = issued.secret_key.encode()
    for value in _all_stored_text(runtime):
        assert secret not in value
    with runtime.database.transaction() as session:
        stored = registry.get_key(session, issued.access_key)
        assert stored.secret_ciphertext is not None
        assert runtime.secret_box.open(stored.secret_ciphertext, bound_to=issued.access_key) == secret
    listed = registration.list_keys(A)
    assert [(k.access_key, k.state(datetime.now(UTC))) for k in listed] == [(issued.access_key, "active")]
    if runtime.database.is_sqlite:
        database = Path(make_url(runtime.settings.database_url).database or "")
        files = [database, *database.parent.glob(database.name + "-*")]  # with the WAL, if any
        assert database.stat().st_size > 0
        for path in files:
            assert secret not in path.read_bytes(), path.name


def test_issued_key_repr_does_not_show_the_secret() -> None:
    issued = IssuedKey(A, "QLVB", "AKABCDEFGHIJKLMNOPQRST", KeyKind.SECRET, "very-secret-value-123")
    assert "very-secret-value-123" not in repr(issued)
    assert "very-secret-value-123" not in str(issued)
    assert "very-secret-value-123" not in f"{[issued]}"
    assert "AKABCDEFGHIJKLMNOPQRST" in repr(issued)


def test_rotating_the_same_key_twice_is_key_revoked(registration: Registration, application: str) -> None:
    issued = registration.issue_key(A, application)
    first = registration.rotate_key(issued.access_key, overlap=timedelta(hours=1))
    assert first.secret_key not in (None, issued.secret_key)
    with pytest.raises(ClientError, match="already rotated") as caught:
        registration.rotate_key(issued.access_key, overlap=timedelta(hours=1))
    assert caught.value.code == "Client.KeyRevoked"
    keys = {k.access_key: k for k in registration.list_keys(A)}
    assert set(keys) == {issued.access_key, first.access_key}  # the refused rotation issued nothing
    assert keys[issued.access_key].replaced_by == first.access_key
    registration.rotate_key(first.access_key, overlap=timedelta(0))  # the new key can rotate in turn


def test_rotating_an_rsa_key_needs_the_new_public_key(
    registration: Registration, application: str, rsa_pair, rsa_pair_next
) -> None:
    issued = registration.issue_key(A, application, public_key_pem=rsa_pair.public_pem)
    with pytest.raises(ClientError) as caught:
        registration.rotate_key(issued.access_key, overlap=timedelta(hours=1))
    assert caught.value.code == "Client.InvalidRequest"
    rotated = registration.rotate_key(
        issued.access_key, overlap=timedelta(hours=1), public_key_pem=rsa_pair_next.public_pem
    )
    assert (rotated.kind, rotated.secret_key) == (KeyKind.RSA, None)


def test_revoking_is_idempotent(
    registration: Registration, application: str, clock, runtime: Runtime
) -> None:
    issued = registration.issue_key(A, application)
    first = registration.revoke_key(issued.access_key)
    assert first.revoked_at == clock.now
    assert first.state(clock.now) == "revoked"
    clock.advance(hours=1)
    second = registration.revoke_key(issued.access_key)
    assert second.revoked_at == first.revoked_at
    with pytest.raises(ClientError) as caught:
        registration.rotate_key(issued.access_key, overlap=timedelta(hours=1))
    assert caught.value.code == "Client.KeyRevoked"
    with pytest.raises(ClientError) as unknown:
        registration.revoke_key("AKNOSUCHKEYNOSUCHKEY")
    assert unknown.value.code == "Client.NotRegistered"


def _records(count: int, name: str) -> list[AgencyRecord]:
    return [AgencyRecord(f"H53.{number}", f"{name} {number}") for number in range(1, count + 1)]


def test_import_of_2500_agencies_reports_progress_and_counts(
    registration: Registration, runtime: Runtime
) -> None:
    steps: list[int] = []
    summary = registration.import_agencies(_records(2500, "Xã"), progress=steps.append)
    assert (summary.inserted, summary.updated) == (2500, 0)
    assert steps == [1000, 1000, 500]
    steps.clear()
    again = registration.import_agencies(iter(_records(2600, "Phường")[1500:]), progress=steps.append)
    assert (again.inserted, again.updated) == (100, 1000)
    assert steps == [1000, 100]
    with runtime.database.transaction() as session:
        assert registry.count_agencies(session) == 2600
        assert registry.get_agency(session, "H53.2500").name == "Phường 2500"
        assert registry.get_agency(session, "H53.2500").parent_code == "H53"
        assert registry.get_agency(session, "H53.1500").name == "Xã 1500"
        imports = session.scalars(select(AuditEvent).where(AuditEvent.event == "agency.import")).all()
        assert [event.detail for event in imports] == ["2500 new, 0 updated", "100 new, 1000 updated"]


def test_import_with_the_same_code_twice_keeps_the_last_row(
    registration: Registration, runtime: Runtime
) -> None:
    summary = registration.import_agencies(
        [AgencyRecord("H53.7", "Tên cũ"), AgencyRecord("H53.8", "Xã 8"), AgencyRecord("H53.7", "Tên mới")]
    )
    assert (summary.inserted, summary.updated) == (2, 0)
    with runtime.database.transaction() as session:
        assert registry.get_agency(session, "H53.7").name == "Tên mới"
        assert registry.count_agencies(session) == 2


def test_register_application_refuses_an_rsa_1024_certificate(
    registration: Registration, runtime: Runtime, self_signed: Any
) -> None:
    registration.add_agency(AgencyRecord(A, "UBND tỉnh Tây Ninh"))
    weak, _ = self_signed(bits=1024)
    with pytest.raises(InvalidPublicKey, match="2048"):
        registration.register_application(
            A, "QLVB", certificate=weak.public_bytes(serialization.Encoding.PEM)
        )
    with runtime.database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Application)) == 0


def test_seeding_the_demo_twice_adds_nothing(runtime: Runtime) -> None:
    first = seed_demo(runtime.registration)
    assert sorted(c.agency for c in first) == sorted(r.code for r in DEMO_AGENCIES)
    assert all(c.secretKey for c in first)
    assert seed_demo(runtime.registration) == []
    with runtime.database.transaction() as session:
        counts = [
            session.scalar(select(func.count()).select_from(t)) for t in (Agency, Application, AccessKey)
        ]
    assert counts == [len(DEMO_AGENCIES)] * 3


# -- signing certificates and signature policies ----------------------------------------------


@dataclass(frozen=True)
class Certificates:
    leaf: IssuedCertificate
    second: IssuedCertificate
    issuing: IssuedCertificate


# A day before the pipeline tests' clock starts (tests/pipeline/conftest.py START, 2026-11-21).
ISSUED = datetime(2026, 11, 20, 2, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def certificates() -> Certificates:
    issued_at = ISSUED
    root = make_root_ca("Test Root CA", now=issued_at)
    issuing = make_intermediate_ca(root, "Test Issuing CA", now=issued_at)
    leaf = issue_signing_certificate(issuing, "UBND tỉnh Tây Ninh", now=issued_at, agency_code=A, days=30)
    second = issue_signing_certificate(issuing, "UBND tỉnh Tây Ninh", now=issued_at, agency_code=A)
    return Certificates(leaf, second, issuing)


def _audit(runtime: Runtime, prefix: str) -> list[tuple[str, str | None, str | None]]:
    with runtime.database.transaction() as session:
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.event.startswith(prefix)).order_by(AuditEvent.id)
        ).all()
        return [(event.event, event.agency_code, event.detail) for event in events]


def test_signing_certificates_add_list_remove(
    registration: Registration, runtime: Runtime, certificates: Certificates, clock: FakeClock
) -> None:
    registration.add_agency(AgencyRecord(A, "UBND tỉnh Tây Ninh"))
    registration.add_agency(AgencyRecord(B, "Văn phòng UBND tỉnh Tây Ninh"))
    start = clock.now
    chain = certificates.leaf.certificate_pem() + certificates.issuing.certificate_pem()
    info = registration.add_signing_certificate(A, chain)  # a chain: its first certificate counts
    assert info.sha256 == certificates.leaf.sha256
    assert (info.agency_code, info.subject) == (A, certificates.leaf.subject)
    assert info.issuer == certificates.issuing.subject
    assert info.serial == f"{certificates.leaf.certificate.serial_number:x}"
    assert info.not_after == certificates.leaf.certificate.not_valid_after_utc
    assert (info.added_at, info.removed_at, info.state(clock.now)) == (start, None, "active")
    der = certificates.second.certificate.public_bytes(serialization.Encoding.DER)
    assert registration.add_signing_certificate(A, der).sha256 == certificates.second.sha256
    with pytest.raises(ClientError) as twice:
        registration.add_signing_certificate(A, chain)
    assert twice.value.code == "Client.AlreadyRegistered"

    assert [c.sha256 for c in registration.signing_certificates(A)] == [
        certificates.leaf.sha256,
        certificates.second.sha256,
    ]
    assert registration.signing_certificates(B) == []
    assert len(registration.signing_certificates()) == 2
    with runtime.database.transaction() as session:
        assert registry.registered_signers(session, A, now=clock.now) == sorted(
            [certificates.leaf.sha256, certificates.second.sha256]
        )

    clock.advance(minutes=5)
    removed = registration.remove_signing_certificate(A, certificates.leaf.sha256[:8].upper())
    assert (removed.sha256, removed.removed_at, removed.state(clock.now)) == (
        certificates.leaf.sha256,
        clock.now,
        "removed",
    )
    with runtime.database.transaction() as session:
        assert registry.registered_signers(session, A, now=clock.now) == [certificates.second.sha256]
    states = {c.sha256: c.state(clock.now) for c in registration.signing_certificates(A)}
    assert states == {certificates.leaf.sha256: "removed", certificates.second.sha256: "active"}
    # the second certificate is valid for 730 days: listed as expired afterwards
    assert registration.signing_certificates(A)[1].state(clock.now + timedelta(days=731)) == "expired"

    assert _audit(runtime, "agency.certificate") == [
        ("agency.certificate.add", A, f"sha256 {certificates.leaf.sha256}"),
        ("agency.certificate.add", A, f"sha256 {certificates.second.sha256}"),
        ("agency.certificate.remove", A, f"sha256 {certificates.leaf.sha256}"),
    ]


@pytest.mark.parametrize(
    ("prefix", "code"),
    [
        ("0123456", "Client.InvalidRequest"),  # shorter than 8 hex digits
        ("not-hex-at-all", "Client.InvalidRequest"),
        ("0" * 65, "Client.InvalidRequest"),
        ("00000000", "Client.NotRegistered"),
    ],
)
def test_remove_signing_certificate_refusals(
    registration: Registration, certificates: Certificates, prefix: str, code: str
) -> None:
    registration.add_agency(AgencyRecord(A, "UBND tỉnh Tây Ninh"))
    registration.add_signing_certificate(A, certificates.second.certificate_pem())
    if certificates.second.sha256.startswith(prefix):
        pytest.skip("the random certificate happens to start with the prefix")
    with pytest.raises(ClientError) as refused:
        registration.remove_signing_certificate(A, prefix)
    assert refused.value.code == code
    assert [c.removed_at for c in registration.signing_certificates(A)] == [None]


def test_remove_signing_certificate_accepts_a_colon_separated_fingerprint(
    registration: Registration, certificates: Certificates
) -> None:
    registration.add_agency(AgencyRecord(A, "UBND tỉnh Tây Ninh"))
    registration.add_signing_certificate(A, certificates.second.certificate_pem())
    digest = certificates.second.sha256.upper()
    colons = ":".join(digest[i : i + 2] for i in range(0, 64, 2))
    assert registration.remove_signing_certificate(A, colons).sha256 == certificates.second.sha256


def test_add_signing_certificate_refusals(
    registration: Registration, runtime: Runtime, certificates: Certificates, clock: FakeClock
) -> None:
    registration.add_agency(AgencyRecord(A, "UBND tỉnh Tây Ninh"))
    encipherment = issue_signing_certificate(
        certificates.issuing, "enc", now=ISSUED, key_usage="encipherment-only"
    )
    cases = [
        (b"not a certificate", "neither PEM nor DER"),
        (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "no PEM CERTIFICATE block"),
        (certificates.issuing.certificate_pem(), "is a CA certificate"),
        (encipherment.certificate_pem(), "may not sign documents"),
    ]
    for data, message in cases:
        with pytest.raises(ClientError, match=message) as refused:
            registration.add_signing_certificate(A, data)
        assert refused.value.code == "Client.BadCertificate"
    # the leaf is valid for 30 days from ISSUED: expired once the clock passes that
    clock.advance(days=30)
    with pytest.raises(ClientError, match="expired") as expired:
        registration.add_signing_certificate(A, certificates.leaf.certificate_pem())
    assert expired.value.code == "Client.BadCertificate"
    with pytest.raises(ClientError) as unknown:
        registration.add_signing_certificate(B, certificates.second.certificate_pem())
    assert unknown.value.code == "Client.NotRegistered"
    assert registration.signing_certificates() == []
    assert _audit(runtime, "agency.certificate") == []


def test_set_signature_policy_and_clear(registration: Registration, runtime: Runtime) -> None:
    registration.add_agency(AgencyRecord(A, "UBND tỉnh Tây Ninh"))
    registration.add_agency(AgencyRecord(B, "Văn phòng UBND tỉnh Tây Ninh"))
    assert registration.set_signature_policy(A, SignaturePolicy.REQUIRE).signature_policy == "require"
    registration.set_signature_policy(B, SignaturePolicy.OFF)
    with runtime.database.transaction() as session:
        assert registry.agency_rows(session, [A, B]) == {A: ("active", "require"), B: ("active", "off")}
    assert registration.set_signature_policy(A, None).signature_policy is None
    with runtime.database.transaction() as session:
        assert registry.agency_rows(session, [A, B]) == {A: ("active", None), B: ("active", "off")}
    with pytest.raises(ClientError) as unknown:
        registration.set_signature_policy("000.00.99.H53", SignaturePolicy.RECORD)
    assert unknown.value.code == "Client.NotRegistered"
    assert _audit(runtime, "agency.signature-policy") == [
        ("agency.signature-policy", A, "require"),
        ("agency.signature-policy", B, "off"),
        ("agency.signature-policy", A, "default"),
    ]
