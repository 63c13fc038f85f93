"""The routing rules table (``routing_rule``): list, add, remove.

Patterns are checked by :mod:`esb.domain.routing` before they are stored, and stored as
their canonical text (``CODE``, ``CODE/*`` or ``*``), which is unique.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from esb.domain.routing import RoutePattern, RoutingRuleSpec
from esb.errors import ClientError
from esb.storage.tables import RoutingRule


class RouteNotFound(ClientError):
    default_code = "Client.RouteNotFound"


def rule_rows(session: Session) -> list[RoutingRule]:
    return list(session.scalars(select(RoutingRule).order_by(RoutingRule.pattern)))


def rules(session: Session) -> list[RoutingRuleSpec]:
    """Every rule as the domain sees it (a stored row that no longer parses is skipped)."""
    found = []
    for row in rule_rows(session):
        try:
            found.append(RoutingRuleSpec.of(row.pattern, zone=row.zone, adapter=row.adapter, note=row.note))
        except ClientError:
            continue
    return found


def add_rule(session: Session, rule: RoutingRuleSpec, *, now: datetime, replace: bool = False) -> RoutingRule:
    """Store ``rule``; a rule with the same pattern is refused, or replaced when ``replace``."""
    row = session.scalar(
        select(RoutingRule).where(RoutingRule.pattern == rule.pattern.text).with_for_update()
    )
    if row is not None and not replace:
        raise ClientError(
            f"a rule for {rule.pattern.text} exists already (to {row.adapter}, zone {row.zone}); "
            "remove it first or replace it",
            code="Client.RouteExists",
        )
    if row is None:
        row = RoutingRule(pattern=rule.pattern.text, created_at=now)
        session.add(row)
    row.zone = rule.zone
    row.adapter = rule.adapter
    row.note = rule.note
    session.flush()
    return row


def remove_rule(session: Session, pattern: str) -> None:
    text = RoutePattern.parse(pattern).text
    removed = session.execute(delete(RoutingRule).where(RoutingRule.pattern == text))
    if not getattr(removed, "rowcount", 0):
        raise RouteNotFound(f"there is no rule for {text}")
