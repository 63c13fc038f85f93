"""ESB_RETRY_* and ESB_OFFLINE_LIMIT_* (esb.settings): read, checked, turned into policies."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from esb.domain.delivery_policy import OfflinePolicy, RetryPolicy
from esb.domain.edxml_enums import Priority
from esb.errors import ConfigurationError
from esb.settings import Settings


def test_the_defaults_are_the_documented_policies() -> None:
    settings = Settings.from_env({})
    assert settings.retry_policy == RetryPolicy()
    assert settings.offline_policy == OfflinePolicy()


def test_the_environment_sets_every_value() -> None:
    settings = Settings.from_env(
        {
            "ESB_RETRY_INITIAL_SECONDS": "5",
            "ESB_RETRY_FACTOR": "3",
            "ESB_RETRY_MAX_DELAY_SECONDS": "600",
            "ESB_RETRY_MAX_ATTEMPTS": "12",
            "ESB_RETRY_JITTER": "0.1",
            "ESB_OFFLINE_LIMIT_HOURS": "48",
            "ESB_OFFLINE_LIMIT_KHAN_HOURS": "12",
            "ESB_OFFLINE_LIMIT_THUONG_KHAN_HOURS": "4",
            "ESB_OFFLINE_LIMIT_HOA_TOC_HOURS": "2",
        }
    )
    assert settings.retry_policy == RetryPolicy(
        initial=timedelta(seconds=5),
        factor=3.0,
        max_delay=timedelta(minutes=10),
        max_attempts=12,
        jitter=0.1,
    )
    limits = {p: settings.offline_policy.limit(p) for p in Priority}
    assert limits == {
        Priority.THUONG: timedelta(hours=48),
        Priority.KHAN: timedelta(hours=12),
        Priority.THUONG_KHAN: timedelta(hours=4),
        Priority.HOA_TOC: timedelta(hours=2),
        Priority.HOA_TOC_HEN_GIO: timedelta(hours=2),
    }


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ESB_RETRY_FACTOR", "fast", "ESB_RETRY_FACTOR must be a number"),
        ("ESB_RETRY_FACTOR", "0.5", "back-off factor must be at least 1"),
        ("ESB_RETRY_JITTER", "1", "jitter must be in [0, 1)"),
        ("ESB_RETRY_MAX_ATTEMPTS", "0", "ESB_RETRY_MAX_ATTEMPTS must be at least 1"),
        ("ESB_RETRY_MAX_DELAY_SECONDS", "5", "shorter than the first"),
        ("ESB_OFFLINE_LIMIT_HOURS", "0", "ESB_OFFLINE_LIMIT_HOURS must be at least 1"),
    ],
)
def test_nonsense_values_stop_the_service(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        Settings.from_env({name: value})
