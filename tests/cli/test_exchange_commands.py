"""``esb documents list|trace`` and ``esb worker --once`` through CliRunner, on both engines."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from datetime import UTC, date, datetime
from pathlib import Path

import click
from click.testing import CliRunner

from esb.domain.access import Caller
from esb.domain.exchange import Outcome
from esb.pipeline.demo_packages import build_edoc, edoc_spec
from esb.pipeline.demo_seed import seed_demo
from esb.settings import Settings
from esb.storage import registry
from esb.wiring import build_runtime

SENDER, RECIPIENT = "000.00.00.H53", "000.00.00.H30"


def test_operators_list_trace_and_run_the_worker(cli: click.Group, database_url: str, tmp_path: Path) -> None:
    master_key = base64.b64encode(secrets.token_bytes(32)).decode()
    data_dir = tmp_path / "data"
    runtime = build_runtime(Settings(data_dir=data_dir, database_url=database_url, master_key=master_key))
    try:
        seed_demo(runtime.registration)
        with runtime.database.transaction() as session:
            sender = Caller(SENDER, registry.get_application(session, SENDER, "QLVB").id, "QLVB", None)
            recipient = Caller(
                RECIPIENT, registry.get_application(session, RECIPIENT, "QLVB").id, "QLVB", None
            )
        spec = edoc_spec(SENDER, [RECIPIENT], number="42", promulgated=date(2026, 11, 20))
        package = build_edoc(spec, b"noi dung", now=datetime.now(UTC))
        receipt = runtime.exchange.send_document(sender, package=package)
        fetched = runtime.exchange.get_document(recipient, receipt.hub_document_id)
        assert fetched.package is not None
        runtime.exchange.confirm(
            recipient, receipt.hub_document_id, hashlib.sha256(fetched.package).hexdigest(), Outcome.DONE
        )
    finally:
        runtime.database.dispose()

    runner = CliRunner(env={"ESB_MASTER_KEY": master_key, "COLUMNS": "250", "NO_COLOR": "1"})
    common = ["--database-url", database_url, "--data-dir", str(data_dir)]

    listed = runner.invoke(cli, ["documents", "list", *common, "--json"], catch_exceptions=False)
    assert listed.exit_code == 0, listed.output
    payload = json.loads(listed.output)
    (row,) = payload["documents"]
    assert (row["hubDocumentId"], row["from"], row["state"]) == (receipt.hub_document_id, SENDER, "completed")
    assert row["recipients"] == {RECIPIENT: "done"}
    assert row["contentPurged"] is True
    assert payload["byState"] == {"completed": 1}

    table = runner.invoke(cli, ["documents", "list", *common, "--agency", RECIPIENT], catch_exceptions=False)
    assert receipt.hub_document_id in table.output
    assert "completed (purged)" in table.output
    other = runner.invoke(cli, ["documents", "list", *common, "--agency", "000.00.00.G22", "--json"])
    assert json.loads(other.output)["documents"] == []

    for wanted in (receipt.hub_document_id, str(receipt.document_id)):
        traced = runner.invoke(cli, ["documents", "trace", *common, wanted, "--json"], catch_exceptions=False)
        assert traced.exit_code == 0, traced.output
        events = json.loads(traced.output)["events"]
        assert [e["event"] for e in events] == ["accepted", "routed", "fetched", "confirmed", "purged"]

    unknown = runner.invoke(cli, ["documents", "trace", *common, "no-such-document"])
    assert unknown.exit_code != 0
    assert "Client.DocumentNotFound" in unknown.output
    assert "Traceback" not in unknown.output

    worked = runner.invoke(cli, ["worker", *common, "--once"], catch_exceptions=False)
    assert worked.exit_code == 0, worked.output
    assert "0 routed, 0 purged, 0 expired, 0 upload spaces expired" in worked.output
