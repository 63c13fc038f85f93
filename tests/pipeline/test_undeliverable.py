"""Bridge hand-overs, retries, offline limits, dead letters and re-drive (esb.pipeline.undeliverable).

Everything runs on the ``hub`` fixture's fake clock (tests/pipeline/conftest.py), on both
engines.  The retry policy of these tests: 10 s, doubling, at most 4 attempts, and a
"random" number of 0.5, so the delays are exactly 10 s, 20 s, 40 s.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
from bridge_doubles import FlakyAdapter, add_route, notifications

from esb.domain.access import AgencyState
from esb.domain.delivery_policy import OfflinePolicy, RetryPolicy
from esb.domain.edxml_enums import Priority, StatusCode
from esb.domain.exchange import DeliveryState, DocumentState, MessageType, Outcome
from esb.domain.presence import PresencePolicy
from esb.errors import EsbError
from esb.pipeline.presence import PresenceTracker
from esb.pipeline.routing import Adapters, BridgeAdapter
from esb.pipeline.undeliverable import DeliveryView, Undeliverable
from esb.storage import exchange_store

if TYPE_CHECKING:
    from conftest import Hub

SENDER = "000.00.00.G22"  # Văn phòng Chính phủ
B = "000.00.01.H53"  # Văn phòng UBND tỉnh Tây Ninh
C = "000.00.00.H30"  # UBND tỉnh Hậu Giang
ELSEWHERE = "000.00.00.H31"  # another province, behind adapter peer-h31
RETRY = RetryPolicy(initial=timedelta(seconds=10), factor=2.0, max_attempts=4, jitter=0.2)


def refusal(call: Callable[[], object]) -> EsbError:
    with pytest.raises(EsbError) as caught:
        call()
    return caught.value


def make(hub: Hub, *adapters: BridgeAdapter, owner: str = "node-a") -> Undeliverable:
    return Undeliverable(
        hub.exchange,
        router=hub.exchange.router,
        adapters=Adapters(adapters),
        retry=RETRY,
        offline=OfflinePolicy(),
        random=lambda: 0.5,
        owner=owner,
    )


def bridged(hub: Hub, number: str = "301", *, recipients: tuple[str, ...] = (ELSEWHERE,)) -> str:
    """Route H31 to adapter peer-h31 and send an edoc there; its hub id."""
    add_route(hub.runtime.database, hub.exchange.router, "000.00.00.H31/*", adapter="peer-h31", zone="h31")
    package = hub.edoc(SENDER, list(recipients), number=number)
    return hub.exchange.send_document(hub.caller(SENDER), package=package).hub_document_id


def the_delivery(undeliverable: Undeliverable, hub_id: str, recipient: str) -> DeliveryView:
    found = [
        view
        for view in undeliverable.deliveries(limit=1000)
        if (view.hub_document_id, view.recipient) == (hub_id, recipient)
    ]
    assert len(found) == 1
    return found[0]


def trace_kinds(hub: Hub, hub_id: str) -> list[str]:
    _, events = hub.exchange.trace(None, hub_id=hub_id)
    return [event.kind.value for event in events]


def trace_details(hub: Hub, hub_id: str, kind: str) -> list[str | None]:
    _, events = hub.exchange.trace(None, hub_id=hub_id)
    return [event.detail for event in events if event.kind.value == kind]


def document_state(hub: Hub, hub_id: str) -> tuple[str, bool]:
    with hub.runtime.database.transaction() as session:
        document = exchange_store.find_document(session, hub_id)
        assert document is not None
        return document.state, document.content_key is None


# -- bridge hand-overs ---------------------------------------------------------------------------------


def test_a_flaky_bridge_is_retried_by_the_policy_until_it_takes_the_delivery(hub: Hub) -> None:
    adapter = FlakyAdapter("peer-h31", failures=2)
    undeliverable = make(hub, adapter)
    hub_id = bridged(hub)

    assert undeliverable.bridge(50) == 1  # attempt 1 fails
    view = the_delivery(undeliverable, hub_id, ELSEWHERE)
    assert (view.state, view.attempts, view.next_attempt_at) == (
        DeliveryState.QUEUED,
        1,
        hub.clock.now + timedelta(seconds=10),
    )
    assert view.last_failure == "ConnectionError: peer hub of h31 unreachable"
    assert undeliverable.bridge(50) == 0  # not due yet
    hub.clock.advance(seconds=9)
    assert undeliverable.bridge(50) == 0
    hub.clock.advance(seconds=1)
    assert undeliverable.bridge(50) == 1  # attempt 2 fails: next in 20 s
    assert the_delivery(undeliverable, hub_id, ELSEWHERE).next_attempt_at == hub.clock.now + timedelta(
        seconds=20
    )
    hub.clock.advance(seconds=19)
    assert undeliverable.bridge(50) == 0
    hub.clock.advance(seconds=1)
    assert undeliverable.bridge(50) == 1  # attempt 3 succeeds

    assert adapter.calls == 3
    assert len(adapter.received) == 1
    handover = adapter.received[0].handover
    assert (handover.hub_document_id, handover.recipient, handover.sender, handover.zone) == (
        hub_id,
        ELSEWHERE,
        SENDER,
        "h31",
    )
    assert (handover.hub_id, handover.attempt, handover.message_type) == (
        "000.00.00.H53",
        3,
        MessageType.EDOC,
    )
    assert hashlib.sha256(adapter.received[0].data).hexdigest() == handover.sha256
    view = the_delivery(undeliverable, hub_id, ELSEWHERE)
    assert (view.state, view.attempts, view.next_attempt_at) == (DeliveryState.DONE, 3, None)
    assert trace_kinds(hub, hub_id) == [
        "accepted",
        "routed",
        "handover-failed",
        "handover-failed",
        "handed-over",
        "purged",
    ]
    assert trace_details(hub, hub_id, "handed-over") == ["handed to adapter peer-h31 (zone h31), attempt 3"]
    # Our part is done: the only delivery is done, the document completed and its content purged.
    assert document_state(hub, hub_id) == (DocumentState.COMPLETED.value, True)
    assert undeliverable.bridge(50) == 0
    assert notifications(hub.runtime.database) == []


def test_a_bridge_that_always_fails_makes_the_delivery_undeliverable(hub: Hub) -> None:
    adapter = FlakyAdapter("peer-h31", failures=None)
    undeliverable = make(hub, adapter)
    hub_id = bridged(hub, recipients=(B, ELSEWHERE))

    for wait in (0, 10, 20, 40):  # attempts 1-4, each when due
        hub.clock.advance(seconds=wait)
        assert undeliverable.bridge(50) == 1
    assert adapter.calls == RETRY.max_attempts
    hub.clock.advance(hours=1)
    assert undeliverable.bridge(50) == 0  # exhausted: nothing more is tried

    view = the_delivery(undeliverable, hub_id, ELSEWHERE)
    reason = (
        "adapter peer-h31 failed 4 times (retry policy exhausted); "
        "last error: ConnectionError: peer hub of h31 unreachable"
    )
    assert (view.state, view.attempts, view.dead_reason) == (DeliveryState.UNDELIVERABLE, 4, reason)
    assert view.dead_at == hub.clock.now - timedelta(hours=1)
    assert trace_kinds(hub, hub_id)[-5:] == ["handover-failed"] * 4 + ["undeliverable"]
    assert trace_details(hub, hub_id, "undeliverable") == [reason]
    assert str(trace_details(hub, hub_id, "handover-failed")[0]).startswith(
        "attempt 1 of 4 to adapter peer-h31 failed: ConnectionError: peer hub of h31 unreachable; next at"
    )
    # The sender is told, as a notification naming the destination and why.
    assert notifications(hub.runtime.database, agency=SENDER) == [
        (SENDER, "undeliverable", hub_id, ELSEWHERE, reason)
    ]
    assert [(v.hub_document_id, v.recipient) for v in undeliverable.dead()] == [(hub_id, ELSEWHERE)]
    # The local recipient is not affected; content stays (an operator may re-drive).
    assert hub.exchange.pending(hub.caller(B), MessageType.EDOC)[0].hub_document_id == hub_id
    assert document_state(hub, hub_id) == (DocumentState.ROUTED.value, False)


def test_a_route_to_an_adapter_this_hub_does_not_have_retries_then_dead_letters(hub: Hub) -> None:
    undeliverable = make(hub)  # no adapters at all
    hub_id = bridged(hub)
    for wait in (0, 10, 20, 40):
        hub.clock.advance(seconds=wait)
        assert undeliverable.bridge(50) == 1
    view = the_delivery(undeliverable, hub_id, ELSEWHERE)
    assert view.state is DeliveryState.UNDELIVERABLE
    assert str(view.dead_reason).endswith("last error: adapter peer-h31 is not configured on this hub")


def test_a_killed_nodes_claim_is_taken_over_after_its_lease_and_handed_over_once(hub: Hub) -> None:
    adapter = FlakyAdapter("peer-h31")
    node_a = make(hub, adapter, owner="node-a")
    node_b = make(hub, adapter, owner="node-b")
    hub_id = bridged(hub)

    claims = node_a.claim_bridge(50)  # node A is killed right after its claim committed
    assert [(c.hub_document_id, c.attempt) for c in claims] == [(hub_id, 1)]
    assert node_b.bridge(50) == 0  # A's lease holds
    hub.clock.advance(minutes=4, seconds=59)
    assert node_b.bridge(50) == 0
    hub.clock.advance(seconds=1)  # the lease (5 minutes) lapsed
    assert node_b.bridge(50) == 1
    assert [r.handover.hub_document_id for r in adapter.received] == [hub_id]
    assert node_a.bridge(50) == 0
    assert node_b.bridge(50) == 0

    assert trace_kinds(hub, hub_id).count("handed-over") == 1
    view = the_delivery(node_b, hub_id, ELSEWHERE)
    assert (view.state, view.attempts) == (DeliveryState.DONE, 1)


def test_a_slow_node_whose_lease_lapsed_records_nothing(hub: Hub) -> None:
    adapter = FlakyAdapter("peer-h31", failures=None)
    node_a = make(hub, adapter, owner="node-a")
    node_b = make(hub, FlakyAdapter("peer-h31"), owner="node-b")
    hub_id = bridged(hub)
    [slow] = node_a.claim_bridge(50)
    hub.clock.advance(minutes=5)
    [taken] = node_b.claim_bridge(50)  # node B holds the lease now

    assert node_a.hand_over(slow) is False  # its failure is not recorded: not its lease any more
    view = the_delivery(node_a, hub_id, ELSEWHERE)
    assert (view.state, view.attempts, view.last_failure) == (DeliveryState.QUEUED, 0, None)
    assert node_b.hand_over(taken) is True
    assert trace_kinds(hub, hub_id) == ["accepted", "routed", "handed-over", "purged"]


# -- offline destinations ----------------------------------------------------------------------------------


def presence(hub: Hub) -> PresenceTracker:
    return PresenceTracker(hub.runtime.database, PresencePolicy(), node_name="node-a", clock=hub.clock)


def test_a_destination_offline_longer_than_24_hours_makes_an_ordinary_document_undeliverable(
    hub: Hub,
) -> None:
    tracker = presence(hub)
    undeliverable = make(hub)
    tracker.seen(hub.caller(B), "call")  # B is online ...
    hub.clock.advance(minutes=10)
    assert tracker.sweep(50) == 1  # ... and offline since its last call, 10 minutes ago
    last_seen = hub.clock.now - timedelta(minutes=10)
    hub_id = hub.exchange.send_document(
        hub.caller(SENDER), package=hub.edoc(SENDER, [B], number="311")
    ).hub_document_id

    hub.clock.advance(hours=24)
    assert undeliverable.offline(50) == 0  # exactly the limit: may still wait
    hub.clock.advance(minutes=1)
    assert undeliverable.offline(50) == 1
    reason = (
        f"{B} has been offline since {last_seen:%Y-%m-%d %H:%M} UTC "
        f"(more than 24 h allowed for thường documents of {SENDER})"
    )
    view = the_delivery(undeliverable, hub_id, B)
    assert (view.state, view.dead_reason, view.dead_at) == (
        DeliveryState.UNDELIVERABLE,
        reason,
        hub.clock.now,
    )
    assert notifications(hub.runtime.database, agency=SENDER) == [
        (SENDER, "undeliverable", hub_id, B, reason)
    ]
    assert trace_kinds(hub, hub_id)[-1] == "undeliverable"

    # Gone from the mailbox; fetching or confirming says it was reported undeliverable.
    assert hub.exchange.pending(hub.caller(B), MessageType.EDOC) == []
    for call in (
        lambda: hub.exchange.get_document(hub.caller(B), hub_id),
        lambda: hub.exchange.confirm(hub.caller(B), hub_id, "0" * 64, Outcome.DONE),
    ):
        error = refusal(call)
        assert error.code == "Client.NotPending"
        assert "was reported undeliverable to you" in error.message
        assert reason in error.message
    hub.clock.advance(hours=1)
    assert undeliverable.offline(50) == 0  # reported once


def test_urgent_documents_are_undeliverable_after_an_hour(hub: Hub) -> None:
    undeliverable = make(hub)
    urgent = hub.exchange.send_document(
        hub.caller(SENDER), package=hub.edoc(SENDER, [C], number="312", priority=Priority.HOA_TOC)
    ).hub_document_id
    ordinary = hub.exchange.send_document(
        hub.caller(SENDER), package=hub.edoc(SENDER, [C], number="313")
    ).hub_document_id
    hub.clock.advance(minutes=59)
    assert undeliverable.offline(50) == 0
    hub.clock.advance(minutes=2)
    assert undeliverable.offline(50) == 1  # C never connected: offline since the document arrived
    assert the_delivery(undeliverable, urgent, C).dead_reason == (
        f"{C} has not connected since 2026-11-21 02:30 UTC (more than 1 h allowed for hỏa tốc documents "
        f"of {SENDER})"
    )
    assert the_delivery(undeliverable, ordinary, C).state is DeliveryState.PENDING


def test_an_online_destination_is_never_reported(hub: Hub) -> None:
    tracker = presence(hub)
    undeliverable = make(hub)
    hub_id = hub.exchange.send_document(
        hub.caller(SENDER), package=hub.edoc(SENDER, [B], number="314", priority=Priority.HOA_TOC)
    ).hub_document_id
    for _ in range(4):  # two days, B active every twelve hours... and every few minutes between
        for _ in range(12 * 12):
            tracker.seen(hub.caller(B), "heartbeat")
            hub.clock.advance(minutes=5)
            tracker.seen(hub.caller(B), "heartbeat")
        tracker.sweep(50)
        assert undeliverable.offline(50) == 0
    assert the_delivery(undeliverable, hub_id, B).state is DeliveryState.PENDING


def test_a_senders_own_limit_applies_to_its_documents(hub: Hub) -> None:
    undeliverable = make(hub)
    undeliverable.set_offline_limit(SENDER, timedelta(hours=6))
    hub_id = hub.exchange.send_document(
        hub.caller(SENDER), package=hub.edoc(SENDER, [C], number="315")
    ).hub_document_id
    other = hub.exchange.send_document(hub.caller(B), package=hub.edoc(B, [C], number="316")).hub_document_id
    hub.clock.advance(hours=6, minutes=1)
    assert undeliverable.offline(50) == 1
    assert "more than 6 h allowed for thường documents of 000.00.00.G22" in str(
        the_delivery(undeliverable, hub_id, C).dead_reason
    )
    assert the_delivery(undeliverable, other, C).state is DeliveryState.PENDING
    undeliverable.set_offline_limit(SENDER, None)
    assert (
        refusal(lambda: undeliverable.set_offline_limit("000.00.00.H99", None)).code == "Client.NotRegistered"
    )


# -- reports, re-drive, expiry ----------------------------------------------------------------------


def test_reports_are_idempotent_and_end_only_open_deliveries(hub: Hub) -> None:
    undeliverable = make(hub)
    hub_id = hub.exchange.send_document(
        hub.caller(SENDER), package=hub.edoc(SENDER, [B, C], number="321")
    ).hub_document_id
    assert undeliverable.report(hub_id, B, "callback pushes to B failed 8 times") is True
    assert undeliverable.report(hub_id, B, "again") is False
    fetched = hub.exchange.get_document(hub.caller(C), hub_id)
    assert fetched.package is not None
    hub.exchange.confirm(hub.caller(C), hub_id, hashlib.sha256(fetched.package).hexdigest(), Outcome.DONE)
    assert undeliverable.report(hub_id, C, "too late") is False
    assert trace_kinds(hub, hub_id).count("undeliverable") == 1
    assert [n[1:4] for n in notifications(hub.runtime.database, agency=SENDER)] == [
        ("undeliverable", hub_id, B)
    ]
    # C confirmed, B is undeliverable: the content is kept for a re-drive until the retention ends.
    assert document_state(hub, hub_id) == (DocumentState.ROUTED.value, False)
    assert (
        refusal(lambda: undeliverable.report(hub_id, "000.00.00.H99", "x")).code == "Client.DocumentNotFound"
    )


def test_redrive_puts_a_delivery_back_in_the_mailbox_with_a_new_notification(hub: Hub) -> None:
    undeliverable = make(hub)
    hub_id = hub.exchange.send_document(
        hub.caller(SENDER), package=hub.edoc(SENDER, [B], number="322")
    ).hub_document_id
    undeliverable.report(hub_id, B, "offline too long")
    [dead] = undeliverable.dead()
    hub.clock.advance(hours=2)

    redriven = undeliverable.redrive(dead.delivery_id, "ops@tayninh")
    assert (redriven.state, redriven.route, redriven.recipient) == (DeliveryState.PENDING, "local", B)
    assert undeliverable.dead() == []
    view = the_delivery(undeliverable, hub_id, B)
    assert (view.state, view.attempts, view.dead_at, view.dead_reason, view.available_at) == (
        DeliveryState.PENDING,
        0,
        None,
        None,
        hub.clock.now,
    )
    _, events = hub.exchange.trace(None, hub_id=hub_id)
    assert (events[-1].kind.value, events[-1].actor, events[-1].detail) == (
        "redriven",
        "operator:ops@tayninh",
        "re-driven to mailbox on this hub (by the registry); it was undeliverable: offline too long",
    )
    assert [n[:3] for n in notifications(hub.runtime.database, agency=B)] == [
        (B, "document", hub_id),
        (B, "document", hub_id),
    ]
    fetched = hub.exchange.get_document(hub.caller(B), hub_id)
    assert fetched.package is not None
    digest = hashlib.sha256(fetched.package).hexdigest()
    assert hub.exchange.confirm(hub.caller(B), hub_id, digest, Outcome.DONE) is DeliveryState.DONE
    assert document_state(hub, hub_id) == (DocumentState.COMPLETED.value, True)

    error = refusal(lambda: undeliverable.redrive(dead.delivery_id, "ops"))
    assert (error.code, error.message) == (
        "Client.NotUndeliverable",
        f"delivery {dead.delivery_id} ({hub_id} to {B}) is done, not undeliverable: "
        "there is nothing to re-drive",
    )
    assert refusal(lambda: undeliverable.redrive(999_999, "ops")).code == "Client.DeliveryNotFound"


def test_redrive_of_a_bridge_delivery_queues_it_for_its_adapter_again(hub: Hub) -> None:
    adapter = FlakyAdapter("peer-h31", failures=RETRY.max_attempts)
    undeliverable = make(hub, adapter)
    hub_id = bridged(hub)
    for wait in (0, 10, 20, 40):
        hub.clock.advance(seconds=wait)
        undeliverable.bridge(50)
    [dead] = undeliverable.dead()
    redriven = undeliverable.redrive(dead.delivery_id, "ops")
    assert (redriven.state, redriven.route) == (DeliveryState.QUEUED, "peer-h31")
    assert undeliverable.bridge(50) == 1
    assert len(adapter.received) == 1
    assert the_delivery(undeliverable, hub_id, ELSEWHERE).attempts == 1
    assert notifications(hub.runtime.database, agency=ELSEWHERE) == []


def test_redrive_is_refused_without_content_or_route(hub: Hub) -> None:
    undeliverable = make(hub)
    status = hub.status(B, ELSEWHERE, hub.document_id(ELSEWHERE, "9"), StatusCode.ARRIVED)
    unrouted = hub.exchange.send_status(hub.caller(B), package=status).hub_document_id
    [dead] = [v for v in undeliverable.dead() if v.hub_document_id == unrouted]
    error = refusal(lambda: undeliverable.redrive(dead.delivery_id, "ops"))
    assert error.code == "Client.UnknownRecipient"
    assert "no routing rule covers it" in error.message
    # Once a rule exists, the same dead letter goes to its bridge.
    add_route(hub.runtime.database, hub.exchange.router, "*", adapter="vxp")
    assert undeliverable.redrive(dead.delivery_id, "ops").route == "vxp"

    hub_id = hub.exchange.send_document(
        hub.caller(SENDER), package=hub.edoc(SENDER, [C], number="323"), retention_days=1
    ).hub_document_id
    undeliverable.report(hub_id, C, "offline too long")
    hub.registration.set_agency_state(C, AgencyState.LOCKED)
    [locked] = [v for v in undeliverable.dead() if v.hub_document_id == hub_id]
    assert refusal(lambda: undeliverable.redrive(locked.delivery_id, "ops")).code == "Client.RecipientLocked"

    # At the end of the retention the content goes; the delivery stays undeliverable, with its reason.
    hub.clock.advance(days=1, seconds=1)
    assert hub.exchange.expire() == 1
    assert document_state(hub, hub_id) == (DocumentState.EXPIRED.value, True)
    view = the_delivery(undeliverable, hub_id, C)
    assert (view.state, view.dead_reason, view.content_purged) == (
        DeliveryState.UNDELIVERABLE,
        "offline too long",
        True,
    )
    error = refusal(lambda: undeliverable.redrive(locked.delivery_id, "ops"))
    assert error.code == "Client.ContentPurged"
    assert f"ask {SENDER} to send it again" in error.message
