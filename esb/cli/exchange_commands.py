"""Operator commands of the document exchange: ``esb worker`` and ``esb documents …``."""

from __future__ import annotations

import json
import logging
import signal
import threading
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from esb.cli.main import reports_errors
from esb.cli.registry_commands import database_options, opened_runtime


@click.command()
@database_options
@click.option("--once", is_flag=True, help="One pass over the work there is, then exit (cron, tests).")
@click.option(
    "--interval",
    type=click.FloatRange(0.05, 3600),
    default=1.0,
    show_default=True,
    help="Seconds between idle passes.",
)
@reports_errors
def worker(database_url: str | None, data_dir: Path | None, once: bool, interval: float) -> None:
    """Route, purge and expire documents: run one per node beside `esb serve` (ESB_WORKER=false there).

    Safe on several nodes at once against PostgreSQL: work is claimed row by row, skipping
    rows another worker holds; a killed worker's transaction rolls back and its rows are free.
    """
    from esb.wiring import build_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with opened_runtime(database_url, data_dir) as runtime:
        delivery = build_worker(runtime)
        if once:
            click.echo(delivery.run_once().describe())
            return
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        click.echo(
            f"lgsp-esb worker on {runtime.database.dialect}: every {interval:g} s; Ctrl-C stops", err=True
        )
        delivery.run(stop, interval=interval)


@click.group()
def documents() -> None:
    """Documents the hub carried: list them and read their trace (operators)."""


@documents.command("list")
@database_options
@click.option("--agency", help="Only documents this agency sent or received.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@reports_errors
def list_documents(
    database_url: str | None, data_dir: Path | None, agency: str | None, limit: int, as_json: bool
) -> None:
    """The most recent documents with their state and per-recipient delivery state."""
    from esb.storage import exchange_store

    with opened_runtime(database_url, data_dir) as runtime, runtime.database.transaction() as session:
        rows: list[dict[str, Any]] = [
            {
                "hubDocumentId": doc.hub_id,
                "type": doc.message_type,
                "from": doc.sender_code,
                "documentId": doc.document_id,
                "state": doc.state,
                "priority": doc.priority,
                "size": doc.size,
                "acceptedAt": doc.accepted_at.isoformat(),
                "recipients": {d.recipient_code: d.state for d in doc.deliveries},
                "contentPurged": doc.purged_at is not None,
            }
            for doc in exchange_store.recent_documents(session, agency=agency, limit=limit)
        ]
        counts = exchange_store.count_by_state(session)
    if as_json:
        click.echo(json.dumps({"documents": rows, "byState": counts}, ensure_ascii=False, indent=2))
        return
    table = Table(title=f"documents ({', '.join(f'{k}: {v}' for k, v in sorted(counts.items())) or 'none'})")
    for column in ("hub id", "type", "from", "state", "recipients", "accepted", "size"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["hubDocumentId"],
            row["type"],
            row["from"],
            row["state"] + (" (purged)" if row["contentPurged"] else ""),
            "\n".join(f"{code} {state}" for code, state in row["recipients"].items()),
            row["acceptedAt"][5:16].replace("T", " "),
            f"{row['size']:,}",
        )
    Console().print(table)


@documents.command("trace")
@database_options
@click.argument("document")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@reports_errors
def trace(database_url: str | None, data_dir: Path | None, document: str, as_json: bool) -> None:
    """The trace of DOCUMENT (a hubDocumentId, or a DocumentId as the sender wrote it)."""
    with opened_runtime(database_url, data_dir) as runtime:
        looks_like_hub_id = len(document) == 36 and document.count("-") == 4
        hub_id, events = runtime.exchange.trace(
            None,
            hub_id=document if looks_like_hub_id else None,
            document_id=None if looks_like_hub_id else document,
        )
    if as_json:
        payload = {
            "hubDocumentId": hub_id,
            "events": [
                {
                    "at": e.at.isoformat(),
                    "event": e.kind.value,
                    "actor": e.actor,
                    "recipient": e.recipient,
                    "sha256": e.sha256,
                    "detail": e.detail,
                }
                for e in events
            ],
        }
        click.echo(json.dumps(payload, ensure_ascii=False, indent=2))
        return
    table = Table(title=f"trace of {hub_id}")
    for column in ("time (UTC)", "event", "actor", "recipient", "sha256", "detail"):
        table.add_column(column)
    for e in events:
        table.add_row(
            e.at.strftime("%m-%d %H:%M:%S"),
            e.kind.value,
            e.actor,
            e.recipient or "",
            (e.sha256 or "")[:16],
            e.detail or "",
        )
    Console().print(table)
