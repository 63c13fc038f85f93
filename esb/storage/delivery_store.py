"""Deliveries beyond the mailbox: bridge claims under a lease, undeliverable ones, offline scans.

* **Bridge claims** (:func:`claim_bridge`): queued deliveries whose route is an adapter and
  whose next attempt is due are taken with ``FOR UPDATE SKIP LOCKED`` (PostgreSQL) and given
  a lease (``lease_owner``, ``lease_until``) in a short transaction; the hand-over itself
  happens after the commit.  A node killed mid-hand-over leaves its lease behind: it lapses,
  and another node claims the delivery again.
* **Undeliverable** (:func:`mark_undeliverable`): the delivery's state, the trace event and
  the notification to the sender, written together in the caller's transaction.
* **Notifications** of a delivery waiting in a mailbox (:func:`notify_waiting`).

Functions take an open session: the callers decide what commits together.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from esb.domain.exchange import DeliveryState, MessageType, TraceKind
from esb.domain.notifications import NotificationKind
from esb.domain.routing import ADAPTER_LOCAL
from esb.errors import ClientError
from esb.storage import exchange_store, notification_store
from esb.storage.registry import NotRegistered
from esb.storage.tables import Agency, Delivery, Document

NO_ROUTE = "none"
"""``Delivery.route`` of a delivery that had nowhere to go (a status to an unknown destination)."""

MAX_CODES = 500  # codes per IN (...) list


def notify_waiting(session: Session, document: Document, recipient: str, *, at: datetime) -> None:
    """Tell ``recipient`` that ``document`` waits in its mailbox (a document or a status)."""
    kind = (
        NotificationKind.STATUS
        if document.message_type == MessageType.STATUS.value
        else NotificationKind.DOCUMENT
    )
    notification_store.add(
        session,
        agency=recipient,
        kind=kind.value,
        hub_document_id=document.hub_id,
        sender=document.sender_code,
        recipient=recipient,
        message_type=document.message_type,
        priority=document.priority,
        detail=None,
        at=at,
    )


def mark_undeliverable(
    session: Session, document: Document, delivery: Delivery, *, reason: str, at: datetime, actor: str
) -> None:
    """The delivery is undeliverable: its state, a trace event, and a notification to the sender."""
    text = reason.strip()[:512] or "no reason given"
    delivery.state = DeliveryState.UNDELIVERABLE.value
    delivery.dead_at = at
    delivery.dead_reason = text
    delivery.lease_owner = None
    delivery.lease_until = None
    delivery.next_attempt_at = None
    exchange_store.add_event(
        session,
        document,
        TraceKind.UNDELIVERABLE,
        at=at,
        actor=actor,
        recipient=delivery.recipient_code,
        sha256=delivery.delivered_sha256,
        detail=text,
    )
    notification_store.add(
        session,
        agency=document.sender_code,
        kind=NotificationKind.UNDELIVERABLE.value,
        hub_document_id=document.hub_id,
        sender=document.sender_code,
        recipient=delivery.recipient_code,
        message_type=document.message_type,
        priority=document.priority,
        detail=text,
        at=at,
    )


def lock_by_id(session: Session, delivery_id: int) -> tuple[Document, Delivery]:
    """A delivery and its document, both locked (document first: the order every writer follows)."""
    document_pk = session.scalar(select(Delivery.document_id).where(Delivery.id == delivery_id))
    document = (
        session.scalar(select(Document).where(Document.id == document_pk).with_for_update())
        if document_pk is not None
        else None
    )
    delivery = (
        session.scalar(select(Delivery).where(Delivery.id == delivery_id).with_for_update())
        if document is not None
        else None
    )
    if document is None or delivery is None:
        raise ClientError(f"there is no delivery {delivery_id}", code="Client.DeliveryNotFound")
    return document, delivery


def claim_bridge(
    session: Session, *, now: datetime, owner: str, lease_until: datetime, limit: int
) -> list[tuple[Document, Delivery]]:
    """Queued bridge deliveries that are due and not leased (or whose lease lapsed): leased to ``owner``."""
    rows = session.execute(
        select(Document, Delivery)
        .join(Delivery, Delivery.document_id == Document.id)
        .where(
            Delivery.state == DeliveryState.QUEUED.value,
            Delivery.route != ADAPTER_LOCAL,
            or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now),
            or_(Delivery.lease_until.is_(None), Delivery.lease_until <= now),
        )
        .order_by(Delivery.priority.desc(), Delivery.next_attempt_at, Delivery.id)
        .limit(limit)
        .with_for_update(of=Delivery, skip_locked=True)
    )
    claimed = [(document, delivery) for document, delivery in rows.tuples()]
    for _, delivery in claimed:
        delivery.lease_owner = owner[:128]
        delivery.lease_until = lease_until
    return claimed


def waiting_recipients(session: Session, *, available_before: datetime) -> list[str]:
    """Agencies with a local delivery pending since before ``available_before``."""
    return list(
        session.scalars(
            select(Delivery.recipient_code)
            .where(
                Delivery.state == DeliveryState.PENDING.value,
                Delivery.route == ADAPTER_LOCAL,
                Delivery.available_at <= available_before,
            )
            .distinct()
        )
    )


@dataclass(frozen=True)
class Waiting:
    """A local delivery pending in a mailbox, with what the offline policy needs."""

    delivery_id: int
    hub_document_id: str
    recipient: str
    sender: str
    priority: int
    available_at: datetime
    sender_limit_seconds: int | None


def waiting_for(
    session: Session, recipients: Sequence[str], *, available_before: datetime, after_id: int, limit: int
) -> list[Waiting]:
    """Pending local deliveries to ``recipients`` available before the time, by id after ``after_id``."""
    if not recipients:
        return []
    rows = session.execute(
        select(
            Delivery.id,
            Document.hub_id,
            Delivery.recipient_code,
            Document.sender_code,
            Delivery.priority,
            Delivery.available_at,
            Agency.undeliverable_after_seconds,
        )
        .join(Document, Document.id == Delivery.document_id)
        .outerjoin(Agency, Agency.code == Document.sender_code)
        .where(
            Delivery.state == DeliveryState.PENDING.value,
            Delivery.route == ADAPTER_LOCAL,
            Delivery.recipient_code.in_(list(recipients)),
            Delivery.available_at <= available_before,
            Delivery.id > after_id,
        )
        .order_by(Delivery.id)
        .limit(limit)
    )
    return [
        Waiting(int(i), str(h), str(r), str(s), int(p), a, int(o) if o is not None else None)
        for i, h, r, s, p, a, o in rows.tuples()
        if a is not None  # a pending delivery always has it (the query asks for a time before)
    ]


def shortest_sender_limit(session: Session) -> int | None:
    """The smallest offline limit any agency set for what it sends (seconds), if any did."""
    value = session.scalar(select(func.min(Agency.undeliverable_after_seconds)))
    return int(value) if value is not None else None


def set_sender_limit(session: Session, code: str, seconds: int | None) -> Agency:
    """An agency's own offline limit for what it sends (None: the hub's limits by priority)."""
    agency = session.scalar(select(Agency).where(Agency.code == code).with_for_update())
    if agency is None:
        raise NotRegistered(f"no agency is registered with the code {code!r}")
    agency.undeliverable_after_seconds = seconds
    return agency


def listing(
    session: Session, *, dead: bool, agency: str | None, limit: int
) -> list[tuple[Document, Delivery]]:
    """Deliveries, newest first: all, or only the undeliverable ones (``dead``)."""
    query = select(Document, Delivery).join(Delivery, Delivery.document_id == Document.id)
    if dead:
        query = query.where(Delivery.state == DeliveryState.UNDELIVERABLE.value)
    if agency is not None:
        query = query.where(or_(Delivery.recipient_code == agency, Document.sender_code == agency))
    order = (Delivery.dead_at.desc(), Delivery.id.desc()) if dead else (Delivery.id.desc(),)
    rows = session.execute(query.order_by(*order).limit(limit))
    return [(document, delivery) for document, delivery in rows.tuples()]


def chunks(codes: Iterable[str], size: int = MAX_CODES) -> Iterable[list[str]]:
    batch: list[str] = []
    for code in codes:
        batch.append(code)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
