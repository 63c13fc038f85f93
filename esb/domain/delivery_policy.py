"""How long the hub keeps trying to deliver, as values: retries with back-off, offline limits.

* :class:`RetryPolicy`: an attempt that fails (a callback push, a bridge hand-over) is tried
  again after an exponentially growing, jittered delay, at most ``max_attempts`` times in
  all; then the delivery is *undeliverable* and its sender is told why.
* :class:`OfflinePolicy`: a document waiting in the mailbox of a destination that stays
  offline longer than the sender's limit is reported undeliverable too.  The limit depends
  on the document's priority (độ khẩn): 24 h for thường, less for urgent ones; an agency may
  set its own limit for what it sends (``Agency.undeliverable_after_seconds``).

Pure: the caller gives the time, the presence it found and the random number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

from esb.domain.edxml_enums import Priority

__all__ = [
    "DEFAULT_OFFLINE_LIMITS",
    "OfflinePolicy",
    "RetryPolicy",
    "describe_duration",
    "undeliverable_since",
]


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential back-off with jitter.

    ``delay(n, rand)`` is the wait after the n-th failed attempt (n ≥ 1):
    ``initial × factor^(n-1)``, scaled by a random factor in ``[1 - jitter, 1 + jitter]``
    (``rand`` 0 → ``1 - jitter``, 0.5 → exactly the base, 1 → ``1 + jitter``), and never more
    than ``max_delay``.  After ``max_attempts`` attempts in all the policy is exhausted.
    With the defaults: about 10 s, 20 s, 40 s, 80 s, 160 s, 320 s, 640 s, then give up after
    the 8th attempt (≈ 21 minutes after the first).
    """

    initial: timedelta = timedelta(seconds=10)
    factor: float = 2.0
    max_delay: timedelta = timedelta(minutes=15)
    max_attempts: int = 8
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.initial <= timedelta(0):
            raise ValueError(f"the first retry delay must be positive, not {self.initial}")
        if not math.isfinite(self.factor) or self.factor < 1.0:
            raise ValueError(f"the back-off factor must be at least 1, not {self.factor}")
        if self.max_delay < self.initial:
            raise ValueError(
                f"the longest retry delay ({self.max_delay}) is shorter than the first ({self.initial})"
            )
        if isinstance(self.max_attempts, bool) or self.max_attempts < 1:
            raise ValueError(f"there must be at least one attempt, not {self.max_attempts}")
        if not math.isfinite(self.jitter) or not 0.0 <= self.jitter < 1.0:
            raise ValueError(f"the jitter must be in [0, 1), not {self.jitter}")

    def delay(self, attempt: int, rand: float) -> timedelta:
        """The wait after failed attempt number ``attempt`` (1 = the first); ``rand`` in [0, 1]."""
        if attempt < 1:
            raise ValueError(f"attempts are counted from 1, not {attempt}")
        if not 0.0 <= rand <= 1.0:
            raise ValueError(f"rand must be in [0, 1], not {rand}")
        cap = self.max_delay.total_seconds()
        try:
            base = min(cap, self.initial.total_seconds() * self.factor ** (attempt - 1))
        except OverflowError:  # far past the cap
            base = cap
        jittered = base * (1.0 + self.jitter * (2.0 * rand - 1.0))
        return timedelta(seconds=min(cap, jittered))

    def exhausted(self, attempts: int) -> bool:
        """True once ``attempts`` attempts have failed: no further one is made."""
        return attempts >= self.max_attempts

    def next_attempt(self, attempts: int, failed_at: datetime, rand: float) -> datetime | None:
        """When to try again after ``attempts`` failed attempts, or None when exhausted."""
        if self.exhausted(attempts):
            return None
        return failed_at + self.delay(attempts, rand)


DEFAULT_OFFLINE_LIMITS: Mapping[Priority, timedelta] = MappingProxyType(
    {
        Priority.THUONG: timedelta(hours=24),
        Priority.KHAN: timedelta(hours=8),
        Priority.THUONG_KHAN: timedelta(hours=2),
        Priority.HOA_TOC: timedelta(hours=1),
        Priority.HOA_TOC_HEN_GIO: timedelta(hours=1),
    }
)
"""How long a destination may stay offline with a document waiting, by the document's priority."""


@dataclass(frozen=True)
class OfflinePolicy:
    """How long a document may wait for a destination that is offline, before it is undeliverable.

    ``limits`` gives the hub's limit per priority (every priority must have one).  A sender's
    own limit (``undeliverable_after_seconds`` of its agency) replaces the one for thường
    documents; an urgent document never waits longer than the hub's limit for its priority,
    nor longer than the sender's own limit.
    """

    limits: Mapping[Priority, timedelta] = field(default_factory=lambda: DEFAULT_OFFLINE_LIMITS)

    def __post_init__(self) -> None:
        missing = [p.name for p in Priority if p not in self.limits]
        if missing:
            raise ValueError(f"the offline limit of priority {', '.join(missing)} is missing")
        for priority, limit in self.limits.items():
            if limit <= timedelta(0):
                raise ValueError(f"the offline limit of {Priority(priority).label_vi} must be positive")
        object.__setattr__(self, "limits", MappingProxyType(dict(self.limits)))

    def limit(self, priority: Priority, sender_override: timedelta | None = None) -> timedelta:
        """How long a document of ``priority`` may wait for an offline destination."""
        hub = self.limits[priority]
        if sender_override is None or sender_override <= timedelta(0):
            return hub
        if priority is Priority.THUONG:
            return sender_override
        return min(hub, sender_override)

    def shortest(self, sender_overrides: timedelta | None = None) -> timedelta:
        """The shortest limit any document can have (the smallest override given, if any)."""
        shortest = min(self.limits.values())
        if sender_overrides is not None and sender_overrides > timedelta(0):
            shortest = min(shortest, sender_overrides)
        return shortest


def undeliverable_since(
    *,
    destination: str,
    sender: str,
    priority: Priority,
    presence: str | None,
    last_seen: datetime | None,
    available_at: datetime,
    limit: timedelta,
    now: datetime,
) -> str | None:
    """Why a waiting delivery is undeliverable now, or None while it may still wait.

    ``presence`` is the destination agency's state: ``online`` (never undeliverable),
    ``offline`` (offline since its last activity), or anything else / None: never seen, which
    counts as offline since the delivery became available.  The delivery waits ``limit``
    from when it became available or the destination went offline, whichever is later.
    """
    if presence == "online":
        return None
    since = last_seen if presence == "offline" and last_seen is not None else None
    waiting_from = max(since, available_at) if since is not None else available_at
    if now - waiting_from <= limit:
        return None
    allowed = (
        f"more than {describe_duration(limit)} allowed for {priority.label_vi.lower()} documents of {sender}"
    )
    if since is None:
        return f"{destination} has not connected since {_when(available_at)} ({allowed})"
    return f"{destination} has been offline since {_when(since)} ({allowed})"


def describe_duration(value: timedelta) -> str:
    """``24 h``, ``90 min``, ``1 h 30 min``, ``45 s``: how limits and delays are shown."""
    seconds = int(value.total_seconds())
    if seconds % 60:
        return f"{seconds} s"
    hours, minutes = divmod(seconds // 60, 60)
    if hours and minutes:
        return f"{hours} h {minutes} min"
    return f"{hours} h" if hours else f"{minutes} min"


def _when(value: datetime) -> str:
    return f"{value.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
