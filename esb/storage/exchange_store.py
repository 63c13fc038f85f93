"""Queries of the document exchange: documents, deliveries (mailboxes), trace, upload spaces.

Work claiming (:func:`claim_documents`) uses ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so
several workers on several nodes never take the same document; on SQLite every transaction
already holds the single write lock (``BEGIN IMMEDIATE``), which serialises claims.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from esb.domain.exchange import DeliveryState, DocumentState, TraceEvent, TraceKind
from esb.errors import ClientError
from esb.storage import trace_log
from esb.storage.tables import Delivery, Document, TraceEventRow, UploadSpaceRow


class DocumentNotFound(ClientError):
    default_code = "Client.DocumentNotFound"


def add_event(
    session: Session,
    document: Document,
    kind: TraceKind,
    *,
    at: datetime,
    actor: str,
    recipient: str | None = None,
    sha256: str | None = None,
    detail: str | None = None,
) -> TraceEventRow:
    """Queue a trace event; it is chained into the tamper-evident log at commit (trace_log)."""
    return trace_log.append(
        session, document, kind.value, at=at, actor=actor, recipient=recipient, sha256=sha256, detail=detail
    )


def events_of(session: Session, document: Document) -> list[TraceEvent]:
    return [
        TraceEvent(
            at=row.at,
            kind=TraceKind(row.kind),
            actor=row.actor,
            recipient=row.recipient_code,
            sha256=row.sha256,
            detail=row.detail,
            seq=row.seq,
            hash=row.hash,
        )
        for row in trace_log.events_of(session, document)
    ]


def find_document(session: Session, hub_id: str, *, lock: bool = False) -> Document | None:
    query = select(Document).where(Document.hub_id == hub_id)
    return session.scalar(query.with_for_update() if lock else query)


def find_by_idempotency_key(session: Session, key: str) -> Document | None:
    return session.scalar(select(Document).where(Document.idempotency_key == key))


def find_sent_document(
    session: Session, sender: str, document_id: str, *, recipient: str | None = None
) -> Document | None:
    """The first edoc ``sender`` sent with this DocumentId (to ``recipient``, if given).

    Updates and replacements reuse the DocumentId of the document they change, so the one a
    status is about is the first that reached the agency reporting (or, for 13, asked).
    """
    query = (
        select(Document)
        .where(
            Document.sender_code == sender,
            Document.document_id == document_id,
            Document.message_type == "edoc",
        )
        .order_by(Document.id)
        .limit(1)
    )
    if recipient is not None:
        delivered_to = select(Delivery.document_id).where(Delivery.recipient_code == recipient)
        query = query.where(Document.id.in_(delivered_to))
    return session.scalar(query)


def find_visible_by_document_id(session: Session, document_id: str, agency: str) -> Document | None:
    """The first edoc with this DocumentId that ``agency`` sent or received."""
    recipient_of = select(Delivery.document_id).where(Delivery.recipient_code == agency)
    return session.scalar(
        select(Document)
        .where(
            Document.document_id == document_id,
            or_(Document.sender_code == agency, Document.id.in_(recipient_of)),
        )
        .order_by(Document.id)
        .limit(1)
    )


def delivery_for(session: Session, document: Document, recipient: str) -> Delivery | None:
    return session.scalar(
        select(Delivery).where(Delivery.document_id == document.id, Delivery.recipient_code == recipient)
    )


def lock_delivery(session: Session, hub_id: str, recipient: str) -> tuple[Document, Delivery]:
    """The delivery of ``hub_id`` to ``recipient``, locked for update; unknown and foreign look alike.

    The document row is locked first, then the delivery: the order every writer follows
    (routing, expiry, purge lock the document), so two of them never deadlock.
    """
    document = session.scalar(select(Document).where(Document.hub_id == hub_id).with_for_update())
    delivery = None
    if document is not None:
        delivery = session.scalar(
            select(Delivery)
            .where(Delivery.document_id == document.id, Delivery.recipient_code == recipient)
            .with_for_update()
        )
    if document is None or delivery is None:
        raise DocumentNotFound(f"no document {hub_id} for {recipient}")
    return document, delivery


def mailbox(
    session: Session, recipient: str, message_type: str, *, limit: int
) -> list[tuple[Document, Delivery]]:
    """Pending deliveries of one mailbox, in delivery order (priority, due date, age)."""
    rows = session.execute(
        select(Document, Delivery)
        .join(Delivery, Delivery.document_id == Document.id)
        .where(
            Delivery.recipient_code == recipient,
            Delivery.message_type == message_type,
            Delivery.state == DeliveryState.PENDING.value,
        )
        .order_by(
            Delivery.priority.desc(),
            func.coalesce(Document.due_date, "9999-12-31"),
            Document.accepted_at,
            Document.id,
        )
        .limit(limit)
    )
    return [(doc, delivery) for doc, delivery in rows.tuples()]


def claim_documents(
    session: Session, *, state: DocumentState, limit: int, hub_id: str | None = None
) -> list[Document]:
    """Up to ``limit`` documents in ``state``, locked for this transaction; rows another
    transaction holds are skipped (PostgreSQL), so concurrent workers never take the same one."""
    query = (
        select(Document)
        .where(Document.state == state.value)
        .order_by(Document.priority.desc(), Document.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if hub_id is not None:
        query = query.where(Document.hub_id == hub_id)
    return list(session.scalars(query))


def route_deliveries(session: Session, document: Document, now: datetime) -> list[str]:
    """Queued local deliveries of ``document`` become pending (bridge ones wait for their
    adapter: esb.pipeline.undeliverable); returns their recipients."""
    queued = session.execute(
        select(Delivery.id, Delivery.recipient_code)
        .where(
            Delivery.document_id == document.id,
            Delivery.state == DeliveryState.QUEUED.value,
            Delivery.route == "local",
        )
        .order_by(Delivery.id)
    ).all()
    session.execute(
        update(Delivery)
        .where(Delivery.id.in_([row[0] for row in queued]))
        .values(state=DeliveryState.PENDING.value, available_at=now)
    )
    return [str(row[1]) for row in queued]


def due_for_expiry(session: Session, now: datetime, limit: int) -> list[Document]:
    return list(
        session.scalars(
            select(Document)
            .where(
                Document.state.in_([DocumentState.ACCEPTED.value, DocumentState.ROUTED.value]),
                Document.retain_until < now,
            )
            .order_by(Document.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )


def awaiting_purge(session: Session, limit: int) -> list[Document]:
    """Finished documents whose content is still stored (a purge that was interrupted)."""
    return list(
        session.scalars(
            select(Document)
            .where(
                Document.state.in_([DocumentState.COMPLETED.value, DocumentState.EXPIRED.value]),
                Document.purged_at.is_(None),
            )
            .order_by(Document.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )


def open_deliveries(session: Session, document: Document) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(Delivery)
            .where(Delivery.document_id == document.id, Delivery.state != DeliveryState.DONE.value)
        )
        or 0
    )


def find_space(session: Session, space_id: str, *, lock: bool = False) -> UploadSpaceRow | None:
    query = select(UploadSpaceRow).where(UploadSpaceRow.space_id == space_id)
    if lock:
        query = query.with_for_update()
    return session.scalar(query)


def expired_spaces(session: Session, now: datetime, limit: int) -> list[UploadSpaceRow]:
    return list(
        session.scalars(
            select(UploadSpaceRow)
            .where(UploadSpaceRow.state.in_(["open", "uploaded"]), UploadSpaceRow.expires_at < now)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )


def count_by_state(session: Session) -> dict[str, int]:
    rows = session.execute(select(Document.state, func.count()).group_by(Document.state))
    return {state: int(count) for state, count in rows.tuples()}


def recent_documents(session: Session, *, agency: str | None, limit: int) -> list[Document]:
    query = select(Document).order_by(Document.id.desc()).limit(limit)
    if agency is not None:
        recipient_of = select(Delivery.document_id).where(Delivery.recipient_code == agency)
        query = query.where(or_(Document.sender_code == agency, Document.id.in_(recipient_of)))
    return list(session.scalars(query))
