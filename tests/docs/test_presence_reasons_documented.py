"""Every presence reason code, state and setting is explained in docs/presence.md."""

from __future__ import annotations

from pathlib import Path

from esb.domain.presence import CONNECT_REASONS, DISCONNECT_REASONS, PresenceState

DOC = Path(__file__).resolve().parents[2] / "docs" / "presence.md"
SETTINGS = (
    "ESB_PRESENCE_SILENCE_SECONDS",
    "ESB_PRESENCE_KEEPALIVE_SECONDS",
    "ESB_PRESENCE_CHANNEL_LEASE_SECONDS",
    "ESB_PRESENCE_WRITE_THROTTLE_SECONDS",
)


def _rows(text: str) -> set[str]:
    """The first cell of every table row that starts with a code: ``| `code` | …``."""
    return {line.split("|")[1].strip().strip("`") for line in text.splitlines() if line.startswith("| `")}


def test_every_reason_state_and_setting_has_a_row() -> None:
    rows = _rows(DOC.read_text(encoding="utf-8"))
    expected = {*CONNECT_REASONS, *DISCONNECT_REASONS, *(s.value for s in PresenceState), *SETTINGS}
    assert sorted(expected - rows) == []


def test_the_settings_are_documented_where_they_are_read() -> None:
    settings = (Path(__file__).resolve().parents[2] / "esb" / "settings.py").read_text(encoding="utf-8")
    for name in SETTINGS:
        assert f"``{name}``" in settings, name
