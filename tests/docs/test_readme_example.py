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
