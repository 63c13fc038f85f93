"""Deliveries that cannot reach their destination: bridge hand-overs, offline limits, dead letters.

A delivery becomes **undeliverable** when

* its bridge adapter keeps failing until the retry policy is exhausted (worker step
  ``bridge``; an adapter this hub does not have counts as a failure);
* its destination stays offline longer than the sender's offline policy allows, while it
  waits in the mailbox (worker step ``offline``);
* the callback pushes announcing it fail until their retry policy is exhausted
  (esb.pipeline.callbacks calls :meth:`Undeliverable.report`);
* it is a status to a destination that has no route at all (at acceptance).

Each time, in one transaction: the delivery's state ``undeliverable`` with when and why
(``dead_at``, ``dead_reason``), an ``undeliverable`` trace event, and a notification of kind
``undeliverable`` to the sender naming the destination and the reason.  The content stays
until the retention ends, so an operator can list the dead letters (``esb deliveries list
--dead``) and re-drive one (``esb deliveries redrive ID``) once the cause is fixed.

**Bridge hand-overs** run under a lease: the ``bridge`` step claims due deliveries in a
short transaction (``lease_owner``, ``lease_until``), calls the adapter outside any
transaction, and records the outcome only if it still holds the lease.  A node killed in
between leaves its lease to lapse; another node then claims the delivery and hands it over.
A hand-over completes this hub's part: the delivery is ``done`` (with a ``handed-over`` trace
event), and the other side answers for the rest.  The lease (5 minutes) must outlast an
adapter's own time-out; the hub document id in every hand-over lets the other side recognise
one it already took.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from random import SystemRandom

from sqlalchemy.orm import Session

from esb.clock import Clock
from esb.domain.access import AgencyState
from esb.domain.delivery_policy import OfflinePolicy, RetryPolicy, undeliverable_since
from esb.domain.edxml_enums import Priority
from esb.domain.exchange import DeliveryState, DocumentState, MessageType, TraceKind
from esb.domain.routing import ADAPTER_LOCAL, Route, RouteKind
from esb.errors import ClientError
from esb.pipeline.exchange import Exchange, no_route_reason
from esb.pipeline.routing import AdapterNotConfigured, Adapters, BridgeHandover, Router
from esb.storage import delivery_store, presence_store, registry
from esb.storage import exchange_store as store
from esb.storage.tables import Delivery, Document

log = logging.getLogger(__name__)

DEFAULT_LEASE = timedelta(minutes=5)
DEFAULT_OFFLINE_SCAN_INTERVAL = timedelta(minutes=1)
PAGE = 200
MAX_ERROR = 300
_RANDOM = SystemRandom()  # jitter of retries: spreads them, needs no seed


@dataclass(frozen=True)
class DeliveryView:
    """One delivery as operators see it (``esb deliveries list``)."""

    delivery_id: int
    hub_document_id: str
    message_type: str
    sender: str
    recipient: str
    priority: Priority
    state: DeliveryState
    route: str
    attempts: int
    available_at: datetime | None
    next_attempt_at: datetime | None
    dead_at: datetime | None
    dead_reason: str | None
    last_failure: str | None
    content_purged: bool


@dataclass(frozen=True)
class BridgeClaim:
    """A bridge delivery this node holds the lease of, with what the hand-over needs."""

    delivery_id: int
    hub_document_id: str
    sender: str
    recipient: str
    adapter: str
    message_type: MessageType
    priority: Priority
    sha256: str
    size: int
    content_key: str | None
    attempt: int  # the number this attempt will have (1 for the first)
    lease_until: datetime


@dataclass(frozen=True)
class Redriven:
    delivery_id: int
    hub_document_id: str
    recipient: str
    state: DeliveryState  # pending (a mailbox here) or queued (a bridge)
    route: str


class Undeliverable:
    """Undeliverable reports, the ``offline`` and ``bridge`` worker steps, dead letters and re-drive."""

    def __init__(
        self,
        exchange: Exchange,
        *,
        router: Router,
        adapters: Adapters,
        retry: RetryPolicy,
        offline: OfflinePolicy,
        lease: timedelta = DEFAULT_LEASE,
        offline_scan_interval: timedelta = DEFAULT_OFFLINE_SCAN_INTERVAL,
        clock: Clock | None = None,
        random: Callable[[], float] = _RANDOM.random,
        owner: str | None = None,
    ) -> None:
        self.exchange = exchange
        self.database = exchange.database
        self.router = router
        self.adapters = adapters
        self.retry = retry
        self.offline_policy = offline
        self.lease = lease
        self.offline_scan_interval = offline_scan_interval
        self.clock = clock or exchange.clock
        self.random = random
        node = exchange.policy.node_name
        self.owner = owner or f"{node}:{os.getpid()}:{secrets.token_hex(4)}"
        self.actor = f"hub:{node}"
        self._next_offline_scan: datetime | None = None

    # ------------------------------------------------------------------ reports

    def report(self, hub_document_id: str, recipient: str, reason: str) -> bool:
        """Report the delivery of ``hub_document_id`` to ``recipient`` undeliverable, with ``reason``.

        Returns False (and changes nothing) when the delivery already ended: done, expired,
        or reported before.  An unknown document or recipient is ``Client.DocumentNotFound``.
        """
        now = self.clock()
        with self.database.transaction() as session:
            document, delivery = store.lock_delivery(session, hub_document_id, recipient)
            if delivery.state not in (DeliveryState.PENDING.value, DeliveryState.QUEUED.value):
                return False
            delivery_store.mark_undeliverable(
                session, document, delivery, reason=reason, at=now, actor=self.actor
            )
        log.info("delivery of %s to %s reported undeliverable", hub_document_id, recipient)
        return True

    # ------------------------------------------------------------------ worker step "offline"

    def offline(self, limit: int) -> int:
        """Report waiting deliveries whose destination has been offline too long (worker step).

        Runs a scan at most every ``offline_scan_interval`` (limits are hours; nothing is
        gained by scanning every second), and again at once while it finds a full batch.
        """
        now = self.clock()
        if self._next_offline_scan is not None and now < self._next_offline_scan:
            return 0
        due = self._offline_due(now, limit)
        reported = sum(
            1 for waiting, reason in due if self.report(waiting.hub_document_id, waiting.recipient, reason)
        )
        full = len(due) >= limit
        self._next_offline_scan = None if full else now + self.offline_scan_interval
        return reported

    def _offline_due(self, now: datetime, limit: int) -> list[tuple[delivery_store.Waiting, str]]:
        due: list[tuple[delivery_store.Waiting, str]] = []
        with self.database.transaction() as session:
            override = delivery_store.shortest_sender_limit(session)
            shortest = self.offline_policy.shortest(timedelta(seconds=override) if override else None)
            cutoff = now - shortest
            waiting_agencies = delivery_store.waiting_recipients(session, available_before=cutoff)
            for codes in delivery_store.chunks(waiting_agencies):
                presence = presence_store.last_seen_of_agencies(session, codes)
                absent = [code for code in codes if presence.get(code, (None, None))[0] != "online"]
                after = 0
                while absent and len(due) < limit:
                    page = delivery_store.waiting_for(
                        session, absent, available_before=cutoff, after_id=after, limit=PAGE
                    )
                    for waiting in page:
                        state, last_seen = presence.get(waiting.recipient, (None, None))
                        reason = undeliverable_since(
                            destination=waiting.recipient,
                            sender=waiting.sender,
                            priority=_priority(waiting.priority),
                            presence=str(state) if state is not None else None,
                            last_seen=last_seen,
                            available_at=waiting.available_at,
                            limit=self.offline_policy.limit(
                                _priority(waiting.priority),
                                timedelta(seconds=waiting.sender_limit_seconds)
                                if waiting.sender_limit_seconds
                                else None,
                            ),
                            now=now,
                        )
                        if reason is not None:
                            due.append((waiting, reason))
                            if len(due) >= limit:
                                break
                    if len(page) < PAGE:
                        break
                    after = page[-1].delivery_id
                if len(due) >= limit:
                    break
        return due

    # ------------------------------------------------------------------ worker step "bridge"

    def bridge(self, limit: int) -> int:
        """Hand due bridge deliveries to their adapters (worker step); returns how many were tried."""
        claims = self.claim_bridge(limit)
        for claim in claims:
            self.hand_over(claim)
        return len(claims)

    def claim_bridge(self, limit: int) -> list[BridgeClaim]:
        """Lease up to ``limit`` due bridge deliveries to this node (committed before any hand-over)."""
        now = self.clock()
        lease_until = now + self.lease
        with self.database.transaction() as session:
            rows = delivery_store.claim_bridge(
                session, now=now, owner=self.owner, lease_until=lease_until, limit=limit
            )
            return [_claim(document, delivery, lease_until) for document, delivery in rows]

    def hand_over(self, claim: BridgeClaim) -> bool:
        """Give one claimed delivery to its adapter (outside any transaction) and record the outcome."""
        route = self.router.table().resolve(claim.recipient, registered=False)
        zone = str(route.zone) if route.adapter == claim.adapter else "unknown"
        key = claim.content_key
        content = self.exchange.content
        handover = BridgeHandover(
            hub_id=self.exchange.policy.hub_organ_id,
            hub_document_id=claim.hub_document_id,
            sender=claim.sender,
            recipient=claim.recipient,
            zone=zone,
            adapter=claim.adapter,
            message_type=claim.message_type,
            priority=claim.priority,
            sha256=claim.sha256,
            size=claim.size,
            attempt=claim.attempt,
            open=lambda: content.read(str(key), sha256=claim.sha256, size=claim.size),
        )
        try:
            if key is None:
                raise RuntimeError("the content was purged")  # noqa: TRY301 - one failure path for all
            self.adapters.get(claim.adapter).deliver(handover)
        except Exception as exc:  # noqa: BLE001 - whatever an adapter raises is a failed attempt
            self._failed(claim, _error_text(exc))
            return False
        return self._handed_over(claim, zone)

    def _handed_over(self, claim: BridgeClaim, zone: str) -> bool:
        now = self.clock()
        completed = False
        with self.database.transaction() as session:
            document, delivery = self._leased(session, claim)
            if delivery is None:
                return False
            delivery.state = DeliveryState.DONE.value
            delivery.confirmed_at = now
            delivery.attempts = claim.attempt
            delivery.lease_owner = delivery.lease_until = delivery.next_attempt_at = None
            store.add_event(
                session,
                document,
                TraceKind.HANDED_OVER,
                at=now,
                actor=self.actor,
                recipient=claim.recipient,
                sha256=claim.sha256,
                detail=f"handed to adapter {claim.adapter} (zone {zone}), attempt {claim.attempt}",
            )
            session.flush()
            if store.open_deliveries(session, document) == 0:
                document.state = DocumentState.COMPLETED.value
                completed = True
        if completed:
            try:
                self.exchange.purge(claim.hub_document_id)
            except Exception:  # noqa: BLE001 - recorded; the worker's purge step finishes it
                log.warning(
                    "purge of %s after its hand-over failed; the worker will retry", claim.hub_document_id
                )
        return True

    def _failed(self, claim: BridgeClaim, error: str) -> None:
        now = self.clock()
        with self.database.transaction() as session:
            document, delivery = self._leased(session, claim)
            if delivery is None:
                return
            delivery.attempts = claim.attempt
            delivery.last_failure = error[:512]
            retry_at = self.retry.next_attempt(claim.attempt, now, self.random())
            tried = f"attempt {claim.attempt} of {self.retry.max_attempts}"
            store.add_event(
                session,
                document,
                TraceKind.HANDOVER_FAILED,
                at=now,
                actor=self.actor,
                recipient=claim.recipient,
                detail=(
                    f"{tried} to adapter {claim.adapter} failed: {error}"
                    + (f"; next at {retry_at:%Y-%m-%d %H:%M:%S} UTC" if retry_at else "")
                ),
            )
            if retry_at is None:
                delivery_store.mark_undeliverable(
                    session,
                    document,
                    delivery,
                    reason=(
                        f"adapter {claim.adapter} failed {claim.attempt} times (retry policy exhausted); "
                        f"last error: {error}"
                    ),
                    at=now,
                    actor=self.actor,
                )
                return
            delivery.next_attempt_at = retry_at
            delivery.lease_owner = delivery.lease_until = None

    def _leased(self, session: Session, claim: BridgeClaim) -> tuple[Document, Delivery | None]:
        """The claimed delivery, locked, if this node still holds its lease (else None)."""
        document, delivery = store.lock_delivery(session, claim.hub_document_id, claim.recipient)
        if delivery.state != DeliveryState.QUEUED.value or delivery.lease_owner != self.owner[:128]:
            log.warning(
                "lease of the delivery of %s to %s lapsed before its hand-over was recorded",
                claim.hub_document_id,
                claim.recipient,
            )
            return document, None
        return document, delivery

    # ------------------------------------------------------------------ operators

    def deliveries(
        self, *, dead: bool = False, agency: str | None = None, limit: int = 100
    ) -> list[DeliveryView]:
        """Deliveries newest first (``dead``: only the undeliverable ones, latest report first)."""
        with self.database.transaction() as session:
            return [
                _view(document, delivery)
                for document, delivery in delivery_store.listing(
                    session, dead=dead, agency=agency, limit=limit
                )
            ]

    def dead(self, limit: int = 100, *, agency: str | None = None) -> list[DeliveryView]:
        return self.deliveries(dead=True, agency=agency, limit=limit)

    def redrive(self, delivery_id: int, operator: str) -> Redriven:
        """Put an undeliverable delivery back on its way, by the routes in force now.

        Local: pending in the mailbox again (its offline limit counts from now) with a new
        notification; bridge: queued for its adapter.  Attempts start again from zero.
        Refused when the delivery is not undeliverable, its content was purged, or its
        destination still has no route.
        """
        now = self.clock()
        with self.database.transaction() as session:
            document, delivery = delivery_store.lock_by_id(session, delivery_id)
            what = f"delivery {delivery_id} ({document.hub_id} to {delivery.recipient_code})"
            if delivery.state != DeliveryState.UNDELIVERABLE.value:
                raise ClientError(
                    f"{what} is {delivery.state}, not undeliverable: there is nothing to re-drive",
                    code="Client.NotUndeliverable",
                )
            if document.content_key is None:
                raise ClientError(
                    f"{what} cannot be re-driven: its content was purged ({document.state}) when the "
                    f"retention ended; ask {document.sender_code} to send it again",
                    code="Client.ContentPurged",
                )
            recipient = delivery.recipient_code
            rows = registry.agency_rows(session, [recipient])
            route = self.router.resolve(session, [recipient], registered=rows)[recipient]
            _check_redrivable(what, recipient, route, rows.get(recipient))
            was = delivery.dead_reason
            delivery.attempts = 0
            delivery.dead_at = delivery.dead_reason = None
            delivery.lease_owner = delivery.lease_until = None
            if route.kind is RouteKind.LOCAL:
                delivery.state = DeliveryState.PENDING.value
                delivery.route = ADAPTER_LOCAL
                delivery.available_at = now
                delivery.next_attempt_at = None
            else:
                delivery.state = DeliveryState.QUEUED.value
                delivery.route = str(route.adapter)
                delivery.next_attempt_at = now
            store.add_event(
                session,
                document,
                TraceKind.REDRIVEN,
                at=now,
                actor=f"operator:{operator}",
                recipient=recipient,
                sha256=delivery.delivered_sha256,
                detail=f"re-driven to {route.describe}; it was undeliverable: {was}",
            )
            if route.kind is RouteKind.LOCAL:
                delivery_store.notify_waiting(session, document, recipient, at=now)
            return Redriven(
                delivery_id, document.hub_id, recipient, DeliveryState(delivery.state), delivery.route
            )

    def set_offline_limit(self, code: str, limit: timedelta | None) -> timedelta | None:
        """An agency's own offline limit for what it sends (None: the hub's limits by priority)."""
        if limit is not None and limit <= timedelta(0):
            raise ClientError("the offline limit must be positive", code="Client.InvalidRequest")
        with self.database.transaction() as session:
            delivery_store.set_sender_limit(session, code, int(limit.total_seconds()) if limit else None)
        return limit


def _check_redrivable(what: str, recipient: str, route: Route, row: tuple[str, str | None] | None) -> None:
    if route.kind is RouteKind.UNKNOWN:
        raise ClientError(
            f"{what} cannot be re-driven: {no_route_reason(recipient, route)}", code="Client.UnknownRecipient"
        )
    if route.kind is RouteKind.LOCAL and row is not None and row[0] != AgencyState.ACTIVE.value:
        raise ClientError(f"{what} cannot be re-driven: {recipient} is locked", code="Client.RecipientLocked")


def _claim(document: Document, delivery: Delivery, lease_until: datetime) -> BridgeClaim:
    return BridgeClaim(
        delivery_id=delivery.id,
        hub_document_id=document.hub_id,
        sender=document.sender_code,
        recipient=delivery.recipient_code,
        adapter=delivery.route,
        message_type=MessageType(document.message_type),
        priority=_priority(delivery.priority),
        sha256=str(document.delivered_sha256 or document.sha256),
        size=int(document.delivered_size or document.size),
        content_key=document.content_key,
        attempt=delivery.attempts + 1,
        lease_until=lease_until,
    )


def _view(document: Document, delivery: Delivery) -> DeliveryView:
    return DeliveryView(
        delivery_id=delivery.id,
        hub_document_id=document.hub_id,
        message_type=document.message_type,
        sender=document.sender_code,
        recipient=delivery.recipient_code,
        priority=_priority(delivery.priority),
        state=DeliveryState(delivery.state),
        route=delivery.route,
        attempts=delivery.attempts,
        available_at=delivery.available_at,
        next_attempt_at=delivery.next_attempt_at,
        dead_at=delivery.dead_at,
        dead_reason=delivery.dead_reason,
        last_failure=delivery.last_failure,
        content_purged=document.content_key is None,
    )


def _priority(value: int) -> Priority:
    with contextlib.suppress(ValueError):
        return Priority(value)
    return Priority.THUONG


def _error_text(exc: Exception) -> str:
    text = str(exc).strip()
    if isinstance(exc, AdapterNotConfigured):
        return text
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text[:MAX_ERROR]
