"""PresenceTracker on both engines with a fake clock: activity, throttled writes, channels, the
sweep, two nodes on one database, and presence marked by authentication itself."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, select

from esb.domain.access import Caller
from esb.domain.presence import PresencePolicy, PresenceState
from esb.pipeline.authentication import Authenticator, AuthPolicy, SignedRequest
from esb.pipeline.presence import PresenceTracker
from esb.pipeline.registration import IssuedKey
from esb.storage import registry
from esb.storage.tables import PresenceEventRow, PresenceRow
from esb.wiring import Runtime, build_worker

A, B, C = "000.00.00.H53", "000.00.01.H53", "000.00.00.H30"
POLICY = PresencePolicy()


# -- helpers --------------------------------------------------------------------------------------


@pytest.fixture
def callers(runtime: Runtime, agencies: Any) -> dict[str, Caller]:
    """The QLVB application of A, B and C (registered by the ``agencies`` fixture), as callers."""
    with runtime.database.transaction() as session:
        return {
            code: Caller(code, registry.get_application(session, code, "QLVB").id, "QLVB", None)
            for code in (A, B, C)
        }


def tracker_on(runtime: Runtime, clock: Any, node: str, policy: PresencePolicy = POLICY) -> PresenceTracker:
    return PresenceTracker(runtime.database, policy, node_name=node, clock=clock)


@pytest.fixture
def node_a(runtime: Runtime, clock: Any) -> PresenceTracker:
    return tracker_on(runtime, clock, "node-a")


@pytest.fixture
def node_b(runtime: Runtime, clock: Any) -> PresenceTracker:
    return tracker_on(runtime, clock, "node-b")


class StatementCounter:
    """Counts the SQL statements the engine runs (every read and write of the database)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, *_args: Any) -> None:
        self.count += 1


@pytest.fixture
def statements(runtime: Runtime) -> Iterator[StatementCounter]:
    counter = StatementCounter()
    event.listen(runtime.database.engine, "before_cursor_execute", counter)
    yield counter
    event.remove(runtime.database.engine, "before_cursor_execute", counter)


def events(runtime: Runtime) -> list[tuple[str, str, datetime, str, str]]:
    """(agency, connect|disconnect, at, node, reason), oldest first."""
    with runtime.database.transaction() as session:
        rows = session.scalars(select(PresenceEventRow).order_by(PresenceEventRow.at, PresenceEventRow.id))
        return [(r.agency_code, r.event, r.at, r.node, r.reason) for r in rows]


def stored(runtime: Runtime, caller: Caller) -> PresenceRow | None:
    with runtime.database.transaction() as session:
        return session.get(PresenceRow, caller.application_id)


def state_of(tracker: PresenceTracker, code: str) -> PresenceState:
    return tracker.agency_presence([code])[code].state


def signed(key: IssuedKey, now: datetime, *, target: str | None = None) -> SignedRequest:
    timestamp, nonce = now.isoformat(), secrets.token_hex(8)
    message = f"{key.access_key}\n{timestamp}\n{nonce}\nHMAC-SHA256\n{target or ''}".encode()
    digest = hmac.new((key.secret_key or "").encode(), message, hashlib.sha256).digest()
    return SignedRequest(
        key.access_key, timestamp, nonce, "HMAC-SHA256", base64.b64encode(digest).decode(), target
    )


# -- activity -------------------------------------------------------------------------------------


def test_activity_makes_an_unknown_application_online_with_a_connect(
    runtime: Runtime, node_a: PresenceTracker, callers: dict[str, Caller], clock: Any
) -> None:
    assert state_of(node_a, A) is PresenceState.UNKNOWN
    node_a.seen(callers[A], "heartbeat")
    assert events(runtime) == [(A, "connect", clock.now, "node-a", "heartbeat")]
    presence = node_a.agency_presence([A, B])
    assert (presence[A].state, presence[A].since, presence[A].last_seen_at) == (
        PresenceState.ONLINE,
        clock.now,
        clock.now,
    )
    assert presence[B].state is PresenceState.UNKNOWN


def test_calls_within_the_throttle_cost_no_database_work(
    runtime: Runtime,
    node_a: PresenceTracker,
    callers: dict[str, Caller],
    clock: Any,
    statements: StatementCounter,
) -> None:
    start = clock.now
    node_a.seen(callers[A], "call")
    assert statements.count > 0
    statements.count = 0
    for _ in range(14):  # 14 calls over the next 14 s: answered from memory, no read, no write
        clock.advance(seconds=1)
        node_a.seen(callers[A], "call")
    assert statements.count == 0
    row = stored(runtime, callers[A])
    assert row is not None
    assert row.last_seen_at == start
    clock.advance(seconds=1)  # 15 s after the write: the next call writes again
    node_a.seen(callers[A], "call")
    row = stored(runtime, callers[A])
    assert row is not None
    assert row.last_seen_at == clock.now
    assert len(events(runtime)) == 1


def test_silence_makes_it_offline_and_activity_connects_it_again(
    runtime: Runtime, node_a: PresenceTracker, callers: dict[str, Caller], clock: Any
) -> None:
    start = clock.now
    node_a.seen(callers[A], "authenticate")
    clock.advance(minutes=5)
    assert node_a.sweep(100) == 0
    clock.advance(seconds=1)
    assert node_a.sweep(100) == 1
    assert state_of(node_a, A) is PresenceState.OFFLINE
    clock.advance(minutes=10)
    node_a.seen(callers[A], "call")
    assert events(runtime) == [
        (A, "connect", start, "node-a", "authenticate"),
        (A, "disconnect", start + timedelta(minutes=5), "node-a", "silent: no activity for 5 min"),
        (A, "connect", clock.now, "node-a", "call"),
    ]


def test_the_silence_comes_from_the_policy(runtime: Runtime, callers: dict[str, Caller], clock: Any) -> None:
    tracker = tracker_on(runtime, clock, "node-a", PresencePolicy(silence=timedelta(seconds=60)))
    tracker.seen(callers[A], "call")
    clock.advance(seconds=61)
    assert tracker.sweep(100) == 1
    assert events(runtime)[-1][4] == "silent: no activity for 1 min"


# -- notification channels ------------------------------------------------------------------------


def test_a_renewed_channel_keeps_online_beyond_the_silence(
    runtime: Runtime, node_a: PresenceTracker, callers: dict[str, Caller], clock: Any
) -> None:
    node_a.channel_opened(callers[B], "sse")
    for _ in range(60):  # 15 minutes of keep-alives, the worker sweeping in between
        clock.advance(seconds=15)
        node_a.channel_alive(callers[B])
        assert node_a.sweep(100) == 0
    row = stored(runtime, callers[B])
    assert row is not None
    assert (row.state, row.channel_kind, row.channel_until) == (
        "online",
        "sse",
        clock.now + timedelta(seconds=45),
    )
    assert [e[1] for e in events(runtime)] == ["connect"]


def test_a_channel_that_stops_renewing_is_offline_within_60_seconds(
    runtime: Runtime, node_a: PresenceTracker, callers: dict[str, Caller], clock: Any
) -> None:
    node_a.channel_opened(callers[B], "long-poll")
    clock.advance(seconds=15)
    node_a.channel_alive(callers[B])
    renewed = clock.now
    # The node holding the channel is killed: nobody renews or closes it.  The worker of any
    # node sweeps every second.
    other_node = tracker_on(runtime, clock, "node-b")
    while other_node.sweep(100) == 0:
        clock.advance(seconds=1)
        assert clock.now - renewed <= timedelta(seconds=60)
    assert state_of(other_node, B) is PresenceState.OFFLINE
    assert events(runtime)[-1] == (
        B,
        "disconnect",
        renewed + timedelta(seconds=45),
        "node-b",
        "channel-lease-expired: long-poll",
    )


def test_a_failed_channel_write_is_offline_at_once_and_the_next_call_reconnects(
    runtime: Runtime,
    node_a: PresenceTracker,
    callers: dict[str, Caller],
    clock: Any,
    statements: StatementCounter,
) -> None:
    node_a.seen(callers[C], "call")
    clock.advance(seconds=1)
    node_a.channel_opened(callers[C], "sse")
    clock.advance(seconds=2)
    node_a.channel_closed(callers[C], dropped=True, reason="write failed")
    assert state_of(node_a, C) is PresenceState.OFFLINE
    clock.advance(seconds=1)
    statements.count = 0
    node_a.seen(callers[C], "call")  # within the throttle of the first call, yet written
    assert statements.count > 0
    assert [(e[1], e[4]) for e in events(runtime)] == [
        ("connect", "call"),
        ("disconnect", "channel-dropped: write failed"),
        ("connect", "call"),
    ]


def test_one_dropped_channel_of_two_leaves_the_application_online(
    runtime: Runtime, node_a: PresenceTracker, callers: dict[str, Caller], clock: Any
) -> None:
    node_a.channel_opened(callers[A], "sse")
    node_a.channel_opened(callers[A], "sse")
    clock.advance(seconds=5)
    node_a.channel_closed(callers[A], dropped=True, reason="write failed")
    assert state_of(node_a, A) is PresenceState.ONLINE
    clock.advance(seconds=5)
    node_a.channel_closed(callers[A], dropped=True, reason="write failed")
    assert state_of(node_a, A) is PresenceState.OFFLINE


def test_a_channel_closed_in_good_order_leaves_the_silence_rule(
    runtime: Runtime, node_a: PresenceTracker, callers: dict[str, Caller], clock: Any
) -> None:
    node_a.channel_opened(callers[A], "long-poll")
    clock.advance(seconds=30)
    node_a.channel_closed(callers[A], dropped=False, reason="wait ended")
    closed = clock.now
    row = stored(runtime, callers[A])
    assert row is not None
    assert (row.state, row.channel_until, row.last_seen_at) == ("online", None, closed)
    clock.advance(minutes=5, seconds=1)
    assert node_a.sweep(100) == 1
    assert events(runtime)[-1][2] == closed + timedelta(minutes=5)


# -- several nodes --------------------------------------------------------------------------------


def test_two_nodes_share_one_presence(
    runtime: Runtime,
    node_a: PresenceTracker,
    node_b: PresenceTracker,
    callers: dict[str, Caller],
    clock: Any,
) -> None:
    start = clock.now
    node_a.seen(callers[A], "authenticate")
    clock.advance(seconds=20)
    node_b.seen(callers[A], "call")  # a later call lands on the other node: no second connect
    row = stored(runtime, callers[A])
    assert row is not None
    assert (row.last_seen_at, row.node) == (clock.now, "node-b")
    clock.advance(minutes=5, seconds=1)
    assert node_a.sweep(100) == 1
    assert node_b.sweep(100) == 0
    clock.advance(seconds=10)
    node_b.seen(callers[A], "call")
    assert [(e[1], e[2], e[3], e[4]) for e in events(runtime)] == [
        ("connect", start, "node-a", "authenticate"),
        ("disconnect", start + timedelta(seconds=320), "node-a", "silent: no activity for 5 min"),
        ("connect", clock.now, "node-b", "call"),
    ]


def test_two_nodes_at_once_record_one_connect_per_application(
    runtime: Runtime, registration: Any, clock: Any
) -> None:
    from esb.domain.agencies import AgencyRecord

    callers = []
    for n in range(12):
        code = f"000.{n + 1:02d}.60.H53"
        registration.add_agency(AgencyRecord(code, f"Cơ quan {code}"))
        application = registration.register_application(code, "QLVB")
        callers.append(Caller(code, application.id, "QLVB", None))
    nodes = [tracker_on(runtime, clock, name) for name in ("node-a", "node-b")]
    barrier = threading.Barrier(8)
    failures: list[BaseException] = []

    def hammer(tracker: PresenceTracker) -> None:
        try:
            barrier.wait()
            for caller in callers:
                tracker.seen(caller, "call")
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=hammer, args=(nodes[i % 2],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    connects = [e[0] for e in events(runtime) if e[1] == "connect"]
    assert sorted(connects) == sorted(c.agency_code for c in callers)
    assert nodes[0].online_agencies() == frozenset(c.agency_code for c in callers)


def test_online_agencies_are_answered_from_memory_for_a_second(
    node_a: PresenceTracker, node_b: PresenceTracker, callers: dict[str, Caller], clock: Any
) -> None:
    node_a.seen(callers[A], "call")
    assert node_a.online_agencies() == frozenset({A})
    node_b.seen(callers[B], "call")  # another node: node_a's memory does not know yet
    clock.advance(seconds=0.5)
    assert node_a.online_agencies() == frozenset({A})
    clock.advance(seconds=0.5)
    assert node_a.online_agencies() == frozenset({A, B})
    assert node_b.online_agencies() == frozenset({A, B})


# -- failures never fail the caller ---------------------------------------------------------------


def test_a_failed_write_is_logged_and_retried_never_raised(
    runtime: Runtime, node_a: PresenceTracker, clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    ghost = Caller(A, 987_654, "QLVB", "AK-secret-looking-key")  # no such application: the write fails
    with caplog.at_level(logging.WARNING, logger="esb.pipeline.presence"):
        node_a.seen(ghost, "call")
        clock.advance(seconds=1)
        node_a.seen(ghost, "call")  # not remembered as written: tried again
    warnings = [r.getMessage() for r in caplog.records if r.name == "esb.pipeline.presence"]
    assert len(warnings) == 2
    assert all("987654" in w and "AK-secret" not in w for w in warnings)
    assert events(runtime) == []


# -- authentication marks presence ----------------------------------------------------------------


@pytest.fixture
def authenticator(runtime: Runtime, clock: Any, node_a: PresenceTracker) -> Authenticator:
    policy = AuthPolicy(clock_skew=timedelta(seconds=300), session_ttl=timedelta(minutes=30))
    return Authenticator(runtime.database, runtime.secret_box, policy, clock=clock, on_activity=node_a.seen)


def test_authenticated_calls_mark_presence_through_the_hook(
    runtime: Runtime,
    authenticator: Authenticator,
    node_a: PresenceTracker,
    agencies: Any,
    clock: Any,
    statements: StatementCounter,
) -> None:
    grant = authenticator.authenticate(signed(agencies.a, clock.now))
    assert events(runtime) == [(A, "connect", clock.now, "node-a", "authenticate")]
    authenticator.caller_for_session(grant.token, "DocumentExchange")  # resolved: the session is read
    clock.advance(seconds=2)
    statements.count = 0
    authenticator.caller_for_session(grant.token, "DocumentExchange")  # from the session cache
    assert statements.count == 0  # presence too answered from memory
    clock.advance(minutes=6)
    node_a.sweep(100)
    authenticator.caller_for_session(grant.token, "DocumentExchange")
    assert [(e[1], e[4]) for e in events(runtime)] == [
        ("connect", "authenticate"),
        ("disconnect", "silent: no activity for 5 min"),
        ("connect", "call"),
    ]


def test_verify_access_marks_the_destination(
    runtime: Runtime, authenticator: Authenticator, agencies: Any, clock: Any
) -> None:
    grant = authenticator.authenticate(signed(agencies.a, clock.now, target=B))
    authenticator.verify_access(grant.token, None, signed(agencies.b, clock.now, target=grant.token))
    assert [(e[0], e[4]) for e in events(runtime)] == [(A, "authenticate"), (B, "call")]


def test_a_failing_hook_never_refuses_an_authenticated_call(
    runtime: Runtime, agencies: Any, clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(_caller: Caller, _reason: str) -> None:
        raise RuntimeError("presence is down")

    authenticator = Authenticator(runtime.database, runtime.secret_box, clock=clock, on_activity=broken)
    with caplog.at_level(logging.WARNING, logger="esb.pipeline.authentication"):
        grant = authenticator.authenticate(signed(agencies.a, clock.now))
        caller = authenticator.caller_for_session(grant.token, "DocumentExchange")
    assert caller.agency_code == A
    assert sum("activity hook failed" in r.getMessage() for r in caplog.records) == 2


# -- wiring ---------------------------------------------------------------------------------------


def test_the_runtime_tracks_presence_and_the_worker_sweeps(
    runtime: Runtime, callers: dict[str, Caller]
) -> None:
    worker = build_worker(runtime)
    assert "presence" in [step.name for step in worker.steps]
    assert runtime.authenticator.on_activity == runtime.presence.seen
    assert runtime.presence.node_name == runtime.settings.node_name
    past = runtime.presence.clock() - timedelta(minutes=10)
    with runtime.database.transaction() as session:  # an application last seen ten minutes ago
        session.add(
            PresenceRow(
                application_id=callers[C].application_id,
                agency_code=C,
                state="online",
                state_since=past,
                last_seen_at=past,
            )
        )
    report = worker.run_once()
    assert report.others["presence"] == 1
    assert state_of(runtime.presence, C) is PresenceState.OFFLINE
