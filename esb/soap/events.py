"""``GET /events``: the caller's notifications as server-sent events (SSE), beside the SOAP services.

Authenticated like the transfer URLs: the session key from Auth.Authenticate in
``X-Session-Token`` (or ``Authorization: Bearer <token>``).  The stream starts after the
cursor in ``Last-Event-ID`` (what a reconnecting ``EventSource`` sends) or ``?after=<id>``
(default 0: every notification kept), and carries one event per notification::

    id: 42
    event: document                      (document | status | undeliverable)
    data: {"id": 42, "kind": "document", "hubDocumentId": "…", "from": "…", "to": "…",
           "messageType": "edoc", "priority": 0, "detail": null, "at": "2026-11-21T02:30:00Z"}

(``data`` is one line).  A comment line (``: keep-alive``) every ``keepalive`` (15 s) keeps
proxies from closing an idle stream and renews the caller's presence lease.  A stream ends
after ``stream_duration`` (1 h); the client reconnects with ``Last-Event-ID`` and misses
nothing.  When a write fails (the client went away) the channel is recorded as dropped
(presence: offline at once), and the thread is released; a client that stops reading is cut
off once the socket has not taken a write for ``SEND_TIMEOUT`` seconds.  Errors before the
stream starts are JSON ``{"code", "message", "reference"}`` with the stable codes of the
SOAP faults.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs

from esb.domain.notifications import Notification, cursor_of
from esb.errors import ClientError
from esb.pipeline.notifications import Channel
from esb.soap.context import Services
from esb.soap.http_edge import STATUS_BY_CODE, error_response, session_caller

SERVICE = "Notifications"
SEND_TIMEOUT = 30.0  # seconds a write may wait for a client that does not read
RETRY_MILLISECONDS = 3000  # how soon an EventSource reconnects after a stream ends
_STATUS = {
    **STATUS_BY_CODE,
    "Client.TooManyWaiters": "429 Too Many Requests",
    "Server.Busy": "503 Service Unavailable",
    "Server.StorageUnavailable": "503 Service Unavailable",
}


class EventsApp:
    """WSGI handler for ``/events`` (mounted by the router)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", "")).rstrip("/")
        if path != "/events":  # the router matches the prefix; /events/… and /eventsX are not ours
            body = json.dumps({"error": f"no such path: {path}"}).encode()
            start_response(
                "404 Not Found", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            )
            return [body]
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        if method != "GET":
            error = ClientError(
                f"{method} is not allowed on /events; use GET", code="Client.MethodNotAllowed"
            )
            return error_response(start_response, error, _STATUS, [("Allow", "GET")])
        channel: Channel | None = None
        try:
            caller = session_caller(environ, self.services.authenticator, SERVICE)
            cursor = cursor_of(_cursor_text(environ))
            channel = self.services.notifications.open(caller, "sse")
            first = channel.next(cursor, 0)  # at once; a bad cursor is refused before the stream
        except Exception as exc:  # noqa: BLE001 - the one place SSE set-up errors become responses
            if channel is not None:
                channel.close(dropped=False, reason="sse refused")
            return error_response(start_response, exc, _STATUS)
        _limit_sends(environ)
        start_response(
            "200 OK",
            [
                ("Content-Type", "text/event-stream; charset=utf-8"),
                ("Cache-Control", "no-store"),
                ("X-Accel-Buffering", "no"),  # nginx: pass events through at once
            ],
        )
        return EventStream(channel, cursor, first)


class EventStream:
    """The response body: events as they come, keep-alives between, until the duration ends.

    The server calls :meth:`close` whatever happened; a stream that did not reach its end
    (a write failed: the client is gone) is recorded as a dropped channel.
    """

    def __init__(self, channel: Channel, cursor: int, first: list[Notification]) -> None:
        self.channel = channel
        self.cursor = cursor
        self._first = first
        self._finished = False
        self._events: Iterator[bytes] | None = None

    def __iter__(self) -> Iterator[bytes]:
        self._events = self._generate()
        return self._events

    def _generate(self) -> Iterator[bytes]:
        policy = self.channel.hub.policy
        keepalive = policy.keepalive.total_seconds()
        deadline = time.monotonic() + policy.stream_duration.total_seconds()
        yield f"retry: {RETRY_MILLISECONDS}\n: connected\n\n".encode()
        batch = self._first
        while True:
            if batch:
                self.cursor = batch[-1].id
                yield b"".join(_event(notification) for notification in batch)
            else:
                yield b": keep-alive\n\n"
                self.channel.alive()
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.channel.hub.stopping:
                break
            batch = self.channel.next(self.cursor, min(keepalive, remaining))
        self._finished = True

    def close(self) -> None:
        if self._events is not None and hasattr(self._events, "close"):
            self._events.close()
        if self._finished:
            self.channel.close(dropped=False, reason="sse stream ended")
        else:
            self.channel.close(dropped=True, reason="write failed: the SSE client went away")


def _event(notification: Notification) -> bytes:
    data = {
        "id": notification.id,
        "kind": notification.kind.value,
        "hubDocumentId": notification.hub_document_id,
        "from": notification.sender,
        "to": notification.recipient,
        "messageType": notification.message_type,
        "priority": notification.priority,
        "detail": notification.detail,
        "at": notification.at.isoformat().replace("+00:00", "Z"),
    }
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"id: {notification.id}\nevent: {notification.kind.value}\ndata: {text}\n\n".encode()


def _cursor_text(environ: dict[str, Any]) -> str | None:
    header = environ.get("HTTP_LAST_EVENT_ID")
    if header:
        return str(header)
    values = parse_qs(str(environ.get("QUERY_STRING", ""))).get("after")
    return values[0] if values else None


def _limit_sends(environ: dict[str, Any]) -> None:
    """A client that stops reading blocks our writes; give up on it after ``SEND_TIMEOUT``."""
    sock = environ.get("gunicorn.socket")
    settimeout = getattr(sock, "settimeout", None)
    if settimeout is not None:
        settimeout(SEND_TIMEOUT)
