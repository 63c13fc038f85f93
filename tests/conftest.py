"""Shared fixtures: both storage engines, a runtime on each, and live gunicorn servers.

Every storage test takes ``database_url`` and so runs twice: on SQLite (a file in the test's
temporary folder) and on PostgreSQL (a schema of its own in ``ESB_TEST_POSTGRES_URL``,
default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``, dropped afterwards).  When
PostgreSQL cannot be reached the tests FAIL: CI must never pass by skipping them.

Over HTTP: ``live_server`` (seeded, one per engine per session), ``make_server`` (one with extra
environment, per module), and ``parties`` / ``party_factory``: agencies registered afresh for
each test and signed in to DocumentExchange, so that no two tests share a mailbox.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import zeep
import zeep.exceptions
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from hmac_signing import hmac_signed
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from zeep.cache import InMemoryCache
from zeep.transports import Transport

from esb.domain.access import AgencyState
from esb.domain.agencies import AgencyRecord
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


def start_server(
    settings: Settings,
    folder: Path,
    engine: str,
    *,
    workers: int = 2,
    env: Mapping[str, str] | None = None,
) -> LiveServer:
    """``esb serve`` in a subprocess on a free port, waited for until /healthz answers.

    ``env`` adds (or overrides) environment variables of the server process, e.g.
    ``{"ESB_INLINE_PACKAGE_BYTES": "65536"}``.
    """
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = folder / f"server-{engine}.log"
    env = {
        **os.environ,
        "ESB_MASTER_KEY": settings.master_key or "",
        "ESB_PROVINCE_DOMAIN": settings.province_domain,
        "ESB_PUBLIC_URL": base,
        **(env or {}),
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


def _seeded_server(
    engine: str, folder: Path, request: pytest.FixtureRequest, env: Mapping[str, str] | None = None
) -> Iterator[LiveServer]:
    def admin() -> Callable[[str], None]:
        return request.getfixturevalue("postgres_admin")  # type: ignore[no-any-return]

    url, schema = _new_database(engine, folder, admin)
    settings = _settings(folder / "data", url)
    seeding = build_runtime(settings)
    credentials = tuple(seed_demo(seeding.registration))
    seeding.database.dispose()
    server = start_server(settings, folder, engine, env=env)
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


@pytest.fixture(scope="module")
def make_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str, Mapping[str, str]], LiveServer]]:
    """``make_server(engine, env)``: a seeded server with extra environment, shared by the module.

    For settings the session's ``live_server`` cannot have (``ESB_INLINE_PACKAGE_BYTES``,
    ``ESB_MAX_PACKAGE_BYTES``...); each (engine, env) starts once and stops with the module.
    """
    running: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[LiveServer, Iterator[LiveServer]]] = {}

    def make(engine: str, env: Mapping[str, str]) -> LiveServer:
        key = (engine, tuple(sorted(env.items())))
        if key not in running:
            folder = tmp_path_factory.mktemp(f"server-{engine}")
            lifetime = _seeded_server(engine, folder, request, env)
            running[key] = (next(lifetime), lifetime)
        return running[key][0]

    yield make
    for _, lifetime in running.values():
        for _ in lifetime:  # runs the generator's cleanup: stops the server, drops the schema
            pass


# -- document-exchange parties --------------------------------------------------------------

HARDENED_ZEEP = zeep.Settings(forbid_dtd=True, forbid_entities=True, forbid_external=True, strict=True)
EXCHANGE_NS = "urn:lgsp-esb:exchange:1"
_agency_numbers = itertools.count()


def fresh_agency_code() -> str:
    """A conforming QCVN 102 code no other test of the session uses (``000.KK.JJ.H53``, JJ ≥ 50)."""
    n = next(_agency_numbers)
    return f"000.{n % 99 + 1:02d}.{50 + n // 99:02d}.H53"


@dataclass(frozen=True)
class Party:
    """A freshly registered agency, its QLVB application and key, signed in to DocumentExchange.

    ``client`` is a zeep client of the served DocumentExchange WSDL that sends the session key
    in the ``AuthHeader`` on every call; ``service`` is its operations.
    """

    code: str
    credential: DemoCredential = field(repr=False)
    token: str = field(repr=False)
    client: zeep.Client = field(repr=False)

    @property
    def service(self) -> Any:
        return self.client.service

    @property
    def http_headers(self) -> dict[str, str]:
        """For the plain-HTTP upload and download URLs."""
        return {"X-Session-Token": self.token}

    def fault_detail(self, fault: zeep.exceptions.Fault) -> Any:
        """The typed ``EsbFault`` detail (code, message, serverTime, reference) of a fault."""
        assert fault.detail is not None
        element = self.client.get_element(f"{{{EXCHANGE_NS}}}EsbFault")
        return element.parse(fault.detail[0], self.client.wsdl.types)


class PartyFactory:
    """Registers fresh agencies on a server's database and signs them in, over HTTP."""

    def __init__(self) -> None:
        self._wsdl_cache = InMemoryCache(timeout=3600)

    def client(self, server: LiveServer, service: str = "DocumentExchange") -> zeep.Client:
        """A plain zeep client of a served WSDL (no session header)."""
        transport = Transport(cache=self._wsdl_cache, timeout=30, operation_timeout=60)
        return zeep.Client(server.wsdl(service), settings=HARDENED_ZEEP, transport=transport)

    def register(self, server: LiveServer, count: int, *, locked: bool = False) -> list[DemoCredential]:
        """``count`` new agencies, each with a QLVB application and a secret key (or locked, keyless)."""
        runtime = server.runtime()
        try:
            credentials = []
            for _ in range(count):
                code = fresh_agency_code()
                name = f"Cơ quan thử nghiệm {code}"
                runtime.registration.add_agency(AgencyRecord(code, name))
                if locked:
                    runtime.registration.set_agency_state(code, AgencyState.LOCKED)
                    credentials.append(DemoCredential(code, name, "", "", ""))
                    continue
                runtime.registration.register_application(code, "QLVB", developer="tests")
                issued = runtime.registration.issue_key(code, "QLVB")
                credentials.append(
                    DemoCredential(code, name, "QLVB", issued.access_key, issued.secret_key or "")
                )
            return credentials
        finally:
            runtime.database.dispose()

    def __call__(self, server: LiveServer, count: int) -> list[Party]:
        return [self.sign_in(server, credential) for credential in self.register(server, count)]

    def another_application(self, server: LiveServer, agency: str, name: str) -> Party:
        """A second application of an existing agency (its own key), signed in."""
        runtime = server.runtime()
        try:
            runtime.registration.register_application(agency, name, developer="tests")
            issued = runtime.registration.issue_key(agency, name)
        finally:
            runtime.database.dispose()
        credential = DemoCredential(agency, agency, name, issued.access_key, issued.secret_key or "")
        return self.sign_in(server, credential)

    def sign_in(self, server: LiveServer, credential: DemoCredential) -> Party:
        ticket = self.client(server, "Auth").service.Authenticate(**hmac_signed(credential))
        client = self.client(server)
        client.set_default_soapheaders({"AuthHeader": {"sessionToken": ticket.sessionToken}})
        return Party(credential.agency, credential, ticket.sessionToken, client)


@pytest.fixture(scope="session")
def party_factory() -> PartyFactory:
    """``party_factory(server, n)``: n fresh, signed-in agencies on any running server."""
    return PartyFactory()


@dataclass(frozen=True)
class BoundParties:
    """:class:`PartyFactory` bound to one server: ``parties(n)``, ``parties.client()``."""

    factory: PartyFactory
    server: LiveServer

    def __call__(self, count: int) -> list[Party]:
        return self.factory(self.server, count)

    def client(self) -> zeep.Client:
        """A DocumentExchange client that sends no session key."""
        return self.factory.client(self.server)


@pytest.fixture
def parties(party_factory: PartyFactory, live_server: LiveServer) -> BoundParties:
    """``parties(n)``: n fresh agencies on ``live_server`` (both engines), signed in to DocumentExchange."""
    return BoundParties(party_factory, live_server)
