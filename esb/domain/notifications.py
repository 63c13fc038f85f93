"""Notifications (thông báo) to agencies, as a pure model: what one carries, how a wake-up
travels between nodes, the limits of a notification channel, and callback addresses.

A notification tells an agency that something waits for it: a document or a status in its
mailbox, or a report that one of its own documents is undeliverable to a destination.  It
carries identifiers and metadata only, never a subject or content; the agency then fetches
through DocumentExchange as usual.  Its ``id`` is a cursor: ids grow in the order the
notifications became visible (commit order), so ``afterId`` / ``Last-Event-ID`` never skips one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import urlsplit, urlunsplit

from esb.errors import ClientError

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "Notification",
    "NotificationKind",
    "NotificationPolicy",
    "PushState",
    "WakeUp",
    "cursor_of",
    "normalise_callback_url",
    "parse_wake_payload",
    "wake_payload",
]

MAX_PAYLOAD_BYTES = 7999  # PostgreSQL NOTIFY payloads must stay under 8000 bytes


class NotificationKind(StrEnum):
    DOCUMENT = "document"  # an edoc waits in the agency's mailbox
    STATUS = "status"  # a status package waits in the agency's mailbox
    UNDELIVERABLE = "undeliverable"  # a document the agency sent cannot reach a destination

    @property
    def is_delivery(self) -> bool:
        """About a delivery waiting for the addressee (document or status), not a report."""
        return self is not NotificationKind.UNDELIVERABLE


class PushState(StrEnum):
    """State of one notification's push to one application's callback endpoint."""

    PENDING = "pending"  # due at next_attempt_at (retried with back-off)
    SENT = "sent"  # the endpoint answered 2xx
    DEAD = "dead"  # the retry policy is exhausted
    CANCELLED = "cancelled"  # no longer worth sending: fetched already, or unsubscribed


@dataclass(frozen=True)
class Notification:
    """One notification to ``agency`` (the addressee)."""

    id: int
    agency: str
    kind: NotificationKind
    hub_document_id: str
    sender: str  # "from": who sent the document
    recipient: str | None  # "to": the destination (the addressee for document and status)
    message_type: str  # edoc | status
    priority: int  # 0 thường … 4 hỏa tốc hẹn giờ (edXML Priority)
    detail: str | None  # why, for undeliverable reports
    at: datetime


@dataclass(frozen=True)
class WakeUp:
    """What crosses nodes when a notification commits: whom to wake, not what to tell them."""

    agency: str
    notification_id: int
    priority: int
    pushes: int = 0  # callback pushes written with it: the delivery workers have work


def wake_payload(wake: WakeUp) -> str:
    """``agency|id|priority|pushes``: the NOTIFY payload (identifier codes hold no ``|``)."""
    payload = f"{wake.agency}|{wake.notification_id}|{wake.priority}|{wake.pushes}"
    if len(payload.encode("utf-8")) > MAX_PAYLOAD_BYTES:
        raise ValueError("wake-up payload too long")
    return payload


def parse_wake_payload(text: str) -> WakeUp | None:
    """The wake-up in a payload, or None when it is not one of ours."""
    parts = text.split("|")
    if len(parts) not in (3, 4) or not parts[0]:
        return None
    try:
        return WakeUp(parts[0], int(parts[1]), int(parts[2]), int(parts[3]) if len(parts) == 4 else 0)
    except ValueError:
        return None


@dataclass(frozen=True)
class NotificationPolicy:
    """Limits of the notification channels (long-poll and SSE) of one process.

    * ``default_timeout`` / ``min_timeout`` / ``max_timeout``: seconds a WaitForNotifications
      may hold the request (a value outside the range is ``Client.BadTimeout``).
    * ``max_waiters_per_application``: open channels (long-polls and streams) one application
      may hold in one process (``Client.TooManyWaiters`` beyond), so a subscriber cannot take
      every thread; ``max_waiters``: all applications together (``Server.Busy`` beyond).
    * ``recheck_sqlite`` / ``recheck_postgres``: how often the process looks for notifications
      committed by other processes without being told (SQLite has no cross-process signal;
      on PostgreSQL this is only a safety net behind LISTEN/NOTIFY).
    * ``keepalive``: SSE comment interval, and how often an open channel renews its presence
      lease; ``stream_duration``: an SSE stream ends after this (the client reconnects with
      ``Last-Event-ID``); ``batch``: most notifications in one answer or one SSE burst.
    * ``retention``: notifications older than this are deleted (the newest one always stays).
    """

    default_timeout: int = 30
    min_timeout: int = 1
    max_timeout: int = 120
    max_waiters_per_application: int = 4
    max_waiters: int = 12
    recheck_sqlite: timedelta = timedelta(milliseconds=500)
    recheck_postgres: timedelta = timedelta(seconds=15)
    keepalive: timedelta = timedelta(seconds=15)
    stream_duration: timedelta = timedelta(hours=1)
    batch: int = 200
    retention: timedelta = timedelta(days=7)

    def timeout_of(self, requested: int | None) -> float:
        """Seconds to wait for ``requested`` (None: the default); ``Client.BadTimeout`` outside the range."""
        if requested is None:
            return float(self.default_timeout)
        if not self.min_timeout <= requested <= self.max_timeout:
            raise ClientError(
                f"timeout must be {self.min_timeout} to {self.max_timeout} seconds, not {requested}",
                code="Client.BadTimeout",
            )
        return float(requested)


def cursor_of(value: int | str | None) -> int:
    """A notification cursor (``afterId``, ``Last-Event-ID``, ``?after=``); none means 0 (everything
    still kept).  Anything but a whole number ≥ 0 is ``Client.BadCursor``."""
    if value is None or value == "":
        return 0
    if isinstance(value, str):
        text = value.strip()
        if not text.isascii() or not text.isdigit() or len(text) > 19:
            raise ClientError(
                f"the cursor must be a notification id (a whole number ≥ 0), not {value!r}",
                code="Client.BadCursor",
            )
        return int(text)
    if value < 0 or value >= 2**63:
        raise ClientError(f"the cursor must be a notification id ≥ 0, not {value}", code="Client.BadCursor")
    return value


_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalise_callback_url(url: str) -> str:
    """The canonical form of an ``http(s)`` callback URL, for comparing it with a registered one.

    Scheme and host lower-cased, the default port dropped, an empty path made ``/``; user
    info, fragments and other schemes are ``Client.CallbackUrlInvalid``.
    """
    text = url.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise _invalid(url, "it cannot be parsed") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise _invalid(url, "only http and https callbacks are supported")
    if not parts.hostname:
        raise _invalid(url, "it names no host")
    if parts.username is not None or parts.password is not None:
        raise _invalid(url, "credentials in the URL are not allowed")
    if parts.fragment or "#" in text:
        raise _invalid(url, "a fragment has no meaning in a callback")
    if len(text) > 1024 or any(ord(ch) <= 32 or ord(ch) == 127 for ch in text):
        raise _invalid(url, "it is too long or contains spaces or control characters")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


def _invalid(url: str, why: str) -> ClientError:
    shown = url if len(url) <= 200 else url[:200] + "…"
    return ClientError(f"callback URL {shown!r} is not usable: {why}", code="Client.CallbackUrlInvalid")
