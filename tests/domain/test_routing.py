"""Routing rules and resolution (esb.domain.routing): pure."""

from __future__ import annotations

import pytest

from esb.domain.routing import (
    PatternKind,
    Route,
    RouteKind,
    RoutePattern,
    RoutingRuleSpec,
    RoutingTable,
)
from esb.errors import ClientError

H30 = "000.00.00.H30"  # UBND tỉnh Hậu Giang (level 1)
H30_UNIT = "000.00.05.H30"  # level 2 under it
H30_DEEP = "000.07.05.H30"  # level 3 under the unit
H53 = "000.00.00.H53"


def rule(pattern: str, adapter: str = "vxp", zone: str = "national") -> RoutingRuleSpec:
    return RoutingRuleSpec.of(pattern, zone=zone, adapter=adapter)


# -- patterns ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "canonical", "level"),
    [
        ("*", PatternKind.ANY, "*", 0),
        (f" {H30} ", PatternKind.EXACT, H30, 1),
        (f"{H30_UNIT}/*", PatternKind.SUBTREE, f"{H30_UNIT}/*", 2),
        ("H37.DN/*", PatternKind.SUBTREE, "H37.DN/*", 2),
        ("G09", PatternKind.EXACT, "G09", 1),
    ],
)
def test_patterns_are_parsed(text: str, kind: PatternKind, canonical: str, level: int) -> None:
    pattern = RoutePattern.parse(text)
    assert (pattern.kind, pattern.text, pattern.level) == (kind, canonical, level)


@pytest.mark.parametrize(
    "text",
    ["", "**", "H5", "000.1137.H53", "000.00.00.H53/**", "000.00.00.H53/", "/*", "vxp.saas.03", "h53", "*/*"],
)
def test_malformed_patterns_are_refused_clearly(text: str) -> None:
    with pytest.raises(ClientError) as caught:
        RoutePattern.parse(text)
    assert caught.value.code == "Client.InvalidRoutePattern"
    assert "conforming identifier code" in caught.value.message


@pytest.mark.parametrize(
    ("zone", "adapter"), [("", "vxp"), ("national", "VXP"), ("a b", "vxp"), ("x" * 65, "v")]
)
def test_zone_and_adapter_names_are_checked(zone: str, adapter: str) -> None:
    with pytest.raises(ClientError) as caught:
        RoutingRuleSpec.of(H30, zone=zone, adapter=adapter)
    assert caught.value.code == "Client.InvalidRoute"


def test_a_subtree_covers_its_root_and_everything_under_it() -> None:
    unit = RoutePattern.parse(f"{H30_UNIT}/*")
    assert [unit.matches(code) for code in (H30_UNIT, H30_DEEP, H30, "000.00.06.H30", H53)] == [
        True,
        True,
        False,
        False,
        False,
    ]


def test_a_level1_subtree_covers_both_identifier_forms() -> None:
    for text in (f"{H30}/*", "H30/*"):
        pattern = RoutePattern.parse(text)
        assert pattern.matches(H30_DEEP)
        assert pattern.matches("H30.DN.001")
        assert not pattern.matches("H31.01")


# -- resolution ----------------------------------------------------------------------------------------


def test_without_rules_registered_agencies_are_local_and_others_unknown() -> None:
    table = RoutingTable([])
    assert table.resolve(H53, registered=True).kind is RouteKind.LOCAL
    unknown = table.resolve(H30, registered=False)
    assert unknown.kind is RouteKind.UNKNOWN
    assert unknown.describe == "unknown: not a registered agency, and no routing rule covers it"


def test_the_most_specific_rule_wins() -> None:
    table = RoutingTable(
        [
            rule("*", "vxp", "national"),
            rule(f"{H30}/*", "peer-h30", "hau-giang"),
            rule(f"{H30_UNIT}/*", "peer-h30-unit", "hau-giang-unit"),
            rule(H30_DEEP, "special", "special-zone"),
        ]
    )
    resolved = {
        code: table.resolve(code, registered=False)
        for code in (H30_DEEP, "000.08.05.H30", "000.00.06.H30", "H30.DN", "000.00.00.G22")
    }
    assert {code: (r.adapter, r.rule) for code, r in resolved.items()} == {
        H30_DEEP: ("special", H30_DEEP),
        "000.08.05.H30": ("peer-h30-unit", f"{H30_UNIT}/*"),
        "000.00.06.H30": ("peer-h30", f"{H30}/*"),
        "H30.DN": ("peer-h30", f"{H30}/*"),
        "000.00.00.G22": ("vxp", "*"),
    }
    assert resolved[H30_DEEP] == Route(RouteKind.BRIDGE, "special", "special-zone", H30_DEEP)
    assert resolved[H30_DEEP].describe == f"adapter special (zone special-zone, by rule {H30_DEEP})"


def test_the_catch_all_never_takes_a_registered_agency_from_its_mailbox() -> None:
    table = RoutingTable([rule("*"), rule(f"{H30}/*", "peer-h30")])
    assert table.resolve(H53, registered=True).kind is RouteKind.LOCAL
    assert table.resolve(H53, registered=False).adapter == "vxp"
    # An exact or subtree rule does: the agency is served by another hub.
    assert table.resolve(H30_UNIT, registered=True).adapter == "peer-h30"


def test_a_local_rule_needs_a_registered_agency() -> None:
    table = RoutingTable([rule(f"{H53}/*", "local", "tay-ninh"), rule("*")])
    local = table.resolve("000.00.01.H53", registered=True)
    assert (local.kind, local.adapter, local.zone) == (RouteKind.LOCAL, "local", "tay-ninh")
    missing = table.resolve("000.00.02.H53", registered=False)
    assert missing.kind is RouteKind.UNKNOWN
    assert "not a registered agency" in missing.describe


def test_rules_are_ordered_by_specificity() -> None:
    table = RoutingTable([rule("*"), rule(f"{H30}/*"), rule(H30_DEEP), rule(f"{H30_UNIT}/*")])
    assert [r.pattern.text for r in table.rules] == [H30_DEEP, f"{H30_UNIT}/*", f"{H30}/*", "*"]
