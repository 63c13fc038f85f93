"""The trace log: trace events written as links of one hash chain (:mod:`esb.domain.trace_chain`).

:func:`append` only queues an event on the session.  When the transaction commits, a
``before_commit`` hook takes the chain head's row lock (``SELECT … FOR UPDATE`` on
PostgreSQL; SQLite's single writer already serialises), links the queued events in the
order they were appended, inserts them and moves the head.  Taking the lock last, at
commit, keeps it short and means it is never held while waiting for any other row, so it
cannot deadlock with the document and delivery locks taken earlier in the transaction.
Nodes sharing one PostgreSQL database therefore write one chain in one order.

A rolled-back transaction writes nothing, its queued events included.  Events queued in a
transaction are not visible to queries in that same transaction (nothing reads them there).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import event, select, update
from sqlalchemy.orm import Session

from esb.domain.trace_chain import GENESIS, ChainedEvent, chain_event, timestamp
from esb.storage.tables import Document, TraceChainHead, TraceEventRow

_PENDING = "esb.trace_log.pending"
_NEW_DOCUMENTS = "esb.trace_log.new_documents"  # inserted in this transaction: no events yet
HEAD_ID = 1


@dataclass
class _Queued:
    row: TraceEventRow
    hub_document_id: str


def append(
    session: Session,
    document: Document,
    kind: str,
    *,
    at: datetime,
    actor: str,
    recipient: str | None = None,
    sha256: str | None = None,
    detail: str | None = None,
) -> TraceEventRow:
    """Queue a trace event of ``document``; it is chained and written when the session commits.

    The returned row gets its ``seq`` and ``hash`` at commit (a receipt attesting this event
    is issued after the commit, from those values).
    """
    if document.id is None:
        session.flush()
    row = TraceEventRow(
        document_id=document.id,
        at=at,
        kind=kind,
        actor=actor[:128],
        recipient_code=recipient,
        sha256=sha256,
        detail=detail[:512] if detail else None,
    )
    session.info.setdefault(_PENDING, []).append(_Queued(row, document.hub_id))
    return row


@event.listens_for(Session, "after_flush")
def _note_new_documents(session: Session, _context: object) -> None:
    new = {obj.id for obj in session.new if isinstance(obj, Document)}
    if new:
        session.info.setdefault(_NEW_DOCUMENTS, set()).update(new)


@event.listens_for(Session, "before_commit")
def _link_pending(session: Session) -> None:
    queued: list[_Queued] = session.info.pop(_PENDING, [])
    new_documents: set[int] = session.info.pop(_NEW_DOCUMENTS, set())
    if not queued:
        return
    head = session.scalars(select(TraceChainHead).where(TraceChainHead.id == HEAD_ID).with_for_update()).one()
    seq, previous = head.seq, head.hash
    last_of: dict[int, str] = {}
    for item in queued:
        row = item.row
        document_previous = last_of.get(row.document_id)
        if document_previous is None and row.document_id in new_documents:
            document_previous = GENESIS  # a document inserted in this transaction has no events yet
        if document_previous is None:
            document_previous = (
                session.scalar(
                    select(TraceEventRow.hash)
                    .where(TraceEventRow.document_id == row.document_id)
                    .order_by(TraceEventRow.seq.desc())
                    .limit(1)
                )
                or GENESIS
            )
        seq += 1
        link = chain_event(
            seq=seq,
            hub_document_id=item.hub_document_id,
            at=row.at,
            kind=row.kind,
            actor=row.actor,
            recipient=row.recipient_code,
            sha256=row.sha256,
            detail=row.detail,
            prev_hash=previous,
            doc_prev_hash=document_previous,
        )
        row.seq, row.prev_hash, row.doc_prev_hash, row.hash = (
            seq,
            link.prev_hash,
            link.doc_prev_hash,
            link.hash,
        )
        session.add(row)
        previous = last_of[row.document_id] = link.hash
    session.execute(update(TraceChainHead).where(TraceChainHead.id == HEAD_ID).values(seq=seq, hash=previous))


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)
    session.info.pop(_NEW_DOCUMENTS, None)


def chained(row: TraceEventRow, hub_document_id: str) -> ChainedEvent:
    """A stored event as the chain sees it."""
    return ChainedEvent(
        seq=row.seq,
        hub_document_id=hub_document_id,
        at=timestamp(row.at),
        kind=row.kind,
        actor=row.actor,
        recipient=row.recipient_code,
        sha256=row.sha256,
        detail=row.detail,
        prev_hash=row.prev_hash,
        doc_prev_hash=row.doc_prev_hash,
        hash=row.hash,
    )


def events_of(session: Session, document: Document) -> list[TraceEventRow]:
    return list(
        session.scalars(
            select(TraceEventRow).where(TraceEventRow.document_id == document.id).order_by(TraceEventRow.seq)
        )
    )


def chain_of(session: Session, document: Document) -> list[ChainedEvent]:
    return [chained(row, document.hub_id) for row in events_of(session, document)]


def head(session: Session) -> tuple[int, str]:
    row = session.get(TraceChainHead, HEAD_ID)
    return (row.seq, row.hash) if row is not None else (0, GENESIS)


def stream(session: Session, *, batch: int = 5000) -> Iterator[ChainedEvent]:
    """Every event of the global log in ``seq`` order, read in batches (for ``esb audit verify``)."""
    last = 0
    while True:
        rows = session.execute(
            select(TraceEventRow, Document.hub_id)
            .join(Document, Document.id == TraceEventRow.document_id)
            .where(TraceEventRow.seq > last)
            .order_by(TraceEventRow.seq)
            .limit(batch)
        ).all()
        if not rows:
            return
        for row, hub_id in rows:
            yield chained(row, hub_id)
        last = rows[-1][0].seq


def event_hash(session: Session, seq: int) -> str | None:
    """The stored hash of event ``seq`` of the global log (None when there is no such event)."""
    return session.scalar(select(TraceEventRow.hash).where(TraceEventRow.seq == seq))
