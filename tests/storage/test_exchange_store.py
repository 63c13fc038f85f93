"""Queries of the document exchange (esb.storage.exchange_store) on both engines.

Rows are written directly, so each query is checked on its own: mailbox order and filters,
the lookups statuses and traces rely on, claims (``SKIP LOCKED`` on PostgreSQL) and the
queries of the housekeeping steps.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from esb.domain.agencies import AgencyRecord
from esb.domain.exchange import DeliveryState, DocumentState, TraceKind
from esb.storage import exchange_store as store
from esb.storage.database import Database
from esb.storage.tables import Delivery, Document, UploadSpaceRow
from esb.wiring import Runtime

SENDER, OTHER_SENDER = "000.00.00.G22", "000.00.00.H30"
B, C, D = "000.00.01.H53", "000.00.32.H53", "000.05.32.H53"
NOW = datetime(2026, 11, 21, 2, 30, tzinfo=UTC)


class Rows:
    """Writes documents with deliveries as the exchange would, without the exchange."""

    def __init__(self, runtime: Runtime) -> None:
        self.database: Database = runtime.database
        self.applications: dict[str, int] = {}
        for code in (SENDER, OTHER_SENDER):
            runtime.registration.add_agency(AgencyRecord(code, f"Cơ quan {code}"))
            self.applications[code] = runtime.registration.register_application(code, "QLVB").id

    def document(
        self,
        session: Session,
        deliveries: dict[str, DeliveryState],
        *,
        sender: str = SENDER,
        document_id: str | None = None,
        message_type: str = "edoc",
        priority: int = 0,
        due_date: date | None = None,
        accepted_at: datetime = NOW,
        state: DocumentState = DocumentState.ROUTED,
        retain_until: datetime | None = None,
        purged: bool = False,
    ) -> Document:
        document = Document(
            hub_id=str(uuid.uuid4()),
            message_type=message_type,
            sender_code=sender,
            sender_application_id=self.applications[sender],
            document_id=document_id,
            subject="Báo cáo",
            priority=priority,
            due_date=due_date.isoformat() if due_date else None,
            size=10,
            sha256="a" * 64,
            delivered_size=12,
            delivered_sha256="b" * 64,
            content_key=None if purged else uuid.uuid4().hex,
            state=state.value,
            accepted_at=accepted_at,
            purged_at=NOW if purged else None,
            retain_until=retain_until or accepted_at + timedelta(days=30),
        )
        session.add(document)
        session.flush()
        session.add_all(
            Delivery(
                document_id=document.id,
                recipient_code=code,
                message_type=message_type,
                priority=priority,
                state=delivery_state.value,
                delivered_sha256="b" * 64,
            )
            for code, delivery_state in deliveries.items()
        )
        session.flush()
        return document


@pytest.fixture
def rows(runtime: Runtime) -> Rows:
    return Rows(runtime)


PENDING, QUEUED, DONE = DeliveryState.PENDING, DeliveryState.QUEUED, DeliveryState.DONE


def test_mailbox_order_filters_and_lookups(rows: Rows) -> None:
    with rows.database.transaction() as session:
        r = rows.document
        later = NOW + timedelta(minutes=5)
        normal_new = r(session, {B: PENDING}, accepted_at=later, document_id="doc-1")
        normal_old = r(session, {B: PENDING, C: PENDING}, document_id="doc-2")
        urgent_no_due = r(session, {B: PENDING}, priority=3, accepted_at=later)
        urgent_due_late = r(session, {B: PENDING}, priority=3, due_date=date(2026, 12, 31))
        urgent_due_soon = r(session, {B: PENDING}, priority=3, due_date=date(2026, 11, 30), accepted_at=later)
        timed = r(session, {B: PENDING}, priority=4, accepted_at=later)
        r(session, {B: QUEUED}, priority=4)  # not yet in the mailbox
        r(session, {B: DONE}, priority=4)  # confirmed
        r(session, {C: PENDING}, priority=4)  # someone else's
        status = r(session, {B: PENDING}, message_type="status", priority=4)
        expected = [timed, urgent_due_soon, urgent_due_late, urgent_no_due, normal_old, normal_new]

        mailbox = store.mailbox(session, B, "edoc", limit=500)
        assert [doc.hub_id for doc, _ in mailbox] == [doc.hub_id for doc in expected]
        assert all(delivery.recipient_code == B for _, delivery in mailbox)
        assert [doc.hub_id for doc, _ in store.mailbox(session, B, "edoc", limit=2)] == [
            timed.hub_id,
            urgent_due_soon.hub_id,
        ]
        assert [doc.hub_id for doc, _ in store.mailbox(session, B, "status", limit=500)] == [status.hub_id]
        assert store.mailbox(session, D, "edoc", limit=500) == []

        # Lookups: the first edoc a sender sent with a DocumentId, never a status nor another sender's.
        first = r(session, {B: PENDING}, document_id="shared-id")
        r(session, {C: PENDING}, document_id="shared-id")
        r(session, {B: PENDING}, document_id="shared-id", message_type="status")
        others = r(session, {B: PENDING}, document_id="shared-id", sender=OTHER_SENDER)
        found = store.find_sent_document(session, SENDER, "shared-id")
        assert found is not None
        assert found.hub_id == first.hub_id
        found = store.find_sent_document(session, OTHER_SENDER, "shared-id")
        assert found is not None
        assert found.hub_id == others.hub_id
        assert store.find_sent_document(session, SENDER, "no-such-id") is None

        visible = store.find_visible_by_document_id(session, "doc-2", C)
        assert visible is not None
        assert visible.hub_id == normal_old.hub_id
        visible = store.find_visible_by_document_id(session, "doc-2", SENDER)
        assert visible is not None
        assert visible.hub_id == normal_old.hub_id
        assert store.find_visible_by_document_id(session, "doc-2", D) is None
        assert store.find_visible_by_document_id(session, "doc-1", C) is None

        delivery = store.delivery_for(session, normal_old, C)
        assert delivery is not None
        assert delivery.recipient_code == C
        assert store.delivery_for(session, normal_old, D) is None
        locked_document, locked_delivery = store.lock_delivery(session, normal_old.hub_id, B)
        assert (locked_document.hub_id, locked_delivery.recipient_code) == (normal_old.hub_id, B)
        for hub_id, recipient in ((normal_old.hub_id, D), (normal_old.hub_id, SENDER), ("nope", B)):
            with pytest.raises(store.DocumentNotFound) as caught:
                store.lock_delivery(session, hub_id, recipient)
            assert caught.value.code == "Client.DocumentNotFound"

        found_by_hub_id = store.find_document(session, timed.hub_id)
        assert found_by_hub_id is not None
        assert found_by_hub_id.id == timed.id
        assert store.find_document(session, "nope") is None

        # Per-document counter of deliveries not done.
        assert store.open_deliveries(session, normal_old) == 2
        for delivery in normal_old.deliveries:
            delivery.state = DONE.value
        session.flush()
        assert store.open_deliveries(session, normal_old) == 0

        counts = store.count_by_state(session)
        assert counts == {DocumentState.ROUTED.value: 14}
        recent_for_d = store.recent_documents(session, agency=D, limit=10)
        assert recent_for_d == []
        recent_for_c = store.recent_documents(session, agency=C, limit=10)
        assert {doc.hub_id for doc in recent_for_c} >= {normal_old.hub_id}
        assert all(
            doc.sender_code == C or store.delivery_for(session, doc, C) is not None for doc in recent_for_c
        )
        assert len(store.recent_documents(session, agency=None, limit=3)) == 3


def test_claims_routing_and_housekeeping_queries(rows: Rows) -> None:
    with rows.database.transaction() as session:
        r = rows.document
        accepted_low = r(session, {B: QUEUED}, state=DocumentState.ACCEPTED)
        accepted_high = r(session, {B: QUEUED, C: QUEUED, D: DONE}, state=DocumentState.ACCEPTED, priority=4)
        r(session, {B: PENDING})  # routed already
        ids = (accepted_low.id, accepted_high.id)

    with rows.database.transaction() as session:
        claimed = store.claim_documents(session, state=DocumentState.ACCEPTED, limit=10)
        assert [doc.id for doc in claimed] == [ids[1], ids[0]]  # most urgent first
        assert [d.id for d in store.claim_documents(session, state=DocumentState.ACCEPTED, limit=1)] == [
            ids[1]
        ]
        only = store.claim_documents(
            session, state=DocumentState.ACCEPTED, limit=10, hub_id=accepted_low.hub_id
        )
        assert [doc.id for doc in only] == [ids[0]]

        assert store.route_deliveries(session, claimed[0], NOW) == [B, C]  # D (done) is left alone
        assert store.route_deliveries(session, claimed[0], NOW) == []  # nothing queued any more
        session.expire_all()
        states = {d.recipient_code: (d.state, d.available_at) for d in claimed[0].deliveries}
        assert states == {B: ("pending", NOW), C: ("pending", NOW), D: ("done", None)}

    # Expiry: accepted or routed documents whose retention ended.
    with rows.database.transaction() as session:
        r = rows.document
        past = NOW - timedelta(seconds=1)
        due_routed = r(session, {B: PENDING}, retain_until=past)
        due_accepted = r(session, {B: QUEUED}, state=DocumentState.ACCEPTED, retain_until=past)
        r(session, {B: PENDING}, retain_until=NOW)  # ends now: not yet
        r(session, {B: DONE}, state=DocumentState.COMPLETED, retain_until=past, purged=True)
        completed = r(session, {B: DONE}, state=DocumentState.COMPLETED)
        expired = r(session, {B: DeliveryState.EXPIRED}, state=DocumentState.EXPIRED)
        r(session, {B: DONE}, state=DocumentState.COMPLETED, purged=True)

        assert {d.hub_id for d in store.due_for_expiry(session, NOW, 10)} == {
            due_routed.hub_id,
            due_accepted.hub_id,
        }
        assert len(store.due_for_expiry(session, NOW, 1)) == 1
        assert [d.hub_id for d in store.awaiting_purge(session, 10)] == [completed.hub_id, expired.hub_id]

        # Upload spaces: open or uploaded ones past their lifetime.
        for space_id, state, expires_at in (
            ("open1", "open", past),
            ("uploaded1", "uploaded", past),
            ("used1", "used", past),
            ("expired1", "expired", past),
            ("fresh1", "open", NOW + timedelta(minutes=1)),
        ):
            session.add(
                UploadSpaceRow(
                    space_id=space_id,
                    agency_code=SENDER,
                    application_id=rows.applications[SENDER],
                    recipients=B,
                    subject="x",
                    priority=0,
                    data_type="edoc",
                    protocol="edXML",
                    max_bytes=1,
                    state=state,
                    created_at=past,
                    expires_at=expires_at,
                )
            )
        session.flush()
        assert sorted(s.space_id for s in store.expired_spaces(session, NOW, 10)) == ["open1", "uploaded1"]
        found = store.find_space(session, "open1", lock=True)
        assert found is not None
        assert found.state == "open"
        assert store.find_space(session, "nope") is None

        # The trace: queued in the transaction, chained and written at its commit.
        store.add_event(session, completed, TraceKind.ACCEPTED, at=NOW, actor="a", sha256="a" * 64)
        store.add_event(
            session, completed, TraceKind.ROUTED, at=NOW, actor="hub:x", recipient=B, detail="é" * 600
        )
        session.flush()
        assert store.events_of(session, completed) == []

    # Oldest first, details cut to the column's size, each linked to the one before.
    with rows.database.transaction() as session:
        events = store.events_of(session, completed)
        assert [e.kind for e in events] == [TraceKind.ACCEPTED, TraceKind.ROUTED]
        assert (events[1].recipient, events[1].detail) == (B, "é" * 512)
        assert events[1].seq == events[0].seq + 1
        assert len({events[0].hash, events[1].hash}) == 2


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_claims_skip_rows_another_transaction_holds(rows: Rows) -> None:
    with rows.database.transaction() as session:
        first = rows.document(session, {B: QUEUED}, state=DocumentState.ACCEPTED, priority=4)
        second = rows.document(session, {B: QUEUED}, state=DocumentState.ACCEPTED)
        due = rows.document(session, {B: PENDING}, retain_until=NOW - timedelta(days=1))

    with rows.database.transaction() as worker_a:
        held = store.claim_documents(worker_a, state=DocumentState.ACCEPTED, limit=1)
        assert [d.hub_id for d in held] == [first.hub_id]
        held_expiry = store.due_for_expiry(worker_a, NOW, 10)
        assert [d.hub_id for d in held_expiry] == [due.hub_id]
        with rows.database.transaction() as worker_b:  # another node, at the same moment
            taken = store.claim_documents(worker_b, state=DocumentState.ACCEPTED, limit=10)
            assert [d.hub_id for d in taken] == [second.hub_id]
            assert (
                store.claim_documents(worker_b, state=DocumentState.ACCEPTED, limit=10, hub_id=first.hub_id)
                == []
            )
            assert store.due_for_expiry(worker_b, NOW, 10) == []
        worker_a.rollback()  # worker A dies: its rows are free again

    with rows.database.transaction() as worker_b:
        again = store.claim_documents(worker_b, state=DocumentState.ACCEPTED, limit=10, hub_id=first.hub_id)
        assert [d.hub_id for d in again] == [first.hub_id]
