"""Bridge adapters for tests: one that fails a number of times then takes the delivery, one that
never does, and helpers to set routing rules and read notifications.

Real adapters (VXP, NGSP, peer hubs) come with later issues; these implement the same
``esb.pipeline.routing.BridgeAdapter`` protocol.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from sqlalchemy import select

from esb.clock import utc_now
from esb.domain.routing import RoutingRuleSpec
from esb.pipeline.routing import BridgeHandover, Router
from esb.storage import routing_store
from esb.storage.database import Database
from esb.storage.tables import NotificationRow


@dataclass(frozen=True)
class Received:
    """What an adapter was given: the hand-over and the bytes it streamed."""

    handover: BridgeHandover
    data: bytes


@dataclass
class FlakyAdapter:
    """Fails ``failures`` times (``None``: always), then takes every delivery it is given."""

    name: str
    failures: int | None = 0
    calls: int = 0
    received: list[Received] = field(default_factory=list)

    def deliver(self, handover: BridgeHandover) -> None:
        self.calls += 1
        if self.failures is None or self.calls <= self.failures:
            raise ConnectionError(f"peer hub of {handover.zone} unreachable")
        data = b"".join(handover.open())
        assert hashlib.sha256(data).hexdigest() == handover.sha256
        self.received.append(Received(handover, data))


def add_route(
    database: Database, router: Router | None, pattern: str, *, adapter: str, zone: str = "elsewhere"
) -> None:
    """Store a routing rule and make ``router`` read the rules again."""
    with database.transaction() as session:
        routing_store.add_rule(
            session, RoutingRuleSpec.of(pattern, zone=zone, adapter=adapter), now=utc_now()
        )
    if router is not None:
        router.invalidate()


def notifications(
    database: Database, *, agency: str | None = None
) -> list[tuple[str, str, str, str | None, str | None]]:
    """(addressee, kind, hub document id, recipient, detail) of every notification, oldest first."""
    with database.transaction() as session:
        query = select(NotificationRow).order_by(NotificationRow.id)
        if agency is not None:
            query = query.where(NotificationRow.agency_code == agency)
        return [
            (row.agency_code, row.kind, row.hub_document_id, row.recipient_code, row.detail)
            for row in session.scalars(query)
        ]
