"""``esb directory find | show | changes | generate`` through CliRunner, on both engines."""

from __future__ import annotations

import base64
import csv
import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

Esb = Callable[..., Result]
TAY_NINH = "000.00.00.H53"
AN_GIANG = "000.00.00.H01"  # the first province: its departments are among the first 400 units
AN_GIANG_TTTT = "000.00.11.H01"


@pytest.fixture
def runner() -> CliRunner:
    master_key = base64.b64encode(secrets.token_bytes(32)).decode()
    return CliRunner(env={"ESB_MASTER_KEY": master_key, "COLUMNS": "250", "NO_COLOR": "1"})


@pytest.fixture
def esb(cli: click.Group, runner: CliRunner, database_url: str, tmp_path: Path) -> Esb:
    """``esb(*args)``: one command on this test's database."""

    def invoke(*args: str | Path) -> Result:
        command = [str(a) for a in args] + [
            "--database-url",
            database_url,
            "--data-dir",
            str(tmp_path / "data"),
        ]
        return runner.invoke(cli, command, catch_exceptions=False)

    return invoke


@pytest.fixture
def imported(cli: click.Group, runner: CliRunner, esb: Esb, tmp_path: Path) -> Path:
    """A generated list of 400 agencies, imported."""
    listing = tmp_path / "agencies.csv"
    generated = runner.invoke(cli, ["directory", "generate", "--count", "400", "-o", str(listing)])
    assert generated.exit_code == 0, generated.output
    result = esb("agency", "import", listing)
    assert result.exit_code == 0, result.output
    return listing


def as_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_generate_writes_a_deterministic_list_for_agency_import(
    cli: click.Group, runner: CliRunner, tmp_path: Path
) -> None:
    first, second, other = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.json"
    for target, seed in ((first, "102"), (second, "102"), (other, "5")):
        result = runner.invoke(
            cli, ["directory", "generate", "--count", "250", "--seed", seed, "-o", str(target)]
        )
        assert result.exit_code == 0, result.output
        assert "esb agency import" in result.output
    assert first.read_bytes() == second.read_bytes()
    with first.open(encoding="utf-8") as source:
        rows = list(csv.DictReader(source))
    assert len(rows) == 250
    assert list(rows[0]) == ["code", "name", "qd20_code", "old_code", "parent_code"]
    assert any("ỉ" in row["name"] or "ố" in row["name"] for row in rows)  # names keep their diacritics
    agencies = json.loads(other.read_text("utf-8"))["agencies"]
    assert len(agencies) == 250
    assert {a["code"] for a in agencies} == {row["code"] for row in rows}  # same units, other names chosen


def test_find_by_name_code_and_filters(imported: Path, esb: Esb) -> None:
    found = as_json(esb("directory", "find", "uy ban nhan dan tinh tay ninh", "--json"))
    assert found[0]["code"] == TAY_NINH
    assert found[0]["match"] == "name-exact"
    assert found[0]["presence"] == "unknown"
    by_code = as_json(esb("directory", "find", AN_GIANG_TTTT, "--json"))
    assert by_code[0]["code"] == AN_GIANG_TTTT
    assert by_code[0]["match"] == "code"
    assert by_code[0]["level"] == 2
    under = as_json(
        esb("directory", "find", "", "--parent", AN_GIANG, "--level", "2", "--limit", "5", "--json")
    )
    assert len(under) == 5
    assert all(a["parent_code"] == AN_GIANG and a["level"] == 2 for a in under)
    table = esb("directory", "find", "Sở TT&TT An Giang")
    assert table.exit_code == 0
    assert AN_GIANG_TTTT in table.output


def test_show_gives_parent_and_children(imported: Path, esb: Esb) -> None:
    shown = as_json(esb("directory", "show", AN_GIANG_TTTT, "--json"))
    assert shown["code"] == AN_GIANG_TTTT
    assert shown["parent"]["code"] == AN_GIANG
    assert shown["children"] == []  # 400 agencies: the departments' units are not in the list
    province = esb("directory", "show", AN_GIANG)
    assert province.exit_code == 0
    assert "direct children" in province.output


def test_changes_follow_a_lock(imported: Path, esb: Esb) -> None:
    page = as_json(esb("directory", "changes", "--since", "0", "--limit", "100", "--json"))
    assert len(page["agencies"]) == 100
    assert page["more"] is True
    everything = as_json(esb("directory", "changes", "--since", "0", "--limit", "5000", "--json"))
    assert len(everything["agencies"]) == 400
    assert everything["more"] is False
    version = everything["version"]
    assert esb("agency", "lock", TAY_NINH).exit_code == 0
    after = as_json(esb("directory", "changes", "--since", str(version), "--json"))
    assert [(a["code"], a["state"]) for a in after["agencies"]] == [(TAY_NINH, "locked")]
    assert after["version"] == version + 1
    table = esb("directory", "changes", "--since", str(version))
    assert "1 change(s)" in table.output


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("directory", "find", "   "), "Client.DirectoryQueryEmpty"),
        (("directory", "find", "x" * 201), "Client.DirectoryQueryTooLong"),
        (("directory", "find", "ubnd", "--parent", "Tây Ninh"), "Client.MalformedCode"),
        (("directory", "show", "000.00.77.H53"), "Client.UnknownAgency"),
        (("directory", "show", "Tây Ninh"), "Client.MalformedCode"),
    ],
)
def test_refusals_exit_1_with_the_code(imported: Path, esb: Esb, args: tuple[str, ...], code: str) -> None:
    result = esb(*args)
    assert result.exit_code == 1
    assert f"error: {code}:" in result.output
