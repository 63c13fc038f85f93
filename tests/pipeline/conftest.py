"""Fixtures of the pipeline tests: a fake clock, the use cases on it, and registered applications.

``authenticator`` and ``registration`` work on the ``runtime``'s database (each engine in turn)
with a clock the test moves by hand: ``clock.advance(minutes=61)``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import func, select

from esb.domain.access import Caller
from esb.domain.agencies import AgencyRecord
from esb.domain.edxml_enums import Priority, StatusCode
from esb.pipeline.authentication import Authenticator, AuthPolicy
from esb.pipeline.demo_packages import build_edoc, build_status, edoc_spec
from esb.pipeline.demo_seed import DEMO_AGENCIES, DEMO_APPLICATION
from esb.pipeline.exchange import Exchange, ExchangePolicy
from esb.pipeline.registration import IssuedKey, Registration
from esb.storage import registry
from esb.storage.content_store import ContentStore, DatabaseContentStore, DirectoryContentStore
from esb.storage.tables import ContentChunk, Delivery, Document, TraceEventRow
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


# -- document exchange: an Exchange on the fake clock, and callers of the demo agencies ------------

HUB_PUBLIC_URL = "https://lgsp.test"
ATTACHMENT = "Nội dung báo cáo tháng 11.\n".encode() * 8


@pytest.fixture
def content_kind() -> str:
    """Where the hub keeps package bytes; parametrize ``content_kind`` to run on ``database`` too."""
    return "directory"


@dataclass
class Hub:
    """The document exchange on the runtime's database and the fake clock, as node ``node-a``.

    Every demo agency (``esb.pipeline.demo_seed.DEMO_AGENCIES``) is registered with its
    application QLVB; :meth:`caller` is what authentication would hand the exchange.
    """

    runtime: Runtime
    registration: Registration
    clock: FakeClock
    folder: Path
    content: ContentStore
    content_dir: Path | None
    exchange: Exchange
    callers: dict[str, Caller]

    # -- set-up --------------------------------------------------------------------------------

    def node(self, name: str, **changes: Any) -> Exchange:
        """Another node (or this one with another policy): same database, content and clock."""
        policy = replace(self.exchange.policy, node_name=name, **changes)
        return Exchange(
            self.runtime.database, self.content, self.folder / f"work-{name}", policy, clock=self.clock
        )

    def register(self, code: str, name: str | None = None) -> Caller:
        """Register an agency and its application QLVB; the caller authentication would produce."""
        self.registration.add_agency(AgencyRecord(code, name or f"Cơ quan {code}"))
        application = self.registration.register_application(code, DEMO_APPLICATION)
        caller = Caller(code, application.id, DEMO_APPLICATION, f"AK-{code}")
        self.callers[code] = caller
        return caller

    def caller(self, code: str) -> Caller:
        return self.callers[code]

    # -- packages ------------------------------------------------------------------------------

    def edoc(
        self,
        sender: str,
        recipients: list[str],
        *,
        number: str,
        priority: Priority = Priority.THUONG,
        due_date: date | None = None,
        business: dict[str, Any] | None = None,
        attachment: bytes = ATTACHMENT,
    ) -> bytes:
        spec = edoc_spec(
            sender,
            recipients,
            number=number,
            promulgated=self.clock.now.date(),
            priority=priority,
            due_date=due_date,
            business=business,
        )
        return build_edoc(spec, attachment, now=self.clock.now)

    def document_id(self, sender: str, number: str) -> str:
        """The DocumentId :meth:`edoc` gives a package (canonical form, dated today)."""
        return f"{sender},{self.clock.now:%Y/%m/%d},{number}/BC-DEMO"

    def status(self, sender: str, response_for: str, document_id: str, code: StatusCode) -> bytes:
        """A status from ``sender`` to ``response_for`` (the original sender, or for 13 a recipient)."""
        number = document_id.rsplit(",", 1)[1].split("/", 1)[0]
        return build_status(
            sender,
            response_for,
            document_id,
            code,
            number=number,
            promulgated=self.clock.now.date(),
            now=self.clock.now,
        )

    # -- what is stored ------------------------------------------------------------------------

    def row_counts(self) -> tuple[int, int, int]:
        """(documents, deliveries, trace events) in the database."""
        with self.runtime.database.transaction() as session:
            return tuple(  # type: ignore[return-value]
                int(session.scalar(select(func.count()).select_from(table)) or 0)
                for table in (Document, Delivery, TraceEventRow)
            )

    def blobs(self) -> list[str]:
        """Keys of every blob in the content store (files, or distinct chunk keys)."""
        if self.content_dir is not None:
            return sorted(path.name for path in self.content_dir.rglob("*") if path.is_file())
        with self.runtime.database.transaction() as session:
            return sorted(session.scalars(select(ContentChunk.key).distinct()))

    def work_files(self, exchange: Exchange | None = None) -> list[Path]:
        """Files left in a node's work directory (spool and routing copies; not the upload spaces)."""
        work = (exchange or self.exchange).work_dir
        return sorted(path for path in work.rglob("*") if path.is_file() and "spaces" not in path.parts)


@pytest.fixture
def hub(
    runtime: Runtime, registration: Registration, clock: FakeClock, tmp_path: Path, content_kind: str
) -> Hub:
    content: ContentStore
    content_dir: Path | None = None
    if content_kind == "database":
        content = DatabaseContentStore(runtime.database)
    else:
        content_dir = tmp_path / "content"
        content = DirectoryContentStore(content_dir)
    policy = ExchangePolicy(
        hub_organ_id=runtime.settings.hub_organ_id, public_url=HUB_PUBLIC_URL, node_name="node-a"
    )
    exchange = Exchange(runtime.database, content, tmp_path / "work-node-a", policy, clock=clock)
    built = Hub(runtime, registration, clock, tmp_path, content, content_dir, exchange, {})
    # One transaction for the eight agencies and their applications (what Registration does
    # one by one, without its audit events): this fixture runs for every exchange test.
    with runtime.database.transaction() as session:
        for record in DEMO_AGENCIES:
            agency = registry.add_agency(
                session, record, province_domain=runtime.settings.province_domain, now=clock.now
            )
            application = registry.add_application(
                session,
                agency,
                name=DEMO_APPLICATION,
                developer=None,
                endpoint=None,
                certificate_der=None,
                certificate_sha256=None,
                now=clock.now,
            )
            built.callers[record.code] = Caller(
                record.code, application.id, DEMO_APPLICATION, f"AK-{record.code}"
            )
    return built
