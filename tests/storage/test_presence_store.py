"""esb.storage.presence_store on both engines: writes under lock, sweep candidates, queries, history."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, insert, select

from esb.domain.agencies import AgencyRecord
from esb.domain.presence import (
    UNKNOWN,
    AgencyStatistics,
    Decision,
    PresenceEvent,
    PresencePolicy,
    PresenceState,
    PresenceStatus,
    on_activity,
    on_channel_open,
    on_sweep,
)
from esb.storage import presence_store
from esb.storage.tables import PresenceEventRow, PresenceRow
from esb.wiring import Runtime

T0 = datetime(2026, 11, 21, 2, 30, tzinfo=UTC)
A, B, C = "000.00.00.H53", "000.00.00.H30", "000.00.01.H53"
POLICY = PresencePolicy()


@dataclass(frozen=True)
class Apps:
    a_qlvb: int
    a_portal: int
    b_qlvb: int
    c_qlvb: int


@pytest.fixture
def apps(runtime: Runtime) -> Apps:
    ids = []
    for code, name in ((A, "UBND tỉnh Tây Ninh"), (B, "UBND tỉnh Hậu Giang"), (C, "Văn phòng UBND")):
        runtime.registration.add_agency(AgencyRecord(code, name))
    for code, application in ((A, "QLVB"), (A, "Cổng"), (B, "QLVB"), (C, "QLVB")):
        ids.append(runtime.registration.register_application(code, application).id)
    return Apps(*ids)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _seen(runtime: Runtime, app: int, agency: str, at: datetime, *, node: str = "node-a") -> Decision:
    with runtime.database.transaction() as session:
        return presence_store.apply(
            session,
            application_id=app,
            agency_code=agency,
            rule=lambda current: on_activity(current, at, "call"),
            node=node,
        )


def _events(runtime: Runtime) -> list[tuple[int, str, str, str]]:
    with runtime.database.transaction() as session:
        rows = session.scalars(select(PresenceEventRow).order_by(PresenceEventRow.id))
        return [(r.application_id, r.event, r.node, r.reason) for r in rows]


def _sweep(runtime: Runtime, now: datetime, limit: int = 100) -> list[int]:
    with runtime.database.transaction() as session:
        due = presence_store.due_for_sweep(session, now=now, silence=POLICY.silence, limit=limit)
        for row in due:
            presence_store.apply_locked(
                session, row, rule=lambda current: on_sweep(current, now, POLICY), node="node-s"
            )
        return [row.application_id for row in due]


# -- writes ---------------------------------------------------------------------------------------


def test_first_activity_creates_the_row_and_one_connect_event(runtime: Runtime, apps: Apps) -> None:
    first = _seen(runtime, apps.a_qlvb, A, _at(0))
    assert first.transition is not None
    again = _seen(runtime, apps.a_qlvb, A, _at(20), node="node-b")
    assert again.transition is None
    with runtime.database.transaction() as session:
        row = session.get(PresenceRow, apps.a_qlvb)
        assert row is not None
        assert (row.agency_code, row.state, row.state_since, row.last_seen_at, row.node, row.reason) == (
            A,
            "online",
            _at(0),
            _at(20),
            "node-b",  # the node that wrote last
            "call",
        )
    assert _events(runtime) == [(apps.a_qlvb, "connect", "node-a", "call")]


def test_a_rule_that_changes_nothing_writes_nothing(runtime: Runtime, apps: Apps) -> None:
    _seen(runtime, apps.a_qlvb, A, _at(30))
    with runtime.database.transaction() as session:
        earlier = presence_store.apply(
            session,
            application_id=apps.a_qlvb,
            agency_code=A,
            rule=lambda current: on_activity(current, _at(10), "call"),
            node="node-b",
        )
        unseen = presence_store.apply(
            session,
            application_id=apps.b_qlvb,
            agency_code=B,
            rule=lambda current: on_sweep(current, _at(10), POLICY),
            node="node-b",
        )
    assert earlier.status.last_seen_at == _at(30)
    assert unseen == Decision(UNKNOWN)
    with runtime.database.transaction() as session:
        row = session.get(PresenceRow, apps.a_qlvb)
        assert row is not None
        assert row.node == "node-a"
        assert session.get(PresenceRow, apps.b_qlvb) is None


def test_a_row_another_node_created_meanwhile_is_decided_on_again(runtime: Runtime, apps: Apps) -> None:
    """The row is missing when locked, then exists when inserted: the rule decides on that row."""
    seen_by_rule: list[PresenceState] = []

    with runtime.database.transaction() as session:

        def rule(current: PresenceStatus) -> Decision:
            seen_by_rule.append(current.state)
            if len(seen_by_rule) == 1:  # node-b connects the application just now
                session.execute(
                    insert(PresenceRow).values(
                        application_id=apps.a_qlvb,
                        agency_code=A,
                        state="online",
                        state_since=_at(1),
                        last_seen_at=_at(1),
                        node="node-b",
                        reason="heartbeat",
                    )
                )
            return on_activity(current, _at(2), "call")

        decision = presence_store.apply(
            session, application_id=apps.a_qlvb, agency_code=A, rule=rule, node="node-a"
        )
    assert seen_by_rule == [PresenceState.UNKNOWN, PresenceState.ONLINE]
    assert decision.transition is None  # node-b's connect stands; no second one
    assert decision.status.state_since == _at(1)
    assert _events(runtime) == []  # (node-b's own event was not part of this simulation)
    with runtime.database.transaction() as session:
        row = session.get(PresenceRow, apps.a_qlvb)
        assert row is not None
        assert (row.last_seen_at, row.node, row.reason) == (_at(2), "node-a", "heartbeat")


def test_reasons_and_node_names_are_bounded(runtime: Runtime, apps: Apps) -> None:
    with runtime.database.transaction() as session:
        presence_store.apply(
            session,
            application_id=apps.a_qlvb,
            agency_code=A,
            rule=lambda current: on_activity(current, _at(0), "call " + "x" * 300),
            node="n" * 300,
        )
    ((_, _, node, reason),) = _events(runtime)
    assert (len(node), len(reason)) == (128, 128)


# -- the sweep ------------------------------------------------------------------------------------


def test_due_for_sweep_finds_lapsed_leases_and_silences_only(runtime: Runtime, apps: Apps) -> None:
    _seen(runtime, apps.a_qlvb, A, _at(0))  # silent since 0
    _seen(runtime, apps.b_qlvb, B, _at(200))  # silent since 200
    with runtime.database.transaction() as session:  # a channel since 0, renewed at 290
        for at in (_at(0), _at(290)):
            presence_store.apply(
                session,
                application_id=apps.a_portal,
                agency_code=A,
                rule=lambda current, at=at: on_channel_open(current, at, "sse", POLICY),
                node="node-a",
            )
    _seen(runtime, apps.c_qlvb, C, _at(0))
    assert _sweep(runtime, _at(301)) == [apps.a_qlvb, apps.c_qlvb]  # 5 min 1 s after 0
    assert _sweep(runtime, _at(302)) == []  # already offline
    assert _sweep(runtime, _at(336)) == [apps.a_portal]  # lease 290 + 45 lapsed
    assert _sweep(runtime, _at(501), limit=5) == [apps.b_qlvb]
    reasons = {(app, reason) for app, event, _, reason in _events(runtime) if event == "disconnect"}
    assert reasons == {
        (apps.a_qlvb, "silent: no activity for 5 min"),
        (apps.c_qlvb, "silent: no activity for 5 min"),
        (apps.a_portal, "channel-lease-expired: sse"),
        (apps.b_qlvb, "silent: no activity for 5 min"),
    }


def test_the_sweep_takes_at_most_limit_rows(runtime: Runtime, apps: Apps) -> None:
    for app, agency in ((apps.a_qlvb, A), (apps.b_qlvb, B), (apps.c_qlvb, C)):
        _seen(runtime, app, agency, _at(0))
    assert len(_sweep(runtime, _at(400), limit=2)) == 2
    assert len(_sweep(runtime, _at(400), limit=2)) == 1


# -- queries --------------------------------------------------------------------------------------


def test_presence_of_applications_lists_unknown_ones_too(runtime: Runtime, apps: Apps) -> None:
    _seen(runtime, apps.a_qlvb, A, _at(0))
    _seen(runtime, apps.b_qlvb, B, _at(0))
    _sweep(runtime, _at(301))
    _seen(runtime, apps.a_qlvb, A, _at(400))
    with runtime.database.transaction() as session:
        everything = presence_store.presence_of_applications(session)
        online = presence_store.presence_of_applications(session, state=PresenceState.ONLINE)
        unknown = presence_store.presence_of_applications(session, state=PresenceState.UNKNOWN)
        of_a = presence_store.presence_of_applications(session, agency=A)
    assert [(e.agency_code, e.application_name, e.status.state.value, e.node) for e in everything] == [
        (B, "QLVB", "offline", "node-s"),
        (A, "Cổng", "unknown", None),
        (A, "QLVB", "online", "node-a"),
        (C, "QLVB", "unknown", None),
    ]
    assert [e.application_id for e in online] == [apps.a_qlvb]
    assert [e.application_id for e in unknown] == [apps.a_portal, apps.c_qlvb]
    assert [e.application_name for e in of_a] == ["Cổng", "QLVB"]


def test_agency_presence_and_last_seen(runtime: Runtime, apps: Apps) -> None:
    _seen(runtime, apps.a_qlvb, A, _at(0))
    _seen(runtime, apps.a_portal, A, _at(100))
    _seen(runtime, apps.b_qlvb, B, _at(10))
    _sweep(runtime, _at(320))  # a_qlvb and b_qlvb go offline; a_portal stays online
    with runtime.database.transaction() as session:
        agencies = presence_store.presence_of_agencies(session, [A, B, C, "000.99.99.H99", A])
        last_seen = presence_store.last_seen_of_agencies(session, [A, B, C])
        online = presence_store.online_agency_codes(session)
    assert set(agencies) == {A, B, C, "000.99.99.H99"}
    assert (agencies[A].state, agencies[A].since, agencies[A].online_applications) == (
        PresenceState.ONLINE,
        _at(100),
        1,
    )
    assert (agencies[B].state, agencies[B].since) == (PresenceState.OFFLINE, _at(310))
    assert agencies[C].state is PresenceState.UNKNOWN
    assert last_seen == {
        A: (PresenceState.ONLINE, _at(100)),
        B: (PresenceState.OFFLINE, _at(10)),
        C: (PresenceState.UNKNOWN, None),
    }
    assert online == frozenset({A})


def test_many_codes_are_asked_in_chunks(runtime: Runtime, apps: Apps) -> None:
    _seen(runtime, apps.b_qlvb, B, _at(0))
    codes = [f"000.{n // 100:02d}.{n % 100:02d}.H99" for n in range(2500)] + [B]
    with runtime.database.transaction() as session:
        found = presence_store.last_seen_of_agencies(session, codes)
    assert len(found) == 2501
    assert found[B] == (PresenceState.ONLINE, _at(0))


# -- history and statistics -----------------------------------------------------------------------


def _history(runtime: Runtime, apps: Apps) -> None:
    """a_qlvb: on 0, off 300 (silent); b_qlvb: on 100, off 400, on 1000; a_portal: on 2000."""
    _seen(runtime, apps.a_qlvb, A, _at(0))
    _seen(runtime, apps.b_qlvb, B, _at(100))
    _sweep(runtime, _at(500))
    _seen(runtime, apps.b_qlvb, B, _at(1000), node="node-b")
    _seen(runtime, apps.a_portal, A, _at(2000))


def test_history_is_newest_first_filtered_and_paged(runtime: Runtime, apps: Apps) -> None:
    _history(runtime, apps)
    with runtime.database.transaction() as session:
        everything = presence_store.connection_history(session)
        first = presence_store.connection_history(session, limit=2)
        assert first.next is not None
        second = presence_store.connection_history(session, limit=2, after=first.next)
        assert second.next is not None
        third = presence_store.connection_history(session, limit=2, after=second.next)
        of_b = presence_store.connection_history(session, agency=B)
        window = presence_store.connection_history(session, since=_at(300), until=_at(1000))
    assert [(e.at, e.event) for e in everything.events] == [
        (_at(2000), PresenceEvent.CONNECT),
        (_at(1000), PresenceEvent.CONNECT),
        (_at(400), PresenceEvent.DISCONNECT),
        (_at(300), PresenceEvent.DISCONNECT),
        (_at(100), PresenceEvent.CONNECT),
        (_at(0), PresenceEvent.CONNECT),
    ]
    assert everything.next is None
    paged = [e.id for page in (first, second, third) for e in page.events]
    assert paged == [e.id for e in everything.events]
    assert third.next is None
    assert [(e.at, e.node, e.application_name) for e in of_b.events] == [
        (_at(1000), "node-b", "QLVB"),
        (_at(400), "node-s", "QLVB"),
        (_at(100), "node-a", "QLVB"),
    ]
    assert [e.at for e in window.events] == [_at(400), _at(300)]


def test_statistics_over_a_period(runtime: Runtime, apps: Apps) -> None:
    _history(runtime, apps)
    with runtime.database.transaction() as session:
        stats = presence_store.statistics(session, since=_at(200), until=_at(2200))
        only_a = presence_store.statistics(session, since=_at(200), until=_at(2200), agency=A)
        later = presence_store.statistics(session, since=_at(1500), until=_at(2500))
    period = timedelta(seconds=2000)
    assert stats == [
        # B: online at the start (connected at 100), off 400, on again 1000 → 200 + 1200 s
        AgencyStatistics(B, 1, 1, timedelta(seconds=1400), period),
        # A: a_qlvb online at the start until 300, a_portal from 2000 → 100 + 200 s
        AgencyStatistics(A, 1, 1, timedelta(seconds=300), period),
    ]
    assert only_a == stats[1:]
    assert [(s.agency_code, s.connects, s.online) for s in later] == [
        (B, 0, timedelta(seconds=1000)),
        (A, 1, timedelta(seconds=500)),
    ]


def test_no_events_no_statistics(runtime: Runtime, apps: Apps) -> None:
    with runtime.database.transaction() as session:
        assert presence_store.statistics(session, since=T0, until=_at(60)) == []
        assert session.scalar(select(func.count()).select_from(PresenceEventRow)) == 0
