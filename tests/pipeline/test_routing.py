"""Routing at acceptance (esb.pipeline.routing, esb.pipeline.exchange) on both engines.

Local recipients get a pending delivery and a notification; recipients that a routing rule
sends to a bridge adapter get a queued delivery; an unknown edoc recipient is refused, a
status to an unknown destination is accepted and reported back undeliverable at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from bridge_doubles import add_route, notifications
from sqlalchemy import select

from esb.domain.edxml_enums import StatusCode
from esb.domain.exchange import DeliveryState, DocumentState, MessageType, TraceKind
from esb.domain.routing import RouteKind
from esb.errors import EsbError
from esb.pipeline.routing import Router
from esb.storage import exchange_store
from esb.storage.tables import Delivery

if TYPE_CHECKING:
    from conftest import Hub

SENDER = "000.00.00.G22"  # Văn phòng Chính phủ
B = "000.00.01.H53"  # Văn phòng UBND tỉnh Tây Ninh
C = "000.00.00.H30"  # UBND tỉnh Hậu Giang
ELSEWHERE = "000.00.00.H31"  # another province: registered nowhere here
ELSEWHERE_UNIT = "000.00.02.H31"


def refusal(call: object) -> EsbError:
    assert callable(call)
    with pytest.raises(EsbError) as caught:
        call()
    return caught.value


def delivery_rows(hub: Hub, hub_id: str) -> dict[str, Delivery]:
    with hub.runtime.database.transaction() as session:
        document = exchange_store.find_document(session, hub_id)
        assert document is not None
        rows = {d.recipient_code: d for d in document.deliveries}
        for row in rows.values():
            session.expunge(row)
        return rows


def events(hub: Hub, hub_id: str) -> list[tuple[str, str | None, str | None]]:
    _, found = hub.exchange.trace(None, hub_id=hub_id)
    return [(e.kind.value, e.recipient, e.detail) for e in found]


# -- unknown recipients ---------------------------------------------------------------------------------


def test_an_unknown_edoc_recipient_is_refused_and_nothing_is_stored(hub: Hub) -> None:
    before = hub.row_counts()
    package = hub.edoc(SENDER, [B, ELSEWHERE], number="201")
    error = refusal(lambda: hub.exchange.send_document(hub.caller(SENDER), package=package))
    assert (error.code, error.message) == (
        "Client.UnknownRecipient",
        f"recipient {ELSEWHERE} is not a registered agency",
    )
    assert hub.row_counts() == before
    assert hub.blobs() == []
    assert notifications(hub.runtime.database) == []


def test_a_local_rule_does_not_make_an_unregistered_agency_known(hub: Hub) -> None:
    add_route(hub.runtime.database, hub.exchange.router, "000.00.00.H31/*", adapter="local")
    error = refusal(
        lambda: hub.exchange.send_document(
            hub.caller(SENDER), package=hub.edoc(SENDER, [ELSEWHERE], number="202")
        )
    )
    assert error.code == "Client.UnknownRecipient"
    assert "rule 000.00.00.H31/* sends it to this hub's mailboxes" in error.message


def test_upload_spaces_follow_the_routes(hub: Hub) -> None:
    ask = hub.exchange.request_space
    error = refusal(lambda: ask(hub.caller(SENDER), [B, ELSEWHERE], "x", 0, "edoc", "edXML"))
    assert error.code == "Client.UnknownRecipient"
    add_route(hub.runtime.database, hub.exchange.router, "000.00.00.H31/*", adapter="peer-h31")
    assert ask(hub.caller(SENDER), [B, ELSEWHERE], "x", 0, "edoc", "edXML").space_id


# -- local and bridge routes ------------------------------------------------------------------------------


def test_local_recipients_are_pending_and_notified(hub: Hub) -> None:
    receipt = hub.exchange.send_document(hub.caller(SENDER), package=hub.edoc(SENDER, [B, C], number="203"))
    assert [(r.organ_id, r.state) for r in receipt.recipients] == [
        (B, DeliveryState.PENDING),
        (C, DeliveryState.PENDING),
    ]
    hub_id = receipt.hub_document_id
    assert {code: (d.state, d.route) for code, d in delivery_rows(hub, hub_id).items()} == {
        B: ("pending", "local"),
        C: ("pending", "local"),
    }
    assert notifications(hub.runtime.database) == [
        (B, "document", hub_id, B, None),
        (C, "document", hub_id, C, None),
    ]
    # A status back is a "status" notification to the original sender.
    status = hub.status(B, SENDER, hub.document_id(SENDER, "203"), StatusCode.ARRIVED)
    reply = hub.exchange.send_status(hub.caller(B), package=status)
    assert notifications(hub.runtime.database, agency=SENDER) == [
        (SENDER, "status", reply.hub_document_id, SENDER, None)
    ]


def test_a_rule_sends_a_destination_to_its_bridge_queue(hub: Hub) -> None:
    add_route(hub.runtime.database, hub.exchange.router, "000.00.00.H31/*", adapter="peer-h31", zone="h31")
    receipt = hub.exchange.send_document(
        hub.caller(SENDER), package=hub.edoc(SENDER, [B, ELSEWHERE_UNIT], number="204")
    )
    hub_id = receipt.hub_document_id
    assert [(r.organ_id, r.state) for r in receipt.recipients] == [
        (B, DeliveryState.PENDING),
        (ELSEWHERE_UNIT, DeliveryState.QUEUED),
    ]
    rows = delivery_rows(hub, hub_id)
    queued = rows[ELSEWHERE_UNIT]
    assert (queued.state, queued.route, queued.next_attempt_at, queued.attempts) == (
        "queued",
        "peer-h31",
        hub.clock.now,
        0,
    )
    trace = events(hub, hub_id)
    assert [kind for kind, _, _ in trace] == ["accepted", "routed", "routed"]
    assert trace[2][1] == ELSEWHERE_UNIT
    assert str(trace[2][2]).startswith("to adapter peer-h31 (zone h31, by rule 000.00.00.H31/*); TraceHeader")
    assert hub.exchange.receipt(hub_id).recipients[1].state is DeliveryState.QUEUED
    # Only the local recipient is notified; the document is routed (every delivery has its route).
    assert [n[0] for n in notifications(hub.runtime.database)] == [B]
    assert hub.exchange.route() == 0
    with hub.runtime.database.transaction() as session:
        document = exchange_store.find_document(session, hub_id)
        assert document is not None
        assert document.state == DocumentState.ROUTED.value


def test_the_catch_all_never_takes_a_registered_agency_away(hub: Hub) -> None:
    add_route(hub.runtime.database, hub.exchange.router, "*", adapter="vxp", zone="national")
    receipt = hub.exchange.send_document(
        hub.caller(SENDER), package=hub.edoc(SENDER, [B, ELSEWHERE], number="205")
    )
    assert [(r.organ_id, r.state) for r in receipt.recipients] == [
        (B, DeliveryState.PENDING),
        (ELSEWHERE, DeliveryState.QUEUED),
    ]


def test_an_exact_rule_takes_a_registered_agency_to_a_bridge(hub: Hub) -> None:
    add_route(hub.runtime.database, hub.exchange.router, C, adapter="peer-h30", zone="hau-giang")
    receipt = hub.exchange.send_document(hub.caller(SENDER), package=hub.edoc(SENDER, [C], number="206"))
    assert receipt.recipients[0].state is DeliveryState.QUEUED
    assert hub.exchange.pending(hub.caller(C), MessageType.EDOC) == []
    error = refusal(lambda: hub.exchange.get_document(hub.caller(C), receipt.hub_document_id))
    assert error.code == "Client.NotYetRouted"


def test_rules_are_read_again_after_the_cache_time(hub: Hub) -> None:
    ticks = [0.0]
    router = Router(hub.runtime.database, cache_seconds=2.0, monotonic=lambda: ticks[0])
    with hub.runtime.database.transaction() as session:
        assert router.resolve(session, [ELSEWHERE])[ELSEWHERE].kind is RouteKind.UNKNOWN
    add_route(hub.runtime.database, None, "*", adapter="vxp")
    ticks[0] = 1.9
    with hub.runtime.database.transaction() as session:
        assert router.resolve(session, [ELSEWHERE])[ELSEWHERE].kind is RouteKind.UNKNOWN  # cached
    ticks[0] = 2.0
    with hub.runtime.database.transaction() as session:
        resolved = router.resolve(session, [ELSEWHERE, B])
    assert {code: (r.kind, r.adapter) for code, r in resolved.items()} == {
        ELSEWHERE: (RouteKind.BRIDGE, "vxp"),
        B: (RouteKind.LOCAL, "local"),
    }


# -- statuses to unknown destinations -----------------------------------------------------------------------


def test_a_status_to_an_unknown_destination_is_accepted_and_reported_back(hub: Hub) -> None:
    # B reports on a document it got from ELSEWHERE by another way than this hub.
    document_id = hub.document_id(ELSEWHERE, "77")
    status = hub.status(B, ELSEWHERE, document_id, StatusCode.ACCEPTED)
    receipt = hub.exchange.send_status(hub.caller(B), package=status)
    hub_id = receipt.hub_document_id
    reason = f"{ELSEWHERE} is not a registered agency of this hub, and no routing rule covers it"
    assert [(r.organ_id, r.state) for r in receipt.recipients] == [(ELSEWHERE, DeliveryState.UNDELIVERABLE)]
    row = delivery_rows(hub, hub_id)[ELSEWHERE]
    assert (row.state, row.route, row.dead_at, row.dead_reason) == (
        "undeliverable",
        "none",
        hub.clock.now,
        reason,
    )
    assert events(hub, hub_id) == [
        (
            "accepted",
            None,
            f"1 recipient(s); 0 warning(s); signature unsigned: no-signature; document {document_id} "
            "reported on is not known to this hub",
        ),
        ("undeliverable", ELSEWHERE, reason),
    ]
    assert notifications(hub.runtime.database) == [(B, "undeliverable", hub_id, ELSEWHERE, reason)]
    # A status about an unknown document to a destination that IS here is still refused.
    to_known = hub.status(B, SENDER, hub.document_id(SENDER, "404"), StatusCode.ACCEPTED)
    assert refusal(lambda: hub.exchange.send_status(hub.caller(B), package=to_known)).code == (
        "Client.StatusUnknownDocument"
    )


def test_a_status_to_a_bridged_destination_is_queued(hub: Hub) -> None:
    add_route(hub.runtime.database, hub.exchange.router, "000.00.00.H31/*", adapter="peer-h31")
    status = hub.status(B, ELSEWHERE, hub.document_id(ELSEWHERE, "78"), StatusCode.ARRIVED)
    receipt = hub.exchange.send_status(hub.caller(B), package=status)
    assert receipt.recipients[0].state is DeliveryState.QUEUED
    with hub.runtime.database.transaction() as session:
        kinds = list(session.scalars(select(Delivery.route)))
    assert kinds == ["peer-h31"]
    assert TraceKind.UNDELIVERABLE.value not in [kind for kind, _, _ in events(hub, receipt.hub_document_id)]
