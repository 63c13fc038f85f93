"""``esb audit verify|head`` and ``esb evidence export|verify`` on a database of each engine."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from datetime import UTC, date, datetime
from pathlib import Path

import click
from click.testing import CliRunner
from sqlalchemy import text

from esb.domain.access import Caller
from esb.domain.exchange import Outcome
from esb.pipeline.demo_packages import build_edoc, edoc_spec
from esb.pipeline.demo_seed import seed_demo
from esb.security.pki import make_root_ca
from esb.settings import Settings
from esb.storage import registry
from esb.wiring import build_runtime

SENDER, RECIPIENT = "000.00.00.H53", "000.00.00.H30"


def test_audit_and_evidence_commands(cli: click.Group, database_url: str, tmp_path: Path) -> None:
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
        spec = edoc_spec(SENDER, [RECIPIENT], number="7", promulgated=date(2026, 11, 20))
        receipt = runtime.exchange.send_document(
            sender, package=build_edoc(spec, b"x", now=datetime.now(UTC))
        )
        hub_id = receipt.hub_document_id
        fetched = runtime.exchange.get_document(recipient, hub_id)
        assert fetched.package is not None
        runtime.exchange.confirm(recipient, hub_id, hashlib.sha256(fetched.package).hexdigest(), Outcome.DONE)
    finally:
        runtime.database.dispose()

    runner = CliRunner(env={"ESB_MASTER_KEY": master_key, "COLUMNS": "200", "NO_COLOR": "1"})
    common = ["--database-url", database_url, "--data-dir", str(data_dir)]

    intact = runner.invoke(cli, ["audit", "verify", *common, "--json"], catch_exceptions=False)
    assert intact.exit_code == 0, intact.output
    report = json.loads(intact.output)
    assert report["intact"] is True
    assert (report["documents"], report["receipts"]) == (1, 2)
    head = runner.invoke(cli, ["audit", "head", *common], catch_exceptions=False)
    recorded = head.output.strip()
    assert recorded == f"{report['head']['seq']}:{report['head']['hash']}"
    hub_cert = str(data_dir / "hub" / "cert.pem")
    anchored = ["audit", "verify", *common, "--head", recorded, "--trust", hub_cert]
    assert runner.invoke(cli, anchored, catch_exceptions=False).exit_code == 0
    bad_head = runner.invoke(cli, ["audit", "verify", *common, "--head", "12:abc"])
    assert bad_head.exit_code == 2
    assert "SEQ:HASH" in bad_head.output

    bundle = tmp_path / "evidence.zip"
    exported = runner.invoke(
        cli, ["evidence", "export", hub_id, "-o", str(bundle), *common], catch_exceptions=False
    )
    assert exported.exit_code == 0, exported.output
    assert f"sha256 {hashlib.sha256(bundle.read_bytes()).hexdigest()}" in exported.output
    good = runner.invoke(
        cli, ["evidence", "verify", str(bundle), "--trust", hub_cert], catch_exceptions=False
    )
    assert good.exit_code == 0, good.output
    untrusted = runner.invoke(cli, ["evidence", "verify", str(bundle), "--json"], catch_exceptions=False)
    assert untrusted.exit_code == 1
    assert json.loads(untrusted.output)["ok"] is False

    missing = runner.invoke(
        cli, ["evidence", "export", "no-such-document", "-o", str(tmp_path / "x.zip"), *common]
    )
    assert missing.exit_code == 1
    assert "Client.DocumentNotFound" in missing.output
    assert not (tmp_path / "x.zip").exists()

    # Someone edits an event in the database: the audit names it and exits 1.
    runtime = build_runtime(Settings(data_dir=data_dir, database_url=database_url, master_key=master_key))
    try:
        with runtime.database.transaction() as session:
            session.execute(text("UPDATE trace_event SET actor = 'someone else' WHERE seq = 2"))
    finally:
        runtime.database.dispose()
    broken = runner.invoke(cli, ["audit", "verify", *common], catch_exceptions=False)
    assert broken.exit_code == 1
    assert "BROKEN at event 2 (edited" in broken.output
    # Receipts checked against another anchor than the hub's own certificate are refused.
    other = tmp_path / "other-ca.pem"
    other.write_bytes(make_root_ca("Someone else", now=datetime.now(UTC)).certificate_pem())
    foreign = runner.invoke(cli, ["audit", "verify", *common, "--trust", str(other), "--json"])
    assert foreign.exit_code == 1
    assert all("untrusted" in p["message"] for p in json.loads(foreign.output)["receipt_problems"])
