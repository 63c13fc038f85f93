"""Real-time notifications: long-poll and SSE channels, woken across processes and nodes.

One :class:`NotificationHub` per process.  A caller opens a :class:`Channel` (a
WaitForNotifications long-poll, or an SSE stream) and waits on it for notifications of its
agency after a cursor.  What wakes a waiting channel:

* a commit in this process (:func:`esb.storage.notification_store.on_commit`): at once;
* on PostgreSQL, ``NOTIFY esb_notify`` from any node, received by this process's listener
  thread on a connection of its own (``LISTEN``), which reconnects with back-off when the
  database connection drops and then wakes every waiter to look again;
* on SQLite (no cross-process signal: several gunicorn workers share the file) the same
  thread looks for new rows every ``recheck_sqlite`` (0.5 s by default);
* and whatever happens, each waiter reads the database again every ``keepalive`` (15 s),
  when it also renews its presence lease: the safety net.

Waking only says "look again": the notifications themselves are always read from the
database, by cursor, so a lost or duplicated wake-up never loses or duplicates anything.

Caps: ``max_waiters_per_application`` channels per application per process
(``Client.TooManyWaiters``) and ``max_waiters`` in all (``Server.Busy``), so subscribers
cannot hold every thread of a worker.  Every channel is released in ``finally`` blocks:
a caller that goes away leaks nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from esb.clock import Clock, utc_now
from esb.domain.access import Caller
from esb.domain.notifications import (
    Notification,
    NotificationPolicy,
    WakeUp,
    cursor_of,
    normalise_callback_url,
)
from esb.errors import ClientError, EsbError, ServerError
from esb.storage import notification_store as store
from esb.storage.database import Database

log = logging.getLogger(__name__)

SWEEP_EVERY = timedelta(minutes=1)
_BACKOFF_FIRST = 0.5
_BACKOFF_MAX = 30.0
_LISTEN_SLICE = 1.0


class PresenceSink(Protocol):
    """What the hub tells presence (esb.pipeline.presence.PresenceTracker)."""

    def seen(self, caller: Caller, reason: str) -> None: ...

    def channel_opened(self, caller: Caller, kind: str) -> None: ...

    def channel_alive(self, caller: Caller) -> None: ...

    def channel_closed(self, caller: Caller, *, dropped: bool, reason: str) -> None: ...


class TooManyWaiters(ClientError):
    default_code = "Client.TooManyWaiters"


class Busy(ServerError):
    default_code = "Server.Busy"


@dataclass(frozen=True)
class Batch:
    """WaitForNotifications' answer: notifications in id order, and the cursor to pass next."""

    notifications: tuple[Notification, ...]
    last_id: int


@dataclass(frozen=True)
class HeartbeatAnswer:
    server_time: datetime
    state: str  # the caller's presence after this heartbeat: online
    last_id: int  # the newest notification id of the caller's agency (a cursor to start from)


class _Waiter:
    __slots__ = ("agency", "application_id", "event")

    def __init__(self, agency: str, application_id: int) -> None:
        self.agency = agency
        self.application_id = application_id
        self.event = threading.Event()


class _Waiters:
    """Open channels by agency, with the caps; thread-safe, entries removed on leave."""

    def __init__(self, policy: NotificationPolicy) -> None:
        self.policy = policy
        self._lock = threading.Lock()
        self._by_agency: dict[str, set[_Waiter]] = {}
        self._by_application: dict[int, int] = {}
        self._total = 0

    def enter(self, caller: Caller) -> _Waiter:
        with self._lock:
            held = self._by_application.get(caller.application_id, 0)
            if held >= self.policy.max_waiters_per_application:
                raise TooManyWaiters(
                    f"this application already holds {held} notification channels on this node "
                    f"(the limit is {self.policy.max_waiters_per_application}); close one first"
                )
            if self._total >= self.policy.max_waiters:
                raise Busy(
                    "this node holds as many notification channels as it can; retry in a few "
                    "seconds, or subscribe a callback endpoint"
                )
            waiter = _Waiter(caller.agency_code, caller.application_id)
            self._by_agency.setdefault(caller.agency_code, set()).add(waiter)
            self._by_application[caller.application_id] = held + 1
            self._total += 1
            return waiter

    def leave(self, waiter: _Waiter) -> None:
        with self._lock:
            waiters = self._by_agency.get(waiter.agency)
            if waiters is None or waiter not in waiters:
                return
            waiters.discard(waiter)
            if not waiters:
                del self._by_agency[waiter.agency]
            held = self._by_application.get(waiter.application_id, 1) - 1
            if held > 0:
                self._by_application[waiter.application_id] = held
            else:
                self._by_application.pop(waiter.application_id, None)
            self._total -= 1

    def wake(self, agencies: Iterable[str]) -> None:
        with self._lock:
            for agency in set(agencies):
                for waiter in self._by_agency.get(agency, ()):
                    waiter.event.set()

    def wake_all(self) -> None:
        with self._lock:
            for waiters in self._by_agency.values():
                for waiter in waiters:
                    waiter.event.set()

    @property
    def count(self) -> int:
        with self._lock:
            return self._total


class Channel:
    """One open notification channel of a caller: a waiter slot and its presence.

    Use as a context manager, or call :meth:`close` exactly once (further calls do nothing).
    """

    def __init__(self, hub: NotificationHub, caller: Caller, kind: str) -> None:
        self.hub = hub
        self.caller = caller
        self.kind = kind
        self._waiter = hub._waiters.enter(caller)
        self._closed = False
        try:
            if hub.presence is not None:
                hub.presence.channel_opened(caller, kind)
        except BaseException:
            hub._waiters.leave(self._waiter)
            raise
        self._renewed = time.monotonic()

    def __enter__(self) -> Channel:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self.close(dropped=False, reason=f"{self.kind} answered" if exc is None else f"{self.kind} failed")

    def next(self, after_id: int, timeout: float) -> list[Notification]:
        """Notifications of the caller's agency after ``after_id``: at once if there are some,
        else as soon as some commit, else ``[]`` after ``timeout`` seconds."""
        hub = self.hub
        deadline = time.monotonic() + max(0.0, timeout)
        keepalive = hub.policy.keepalive.total_seconds()
        checked_cursor = False
        while True:
            if time.monotonic() - self._renewed >= keepalive:  # also on a busy stream
                self.alive()
            self._waiter.event.clear()  # before reading: a wake-up from now on is not lost
            found = hub._read(self.caller.agency_code, after_id, check_cursor=not checked_cursor)
            checked_cursor = True
            if found:
                return found
            now = time.monotonic()
            if now >= deadline or hub.stopping:
                return []
            hub._ensure_started()
            self._waiter.event.wait(min(deadline - now, keepalive))

    def alive(self) -> None:
        """Renew the channel's presence lease (the SSE keep-alive, a long wait's half-lease)."""
        self._renewed = time.monotonic()
        caller = self.caller
        self.hub._quietly("channel_alive", lambda presence: presence.channel_alive(caller))

    def close(self, *, dropped: bool, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        self.hub._waiters.leave(self._waiter)
        caller = self.caller
        self.hub._quietly(
            "channel_closed", lambda presence: presence.channel_closed(caller, dropped=dropped, reason=reason)
        )


class NotificationHub:
    """The notification channels of one process (see the module docstring)."""

    def __init__(
        self,
        database: Database,
        policy: NotificationPolicy | None = None,
        *,
        presence: PresenceSink | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.database = database
        self.policy = policy = policy or NotificationPolicy()
        self.presence = presence
        self.clock = clock
        self._waiters = _Waiters(policy)
        self._remove_listener = store.on_commit(database, self._on_commit)
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._channel: store.WakeChannel | None = None
        self._last_seen = 0
        self._last_sweep: datetime | None = None
        # Set when a notification with callback pushes is heard of: the delivery worker waits
        # on it, so the pushes start at once instead of at its next idle pass.
        self.arrived = threading.Event()

    # -- channels -------------------------------------------------------------------------------

    def open(self, caller: Caller, kind: str) -> Channel:
        """A channel for ``caller`` (``long-poll`` or ``sse``); the caps apply here."""
        self._ensure_started()
        return Channel(self, caller, kind)

    def wait(self, caller: Caller, after_id: int | None, timeout: int | None) -> Batch:
        """WaitForNotifications: what is there after ``after_id`` (default 0: everything kept),
        or what arrives within ``timeout`` seconds (default 30, 1 to 120)."""
        seconds = self.policy.timeout_of(timeout)
        cursor = cursor_of(after_id)
        with self.open(caller, "long-poll") as channel:
            found = channel.next(cursor, seconds)
        return Batch(tuple(found), found[-1].id if found else cursor)

    def heartbeat(self, caller: Caller) -> HeartbeatAnswer:
        """Heartbeat: the caller is alive (presence), the server's time, and its newest cursor."""
        if self.presence is not None:
            self.presence.seen(caller, "heartbeat")
        with self.database.transaction() as session:
            last = store.latest_id(session, caller.agency_code)
        return HeartbeatAnswer(self.clock(), "online", last)

    def latest_id(self, agency: str) -> int:
        with self.database.transaction() as session:
            return store.latest_id(session, agency)

    # -- callback subscriptions -----------------------------------------------------------------

    def subscribe(self, caller: Caller, callback_url: str) -> str:
        """Subscribe the caller's registered endpoint as its callback; any other URL is refused.

        The hub pushes only to the endpoint an operator registered for the application
        (``esb app register --endpoint``), never to an address a caller names, so nobody can
        make the hub call someone else's or an internal address.
        """
        wanted = normalise_callback_url(callback_url)
        with self.database.transaction() as session:
            endpoint, _ = store.subscription(session, caller.application_id)
            registered = _normalised_or_none(endpoint)
            if registered is None:
                raise ClientError(
                    "this application has no registered endpoint; an operator sets it with "
                    "`esb app register --endpoint URL`",
                    code="Client.CallbackNotRegistered",
                )
            if wanted != registered:
                raise ClientError(
                    "callbacks go only to the endpoint registered for this application; this URL is not it",
                    code="Client.CallbackNotRegistered",
                )
            store.set_callback(session, caller.application_id, str(endpoint), now=self.clock())
        return str(endpoint)

    def unsubscribe(self, caller: Caller) -> None:
        """No more callbacks for this application; pushes still pending are cancelled."""
        with self.database.transaction() as session:
            store.set_callback(session, caller.application_id, None, now=self.clock())

    def subscribed_url(self, caller: Caller) -> str | None:
        with self.database.transaction() as session:
            return store.subscription(session, caller.application_id)[1]

    # -- housekeeping (worker step "notifications") ---------------------------------------------

    def sweep(self, limit: int) -> int:
        """Delete notifications older than the retention (at most once a minute per process)."""
        now = self.clock()
        if self._last_sweep is not None and now - self._last_sweep < SWEEP_EVERY:
            return 0
        with self.database.transaction() as session:
            removed = store.sweep(session, before=now - self.policy.retention, limit=limit)
        if removed < limit:
            self._last_sweep = now
        return removed

    # -- the wake-up side ------------------------------------------------------------------------

    @property
    def waiting(self) -> int:
        """Open channels in this process."""
        return self._waiters.count

    @property
    def listener_pid(self) -> int | None:
        """The PostgreSQL backend of the listener's connection (None when not connected)."""
        channel = self._channel
        return channel.backend_pid if channel is not None else None

    def wait_listening(self, timeout: float) -> bool:
        """Block until the listener is ready (PostgreSQL: LISTEN active); True when it is."""
        self._ensure_started()
        return self._listening.wait(timeout)

    def start(self) -> None:
        """Start the listener thread now (it also starts with the first channel)."""
        self._ensure_started()

    @property
    def stopping(self) -> bool:
        """The process is shutting down: open channels answer now and end."""
        return self._stop.is_set()

    def stop(self) -> None:
        """Let every open channel answer at once and end (gunicorn's graceful shutdown), and stop
        the listener; does not wait."""
        self._stop.set()
        self._waiters.wake_all()

    def close(self) -> None:
        """Stop the listener thread and stop hearing this process's commits."""
        self._remove_listener()
        self.stop()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=10)
        self._drop_channel()

    def _ensure_started(self) -> None:
        if self._thread is not None or self._stop.is_set():
            return
        with self._start_lock:
            if self._thread is not None:
                return
            thread = threading.Thread(target=self._run, name="esb-notification-listener", daemon=True)
            self._thread = thread
            thread.start()

    def _on_commit(self, wakes: Sequence[WakeUp]) -> None:
        self._waiters.wake(wake.agency for wake in wakes)
        self._pushes_arrived(wakes)

    def _pushes_arrived(self, wakes: Sequence[WakeUp]) -> None:
        """Wake the delivery worker only for notifications that have callbacks to push."""
        if any(wake.pushes for wake in wakes):
            self.arrived.set()

    def _run(self) -> None:
        try:
            with self.database.transaction() as session:
                self._last_seen = store.latest_id(session)
        except EsbError as exc:
            log.warning("notification listener: %s", exc)
        if self.database.is_sqlite:
            self._listening.set()
            self._poll_loop()
        else:
            self._listen_loop()

    def _poll_loop(self) -> None:
        """SQLite: look for rows other processes committed, while anyone waits."""
        interval = self.policy.recheck_sqlite.total_seconds()
        while not self._stop.wait(interval):
            if self._waiters.count:
                self._catch_up()

    def _listen_loop(self) -> None:
        """PostgreSQL: LISTEN on a connection of our own; reconnect with back-off when it drops."""
        backoff = _BACKOFF_FIRST
        safety = self.policy.recheck_postgres.total_seconds()
        looked = time.monotonic()
        while not self._stop.is_set():
            try:
                if self._channel is None:
                    self._channel = store.WakeChannel(self.database)
                    self._listening.set()
                    backoff = _BACKOFF_FIRST
                    self._catch_up()  # whatever committed while we were not listening
                    self._waiters.wake_all()
                    looked = time.monotonic()
                # Short slices, so that close() is heard within one.
                wakes = self._channel.receive(min(_LISTEN_SLICE, safety))
                if wakes:  # _last_seen stays: the safety net re-reads by id (payloads may be foreign)
                    self._waiters.wake(wake.agency for wake in wakes)
                    self._pushes_arrived(wakes)
                elif time.monotonic() - looked >= safety:
                    self._catch_up()
                    looked = time.monotonic()
            except EsbError as exc:
                self._listening.clear()
                self._drop_channel()
                log.warning("notification listener: %s; reconnecting in %.1f s", exc.message, backoff)
                if self._stop.wait(backoff):
                    return
                backoff = min(_BACKOFF_MAX, backoff * 2)
            except Exception:
                self._listening.clear()
                self._drop_channel()
                log.exception("notification listener failed; restarting in %.1f s", backoff)
                if self._stop.wait(backoff):
                    return
                backoff = min(_BACKOFF_MAX, backoff * 2)

    def _catch_up(self) -> None:
        """Wake the agencies of notifications committed since the last one this process saw."""
        try:
            with self.database.transaction() as session:
                rows = store.since(session, self._last_seen, limit=1000)
        except EsbError as exc:
            log.warning("notification listener: %s", exc)
            return
        if rows:
            self._last_seen = rows[-1][0]
            self._waiters.wake(agency for _, agency in rows)
            self.arrived.set()

    def _drop_channel(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            channel.close()

    # -- reading ---------------------------------------------------------------------------------

    def _read(self, agency: str, after_id: int, *, check_cursor: bool) -> list[Notification]:
        with self.database.transaction() as session:
            found = store.after(session, agency, after_id, limit=self.policy.batch)
            if not found and check_cursor and after_id > 0 and after_id > store.latest_id(session):
                raise ClientError(
                    f"cursor {after_id} is ahead of the newest notification; start again from the "
                    "lastId of Heartbeat, or 0",
                    code="Client.BadCursor",
                )
        return found

    def _quietly(self, what: str, call: Callable[[PresenceSink], None]) -> None:
        """A presence update that must not fail the caller (a channel closing, a keep-alive)."""
        if self.presence is None:
            return
        try:
            call(self.presence)
        except EsbError as exc:
            log.warning("presence %s failed: %s", what, exc)


def _normalised_or_none(url: str | None) -> str | None:
    if not url:
        return None
    try:
        return normalise_callback_url(url)
    except ClientError:
        return None
