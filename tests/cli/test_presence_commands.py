"""``esb presence list | history | stats`` through CliRunner, on both engines."""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from esb.domain.access import Caller
from esb.domain.agencies import AgencyRecord
from esb.domain.presence import PresencePolicy
from esb.pipeline.presence import PresenceTracker
from esb.settings import Settings
from esb.wiring import build_runtime

A, B, C = "000.00.00.H53", "000.00.00.H30", "000.00.01.H53"
T0 = datetime(2026, 11, 21, 2, 30, tzinfo=UTC)


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


@dataclass(frozen=True)
class Esb:
    runner: CliRunner
    cli: click.Group
    common: list[str]

    def __call__(self, *args: str) -> Result:
        return self.runner.invoke(self.cli, [*args, *self.common], catch_exceptions=False)

    def json(self, *args: str) -> object:
        result = self(*args, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.output)


@pytest.fixture
def esb(cli: click.Group, database_url: str, tmp_path: Path) -> Esb:
    """A hub where A's QLVB came at T0 and fell silent, B's QLVB holds an SSE channel since
    T0 + 1 min, and C's QLVB was never seen."""
    master_key = base64.b64encode(secrets.token_bytes(32)).decode()
    data_dir = tmp_path / "data"
    runtime = build_runtime(Settings(data_dir=data_dir, database_url=database_url, master_key=master_key))
    try:
        callers = {}
        for code, name in ((A, "UBND tỉnh Tây Ninh"), (B, "UBND tỉnh Hậu Giang"), (C, "Văn phòng UBND")):
            runtime.registration.add_agency(AgencyRecord(code, name))
            application = runtime.registration.register_application(code, "QLVB")
            callers[code] = Caller(code, application.id, "QLVB", None)
        clock = Clock()
        tracker = PresenceTracker(runtime.database, PresencePolicy(), node_name="node-a", clock=clock)
        tracker.seen(callers[A], "authenticate")
        clock.now = T0 + timedelta(minutes=1)
        tracker.channel_opened(callers[B], "sse")
        for _ in range(20):  # the channel renews its lease every 15 s until T0 + 6 min
            clock.now += timedelta(seconds=15)
            tracker.channel_alive(callers[B])
        tracker.sweep(100)
    finally:
        runtime.database.dispose()
    runner = CliRunner(env={"ESB_MASTER_KEY": master_key, "COLUMNS": "250", "NO_COLOR": "1"})
    return Esb(runner, cli, ["--database-url", database_url, "--data-dir", str(data_dir)])


def test_list_shows_every_application_with_its_state(esb: Esb) -> None:
    listed = esb.json("presence", "list")
    assert isinstance(listed, list)
    by_agency = {row["agency"]: row for row in listed}
    assert [row["agency"] for row in listed] == [B, A, C]  # by agency code
    assert by_agency[A] | {"applicationId": 0} == {
        "agency": A,
        "application": "QLVB",
        "applicationId": 0,
        "state": "offline",
        "since": (T0 + timedelta(minutes=5)).isoformat(),
        "lastSeen": T0.isoformat(),
        "channel": None,
        "node": "node-a",
        "reason": "silent: no activity for 5 min",
    }
    assert by_agency[B]["state"] == "online"
    assert by_agency[B]["channel"] == {
        "kind": "sse",
        "until": (T0 + timedelta(minutes=6, seconds=45)).isoformat(),
    }
    assert (by_agency[C]["state"], by_agency[C]["since"], by_agency[C]["node"]) == ("unknown", None, None)

    online = esb.json("presence", "list", "--state", "online")
    assert [row["agency"] for row in online] == [B]  # type: ignore[union-attr]
    unknown = esb.json("presence", "list", "--state", "unknown")
    assert [row["agency"] for row in unknown] == [C]  # type: ignore[union-attr]
    only_a = esb.json("presence", "list", "--agency", A)
    assert [row["agency"] for row in only_a] == [A]  # type: ignore[union-attr]

    table = esb("presence", "list")
    assert table.exit_code == 0, table.output
    for text in ("agency", "last seen", "channel", "reason", "sse until", "silent: no activity for 5 min"):
        assert text in table.output
    assert "3 application(s): 1 online, 1 offline, 1 unknown" in table.output


def test_history_lists_connects_and_disconnects_newest_first(esb: Esb) -> None:
    history = esb.json("presence", "history")
    assert isinstance(history, dict)
    assert [(e["agency"], e["event"], e["at"], e["node"], e["reason"]) for e in history["events"]] == [
        (A, "disconnect", (T0 + timedelta(minutes=5)).isoformat(), "node-a", "silent: no activity for 5 min"),
        (B, "connect", (T0 + timedelta(minutes=1)).isoformat(), "node-a", "channel-open"),
        (A, "connect", T0.isoformat(), "node-a", "authenticate"),
    ]
    assert history["more"] is False

    of_b = esb.json("presence", "history", "--agency", B)
    assert [e["reason"] for e in of_b["events"]] == ["channel-open"]  # type: ignore[index]
    window = esb.json(
        "presence", "history", "--since", "2026-11-21T09:30:30+07:00", "--until", "2026-11-21T02:35:00+00:00"
    )
    assert [e["reason"] for e in window["events"]] == ["channel-open"]  # type: ignore[index]
    first = esb.json("presence", "history", "--limit", "1")
    assert (len(first["events"]), first["more"]) == (1, True)  # type: ignore[index]

    table = esb("presence", "history")
    assert table.exit_code == 0, table.output
    for text in ("time", "node", "reason", "disconnect", "authenticate", "3 event(s)"):
        assert text in table.output
    later = esb("presence", "history", "--since", "2026-11-22")  # a date alone: midnight, local time
    assert "0 event(s)" in later.output


def test_periods_may_be_spans_back_from_now() -> None:
    from esb.cli.presence_commands import WHEN

    before = datetime.now(UTC)
    parsed = WHEN.convert("90m", None, None)
    after = datetime.now(UTC)
    assert before - timedelta(minutes=90) <= parsed <= after - timedelta(minutes=90)
    week = WHEN.convert("7d", None, None)
    assert before - timedelta(days=7) <= week <= datetime.now(UTC) - timedelta(days=7)
    assert WHEN.convert("2026-11-21T09:30+07:00", None, None) == T0
    assert WHEN.convert("2026-11-21T02:30", None, None).tzinfo is not None  # local time


def test_stats_per_agency_over_a_period(esb: Esb) -> None:
    since, until = T0.isoformat(), (T0 + timedelta(minutes=10)).isoformat()
    stats = esb.json("presence", "stats", "--since", since, "--until", until)
    assert stats == {
        "since": since,
        "until": until,
        "agencies": [
            # B: online from minute 1 to the end of the period (its channel never lapsed in it)
            {"agency": B, "connects": 1, "disconnects": 0, "onlineSeconds": 540.0, "onlineFraction": 0.9},
            # A: online from minute 0 to minute 5
            {"agency": A, "connects": 1, "disconnects": 1, "onlineSeconds": 300.0, "onlineFraction": 0.5},
        ],
    }
    table = esb("presence", "stats", "--since", since, "--until", until)
    assert table.exit_code == 0, table.output
    assert "██████████░░░░░░░░░░" in table.output  # A: half the period
    assert "██████████████████░░" in table.output  # B: 90 %
    assert " 50.0 %" in table.output
    assert "2 agencies with activity in the period" in table.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "neither an ISO 8601 date or time"),
        (["--since", "2026-11-22", "--until", "2026-11-21"], "--since must be before --until"),
    ],
)
def test_bad_periods_are_usage_errors(esb: Esb, args: list[str], message: str) -> None:
    result = esb("presence", "stats", *args)
    assert result.exit_code == 2
    assert message in result.output
