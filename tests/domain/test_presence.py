"""The pure presence rules: one application's transitions on a simulated clock, agencies, statistics."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from esb.domain.presence import (
    CONNECT_REASONS,
    DISCONNECT_REASONS,
    MAX_REASON_LENGTH,
    UNKNOWN,
    AgencyStatistics,
    ConnectionEvent,
    Decision,
    PresenceEvent,
    PresencePolicy,
    PresenceState,
    PresenceStatus,
    Transition,
    agency_presence,
    agency_state,
    agency_statistics,
    format_duration,
    on_activity,
    on_channel_alive,
    on_channel_closed,
    on_channel_open,
    on_sweep,
    reason_code,
    reason_text,
)
from esb.errors import ConfigurationError

T0 = datetime(2026, 11, 21, 2, 30, tzinfo=UTC)
POLICY = PresencePolicy()

ONLINE, OFFLINE = PresenceState.ONLINE, PresenceState.OFFLINE
CONNECT, DISCONNECT = PresenceEvent.CONNECT, PresenceEvent.DISCONNECT


@dataclass
class App:
    """One application's stored presence, driven through the rules on a clock the test moves."""

    policy: PresencePolicy = POLICY
    now: datetime = T0
    status: PresenceStatus = UNKNOWN
    events: list[Transition] = field(default_factory=list)

    def advance(self, seconds: float) -> App:
        self.now += timedelta(seconds=seconds)
        return self

    def _take(self, decision: Decision) -> Decision:
        self.status = decision.status
        if decision.transition is not None:
            self.events.append(decision.transition)
        return decision

    def activity(self, reason: str = "call") -> Decision:
        return self._take(on_activity(self.status, self.now, reason))

    def open(self, kind: str = "sse") -> Decision:
        return self._take(on_channel_open(self.status, self.now, kind, self.policy))

    def alive(self) -> Decision:
        return self._take(on_channel_alive(self.status, self.now, self.policy))

    def closed(self, *, dropped: bool, detail: str = "") -> Decision:
        return self._take(on_channel_closed(self.status, self.now, dropped=dropped, detail=detail))

    def sweep(self) -> Decision:
        return self._take(on_sweep(self.status, self.now, self.policy))

    def sweep_every_second_until_offline(self, limit: int) -> datetime:
        """Run the sweep each second (the worker's pace) until it declares offline; when it did."""
        for _ in range(limit):
            self.advance(1)
            if self.sweep().transition is not None:
                return self.now
        raise AssertionError(f"still {self.status.state} after {limit} s")


# -- policy ---------------------------------------------------------------------------------------


def test_default_policy_is_five_minutes_of_silence_and_a_45_second_lease() -> None:
    assert POLICY.silence == timedelta(minutes=5)
    assert POLICY.keepalive == timedelta(seconds=15)
    assert POLICY.channel_lease == timedelta(seconds=45)
    assert POLICY.write_throttle == timedelta(seconds=15)


@pytest.mark.parametrize(
    ("changes", "mentions"),
    [
        ({"silence": timedelta(0)}, "ESB_PRESENCE_SILENCE_SECONDS"),
        ({"keepalive": timedelta(seconds=-1)}, "ESB_PRESENCE_KEEPALIVE_SECONDS"),
        ({"channel_lease": timedelta(0)}, "ESB_PRESENCE_CHANNEL_LEASE_SECONDS"),
        ({"write_throttle": timedelta(0)}, "ESB_PRESENCE_WRITE_THROTTLE_SECONDS"),
        ({"keepalive": timedelta(seconds=45)}, "shorter than the channel lease"),
        ({"write_throttle": timedelta(minutes=5)}, "shorter than the silence"),
    ],
)
def test_inconsistent_policies_are_refused(changes: dict[str, timedelta], mentions: str) -> None:
    with pytest.raises(ConfigurationError, match=mentions):
        PresencePolicy(**changes)


# -- one application ------------------------------------------------------------------------------


def test_unknown_goes_online_on_activity_with_a_connect() -> None:
    app = App()
    decision = app.activity("authenticate")
    assert decision.transition == Transition(CONNECT, T0, "authenticate")
    assert app.status == PresenceStatus(ONLINE, T0, T0, None, None, "authenticate")


def test_activity_while_online_only_moves_last_seen() -> None:
    app = App()
    app.activity("authenticate")
    decision = app.advance(40).activity("call")
    assert decision.transition is None
    assert (app.status.state_since, app.status.last_seen_at, app.status.reason) == (
        T0,
        T0 + timedelta(seconds=40),
        "authenticate",
    )
    assert len(app.events) == 1


def test_activity_older_than_the_stored_one_does_not_move_last_seen_back() -> None:
    app = App()
    app.activity()
    app.advance(30).activity()
    earlier = on_activity(app.status, T0 + timedelta(seconds=10), "call")
    assert not earlier.changes(app.status)


def test_online_goes_offline_after_five_minutes_of_silence() -> None:
    app = App()
    app.activity()
    assert app.advance(300).sweep().transition is None  # exactly the silence: still online
    decision = app.advance(1).sweep()
    assert decision.transition == Transition(
        DISCONNECT, T0 + timedelta(minutes=5), "silent: no activity for 5 min"
    )
    assert app.status.state is OFFLINE
    assert app.status.state_since == T0 + timedelta(minutes=5)
    assert app.status.last_seen_at == T0


def test_the_silence_is_configurable() -> None:
    app = App(policy=PresencePolicy(silence=timedelta(seconds=90)))
    app.activity()
    offline_at = app.sweep_every_second_until_offline(limit=600)
    assert offline_at == T0 + timedelta(seconds=91)
    assert app.events[-1].reason == "silent: no activity for 1 min 30 s"


def test_a_late_sweep_dates_the_disconnect_when_the_silence_ran_out() -> None:
    app = App()
    app.activity()
    app.advance(3600).sweep()
    assert app.events[-1].at == T0 + timedelta(minutes=5)


def test_an_open_channel_keeps_online_far_beyond_the_silence() -> None:
    app = App()
    app.open("long-poll")
    for _ in range(80):  # 20 minutes of keep-alives, a sweep after each
        app.advance(15).alive()
        assert app.sweep().transition is None
    assert app.status.state is ONLINE
    assert app.status.channel_until == app.now + timedelta(seconds=45)
    assert app.events == [Transition(CONNECT, T0, "channel-open")]


def test_a_lapsed_channel_lease_is_offline_within_60_seconds() -> None:
    app = App()
    app.activity("authenticate")
    app.advance(5).open("sse")
    app.advance(15).alive()
    last_renewal = app.now
    # The client vanishes (or the node holding its channel dies): nothing renews the lease.
    detected = app.sweep_every_second_until_offline(limit=120)
    assert detected - last_renewal <= timedelta(seconds=60)
    assert detected == last_renewal + timedelta(seconds=46)
    assert app.events[-1] == Transition(
        DISCONNECT, last_renewal + timedelta(seconds=45), "channel-lease-expired: sse"
    )
    assert (app.status.channel_kind, app.status.channel_until) == (None, None)


def test_a_failed_channel_write_is_offline_at_once() -> None:
    app = App()
    app.open("sse")
    decision = app.advance(20).closed(dropped=True, detail="write failed: broken pipe")
    assert decision.transition == Transition(
        DISCONNECT, T0 + timedelta(seconds=20), "channel-dropped: write failed: broken pipe"
    )
    assert app.status.state is OFFLINE
    assert app.status.channel_until is None


def test_a_channel_closed_in_good_order_hands_over_to_the_silence_rule() -> None:
    app = App()
    app.open("long-poll")
    closed = app.advance(30).closed(dropped=False, detail="wait ended")
    assert closed.transition is None
    assert app.status == PresenceStatus(ONLINE, T0, T0 + timedelta(seconds=30), None, None, "channel-open")
    assert app.advance(300).sweep().transition is None
    assert app.advance(1).sweep().transition is not None
    assert app.events[-1].at == T0 + timedelta(seconds=330)


def test_closing_a_channel_of_an_application_not_online_records_nothing() -> None:
    for dropped in (True, False):
        assert on_channel_closed(UNKNOWN, T0, dropped=dropped, detail="x") == Decision(UNKNOWN)


def test_activity_after_offline_is_a_new_connect() -> None:
    app = App()
    app.activity("authenticate")
    app.advance(301).sweep()
    decision = app.advance(600).activity("heartbeat")
    assert decision.transition == Transition(CONNECT, app.now, "heartbeat")
    assert app.status.state_since == app.now
    assert [e.event for e in app.events] == [CONNECT, DISCONNECT, CONNECT]


def test_a_channel_renewing_after_the_sweep_gave_up_on_it_connects_again() -> None:
    app = App()
    app.open("sse")
    app.advance(50).sweep()  # the lease lapsed at 45 s (a stalled node, say)
    assert app.status.state is OFFLINE
    decision = app.advance(2).alive()
    assert decision.transition == Transition(CONNECT, app.now, "channel-open")
    assert app.status.channel_kind == "channel"  # the sweep forgot its kind; still a channel
    assert app.status.channel_until == app.now + timedelta(seconds=45)


def test_the_sweep_leaves_applications_not_online_alone() -> None:
    offline = PresenceStatus(OFFLINE, T0, T0, None, None, "silent")
    for status in (UNKNOWN, offline):
        assert on_sweep(status, T0 + timedelta(days=3), POLICY) == Decision(status)


def test_every_recorded_reason_has_a_documented_code() -> None:
    app = App()
    app.activity("authenticate")
    app.advance(301).sweep()
    app.advance(1).open("sse")
    app.advance(60).sweep()
    app.advance(1).open("long-poll")
    app.advance(1).closed(dropped=True, detail="write failed")
    codes = {reason_code(event.reason) for event in app.events}
    assert codes == {"authenticate", "silent", "channel-open", "channel-lease-expired", "channel-dropped"}
    assert codes <= {*CONNECT_REASONS, *DISCONNECT_REASONS}


# -- reasons and durations --------------------------------------------------------------------------


def test_reasons_are_printable_and_bounded() -> None:
    assert reason_text("channel-dropped", "write\nfailed\x00 now") == "channel-dropped: write failed now"
    long = reason_text("channel-dropped", "x" * 500)
    assert len(long) == MAX_REASON_LENGTH
    assert long.endswith("…")
    assert reason_code(long) == "channel-dropped"
    assert reason_code("silent: no activity for 5 min") == "silent"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 s"),
        (45, "45 s"),
        (300, "5 min"),
        (312, "5 min 12 s"),
        (7380, "2 h 3 min"),
        (273_600, "3 d 4 h"),
    ],
)
def test_durations_read_naturally(seconds: int, text: str) -> None:
    assert format_duration(timedelta(seconds=seconds)) == text


# -- agencies -------------------------------------------------------------------------------------


def test_an_agency_is_online_if_any_application_is_offline_if_any_is_known() -> None:
    assert agency_state([]) is PresenceState.UNKNOWN
    assert agency_state([PresenceState.UNKNOWN]) is PresenceState.UNKNOWN
    assert agency_state([PresenceState.UNKNOWN, OFFLINE]) is OFFLINE
    assert agency_state([OFFLINE, ONLINE, PresenceState.UNKNOWN]) is ONLINE


def test_agency_presence_summarises_its_applications() -> None:
    t = [T0 + timedelta(minutes=m) for m in range(10)]
    qlvb = PresenceStatus(ONLINE, t[2], t[9], None, None, "call")
    portal = PresenceStatus(ONLINE, t[1], t[3], "sse", t[4], "channel-open")
    old = PresenceStatus(OFFLINE, t[5], t[0], None, None, "silent")
    online = agency_presence("000.00.00.H53", [qlvb, old, portal, UNKNOWN])
    assert (online.state, online.since, online.last_seen_at, online.online_applications) == (
        ONLINE,
        t[1],
        t[9],
        2,
    )
    gone = agency_presence("000.00.00.H53", [old, PresenceStatus(OFFLINE, t[7], t[2], None, None, "silent")])
    assert (gone.state, gone.since, gone.last_seen_at, gone.online_applications) == (OFFLINE, t[7], t[2], 0)
    never = agency_presence("000.00.00.H30", [UNKNOWN])
    assert (never.state, never.since, never.last_seen_at) == (PresenceState.UNKNOWN, None, None)


# -- statistics -----------------------------------------------------------------------------------


def _event(n: int, minute: float, app: int, agency: str, event: PresenceEvent) -> ConnectionEvent:
    return ConnectionEvent(
        n, T0 + timedelta(minutes=minute), agency, app, f"app{app}", event, "node-a", event.value
    )


def test_statistics_count_events_and_the_union_of_online_time() -> None:
    a, b = "000.00.00.H53", "000.00.00.H30"
    since, until = T0, T0 + timedelta(minutes=100)
    events = [
        # agency a, application 1: online 10→30 and 80→(end); application 2 overlaps: 20→40
        _event(1, 10, 1, a, CONNECT),
        _event(2, 20, 2, a, CONNECT),
        _event(3, 30, 1, a, DISCONNECT),
        _event(4, 40, 2, a, DISCONNECT),
        _event(5, 80, 1, a, CONNECT),
        # agency b, application 3: online since before the period, off at 25; a stray disconnect
        _event(6, 25, 3, b, DISCONNECT),
        _event(7, 26, 3, b, DISCONNECT),
        # outside the period: ignored
        _event(8, -5, 1, a, CONNECT),
        _event(9, 100, 1, a, DISCONNECT),
    ]
    stats = agency_statistics(since=since, until=until, online_at_start={3: b}, events=events[::-1])
    assert stats == [
        AgencyStatistics(b, 0, 2, timedelta(minutes=25), timedelta(minutes=100)),
        AgencyStatistics(a, 3, 2, timedelta(minutes=30 + 20), timedelta(minutes=100)),
    ]
    assert stats[1].online_fraction == pytest.approx(0.5)
    assert stats[0].online_fraction == pytest.approx(0.25)


def test_an_application_online_all_along_counts_the_whole_period() -> None:
    (only,) = agency_statistics(
        since=T0, until=T0 + timedelta(hours=2), online_at_start={7: "000.00.00.H53"}, events=[]
    )
    assert (only.connects, only.disconnects, only.online_fraction) == (0, 0, 1.0)
    assert agency_statistics(since=T0, until=T0 + timedelta(hours=1), online_at_start={}, events=[]) == []
