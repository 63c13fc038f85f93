"""Queries of esb.storage.delivery_store on both engines: bridge claims under a lease (``SKIP
LOCKED`` on PostgreSQL), the offline scan's queries, dead-letter listings and sender limits.

Rows are written directly, so each query is checked on its own.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from esb.domain.agencies import AgencyRecord
from esb.domain.exchange import DeliveryState
from esb.errors import ClientError
from esb.storage import delivery_store
from esb.storage.database import Database
from esb.storage.tables import Delivery, Document
from esb.wiring import Runtime

SENDER, OTHER_SENDER = "000.00.00.G22", "000.00.00.H30"
B, C, FAR = "000.00.01.H53", "000.00.32.H53", "000.00.00.H31"
NOW = datetime(2026, 11, 21, 2, 30, tzinfo=UTC)
LEASE = timedelta(minutes=5)


class Rows:
    def __init__(self, runtime: Runtime) -> None:
        self.database: Database = runtime.database
        self.applications: dict[str, int] = {}
        for code in (SENDER, OTHER_SENDER):
            runtime.registration.add_agency(AgencyRecord(code, f"Cơ quan {code}"))
            self.applications[code] = runtime.registration.register_application(code, "QLVB").id

    def delivery(
        self,
        session: Session,
        recipient: str,
        *,
        state: DeliveryState = DeliveryState.PENDING,
        route: str = "local",
        sender: str = SENDER,
        priority: int = 0,
        available_at: datetime = NOW,
        next_attempt_at: datetime | None = None,
        lease_until: datetime | None = None,
        dead_at: datetime | None = None,
    ) -> Delivery:
        document = Document(
            hub_id=str(uuid.uuid4()),
            message_type="edoc",
            sender_code=sender,
            sender_application_id=self.applications[sender],
            subject="Báo cáo",
            priority=priority,
            size=10,
            sha256="a" * 64,
            delivered_size=12,
            delivered_sha256="b" * 64,
            content_key=uuid.uuid4().hex,
            state="routed",
            accepted_at=available_at,
            retain_until=available_at + timedelta(days=30),
        )
        session.add(document)
        session.flush()
        delivery = Delivery(
            document_id=document.id,
            recipient_code=recipient,
            message_type="edoc",
            priority=priority,
            state=state.value,
            route=route,
            delivered_sha256="b" * 64,
            available_at=available_at,
            next_attempt_at=next_attempt_at,
            lease_owner="someone" if lease_until else None,
            lease_until=lease_until,
            dead_at=dead_at,
            dead_reason="why" if dead_at else None,
        )
        session.add(delivery)
        session.flush()
        return delivery


@pytest.fixture
def rows(runtime: Runtime) -> Rows:
    return Rows(runtime)


QUEUED = DeliveryState.QUEUED


def test_bridge_claims_take_due_unleased_deliveries_and_lease_them(rows: Rows) -> None:
    with rows.database.transaction() as session:
        due = rows.delivery(session, FAR, state=QUEUED, route="vxp", next_attempt_at=NOW)
        urgent = rows.delivery(session, FAR, state=QUEUED, route="vxp", priority=3, next_attempt_at=NOW)
        lapsed = rows.delivery(session, FAR, state=QUEUED, route="vxp", next_attempt_at=NOW, lease_until=NOW)
        ids = {"due": due.id, "urgent": urgent.id, "lapsed": lapsed.id}
        rows.delivery(session, FAR, state=QUEUED, route="vxp", next_attempt_at=NOW + timedelta(seconds=1))
        rows.delivery(session, FAR, state=QUEUED, route="vxp", next_attempt_at=NOW, lease_until=NOW + LEASE)
        rows.delivery(session, B, state=QUEUED, route="local")  # a local queue is the route step's
        rows.delivery(session, FAR, state=DeliveryState.UNDELIVERABLE, route="vxp", dead_at=NOW)
    with rows.database.transaction() as session:
        claimed = delivery_store.claim_bridge(
            session, now=NOW, owner="node-a:1", lease_until=NOW + LEASE, limit=10
        )
        assert [d.id for _, d in claimed] == [ids["urgent"], ids["due"], ids["lapsed"]]
        assert {(d.lease_owner, d.lease_until) for _, d in claimed} == {("node-a:1", NOW + LEASE)}
    with rows.database.transaction() as session:  # leased now: nobody else takes them
        assert (
            delivery_store.claim_bridge(session, now=NOW, owner="node-b:2", lease_until=NOW + LEASE, limit=10)
            == []
        )
    with rows.database.transaction() as session:  # until the lease lapses
        later = NOW + LEASE
        again = delivery_store.claim_bridge(
            session, now=later, owner="node-b:2", lease_until=later + LEASE, limit=2
        )
        assert [d.id for _, d in again] == [ids["urgent"], ids["due"]]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_concurrent_bridge_claims_never_take_the_same_delivery(rows: Rows) -> None:
    with rows.database.transaction() as session:
        ids = [
            rows.delivery(session, FAR, state=QUEUED, route="vxp", next_attempt_at=NOW).id for _ in range(3)
        ]
    with rows.database.transaction() as node_a:
        first = delivery_store.claim_bridge(node_a, now=NOW, owner="a", lease_until=NOW + LEASE, limit=2)
        with rows.database.transaction() as node_b:  # before node A commits
            second = delivery_store.claim_bridge(
                node_b, now=NOW, owner="b", lease_until=NOW + LEASE, limit=10
            )
            assert [d.id for _, d in second] == [ids[2]]
        assert [d.id for _, d in first] == ids[:2]


def test_the_offline_scan_finds_old_local_pending_deliveries(rows: Rows) -> None:
    old, recent = NOW - timedelta(hours=30), NOW - timedelta(minutes=5)
    with rows.database.transaction() as session:
        wanted = [
            rows.delivery(session, B, available_at=old).id,
            rows.delivery(session, B, available_at=old, sender=OTHER_SENDER).id,
            rows.delivery(session, C, available_at=old).id,
        ]
        rows.delivery(session, B, available_at=recent)
        rows.delivery(session, B, state=DeliveryState.DONE, available_at=old)
        rows.delivery(session, FAR, state=QUEUED, route="vxp", available_at=old)
    own_limit = timedelta(hours=6)
    with rows.database.transaction() as session:
        delivery_store.set_sender_limit(session, SENDER, int(own_limit.total_seconds()))
    cutoff = NOW - timedelta(hours=1)
    with rows.database.transaction() as session:
        assert sorted(delivery_store.waiting_recipients(session, available_before=cutoff)) == [B, C]
        page = delivery_store.waiting_for(session, [B, C], available_before=cutoff, after_id=0, limit=2)
        assert [w.delivery_id for w in page] == wanted[:2]
        assert [(w.recipient, w.sender, w.sender_limit_seconds) for w in page] == [
            (B, SENDER, 6 * 3600),
            (B, OTHER_SENDER, None),
        ]
        rest = delivery_store.waiting_for(
            session, [B, C], available_before=cutoff, after_id=page[-1].delivery_id, limit=2
        )
        assert [w.delivery_id for w in rest] == wanted[2:]
        assert delivery_store.waiting_for(session, [], available_before=cutoff, after_id=0, limit=2) == []
        assert delivery_store.shortest_sender_limit(session) == 6 * 3600
    with rows.database.transaction() as session:
        delivery_store.set_sender_limit(session, SENDER, None)
        assert delivery_store.shortest_sender_limit(session) is None
    with pytest.raises(ClientError) as caught, rows.database.transaction() as session:
        delivery_store.set_sender_limit(session, "000.00.00.H99", 60)
    assert caught.value.code == "Client.NotRegistered"


def test_dead_letters_are_listed_latest_report_first(rows: Rows) -> None:
    with rows.database.transaction() as session:
        older = rows.delivery(session, B, state=DeliveryState.UNDELIVERABLE, dead_at=NOW).id
        newer = rows.delivery(
            session, C, state=DeliveryState.UNDELIVERABLE, dead_at=NOW + timedelta(hours=1)
        ).id
        pending = rows.delivery(session, B, sender=OTHER_SENDER).id
    with rows.database.transaction() as session:
        dead = delivery_store.listing(session, dead=True, agency=None, limit=10)
        assert [d.id for _, d in dead] == [newer, older]
        everything = delivery_store.listing(session, dead=False, agency=None, limit=10)
        assert [d.id for _, d in everything] == [pending, newer, older]
        to_c = delivery_store.listing(session, dead=False, agency=C, limit=10)
        assert [d.id for _, d in to_c] == [newer]
        from_other = delivery_store.listing(session, dead=False, agency=OTHER_SENDER, limit=10)
        assert [d.id for _, d in from_other] == [pending]
        document, delivery = delivery_store.lock_by_id(session, pending)
        assert (document.sender_code, delivery.id) == (OTHER_SENDER, pending)
    with pytest.raises(ClientError) as caught, rows.database.transaction() as session:
        delivery_store.lock_by_id(session, 999_999)
    assert caught.value.code == "Client.DeliveryNotFound"
