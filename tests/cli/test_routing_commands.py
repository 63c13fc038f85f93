"""``esb routes list|add|remove|resolve`` through CliRunner, on both engines."""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from esb.pipeline.demo_seed import seed_demo
from esb.settings import Settings
from esb.wiring import build_runtime

H30, H53 = "000.00.00.H30", "000.00.00.H53"


@pytest.fixture
def routes(cli: click.Group, database_url: str, tmp_path: Path) -> tuple[CliRunner, list[str]]:
    master_key = base64.b64encode(secrets.token_bytes(32)).decode()
    data_dir = tmp_path / "data"
    runtime = build_runtime(Settings(data_dir=data_dir, database_url=database_url, master_key=master_key))
    try:
        seed_demo(runtime.registration)
    finally:
        runtime.database.dispose()
    runner = CliRunner(env={"ESB_MASTER_KEY": master_key, "COLUMNS": "200", "NO_COLOR": "1"})
    return runner, ["--database-url", database_url, "--data-dir", str(data_dir)]


def test_rules_are_added_listed_resolved_and_removed(
    cli: click.Group, routes: tuple[CliRunner, list[str]]
) -> None:
    runner, common = routes

    empty = runner.invoke(cli, ["routes", "list", *common], catch_exceptions=False)
    assert empty.exit_code == 0
    assert "no routing rules" in empty.output

    added = runner.invoke(
        cli,
        ["routes", "add", "*", *common, "--zone", "national", "--adapter", "vxp", "--note", "trục VXP"],
        catch_exceptions=False,
    )
    assert added.exit_code == 0, added.output
    assert "* → adapter vxp (zone national)" in added.output
    assert "adapter vxp is not configured on this hub" in added.output  # CliRunner mixes stderr in
    subtree = runner.invoke(
        cli, ["routes", "add", "000.00.00.H31/*", *common, "--zone", "h31", "--adapter", "peer-h31"]
    )
    assert subtree.exit_code == 0, subtree.output

    listed = runner.invoke(cli, ["routes", "list", *common, "--json"], catch_exceptions=False)
    rows = json.loads(listed.output)["routes"]
    assert [(r["pattern"], r["kind"], r["zone"], r["adapter"], r["configured"], r["note"]) for r in rows] == [
        ("000.00.00.H31/*", "subtree", "h31", "peer-h31", False, None),
        ("*", "any", "national", "vxp", False, "trục VXP"),
    ]
    table = runner.invoke(cli, ["routes", "list", *common], catch_exceptions=False)
    assert "peer-h31 (not configured)" in table.output

    resolved = runner.invoke(
        cli, ["routes", "resolve", *common, H53, "000.00.05.H31", "000.00.00.G17"], catch_exceptions=False
    )
    assert resolved.exit_code == 0
    assert resolved.output.splitlines() == [
        f"{H53}: mailbox on this hub (by the registry)",
        "000.00.05.H31: adapter peer-h31 (zone h31, by rule 000.00.00.H31/*)",
        "000.00.00.G17: adapter vxp (zone national, by rule *)",
    ]
    as_json = json.loads(runner.invoke(cli, ["routes", "resolve", *common, H30, "--json"]).output)
    assert as_json["routes"] == [
        {
            "code": H30,
            "route": "local",
            "adapter": "local",
            "zone": "local",
            "rule": None,
            "description": "mailbox on this hub (by the registry)",
        }
    ]

    removed = runner.invoke(cli, ["routes", "remove", *common, "*"], catch_exceptions=False)
    assert removed.exit_code == 0
    after = runner.invoke(cli, ["routes", "resolve", *common, "000.00.00.G17"], catch_exceptions=False)
    assert (
        after.output.strip()
        == "000.00.00.G17: unknown: not a registered agency, and no routing rule covers it"
    )


@pytest.mark.parametrize(
    ("arguments", "code"),
    [
        (["add", "000.1137.H53", "--zone", "z", "--adapter", "a"], "Client.InvalidRoutePattern"),
        (["add", "H53/**", "--zone", "z", "--adapter", "a"], "Client.InvalidRoutePattern"),
        (["add", H30, "--zone", "Zone Nam", "--adapter", "a"], "Client.InvalidRoute"),
        (["add", H30, "--zone", "z", "--adapter", ""], "Client.InvalidRoute"),
        (["remove", "000.00.00.H99/*"], "Client.RouteNotFound"),
        (["remove", "nonsense"], "Client.InvalidRoutePattern"),
    ],
)
def test_malformed_or_missing_rules_are_refused_clearly(
    cli: click.Group, routes: tuple[CliRunner, list[str]], arguments: list[str], code: str
) -> None:
    runner, common = routes
    result = runner.invoke(cli, ["routes", arguments[0], *common, *arguments[1:]])
    assert result.exit_code == 1, result.output
    assert f"error: {code}: " in result.output
    assert "Traceback" not in result.output


def test_a_pattern_is_added_once_unless_replaced(
    cli: click.Group, routes: tuple[CliRunner, list[str]]
) -> None:
    runner, common = routes
    first = ["routes", "add", H30, *common, "--zone", "h30", "--adapter", "peer-h30"]
    assert runner.invoke(cli, first).exit_code == 0
    again = runner.invoke(cli, first)
    assert again.exit_code == 1
    assert "error: Client.RouteExists: a rule for 000.00.00.H30 exists already" in again.output
    replaced = runner.invoke(cli, [*first[:-1], "peer-h30b", "--replace"])
    assert replaced.exit_code == 0, replaced.output
    resolved = runner.invoke(cli, ["routes", "resolve", *common, H30])
    assert "adapter peer-h30b" in resolved.output
