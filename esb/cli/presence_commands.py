"""``esb presence list | history | stats``: who is connected, when they came and went, how often.

Read-only operator views of :mod:`esb.storage.presence_store` (docs/presence.md).  Times are
shown in the local time zone of the machine running the command; ``--json`` gives ISO 8601
with the offset.  ``--since`` and ``--until`` take an ISO 8601 date or time (without an
offset: local time) or a span back from now: ``90s``, ``30m``, ``24h``, ``7d``.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table

from esb.cli.main import reports_errors
from esb.cli.registry_commands import database_options, opened_runtime
from esb.clock import utc_now
from esb.domain.presence import (
    AgencyStatistics,
    ApplicationPresence,
    ConnectionEvent,
    PresenceState,
    format_duration,
)

_SPAN = re.compile(r"(\d+)\s*(s|m|h|d)")
_SPAN_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_STATE_STYLE = {"online": "green", "offline": "red", "unknown": "dim"}
_EVENT_STYLE = {"connect": "green", "disconnect": "red"}
BAR_WIDTH = 20
_NO_WRAP = frozenset({"agency", "state", "event"})  # codes and states stay whole


if TYPE_CHECKING:
    _WhenBase = click.ParamType[datetime]  # generic in click ≥ 8.2 only, so not subscripted at run time
else:
    _WhenBase = click.ParamType


class When(_WhenBase):
    """An aware datetime: ISO 8601 (local time without an offset) or a span back from now."""

    name = "when"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        span = _SPAN.fullmatch(text.lower())
        if span:
            return utc_now() - timedelta(**{_SPAN_UNITS[span.group(2)]: int(span.group(1))})
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            self.fail(
                f"{text!r} is neither an ISO 8601 date or time (2026-11-21, 2026-11-21T09:30+07:00) "
                "nor a span back from now (90s, 30m, 24h, 7d)",
                param,
                ctx,
            )
        return parsed if parsed.tzinfo is not None else parsed.astimezone()


WHEN = When()


@click.group()
def presence() -> None:
    """Presence of agencies' applications: online / offline now, connection history, statistics."""


@presence.command("list")
@click.option("--agency", help="Only this agency's applications.")
@click.option(
    "--state", type=click.Choice([s.value for s in PresenceState]), help="Only applications in this state."
)
@click.option("--limit", type=click.IntRange(1, 100_000), default=1000, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@database_options
@reports_errors
def presence_list(
    agency: str | None,
    state: str | None,
    limit: int,
    as_json: bool,
    database_url: str | None,
    data_dir: Path | None,
) -> None:
    """Every application with its presence: state, since when, last activity, open channel."""
    from esb.storage import presence_store

    with opened_runtime(database_url, data_dir) as runtime, runtime.database.transaction() as session:
        entries = presence_store.presence_of_applications(
            session, agency=agency, state=PresenceState(state) if state else None, limit=limit
        )
    if as_json:
        _echo_json([_presence_view(entry) for entry in entries])
        return
    table = Table(title="presence", title_justify="left")
    for column in ("agency", "application", "state", "since", "last seen", "channel", "node", "reason"):
        table.add_column(column, overflow="fold", no_wrap=column in _NO_WRAP)
    for entry in entries:
        status = entry.status
        channel = (
            f"{status.channel_kind} until {_when(status.channel_until)[11:]}"
            if status.channel_until is not None
            else ""
        )
        table.add_row(
            entry.agency_code,
            entry.application_name,
            f"[{_STATE_STYLE[status.state.value]}]{status.state.value}[/]",
            _when(status.state_since),
            _when(status.last_seen_at),
            channel,
            entry.node or "",
            status.reason or "",
        )
    console = Console()
    console.print(table)
    counts = {s: sum(1 for e in entries if e.status.state is s) for s in PresenceState}
    console.print(
        f"{len(entries)} application(s): {counts[PresenceState.ONLINE]} online, "
        f"{counts[PresenceState.OFFLINE]} offline, {counts[PresenceState.UNKNOWN]} unknown"
    )


@presence.command("history")
@click.option("--agency", help="Only this agency's applications.")
@click.option("--since", type=WHEN, help="From this time (ISO 8601, or 30m, 24h, 7d back from now).")
@click.option("--until", type=WHEN, help="Before this time (default: now).")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@database_options
@reports_errors
def presence_history(
    agency: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    as_json: bool,
    database_url: str | None,
    data_dir: Path | None,
) -> None:
    """Connects and disconnects, newest first: time, agency, application, node, reason."""
    from esb.storage import presence_store

    with opened_runtime(database_url, data_dir) as runtime, runtime.database.transaction() as session:
        page = presence_store.connection_history(
            session, agency=agency, since=since, until=until, limit=limit
        )
    if as_json:
        _echo_json({"events": [_event_view(e) for e in page.events], "more": page.next is not None})
        return
    table = Table(title="connection history (newest first)", title_justify="left")
    for column in ("time", "agency", "application", "event", "node", "reason"):
        table.add_column(column, overflow="fold", no_wrap=column in _NO_WRAP)
    for event in page.events:
        table.add_row(
            _when(event.at),
            event.agency_code,
            event.application_name,
            f"[{_EVENT_STYLE[event.event.value]}]{event.event.value}[/]",
            event.node,
            event.reason,
        )
    console = Console()
    console.print(table)
    more = f"; older events exist (--limit, --until {page.next.at.isoformat()})" if page.next else ""
    console.print(f"{len(page.events)} event(s){more}")


@presence.command("stats")
@click.option("--agency", help="Only this agency.")
@click.option("--since", type=WHEN, help="Start of the period (default: 24h back from --until).")
@click.option("--until", type=WHEN, help="End of the period (default: now).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@database_options
@reports_errors
def presence_stats(
    agency: str | None,
    since: datetime | None,
    until: datetime | None,
    as_json: bool,
    database_url: str | None,
    data_dir: Path | None,
) -> None:
    """Per agency over a period: connects, disconnects and the share of the time it was online."""
    from esb.storage import presence_store

    until = until or utc_now()
    since = since or until - timedelta(hours=24)
    if since >= until:
        raise click.BadParameter("--since must be before --until", param_hint="--since")
    with opened_runtime(database_url, data_dir) as runtime, runtime.database.transaction() as session:
        stats = presence_store.statistics(session, since=since, until=until, agency=agency)
    if as_json:
        _echo_json(
            {
                "since": since.isoformat(),
                "until": until.isoformat(),
                "agencies": [_stats_view(s) for s in stats],
            }
        )
        return
    table = Table(
        title=f"presence {_when(since)} → {_when(until)} ({format_duration(until - since)})",
        title_justify="left",
    )
    for column in ("agency", "connects", "disconnects", "online", "", "share"):
        table.add_column(column, justify="right" if column in ("connects", "disconnects") else "left")
    for s in stats:
        table.add_row(
            s.agency_code,
            str(s.connects),
            str(s.disconnects),
            format_duration(s.online),
            _bar(s.online_fraction),
            f"{s.online_fraction * 100:5.1f} %",
        )
    console = Console()
    console.print(table)
    console.print(f"{len(stats)} agenc{'y' if len(stats) == 1 else 'ies'} with activity in the period")


# -- views --------------------------------------------------------------------------------------


def _bar(fraction: float) -> str:
    filled = round(fraction * BAR_WIDTH)
    return "█" * filled + "░" * (BAR_WIDTH - filled)


def _when(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _echo_json(value: object) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2))


def _presence_view(entry: ApplicationPresence) -> dict[str, Any]:
    status = entry.status
    return {
        "agency": entry.agency_code,
        "application": entry.application_name,
        "applicationId": entry.application_id,
        "state": status.state.value,
        "since": _iso(status.state_since),
        "lastSeen": _iso(status.last_seen_at),
        "channel": (
            {"kind": status.channel_kind, "until": _iso(status.channel_until)}
            if status.channel_until is not None
            else None
        ),
        "node": entry.node,
        "reason": status.reason,
    }


def _event_view(event: ConnectionEvent) -> dict[str, Any]:
    return {
        "at": event.at.isoformat(),
        "agency": event.agency_code,
        "application": event.application_name,
        "applicationId": event.application_id,
        "event": event.event.value,
        "node": event.node,
        "reason": event.reason,
    }


def _stats_view(stats: AgencyStatistics) -> dict[str, Any]:
    return {
        "agency": stats.agency_code,
        "connects": stats.connects,
        "disconnects": stats.disconnects,
        "onlineSeconds": round(stats.online.total_seconds(), 3),
        "onlineFraction": round(stats.online_fraction, 6),
    }
