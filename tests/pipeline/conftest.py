"""Fixtures of the pipeline tests: a fake clock, the use cases on it, and registered applications.

``authenticator`` and ``registration`` work on the ``runtime``'s database (each engine in turn)
with a clock the test moves by hand: ``clock.advance(minutes=61)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from esb.domain.agencies import AgencyRecord
from esb.pipeline.authentication import Authenticator, AuthPolicy
from esb.pipeline.registration import IssuedKey, Registration
from esb.wiring import Runtime

START = datetime(2026, 11, 21, 2, 30, tzinfo=UTC)  # 09:30 in Viet Nam
CLOCK_SKEW = timedelta(seconds=300)
SESSION_TTL = timedelta(minutes=30)


@dataclass
class FakeClock:
    now: datetime = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registration(runtime: Runtime, clock: FakeClock) -> Registration:
    return Registration(
        runtime.database, runtime.secret_box, province_domain=runtime.settings.province_domain, clock=clock
    )


@pytest.fixture
def authenticator(runtime: Runtime, clock: FakeClock) -> Authenticator:
    policy = AuthPolicy(clock_skew=CLOCK_SKEW, session_ttl=SESSION_TTL)
    return Authenticator(runtime.database, runtime.secret_box, policy, clock=clock)


@dataclass(frozen=True)
class Agencies:
    """Three agencies, each with an application QLVB holding one HMAC key."""

    a: IssuedKey  # 000.00.00.H53 UBND tỉnh Tây Ninh
    b: IssuedKey  # 000.00.01.H53 Văn phòng UBND tỉnh Tây Ninh
    c: IssuedKey  # 000.00.00.H30 UBND tỉnh Hậu Giang


@pytest.fixture
def agencies(registration: Registration) -> Agencies:
    keys = []
    for code, name in (
        ("000.00.00.H53", "UBND tỉnh Tây Ninh"),
        ("000.00.01.H53", "Văn phòng UBND tỉnh Tây Ninh"),
        ("000.00.00.H30", "UBND tỉnh Hậu Giang"),
    ):
        registration.add_agency(AgencyRecord(code, name))
        registration.register_application(code, "QLVB")
        keys.append(registration.issue_key(code, "QLVB"))
    return Agencies(*keys)


@dataclass(frozen=True)
class RsaPair:
    private_key: rsa.RSAPrivateKey
    public_pem: str


def _rsa_pair() -> RsaPair:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return RsaPair(key, pem.decode("ascii"))


@pytest.fixture(scope="session")
def rsa_pair() -> RsaPair:
    return _rsa_pair()


@pytest.fixture(scope="session")
def rsa_pair_next() -> RsaPair:
    """A second key pair, for rotations."""
    return _rsa_pair()
