"""The trust store's caches give exactly the answer a fresh store gives, at every boundary.

One store is asked again and again at moments on both sides of (and exactly at) a validity or
revocation boundary, in an order that goes back and forth; each answer must equal the one a
new, empty-cached store gives for the same question.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from esb.security.pki import (
    IssuedCertificate,
    issue_signing_certificate,
    make_crl,
    make_intermediate_ca,
    make_root_ca,
    new_rsa_key,
)
from esb.security.trust_store import ChainCheck, TrustStore, _Lru

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)
AGENCY = "000.00.00.H53"


def around(boundary: datetime) -> list[datetime]:
    """Moments on both sides of ``boundary`` and on it, back and forth (sub-second ones too)."""
    half = timedelta(milliseconds=500)
    steps = [-DAY, -SECOND, -half, timedelta(0), half, SECOND, DAY]
    forth = [boundary + step for step in steps]
    return [*forth, *reversed(forth), *forth]


def assert_same_as_fresh(
    store: TrustStore,
    fresh: Callable[[datetime], ChainCheck],
    leaf: x509.Certificate,
    moments: Sequence[datetime],
    *,
    offered: Sequence[x509.Certificate] = (),
    pinned: bool = False,
) -> list[ChainCheck]:
    answers = []
    for moment in moments:
        cached = store.check(leaf, untrusted_intermediates=offered, at=moment, pinned=pinned)
        uncached = fresh(moment)
        assert cached == uncached, (moment, cached, uncached)
        answers.append(cached)
    return answers


@pytest.fixture(scope="module")
def keys() -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    return new_rsa_key(), new_rsa_key(), new_rsa_key()


@pytest.fixture(scope="module")
def root(keys: tuple[rsa.RSAPrivateKey, ...]) -> IssuedCertificate:
    return make_root_ca("Cache Root CA", now=NOW - 365 * DAY, key=keys[0])


@pytest.fixture(scope="module")
def issuing(root: IssuedCertificate, keys: tuple[rsa.RSAPrivateKey, ...]) -> IssuedCertificate:
    return make_intermediate_ca(root, "Cache Issuing CA", now=NOW - 365 * DAY, key=keys[1])


def leaf_of(
    issuing: IssuedCertificate, key: rsa.RSAPrivateKey, *, not_after: datetime | None = None
) -> IssuedCertificate:
    return issue_signing_certificate(
        issuing, "Sở Tư pháp", now=NOW - 30 * DAY, agency_code=AGENCY, key=key, not_after=not_after
    )


def test_a_leaf_expiring_between_two_calls(
    root: IssuedCertificate, issuing: IssuedCertificate, keys: tuple[rsa.RSAPrivateKey, ...]
) -> None:
    end = NOW.replace(microsecond=0)
    leaf = leaf_of(issuing, keys[2], not_after=end).certificate
    parts = ([root.certificate], [issuing.certificate])
    store = TrustStore.of(*parts)
    answers = assert_same_as_fresh(
        store, lambda at: TrustStore.of(*parts).check(leaf, at=at), leaf, around(end)
    )
    assert {answer.reason for answer in answers} == {"ok", "certificate-expired"}


def test_an_issuing_ca_expiring_between_two_calls(
    root: IssuedCertificate, keys: tuple[rsa.RSAPrivateKey, ...]
) -> None:
    """The leaf outlives its CA: only the cached chain-building outcome can go wrong here."""
    end = NOW.replace(microsecond=0)
    issuing = make_intermediate_ca(root, "Cache Issuing CA", now=NOW - 365 * DAY, key=keys[1], not_after=end)
    leaf = leaf_of(issuing, keys[2], not_after=NOW + 300 * DAY).certificate
    parts = ([root.certificate], [issuing.certificate])
    store = TrustStore.of(*parts)
    answers = assert_same_as_fresh(
        store, lambda at: TrustStore.of(*parts).check(leaf, at=at), leaf, around(end)
    )
    assert {answer.reason for answer in answers} == {"ok", "certificate-expired"}
    # The same with the CA offered by the package instead of configured, and pinned.
    offered_store = TrustStore.of([root.certificate])
    assert_same_as_fresh(
        offered_store,
        lambda at: TrustStore.of([root.certificate]).check(
            leaf, untrusted_intermediates=[issuing.certificate], at=at
        ),
        leaf,
        around(end),
        offered=[issuing.certificate],
    )
    assert_same_as_fresh(
        store,
        lambda at: TrustStore.of(*parts).check(leaf, at=at, pinned=True),
        leaf,
        around(end),
        pinned=True,
    )


def test_a_crl_revocation_date_between_two_calls(
    root: IssuedCertificate, issuing: IssuedCertificate, keys: tuple[rsa.RSAPrivateKey, ...]
) -> None:
    revoked_at = NOW.replace(microsecond=0)
    leaf = leaf_of(issuing, keys[2]).certificate
    crl = make_crl(issuing, [(leaf.serial_number, revoked_at)], now=NOW + DAY)
    parts = ([root.certificate], [issuing.certificate], [crl])
    store = TrustStore.of(*parts)
    answers = assert_same_as_fresh(
        store, lambda at: TrustStore.of(*parts).check(leaf, at=at), leaf, around(revoked_at)
    )
    assert {answer.reason for answer in answers} == {"ok", "certificate-revoked"}
    assert any("after the verification time" in warning for answer in answers for warning in answer.warnings)
    assert_same_as_fresh(
        store,
        lambda at: TrustStore.of(*parts).check(leaf, at=at, pinned=True),
        leaf,
        around(revoked_at),
        pinned=True,
    )


def test_a_crl_past_its_next_update_between_two_calls(
    root: IssuedCertificate, issuing: IssuedCertificate, keys: tuple[rsa.RSAPrivateKey, ...]
) -> None:
    leaf = leaf_of(issuing, keys[2]).certificate
    crl = make_crl(issuing, [], now=NOW - 10 * DAY, next_update_days=10)
    parts = ([root.certificate], [issuing.certificate], [crl])
    store = TrustStore.of(*parts)
    boundary = crl.next_update_utc
    assert boundary is not None
    answers = assert_same_as_fresh(
        store, lambda at: TrustStore.of(*parts).check(leaf, at=at), leaf, around(boundary)
    )
    assert {bool(answer.warnings) for answer in answers} == {True, False}


def test_concurrent_checks_agree(
    root: IssuedCertificate, issuing: IssuedCertificate, keys: tuple[rsa.RSAPrivateKey, ...]
) -> None:
    end = NOW.replace(microsecond=0)
    issuing_ending = make_intermediate_ca(
        root, "Cache Issuing CA", now=NOW - 365 * DAY, key=keys[1], not_after=end
    )
    leaf = leaf_of(issuing_ending, keys[2], not_after=NOW + 300 * DAY).certificate
    parts = ([root.certificate], [issuing_ending.certificate])
    moments = around(end)
    expected = [TrustStore.of(*parts).check(leaf, at=moment) for moment in moments]
    store = TrustStore.of(*parts)
    failures: list[str] = []

    def work() -> None:
        for _ in range(5):
            for moment, answer in zip(moments, expected, strict=True):
                if store.check(leaf, at=moment) != answer:
                    failures.append(str(moment))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_the_memo_is_bounded_and_least_recently_used_goes_first() -> None:
    memo: _Lru[int, str] = _Lru(size=3)
    for key in range(3):
        assert memo.get(key, lambda key=key: str(key)) == str(key)  # type: ignore[misc]
    assert memo.get(0, lambda: "recomputed") == "0"  # 0 is now the most recent
    memo.get(3, lambda: "3")
    assert len(memo) == 3
    assert memo.get(1, lambda: "recomputed") == "recomputed"  # 1 was the least recently used
