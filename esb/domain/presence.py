"""Presence: whether an agency's applications are connected to the hub, decided from activity.

Pure rules, no clock and no storage: every function takes ``now`` and the stored state and
returns the new state with the connect or disconnect event to record, if any.

* An application is **unknown** until the hub first sees it, then **online** or **offline**.
* Any activity (``Authenticate``, an authenticated call, ``Heartbeat``, a notification
  channel, a successful callback push) makes it online; a connect event is recorded when it
  was not online before.
* Without an open notification channel, an application that stays silent for
  :attr:`PresencePolicy.silence` (default 5 minutes) is declared offline (``silent``).
* An open channel (long-poll or SSE) holds a **lease** the channel renews every
  :attr:`PresencePolicy.keepalive` (15 s); while it holds, the application stays online however
  long it is silent.  A lease that lapses (the client went away, the node holding the channel
  died) is a disconnect (``channel-lease-expired``), found by the sweep within the lease (45 s)
  plus one worker pass; a channel write that fails is a disconnect at once
  (``channel-dropped``).
* An **agency** is online when any of its applications is online, offline when none is online
  but one is known, unknown otherwise (:func:`agency_state`).

Reasons are stable codes (:data:`CONNECT_REASONS`, :data:`DISCONNECT_REASONS`), recorded as
``code`` or ``code: detail`` (:func:`reason_text`, :func:`reason_code`); docs/presence.md lists
them and a test keeps the two in step.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from esb.errors import ConfigurationError

__all__ = [
    "CHANNEL_KINDS",
    "CONNECT_REASONS",
    "DISCONNECT_REASONS",
    "MAX_REASON_LENGTH",
    "AgencyPresence",
    "AgencyStatistics",
    "ApplicationPresence",
    "ConnectionEvent",
    "Decision",
    "PresenceEvent",
    "PresencePolicy",
    "PresenceState",
    "PresenceStatus",
    "Transition",
    "agency_presence",
    "agency_state",
    "agency_statistics",
    "format_duration",
    "on_activity",
    "on_channel_alive",
    "on_channel_closed",
    "on_channel_open",
    "on_sweep",
    "reason_code",
    "reason_text",
]

MAX_REASON_LENGTH = 128  # presence.reason and presence_event.reason
CHANNEL_KINDS: frozenset[str] = frozenset({"long-poll", "sse"})


class PresenceState(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    UNKNOWN = "unknown"  # never seen: no stored row


class PresenceEvent(StrEnum):
    CONNECT = "connect"
    DISCONNECT = "disconnect"


# Stable reason codes and what they mean.  Documented in docs/presence.md;
# tests/docs/test_presence_reasons_documented.py keeps the two in step.
CONNECT_REASONS: dict[str, str] = {
    "authenticate": "a successful Authenticate (a new session key)",
    "call": "an authenticated SOAP or HTTP call (session key or WS-Security)",
    "heartbeat": "an explicit Heartbeat call",
    "channel-open": "a notification channel (long-poll or SSE) opened or renewed",
    "callback-ok": "the application's callback endpoint accepted a notification",
}
DISCONNECT_REASONS: dict[str, str] = {
    "silent": "no activity for the silence period and no open channel (detail: how long)",
    "channel-dropped": "a notification channel broke: a write to it failed (detail: what failed)",
    "channel-lease-expired": "a notification channel stopped renewing its lease (detail: its kind)",
}


@dataclass(frozen=True)
class PresencePolicy:
    """The timings of presence (settings ``ESB_PRESENCE_*``, docs/presence.md)."""

    silence: timedelta = timedelta(minutes=5)  # no activity, no channel → offline
    keepalive: timedelta = timedelta(seconds=15)  # how often an open channel renews its lease
    channel_lease: timedelta = timedelta(seconds=45)  # a channel not renewed this long is dropped
    write_throttle: timedelta = timedelta(seconds=15)  # last_seen_at written at most this often

    def __post_init__(self) -> None:
        for name, env in (
            ("silence", "ESB_PRESENCE_SILENCE_SECONDS"),
            ("keepalive", "ESB_PRESENCE_KEEPALIVE_SECONDS"),
            ("channel_lease", "ESB_PRESENCE_CHANNEL_LEASE_SECONDS"),
            ("write_throttle", "ESB_PRESENCE_WRITE_THROTTLE_SECONDS"),
        ):
            if getattr(self, name) <= timedelta(0):
                raise ConfigurationError(f"presence {name.replace('_', ' ')} ({env}) must be positive")
        if self.keepalive >= self.channel_lease:
            raise ConfigurationError(
                f"the presence keep-alive ({format_duration(self.keepalive)}, "
                "ESB_PRESENCE_KEEPALIVE_SECONDS) must be shorter than the channel lease "
                f"({format_duration(self.channel_lease)}, ESB_PRESENCE_CHANNEL_LEASE_SECONDS)"
            )
        if self.write_throttle >= self.silence:
            raise ConfigurationError(
                f"the presence write throttle ({format_duration(self.write_throttle)}, "
                "ESB_PRESENCE_WRITE_THROTTLE_SECONDS) must be shorter than the silence "
                f"({format_duration(self.silence)}, ESB_PRESENCE_SILENCE_SECONDS)"
            )


@dataclass(frozen=True)
class PresenceStatus:
    """An application's stored presence (what one ``presence`` row says)."""

    state: PresenceState
    state_since: datetime | None = None
    last_seen_at: datetime | None = None
    channel_kind: str | None = None
    channel_until: datetime | None = None
    reason: str | None = None

    @property
    def has_channel(self) -> bool:
        return self.channel_until is not None


UNKNOWN = PresenceStatus(PresenceState.UNKNOWN)


@dataclass(frozen=True)
class Transition:
    """A connect or disconnect to record: when, and why (``code`` or ``code: detail``)."""

    event: PresenceEvent
    at: datetime
    reason: str


@dataclass(frozen=True)
class Decision:
    """The stored state after an input, and the event to record (None: no connect or disconnect)."""

    status: PresenceStatus
    transition: Transition | None = None

    def changes(self, current: PresenceStatus) -> bool:
        return self.status != current


# -- reasons ------------------------------------------------------------------------------------


def reason_text(code: str, detail: str | None = None) -> str:
    """``code`` or ``code: detail``, printable and at most :data:`MAX_REASON_LENGTH` characters."""
    text = code if not detail else f"{code}: {detail}"
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return text if len(text) <= MAX_REASON_LENGTH else text[: MAX_REASON_LENGTH - 1] + "…"


def reason_code(text: str) -> str:
    """The stable code of a recorded reason (the part before ``": "``)."""
    return text.split(":", 1)[0].strip()


def format_duration(value: timedelta) -> str:
    """``45 s``, ``5 min``, ``5 min 12 s``, ``2 h 3 min``, ``3 d 4 h`` (whole seconds)."""
    seconds = max(0, int(value.total_seconds()))
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "min"), (secs, "s")]
    shown = [f"{n} {unit}" for n, unit in parts if n][:2]
    return " ".join(shown) or "0 s"


# -- one application ----------------------------------------------------------------------------


def on_activity(current: PresenceStatus, now: datetime, reason: str) -> Decision:
    """Any activity: online from now on (a connect event when it was not online)."""
    if current.state is PresenceState.ONLINE:
        return Decision(replace(current, last_seen_at=_latest(current.last_seen_at, now)))
    text = reason_text(reason)
    status = PresenceStatus(
        PresenceState.ONLINE,
        state_since=now,
        last_seen_at=now,
        channel_kind=current.channel_kind,
        channel_until=current.channel_until,
        reason=text,
    )
    return Decision(status, Transition(PresenceEvent.CONNECT, now, text))


def on_channel_open(current: PresenceStatus, now: datetime, kind: str, policy: PresencePolicy) -> Decision:
    """A notification channel opened: online, holding a lease of :attr:`PresencePolicy.channel_lease`."""
    decided = on_activity(current, now, "channel-open")
    status = replace(decided.status, channel_kind=kind, channel_until=now + policy.channel_lease)
    return Decision(status, decided.transition)


def on_channel_alive(
    current: PresenceStatus, now: datetime, policy: PresencePolicy, *, kind: str | None = None
) -> Decision:
    """An open channel renews its lease (and is activity); a channel the sweep had already
    given up on opens again (``channel-open``)."""
    return on_channel_open(current, now, current.channel_kind or kind or "channel", policy)


def on_channel_closed(current: PresenceStatus, now: datetime, *, dropped: bool, detail: str) -> Decision:
    """A channel ended.  Dropped (a write failed): offline at once.  Closed in good order (the
    client's wait ended): the lease is released and the silence rule takes over from now."""
    if not dropped:
        if current.state is not PresenceState.ONLINE:
            return Decision(replace(current, channel_kind=None, channel_until=None))
        return Decision(
            replace(
                current,
                last_seen_at=_latest(current.last_seen_at, now),
                channel_kind=None,
                channel_until=None,
            )
        )
    if current.state is not PresenceState.ONLINE:
        return Decision(replace(current, channel_kind=None, channel_until=None))
    return _offline(current, now, reason_text("channel-dropped", detail or current.channel_kind))


def on_sweep(current: PresenceStatus, now: datetime, policy: PresencePolicy) -> Decision:
    """The periodic check of an online application: a lapsed channel lease, or a silence
    without a channel, makes it offline.  The disconnect is dated when the rule was met (the
    lease's end, or the last activity plus the silence), never later than ``now``."""
    if current.state is not PresenceState.ONLINE:
        return Decision(current)
    if current.channel_until is not None:
        if current.channel_until >= now:
            return Decision(current)
        at = current.channel_until
        return _offline(current, at, reason_text("channel-lease-expired", current.channel_kind))
    if current.last_seen_at is None:
        return _offline(current, now, reason_text("silent", "never seen"))
    deadline = current.last_seen_at + policy.silence
    if deadline >= now:
        return Decision(current)
    return _offline(
        current, deadline, reason_text("silent", f"no activity for {format_duration(policy.silence)}")
    )


def _offline(current: PresenceStatus, at: datetime, reason: str) -> Decision:
    status = PresenceStatus(
        PresenceState.OFFLINE,
        state_since=at,
        last_seen_at=current.last_seen_at,
        channel_kind=None,
        channel_until=None,
        reason=reason,
    )
    return Decision(status, Transition(PresenceEvent.DISCONNECT, at, reason))


def _latest(previous: datetime | None, now: datetime) -> datetime:
    return now if previous is None or now > previous else previous


# -- agencies -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApplicationPresence:
    """One application's presence, as operators list it."""

    agency_code: str
    application_id: int
    application_name: str
    status: PresenceStatus
    node: str | None = None


@dataclass(frozen=True)
class AgencyPresence:
    """An agency's presence, from its applications'.

    ``since``: online, when the earliest of its online applications came online; offline,
    when the last of them went offline.  ``last_seen_at``: the latest activity of any of them.
    """

    agency_code: str
    state: PresenceState
    since: datetime | None = None
    last_seen_at: datetime | None = None
    online_applications: int = 0


def agency_state(states: Iterable[PresenceState]) -> PresenceState:
    """Online if any application is online; offline if any is known; unknown otherwise."""
    seen = set(states)
    if PresenceState.ONLINE in seen:
        return PresenceState.ONLINE
    if PresenceState.OFFLINE in seen:
        return PresenceState.OFFLINE
    return PresenceState.UNKNOWN


def agency_presence(agency_code: str, statuses: Iterable[PresenceStatus]) -> AgencyPresence:
    known = [s for s in statuses if s.state is not PresenceState.UNKNOWN]
    state = agency_state(s.state for s in known)
    if state is PresenceState.UNKNOWN:
        return AgencyPresence(agency_code, state)
    last_seen = max((s.last_seen_at for s in known if s.last_seen_at is not None), default=None)
    if state is PresenceState.ONLINE:
        online = [s for s in known if s.state is PresenceState.ONLINE]
        since = min((s.state_since for s in online if s.state_since is not None), default=None)
        return AgencyPresence(agency_code, state, since, last_seen, len(online))
    since = max((s.state_since for s in known if s.state_since is not None), default=None)
    return AgencyPresence(agency_code, state, since, last_seen, 0)


# -- history and statistics ---------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectionEvent:
    """A recorded connect or disconnect (connection history)."""

    id: int
    at: datetime
    agency_code: str
    application_id: int
    application_name: str
    event: PresenceEvent
    node: str
    reason: str


@dataclass(frozen=True)
class AgencyStatistics:
    """An agency's connects, disconnects and time online over a period."""

    agency_code: str
    connects: int
    disconnects: int
    online: timedelta
    period: timedelta

    @property
    def online_fraction(self) -> float:
        if self.period <= timedelta(0):
            return 0.0
        return min(1.0, self.online / self.period)


def agency_statistics(
    *,
    since: datetime,
    until: datetime,
    online_at_start: Mapping[int, str],
    events: Sequence[ConnectionEvent],
) -> list[AgencyStatistics]:
    """Per agency: connects and disconnects in ``[since, until)`` and the time any of its
    applications was online (the union of their online intervals), from the events alone.

    ``online_at_start`` maps the applications online at ``since`` (their last earlier event
    was a connect) to their agency; ``events`` are those in the period, in any order.
    Agencies with neither are not listed.  Sorted by agency code.
    """
    period = until - since
    connects: dict[str, int] = defaultdict(int)
    disconnects: dict[str, int] = defaultdict(int)
    agency_of: dict[int, str] = dict(online_at_start)
    online_from: dict[int, datetime] = dict.fromkeys(online_at_start, since)
    intervals: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for event in sorted(events, key=lambda e: (e.at, e.id)):
        if not since <= event.at < until:
            continue
        agency_of[event.application_id] = event.agency_code
        if event.event is PresenceEvent.CONNECT:
            connects[event.agency_code] += 1
            online_from.setdefault(event.application_id, event.at)
        else:
            disconnects[event.agency_code] += 1
            started = online_from.pop(event.application_id, None)
            if started is not None:
                intervals[event.agency_code].append((started, event.at))
    for application_id, started in online_from.items():
        intervals[agency_of[application_id]].append((started, until))
    agencies = set(agency_of.values())
    return [
        AgencyStatistics(
            code, connects.get(code, 0), disconnects.get(code, 0), _union(intervals.get(code, [])), period
        )
        for code in sorted(agencies)
    ]


def _union(intervals: list[tuple[datetime, datetime]]) -> timedelta:
    total = timedelta(0)
    current_start: datetime | None = None
    current_end: datetime | None = None
    for start, end in sorted(intervals):
        if current_end is None or current_start is None or start > current_end:
            if current_start is not None and current_end is not None:
                total += current_end - current_start
            current_start, current_end = start, end
        elif end > current_end:
            current_end = end
    if current_start is not None and current_end is not None:
        total += current_end - current_start
    return total
