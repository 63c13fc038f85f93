"""The directory's versions and reads: every agency as a search entry, and what changed since.

Every change to an agency row takes the next **directory version** (``agency.version``) from
the one-row ``directory_head`` table, under that row's lock (``SELECT … FOR UPDATE`` on
PostgreSQL; SQLite's single writer already serialises).  A transaction locks the head the
first time it reserves versions, reserves a block for all the agencies it writes (one per
agency), and writes the head once, just before it commits.  Because the lock is held until
commit, versions are handed out in commit order: a reader that sees the head at ``v`` sees
every change numbered ``v`` or less.  So :func:`changes_since` pages through changes by
version without missing one, on every node sharing the database.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, func, insert, select, update
from sqlalchemy.orm import Session

from esb.domain.directory_search import DirectoryEntry
from esb.storage.tables import Agency, DirectoryHead

__all__ = [
    "DirectoryChanges",
    "changes_since",
    "head_version",
    "iter_entries",
    "mark_changed",
    "reserve_versions",
]

HEAD_ID = 1
_RESERVED = "esb.directory_store.reserved"  # this transaction's block of versions
READ_BATCH = 5000

_COLUMNS = (
    Agency.code,
    Agency.name,
    Agency.qd20_code,
    Agency.old_code,
    Agency.parent_code,
    Agency.state,
    Agency.version,
)


@dataclass(frozen=True)
class DirectoryChanges:
    """A page of changed agencies, oldest change first.

    ``version`` is where the next page starts (``sinceVersion``); ``more`` says whether one
    is already waiting.
    """

    entries: tuple[DirectoryEntry, ...]
    version: int
    more: bool


def head_version(session: Session) -> int:
    """The newest directory version (0 for a directory that never changed)."""
    return int(session.scalar(select(DirectoryHead.version).where(DirectoryHead.id == HEAD_ID)) or 0)


@dataclass
class _Reserved:
    head: int  # the head as locked at the first reservation
    next: int  # the first version not yet handed out


def reserve_versions(session: Session, count: int) -> int:
    """Reserve ``count`` consecutive versions for this transaction's changes; the first of them.

    The head row is locked at the first reservation of a transaction and stays locked until it
    ends; the head is written once, before the commit.
    """
    reserved: _Reserved | None = session.info.get(_RESERVED)
    if reserved is None:
        head = session.scalar(
            select(DirectoryHead.version).where(DirectoryHead.id == HEAD_ID).with_for_update()
        )
        if head is None:  # a database created without migration 0004's row
            head = int(session.scalar(select(func.max(Agency.version))) or 0)
            session.execute(insert(DirectoryHead).values(id=HEAD_ID, version=head))
        reserved = session.info[_RESERVED] = _Reserved(int(head), int(head) + 1)
    first = reserved.next
    reserved.next += count
    return first


@event.listens_for(Session, "before_commit")
def _write_head(session: Session) -> None:
    reserved: _Reserved | None = session.info.pop(_RESERVED, None)
    if reserved is not None and reserved.next - 1 > reserved.head:
        session.execute(
            update(DirectoryHead).where(DirectoryHead.id == HEAD_ID).values(version=reserved.next - 1)
        )


@event.listens_for(Session, "after_rollback")
def _forget_reservation(session: Session) -> None:
    session.info.pop(_RESERVED, None)


def mark_changed(session: Session, agency: Agency) -> None:
    """Give ``agency`` the next directory version (call on every change of its row)."""
    agency.version = reserve_versions(session, 1)


def _entry(row: Any) -> DirectoryEntry:
    code, name, qd20_code, old_code, parent_code, state, version = row
    return DirectoryEntry(
        code=code,
        name=name,
        qd20_code=qd20_code,
        old_code=old_code,
        parent_code=parent_code,
        state=state,
        version=int(version or 0),
    )


def iter_entries(session: Session, *, batch: int = READ_BATCH) -> Iterator[DirectoryEntry]:
    """Every agency as a directory entry, streamed in batches (a server-side cursor on PostgreSQL)."""
    result = session.execute(select(*_COLUMNS).order_by(Agency.id).execution_options(yield_per=batch))
    for partition in result.partitions():
        for row in partition:
            yield _entry(row)


def changes_since(session: Session, version: int, limit: int) -> DirectoryChanges:
    """Agencies changed after ``version``, oldest change first, at most ``limit``.

    A ``version`` older than anything (0) pages through the whole directory.
    """
    head = head_version(session)  # read first: every change up to it is committed and visible below
    rows = session.execute(
        select(*_COLUMNS).where(Agency.version > version).order_by(Agency.version).limit(limit + 1)
    ).all()
    more = len(rows) > limit
    entries = tuple(_entry(row) for row in rows[:limit])
    newest = entries[-1].version if entries else 0
    return DirectoryChanges(entries, newest if more else max(head, version, newest), more)
