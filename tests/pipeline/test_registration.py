"""Tests for esb.pipeline.registration and demo_seed on both engines: keys, imports, applications."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from esb.domain.access import KeyKind
from esb.domain.agencies import AgencyRecord
from esb.errors import ClientError
from esb.pipeline.demo_seed import DEMO_AGENCIES, seed_demo
from esb.pipeline.registration import IssuedKey, Registration
from esb.security.request_signature import InvalidPublicKey
from esb.storage import registry
from esb.storage.tables import AccessKey, Agency, Application, AuditEvent, Base
from esb.wiring import Runtime

A = "000.00.00.H53"


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
