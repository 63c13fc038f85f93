"""Table definitions.  Never reused as SOAP types; the services translate.

Times are stored as timezone-aware UTC (``DateTime(timezone=True)``); SQLite keeps them as
text and gives them back naive, so :func:`utc` normalises what is read.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets BIGINT identities.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utc(value: datetime) -> datetime:
    """An aware UTC datetime from what the driver returned (SQLite returns naive UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class UtcDateTime(TypeDecorator[datetime]):
    """Aware datetimes stored as UTC on every engine.

    SQLite keeps ``DateTime`` as text without the offset, so a value given in +07:00 or
    -05:00 would be stored as its wall-clock time and compared wrongly.  Every value is
    converted to UTC on the way in (a naive one is refused) and comes back aware.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else utc(value)


Timestamp = UtcDateTime()


class Agency(Base):
    """An agency (cơ quan, đơn vị) with its identifier code (mã định danh)."""

    __tablename__ = "agency"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    qd20_code: Mapped[str | None] = mapped_column(String(64), index=True)
    old_code: Mapped[str | None] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(512))
    parent_code: Mapped[str | None] = mapped_column(String(64), index=True)
    address: Mapped[str | None] = mapped_column(String(512))
    email: Mapped[str | None] = mapped_column(String(254))
    account: Mapped[str] = mapped_column(String(320), unique=True)
    state: Mapped[str] = mapped_column(String(16), default="active")
    # off | record | require; None: the hub's default (ESB_SIGNATURE_POLICY)
    signature_policy: Mapped[str | None] = mapped_column(String(8))
    # How long a destination may stay offline before this agency's documents to it are
    # reported undeliverable (None: the hub's policy by priority; esb.domain.delivery_policy).
    undeliverable_after_seconds: Mapped[int | None] = mapped_column(Integer)
    # The directory version of this agency's last change (GetAgencyChanges, directory_head).
    version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0", index=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)

    applications: Mapped[list[Application]] = relationship(back_populates="agency")
    certificates: Mapped[list[AgencyCertificate]] = relationship(back_populates="agency")


class AgencyCertificate(Base):
    """A certificate an agency signs its packages with (pinned: the signer must be one of them)."""

    __tablename__ = "agency_certificate"
    __table_args__ = (UniqueConstraint("agency_id", "sha256", name="uq_agency_certificate_agency_sha256"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    agency_id: Mapped[int] = mapped_column(ForeignKey("agency.id"), index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    der: Mapped[bytes] = mapped_column(LargeBinary)
    subject: Mapped[str] = mapped_column(String(1024))
    not_after: Mapped[datetime] = mapped_column(Timestamp)
    added_at: Mapped[datetime] = mapped_column(Timestamp)
    removed_at: Mapped[datetime | None] = mapped_column(Timestamp)

    agency: Mapped[Agency] = relationship(back_populates="certificates")


class Application(Base):
    """A system of an agency that connects to the hub (its QLVB, a portal…)."""

    __tablename__ = "application"
    __table_args__ = (UniqueConstraint("agency_id", "name", name="uq_application_agency_name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    agency_id: Mapped[int] = mapped_column(ForeignKey("agency.id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    developer: Mapped[str | None] = mapped_column(String(256))
    endpoint: Mapped[str | None] = mapped_column(String(1024))
    # The callback the hub pushes notifications to: only ever the registered ``endpoint``,
    # set by Subscribe and cleared by Unsubscribe.
    callback_url: Mapped[str | None] = mapped_column(String(1024))
    certificate_der: Mapped[bytes | None] = mapped_column(LargeBinary)
    certificate_sha256: Mapped[str | None] = mapped_column(String(64), unique=True)
    state: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(Timestamp)

    agency: Mapped[Agency] = relationship(back_populates="applications")
    keys: Mapped[list[AccessKey]] = relationship(back_populates="application")
    rules: Mapped[list[AccessRuleRow]] = relationship(back_populates="application")


class AccessKey(Base):
    """A key pair of an application: ``access_key`` is public, the secret is encrypted at rest."""

    __tablename__ = "access_key"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    access_key: Mapped[str] = mapped_column(String(64), unique=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("application.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    secret_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    public_key_pem: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    valid_until: Mapped[datetime | None] = mapped_column(Timestamp)
    revoked_at: Mapped[datetime | None] = mapped_column(Timestamp)
    replaced_by: Mapped[str | None] = mapped_column(String(64))

    application: Mapped[Application] = relationship(back_populates="keys")

    def is_retired(self, now: datetime) -> bool:
        """Revoked, or replaced by a rotation whose overlap has ended."""
        return self.revoked_at is not None or (self.valid_until is not None and self.valid_until <= now)


class AccessRuleRow(Base):
    __tablename__ = "access_rule"
    __table_args__ = (
        UniqueConstraint("application_id", "scope", "pattern", "effect", name="uq_access_rule_entry"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("application.id"), index=True)
    scope: Mapped[str] = mapped_column(String(16))
    pattern: Mapped[str] = mapped_column(String(128))
    effect: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(Timestamp)

    application: Mapped[Application] = relationship(back_populates="rules")


class AuthSession(Base):
    """A session key issued by ``Authenticate``; only the token's SHA-256 is stored."""

    __tablename__ = "auth_session"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    access_key_id: Mapped[int] = mapped_column(ForeignKey("access_key.id"), index=True)
    target: Mapped[str | None] = mapped_column(String(128))
    issued_at: Mapped[datetime] = mapped_column(Timestamp)
    expires_at: Mapped[datetime] = mapped_column(Timestamp, index=True)


class ReplayGuard(Base):
    """Nonces and WS-Security signature digests seen recently, shared by every worker and node."""

    __tablename__ = "replay_guard"

    scope: Mapped[str] = mapped_column(String(16), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(Timestamp, index=True)


class AuditEvent(Base):
    """Security-relevant events: every authentication attempt, key and registry change.

    Identifiers only (access key ids, agency codes, fault codes); never secrets or content.
    """

    __tablename__ = "audit_event"
    __table_args__ = (Index("ix_audit_event_at", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(Timestamp)
    event: Mapped[str] = mapped_column(String(48))
    outcome: Mapped[str] = mapped_column(String(64))
    access_key: Mapped[str | None] = mapped_column(String(64), index=True)
    agency_code: Mapped[str | None] = mapped_column(String(64), index=True)
    remote_addr: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(String(512))


class Document(Base):
    """One accepted package (edoc or status): metadata, digests and state; never its content.

    ``content_key`` names the bytes recipients get (with the hub's TraceHeader) in the
    content store; it is cleared when the content is purged, while digests, sizes and the
    trace stay.  The accepted bytes are never kept: only their digest and size.
    """

    __tablename__ = "document"
    __table_args__ = (
        Index("ix_document_state", "state"),
        Index("ix_document_sender_document_id", "sender_code", "document_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    hub_id: Mapped[str] = mapped_column(String(36), unique=True)
    message_type: Mapped[str] = mapped_column(String(8))
    sender_code: Mapped[str] = mapped_column(String(64))
    sender_application_id: Mapped[int] = mapped_column(ForeignKey("application.id"))
    document_id: Mapped[str | None] = mapped_column(String(512))
    idempotency_key: Mapped[str | None] = mapped_column(String(600), unique=True)
    business_doc_type: Mapped[int | None] = mapped_column(Integer)
    status_code: Mapped[str | None] = mapped_column(String(2))
    relates_to_id: Mapped[int | None] = mapped_column(ForeignKey("document.id"), index=True)
    subject: Mapped[str] = mapped_column(String(2048))
    priority: Mapped[int] = mapped_column(Integer)
    due_date: Mapped[str | None] = mapped_column(String(10))  # ISO date: sorts as text on both engines
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    delivered_size: Mapped[int | None] = mapped_column(BigInteger)
    delivered_sha256: Mapped[str | None] = mapped_column(String(64))
    content_key: Mapped[str | None] = mapped_column(String(128))  # the bytes recipients get
    delivery_note: Mapped[str | None] = mapped_column(String(256))  # TraceHeader appended, or why not
    state: Mapped[str] = mapped_column(String(16))
    accepted_at: Mapped[datetime] = mapped_column(Timestamp)
    routed_at: Mapped[datetime | None] = mapped_column(Timestamp)
    purged_at: Mapped[datetime | None] = mapped_column(Timestamp)
    retain_until: Mapped[datetime] = mapped_column(Timestamp, index=True)
    warnings: Mapped[int] = mapped_column(Integer, default=0)
    # The package's XML signature as the hub found it at acceptance (esb.domain.signatures).
    signature_verdict: Mapped[str | None] = mapped_column(String(16))
    signature_reason: Mapped[str | None] = mapped_column(String(48))
    signer_sha256: Mapped[str | None] = mapped_column(String(64))
    signature_report: Mapped[str | None] = mapped_column(Text)  # SignatureReport JSON (no content)

    deliveries: Mapped[list[Delivery]] = relationship(back_populates="document", order_by="Delivery.id")


class Delivery(Base):
    """A document's journey to one recipient (its mailbox entry), with its own state."""

    __tablename__ = "delivery"
    __table_args__ = (
        UniqueConstraint("document_id", "recipient_code", name="uq_delivery_document_recipient"),
        Index("ix_delivery_mailbox", "recipient_code", "message_type", "state", "priority"),
        Index("ix_delivery_state_route", "state", "route"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("document.id"), index=True)
    recipient_code: Mapped[str] = mapped_column(String(64))
    message_type: Mapped[str] = mapped_column(String(8))  # copied from the document: mailbox index
    priority: Mapped[int] = mapped_column(Integer)  # copied from the document: mailbox order
    state: Mapped[str] = mapped_column(String(16))
    delivered_sha256: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    available_at: Mapped[datetime | None] = mapped_column(Timestamp)
    fetched_at: Mapped[datetime | None] = mapped_column(Timestamp)
    confirmed_at: Mapped[datetime | None] = mapped_column(Timestamp)
    last_failure: Mapped[str | None] = mapped_column(String(512))
    # Where the routing rules sent it: "local" (a mailbox here) or a bridge adapter's name.
    route: Mapped[str] = mapped_column(String(64), default="local", server_default="local")
    # Bridge hand-over retries: when to try next, and the lease of the node trying now.
    next_attempt_at: Mapped[datetime | None] = mapped_column(Timestamp)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None] = mapped_column(Timestamp)
    # Dead-lettered (state undeliverable): when and why; an operator may re-drive it.
    dead_at: Mapped[datetime | None] = mapped_column(Timestamp)
    dead_reason: Mapped[str | None] = mapped_column(String(512))

    document: Mapped[Document] = relationship(back_populates="deliveries")


class TraceEventRow(Base):
    """The trace of a document (GetTrace): what happened, when, by whom, with which digest.

    Chained by hash (:mod:`esb.domain.trace_chain`): ``seq`` is the event's place in the
    global log, ``prev_hash`` the hash of the event before it there, ``doc_prev_hash`` the
    hash of the document's previous event, ``hash`` the event's own.  Written only by
    :mod:`esb.storage.trace_log`, at commit, under the chain head's lock.
    """

    __tablename__ = "trace_event"
    __table_args__ = (Index("ix_trace_event_document_seq", "document_id", "seq"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("document.id"))
    at: Mapped[datetime] = mapped_column(Timestamp)
    kind: Mapped[str] = mapped_column(String(24))
    actor: Mapped[str] = mapped_column(String(128))
    recipient_code: Mapped[str | None] = mapped_column(String(64))
    sha256: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(String(512))
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    prev_hash: Mapped[str] = mapped_column(String(64))
    doc_prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class TraceChainHead(Base):
    """The newest link of the global trace chain (one row, id 1): locked by every writer of
    trace events, so the chain has one order on every node."""

    __tablename__ = "trace_chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))


class HubReceiptRow(Base):
    """A signed hub receipt (esb.domain.receipts): kept for good, like the trace it attests."""

    __tablename__ = "hub_receipt"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    receipt_id: Mapped[str] = mapped_column(String(36), unique=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("document.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    recipient_code: Mapped[str | None] = mapped_column(String(64))
    trace_seq: Mapped[int] = mapped_column(BigInteger, unique=True)  # the event it attests
    issued_at: Mapped[datetime] = mapped_column(Timestamp)
    hub_certificate_sha256: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64))
    xml: Mapped[bytes] = mapped_column(LargeBinary)


class HubCertificate(Base):
    """Every certificate the hub has signed receipts with (rotation keeps old receipts checkable)."""

    __tablename__ = "hub_certificate"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    pem: Mapped[str] = mapped_column(Text)  # the leaf and its chain, as configured
    subject: Mapped[str] = mapped_column(String(1024))
    not_after: Mapped[datetime] = mapped_column(Timestamp)
    first_used_at: Mapped[datetime] = mapped_column(Timestamp)


class UploadSpaceRow(Base):
    """A space allocated by RequestSendSpace, filled by an HTTP PUT, used by SendDocument."""

    __tablename__ = "upload_space"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    space_id: Mapped[str] = mapped_column(String(64), unique=True)
    agency_code: Mapped[str] = mapped_column(String(64))
    application_id: Mapped[int] = mapped_column(ForeignKey("application.id"))
    recipients: Mapped[str] = mapped_column(Text)  # newline-separated identifier codes
    subject: Mapped[str] = mapped_column(String(2048))
    priority: Mapped[int] = mapped_column(Integer)
    data_type: Mapped[str] = mapped_column(String(16))
    protocol: Mapped[str] = mapped_column(String(32))
    max_bytes: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16))  # open, uploaded, used, expired
    size: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    expires_at: Mapped[datetime] = mapped_column(Timestamp, index=True)
    hub_document_id: Mapped[str | None] = mapped_column(String(36))


class ContentChunk(Base):
    """Package bytes when the content store is the database (``ESB_CONTENT_STORE=database``)."""

    __tablename__ = "content_chunk"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class DirectoryHead(Base):
    """The directory's newest version (one row, id 1): bumped, under its row lock, by every
    change to an agency, which takes the new value as its ``version`` (GetAgencyChanges)."""

    __tablename__ = "directory_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)


class RoutingRule(Base):
    """Where destinations go: an exact code or a subtree (``CODE/*``, ``*``) → zone and adapter.

    The most specific rule wins (exact, then the deepest subtree, then ``*``); a registered
    local agency with no rule goes to its mailbox here (adapter ``local``).
    """

    __tablename__ = "routing_rule"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    pattern: Mapped[str] = mapped_column(String(128), unique=True)
    zone: Mapped[str] = mapped_column(String(64))
    adapter: Mapped[str] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(Timestamp)


class PresenceRow(Base):
    """An application's presence (online / offline; no row: unknown), as last decided.

    ``last_seen_at`` is its last activity (written at most every few seconds);
    ``channel_until`` the lease of an open notification channel (long-poll or SSE), renewed
    while it lives: a channel that stops renewing is a dropped channel.
    """

    __tablename__ = "presence"

    application_id: Mapped[int] = mapped_column(ForeignKey("application.id"), primary_key=True)
    agency_code: Mapped[str] = mapped_column(String(64), index=True)
    state: Mapped[str] = mapped_column(String(16))
    state_since: Mapped[datetime] = mapped_column(Timestamp)
    last_seen_at: Mapped[datetime | None] = mapped_column(Timestamp)
    channel_kind: Mapped[str | None] = mapped_column(String(16))
    channel_until: Mapped[datetime | None] = mapped_column(Timestamp)
    node: Mapped[str | None] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(String(128))


class PresenceEventRow(Base):
    """A connect or disconnect of an application: time, node, reason (connection history)."""

    __tablename__ = "presence_event"
    __table_args__ = (
        Index("ix_presence_event_agency_at", "agency_code", "at"),
        Index("ix_presence_event_at", "at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("application.id"))
    agency_code: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(Timestamp)
    event: Mapped[str] = mapped_column(String(16))  # connect | disconnect
    node: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(String(128))


class NotificationRow(Base):
    """A notification to an agency (WaitForNotifications, SSE, callbacks); ``id`` is its cursor.

    Metadata only, never content or subject: a document or status waiting in the mailbox,
    or a report that a document of the agency's is undeliverable to a destination.
    """

    __tablename__ = "notification"
    __table_args__ = (Index("ix_notification_agency_id", "agency_code", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    agency_code: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # document | status | undeliverable
    hub_document_id: Mapped[str] = mapped_column(String(36))
    sender_code: Mapped[str] = mapped_column(String(64))
    recipient_code: Mapped[str | None] = mapped_column(String(64))
    message_type: Mapped[str] = mapped_column(String(8))
    priority: Mapped[int] = mapped_column(Integer)
    detail: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(Timestamp, index=True)


class CallbackPushRow(Base):
    """One notification to push to one application's callback, with its retry state."""

    __tablename__ = "callback_push"
    __table_args__ = (
        UniqueConstraint("notification_id", "application_id", name="uq_callback_push_entry"),
        Index("ix_callback_push_due", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    notification_id: Mapped[int] = mapped_column(ForeignKey("notification.id"), index=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("application.id"))
    priority: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))  # pending | sent | dead | cancelled
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(Timestamp)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None] = mapped_column(Timestamp)
    last_error: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)
