"""Routing rules: where a destination's documents go (this hub's mailbox, or a bridge adapter).

A rule maps a *pattern* to a zone and an adapter:

* ``000.00.00.H30`` (an exact code) — that agency only;
* ``000.00.00.H30/*`` (a subtree) — that agency and every unit under it, by the code's own
  hierarchy (:mod:`esb.domain.identifiers`).  A level-1 subtree (``000.00.00.H30/*`` or
  ``H30/*``) covers both identifier forms, since level-1 codes are the same in both;
* ``*`` — every destination not covered otherwise.

Resolving a destination code, most specific first:

1. an exact rule, then the deepest subtree rule that covers it;
2. an agency registered on this hub: its mailbox here (``local``);
3. the ``*`` rule;
4. nothing: the destination is *unknown*.

So ``*`` (typically "everything else goes to the national axis") never takes a registered
agency away from its mailbox, while an exact or subtree rule does (an agency listed here
but served by another hub).  A rule whose adapter is ``local`` means this hub's mailbox and
needs the agency to be registered; otherwise the destination is unknown.

Pure: the caller gives the rules and which codes are registered.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from esb.domain.identifiers import CodeForm, ancestors, classify_organ_id
from esb.errors import ClientError

__all__ = [
    "ADAPTER_LOCAL",
    "PatternKind",
    "Route",
    "RouteKind",
    "RoutePattern",
    "RoutingRuleSpec",
    "RoutingTable",
    "check_name",
]

ADAPTER_LOCAL = "local"
"""The adapter name meaning this hub's own mailboxes."""

ANY = "*"
SUBTREE_SUFFIX = "/*"
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}\Z")
MAX_NOTE = 256


class InvalidRoute(ClientError):
    default_code = "Client.InvalidRoute"


class PatternKind(StrEnum):
    EXACT = "exact"
    SUBTREE = "subtree"
    ANY = "any"


@dataclass(frozen=True)
class RoutePattern:
    """A parsed, checked pattern; ``root`` is the code of an exact or subtree pattern."""

    text: str
    kind: PatternKind
    root: str | None
    level: int  # level of the root (0 for ``*``): deeper subtrees are more specific

    @classmethod
    def parse(cls, text: str) -> RoutePattern:
        """Check a pattern as an operator typed it; raise ``Client.InvalidRoutePattern``."""
        value = text.strip() if isinstance(text, str) else ""
        if value == ANY:
            return cls(ANY, PatternKind.ANY, None, 0)
        subtree = value.endswith(SUBTREE_SUFFIX)
        root = value.removesuffix(SUBTREE_SUFFIX) if subtree else value
        code = classify_organ_id(root)
        if not root or code.form is CodeForm.NONCONFORMING or code.level is None:
            raise ClientError(
                f"routing pattern {text!r} is not a conforming identifier code (QCVN 102 LLL.KK.JJ.XNN "
                "or QĐ 20 XNN.…), that code followed by /* for its subtree, or * for everything",
                code="Client.InvalidRoutePattern",
            )
        kind = PatternKind.SUBTREE if subtree else PatternKind.EXACT
        return cls(f"{root}{SUBTREE_SUFFIX}" if subtree else root, kind, root, code.level)

    def matches(self, code: str) -> bool:
        """True when this pattern covers destination ``code``."""
        if self.kind is PatternKind.ANY:
            return True
        value = code.strip()
        if self.kind is PatternKind.EXACT:
            return value == self.root
        if value == self.root or self.root in ancestors(value):
            return True
        return self.level == 1 and _level1(value) == _level1(str(self.root))


def _level1(code: str) -> str | None:
    return classify_organ_id(code).level1


def check_name(what: str, value: str) -> str:
    """A zone or adapter name: 1-64 of ``a-z 0-9 . _ -``, starting with a letter or digit."""
    name = value.strip() if isinstance(value, str) else ""
    if _NAME.match(name) is None:
        raise InvalidRoute(
            f"{what} {value!r} must be 1 to 64 characters of a-z, 0-9, '.', '_' and '-', "
            "starting with a letter or a digit"
        )
    return name


@dataclass(frozen=True)
class RoutingRuleSpec:
    """A routing rule: destinations matching ``pattern`` go to ``adapter`` in ``zone``."""

    pattern: RoutePattern
    zone: str
    adapter: str
    note: str | None = None

    @classmethod
    def of(cls, pattern: str, *, zone: str, adapter: str, note: str | None = None) -> RoutingRuleSpec:
        """A checked rule from what an operator typed."""
        text = (note or "").strip() or None
        if text is not None and len(text) > MAX_NOTE:
            raise InvalidRoute(f"the note has {len(text)} characters; at most {MAX_NOTE}")
        return cls(
            RoutePattern.parse(pattern), check_name("zone", zone), check_name("adapter", adapter), text
        )

    @property
    def is_local(self) -> bool:
        return self.adapter == ADAPTER_LOCAL


class RouteKind(StrEnum):
    LOCAL = "local"  # a mailbox on this hub
    BRIDGE = "bridge"  # handed over to an adapter (another zone)
    UNKNOWN = "unknown"  # nowhere to go


@dataclass(frozen=True)
class Route:
    """Where one destination goes, and why (the rule's pattern, or the registry)."""

    kind: RouteKind
    adapter: str | None
    zone: str | None
    rule: str | None  # the pattern that decided, or None (the registry / nothing)

    @property
    def describe(self) -> str:
        by = f"rule {self.rule}" if self.rule else "the registry"
        if self.kind is RouteKind.LOCAL:
            return f"mailbox on this hub (by {by})"
        if self.kind is RouteKind.BRIDGE:
            return f"adapter {self.adapter} (zone {self.zone}, by {by})"
        if self.rule:
            return f"unknown: {by} sends it to this hub's mailboxes, but it is not a registered agency"
        return "unknown: not a registered agency, and no routing rule covers it"


LOCAL = Route(RouteKind.LOCAL, ADAPTER_LOCAL, ADAPTER_LOCAL, None)
UNKNOWN = Route(RouteKind.UNKNOWN, None, None, None)


class RoutingTable:
    """The rules, indexed for resolution: O(depth of the code) per destination."""

    def __init__(self, rules: Iterable[RoutingRuleSpec]) -> None:
        self.rules = tuple(sorted(rules, key=_specificity))
        self._exact = {r.pattern.root: r for r in self.rules if r.pattern.kind is PatternKind.EXACT}
        self._subtree = {r.pattern.root: r for r in self.rules if r.pattern.kind is PatternKind.SUBTREE}
        self._level1 = {
            _level1(str(r.pattern.root)): r
            for r in reversed(self.rules)  # the first of a level (as sorted) wins
            if r.pattern.kind is PatternKind.SUBTREE and r.pattern.level == 1
        }
        self._any = next((r for r in self.rules if r.pattern.kind is PatternKind.ANY), None)

    def rule_for(self, code: str) -> RoutingRuleSpec | None:
        """The most specific exact or subtree rule covering ``code`` (not ``*``)."""
        value = code.strip()
        exact = self._exact.get(value)
        if exact is not None:
            return exact
        for root in (value, *ancestors(value)):
            rule = self._subtree.get(root)
            if rule is not None:
                return rule
        level1 = _level1(value)
        return self._level1.get(level1) if level1 is not None else None

    def resolve(self, code: str, *, registered: bool) -> Route:
        """Where ``code`` goes, given whether it is an agency registered on this hub."""
        rule = self.rule_for(code)
        if rule is None and registered:
            return LOCAL
        if rule is None:
            rule = self._any
        if rule is None:
            return UNKNOWN
        text = rule.pattern.text
        if rule.is_local:
            if registered:
                return Route(RouteKind.LOCAL, ADAPTER_LOCAL, rule.zone, text)
            return Route(RouteKind.UNKNOWN, None, rule.zone, text)
        return Route(RouteKind.BRIDGE, rule.adapter, rule.zone, text)


def _specificity(rule: RoutingRuleSpec) -> tuple[int, int, str]:
    """Exact first, then subtrees deepest first, then ``*``; ties by pattern text."""
    order = {PatternKind.EXACT: 0, PatternKind.SUBTREE: 1, PatternKind.ANY: 2}[rule.pattern.kind]
    return order, -rule.pattern.level, rule.pattern.text
