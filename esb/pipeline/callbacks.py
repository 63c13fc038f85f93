"""Callback pushes: a small signed SOAP ``Notify`` to each subscribed application's endpoint.

Worker step ``callbacks`` (:meth:`CallbackPusher.run`), on any number of nodes:

1. **claim** due pushes in a short transaction, highest priority first, each with a lease
   (``FOR UPDATE SKIP LOCKED`` on PostgreSQL): two nodes never push the same one, and the
   lease of a node killed mid-push lapses, so another node takes the push over;
2. outside any transaction, per push (several at once): **cancel** it when it is no longer
   worth sending (the application unsubscribed, or its endpoint was changed by an operator;
   the addressee already fetched or no longer awaits the document), else **POST** the Notify
   (:mod:`esb.security.notification_signature`, signed by the hub's key) with a short
   timeout and without following redirects;
3. **record** the outcome, only while still holding the lease: a 2xx answer is ``sent``, with
   a ``notified`` trace event on the document and the application marked seen
   (``callback-ok``); a failure counts an attempt and waits as the retry policy says
   (exponential back-off with jitter); when the policy is exhausted the push is ``dead`` and,
   for a document or status, the delivery is reported undeliverable to its sender.

Pushes go only to the endpoint an operator registered for the application, so the hub is
never made to call an address a caller chose.  Delivery is at least once: a node that dies
after the POST but before recording it leaves the push to be sent again; receivers
de-duplicate by ``notificationId``.  Errors recorded (``last_error``) name the failure,
never the URL, the request or the answer's body.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from random import SystemRandom
from typing import Protocol

import requests

from esb.clock import Clock, utc_now
from esb.domain.access import Caller
from esb.domain.delivery_policy import RetryPolicy
from esb.domain.exchange import TraceKind
from esb.domain.notifications import PushState, normalise_callback_url
from esb.errors import ClientError, EsbError
from esb.security.notification_signature import CONTENT_TYPE, SOAP_ACTION, sign_notify
from esb.security.signing_key import SigningKey
from esb.storage import exchange_store
from esb.storage import notification_store as store
from esb.storage.database import Database

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0  # seconds to connect, and again to read the answer
DEFAULT_LEASE = timedelta(seconds=60)  # must outlast a round of pushes (2 × both timeouts)
DEFAULT_PARALLEL = 8
_RANDOM = SystemRandom()

Poster = Callable[[str, bytes, dict[str, str], float], int]
"""``post(url, body, headers, timeout) -> HTTP status``; raises ``OSError`` or
``requests.RequestException`` when no answer came."""

ReportUndeliverable = Callable[[str, str, str], object]
"""``report(hub_document_id, recipient, reason)``: esb.pipeline.undeliverable.Undeliverable.report."""


class SeenSink(Protocol):
    def seen(self, caller: Caller, reason: str) -> None: ...


def http_post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """POST without following redirects; the answer's body is never read."""
    with requests.post(
        url, data=body, headers=headers, timeout=(timeout, timeout), allow_redirects=False, stream=True
    ) as response:
        return int(response.status_code)


class CallbackPusher:
    """The ``callbacks`` worker step (see the module docstring)."""

    def __init__(
        self,
        database: Database,
        key: SigningKey,
        retry: RetryPolicy,
        *,
        node_name: str,
        presence: SeenSink | None = None,
        report_undeliverable: ReportUndeliverable | None = None,
        clock: Clock = utc_now,
        random: Callable[[], float] = _RANDOM.random,
        post: Poster = http_post,
        timeout: float = DEFAULT_TIMEOUT,
        lease: timedelta = DEFAULT_LEASE,
        parallel: int = DEFAULT_PARALLEL,
        owner: str | None = None,
    ) -> None:
        self.database = database
        self.key = key
        self.retry = retry
        self.presence = presence
        self.report_undeliverable = report_undeliverable
        self.clock = clock
        self.random = random
        self.post = post
        self.timeout = timeout
        self.lease = lease
        self.parallel = max(1, parallel)
        self.owner = owner or f"{node_name}:{os.getpid()}:{secrets.token_hex(4)}"
        self.actor = f"hub:{node_name}"
        self.node_name = node_name
        self._pool: ThreadPoolExecutor | None = None

    def run(self, limit: int) -> int:
        """Push what is due (at most ``limit``, and two rounds of the parallel pushes); returns
        how many pushes were handled (sent, retried later, dead or cancelled)."""
        now = self.clock()
        with self.database.transaction() as session:
            claimed = store.claim_pushes(
                session, now=now, owner=self.owner, lease=self.lease, limit=min(limit, 2 * self.parallel)
            )
        if not claimed:
            return 0
        if len(claimed) == 1 or self.parallel == 1:
            for push in claimed:
                self._handle(push)
        else:
            list(self._executor().map(self._handle, claimed))
        return len(claimed)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    # -- one push -------------------------------------------------------------------------------

    def _handle(self, push: store.DuePush) -> None:
        try:
            self._push(push)
        except EsbError as exc:  # the database failed: the lease lapses and the push is retried
            log.warning("callback push %s: %s", push.push_id, exc)
        except Exception:
            log.exception("callback push %s failed unexpectedly", push.push_id)

    def _push(self, push: store.DuePush) -> None:
        notification = push.notification
        why_not = self._cancel_reason(push)
        if why_not is not None:
            with self.database.transaction() as session:
                store.finish_push(
                    session,
                    push.push_id,
                    self.owner,
                    state=PushState.CANCELLED,
                    at=self.clock(),
                    error=why_not,
                )
            return
        url = str(push.callback_url)
        body = sign_notify(notification, self.key, sent_at=self.clock())
        headers = {"Content-Type": CONTENT_TYPE, "SOAPAction": SOAP_ACTION, "X-LGSP-Node": self.node_name}
        try:
            status = self.post(url, body, headers, self.timeout)
            error = None if 200 <= status < 300 else _status_error(status)
        except (OSError, requests.RequestException) as exc:
            error = _failure_text(exc)
        if error is None:
            self._sent(push)
        else:
            self._failed(push, error)

    def _cancel_reason(self, push: store.DuePush) -> str | None:
        if push.callback_url is None:
            return "the application unsubscribed"
        if _normalised(push.callback_url) != _normalised(push.endpoint):
            return "the callback is no longer the application's registered endpoint"
        notification = push.notification
        if notification.kind.is_delivery:
            with self.database.transaction() as session:
                if store.delivery_settled(session, notification.hub_document_id, notification.agency):
                    return "the addressee already fetched the document"
        return None

    def _sent(self, push: store.DuePush) -> None:
        notification = push.notification
        now = self.clock()
        with self.database.transaction() as session:
            if not store.finish_push(session, push.push_id, self.owner, state=PushState.SENT, at=now):
                log.info("callback push %s was sent after its lease was lost", push.push_id)
                return
            document = exchange_store.find_document(session, notification.hub_document_id)
            if document is not None and notification.kind.is_delivery:
                exchange_store.add_event(
                    session,
                    document,
                    TraceKind.NOTIFIED,
                    at=now,
                    actor=self.actor,
                    recipient=notification.agency,
                    detail=f"callback to {push.application_name} (notification {notification.id})",
                )
        if self.presence is not None:
            caller = Caller(notification.agency, push.application_id, push.application_name, None)
            try:
                self.presence.seen(caller, "callback-ok")
            except EsbError as exc:
                log.warning("presence after a callback: %s", exc)

    def _failed(self, push: store.DuePush, error: str) -> None:
        notification = push.notification
        attempts = push.attempts + 1
        now = self.clock()
        next_attempt = self.retry.next_attempt(attempts, now, self.random())
        with self.database.transaction() as session:
            if next_attempt is not None:
                if not store.postpone_push(
                    session, push.push_id, self.owner, next_attempt_at=next_attempt, error=error
                ):
                    log.info("callback push %s failed after its lease was lost", push.push_id)
                return
            if not store.finish_push(
                session, push.push_id, self.owner, state=PushState.DEAD, at=now, error=error
            ):
                return
        log.info(
            "callback push %s to application %s is dead after %d attempts: %s",
            push.push_id,
            push.application_id,
            attempts,
            error,
        )
        if notification.kind.is_delivery and self.report_undeliverable is not None:
            reason = f"its callback endpoint ({push.application_name}) failed {attempts} times; last: {error}"
            try:
                self.report_undeliverable(notification.hub_document_id, notification.agency, reason)
            except EsbError as exc:
                log.warning("undeliverable report of %s: %s", notification.hub_document_id, exc)

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.parallel, thread_name_prefix="esb-callback")
        return self._pool


def _normalised(url: str | None) -> str | None:
    if not url:
        return None
    try:
        return normalise_callback_url(url)
    except ClientError:
        return None


def _status_error(status: int) -> str:
    if 300 <= status < 400:
        return f"HTTP {status}: a redirect, not followed"
    return f"HTTP {status}"


def _failure_text(exc: BaseException) -> str:
    if isinstance(exc, requests.Timeout):
        return "no answer within the timeout"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed (refused, reset or unreachable)"
    return f"request failed ({type(exc).__name__})"
