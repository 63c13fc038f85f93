"""The pure parts of notifications (esb.domain.notifications): cursors, timeouts, wake-up
payloads and callback URL normalisation."""

from __future__ import annotations

import pytest

from esb.domain.notifications import (
    NotificationKind,
    NotificationPolicy,
    WakeUp,
    cursor_of,
    normalise_callback_url,
    parse_wake_payload,
    wake_payload,
)
from esb.errors import ClientError


def code_of(call: object, *args: object) -> str:
    with pytest.raises(ClientError) as refused:
        call(*args)  # type: ignore[operator]
    return refused.value.code


@pytest.mark.parametrize(("value", "cursor"), [(None, 0), ("", 0), (0, 0), (42, 42), ("42", 42), (" 7 ", 7)])
def test_cursors(value: int | str | None, cursor: int) -> None:
    assert cursor_of(value) == cursor


@pytest.mark.parametrize("value", [-1, "-1", "abc", "4.2", "1e3", "٣", "9" * 20, 2**63])
def test_bad_cursors(value: int | str) -> None:
    assert code_of(cursor_of, value) == "Client.BadCursor"


def test_timeouts() -> None:
    policy = NotificationPolicy()
    assert policy.timeout_of(None) == 30.0
    assert policy.timeout_of(1) == 1.0
    assert policy.timeout_of(120) == 120.0
    for bad in (0, -5, 121, 10**9):
        assert code_of(policy.timeout_of, bad) == "Client.BadTimeout"


def test_wake_payloads_round_trip_and_foreign_ones_are_ignored() -> None:
    wake = WakeUp("000.00.01.H53", 1042, 3, pushes=2)
    assert wake_payload(wake) == "000.00.01.H53|1042|3|2"
    assert parse_wake_payload(wake_payload(wake)) == wake
    # A node of the previous version sends no push count: nothing to push is assumed.
    assert parse_wake_payload("000.00.01.H53|1042|3") == WakeUp("000.00.01.H53", 1042, 3, pushes=0)
    for foreign in ("", "hello", "a|b|c", "|1|2", "a|1|2|x", "a|1|2|3|4"):
        assert parse_wake_payload(foreign) is None
    with pytest.raises(ValueError, match="too long"):
        wake_payload(WakeUp("x" * 8000, 1, 0))


@pytest.mark.parametrize(
    ("url", "normal"),
    [
        ("https://QLVB.Example.gov.vn/lgsp/notify", "https://qlvb.example.gov.vn/lgsp/notify"),
        ("HTTPS://qlvb.example.gov.vn:443/lgsp/notify", "https://qlvb.example.gov.vn/lgsp/notify"),
        ("http://qlvb.example.gov.vn:80", "http://qlvb.example.gov.vn/"),
        ("http://qlvb.example.gov.vn:8080/a?b=1", "http://qlvb.example.gov.vn:8080/a?b=1"),
        ("https://[::1]:8443/x", "https://[::1]:8443/x"),
        ("  https://qlvb.example.gov.vn/x  ", "https://qlvb.example.gov.vn/x"),
    ],
)
def test_callback_urls_are_normalised(url: str, normal: str) -> None:
    assert normalise_callback_url(url) == normal


@pytest.mark.parametrize(
    "url",
    [
        "ftp://qlvb.example.gov.vn/x",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "https://user:secret@qlvb.example.gov.vn/x",
        "https://qlvb.example.gov.vn/x#frag",
        "https:///no-host",
        "https://qlvb.example.gov.vn/a b",
        "https://qlvb.example.gov.vn:99999/x",
        "https://qlvb.example.gov.vn/" + "a" * 1100,
        "not a url",
    ],
)
def test_unusable_callback_urls(url: str) -> None:
    assert code_of(normalise_callback_url, url) == "Client.CallbackUrlInvalid"


def test_only_reports_are_not_about_a_waiting_delivery() -> None:
    assert NotificationKind.DOCUMENT.is_delivery
    assert NotificationKind.STATUS.is_delivery
    assert not NotificationKind.UNDELIVERABLE.is_delivery
