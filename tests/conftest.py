"""Shared fixtures: both storage engines, a runtime on each, and live gunicorn servers.

Every storage test takes ``database_url`` and so runs twice: on SQLite (a file in the test's
temporary folder) and on PostgreSQL (a schema of its own in ``ESB_TEST_POSTGRES_URL``,
default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``, dropped afterwards).  When
PostgreSQL cannot be reached the tests FAIL: CI must never pass by skipping them.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from esb.pipeline.demo_seed import DemoCredential, seed_demo
from esb.settings import Settings
from esb.wiring import Runtime, build_runtime

POSTGRES_URL = os.environ.get("ESB_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
ENGINES = ("sqlite", "postgresql")
REPO = Path(__file__).resolve().parents[1]
ESB = Path(sys.executable).parent / "esb"


def _postgres_schema_url(schema: str) -> str:
    url = make_url(POSTGRES_URL)
    return url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[Callable[[str], None]]:
    """Runs DDL on the test PostgreSQL server; fails (never skips) when it is unreachable."""
    engine = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure to connect is the same verdict
        engine.dispose()
        pytest.fail(
            f"PostgreSQL is required for the storage tests and is unreachable at "
            f"{make_url(POSTGRES_URL).render_as_string(hide_password=True)} ({type(exc).__name__}: {exc}). "
            "Start it or set ESB_TEST_POSTGRES_URL.",
            pytrace=False,
        )

    def run(sql: str) -> None:
        with engine.connect() as connection:
            connection.execute(text(sql))

    yield run
    engine.dispose()


def _new_database(
    engine_name: str, folder: Path, admin: Callable[[], Callable[[str], None]]
) -> tuple[str, str]:
    """(url, schema or '') for a fresh, empty database on ``engine_name``."""
    if engine_name == "sqlite":
        return f"sqlite:///{folder / 'esb.sqlite3'}", ""
    schema = f"esb_test_{secrets.token_hex(6)}"
    admin()(f"CREATE SCHEMA {schema}")
    return _postgres_schema_url(schema), schema


@pytest.fixture(params=ENGINES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database on each engine in turn (migrations not yet run)."""

    def admin() -> Callable[[str], None]:
        return request.getfixturevalue("postgres_admin")  # type: ignore[no-any-return]

    url, schema = _new_database(request.param, tmp_path, admin)
    yield url
    if schema:
        admin()(f"DROP SCHEMA {schema} CASCADE")


def _settings(data_dir: Path, database_url: str) -> Settings:
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    return Settings(data_dir=data_dir, database_url=database_url, master_key=key)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """Settings on a fresh database of each engine, with a random master key."""
    return _settings(tmp_path / "data", database_url)


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    """The wired use cases on a migrated, empty database of each engine."""
    built = build_runtime(settings)
    yield built
    built.database.dispose()


# -- a throw-away PKI (made once per session) -------------------------------------------------

CLIENT_CN = "so-tttt.tinh.gov.vn"


@dataclass(frozen=True)
class Identity:
    """A key pair and its self-signed certificate, as the PEM files zeep reads."""

    key_path: Path
    cert_path: Path
    certificate_der: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.certificate_der).hexdigest()


@dataclass(frozen=True)
class Pki:
    client: Identity
    attacker: Identity  # same CN as the client, another key
    expired: Identity  # the client's CN, validity ended a year ago


SelfSigned = Callable[..., tuple[x509.Certificate, rsa.RSAPrivateKey]]


def _self_signed(
    bits: int = 2048,
    cn: str = CLIENT_CN,
    *,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    """A fresh RSA key and its self-signed certificate (valid from yesterday for a year by default)."""
    now = datetime.now(UTC)
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - timedelta(days=1))
        .not_valid_after(not_after or now + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return certificate, key


@pytest.fixture(scope="session")
def self_signed() -> SelfSigned:
    """``self_signed(bits=2048, cn=..., not_before=..., not_after=...)`` → (certificate, private key)."""
    return _self_signed


def _identity(directory: Path, name: str, *, not_before: datetime, not_after: datetime) -> Identity:
    certificate, key = _self_signed(not_before=not_before, not_after=not_after)
    key_path, cert_path = directory / f"{name}.key.pem", directory / f"{name}.cert.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return Identity(key_path, cert_path, certificate.public_bytes(serialization.Encoding.DER))


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    now = datetime.now(UTC)
    valid = {"not_before": now - timedelta(days=1), "not_after": now + timedelta(days=365)}
    return Pki(
        client=_identity(directory, "client", **valid),
        attacker=_identity(directory, "attacker", **valid),
        expired=_identity(
            directory,
            "expired",
            not_before=now - timedelta(days=730),
            not_after=now - timedelta(days=365),
        ),
    )


# -- live servers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LiveServer:
    """A running ``esb serve`` with the demo data seeded; ``credentials`` are the demo keys."""

    engine: str
    base_url: str
    settings: Settings
    process: subprocess.Popen[bytes]
    log: Path
    credentials: tuple[DemoCredential, ...] = ()

    def url(self, path: str) -> str:
        return self.base_url + path

    def wsdl(self, service: str = "Auth") -> str:
        return f"{self.base_url}/soap/{service}?wsdl"

    def credential(self, agency: str) -> DemoCredential:
        return next(c for c in self.credentials if c.agency == agency)

    def runtime(self) -> Runtime:
        """The use cases on the server's own database (to register more, or inspect)."""
        return build_runtime(self.settings, migrate=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(settings: Settings, folder: Path, engine: str, *, workers: int = 2) -> LiveServer:
    """``esb serve`` in a subprocess on a free port, waited for until /healthz answers."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = folder / f"server-{engine}.log"
    env = {
        **os.environ,
        "ESB_MASTER_KEY": settings.master_key or "",
        "ESB_PROVINCE_DOMAIN": settings.province_domain,
        "ESB_PUBLIC_URL": base,
    }
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                str(ESB),
                "serve",
                "--bind",
                f"127.0.0.1:{port}",
                "--database-url",
                settings.database_url,
                "--data-dir",
                str(settings.data_dir),
                "--workers",
                str(workers),
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=folder,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"esb serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=1) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return LiveServer(engine, base, settings.with_(public_url=base), process, log)
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"esb serve did not answer within 30 s:\n{log.read_text()}")


def stop_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


def _seeded_server(engine: str, folder: Path, request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    def admin() -> Callable[[str], None]:
        return request.getfixturevalue("postgres_admin")  # type: ignore[no-any-return]

    url, schema = _new_database(engine, folder, admin)
    settings = _settings(folder / "data", url)
    seeding = build_runtime(settings)
    credentials = tuple(seed_demo(seeding.registration))
    seeding.database.dispose()
    server = start_server(settings, folder, engine)
    try:
        yield LiveServer(
            server.engine, server.base_url, server.settings, server.process, server.log, credentials
        )
    finally:
        stop_server(server)
        if schema:
            admin()(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(scope="session", params=ENGINES)
def live_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A seeded gunicorn server on each engine in turn (one per engine per test session)."""
    yield from _seeded_server(request.param, tmp_path_factory.mktemp(f"live-{request.param}"), request)


@pytest.fixture(scope="session")
def sqlite_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A seeded gunicorn server on SQLite, for client-interoperability tests."""
    yield from _seeded_server("sqlite", tmp_path_factory.mktemp("live-interop"), request)
