"""The delivery worker and routing on several nodes (esb.pipeline.worker, Exchange.route).

"Nodes" are Exchange instances on the same database and content store with their own
``node_name`` and work directory, as ``esb worker`` processes on several machines would be.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import delete, select

from esb.domain.exchange import DeliveryState, DocumentState, MessageType, Outcome, TraceKind
from esb.pipeline.exchange import Exchange
from esb.pipeline.worker import DeliveryWorker, WorkReport
from esb.storage import exchange_store
from esb.storage.tables import Document, TraceEventRow

if TYPE_CHECKING:
    from conftest import Hub

SENDER, B, C = "000.00.00.G22", "000.00.01.H53", "000.00.00.H30"
WAIT = 30  # seconds: a safety net for thread hand-offs, never an assertion on timing


def accept_without_routing(
    hub: Hub, monkeypatch: pytest.MonkeyPatch, count: int, first: int = 300
) -> list[str]:
    """Documents whose deliveries wait in ``queued`` for the worker's route step.

    Acceptance routes local recipients itself; deliveries to other zones (bridges) are what
    the route step is for.  Here accepted documents are put back to that state in the rows.
    """
    acceptor = hub.node("node-acceptor")
    hub_ids = [
        acceptor.send_document(
            hub.caller(SENDER), package=hub.edoc(SENDER, [B, C], number=str(n))
        ).hub_document_id
        for n in range(first, first + count)
    ]
    with hub.runtime.database.transaction() as session:
        for document in session.scalars(select(Document).where(Document.hub_id.in_(hub_ids))):
            document.state, document.routed_at = DocumentState.ACCEPTED.value, None
            for delivery in document.deliveries:
                delivery.state, delivery.available_at = DeliveryState.QUEUED.value, None
            session.execute(
                delete(TraceEventRow).where(
                    TraceEventRow.document_id == document.id, TraceEventRow.kind == TraceKind.ROUTED.value
                )
            )
    return hub_ids


def routed_events(hub: Hub) -> Counter[tuple[str, str | None]]:
    """(hub id, recipient) of every ``routed`` event."""
    counts: Counter[tuple[str, str | None]] = Counter()
    with hub.runtime.database.transaction() as session:
        for document in session.query(Document).all():
            for event in exchange_store.events_of(session, document):
                if event.kind is TraceKind.ROUTED:
                    counts[(document.hub_id, event.recipient)] += 1
    return counts


def states(hub: Hub) -> Counter[str]:
    with hub.runtime.database.transaction() as session:
        return Counter(exchange_store.count_by_state(session))


def test_two_nodes_routing_at_once_route_every_document_exactly_once(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub_ids = accept_without_routing(hub, monkeypatch, 12)
    nodes = [hub.node("node-a"), hub.node("node-b")]
    start = threading.Barrier(len(nodes), timeout=WAIT)
    routed: dict[str, int] = {}
    errors: list[BaseException] = []

    def work(node: Exchange) -> None:
        try:
            start.wait()
            total = 0
            while count := node.route(limit=2):
                total += count
            routed[node.policy.node_name] = total
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(node,)) for node in nodes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)

    assert errors == []
    assert sum(routed.values()) == len(hub_ids)
    assert states(hub) == Counter({DocumentState.ROUTED.value: len(hub_ids)})
    assert routed_events(hub) == Counter({(hub_id, r): 1 for hub_id in hub_ids for r in (B, C)})
    assert {item.hub_document_id for item in hub.exchange.pending(hub.caller(C), MessageType.EDOC)} == set(
        hub_ids
    )
    assert all(node.route() == 0 for node in nodes)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_node_that_dies_while_routing_leaves_the_document_to_another(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    (hub_id,) = accept_without_routing(hub, monkeypatch, 1)
    claimed, crash = threading.Event(), threading.Event()
    real = exchange_store.route_deliveries

    def route_deliveries(*args: object, **kwargs: object) -> list[str]:
        if threading.current_thread().name == "node-a":
            claimed.set()  # node A holds the document's row lock now
            crash.wait(WAIT)
            raise RuntimeError("node A was killed")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(exchange_store, "route_deliveries", route_deliveries)
    node_a, node_b = hub.node("node-a"), hub.node("node-b")
    failures: list[BaseException] = []

    def run_a() -> None:
        try:
            node_a.route()
        except RuntimeError as exc:
            failures.append(exc)

    thread = threading.Thread(target=run_a, name="node-a")
    thread.start()
    try:
        assert claimed.wait(WAIT)
        assert node_b.route() == 0  # skipped, not waited for: node A holds it
        assert DeliveryWorker(node_b).run_once() == WorkReport()
    finally:
        crash.set()
        thread.join(WAIT)
    assert [str(f) for f in failures] == ["node A was killed"]
    assert states(hub) == Counter({DocumentState.ACCEPTED.value: 1})  # A's transaction rolled back

    assert DeliveryWorker(node_b).run_once().routed == 1

    assert routed_events(hub) == Counter({(hub_id, B): 1, (hub_id, C): 1})
    _, events = hub.exchange.trace(None, hub_id=hub_id)
    assert {e.actor for e in events if e.kind is TraceKind.ROUTED} == {"hub:node-b"}


def test_a_worker_pass_routes_purges_expires_and_closes_spaces(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    (unrouted,) = accept_without_routing(hub, monkeypatch, 1)
    # A confirmation whose purge never ran (the node died right after the confirmation committed).
    confirmed = hub.exchange.send_document(hub.caller(SENDER), package=hub.edoc(SENDER, [B], number="310"))
    monkeypatch.setattr(hub.exchange, "purge", lambda *args, **kwargs: 0)
    package = hub.exchange.get_document(hub.caller(B), confirmed.hub_document_id).package
    assert package is not None
    digest = hashlib.sha256(package).hexdigest()
    assert (
        hub.exchange.confirm(hub.caller(B), confirmed.hub_document_id, digest, Outcome.DONE)
        is DeliveryState.DONE
    )
    monkeypatch.undo()
    assert len(hub.blobs()) == 2
    short = hub.exchange.send_document(
        hub.caller(SENDER), package=hub.edoc(SENDER, [C], number="311"), retention_days=1
    )
    space = hub.exchange.request_space(hub.caller(SENDER), [B], "x", 0, "edoc", "edXML")
    worker = DeliveryWorker(hub.node("node-w"))

    assert worker.run_once() == WorkReport(routed=1, purged=1, expired=0, spaces_expired=0)
    assert len(hub.blobs()) == 2  # the unrouted one and the one with a short retention

    hub.clock.advance(days=1, seconds=1)
    assert worker.run_once() == WorkReport(routed=0, purged=0, expired=1, spaces_expired=1)  # expire purges
    assert len(hub.blobs()) == 1
    _, events = hub.exchange.trace(None, hub_id=short.hub_document_id)
    assert [e.kind for e in events][-2:] == [TraceKind.EXPIRED, TraceKind.PURGED]
    _, events = hub.exchange.trace(None, hub_id=confirmed.hub_document_id)
    assert [e.kind for e in events][-2:] == [TraceKind.CONFIRMED, TraceKind.PURGED]
    assert events[-1].actor == "hub:node-w"
    assert hub.exchange.expire_spaces() == 0
    assert worker.run_once() == WorkReport()
    assert unrouted in {i.hub_document_id for i in hub.exchange.pending(hub.caller(B), MessageType.EDOC)}
    with hub.runtime.database.transaction() as session:
        row = exchange_store.find_space(session, space.space_id)
        assert row is not None
        assert row.state == "expired"

    # One step failing does not stop the others.
    accept_without_routing(hub, monkeypatch, 1, first=320)
    hub.exchange.request_space(hub.caller(SENDER), [B], "x", 0, "edoc", "edXML")
    hub.clock.advance(hours=2)
    node = hub.node("node-w")

    def broken(*args: object, **kwargs: object) -> int:
        raise RuntimeError("disk full")

    monkeypatch.setattr(node, "route", broken)
    monkeypatch.setattr(node, "purge", broken)
    assert DeliveryWorker(node).run_once() == WorkReport(routed=0, purged=0, expired=0, spaces_expired=1)


def test_a_purge_failure_does_not_fail_a_recorded_confirmation(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    receipt = hub.exchange.send_document(hub.caller(SENDER), package=hub.edoc(SENDER, [B], number="312"))
    package = hub.exchange.get_document(hub.caller(B), receipt.hub_document_id).package
    assert package is not None

    def unavailable(key: str) -> None:
        raise OSError(116, "Stale file handle")  # the shared content directory hiccups

    monkeypatch.setattr(hub.content, "delete", unavailable)
    try:
        state = hub.exchange.confirm(
            hub.caller(B), receipt.hub_document_id, hashlib.sha256(package).hexdigest(), Outcome.DONE
        )
    finally:
        monkeypatch.undo()

    assert state is DeliveryState.DONE
