"""Tests for esb.storage.database: migrations, transactions and connection errors, on both engines."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select, text

from esb.errors import ConfigurationError
from esb.storage.database import Database, StorageUnavailable, open_database
from esb.storage.tables import Agency, AuditEvent, Base

NOW = datetime(2026, 11, 21, 2, 30, tzinfo=UTC)


def _agency(code: str) -> Agency:
    return Agency(
        code=code,
        name="UBND tỉnh Tây Ninh",
        account=f"{code}@lgsp.example.gov.vn",
        state="active",
        created_at=NOW,
        updated_at=NOW,
    )


def test_open_database_migrates_to_head_and_a_second_upgrade_is_a_no_op(database_url: str) -> None:
    database = open_database(database_url)
    try:
        head = database.head_revision()
        assert head is not None
        assert database.current_revision() == head
        with database.transaction() as session:
            session.add(_agency("000.00.00.H53"))
        database.upgrade()
        assert database.current_revision() == head
        with database.transaction() as session:
            assert session.scalar(select(func.count()).select_from(Agency)) == 1
    finally:
        database.dispose()


def test_open_database_without_migrate_leaves_the_database_empty(database_url: str) -> None:
    database = open_database(database_url, migrate=False)
    try:
        assert database.current_revision() is None
    finally:
        database.dispose()


def test_migrations_produce_exactly_the_models_schema(database_url: str) -> None:
    database = open_database(database_url)
    try:
        with database.engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert diff == []
    finally:
        database.dispose()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    database = open_database(f"sqlite:///{tmp_path / 'sub' / 'esb.sqlite3'}")
    try:
        with database.engine.connect() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
    finally:
        database.dispose()


def test_transaction_rolls_back_everything_when_the_block_raises(database_url: str) -> None:
    database = open_database(database_url)

    def write_then_fail() -> None:
        with database.transaction() as session:
            session.add(_agency("000.00.00.H53"))
            session.flush()  # the row reached the database inside the transaction
            session.add(AuditEvent(at=NOW, event="agency.add", outcome="ok"))
            session.flush()
            raise RuntimeError("boom")

    try:
        with pytest.raises(RuntimeError, match="boom"):
            write_then_fail()
        with database.transaction() as session:
            assert session.scalar(select(func.count()).select_from(Agency)) == 0
            assert session.scalar(select(func.count()).select_from(AuditEvent)) == 0
    finally:
        database.dispose()


def test_unreachable_database_is_storage_unavailable_without_the_password() -> None:
    with pytest.raises(StorageUnavailable) as caught:
        open_database("postgresql+psycopg://esb:Mat-Khau-123@127.0.0.1:1/esb")
    assert caught.value.code == "Server.StorageUnavailable"
    assert "127.0.0.1:1" in caught.value.message
    assert "Mat-Khau-123" not in str(caught.value)


@pytest.mark.parametrize("url", ["mysql://esb:pw@127.0.0.1/esb", "oracle://esb@db/esb"])
def test_unsupported_database_scheme_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError, match="unsupported database") as caught:
        open_database(url)
    assert caught.value.code == "Server.Configuration"


def test_unparsable_database_url_is_a_configuration_error_without_the_url() -> None:
    with pytest.raises(ConfigurationError, match="not a database URL") as caught:
        Database("nicht eine URL mit geheim")
    assert "geheim" not in caught.value.message
