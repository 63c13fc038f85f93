"""Tests for esb.storage.auth_store: the replay cache and session purge, on both engines."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import select

from esb.storage import auth_store, registry
from esb.storage.tables import AuthSession, ReplayGuard
from esb.wiring import Runtime

NOW = datetime(2026, 11, 21, 2, 30, tzinfo=UTC)
WINDOW = timedelta(minutes=5)


def _remember(runtime: Runtime, digest: str, *, now: datetime, scope: str = "nonce") -> bool:
    with runtime.database.transaction() as session:
        return auth_store.remember_once(session, scope, digest, expires_at=now + WINDOW, now=now)


def test_remember_once_refuses_a_live_digest_and_takes_over_an_expired_one(runtime: Runtime) -> None:
    assert _remember(runtime, "d1", now=NOW)
    assert not _remember(runtime, "d1", now=NOW)
    assert not _remember(runtime, "d1", now=NOW + WINDOW - timedelta(seconds=1))
    assert _remember(runtime, "d1", now=NOW + WINDOW + timedelta(seconds=1))  # expired: taken over
    assert not _remember(runtime, "d1", now=NOW + WINDOW + timedelta(seconds=2))  # with the new expiry
    with runtime.database.transaction() as session:
        rows = list(session.scalars(select(ReplayGuard)))
    assert [(row.scope, row.digest) for row in rows] == [("nonce", "d1")]


def test_remember_once_honours_an_expiry_given_in_another_utc_offset(runtime: Runtime) -> None:
    west = timezone(timedelta(hours=-5))
    east = timezone(timedelta(hours=7))
    with runtime.database.transaction() as session:
        assert auth_store.remember_once(
            session, "nonce", "w", expires_at=(NOW + WINDOW).astimezone(west), now=NOW
        )
        assert auth_store.remember_once(
            session, "nonce", "e", expires_at=(NOW + WINDOW).astimezone(east), now=NOW
        )
    with runtime.database.transaction() as session:
        # Both still live one second before the expiry; both reusable one second after it.
        before, after = NOW + WINDOW - timedelta(seconds=1), NOW + WINDOW + timedelta(seconds=1)
        assert not auth_store.remember_once(session, "nonce", "w", expires_at=after + WINDOW, now=before)
        assert auth_store.remember_once(session, "nonce", "e", expires_at=after + WINDOW, now=after)


def test_remember_once_keeps_scopes_apart(runtime: Runtime) -> None:
    assert _remember(runtime, "d1", now=NOW, scope="nonce")
    assert _remember(runtime, "d1", now=NOW, scope="wsse")
    assert not _remember(runtime, "d1", now=NOW, scope="wsse")


def test_remember_once_lets_exactly_one_of_concurrent_callers_win(runtime: Runtime) -> None:
    callers = 8
    barrier = threading.Barrier(callers)
    results: list[bool] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def call() -> None:
        try:
            barrier.wait(timeout=10)
            won = _remember(runtime, "same-digest", now=NOW)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            with lock:
                errors.append(exc)
        else:
            with lock:
                results.append(won)

    threads = [threading.Thread(target=call) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(results) == [False] * (callers - 1) + [True]


def test_purge_expired_removes_only_expired_rows(runtime: Runtime, issued_key: str) -> None:
    with runtime.database.transaction() as session:
        key = registry.get_key(session, issued_key)
        for name, expires_at in (("old", NOW - timedelta(seconds=1)), ("live", NOW + timedelta(seconds=1))):
            auth_store.add_session(
                session,
                token_sha256=name * 8,
                key=key,
                target=None,
                issued_at=NOW - timedelta(hours=1),
                expires_at=expires_at,
            )
            auth_store.remember_once(
                session, "nonce", name, expires_at=expires_at, now=NOW - timedelta(hours=1)
            )
    with runtime.database.transaction() as session:
        assert auth_store.purge_expired(session, now=NOW) == 2
    with runtime.database.transaction() as session:
        assert [row.digest for row in session.scalars(select(ReplayGuard))] == ["live"]
        assert [row.token_sha256 for row in session.scalars(select(AuthSession))] == ["live" * 8]
        assert auth_store.purge_expired(session, now=NOW) == 0
