"""``esb deliveries``: deliveries per recipient, dead letters, re-drive, offline limits.

* ``list [--dead]``: deliveries newest first, or only the undeliverable ones (dead letters)
  with when and why they were reported;
* ``redrive ID``: put an undeliverable delivery back on its way (a mailbox here, or its
  bridge adapter, by the routes in force now) once the cause is fixed;
* ``offline-limit CODE DURATION|default``: how long a destination may stay offline with a
  document of this agency waiting before it is reported undeliverable (docs/routing.md §5).
"""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from esb.cli.main import reports_errors
from esb.cli.registry_commands import DURATION, database_options, opened_runtime


@click.group()
def deliveries() -> None:
    """Deliveries per recipient: dead letters (undeliverable), re-drive, offline limits."""


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if value else ""


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


@deliveries.command("list")
@database_options
@click.option("--dead", is_flag=True, help="Only undeliverable deliveries (dead letters), latest first.")
@click.option("--agency", help="Only deliveries this agency sent or is to receive.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@reports_errors
def deliveries_list(
    database_url: str | None, data_dir: Path | None, dead: bool, agency: str | None, limit: int, as_json: bool
) -> None:
    """Deliveries newest first: id, document, from, to, priority, state, route, attempts, why dead."""
    with opened_runtime(database_url, data_dir) as runtime:
        views = runtime.undeliverable.deliveries(dead=dead, agency=agency, limit=limit)
    rows: list[dict[str, Any]] = [
        {
            "id": view.delivery_id,
            "hubDocumentId": view.hub_document_id,
            "type": view.message_type,
            "from": view.sender,
            "to": view.recipient,
            "priority": int(view.priority),
            "state": view.state.value,
            "route": view.route,
            "attempts": view.attempts,
            "availableAt": _iso(view.available_at),
            "nextAttemptAt": _iso(view.next_attempt_at),
            "deadSince": _iso(view.dead_at),
            "reason": view.dead_reason,
            "lastFailure": view.last_failure,
            "contentPurged": view.content_purged,
        }
        for view in views
    ]
    if as_json:
        click.echo(json.dumps({"deliveries": rows}, ensure_ascii=False, indent=2))
        return
    if not views:
        click.echo("no undeliverable deliveries" if dead else "no deliveries")
        return
    title = f"undeliverable deliveries ({len(views)})" if dead else f"deliveries ({len(views)}, newest first)"
    table = Table(title=title)
    for column in (
        "id",
        "hub id",
        "from",
        "to",
        "priority",
        "state",
        "route",
        "attempts",
        "dead since",
        "reason",
    ):
        table.add_column(column, overflow="fold")
    for view in views:
        table.add_row(
            str(view.delivery_id),
            view.hub_document_id,
            view.sender,
            view.recipient,
            view.priority.label_vi,
            view.state.value + (" (purged)" if view.content_purged and view.state.value != "done" else ""),
            view.route,
            str(view.attempts),
            _when(view.dead_at),
            view.dead_reason or "",
        )
    Console().print(table)


@deliveries.command("redrive")
@database_options
@click.argument("delivery_id", type=click.IntRange(1))
@click.option("--operator", default=None, help="Who re-drives it, for the trace (default: your user name).")
@reports_errors
def deliveries_redrive(
    database_url: str | None, data_dir: Path | None, delivery_id: int, operator: str | None
) -> None:
    """Put undeliverable delivery ID back on its way (exit 1 with the reason when it cannot be)."""
    who = operator or _user()
    with opened_runtime(database_url, data_dir) as runtime:
        redriven = runtime.undeliverable.redrive(delivery_id, who)
    where = "the mailbox of" if redriven.route == "local" else f"adapter {redriven.route} for"
    click.echo(
        f"delivery {redriven.delivery_id} of {redriven.hub_document_id} re-driven to {where} "
        f"{redriven.recipient} ({redriven.state.value})"
    )


@deliveries.command("offline-limit")
@database_options
@click.argument("code")
@click.argument("duration")
@reports_errors
def deliveries_offline_limit(
    database_url: str | None, data_dir: Path | None, code: str, duration: str
) -> None:
    """How long a destination may stay offline with a document from agency CODE waiting.

    DURATION such as 6h, 90m or 2d replaces the hub's 24 h for ordinary (thường) documents of
    CODE; urgent ones never wait longer than the hub's limit for their priority.  ``default``
    goes back to the hub's limits.
    """
    limit: timedelta | None = None
    if duration.strip().lower() != "default":
        limit = DURATION.convert(duration, None, None)
    with opened_runtime(database_url, data_dir) as runtime:
        runtime.undeliverable.set_offline_limit(code.strip(), limit)
        policy = runtime.undeliverable.offline_policy
    if limit is None:
        click.echo(f"{code.strip()}: the hub's offline limits by priority")
        return
    from esb.domain.delivery_policy import describe_duration
    from esb.domain.edxml_enums import Priority

    shown = ", ".join(f"{p.label_vi.lower()} {describe_duration(policy.limit(p, limit))}" for p in Priority)
    click.echo(f"{code.strip()}: {shown}")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "operator"
