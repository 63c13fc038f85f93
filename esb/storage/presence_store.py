"""Presence rows and connection events: writes safe for several nodes, and the operators' queries.

One ``presence`` row per application that was ever seen (no row: unknown), one
``presence_event`` row per connect or disconnect.  :func:`apply` is the only writer of both:
it locks the application's row (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite transactions
already hold the database's write lock), lets a pure rule of :mod:`esb.domain.presence` decide,
and writes the result.  A row that does not exist yet is created with ``INSERT … ON CONFLICT DO
NOTHING``: when another node creates it first, the row is locked and the rule decides again on
what that node wrote, so two nodes never both record the same connect.

Functions take an open session: callers decide what commits together.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Select, Table, and_, func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from esb.domain.presence import (
    UNKNOWN,
    AgencyPresence,
    AgencyStatistics,
    ApplicationPresence,
    ConnectionEvent,
    Decision,
    PresenceEvent,
    PresenceState,
    PresenceStatus,
    agency_presence,
    agency_statistics,
    reason_text,
)
from esb.storage.tables import Agency, Application, PresenceEventRow, PresenceRow

_PRESENCE_TABLE = cast(Table, PresenceRow.__table__)
MAX_CODES = 1000  # codes per IN (...) list

Rule = Callable[[PresenceStatus], Decision]


# -- writing ------------------------------------------------------------------------------------


def status_of(row: PresenceRow | None) -> PresenceStatus:
    if row is None:
        return UNKNOWN
    return PresenceStatus(
        state=PresenceState(row.state),
        state_since=row.state_since,
        last_seen_at=row.last_seen_at,
        channel_kind=row.channel_kind,
        channel_until=row.channel_until,
        reason=row.reason,
    )


def lock(session: Session, application_id: int) -> PresenceRow | None:
    """The application's row, locked until the transaction ends (None: never seen)."""
    return session.scalars(
        select(PresenceRow).where(PresenceRow.application_id == application_id).with_for_update()
    ).one_or_none()


def apply(session: Session, *, application_id: int, agency_code: str, rule: Rule, node: str) -> Decision:
    """Decide with ``rule`` on the application's locked presence and write what changed.

    Returns the decision (its status is the current one, unwritten, when the rule changed
    nothing).
    """
    row = lock(session, application_id)
    if row is not None:
        return apply_locked(session, row, rule=rule, node=node)
    decision = rule(UNKNOWN)
    if not decision.changes(UNKNOWN) or decision.status.state is PresenceState.UNKNOWN:
        return decision  # still never seen: nothing to store
    if _insert_if_absent(session, application_id, agency_code, decision.status, node):
        _record(session, application_id, agency_code, decision, node)
        return decision
    row = lock(session, application_id)  # another node created it meanwhile: decide on what it wrote
    if row is None:  # pragma: no cover - a conflicting row cannot vanish while we wait on it
        return Decision(UNKNOWN)
    return apply_locked(session, row, rule=rule, node=node)


def apply_locked(session: Session, row: PresenceRow, *, rule: Rule, node: str) -> Decision:
    """:func:`apply` on a row this transaction already holds (:func:`lock`, :func:`due_for_sweep`)."""
    current = status_of(row)
    decision = rule(current)
    if decision.changes(current):
        _update(row, decision.status, node)
        _record(session, row.application_id, row.agency_code, decision, node)
    return decision


def _insert_if_absent(
    session: Session, application_id: int, agency_code: str, status: PresenceStatus, node: str
) -> bool:
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = (
        insert(_PRESENCE_TABLE)
        .values(
            application_id=application_id,
            agency_code=agency_code,
            state=status.state.value,
            state_since=status.state_since or status.last_seen_at,
            last_seen_at=status.last_seen_at,
            channel_kind=status.channel_kind,
            channel_until=status.channel_until,
            node=node[:128],
            reason=status.reason,
        )
        .on_conflict_do_nothing(index_elements=[_PRESENCE_TABLE.c.application_id])
        .returning(_PRESENCE_TABLE.c.application_id)
    )
    # RETURNING, not rowcount: psycopg reports no row count for this statement.
    return session.execute(statement).first() is not None


def _update(row: PresenceRow, status: PresenceStatus, node: str) -> None:
    if status.state is PresenceState.UNKNOWN or status.state_since is None:
        return
    row.state = status.state.value
    row.state_since = status.state_since
    row.last_seen_at = status.last_seen_at
    row.channel_kind = status.channel_kind
    row.channel_until = status.channel_until
    row.reason = status.reason
    row.node = node[:128]


def _record(session: Session, application_id: int, agency_code: str, decision: Decision, node: str) -> None:
    transition = decision.transition
    if transition is not None:
        add_event(
            session,
            application_id=application_id,
            agency_code=agency_code,
            at=transition.at,
            event=transition.event,
            node=node,
            reason=transition.reason,
        )


def add_event(
    session: Session,
    *,
    application_id: int,
    agency_code: str,
    at: datetime,
    event: PresenceEvent,
    node: str,
    reason: str,
) -> PresenceEventRow:
    row = PresenceEventRow(
        application_id=application_id,
        agency_code=agency_code,
        at=at,
        event=event.value,
        node=node[:128],
        reason=reason_text(reason),
    )
    session.add(row)
    return row


def due_for_sweep(session: Session, *, now: datetime, silence: timedelta, limit: int) -> list[PresenceRow]:
    """Online rows whose channel lease lapsed, or silent past ``silence`` without a channel:
    locked for this transaction, skipping rows another transaction holds (PostgreSQL)."""
    query = (
        select(PresenceRow)
        .where(
            PresenceRow.state == PresenceState.ONLINE.value,
            or_(
                and_(PresenceRow.channel_until.is_not(None), PresenceRow.channel_until < now),
                and_(
                    PresenceRow.channel_until.is_(None),
                    or_(PresenceRow.last_seen_at.is_(None), PresenceRow.last_seen_at < now - silence),
                ),
            ),
        )
        .order_by(PresenceRow.application_id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(session.scalars(query))


# -- reading ------------------------------------------------------------------------------------


def presence_of_applications(
    session: Session,
    *,
    agency: str | None = None,
    state: PresenceState | None = None,
    limit: int = 1000,
) -> list[ApplicationPresence]:
    """Every application (or an agency's) with its presence, unknown ones included; by agency, name."""
    query = (
        select(Agency.code, Application.id, Application.name, PresenceRow)
        .join(Agency, Agency.id == Application.agency_id)
        .outerjoin(PresenceRow, PresenceRow.application_id == Application.id)
        .order_by(Agency.code, Application.name)
        .limit(limit)
    )
    if agency:
        query = query.where(Agency.code == agency)
    if state is PresenceState.UNKNOWN:
        query = query.where(PresenceRow.application_id.is_(None))
    elif state is not None:
        query = query.where(PresenceRow.state == state.value)
    return [
        ApplicationPresence(str(code), int(app_id), str(name), status_of(row), row.node if row else None)
        for code, app_id, name, row in session.execute(query).tuples()
    ]


def presence_of_agencies(session: Session, codes: Iterable[str]) -> dict[str, AgencyPresence]:
    """Every code asked for → its presence (unknown when none of its applications was seen)."""
    wanted = list(dict.fromkeys(codes))
    statuses: dict[str, list[PresenceStatus]] = {code: [] for code in wanted}
    for chunk in _chunks(wanted):
        for row in session.scalars(select(PresenceRow).where(PresenceRow.agency_code.in_(chunk))):
            statuses[row.agency_code].append(status_of(row))
    return {code: agency_presence(code, found) for code, found in statuses.items()}


def last_seen_of_agencies(
    session: Session, codes: Iterable[str]
) -> dict[str, tuple[PresenceState, datetime | None]]:
    """Every code asked for → (its state, the latest activity of any of its applications).

    State: online if any application is online, offline if any was seen, unknown otherwise.
    """
    return {
        code: (presence.state, presence.last_seen_at)
        for code, presence in presence_of_agencies(session, codes).items()
    }


def online_agency_codes(session: Session) -> frozenset[str]:
    rows = session.scalars(
        select(PresenceRow.agency_code).where(PresenceRow.state == PresenceState.ONLINE.value).distinct()
    )
    return frozenset(str(code) for code in rows)


# -- history and statistics ---------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryCursor:
    """Where the next page of the history starts (the last event shown: newest first)."""

    at: datetime
    id: int


@dataclass(frozen=True)
class HistoryPage:
    events: list[ConnectionEvent]
    next: HistoryCursor | None  # None: no older events


def connection_history(
    session: Session,
    *,
    agency: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    after: HistoryCursor | None = None,
) -> HistoryPage:
    """Connects and disconnects in ``[since, until)``, newest first, ``limit`` at a time."""
    query = _events_query(agency=agency, since=since, until=until)
    if after is not None:
        query = query.where(
            or_(
                PresenceEventRow.at < after.at,
                and_(PresenceEventRow.at == after.at, PresenceEventRow.id < after.id),
            )
        )
    query = query.order_by(PresenceEventRow.at.desc(), PresenceEventRow.id.desc()).limit(limit + 1)
    events = [_event(row, name) for row, name in session.execute(query).tuples()]
    more = len(events) > limit
    events = events[:limit]
    cursor = HistoryCursor(events[-1].at, events[-1].id) if more and events else None
    return HistoryPage(events, cursor)


def statistics(
    session: Session, *, since: datetime, until: datetime, agency: str | None = None
) -> list[AgencyStatistics]:
    """Per agency over ``[since, until)``: connects, disconnects and time online (from events)."""
    events = [
        _event(row, name)
        for row, name in session.execute(_events_query(agency=agency, since=since, until=until)).tuples()
    ]
    latest = (
        select(
            PresenceEventRow.application_id,
            PresenceEventRow.agency_code,
            PresenceEventRow.event,
            func.row_number()
            .over(
                partition_by=PresenceEventRow.application_id,
                order_by=(PresenceEventRow.at.desc(), PresenceEventRow.id.desc()),
            )
            .label("rank"),
        )
        .where(PresenceEventRow.at < since)
        .subquery()
    )
    before = select(latest.c.application_id, latest.c.agency_code).where(
        latest.c.rank == 1, latest.c.event == PresenceEvent.CONNECT.value
    )
    if agency:
        before = before.where(latest.c.agency_code == agency)
    online_at_start = {int(app): str(code) for app, code in session.execute(before).tuples()}
    return agency_statistics(since=since, until=until, online_at_start=online_at_start, events=events)


def _events_query(
    *, agency: str | None, since: datetime | None, until: datetime | None
) -> Select[tuple[PresenceEventRow, str]]:
    query = select(PresenceEventRow, Application.name).join(
        Application, Application.id == PresenceEventRow.application_id
    )
    if agency:
        query = query.where(PresenceEventRow.agency_code == agency)
    if since is not None:
        query = query.where(PresenceEventRow.at >= since)
    if until is not None:
        query = query.where(PresenceEventRow.at < until)
    return query


def _event(row: PresenceEventRow, application_name: str) -> ConnectionEvent:
    return ConnectionEvent(
        id=row.id,
        at=row.at,
        agency_code=row.agency_code,
        application_id=row.application_id,
        application_name=application_name,
        event=PresenceEvent(row.event),
        node=row.node,
        reason=row.reason,
    )


def _chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), MAX_CODES):
        yield values[start : start + MAX_CODES]
