"""Dates and times as edXML writes them, and the lenient forms real packages use.

Strict forms: date ``yyyy/MM/dd`` and datetime ``yyyy/MM/dd HH:mm:ss``, Vietnamese local time
(UTC+7) without a zone.  Accepted on input, with a warning: ``dd/MM/yyyy[ HH:mm:ss]`` and
ISO 8601.  Datetimes are returned timezone-aware in ``VN_TZ``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from enum import StrEnum

VN_TZ = timezone(timedelta(hours=7), "ICT")

_STRICT_DATE = re.compile(r"^(\d{4})/(\d{2})/(\d{2})$")
_STRICT_DATETIME = re.compile(r"^(\d{4})/(\d{2})/(\d{2}) (\d{2}):(\d{2}):(\d{2})$")
_DMY_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")
_DMY_DATETIME = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4}) (\d{1,2}):(\d{2}):(\d{2})$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class DateForm(StrEnum):
    STRICT = "yyyy/MM/dd"
    DAY_FIRST = "dd/MM/yyyy"
    ISO = "ISO 8601"


@dataclass(frozen=True)
class ParsedDate:
    value: date
    form: DateForm


@dataclass(frozen=True)
class ParsedDateTime:
    value: datetime
    form: DateForm


def parse_date(text: str) -> ParsedDate | None:
    """Read a date in any accepted form; None when it is not a real calendar date."""
    text = text.strip()
    try:
        if m := _STRICT_DATE.match(text):
            return ParsedDate(date(int(m[1]), int(m[2]), int(m[3])), DateForm.STRICT)
        if m := _DMY_DATE.match(text):
            return ParsedDate(date(int(m[3]), int(m[2]), int(m[1])), DateForm.DAY_FIRST)
        if _ISO_DATE.match(text):
            return ParsedDate(date.fromisoformat(text), DateForm.ISO)
        if "T" in text:  # an ISO datetime where a date belongs: keep the local calendar day
            parsed = _parse_iso_datetime(text)
            return ParsedDate(parsed.date(), DateForm.ISO) if parsed else None
    except ValueError:
        return None
    return None


def parse_datetime(text: str) -> ParsedDateTime | None:
    """Read a timestamp in any accepted form; None when it is not a real time."""
    text = text.strip()
    try:
        if m := _STRICT_DATETIME.match(text):
            return ParsedDateTime(_local(m[1], m[2], m[3], m[4], m[5], m[6]), DateForm.STRICT)
        if m := _DMY_DATETIME.match(text):
            return ParsedDateTime(_local(m[3], m[2], m[1], m[4], m[5], m[6]), DateForm.DAY_FIRST)
    except ValueError:
        return None
    parsed = _parse_iso_datetime(text)
    return ParsedDateTime(parsed, DateForm.ISO) if parsed else None


def format_date(value: date) -> str:
    return f"{value.year:04d}/{value.month:02d}/{value.day:02d}"


def format_datetime(value: datetime) -> str:
    """Strict edXML form in Vietnamese local time; a naive value is taken as local time."""
    local = value.astimezone(VN_TZ) if value.tzinfo else value
    return f"{format_date(local.date())} {local.hour:02d}:{local.minute:02d}:{local.second:02d}"


def to_local(value: datetime) -> datetime:
    """The same instant in VN_TZ (a naive value is taken as already local)."""
    return value.astimezone(VN_TZ) if value.tzinfo else value.replace(tzinfo=VN_TZ)


def _local(y: str, mo: str, d: str, h: str, mi: str, s: str) -> datetime:
    return datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), tzinfo=VN_TZ)


def _parse_iso_datetime(text: str) -> datetime | None:
    if not re.match(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}", text):
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return to_local(parsed).replace(microsecond=0)
    except (ValueError, OverflowError):  # not a time, or outside what datetime can shift to UTC+7
        return None
