"""Notifications and callback pushes (esb.storage.notification_store) on both engines.

Written at commit in commit order with a push per subscribed application, read by cursor,
claimed with a lease (``SKIP LOCKED`` on PostgreSQL), swept after their retention.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from esb.domain.agencies import AgencyRecord
from esb.domain.notifications import NotificationKind, PushState, WakeUp
from esb.storage import notification_store as store
from esb.storage.database import Database
from esb.storage.tables import Application, CallbackPushRow, NotificationRow
from esb.wiring import Runtime

A, B, C = "000.00.00.H53", "000.00.01.H53", "000.00.00.H30"
NOW = datetime(2026, 11, 21, 2, 30, tzinfo=UTC)
LEASE = timedelta(seconds=60)
ENDPOINT = "https://qlvb.example.gov.vn/lgsp/notify"


class Parties:
    """A (sender), B (two applications, one subscribed, one not; and a locked subscribed one), C."""

    def __init__(self, runtime: Runtime) -> None:
        self.database: Database = runtime.database
        registration = runtime.registration
        for code in (A, B, C):
            registration.add_agency(AgencyRecord(code, f"Cơ quan {code}"))
        self.a = registration.register_application(A, "QLVB").id
        self.b_subscribed = registration.register_application(B, "QLVB", endpoint=ENDPOINT).id
        self.b_plain = registration.register_application(B, "Cổng dịch vụ công").id
        self.b_locked = registration.register_application(B, "Cũ", endpoint=ENDPOINT).id
        self.c = registration.register_application(C, "QLVB", endpoint=ENDPOINT).id
        with self.database.transaction() as session:
            for application in (self.b_subscribed, self.b_locked):
                store.set_callback(session, application, ENDPOINT, now=NOW)
            session.execute(update(Application).where(Application.id == self.b_locked).values(state="locked"))

    def notify(
        self, agency: str = B, *, priority: int = 0, hub_id: str = "hub-1", at: datetime = NOW
    ) -> NotificationRow:
        with self.database.transaction() as session:
            return store.add(
                session,
                agency=agency,
                kind="document",
                hub_document_id=hub_id,
                sender=A,
                recipient=agency,
                message_type="edoc",
                priority=priority,
                detail=None,
                at=at,
            )

    def pushes(self) -> list[tuple[int, int, str, int]]:
        """(notification id, application id, state, attempts) of every push, by id."""
        with self.database.transaction() as session:
            rows = session.execute(
                select(
                    CallbackPushRow.notification_id,
                    CallbackPushRow.application_id,
                    CallbackPushRow.state,
                    CallbackPushRow.attempts,
                ).order_by(CallbackPushRow.id)
            )
            return [(int(n), int(a), str(s), int(t)) for n, a, s, t in rows]


@pytest.fixture
def parties(runtime: Runtime) -> Parties:
    return Parties(runtime)


@pytest.fixture
def woken(runtime: Runtime) -> Iterator[list[WakeUp]]:
    """The wake-ups this process's commit listener receives."""
    received: list[WakeUp] = []
    remove = store.on_commit(runtime.database, received.extend)
    yield received
    remove()


def test_add_writes_at_commit_with_a_push_per_subscribed_application(
    parties: Parties, woken: list[WakeUp]
) -> None:
    row = parties.notify(priority=3)
    assert row.id > 0
    assert woken == [WakeUp(B, row.id, 3, pushes=1)]  # one push: the delivery workers are woken
    # Only B's active application with a callback: not the unsubscribed one, nor the locked one.
    assert parties.pushes() == [(row.id, parties.b_subscribed, "pending", 0)]
    with parties.database.transaction() as session:
        (stored,) = store.after(session, B, 0, limit=10)
        push = session.scalars(select(CallbackPushRow)).one()
    assert (stored.kind, stored.sender, stored.recipient, stored.priority) == (
        NotificationKind.DOCUMENT,
        A,
        B,
        3,
    )
    assert stored.at == NOW
    assert (push.priority, push.next_attempt_at, push.lease_owner) == (3, NOW, None)


def test_an_agency_without_subscribers_gets_the_notification_and_no_push(
    parties: Parties, woken: list[WakeUp]
) -> None:
    row = parties.notify(A)
    assert woken == [WakeUp(A, row.id, 0, pushes=0)]  # nothing to push: the workers sleep on
    assert parties.pushes() == []


def test_a_rolled_back_transaction_writes_and_wakes_nothing(parties: Parties, woken: list[WakeUp]) -> None:
    class Abort(Exception):
        pass

    def add_then_fail() -> None:
        with parties.database.transaction() as session:
            store.add(
                session,
                agency=B,
                kind="status",
                hub_document_id="hub-x",
                sender=A,
                recipient=B,
                message_type="status",
                priority=0,
                detail=None,
                at=NOW,
            )
            raise Abort

    with pytest.raises(Abort):
        add_then_fail()
    assert woken == []
    with parties.database.transaction() as session:
        assert store.latest_id(session) == 0
    assert parties.pushes() == []


def test_unknown_kinds_are_refused(parties: Parties) -> None:
    with pytest.raises(ValueError, match="nonsense"), parties.database.transaction() as session:
        store.add(
            session,
            agency=B,
            kind="nonsense",
            hub_document_id="hub-x",
            sender=A,
            recipient=B,
            message_type="edoc",
            priority=0,
            detail=None,
            at=NOW,
        )


def test_reading_by_cursor(parties: Parties) -> None:
    ids = [parties.notify(B, hub_id=f"hub-{n}", priority=n % 2).id for n in range(5)]
    other = parties.notify(C).id
    with parties.database.transaction() as session:
        assert [n.id for n in store.after(session, B, 0, limit=10)] == ids
        assert [n.id for n in store.after(session, B, ids[1], limit=2)] == ids[2:4]
        assert store.after(session, B, ids[-1], limit=10) == []
        assert store.latest_id(session, B) == ids[-1]
        assert store.latest_id(session, C) == other
        assert store.latest_id(session) == other
        assert store.since(session, ids[3], limit=10) == [(ids[4], B), (other, C)]


def test_ids_follow_commit_order_not_the_order_of_add(parties: Parties) -> None:
    """A notification queued first but committed last gets the larger id: cursors skip nothing."""
    queued = threading.Event()
    done = threading.Event()
    late_id: list[int] = []

    def late_committer() -> None:
        with parties.database.transaction() as session:
            row = store.add(
                session,
                agency=B,
                kind="document",
                hub_document_id="hub-late",
                sender=A,
                recipient=B,
                message_type="edoc",
                priority=0,
                detail=None,
                at=NOW,
            )
            queued.set()
            assert done.wait(30)
        late_id.append(row.id)

    if parties.database.is_sqlite:  # one writer at a time: queue, then let the other commit first
        early = parties.notify(B, hub_id="hub-early")
        with parties.database.transaction() as session:
            row = store.add(
                session,
                agency=B,
                kind="document",
                hub_document_id="hub-late",
                sender=A,
                recipient=B,
                message_type="edoc",
                priority=0,
                detail=None,
                at=NOW,
            )
        assert row.id > early.id
        return
    thread = threading.Thread(target=late_committer)
    thread.start()
    assert queued.wait(30)
    early = parties.notify(B, hub_id="hub-early")  # committed while the other is still open
    done.set()
    thread.join(30)
    assert late_id
    assert late_id[0] > early.id
    with parties.database.transaction() as session:
        assert [n.hub_document_id for n in store.after(session, B, 0, limit=10)] == ["hub-early", "hub-late"]


def _claim(database: Database, owner: str, *, now: datetime = NOW, limit: int = 10) -> list[store.DuePush]:
    with database.transaction() as session:
        return store.claim_pushes(session, now=now, owner=owner, lease=LEASE, limit=limit)


def test_claims_take_the_highest_priority_first_and_hold_a_lease(parties: Parties) -> None:
    ordinary = parties.notify(priority=0, hub_id="hub-ordinary")
    urgent = parties.notify(priority=4, hub_id="hub-urgent")
    later = parties.notify(priority=4, hub_id="hub-later", at=NOW + timedelta(minutes=5))
    claimed = _claim(parties.database, "node-a")
    assert [p.notification.id for p in claimed] == [urgent.id, ordinary.id]  # `later` not due yet
    first = claimed[0]
    assert (first.application_name, first.callback_url, first.endpoint) == ("QLVB", ENDPOINT, ENDPOINT)
    assert first.notification.hub_document_id == "hub-urgent"
    # Leased: another node finds nothing until the lease runs out.
    assert _claim(parties.database, "node-b", now=NOW + timedelta(seconds=30)) == []
    after_lease = NOW + timedelta(minutes=6)
    taken = _claim(parties.database, "node-b", now=after_lease)
    assert [p.notification.id for p in taken] == [urgent.id, later.id, ordinary.id]
    # Node A's lease is gone: its late answer changes nothing.
    with parties.database.transaction() as session:
        assert not store.finish_push(session, first.push_id, "node-a", state=PushState.SENT, at=after_lease)
        assert store.finish_push(session, first.push_id, "node-b", state=PushState.SENT, at=after_lease)
        assert store.postpone_push(
            session,
            taken[2].push_id,
            "node-b",
            next_attempt_at=after_lease + timedelta(seconds=10),
            error="503",
        )
        assert store.finish_push(
            session, taken[1].push_id, "node-b", state=PushState.DEAD, at=after_lease, error="refused"
        )
    assert parties.pushes() == [
        (ordinary.id, parties.b_subscribed, "pending", 1),
        (urgent.id, parties.b_subscribed, "sent", 0),
        (later.id, parties.b_subscribed, "dead", 1),
    ]
    # The postponed push is due again at its next attempt, for anyone.
    assert _claim(parties.database, "node-c", now=after_lease + timedelta(seconds=5)) == []
    again = _claim(parties.database, "node-c", now=after_lease + timedelta(seconds=10))
    assert [(p.notification.id, p.attempts) for p in again] == [(ordinary.id, 1)]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_claimers_never_take_the_same_push(parties: Parties) -> None:
    for n in range(4):
        parties.notify(hub_id=f"hub-{n}", priority=n)
    with parties.database.transaction() as node_a:
        held = store.claim_pushes(node_a, now=NOW, owner="node-a", lease=LEASE, limit=2)
        # Node B claims at the same moment, while node A's transaction is still open.
        taken = _claim(parties.database, "node-b")
        assert {p.push_id for p in held}.isdisjoint(p.push_id for p in taken)
        assert len(held) == 2
        assert len(taken) == 2
        node_a.rollback()  # node A dies before committing: its rows are free again, unleased
    assert len(_claim(parties.database, "node-c")) == 2


def test_concurrent_claimers_share_the_work_without_overlap(parties: Parties) -> None:
    count = 24
    for n in range(count):
        parties.notify(hub_id=f"hub-{n}", priority=n % 5)
    results: dict[str, list[int]] = {}

    def claimer(owner: str) -> None:
        mine: list[int] = []
        while True:
            claimed = _claim(parties.database, owner, limit=3)
            if not claimed:
                break
            mine.extend(p.push_id for p in claimed)
        results[owner] = mine

    threads = [threading.Thread(target=claimer, args=(f"node-{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    every: Sequence[int] = [push for pushes in results.values() for push in pushes]
    assert len(every) == count
    assert len(set(every)) == count


def test_unsubscribing_cancels_pending_pushes_and_stops_new_ones(parties: Parties) -> None:
    first = parties.notify()
    with parties.database.transaction() as session:
        assert store.subscription(session, parties.b_subscribed) == (ENDPOINT, ENDPOINT)
        store.set_callback(session, parties.b_subscribed, None, now=NOW)
        assert store.subscription(session, parties.b_subscribed) == (ENDPOINT, None)
        assert store.subscription(session, 987654) == (None, None)
    second = parties.notify()
    assert second.id > first.id
    assert parties.pushes() == [(first.id, parties.b_subscribed, "cancelled", 0)]
    assert _claim(parties.database, "node-a") == []


def test_sweep_deletes_old_notifications_but_keeps_the_newest_and_pending_ones(parties: Parties) -> None:
    old = NOW - timedelta(days=10)
    kept_pending = parties.notify(B, hub_id="hub-pending", at=old)  # its push is still pending
    swept = [parties.notify(C, hub_id=f"hub-{n}", at=old).id for n in range(3)]  # C: no subscriber
    recent = parties.notify(A, hub_id="hub-recent", at=NOW)
    newest_old = parties.notify(A, hub_id="hub-newest", at=old)  # the newest id, although old
    with parties.database.transaction() as session:
        pushes_of_c = session.scalars(
            select(CallbackPushRow.id).where(CallbackPushRow.application_id == parties.c)
        ).all()
        assert pushes_of_c == []  # C registered an endpoint but never subscribed
        assert store.sweep(session, before=NOW - timedelta(days=7), limit=2) == 2
    with parties.database.transaction() as session:
        assert store.sweep(session, before=NOW - timedelta(days=7), limit=10) == 1
        assert store.sweep(session, before=NOW - timedelta(days=7), limit=10) == 0
        remaining = session.scalars(select(NotificationRow.id).order_by(NotificationRow.id)).all()
    assert remaining == [kept_pending.id, recent.id, newest_old.id]
    assert not set(swept) & set(remaining)
    # Once its push is finished, the old one goes too (with the push).
    (due,) = _claim(parties.database, "node-a")
    with parties.database.transaction() as session:
        assert store.finish_push(session, due.push_id, "node-a", state=PushState.SENT, at=NOW)
        assert store.sweep(session, before=NOW - timedelta(days=7), limit=10) == 1
    assert parties.pushes() == []
