"""Tests for esb.domain.edxml_dates: strict, day-first and ISO forms, and the strict output form."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from esb.domain.edxml_dates import (
    VN_TZ,
    DateForm,
    format_date,
    format_datetime,
    parse_date,
    parse_datetime,
    to_local,
)

# parse_date ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected", "form"),
    [
        ("2020/10/30", date(2020, 10, 30), DateForm.STRICT),
        ("  2020/10/30\n", date(2020, 10, 30), DateForm.STRICT),
        ("30/10/2020", date(2020, 10, 30), DateForm.DAY_FIRST),  # mic_edoc_new_bdt0 PromulgationDate
        ("5/1/2024", date(2024, 1, 5), DateForm.DAY_FIRST),
        ("05/01/2024", date(2024, 1, 5), DateForm.DAY_FIRST),
        ("2024-01-05", date(2024, 1, 5), DateForm.ISO),
        # an ISO datetime where a date belongs keeps the Vietnamese calendar day
        ("2024-01-05T10:00:00", date(2024, 1, 5), DateForm.ISO),
        ("2024-01-05T20:00:00Z", date(2024, 1, 6), DateForm.ISO),
        ("2024-01-06T01:00:00+09:00", date(2024, 1, 5), DateForm.ISO),
    ],
)
def test_parse_date_accepted_forms(text: str, expected: date, form: DateForm) -> None:
    parsed = parse_date(text)
    assert parsed is not None
    assert parsed.value == expected
    assert parsed.form is form


@pytest.mark.parametrize(
    "text",
    [
        "2014/02/30",  # the impossible date of mic_edoc_new_bdt0_vpcp_original's DocumentId
        "30/02/2014",
        "2014-02-30",
        "2014-02-30T10:00:00",
        "2023/02/29",  # not a leap year
        "2024/13/01",
        "2024/00/10",
        "0000/01/01",
        "32/01/2024",
        "2024/1/5",  # strict form needs two digits
        "2024.01.05",
        "20240105",
        "",
        "   ",
        "null",
        "2024/01/05 10:00:00",  # a datetime is not a date
    ],
)
def test_parse_date_rejects(text: str) -> None:
    assert parse_date(text) is None


def test_parse_date_accepts_leap_day() -> None:
    parsed = parse_date("2024/02/29")
    assert parsed is not None
    assert parsed.value == date(2024, 2, 29)


# parse_datetime -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected", "form"),
    [
        ("2018/09/28 17:25:11", datetime(2018, 9, 28, 17, 25, 11, tzinfo=VN_TZ), DateForm.STRICT),
        ("28/09/2018 17:25:11", datetime(2018, 9, 28, 17, 25, 11, tzinfo=VN_TZ), DateForm.DAY_FIRST),
        ("5/1/2024 8:00:00", datetime(2024, 1, 5, 8, 0, 0, tzinfo=VN_TZ), DateForm.DAY_FIRST),
        # naive ISO: already Vietnamese local time
        ("2024-01-05T10:00:00", datetime(2024, 1, 5, 10, 0, 0, tzinfo=VN_TZ), DateForm.ISO),
        ("2024-01-05 10:00", datetime(2024, 1, 5, 10, 0, 0, tzinfo=VN_TZ), DateForm.ISO),
        # UTC and other offsets are converted to +07:00
        ("2024-01-05T20:00:00Z", datetime(2024, 1, 6, 3, 0, 0, tzinfo=VN_TZ), DateForm.ISO),
        ("2024-01-05T20:00:00+00:00", datetime(2024, 1, 6, 3, 0, 0, tzinfo=VN_TZ), DateForm.ISO),
        ("2024-01-05T10:00:00+07:00", datetime(2024, 1, 5, 10, 0, 0, tzinfo=VN_TZ), DateForm.ISO),
        ("2024-01-05T10:00:00-05:00", datetime(2024, 1, 5, 22, 0, 0, tzinfo=VN_TZ), DateForm.ISO),
        # fractions of a second are dropped
        ("2024-01-05T03:00:00.987654Z", datetime(2024, 1, 5, 10, 0, 0, tzinfo=VN_TZ), DateForm.ISO),
    ],
)
def test_parse_datetime_accepted_forms(text: str, expected: datetime, form: DateForm) -> None:
    parsed = parse_datetime(text)
    assert parsed is not None
    assert parsed.form is form
    assert parsed.value == expected
    # returned in Vietnamese local time, not just the same instant
    assert parsed.value.utcoffset() == timedelta(hours=7)
    assert parsed.value.replace(tzinfo=None) == expected.replace(tzinfo=None)
    assert parsed.value.microsecond == 0


@pytest.mark.parametrize(
    "text",
    [
        "2014/02/30 10:00:00",
        "30/02/2014 10:00:00",
        "2014-02-30T10:00:00",
        "2024/01/05 24:00:00",
        "2024/01/05 10:60:00",
        "2024/01/05 10:00:61",
        "2024/01/05 10:00",  # strict form needs seconds
        "2024/01/05",
        "2024-01-05",  # an ISO date is not a timestamp
        "2024-01-05T20:00:00+25:00",
        "yesterday",
        "",
    ],
)
def test_parse_datetime_rejects(text: str) -> None:
    assert parse_datetime(text) is None


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+07:00", "9999-12-31T23:00:00-05:00"])
def test_parse_datetime_out_of_range_instant_is_none(text: str) -> None:
    assert parse_datetime(text) is None


# formatting ---------------------------------------------------------------------------------------


def test_format_date_is_strict_and_zero_padded() -> None:
    assert format_date(date(2024, 1, 5)) == "2024/01/05"
    assert format_date(date(987, 3, 4)) == "0987/03/04"


def test_format_datetime_naive_is_taken_as_local() -> None:
    assert format_datetime(datetime(2024, 1, 5, 8, 3, 9)) == "2024/01/05 08:03:09"


def test_format_datetime_converts_other_zones_to_vietnam() -> None:
    assert format_datetime(datetime(2024, 1, 5, 20, 0, 0, tzinfo=UTC)) == "2024/01/06 03:00:00"
    assert format_datetime(datetime(2024, 1, 5, 10, 0, 0, tzinfo=VN_TZ)) == "2024/01/05 10:00:00"


def test_format_datetime_drops_microseconds() -> None:
    assert format_datetime(datetime(2024, 1, 5, 10, 0, 0, 999999, tzinfo=VN_TZ)) == "2024/01/05 10:00:00"


def test_to_local() -> None:
    naive = datetime(2024, 1, 5, 10, 0, 0)
    assert to_local(naive) == datetime(2024, 1, 5, 10, 0, 0, tzinfo=VN_TZ)
    converted = to_local(datetime(2024, 1, 5, 10, 0, 0, tzinfo=UTC))
    assert converted.utcoffset() == timedelta(hours=7)
    assert converted.hour == 17


# round trips --------------------------------------------------------------------------------------


@given(st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31)))
def test_date_round_trip(value: date) -> None:
    text = format_date(value)
    parsed = parse_date(text)
    assert parsed is not None
    assert parsed.value == value
    assert parsed.form is DateForm.STRICT


_SECONDS = st.datetimes(min_value=datetime(1000, 1, 2), max_value=datetime(9999, 12, 30)).map(
    lambda d: d.replace(microsecond=0)
)


@given(_SECONDS)
def test_local_datetime_round_trip(value: datetime) -> None:
    local = value.replace(tzinfo=VN_TZ)
    text = format_datetime(local)
    parsed = parse_datetime(text)
    assert parsed is not None
    assert parsed.form is DateForm.STRICT
    assert parsed.value == local
    assert parsed.value.utcoffset() == timedelta(hours=7)
    # a naive value is local time, so it writes the same text
    assert format_datetime(value) == text


@given(_SECONDS, st.integers(min_value=-12 * 60, max_value=14 * 60))
def test_aware_datetime_round_trip_keeps_the_instant(value: datetime, offset_minutes: int) -> None:
    aware = value.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    parsed = parse_datetime(format_datetime(aware))
    assert parsed is not None
    assert parsed.value == aware  # the same instant, now expressed in +07:00
    assert parsed.value.utcoffset() == timedelta(hours=7)


def test_format_datetime_pads_the_year() -> None:
    assert format_datetime(datetime(999, 1, 2, 3, 4, 5)) == "0999/01/02 03:04:05"
