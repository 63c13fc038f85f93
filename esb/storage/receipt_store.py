"""Hub receipts and the hub's certificates: written once, kept for good (they hold no content)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from esb.storage.tables import Document, HubCertificate, HubReceiptRow, TraceEventRow


def event_at(session: Session, document: Document, seq: int) -> TraceEventRow | None:
    return session.scalar(
        select(TraceEventRow).where(TraceEventRow.document_id == document.id, TraceEventRow.seq == seq)
    )


def events_needing_receipts(session: Session, document: Document, kinds: tuple[str, ...]) -> list[int]:
    """``seq`` of the document's events of ``kinds`` that have no receipt yet."""
    issued = select(HubReceiptRow.trace_seq).where(HubReceiptRow.document_id == document.id)
    return list(
        session.scalars(
            select(TraceEventRow.seq)
            .where(
                TraceEventRow.document_id == document.id,
                TraceEventRow.kind.in_(kinds),
                TraceEventRow.seq.not_in(issued),
            )
            .order_by(TraceEventRow.seq)
        )
    )


def receipt_for_event(session: Session, seq: int) -> HubReceiptRow | None:
    return session.scalar(select(HubReceiptRow).where(HubReceiptRow.trace_seq == seq))


def receipts_of(session: Session, document: Document) -> list[HubReceiptRow]:
    return list(
        session.scalars(
            select(HubReceiptRow)
            .where(HubReceiptRow.document_id == document.id)
            .order_by(HubReceiptRow.trace_seq)
        )
    )


def all_receipts(
    session: Session, *, after_id: int = 0, limit: int = 1000
) -> list[tuple[HubReceiptRow, str]]:
    """Receipts with their document's hub id, in id order (for ``esb audit verify``)."""
    rows = session.execute(
        select(HubReceiptRow, Document.hub_id)
        .join(Document, Document.id == HubReceiptRow.document_id)
        .where(HubReceiptRow.id > after_id)
        .order_by(HubReceiptRow.id)
        .limit(limit)
    ).tuples()
    return [(row, str(hub_id)) for row, hub_id in rows]


def remember_hub_certificate(
    session: Session, *, sha256: str, pem: str, subject: str, not_after: datetime, now: datetime
) -> None:
    if session.get(HubCertificate, sha256) is None:
        session.add(
            HubCertificate(
                sha256=sha256, pem=pem, subject=subject[:1024], not_after=not_after, first_used_at=now
            )
        )


def hub_certificates(session: Session) -> list[HubCertificate]:
    return list(session.scalars(select(HubCertificate).order_by(HubCertificate.first_used_at)))
