"""The directory use case: find agencies, show one with its children, page through changes.

Each process holds the directory in memory (:class:`~esb.domain.directory_search.DirectoryIndex`)
and keeps it fresh from the database: at most once per ``refresh_interval`` (1 s), a search
reads the directory's head version (one cheap query) and, when it moved, applies the
agencies changed since, so every node on one database agrees within about a second.  The
first search of a process loads the whole directory (:meth:`Directory.warm_up` does it
ahead, in the background).  After a change too large for an incremental update (a bulk
import), the index is rebuilt in the background while searches go on against the previous
one, which can lag by the few seconds the rebuild takes.

Presence comes from outside (the presence tracker): a callable giving the codes of the
agencies online now (``onlyOnline``), and optionally one giving each agency's state.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from esb.clock import Clock, utc_now
from esb.domain.directory_search import (
    OVERLAY_LIMIT,
    SCORES,
    DirectoryEntry,
    DirectoryIndex,
    DirectoryQueryError,
    MalformedCode,
    MatchKind,
    check_code,
    normalise_code,
    parse_query,
)
from esb.errors import ClientError
from esb.storage import directory_store
from esb.storage.database import Database, StorageUnavailable
from esb.storage.directory_store import DirectoryChanges

log = logging.getLogger(__name__)

__all__ = [
    "AgencySummary",
    "AgencyView",
    "Directory",
    "Presence",
    "PresenceOf",
    "PresenceOnline",
    "UnknownAgency",
]

DEFAULT_CHANGES_LIMIT = 500
MAX_CHANGES_LIMIT = 5000
_CHANGES_PAGE = 5000

PresenceOnline = Callable[[], frozenset[str]]
"""The codes of the agencies online now."""
PresenceOf = Callable[[Sequence[str]], Mapping[str, str]]
"""Each code's presence state (``online``, ``offline`` or ``unknown``); codes left out are unknown."""


class UnknownAgency(ClientError):
    default_code = "Client.UnknownAgency"


class Presence(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class AgencySummary:
    """An agency as a search result or a relative: the entry, its presence, why it matched."""

    entry: DirectoryEntry
    presence: Presence
    match: MatchKind | None = None

    @property
    def score(self) -> int | None:
        return SCORES[self.match] if self.match is not None else None


@dataclass(frozen=True)
class AgencyView:
    """One agency with its parent and its direct children (GetAgency)."""

    agency: AgencySummary
    parent: AgencySummary | None
    children: tuple[AgencySummary, ...]


class Directory:
    """Searches and reads of the directory, on this process's index."""

    def __init__(
        self,
        database: Database,
        presence_online: PresenceOnline,
        clock: Clock = utc_now,
        *,
        presence_of: PresenceOf | None = None,
        refresh_interval: timedelta = timedelta(seconds=1),
        rebuild_in_background: bool = True,
    ) -> None:
        self.database = database
        self.presence_online = presence_online
        self.presence_of = presence_of
        self.clock = clock
        self.refresh_interval = refresh_interval
        self.rebuild_in_background = rebuild_in_background
        self._index: DirectoryIndex | None = None
        self._checked_at: datetime | None = None
        self._load_lock = threading.Lock()
        self._refresh_lock = threading.Lock()

    # -- the index ------------------------------------------------------------------------------

    def index(self) -> DirectoryIndex:
        """This process's index, refreshed from the database if the last check is over a second old."""
        index = self._index
        if index is None:
            return self._first_load()
        now = self.clock()
        if self._checked_at is not None and now - self._checked_at < self.refresh_interval:
            return index
        if not self._refresh_lock.acquire(blocking=False):
            return index  # another thread is refreshing: answer from the current index meanwhile
        background = False
        try:
            self._checked_at = now
            background = self._refresh(index)
        except StorageUnavailable:
            log.warning("directory not refreshed (database unavailable); answering from memory")
        finally:
            if not background:
                self._refresh_lock.release()
        return self._index or index

    def warm_up(self) -> threading.Thread:
        """Load the directory in a background thread (searches wait for it if they come first)."""
        thread = threading.Thread(target=self._first_load, name="directory-warm-up", daemon=True)
        thread.start()
        return thread

    def _first_load(self) -> DirectoryIndex:
        with self._load_lock:
            if self._index is None:
                self._checked_at = self.clock()
                self._index = self._load()
            return self._index

    def _load(self) -> DirectoryIndex:
        with self.database.transaction() as session:
            head = directory_store.head_version(session)
            entries = list(directory_store.iter_entries(session))
        newest = max((entry.version for entry in entries), default=0)
        index = DirectoryIndex.build(entries, version=max(head, newest))
        log.info("directory loaded: %d agencies, version %d", len(index), index.version)
        return index

    def _refresh(self, index: DirectoryIndex) -> bool:
        """Apply the changes since ``index``; True if a rebuild was left to a background thread
        (which then releases the refresh lock)."""
        with self.database.transaction() as session:
            if directory_store.head_version(session) <= index.version:
                return False
            changed: list[DirectoryEntry] = []
            since = index.version
            while True:
                page = directory_store.changes_since(session, since, _CHANGES_PAGE)
                changed.extend(page.entries)
                since = page.version
                if not page.more or index.overlay_size + len(changed) > OVERLAY_LIMIT:
                    break
        if index.overlay_size + len(changed) <= OVERLAY_LIMIT:
            self._index = index.updated(changed, version=since)
            return False
        if not self.rebuild_in_background:
            self._index = self._load()
            return False
        threading.Thread(target=self._rebuild, name="directory-rebuild", daemon=True).start()
        return True

    def _rebuild(self) -> None:
        try:
            self._index = self._load()
        except Exception:  # a failed rebuild keeps the previous index; the next check retries
            log.exception("directory rebuild failed; searches go on with the previous index")
            self._checked_at = None
        finally:
            self._refresh_lock.release()

    @property
    def version(self) -> int:
        return self.index().version

    # -- use cases ------------------------------------------------------------------------------

    def find(
        self,
        query: str | None,
        *,
        parent_code: str | None = None,
        level: int | None = None,
        only_online: bool = False,
        limit: int | None = None,
    ) -> list[AgencySummary]:
        """Agencies matching ``query`` (a code or a name), best first (FindAgencies)."""
        online = self.presence_online() if only_online else None
        checked = parse_query(query, parent_code=parent_code, level=level, limit=limit, only=online)
        hits = self.index().run(checked)
        presence = self._presence([hit.entry.code for hit in hits])
        return [AgencySummary(hit.entry, presence[hit.entry.code], hit.match) for hit in hits]

    def get(self, code: str) -> AgencyView:
        """One agency (by any of its three codes) with its parent and direct children (GetAgency)."""
        text = code.strip() if isinstance(code, str) else ""
        if not text or len(text) > 64 or any(ch.isspace() for ch in text):
            shown = code if isinstance(code, str) and len(code) <= 64 else "(too long)"
            raise MalformedCode(f"{shown!r} is not an identifier code (mã định danh)")
        index = self.index()
        entry = index.get(text)
        if entry is None:
            check_code(text)  # MalformedCode for something that is no code at all
            raise UnknownAgency(f"no agency in the directory has the code {normalise_code(text)!r}")
        parent = index.get(entry.parent) if entry.parent else None
        children: dict[str, DirectoryEntry] = {}
        for own in (entry.code, entry.qd20_code):
            if own:
                children.update((child.code, child) for child in index.children(own))
        relatives = [entry.code, *([parent.code] if parent else []), *children]
        presence = self._presence(relatives)
        return AgencyView(
            agency=AgencySummary(entry, presence[entry.code]),
            parent=AgencySummary(parent, presence[parent.code]) if parent else None,
            children=tuple(AgencySummary(child, presence[child.code]) for child in children.values()),
        )

    def changes(self, since_version: int, limit: int | None = None) -> DirectoryChanges:
        """Agencies changed after ``since_version``, oldest first (GetAgencyChanges, delta sync)."""
        if isinstance(since_version, bool) or not isinstance(since_version, int) or since_version < 0:
            raise DirectoryQueryError(
                f"sinceVersion must be 0 or more, not {since_version!r}",
                code="Client.DirectoryVersionInvalid",
            )
        chosen = DEFAULT_CHANGES_LIMIT if limit is None else limit
        if isinstance(chosen, bool) or not isinstance(chosen, int) or not 1 <= chosen <= MAX_CHANGES_LIMIT:
            raise DirectoryQueryError(
                f"limit must be between 1 and {MAX_CHANGES_LIMIT}, not {limit!r}",
                code="Client.DirectoryLimitInvalid",
            )
        with self.database.transaction() as session:
            return directory_store.changes_since(session, since_version, chosen)

    def _presence(self, codes: Sequence[str]) -> dict[str, Presence]:
        online = self.presence_online()
        offline_or_not = [code for code in codes if code not in online]
        states = self.presence_of(offline_or_not) if self.presence_of is not None and offline_or_not else {}
        return {
            code: Presence.ONLINE if code in online else _presence_state(states.get(code)) for code in codes
        }


def _presence_state(value: str | None) -> Presence:
    try:
        return Presence(value) if value is not None else Presence.UNKNOWN
    except ValueError:
        return Presence.UNKNOWN
