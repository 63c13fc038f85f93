"""Every signature reason code and fault the hub can give is explained in docs/signatures.md."""

from __future__ import annotations

from pathlib import Path

from esb.domain.signatures import FAULT_BY_REASON, FAULT_BY_VERDICT, REASONS, Verdict
from esb.security.signer_binding import NOT_BOUND

DOC = Path(__file__).resolve().parents[2] / "docs" / "signatures.md"


def test_every_reason_has_a_row_with_its_verdict() -> None:
    text = DOC.read_text(encoding="utf-8")
    rows = {
        line.split("|")[1].strip().strip("`"): line for line in text.splitlines() if line.startswith("| `")
    }
    missing = [reason for reason in REASONS if reason not in rows]
    assert missing == []
    for reason, (verdict, _meaning) in REASONS.items():
        assert f"| {verdict.value} |" in rows[reason], reason


def test_every_fault_code_and_warning_is_named() -> None:
    text = DOC.read_text(encoding="utf-8")
    for code in {*FAULT_BY_VERDICT.values(), *FAULT_BY_REASON.values()}:
        assert f"`{code}`" in text, code
    for verdict in Verdict:
        assert f"`{verdict.value}`" in text, verdict
    for warning in ("signature-namespace", "signature-not-last", NOT_BOUND):
        assert f"`{warning}`" in text, warning
