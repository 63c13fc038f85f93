"""Directory versions and reads (esb.storage.directory_store, and the bumps in esb.storage.registry),
on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, select

from esb.domain.access import AgencyState
from esb.domain.agencies import AgencyRecord
from esb.pipeline import registration as registration_module
from esb.storage import directory_store, registry
from esb.storage.tables import Agency, DirectoryHead
from esb.wiring import Runtime

NOW = datetime(2026, 11, 21, 2, 30, tzinfo=UTC)
DOMAIN = "lgsp.tayninh.gov.vn"
RECORDS = (
    AgencyRecord("000.00.00.H53", "UBND tỉnh Tây Ninh", qd20_code="H53"),
    AgencyRecord("000.00.01.H53", "Văn phòng UBND tỉnh Tây Ninh", qd20_code="H53.01", old_code="VXP.53.1"),
    AgencyRecord("000.00.32.H53", "UBND huyện Châu Thành"),
    AgencyRecord("000.05.32.H53", "Phòng Nội vụ huyện Châu Thành"),
    AgencyRecord("000.00.00.H30", "UBND tỉnh Hậu Giang"),
)


def head(runtime: Runtime) -> int:
    with runtime.database.transaction() as session:
        return directory_store.head_version(session)


def versions(runtime: Runtime) -> dict[str, int]:
    with runtime.database.transaction() as session:
        return {
            code: version for code, version in session.execute(select(Agency.code, Agency.version)).tuples()
        }


def test_a_new_database_starts_at_version_zero(runtime: Runtime) -> None:
    assert head(runtime) == 0
    with runtime.database.transaction() as session:
        page = directory_store.changes_since(session, 0, 10)
    assert (page.entries, page.version, page.more) == ((), 0, False)


def test_every_agency_write_takes_the_next_version(runtime: Runtime) -> None:
    registration = runtime.registration
    registration.add_agency(RECORDS[0])
    registration.add_agency(RECORDS[1])
    assert versions(runtime) == {RECORDS[0].code: 1, RECORDS[1].code: 2}
    assert head(runtime) == 2
    registration.set_agency_state(RECORDS[0].code, AgencyState.LOCKED)
    assert versions(runtime)[RECORDS[0].code] == 3
    registration.set_signature_policy(RECORDS[1].code, None)
    assert versions(runtime)[RECORDS[1].code] == 4
    assert head(runtime) == 4


def test_a_bulk_import_gives_each_agency_its_own_version(runtime: Runtime) -> None:
    runtime.registration.import_agencies(RECORDS)
    assert sorted(versions(runtime).values()) == [1, 2, 3, 4, 5]
    assert head(runtime) == 5
    runtime.registration.import_agencies(RECORDS)  # the same list again: nothing changed
    assert sorted(versions(runtime).values()) == [1, 2, 3, 4, 5]
    renamed = AgencyRecord(RECORDS[2].code, "Ủy ban nhân dân huyện Châu Thành")
    runtime.registration.import_agencies([*RECORDS[:2], renamed])
    changed = versions(runtime)
    assert changed[renamed.code] > 5
    assert {code: v for code, v in changed.items() if code != renamed.code} == {
        r.code: n for n, r in enumerate(RECORDS, start=1) if r.code != renamed.code
    }
    assert head(runtime) >= changed[renamed.code]


@pytest.fixture
def statements(runtime: Runtime) -> Iterator[list[str]]:
    """Every SQL statement the runtime's engine runs while the test runs."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(runtime.database.engine, "before_cursor_execute", record)
    yield seen
    event.remove(runtime.database.engine, "before_cursor_execute", record)


def test_a_bulk_import_locks_and_writes_the_head_once_per_transaction(
    runtime: Runtime, statements: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registration_module, "IMPORT_BATCH", 2)  # three batches in one transaction
    runtime.registration.import_agencies(RECORDS)
    head_writes = [s for s in statements if s.lstrip().upper().startswith("UPDATE DIRECTORY_HEAD")]
    head_reads = [s for s in statements if "FROM directory_head" in s]
    assert len(head_writes) == 1
    assert len(head_reads) == 1
    if runtime.database.dialect == "postgresql":
        assert "FOR UPDATE" in head_reads[0]
    assert head(runtime) == 5


def test_a_rolled_back_transaction_leaves_the_head_alone(runtime: Runtime) -> None:
    runtime.registration.add_agency(RECORDS[0])

    def abandoned() -> None:
        with runtime.database.transaction() as session:
            registry.add_agency(session, RECORDS[1], province_domain=DOMAIN, now=NOW)
            raise RuntimeError("abandon")

    with pytest.raises(RuntimeError):
        abandoned()
    assert head(runtime) == 1
    runtime.registration.add_agency(RECORDS[1])
    assert versions(runtime)[RECORDS[1].code] == 2


def test_changes_since_pages_by_version(runtime: Runtime) -> None:
    runtime.registration.import_agencies(RECORDS)
    runtime.registration.set_agency_state(RECORDS[1].code, AgencyState.LOCKED)  # version 6
    seen: list[tuple[str, str, int]] = []
    since, pages = 0, 0
    while True:
        with runtime.database.transaction() as session:
            page = directory_store.changes_since(session, since, 2)
        pages += 1
        seen += [(e.code, e.state, e.version) for e in page.entries]
        assert page.version >= since
        since = page.version
        if not page.more:
            break
    assert pages == 3
    assert [v for _, _, v in seen] == sorted(v for _, _, v in seen)
    assert {code for code, _, _ in seen} == {r.code for r in RECORDS}  # each agency once, as it is now
    assert (RECORDS[1].code, "locked", 6) in seen
    assert since == head(runtime) == 6
    with runtime.database.transaction() as session:
        assert directory_store.changes_since(session, 6, 10).entries == ()
        later = directory_store.changes_since(session, 5, 10)
    assert [(e.code, e.state) for e in later.entries] == [(RECORDS[1].code, "locked")]
    assert (later.version, later.more) == (6, False)


def test_entries_carry_every_code_form_and_the_level(runtime: Runtime) -> None:
    runtime.registration.import_agencies(RECORDS)
    with runtime.database.transaction() as session:
        entries = {e.code: e for e in directory_store.iter_entries(session, batch=2)}
    assert set(entries) == {r.code for r in RECORDS}
    office = entries["000.00.01.H53"]
    assert (office.qd20_code, office.old_code, office.parent_code, office.level) == (
        "H53.01",
        "VXP.53.1",
        "000.00.00.H53",
        2,
    )
    assert entries["000.05.32.H53"].level == 3
    assert entries["000.00.00.H53"].parent_code is None


def test_a_missing_head_row_is_created_from_the_newest_version(runtime: Runtime) -> None:
    runtime.registration.add_agency(RECORDS[0])
    with runtime.database.transaction() as session:
        session.execute(DirectoryHead.__table__.delete())
    runtime.registration.add_agency(RECORDS[1])
    assert versions(runtime) == {RECORDS[0].code: 1, RECORDS[1].code: 2}
    assert head(runtime) == 2


def test_versions_are_serialised_between_sessions(runtime: Runtime) -> None:
    """Two transactions one after the other never hand out the same version."""
    with runtime.database.transaction() as first:
        a = directory_store.reserve_versions(first, 3)
    with runtime.database.transaction() as second:
        b = directory_store.reserve_versions(second, 1)
        c = directory_store.reserve_versions(second, 2)
    assert (a, b, c) == (1, 4, 5)
    assert head(runtime) == 6


def test_reserving_nothing_writes_nothing(runtime: Runtime, statements: list[str]) -> None:
    with runtime.database.transaction() as session:
        registry.count_agencies(session)
    assert not [s for s in statements if "directory_head" in s]
