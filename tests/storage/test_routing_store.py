"""Tests for esb.storage.routing_store: the routing rules table, on both engines."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from esb.domain.routing import RoutingRuleSpec, RoutingTable
from esb.errors import ClientError
from esb.storage import routing_store
from esb.storage.tables import RoutingRule
from esb.wiring import Runtime

NOW = datetime(2026, 11, 21, 2, 30, tzinfo=UTC)
H30, H53 = "000.00.00.H30", "000.00.00.H53"


def spec(
    pattern: str, adapter: str = "vxp", zone: str = "national", note: str | None = None
) -> RoutingRuleSpec:
    return RoutingRuleSpec.of(pattern, zone=zone, adapter=adapter, note=note)


def test_rules_are_stored_listed_and_resolved(runtime: Runtime) -> None:
    with runtime.database.transaction() as session:
        routing_store.add_rule(session, spec("*", note="trục quốc gia"), now=NOW)
        routing_store.add_rule(session, spec(f" {H30}/* ", "peer-h30", "hau-giang"), now=NOW)
    with runtime.database.transaction() as session:
        rows = routing_store.rule_rows(session)
        rules = routing_store.rules(session)
    assert [(r.pattern, r.zone, r.adapter, r.note, r.created_at) for r in rows] == [
        ("*", "national", "vxp", "trục quốc gia", NOW),
        (f"{H30}/*", "hau-giang", "peer-h30", None, NOW),
    ]
    table = RoutingTable(rules)
    assert table.resolve("000.00.01.H30", registered=False).adapter == "peer-h30"
    assert table.resolve(H53, registered=False).adapter == "vxp"


def test_a_pattern_is_unique_unless_replaced(runtime: Runtime) -> None:
    with runtime.database.transaction() as session:
        routing_store.add_rule(session, spec(H30), now=NOW)
    with pytest.raises(ClientError) as caught, runtime.database.transaction() as session:
        routing_store.add_rule(session, spec(H30, "other"), now=NOW)
    assert caught.value.code == "Client.RouteExists"
    assert "exists already (to vxp, zone national)" in caught.value.message
    with runtime.database.transaction() as session:
        routing_store.add_rule(session, spec(H30, "other", "elsewhere"), now=NOW, replace=True)
    with runtime.database.transaction() as session:
        assert [(r.pattern, r.adapter, r.zone) for r in routing_store.rule_rows(session)] == [
            (H30, "other", "elsewhere")
        ]


def test_rules_are_removed_by_pattern(runtime: Runtime) -> None:
    with runtime.database.transaction() as session:
        routing_store.add_rule(session, spec(f"{H30}/*"), now=NOW)
        routing_store.add_rule(session, spec("*"), now=NOW)
    with runtime.database.transaction() as session:
        routing_store.remove_rule(session, f" {H30}/*")
    with runtime.database.transaction() as session:
        assert [r.pattern for r in routing_store.rule_rows(session)] == ["*"]
    for pattern, code in ((f"{H30}/*", "Client.RouteNotFound"), ("H5/*", "Client.InvalidRoutePattern")):
        with pytest.raises(ClientError) as caught, runtime.database.transaction() as session:
            routing_store.remove_rule(session, pattern)
        assert caught.value.code == code


def test_a_stored_row_that_no_longer_parses_is_skipped(runtime: Runtime) -> None:
    with runtime.database.transaction() as session:
        session.add(RoutingRule(pattern="not a code", zone="z", adapter="a", created_at=NOW))
        routing_store.add_rule(session, spec(H30), now=NOW)
    with runtime.database.transaction() as session:
        assert [r.pattern.text for r in routing_store.rules(session)] == [H30]
