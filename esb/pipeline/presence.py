"""Presence tracking: activity and notification channels → online / offline, with history.

:class:`PresenceTracker` is called on every authenticated call (through the
:class:`~esb.pipeline.authentication.Authenticator`'s ``on_activity`` hook), by the
notification channels (open, renew, close) and by the worker's ``presence`` step
(:meth:`PresenceTracker.sweep`).  The rules are pure (:mod:`esb.domain.presence`); every write
goes through :func:`esb.storage.presence_store.apply`, safe on several nodes at once.

The hot path stays cheap: the tracker remembers, per application, when this process last
wrote its ``last_seen_at`` and whether it was online then.  An application online and written
less than :attr:`~esb.domain.presence.PresencePolicy.write_throttle` ago costs a dictionary
look-up and nothing else (no database read); otherwise one short transaction writes it.
What another node decided meanwhile (its sweep, a dropped channel it held) is corrected by
this process's next write, at most one throttle later.

Presence never fails the caller's request: a failed write is logged (the application's id
and the error's code, nothing else) and tried again on the next activity.  Thread-safe:
gunicorn's threads share one tracker per process.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from esb.clock import Clock, utc_now
from esb.domain.access import Caller
from esb.domain.presence import (
    AgencyPresence,
    Decision,
    PresencePolicy,
    PresenceState,
    PresenceStatus,
    on_activity,
    on_channel_alive,
    on_channel_closed,
    on_channel_open,
    on_sweep,
)
from esb.errors import EsbError
from esb.storage import presence_store
from esb.storage.database import Database

log = logging.getLogger(__name__)

ONLINE_CACHE = timedelta(seconds=1)  # how long online_agencies() answers from memory
MAX_KIND_LENGTH = 16  # presence.channel_kind


@dataclass(frozen=True)
class _Written:
    """What this process last wrote for an application."""

    at: datetime  # last_seen_at written (or claimed by a write under way)
    online: bool
    channel_at: datetime | None = None  # channel lease written


class PresenceTracker:
    def __init__(
        self, database: Database, policy: PresencePolicy, *, node_name: str, clock: Clock = utc_now
    ) -> None:
        self.database = database
        self.policy = policy
        self.node_name = node_name
        self.clock = clock
        self._lock = threading.Lock()
        self._written: dict[int, _Written] = {}
        self._channels: dict[int, int] = {}  # channels open in this process, per application
        self._online: tuple[datetime, frozenset[str]] | None = None

    # -- activity -------------------------------------------------------------------------------

    def seen(self, caller: Caller, reason: str) -> None:
        """Any activity of ``caller`` (``authenticate``, ``call``, ``heartbeat``, ``callback-ok``)."""
        now = self.clock()
        application = caller.application_id
        with self._lock:
            last = self._written.get(application)
            if last is not None and last.online and last.at <= now < last.at + self.policy.write_throttle:
                return
            # Claimed before writing: the other threads' calls of this moment need not write too.
            self._written[application] = _Written(now, True, last.channel_at if last else None)
        self._write(caller, "activity", now, lambda current: on_activity(current, now, reason))

    # -- notification channels ------------------------------------------------------------------

    def channel_opened(self, caller: Caller, kind: str) -> None:
        """A notification channel (``long-poll`` or ``sse``) of ``caller`` opened on this node."""
        now = self.clock()
        kind = kind[:MAX_KIND_LENGTH]
        with self._lock:
            self._channels[caller.application_id] = self._channels.get(caller.application_id, 0) + 1
            self._written[caller.application_id] = _Written(now, True, now)
        self._write(
            caller, "channel open", now, lambda current: on_channel_open(current, now, kind, self.policy)
        )

    def channel_alive(self, caller: Caller) -> None:
        """The channel still lives (every keep-alive): its lease is renewed."""
        now = self.clock()
        application = caller.application_id
        with self._lock:
            last = self._written.get(application)
            if (
                last is not None
                and last.online
                and last.channel_at is not None
                and last.channel_at <= now < last.channel_at + self.policy.keepalive / 2
            ):
                return  # another channel of this application renewed the lease a moment ago
            self._written[application] = _Written(now, True, now)
        self._write(
            caller, "channel renewal", now, lambda current: on_channel_alive(current, now, self.policy)
        )

    def channel_closed(self, caller: Caller, *, dropped: bool, reason: str) -> None:
        """A channel ended: ``dropped`` (a write to it failed) is offline at once; a channel
        closed in good order releases its lease (the silence rule takes over)."""
        now = self.clock()
        application = caller.application_id
        with self._lock:
            still_open = self._channels.get(application, 0) - 1
            if still_open > 0:
                self._channels[application] = still_open
                return  # another channel of this process holds and renews the lease
            self._channels.pop(application, None)
            self._written.pop(application, None)
        self._write(
            caller,
            "channel close",
            now,
            lambda current: on_channel_closed(current, now, dropped=dropped, detail=reason),
        )

    # -- the worker step ------------------------------------------------------------------------

    def sweep(self, limit: int) -> int:
        """Declare offline the applications whose channel lease lapsed or whose silence ran out
        (worker step ``presence``); returns how many went offline."""
        now = self.clock()
        gone: list[int] = []
        with self.database.transaction() as session:
            for row in presence_store.due_for_sweep(
                session, now=now, silence=self.policy.silence, limit=limit
            ):
                decision = presence_store.apply_locked(
                    session,
                    row,
                    rule=lambda current: on_sweep(current, now, self.policy),
                    node=self.node_name,
                )
                if decision.transition is not None:
                    gone.append(row.application_id)
        if gone:
            with self._lock:
                for application in gone:
                    self._written.pop(application, None)
                self._online = None
        return len(gone)

    # -- queries --------------------------------------------------------------------------------

    def agency_presence(self, codes: Iterable[str]) -> dict[str, AgencyPresence]:
        """Every code asked for → its presence (unknown when none of its applications was seen)."""
        with self.database.transaction() as session:
            return presence_store.presence_of_agencies(session, codes)

    def online_agencies(self) -> frozenset[str]:
        """Codes of the agencies online now; answered from memory for up to a second."""
        now = self.clock()
        with self._lock:
            cached = self._online
        if cached is not None and cached[0] <= now < cached[0] + ONLINE_CACHE:
            return cached[1]
        try:
            with self.database.transaction() as session:
                codes = presence_store.online_agency_codes(session)
        except EsbError as exc:
            if cached is None:
                raise
            log.warning("presence: online agencies not refreshed (%s); answering from memory", exc.code)
            return cached[1]
        with self._lock:
            self._online = (now, codes)
        return codes

    # -- writing --------------------------------------------------------------------------------

    def _write(
        self, caller: Caller, action: str, now: datetime, rule: Callable[[PresenceStatus], Decision]
    ) -> None:
        application = caller.application_id
        try:
            with self.database.transaction() as session:
                decision = presence_store.apply(
                    session,
                    application_id=application,
                    agency_code=caller.agency_code,
                    rule=rule,
                    node=self.node_name,
                )
        except Exception as exc:  # noqa: BLE001 - presence must never fail the caller's request
            with self._lock:
                self._written.pop(application, None)
            code = exc.code if isinstance(exc, EsbError) else type(exc).__name__
            log.warning("presence: %s of application %s not recorded (%s)", action, application, code)
            return
        with self._lock:
            if decision.status.state is not PresenceState.ONLINE:
                self._written.pop(application, None)
            if decision.transition is not None:
                self._online = None
