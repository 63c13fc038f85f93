"""``esb directory find | show | changes | generate``: the agency directory (danh bạ cơ quan).

``find`` searches as FindAgencies does (codes in any form, names with or without
diacritics, abbreviations such as ``UBND`` or ``Sở TT&TT``), ``show`` is GetAgency, and
``changes`` is GetAgencyChanges.  ``generate`` writes a generated national list (for tests,
benchmarks and demos) that ``esb agency import`` reads.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from esb.cli.main import reports_errors
from esb.cli.registry_commands import database_options, opened_runtime
from esb.cli.rendering import console
from esb.domain.directory_search import DEFAULT_LIMIT, MAX_LEVEL, MAX_LIMIT, DirectoryEntry

if TYPE_CHECKING:
    from esb.pipeline.directory import AgencySummary

_PRESENCE_STYLE = {"online": "green", "offline": "red", "unknown": "dim"}
_STATE_STYLE = {"active": "green", "locked": "red"}
CSV_COLUMNS = ("code", "name", "qd20_code", "old_code", "parent_code")


@click.group()
def directory() -> None:
    """Look agencies up in the directory, as the Directory SOAP service does."""


def _entry_view(entry: DirectoryEntry) -> dict[str, Any]:
    return {
        "code": entry.code,
        "qd20_code": entry.qd20_code,
        "old_code": entry.old_code,
        "name": entry.name,
        "parent_code": entry.parent,
        "level": entry.level,
        "state": entry.state,
        "version": entry.version,
    }


def _summary_view(item: AgencySummary) -> dict[str, Any]:
    view = _entry_view(item.entry)
    view["presence"] = item.presence.value
    if item.match is not None:
        view["match"] = item.match.value
        view["score"] = item.score
    return view


def _echo_json(value: object) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2))


def _print(views: Sequence[dict[str, Any]], *, title: str, extra: str = "presence") -> None:
    """A table of agencies; the last column is ``extra`` (presence, match or version)."""
    table = Table(title=title, title_justify="left")
    table.add_column("code", no_wrap=True)
    table.add_column("name", overflow="fold", min_width=20)
    table.add_column("QĐ 20", overflow="fold")
    for column in ("level", "state"):
        table.add_column(column, no_wrap=True)
    if extra == "match":
        table.add_column("presence", no_wrap=True)
    table.add_column(extra, no_wrap=True)
    for view in views:
        state = view["state"]
        row = [
            view["code"],
            view["name"],
            view["qd20_code"] or "",
            str(view["level"]),
            f"[{_STATE_STYLE.get(state, 'yellow')}]{state}[/]",
        ]
        if extra in ("presence", "match"):
            presence = view.get("presence", "unknown")
            row.append(f"[{_PRESENCE_STYLE.get(presence, 'dim')}]{presence}[/]")
        if extra != "presence":
            row.append(str(view.get(extra, "")))
        table.add_row(*row)
    console.print(table)


@directory.command("find")
@click.argument("query", required=False, default="")
@click.option("--parent", help="Only units under this code (any depth); QUERY may then be empty.")
@click.option("--level", type=click.IntRange(1, MAX_LEVEL), help="Only units of this level (1 = top).")
@click.option("--limit", type=click.IntRange(1, MAX_LIMIT), default=DEFAULT_LIMIT, show_default=True)
@click.option("--online", "only_online", is_flag=True, help="Only agencies online now.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
@database_options
@reports_errors
def directory_find(
    query: str,
    parent: str | None,
    level: int | None,
    limit: int,
    only_online: bool,
    as_json: bool,
    database_url: str | None,
    data_dir: Path | None,
) -> None:
    """Find agencies by code (exact, prefix, subtree) or name (with or without diacritics).

    \b
    esb directory find "UBND tỉnh Tây Ninh"
    esb directory find "so tt&tt hau giang"
    esb directory find 000.00.32.H53          (the code, then the units under it)
    esb directory find --parent H53 --level 2 ""
    """
    with opened_runtime(database_url, data_dir) as runtime:
        found = runtime.directory.find(
            query, parent_code=parent, level=level, only_online=only_online, limit=limit
        )
    views = [_summary_view(item) for item in found]
    if as_json:
        _echo_json(views)
        return
    _print(views, title=f"directory: {query or parent}", extra="match")
    console.print(f"{len(views)} found")


@directory.command("show")
@click.argument("code")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@database_options
@reports_errors
def directory_show(code: str, as_json: bool, database_url: str | None, data_dir: Path | None) -> None:
    """One agency (by any of its codes) with its parent and its direct children."""
    with opened_runtime(database_url, data_dir) as runtime:
        view = runtime.directory.get(code)
    agency = _summary_view(view.agency)
    parent = _summary_view(view.parent) if view.parent is not None else None
    children = [_summary_view(child) for child in view.children]
    if as_json:
        _echo_json({**agency, "parent": parent, "children": children})
        return
    _print([agency], title=f"agency {agency['code']}")
    if parent is not None:
        _print([parent], title="parent")
    if children:
        _print(children, title=f"{len(children)} direct children")


@directory.command("changes")
@click.option("--since", "since", type=click.IntRange(0), default=0, show_default=True, help="sinceVersion.")
@click.option("--limit", type=click.IntRange(1, 5000), default=500, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@database_options
@reports_errors
def directory_changes(
    since: int, limit: int, as_json: bool, database_url: str | None, data_dir: Path | None
) -> None:
    """Agencies changed after version SINCE, oldest change first (what GetAgencyChanges gives)."""
    with opened_runtime(database_url, data_dir) as runtime:
        page = runtime.directory.changes(since, limit)
    views = [_entry_view(entry) for entry in page.entries]
    if as_json:
        _echo_json({"version": page.version, "more": page.more, "agencies": views})
        return
    _print(views, title=f"changes after version {since}", extra="version")
    more = f" (more: run again with --since {page.version})" if page.more else ""
    console.print(f"{len(views)} change(s); version {page.version}{more}")


@directory.command("generate")
@click.option("--count", type=click.IntRange(1, 800_000), default=120_000, show_default=True)
@click.option("--seed", type=int, default=102, show_default=True, help="Same seed and count, same list.")
@click.option(
    "-o",
    "--output",
    "output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    required=True,
    help="The file to write (.json for JSON, otherwise CSV).",
)
@reports_errors
def directory_generate(count: int, seed: int, output: Path) -> None:
    """Write a generated national agency list for `esb agency import` (tests, benchmarks, demos).

    Ministries and central bodies, the 63 provinces with their departments, districts,
    communes, schools and commune bodies; Vietnamese names with diacritics, some written
    with the usual abbreviations (UBND, Sở TT&TT); QCVN 102 codes with QĐ 20 and former codes.
    """
    from esb.pipeline.directory_fixture import generate_agencies

    records = generate_agencies(count, seed=seed)
    rows = [
        {
            "code": r.code,
            "name": r.name,
            "qd20_code": r.qd20_code or "",
            "old_code": r.old_code or "",
            "parent_code": r.parent_code or "",
        }
        for r in records
    ]
    if output.suffix.lower() == ".json":
        output.write_text(json.dumps({"agencies": rows}, ensure_ascii=False, indent=1) + "\n", "utf-8")
    else:
        with output.open("w", encoding="utf-8", newline="") as sink:
            writer = csv.DictWriter(sink, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    click.echo(f"wrote {len(rows):,} agencies to {output}; import them with: esb agency import {output}")
