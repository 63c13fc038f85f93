"""Every stable code the code base can emit is documented in docs/error-codes.md."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CODE = re.compile(r'"((?:Client|Server|W)\.[A-Za-z0-9]+)"')


def test_every_emitted_code_is_documented() -> None:
    emitted = {m for path in (ROOT / "esb").rglob("*.py") for m in CODE.findall(path.read_text("utf-8"))}
    documented = set(
        re.findall(r"`((?:Client|Server|W)\.[A-Za-z0-9]+)`", (ROOT / "docs/error-codes.md").read_text())
    )
    assert emitted, "the pattern found no codes: the test would pass vacuously"
    assert emitted - documented == set()
