"""Retry back-off and offline limits (esb.domain.delivery_policy): pure, no clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from esb.domain.delivery_policy import (
    DEFAULT_OFFLINE_LIMITS,
    OfflinePolicy,
    RetryPolicy,
    describe_duration,
    undeliverable_since,
)
from esb.domain.edxml_enums import Priority

NOW = datetime(2026, 11, 21, 2, 30, tzinfo=UTC)
H30, H53 = "000.00.00.H30", "000.00.00.H53"


def seconds(value: timedelta) -> float:
    return value.total_seconds()


# -- RetryPolicy -------------------------------------------------------------------------------------


def test_the_default_back_off_doubles_from_ten_seconds() -> None:
    policy = RetryPolicy()
    assert [seconds(policy.delay(n, 0.5)) for n in range(1, 8)] == [10, 20, 40, 80, 160, 320, 640]


@pytest.mark.parametrize(("rand", "expected"), [(0.0, 8.0), (0.5, 10.0), (1.0, 12.0), (0.25, 9.0)])
def test_jitter_scales_the_delay_within_its_bounds(rand: float, expected: float) -> None:
    assert seconds(RetryPolicy().delay(1, rand)) == pytest.approx(expected)


def test_the_delay_is_capped_even_with_jitter() -> None:
    policy = RetryPolicy(initial=timedelta(seconds=10), factor=3.0, max_delay=timedelta(minutes=5))
    assert [seconds(policy.delay(n, 0.5)) for n in range(1, 6)] == [10, 30, 90, 270, 300]
    assert seconds(policy.delay(5, 1.0)) == 300  # 300 x 1.2 is capped
    assert seconds(policy.delay(5, 0.0)) == pytest.approx(240)  # still spread below the cap
    assert seconds(policy.delay(10_000, 0.5)) == 300  # far past the cap: no overflow


def test_every_delay_stays_within_the_jitter_bounds() -> None:
    policy = RetryPolicy(jitter=0.3)
    for attempt in range(1, 12):
        base = min(900.0, 10 * 2.0 ** (attempt - 1))
        for step in range(11):
            delay = seconds(policy.delay(attempt, step / 10))
            assert base * 0.7 - 1e-9 <= delay <= min(900.0, base * 1.3) + 1e-9


def test_no_jitter_means_the_same_delay_whatever_the_random_number() -> None:
    policy = RetryPolicy(jitter=0.0)
    assert {seconds(policy.delay(3, rand)) for rand in (0.0, 0.3, 0.99, 1.0)} == {40.0}


def test_attempts_are_counted_until_the_policy_is_exhausted() -> None:
    policy = RetryPolicy(max_attempts=3)
    failed_at = NOW
    assert [policy.exhausted(n) for n in range(4)] == [False, False, False, True]
    assert policy.next_attempt(1, failed_at, 0.5) == failed_at + timedelta(seconds=10)
    assert policy.next_attempt(2, failed_at, 0.5) == failed_at + timedelta(seconds=20)
    assert policy.next_attempt(3, failed_at, 0.5) is None
    assert RetryPolicy(max_attempts=1).next_attempt(1, failed_at, 0.5) is None


@pytest.mark.parametrize(
    "changes",
    [
        {"initial": timedelta(0)},
        {"factor": 0.5},
        {"factor": float("nan")},
        {"max_delay": timedelta(seconds=5)},
        {"max_attempts": 0},
        {"jitter": 1.0},
        {"jitter": -0.1},
    ],
)
def test_nonsense_retry_values_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"."):
        RetryPolicy(**changes)  # type: ignore[arg-type]


def test_delay_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="counted from 1"):
        RetryPolicy().delay(0, 0.5)
    with pytest.raises(ValueError, match="rand"):
        RetryPolicy().delay(1, 1.5)


# -- OfflinePolicy ------------------------------------------------------------------------------------


def test_urgent_documents_wait_less_for_an_offline_destination() -> None:
    policy = OfflinePolicy()
    assert policy.limit(Priority.THUONG) == timedelta(hours=24)
    assert policy.limit(Priority.KHAN) == timedelta(hours=8)
    assert policy.limit(Priority.THUONG_KHAN) == timedelta(hours=2)
    assert policy.limit(Priority.HOA_TOC) == timedelta(hours=1)
    assert policy.limit(Priority.HOA_TOC_HEN_GIO) == timedelta(hours=1)
    assert policy.shortest() == timedelta(hours=1)


def test_a_senders_own_limit_replaces_the_ordinary_one_and_never_lengthens_urgent_ones() -> None:
    policy = OfflinePolicy()
    six_hours, two_days = timedelta(hours=6), timedelta(days=2)
    assert policy.limit(Priority.THUONG, six_hours) == six_hours
    assert policy.limit(Priority.THUONG, two_days) == two_days
    assert policy.limit(Priority.KHAN, six_hours) == six_hours
    assert policy.limit(Priority.KHAN, two_days) == timedelta(hours=8)
    assert policy.limit(Priority.HOA_TOC, six_hours) == timedelta(hours=1)
    assert policy.shortest(timedelta(minutes=30)) == timedelta(minutes=30)


def test_offline_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="missing"):
        OfflinePolicy({Priority.THUONG: timedelta(hours=1)})
    with pytest.raises(ValueError, match="positive"):
        OfflinePolicy({**DEFAULT_OFFLINE_LIMITS, Priority.KHAN: timedelta(0)})


# -- the decision -------------------------------------------------------------------------------------


def decide(
    presence: str | None,
    last_seen: datetime | None,
    *,
    waited: timedelta,
    priority: Priority = Priority.THUONG,
) -> str | None:
    return undeliverable_since(
        destination=H30,
        sender=H53,
        priority=priority,
        presence=presence,
        last_seen=last_seen,
        available_at=NOW,
        limit=OfflinePolicy().limit(priority),
        now=NOW + waited,
    )


def test_an_online_destination_is_never_undeliverable() -> None:
    assert decide("online", NOW - timedelta(days=30), waited=timedelta(days=20)) is None


def test_an_offline_destination_counts_from_the_later_of_going_offline_and_the_delivery() -> None:
    went_offline = NOW - timedelta(days=3)
    assert decide("offline", went_offline, waited=timedelta(hours=24)) is None  # exactly the limit
    reason = decide("offline", went_offline, waited=timedelta(hours=24, seconds=1))
    assert reason == (
        "000.00.00.H30 has been offline since 2026-11-18 02:30 UTC "
        "(more than 24 h allowed for thường documents of 000.00.00.H53)"
    )
    # Offline only after the delivery became available: the wait counts from then.
    later = NOW + timedelta(hours=5)
    assert decide("offline", later, waited=timedelta(hours=25)) is None
    assert decide("offline", later, waited=timedelta(hours=29, seconds=1)) is not None


def test_an_urgent_document_is_undeliverable_sooner() -> None:
    assert decide("offline", NOW, waited=timedelta(minutes=61), priority=Priority.HOA_TOC) == (
        "000.00.00.H30 has been offline since 2026-11-21 02:30 UTC "
        "(more than 1 h allowed for hỏa tốc documents of 000.00.00.H53)"
    )
    assert decide("offline", NOW, waited=timedelta(minutes=61)) is None


@pytest.mark.parametrize("presence", [None, "unknown"])
def test_a_destination_never_seen_counts_as_offline_since_the_delivery(presence: str | None) -> None:
    assert decide(presence, None, waited=timedelta(hours=23)) is None
    assert decide(presence, None, waited=timedelta(hours=25)) == (
        "000.00.00.H30 has not connected since 2026-11-21 02:30 UTC "
        "(more than 24 h allowed for thường documents of 000.00.00.H53)"
    )


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(hours=24), "24 h"),
        (timedelta(minutes=90), "1 h 30 min"),
        (timedelta(minutes=45), "45 min"),
        (timedelta(seconds=75), "75 s"),
    ],
)
def test_durations_read_naturally(value: timedelta, text: str) -> None:
    assert describe_duration(value) == text
