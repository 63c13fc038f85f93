"""Notifications and their callback pushes: written at commit, in commit order, read by cursor.

:func:`add` only queues a notification on the session.  When the transaction commits, a
``before_commit`` hook

1. on PostgreSQL takes the trace chain head's row lock (the lock every document write
   already takes at commit, :mod:`esb.storage.trace_log`), so notification ids are drawn in
   commit order: a reader that has seen id *n* never later finds a smaller id appear, and a
   cursor (``afterId``, ``Last-Event-ID``) never skips a notification.  On SQLite every
   transaction already holds the single write lock;
2. inserts the notifications, and one ``pending`` callback push per active application of
   the addressee that subscribed a callback (one ``INSERT … SELECT`` each);
3. on PostgreSQL calls ``pg_notify('esb_notify', 'agency|id|priority')`` for each: the
   server delivers it to every listening node when, and only if, the transaction commits.

After the commit an ``after_commit`` hook hands the wake-ups to this process's listeners
(:func:`on_commit`), so waiters in the same process wake without a round trip; other
processes learn through :class:`WakeChannel` (PostgreSQL) or by looking (:func:`since`).
A rolled-back transaction writes and wakes nothing.

Callback pushes are claimed with a lease (``lease_owner``, ``lease_until``), ``FOR UPDATE
SKIP LOCKED`` on PostgreSQL, highest priority first: two nodes never push the same one, and
a killed node's lease expires so another node takes the push over.
"""

from __future__ import annotations

import inspect
import logging
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy import Engine, delete, exists, func, insert, literal, or_, select, update
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from esb.domain.exchange import DeliveryState
from esb.domain.notifications import (
    Notification,
    NotificationKind,
    PushState,
    WakeUp,
    parse_wake_payload,
    wake_payload,
)
from esb.storage import trace_log
from esb.storage.database import Database, StorageUnavailable
from esb.storage.tables import (
    Agency,
    Application,
    CallbackPushRow,
    Delivery,
    Document,
    NotificationRow,
    TraceChainHead,
    UtcDateTime,
)

log = logging.getLogger(__name__)

CHANNEL = "esb_notify"
_QUEUED = "esb.notification_store.queued"
_WAKE = "esb.notification_store.wake"

CommitListener = Callable[[Sequence[WakeUp]], None]
# Weakly held: a hub that is dropped (a runtime of a CLI command or a test) stops listening,
# and neither it nor its engine is kept alive by being registered here.
_listeners: weakref.WeakKeyDictionary[Engine, list[Callable[[], CommitListener | None]]] = (
    weakref.WeakKeyDictionary()
)
_listeners_lock = threading.Lock()


# ---------------------------------------------------------------------------------------- writing


def add(
    session: Session,
    *,
    agency: str,
    kind: str,
    hub_document_id: str,
    sender: str,
    recipient: str | None,
    message_type: str,
    priority: int,
    detail: str | None,
    at: datetime,
) -> NotificationRow:
    """Queue a notification to ``agency``; it is written (and its id drawn) when the session commits.

    Its callback pushes (the addressee's subscribed applications, due at ``at``) are written
    with it, and the wake-up goes out after the commit (see the module docstring).
    """
    row = NotificationRow(
        agency_code=agency,
        kind=NotificationKind(kind).value,
        hub_document_id=hub_document_id,
        sender_code=sender,
        recipient_code=recipient,
        message_type=message_type,
        priority=priority,
        detail=detail[:512] if detail else None,
        created_at=at,
    )
    session.info.setdefault(_QUEUED, []).append(row)
    return row


@sa_event.listens_for(Session, "before_commit")
def _write_queued(session: Session) -> None:
    queued: list[NotificationRow] = session.info.pop(_QUEUED, [])
    if not queued:
        return
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres:  # ids in commit order: drawn under the lock every document commit takes
        session.execute(
            select(TraceChainHead.id).where(TraceChainHead.id == trace_log.HEAD_ID).with_for_update()
        )
    session.add_all(queued)
    session.flush()
    wake: list[WakeUp] = []
    for row in queued:
        pushes = _add_pushes(session, row)
        wake.append(WakeUp(row.agency_code, row.id, row.priority, pushes))
        if postgres:
            session.execute(select(func.pg_notify(CHANNEL, wake_payload(wake[-1]))))
    session.info.setdefault(_WAKE, []).extend(wake)


def _add_pushes(session: Session, row: NotificationRow) -> int:
    """One pending push per active, subscribed application of the addressee (INSERT … SELECT)."""
    at = literal(row.created_at, UtcDateTime())
    subscribed = (
        select(
            literal(row.id),
            Application.id,
            literal(row.priority),
            literal(PushState.PENDING.value),
            literal(0),
            at,
            at,
        )
        .join(Agency, Agency.id == Application.agency_id)
        .where(
            Agency.code == row.agency_code,
            Agency.state == "active",
            Application.state == "active",
            Application.callback_url.is_not(None),
        )
    )
    written = session.scalars(
        insert(CallbackPushRow)
        .from_select(
            [
                CallbackPushRow.notification_id,
                CallbackPushRow.application_id,
                CallbackPushRow.priority,
                CallbackPushRow.state,
                CallbackPushRow.attempts,
                CallbackPushRow.next_attempt_at,
                CallbackPushRow.created_at,
            ],
            subscribed,
        )
        .returning(CallbackPushRow.id)
    )
    return len(written.all())  # RETURNING: psycopg gives no row count for INSERT … SELECT


@sa_event.listens_for(Session, "after_commit")
def _wake_after_commit(session: Session) -> None:
    wake: list[WakeUp] = session.info.pop(_WAKE, [])
    if not wake:
        return
    with _listeners_lock:
        references = list(_listeners.get(session.bind, ())) if isinstance(session.bind, Engine) else []
    for reference in references:
        listener = reference()
        if listener is None:
            continue
        try:
            listener(wake)
        except Exception:  # a listener's failure must not surface in the committer
            log.exception("a notification commit listener failed")


@sa_event.listens_for(Session, "after_rollback")
def _drop_queued(session: Session) -> None:
    session.info.pop(_QUEUED, None)
    session.info.pop(_WAKE, None)


def on_commit(database: Database, listener: CommitListener) -> Callable[[], None]:
    """Call ``listener`` with the wake-ups of every commit in this process on ``database``.

    Returns the function that removes it again.  Listeners run in the committing thread,
    after the commit: keep them short (set an event), never raise.  A bound method is held
    weakly (it stops being called when its object is gone); other callables strongly.
    """
    engine = database.engine
    reference: Callable[[], CommitListener | None] = (
        weakref.WeakMethod(listener) if inspect.ismethod(listener) else _Strong(listener)
    )
    with _listeners_lock:
        registered = _listeners.setdefault(engine, [])
        registered[:] = [ref for ref in registered if ref() is not None]
        registered.append(reference)

    def remove() -> None:
        with _listeners_lock:
            remaining = [
                ref for ref in _listeners.get(engine, []) if ref is not reference and ref() is not None
            ]
            if remaining:
                _listeners[engine] = remaining
            else:
                _listeners.pop(engine, None)

    return remove


class _Strong:
    """A strong reference with the interface of ``weakref.ref``."""

    def __init__(self, listener: CommitListener) -> None:
        self.listener = listener

    def __call__(self) -> CommitListener:
        return self.listener


# ---------------------------------------------------------------------------------------- reading


def notification_of(row: NotificationRow) -> Notification:
    return Notification(
        id=row.id,
        agency=row.agency_code,
        kind=NotificationKind(row.kind),
        hub_document_id=row.hub_document_id,
        sender=row.sender_code,
        recipient=row.recipient_code,
        message_type=row.message_type,
        priority=row.priority,
        detail=row.detail,
        at=row.created_at,
    )


def after(session: Session, agency: str, after_id: int, *, limit: int) -> list[Notification]:
    """Notifications to ``agency`` with an id above ``after_id``, oldest first (id = commit order).

    Ordered by id, not by priority, so that the last id is a cursor that skips nothing; each
    carries its priority for the consumer to act on urgent ones first.
    """
    rows = session.scalars(
        select(NotificationRow)
        .where(NotificationRow.agency_code == agency, NotificationRow.id > after_id)
        .order_by(NotificationRow.id)
        .limit(limit)
    )
    return [notification_of(row) for row in rows]


def latest_id(session: Session, agency: str | None = None) -> int:
    """The newest notification id (of ``agency``, or of anyone); 0 when there is none."""
    query = select(func.max(NotificationRow.id))
    if agency is not None:
        query = query.where(NotificationRow.agency_code == agency)
    return int(session.scalar(query) or 0)


def since(session: Session, after_id: int, *, limit: int) -> list[tuple[int, str]]:
    """(id, addressee) of notifications above ``after_id``, oldest first: how a process that was
    not told (SQLite, a lost NOTIFY) finds whom to wake."""
    rows = session.execute(
        select(NotificationRow.id, NotificationRow.agency_code)
        .where(NotificationRow.id > after_id)
        .order_by(NotificationRow.id)
        .limit(limit)
    )
    return [(int(row[0]), str(row[1])) for row in rows]


def sweep(session: Session, *, before: datetime, limit: int) -> int:
    """Delete up to ``limit`` notifications created before ``before`` with no pending push, and
    their finished pushes.  The newest notification always stays, so ids are never reused."""
    newest = session.scalar(select(func.max(NotificationRow.id)))
    if newest is None:
        return 0
    pending = exists().where(
        CallbackPushRow.notification_id == NotificationRow.id,
        CallbackPushRow.state == PushState.PENDING.value,
    )
    ids = list(
        session.scalars(
            select(NotificationRow.id)
            .where(NotificationRow.created_at < before, NotificationRow.id < newest, ~pending)
            .order_by(NotificationRow.id)
            .limit(limit)
        )
    )
    if not ids:
        return 0
    session.execute(delete(CallbackPushRow).where(CallbackPushRow.notification_id.in_(ids)))
    session.execute(delete(NotificationRow).where(NotificationRow.id.in_(ids)))
    return len(ids)


# ------------------------------------------------------------------------------ subscriptions


def subscription(session: Session, application_id: int) -> tuple[str | None, str | None]:
    """(registered endpoint, subscribed callback URL) of an application."""
    row = session.execute(
        select(Application.endpoint, Application.callback_url).where(Application.id == application_id)
    ).first()
    if row is None:
        return None, None
    return row[0], row[1]


def set_callback(session: Session, application_id: int, url: str | None, *, now: datetime) -> None:
    """Subscribe (``url``) or unsubscribe (None); unsubscribing cancels the pushes still pending."""
    session.execute(update(Application).where(Application.id == application_id).values(callback_url=url))
    if url is None:
        session.execute(
            update(CallbackPushRow)
            .where(
                CallbackPushRow.application_id == application_id,
                CallbackPushRow.state == PushState.PENDING.value,
            )
            .values(state=PushState.CANCELLED.value, finished_at=now, lease_owner=None, lease_until=None)
        )


# ---------------------------------------------------------------------------------------- pushes


@dataclass(frozen=True)
class DuePush:
    """A claimed callback push with what it takes to send it."""

    push_id: int
    attempts: int
    application_id: int
    application_name: str
    callback_url: str | None  # None: unsubscribed since
    endpoint: str | None  # the operator-registered endpoint it must still equal
    notification: Notification


def claim_pushes(
    session: Session, *, now: datetime, owner: str, lease: timedelta, limit: int
) -> list[DuePush]:
    """Up to ``limit`` due pushes (highest priority first), leased to ``owner`` until now + lease.

    Due: pending, ``next_attempt_at`` reached, and no live lease (a lease that expired, of a
    node that died mid-push, is taken over).  Rows another transaction holds are skipped.
    """
    rows = list(
        session.scalars(
            select(CallbackPushRow)
            .where(
                CallbackPushRow.state == PushState.PENDING.value,
                CallbackPushRow.next_attempt_at <= now,
                or_(CallbackPushRow.lease_until.is_(None), CallbackPushRow.lease_until <= now),
            )
            .order_by(CallbackPushRow.priority.desc(), CallbackPushRow.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    if not rows:
        return []
    for row in rows:
        row.lease_owner = owner[:128]
        row.lease_until = now + lease
    ids = [row.id for row in rows]
    details: dict[int, Any] = {
        int(found[0]): found
        for found in session.execute(
            select(
                CallbackPushRow.id,
                Application.name,
                Application.callback_url,
                Application.endpoint,
                NotificationRow,
            )
            .join(Application, Application.id == CallbackPushRow.application_id)
            .join(NotificationRow, NotificationRow.id == CallbackPushRow.notification_id)
            .where(CallbackPushRow.id.in_(ids))
        )
    }
    return [
        DuePush(
            push_id=row.id,
            attempts=row.attempts,
            application_id=row.application_id,
            application_name=str(details[row.id][1]),
            callback_url=details[row.id][2],
            endpoint=details[row.id][3],
            notification=notification_of(details[row.id][4]),
        )
        for row in rows
    ]


def finish_push(
    session: Session, push_id: int, owner: str, *, state: PushState, at: datetime, error: str | None = None
) -> bool:
    """End a push this owner holds (sent, dead or cancelled); False when the lease was lost."""
    values: dict[str, Any] = {
        "state": state.value,
        "finished_at": at,
        "lease_owner": None,
        "lease_until": None,
    }
    if error is not None:
        values["last_error"] = error[:512]
    if state is PushState.DEAD:
        values["attempts"] = CallbackPushRow.attempts + 1
    result = session.execute(
        update(CallbackPushRow)
        .where(
            CallbackPushRow.id == push_id,
            CallbackPushRow.lease_owner == owner[:128],
            CallbackPushRow.state == PushState.PENDING.value,
        )
        .values(**values)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def postpone_push(
    session: Session, push_id: int, owner: str, *, next_attempt_at: datetime, error: str
) -> bool:
    """A failed attempt: one more counted, the lease released, due again at ``next_attempt_at``."""
    result = session.execute(
        update(CallbackPushRow)
        .where(
            CallbackPushRow.id == push_id,
            CallbackPushRow.lease_owner == owner[:128],
            CallbackPushRow.state == PushState.PENDING.value,
        )
        .values(
            attempts=CallbackPushRow.attempts + 1,
            next_attempt_at=next_attempt_at,
            last_error=error[:512],
            lease_owner=None,
            lease_until=None,
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def delivery_settled(session: Session, hub_document_id: str, agency: str) -> bool:
    """Whether ``agency`` already fetched (or no longer awaits) this document: no push needed."""
    row = session.execute(
        select(Delivery.state, Delivery.fetched_at)
        .join(Document, Document.id == Delivery.document_id)
        .where(Document.hub_id == hub_document_id, Delivery.recipient_code == agency)
    ).first()
    if row is None:
        return False
    state, fetched_at = row
    return fetched_at is not None or state not in (DeliveryState.QUEUED.value, DeliveryState.PENDING.value)


# ------------------------------------------------------------------------------ the wake channel


class WakeChannel:
    """A PostgreSQL connection of its own, in autocommit, that ``LISTEN``s on ``esb_notify``.

    Not pooled and not shared: one per process (its listener thread).  Any failure of the
    connection is :class:`StorageUnavailable`; open a new channel to reconnect.
    """

    def __init__(self, database: Database, *, connect_timeout: int = 5) -> None:
        if database.dialect != "postgresql":
            raise ValueError("LISTEN/NOTIFY needs PostgreSQL")
        args, kwargs = database.engine.dialect.create_connect_args(database.engine.url)
        kwargs.pop("context", None)
        try:
            self._connection = psycopg.connect(
                *args, **kwargs, autocommit=True, connect_timeout=connect_timeout
            )
            self._connection.execute(f"LISTEN {CHANNEL}")
        except psycopg.Error as exc:
            raise StorageUnavailable(f"cannot listen for notifications: {type(exc).__name__}") from None

    @property
    def backend_pid(self) -> int:
        """The server process of this connection (``pg_terminate_backend`` in tests)."""
        return int(self._connection.info.backend_pid)

    def receive(self, timeout: float) -> list[WakeUp]:
        """The wake-ups that arrive within ``timeout`` seconds (returns at the first batch)."""
        try:
            notices = list(self._connection.notifies(timeout=timeout, stop_after=1))
        except psycopg.Error as exc:
            raise StorageUnavailable(
                f"the notification listener lost its connection: {type(exc).__name__}"
            ) from None
        if self._connection.closed:
            raise StorageUnavailable("the notification listener lost its connection")
        wakes = (parse_wake_payload(notice.payload) for notice in notices if notice.channel == CHANNEL)
        return [wake for wake in wakes if wake is not None]

    def close(self) -> None:
        try:
            self._connection.close()
        except psycopg.Error:
            log.debug("closing the notification listener's connection failed", exc_info=True)
