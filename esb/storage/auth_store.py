"""Session tokens, the replay cache and the audit log of the authentication service."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, joinedload

from esb.storage.tables import AccessKey, Application, AuditEvent, AuthSession, ReplayGuard


def remember_once(session: Session, scope: str, digest: str, *, expires_at: datetime, now: datetime) -> bool:
    """Record ``digest`` in ``scope`` until ``expires_at``; False if it is already recorded and live.

    One statement (insert, or take over an expired entry), so concurrent workers and nodes
    agree: exactly one of two simultaneous callers with the same digest gets True.
    """
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = (
        insert(ReplayGuard)
        .values(scope=scope, digest=digest, expires_at=expires_at)
        .on_conflict_do_update(
            index_elements=[ReplayGuard.scope, ReplayGuard.digest],
            set_={"expires_at": expires_at},
            where=ReplayGuard.expires_at < now,
        )
        .returning(ReplayGuard.digest)
    )
    return session.execute(statement).first() is not None


def add_session(
    session: Session,
    *,
    token_sha256: str,
    key: AccessKey,
    target: str | None,
    issued_at: datetime,
    expires_at: datetime,
) -> AuthSession:
    row = AuthSession(
        token_sha256=token_sha256,
        access_key_id=key.id,
        target=target,
        issued_at=issued_at,
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return row


def find_session(session: Session, token_sha256: str) -> tuple[AuthSession, AccessKey] | None:
    row = session.execute(
        select(AuthSession, AccessKey)
        .join(AccessKey, AccessKey.id == AuthSession.access_key_id)
        .where(AuthSession.token_sha256 == token_sha256)
        .options(joinedload(AccessKey.application).joinedload(Application.agency))
    ).first()
    return None if row is None else (row[0], row[1])


def record_audit(
    session: Session,
    *,
    at: datetime,
    event: str,
    outcome: str,
    access_key: str | None = None,
    agency_code: str | None = None,
    remote_addr: str | None = None,
    detail: str | None = None,
) -> None:
    session.add(
        AuditEvent(
            at=at,
            event=event,
            outcome=outcome,
            access_key=(access_key or None) and access_key[:64],
            agency_code=agency_code,
            remote_addr=remote_addr,
            detail=detail[:512] if detail else None,
        )
    )


def recent_audit(session: Session, *, limit: int = 50) -> list[AuditEvent]:
    return list(session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)))


def purge_expired(session: Session, *, now: datetime) -> int:
    """Delete expired sessions and replay entries; the number of rows removed."""
    removed = 0
    for table in (ReplayGuard, AuthSession):
        result = session.execute(delete(table).where(table.expires_at < now))
        removed += getattr(result, "rowcount", 0) or 0
    return removed
