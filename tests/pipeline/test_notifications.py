"""The notification hub (esb.pipeline.notifications) on both engines: backlog, wake-ups in one
process, across processes (SQLite) and across nodes (PostgreSQL LISTEN/NOTIFY), the listener's
reconnection, caps, presence, subscriptions.

Whether a waiter was *woken* is told without timing it: the policies here re-read the
database only every 120 s and the waits last 60 s, so a wait that returns the notification
was woken by the path under test (had it not been, it would have returned nothing).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from esb.domain.access import Caller
from esb.domain.agencies import AgencyRecord
from esb.domain.notifications import NotificationKind, NotificationPolicy
from esb.errors import ClientError
from esb.pipeline.notifications import Batch, Busy, NotificationHub, TooManyWaiters
from esb.storage import notification_store as store
from esb.storage.database import Database
from esb.wiring import Runtime

A, B, C = "000.00.00.H53", "000.00.01.H53", "000.00.00.H30"
NOW = datetime(2026, 11, 21, 2, 30, tzinfo=UTC)
ENDPOINT = "https://qlvb.example.gov.vn/lgsp/notify"
# Nothing re-reads by itself within a test's wait: only a wake-up can end it early.
DEAF = NotificationPolicy(
    keepalive=timedelta(seconds=120),
    recheck_sqlite=timedelta(seconds=120),
    recheck_postgres=timedelta(seconds=120),
)
LONG_WAIT = 60


@dataclass
class PresenceLog:
    """A presence tracker that records what it is told."""

    calls: list[tuple[str, ...]] = field(default_factory=list)

    def seen(self, caller: Caller, reason: str) -> None:
        self.calls.append(("seen", caller.agency_code, reason))

    def channel_opened(self, caller: Caller, kind: str) -> None:
        self.calls.append(("opened", caller.agency_code, kind))

    def channel_alive(self, caller: Caller) -> None:
        self.calls.append(("alive", caller.agency_code))

    def channel_closed(self, caller: Caller, *, dropped: bool, reason: str) -> None:
        self.calls.append(("closed", caller.agency_code, str(dropped), reason))


@dataclass
class Setup:
    runtime: Runtime
    callers: dict[str, Caller]
    hubs: list[NotificationHub] = field(default_factory=list)
    databases: list[Database] = field(default_factory=list)

    @property
    def database(self) -> Database:
        return self.runtime.database

    def hub(
        self, policy: NotificationPolicy = DEAF, database: Database | None = None, **kwargs: object
    ) -> NotificationHub:
        hub = NotificationHub(database or self.database, policy, **kwargs)  # type: ignore[arg-type]
        self.hubs.append(hub)
        return hub

    def other_node(self) -> Database:
        """Another engine on the same database: its commits wake nobody in this "process"."""
        database = Database(self.runtime.settings.database_url)
        self.databases.append(database)
        return database

    def notify(
        self, agency: str = B, *, database: Database | None = None, priority: int = 0, hub_id: str = "hub-1"
    ) -> int:
        with (database or self.database).transaction() as session:
            row = store.add(
                session,
                agency=agency,
                kind="document",
                hub_document_id=hub_id,
                sender=A,
                recipient=agency,
                message_type="edoc",
                priority=priority,
                detail=None,
                at=NOW,
            )
        return row.id


@pytest.fixture
def setup(runtime: Runtime) -> Iterator[Setup]:
    callers = {}
    for code in (A, B, C):
        runtime.registration.add_agency(AgencyRecord(code, f"Cơ quan {code}"))
        application = runtime.registration.register_application(code, "QLVB", endpoint=ENDPOINT)
        callers[code] = Caller(code, application.id, "QLVB", f"AK-{code}")
    built = Setup(runtime, callers)
    yield built
    for hub in built.hubs:
        hub.close()
    for database in built.databases:
        database.dispose()


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=4) as executor:
        yield executor


def _waiting(hub: NotificationHub, count: int = 1) -> None:
    """Until ``count`` channels are open (a thread's wait has begun)."""
    deadline = time.monotonic() + 30
    while hub.waiting < count:
        assert time.monotonic() < deadline, "the waiter never started"
        time.sleep(0.01)


def _background_wait(
    pool: ThreadPoolExecutor, hub: NotificationHub, caller: Caller, after: int = 0
) -> Future[Batch]:
    future = pool.submit(hub.wait, caller, after, LONG_WAIT)
    _waiting(hub)
    return future


def test_a_backlog_is_returned_at_once_in_id_order(setup: Setup) -> None:
    ids = [setup.notify(B, hub_id=f"hub-{n}", priority=n) for n in range(3)]
    setup.notify(C)
    presence = PresenceLog()
    hub = setup.hub(presence=presence)
    batch = hub.wait(setup.callers[B], None, LONG_WAIT)
    assert [n.id for n in batch.notifications] == ids
    assert batch.last_id == ids[-1]
    first = batch.notifications[0]
    assert (first.kind, first.hub_document_id, first.sender, first.recipient, first.message_type) == (
        NotificationKind.DOCUMENT,
        "hub-0",
        A,
        B,
        "edoc",
    )
    assert [n.priority for n in batch.notifications] == [0, 1, 2]
    again = hub.wait(setup.callers[B], ids[0], LONG_WAIT)
    assert [n.id for n in again.notifications] == ids[1:]
    assert (
        presence.calls
        == [
            ("opened", B, "long-poll"),
            ("closed", B, "False", "long-poll answered"),
        ]
        * 2
    )
    assert hub.waiting == 0


def test_a_commit_in_this_process_wakes_the_waiter(setup: Setup, pool: ThreadPoolExecutor) -> None:
    hub = setup.hub()
    future = _background_wait(pool, hub, setup.callers[B])
    setup.notify(C)  # another agency's: B's waiter looks, finds nothing, waits on
    new = setup.notify(B, priority=4)
    batch = future.result(timeout=LONG_WAIT + 30)
    assert [(n.id, n.priority) for n in batch.notifications] == [(new, 4)]
    assert batch.last_id == new
    assert hub.waiting == 0


def test_an_empty_wait_returns_the_cursor_it_was_given(setup: Setup) -> None:
    cursor = setup.notify(B)
    hub = setup.hub()
    batch = hub.wait(setup.callers[B], cursor, 1)
    assert batch == Batch((), cursor)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_processes_find_what_other_processes_committed(setup: Setup, pool: ThreadPoolExecutor) -> None:
    """Another gunicorn worker (another engine on the file) cannot signal: the hub looks."""
    hub = setup.hub(
        NotificationPolicy(keepalive=timedelta(seconds=120), recheck_sqlite=timedelta(seconds=0.2))
    )
    future = _background_wait(pool, hub, setup.callers[B])
    new = setup.notify(B, database=setup.other_node())
    assert [n.id for n in future.result(timeout=LONG_WAIT + 30).notifications] == [new]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_notification_committed_on_another_node_wakes_the_waiter(
    setup: Setup, pool: ThreadPoolExecutor
) -> None:
    node_a = setup.hub()
    assert node_a.wait_listening(30)
    node_b_database = setup.other_node()
    node_b = setup.hub(database=node_b_database)  # node B has waiters of its own (none for B)
    future = _background_wait(pool, node_a, setup.callers[B])
    new = setup.notify(B, database=node_b_database)
    batch = future.result(timeout=LONG_WAIT + 30)
    assert [n.id for n in batch.notifications] == [new]
    assert node_b.waiting == 0


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_listener_reconnects_when_its_connection_drops(setup: Setup, pool: ThreadPoolExecutor) -> None:
    hub = setup.hub()
    assert hub.wait_listening(30)
    first_pid = hub.listener_pid
    assert first_pid is not None
    other = setup.other_node()
    with other.engine.connect() as connection:
        assert connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first_pid}).scalar()
    deadline = time.monotonic() + 60
    while hub.listener_pid in (None, first_pid) or not hub.wait_listening(0):
        assert time.monotonic() < deadline, "the listener did not reconnect"
        time.sleep(0.05)
    future = _background_wait(pool, hub, setup.callers[B])
    new = setup.notify(B, database=other)
    assert [n.id for n in future.result(timeout=LONG_WAIT + 30).notifications] == [new]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_what_committed_while_the_listener_was_away_still_wakes_waiters(
    setup: Setup, pool: ThreadPoolExecutor
) -> None:
    """A NOTIFY sent while the listener reconnects is lost; the reconnection looks again."""
    hub = setup.hub()
    assert hub.wait_listening(30)
    future = _background_wait(pool, hub, setup.callers[B])
    other = setup.other_node()
    pid = hub.listener_pid
    with other.engine.connect() as connection:
        connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    new = setup.notify(B, database=other)  # probably sent before LISTEN is back
    assert [n.id for n in future.result(timeout=LONG_WAIT + 30).notifications] == [new]


def test_waiters_are_capped_per_application_and_per_process(setup: Setup) -> None:
    hub = setup.hub(NotificationPolicy(max_waiters_per_application=2, max_waiters=3))
    b, c = setup.callers[B], setup.callers[C]
    first, second = hub.open(b, "sse"), hub.open(b, "long-poll")
    with pytest.raises(TooManyWaiters) as refused:
        hub.open(b, "sse")
    assert refused.value.code == "Client.TooManyWaiters"
    third = hub.open(c, "sse")
    with pytest.raises(Busy) as busy:
        hub.open(setup.callers[A], "sse")
    assert busy.value.code == "Server.Busy"
    assert hub.waiting == 3
    first.close(dropped=True, reason="channel-dropped")
    first.close(dropped=True, reason="channel-dropped")  # twice: released once
    assert hub.waiting == 2
    hub.open(b, "sse").close(dropped=False, reason="done")
    second.close(dropped=False, reason="done")
    third.close(dropped=False, reason="done")
    assert hub.waiting == 0


def test_a_failing_wait_releases_its_slot(setup: Setup) -> None:
    hub = setup.hub(NotificationPolicy(max_waiters_per_application=1))
    for _ in range(3):
        with pytest.raises(ClientError) as refused:
            hub.wait(setup.callers[B], 10**9, 5)  # far ahead of any notification
        assert refused.value.code == "Client.BadCursor"
    assert hub.waiting == 0


@pytest.mark.parametrize(
    ("timeout", "after", "code"),
    [(0, 0, "Client.BadTimeout"), (121, 0, "Client.BadTimeout"), (5, -1, "Client.BadCursor")],
)
def test_bad_timeouts_and_cursors_are_refused(setup: Setup, timeout: int, after: int, code: str) -> None:
    hub = setup.hub()
    with pytest.raises(ClientError) as refused:
        hub.wait(setup.callers[B], after, timeout)
    assert refused.value.code == code
    assert hub.waiting == 0


def test_a_long_wait_renews_its_presence_lease(setup: Setup, pool: ThreadPoolExecutor) -> None:
    presence = PresenceLog()
    hub = setup.hub(NotificationPolicy(keepalive=timedelta(seconds=0.2)), presence=presence)
    batch = hub.wait(setup.callers[B], 0, 1)
    assert batch.notifications == ()
    assert presence.calls[0] == ("opened", B, "long-poll")
    assert ("alive", B) in presence.calls
    assert presence.calls[-1] == ("closed", B, "False", "long-poll answered")


def test_heartbeat_marks_presence_and_gives_the_newest_cursor(setup: Setup) -> None:
    presence = PresenceLog()
    hub = setup.hub(presence=presence, clock=lambda: NOW)
    assert hub.heartbeat(setup.callers[B]).last_id == 0
    newest = setup.notify(B)
    setup.notify(C)
    answer = hub.heartbeat(setup.callers[B])
    assert (answer.server_time, answer.state, answer.last_id) == (NOW, "online", newest)
    assert presence.calls == [("seen", B, "heartbeat")] * 2


def test_callbacks_go_only_to_the_registered_endpoint(setup: Setup) -> None:
    hub = setup.hub()
    b = setup.callers[B]
    for foreign in ("http://127.0.0.1:8080/steal", "https://attacker.example/notify", ENDPOINT + "/other"):
        with pytest.raises(ClientError) as refused:
            hub.subscribe(b, foreign)
        assert refused.value.code == "Client.CallbackNotRegistered"
    for malformed in (
        "ftp://qlvb.example.gov.vn/x",
        "https://user:pw@qlvb.example.gov.vn/lgsp/notify",
        "nonsense",
    ):
        with pytest.raises(ClientError) as refused:
            hub.subscribe(b, malformed)
        assert refused.value.code == "Client.CallbackUrlInvalid"
    assert hub.subscribed_url(b) is None
    # The same address written differently is the registered one.
    assert hub.subscribe(b, "HTTPS://QLVB.example.gov.vn:443/lgsp/notify") == ENDPOINT
    assert hub.subscribed_url(b) == ENDPOINT
    hub.unsubscribe(b)
    assert hub.subscribed_url(b) is None


def test_an_application_without_an_endpoint_cannot_subscribe(setup: Setup) -> None:
    application = setup.runtime.registration.register_application(B, "Không có endpoint")
    caller = Caller(B, application.id, "Không có endpoint", None)
    with pytest.raises(ClientError) as refused:
        setup.hub().subscribe(caller, ENDPOINT)
    assert refused.value.code == "Client.CallbackNotRegistered"


def test_sweep_runs_at_most_once_a_minute(setup: Setup) -> None:
    now = [NOW]
    for n in range(3):
        with setup.database.transaction() as session:
            store.add(
                session,
                agency=C,
                kind="document",
                hub_document_id=f"old-{n}",
                sender=A,
                recipient=C,
                message_type="edoc",
                priority=0,
                detail=None,
                at=NOW - timedelta(days=8),
            )
    setup.notify(B)
    hub = setup.hub(clock=lambda: now[0])
    assert hub.sweep(2) == 2  # a full batch: the next pass goes on
    assert hub.sweep(2) == 1
    assert hub.sweep(2) == 0
    now[0] += timedelta(minutes=1)
    assert hub.sweep(2) == 0


def test_many_waiters_of_one_agency_all_wake(setup: Setup, pool: ThreadPoolExecutor) -> None:
    hub = setup.hub()
    other_application = setup.runtime.registration.register_application(B, "Cổng")
    callers = [setup.callers[B], Caller(B, other_application.id, "Cổng", None)]
    futures = [pool.submit(hub.wait, caller, 0, LONG_WAIT) for caller in callers]
    _waiting(hub, 2)
    new = setup.notify(B)
    for future in futures:
        assert [n.id for n in future.result(timeout=LONG_WAIT + 30).notifications] == [new]
