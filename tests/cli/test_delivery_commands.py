"""``esb deliveries list|redrive|offline-limit`` through CliRunner, on both engines."""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from esb.domain.access import Caller
from esb.domain.edxml_enums import StatusCode
from esb.pipeline.demo_packages import build_edoc, build_status, edoc_spec
from esb.pipeline.demo_seed import seed_demo
from esb.settings import Settings
from esb.storage import registry
from esb.wiring import build_runtime

SENDER, RECIPIENT, OTHER = "000.00.00.H53", "000.00.00.H30", "000.00.01.H30"
ELSEWHERE = "000.00.00.H31"  # registered nowhere here


@dataclass(frozen=True)
class Setting:
    runner: CliRunner
    common: list[str]
    dead_edoc: str  # hub id of an edoc reported undeliverable to RECIPIENT
    dead_status: str  # hub id of a status to ELSEWHERE (no route)


@pytest.fixture
def setting(database_url: str, tmp_path: Path) -> Setting:
    master_key = base64.b64encode(secrets.token_bytes(32)).decode()
    data_dir = tmp_path / "data"
    runtime = build_runtime(Settings(data_dir=data_dir, database_url=database_url, master_key=master_key))
    try:
        seed_demo(runtime.registration)
        with runtime.database.transaction() as session:
            callers = {
                code: Caller(code, registry.get_application(session, code, "QLVB").id, "QLVB", None)
                for code in (SENDER, OTHER)
            }
        today, now = date(2026, 11, 20), datetime.now(UTC)
        for number in ("51", "52"):
            spec = edoc_spec(SENDER, [RECIPIENT, OTHER], number=number, promulgated=today)
            receipt = runtime.exchange.send_document(callers[SENDER], package=build_edoc(spec, b"x", now=now))
        runtime.undeliverable.report(receipt.hub_document_id, RECIPIENT, "callback pushes failed 8 times")
        status = build_status(
            OTHER,
            ELSEWHERE,
            f"{ELSEWHERE},2026/11/20,9/BC-DEMO",
            StatusCode.ARRIVED,
            number="9",
            promulgated=today,
            now=now,
        )
        reply = runtime.exchange.send_status(callers[OTHER], package=status)
    finally:
        runtime.database.dispose()
    runner = CliRunner(env={"ESB_MASTER_KEY": master_key, "COLUMNS": "250", "NO_COLOR": "1"})
    return Setting(
        runner,
        ["--database-url", database_url, "--data-dir", str(data_dir)],
        receipt.hub_document_id,
        reply.hub_document_id,
    )


def invoke(cli: click.Group, setting: Setting, *arguments: str) -> tuple[int, str]:
    result = setting.runner.invoke(cli, ["deliveries", arguments[0], *setting.common, *arguments[1:]])
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_dead_letters_are_listed_with_their_reason(cli: click.Group, setting: Setting) -> None:
    code, output = invoke(cli, setting, "list", "--dead", "--json")
    assert code == 0, output
    dead = json.loads(output)["deliveries"]
    assert [(d["hubDocumentId"], d["from"], d["to"], d["state"], d["route"], d["reason"]) for d in dead] == [
        (
            setting.dead_status,
            OTHER,
            ELSEWHERE,
            "undeliverable",
            "none",
            f"{ELSEWHERE} is not a registered agency of this hub, and no routing rule covers it",
        ),
        (setting.dead_edoc, SENDER, RECIPIENT, "undeliverable", "local", "callback pushes failed 8 times"),
    ]
    assert all(d["deadSince"] and d["contentPurged"] is False for d in dead)

    code, table = invoke(cli, setting, "list", "--dead")
    assert code == 0
    assert "undeliverable deliveries (2)" in table
    assert "callback pushes failed 8 times" in table
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
        assert column in table

    code, output = invoke(cli, setting, "list", "--json")
    everything = json.loads(output)["deliveries"]
    assert len(everything) == 5  # two edocs to two recipients, one status
    assert {d["state"] for d in everything} == {"pending", "undeliverable"}
    code, output = invoke(cli, setting, "list", "--dead", "--agency", SENDER, "--json")
    assert [d["hubDocumentId"] for d in json.loads(output)["deliveries"]] == [setting.dead_edoc]
    code, output = invoke(cli, setting, "list", "--dead", "--agency", "000.00.00.G22")
    assert (code, output.strip()) == (0, "no undeliverable deliveries")


def test_redrive_puts_a_dead_letter_back_or_says_why_not(cli: click.Group, setting: Setting) -> None:
    _, output = invoke(cli, setting, "list", "--dead", "--json")
    ids = {d["hubDocumentId"]: d["id"] for d in json.loads(output)["deliveries"]}

    code, output = invoke(cli, setting, "redrive", str(ids[setting.dead_edoc]), "--operator", "ops")
    assert code == 0, output
    assert output.strip() == (
        f"delivery {ids[setting.dead_edoc]} of {setting.dead_edoc} re-driven to the mailbox of "
        f"{RECIPIENT} (pending)"
    )
    code, output = invoke(cli, setting, "redrive", str(ids[setting.dead_edoc]))
    assert code == 1
    assert "error: Client.NotUndeliverable: " in output
    assert "is pending, not undeliverable" in output

    code, output = invoke(cli, setting, "redrive", str(ids[setting.dead_status]))
    assert code == 1
    assert "error: Client.UnknownRecipient: " in output
    assert "no routing rule covers it" in output
    code, output = invoke(cli, setting, "redrive", "424242")
    assert (code, "error: Client.DeliveryNotFound: there is no delivery 424242" in output) == (1, True)
    code, output = invoke(cli, setting, "redrive", "abc")
    assert code == 2

    trace = setting.runner.invoke(cli, ["documents", "trace", *setting.common, setting.dead_edoc, "--json"])
    last = json.loads(trace.output)["events"][-1]
    assert (last["event"], last["actor"], last["recipient"]) == ("redriven", "operator:ops", RECIPIENT)


def test_an_agency_sets_its_own_offline_limit(cli: click.Group, setting: Setting) -> None:
    code, output = invoke(cli, setting, "offline-limit", SENDER, "6h")
    assert code == 0, output
    assert output.strip() == (
        f"{SENDER}: thường 6 h, khẩn 6 h, thượng khẩn 2 h, hỏa tốc 1 h, hỏa tốc hẹn giờ 1 h"
    )
    code, output = invoke(cli, setting, "offline-limit", SENDER, "default")
    assert (code, output.strip()) == (0, f"{SENDER}: the hub's offline limits by priority")
    code, output = invoke(cli, setting, "offline-limit", "000.00.00.H99", "6h")
    assert code == 1
    assert "error: Client.NotRegistered: " in output
    code, output = invoke(cli, setting, "offline-limit", SENDER, "soon")
    assert code == 2
    assert "is not a duration" in output
    code, output = invoke(cli, setting, "offline-limit", SENDER, "0")
    assert code == 1
    assert "must be positive" in output
