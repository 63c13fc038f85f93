"""``esb routes``: the routing rules that send destinations to bridge adapters (docs/routing.md).

A pattern is an identifier code (that agency), ``CODE/*`` (that agency and every unit under
it) or ``*`` (everything not covered otherwise).  Registered agencies with no exact or subtree
rule go to their mailbox here.  Every node reads the rules again within 2 seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from esb.cli.main import reports_errors
from esb.cli.registry_commands import database_options, opened_runtime

_NOT_CONFIGURED = (
    "note: adapter {adapter} is not configured on this hub: deliveries routed to it are retried, "
    "then reported undeliverable to their senders"
)


@click.group()
def routes() -> None:
    """Routing rules: which destinations go to which bridge adapter (zone)."""


@routes.command("list")
@database_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@reports_errors
def routes_list(database_url: str | None, data_dir: Path | None, as_json: bool) -> None:
    """The rules, most specific first (exact codes, deepest subtrees, then *)."""
    from esb.domain.routing import RoutingTable
    from esb.storage import routing_store

    with opened_runtime(database_url, data_dir) as runtime, runtime.database.transaction() as session:
        rows = {row.pattern: row for row in routing_store.rule_rows(session)}
        ordered = RoutingTable(routing_store.rules(session)).rules
        configured = set(runtime.undeliverable.adapters.names())
    views = [
        {
            "pattern": rule.pattern.text,
            "kind": rule.pattern.kind.value,
            "zone": rule.zone,
            "adapter": rule.adapter,
            "configured": rule.is_local or rule.adapter in configured,
            "note": rule.note,
            "createdAt": rows[rule.pattern.text].created_at.isoformat(),
        }
        for rule in ordered
    ]
    if as_json:
        click.echo(json.dumps({"routes": views}, ensure_ascii=False, indent=2))
        return
    if not views:
        click.echo("no routing rules: registered agencies go to their mailbox here, others are unknown")
        return
    table = Table(title=f"routing rules ({len(views)})")
    for column in ("pattern", "zone", "adapter", "note", "added (UTC)"):
        table.add_column(column)
    for view in views:
        adapter = str(view["adapter"]) + ("" if view["configured"] else " (not configured)")
        table.add_row(
            str(view["pattern"]),
            str(view["zone"]),
            adapter,
            str(view["note"] or ""),
            str(view["createdAt"])[:16].replace("T", " "),
        )
    Console().print(table)


@routes.command("add")
@database_options
@click.argument("pattern")
@click.option("--zone", required=True, help="The zone the destinations are in (e.g. national, h30).")
@click.option("--adapter", required=True, help="The bridge adapter that reaches them (local: this hub).")
@click.option("--note", help="Why the rule exists (shown by routes list).")
@click.option("--replace", is_flag=True, help="Replace the rule with the same pattern, if any.")
@reports_errors
def routes_add(
    database_url: str | None,
    data_dir: Path | None,
    pattern: str,
    zone: str,
    adapter: str,
    note: str | None,
    replace: bool,
) -> None:
    """Send destinations matching PATTERN (CODE, CODE/* or *) to ADAPTER in ZONE."""
    from esb.clock import utc_now
    from esb.domain.routing import RoutingRuleSpec
    from esb.storage import routing_store

    rule = RoutingRuleSpec.of(pattern, zone=zone, adapter=adapter, note=note)
    with opened_runtime(database_url, data_dir) as runtime:
        with runtime.database.transaction() as session:
            routing_store.add_rule(session, rule, now=utc_now(), replace=replace)
        configured = rule.is_local or rule.adapter in runtime.undeliverable.adapters
    click.echo(f"{rule.pattern.text} → adapter {rule.adapter} (zone {rule.zone})")
    if not configured:
        click.echo(_NOT_CONFIGURED.format(adapter=rule.adapter), err=True)


@routes.command("remove")
@database_options
@click.argument("pattern")
@reports_errors
def routes_remove(database_url: str | None, data_dir: Path | None, pattern: str) -> None:
    """Remove the rule for PATTERN."""
    from esb.storage import routing_store

    with opened_runtime(database_url, data_dir) as runtime, runtime.database.transaction() as session:
        routing_store.remove_rule(session, pattern)
    click.echo(f"rule {pattern.strip()} removed")


@routes.command("resolve")
@database_options
@click.argument("codes", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@reports_errors
def routes_resolve(
    database_url: str | None, data_dir: Path | None, codes: tuple[str, ...], as_json: bool
) -> None:
    """Where documents to each CODE go now: a mailbox here, a bridge adapter, or nowhere."""
    with opened_runtime(database_url, data_dir) as runtime, runtime.database.transaction() as session:
        resolved = runtime.router.resolve(session, [code.strip() for code in codes])
    views = [
        {
            "code": code,
            "route": route.kind.value,
            "adapter": route.adapter,
            "zone": route.zone,
            "rule": route.rule,
            "description": route.describe,
        }
        for code, route in resolved.items()
    ]
    if as_json:
        click.echo(json.dumps({"routes": views}, ensure_ascii=False, indent=2))
        return
    for view in views:
        click.echo(f"{view['code']}: {view['description']}")
