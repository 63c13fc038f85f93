"""The README's "try it" step works: docs/examples/zeep_authenticate.py against a served demo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "zeep_authenticate.py"


def test_zeep_example_authenticates_with_demo_credentials(sqlite_server: Any, tmp_path: Path) -> None:
    credentials = tmp_path / "demo-credentials.json"
    credentials.write_text(json.dumps([c.as_json() for c in sqlite_server.credentials]), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), str(credentials), sqlite_server.base_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    first = sqlite_server.credentials[0]
    assert f"session for {first.agency} ({first.name})" in result.stdout
    assert f"the hub sees: agency {first.agency}, application QLVB, key {first.accessKey}" in result.stdout


EXCHANGE_EXAMPLE = EXAMPLE.with_name("zeep_exchange.py")


def test_zeep_exchange_example_runs_a_whole_exchange(sqlite_server: Any, tmp_path: Path) -> None:
    credentials = tmp_path / "demo-credentials.json"
    credentials.write_text(json.dumps([c.as_json() for c in sqlite_server.credentials]), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(EXCHANGE_EXAMPLE), str(credentials), sqlite_server.base_url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "000.00.00.H30 confirmed: done" in out
    for code in ("01", "03", "04", "05", "06"):
        assert f"000.00.00.H53 received status {code}" in out
    events = [line.split()[1] for line in out.splitlines() if line.startswith("  ")]
    assert events[:5] == ["accepted", "routed", "fetched", "confirmed", "purged"]
    assert events[5:] == ["status"] * 5
