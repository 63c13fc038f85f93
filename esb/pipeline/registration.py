"""Operator use cases: register agencies and applications, issue, rotate and revoke keys;
agencies' signature policies and the certificates they sign packages with.

Secrets are generated here, sealed with the master key before they reach the database, and
returned exactly once (the CLI prints them); they are never logged.  Every change writes an
audit event in the same transaction.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from esb.clock import Clock, utc_now
from esb.domain.access import AccessRule, AgencyState, KeyKind
from esb.domain.agencies import AgencyRecord
from esb.domain.signatures import SignaturePolicy
from esb.errors import ClientError
from esb.security.pki import load_certificates
from esb.security.request_signature import certificate_fingerprint, load_certificate, load_public_key
from esb.security.secret_box import SecretBox
from esb.storage import auth_store, registry
from esb.storage.database import Database
from esb.storage.tables import AccessKey, Agency, AgencyCertificate, Application

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

IMPORT_BATCH = 1000
# A fingerprint prefix must name one certificate without doubt (8 hex digits = 32 bits).
MIN_FINGERPRINT_PREFIX = 8
_HEX = re.compile(r"[0-9a-f]+")


class KeyStateError(ClientError):
    default_code = "Client.KeyRevoked"


@dataclass(frozen=True)
class IssuedKey:
    agency_code: str
    application: str
    access_key: str
    kind: KeyKind
    secret_key: str | None  # shown once; None for RSA keys (the application holds the private key)

    def __repr__(self) -> str:  # never print the secret by accident
        return f"IssuedKey({self.agency_code}/{self.application}, {self.access_key}, {self.kind})"


@dataclass(frozen=True)
class KeyInfo:
    access_key: str
    agency_code: str
    application: str
    kind: str
    created_at: datetime
    valid_until: datetime | None
    revoked_at: datetime | None
    replaced_by: str | None

    def state(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.valid_until is not None:
            return "expired" if self.valid_until <= now else "rotating"
        return "active"


@dataclass(frozen=True)
class ImportSummary:
    inserted: int
    updated: int


@dataclass(frozen=True)
class SigningCertificateInfo:
    """A certificate an agency registered for signing its packages (public data only)."""

    agency_code: str
    sha256: str  # hex SHA-256 of the DER certificate
    subject: str
    issuer: str
    serial: str  # hex
    not_before: datetime | None
    not_after: datetime
    added_at: datetime
    removed_at: datetime | None

    def state(self, now: datetime) -> str:
        """``removed``, ``expired`` or ``active``."""
        if self.removed_at is not None and self.removed_at <= now:
            return "removed"
        return "expired" if self.not_after <= now else "active"


def new_access_key() -> str:
    """A public key id: ``AK`` + 20 base32 characters (100 random bits)."""
    return "AK" + base64.b32encode(secrets.token_bytes(13)).decode("ascii")[:20]


def new_secret_key() -> str:
    """256 random bits, URL-safe base64; the HMAC key is this string's UTF-8 bytes."""
    return secrets.token_urlsafe(32)


class Registration:
    def __init__(
        self, database: Database, secret_box: SecretBox, *, province_domain: str, clock: Clock = utc_now
    ) -> None:
        self.database = database
        self.secret_box = secret_box
        self.province_domain = province_domain
        self.clock = clock

    # -- agencies ---------------------------------------------------------------------------

    def add_agency(self, record: AgencyRecord) -> Agency:
        now = self.clock()
        with self.database.transaction() as session:
            agency = registry.add_agency(session, record, province_domain=self.province_domain, now=now)
            auth_store.record_audit(
                session, at=now, event="agency.add", outcome="ok", agency_code=record.code
            )
        return agency

    def import_agencies(
        self, records: Iterable[AgencyRecord], *, progress: Callable[[int], None] | None = None
    ) -> ImportSummary:
        """Insert or update every record, in one transaction (all or nothing), in batches."""
        now = self.clock()
        inserted = updated = 0
        with self.database.transaction() as session:
            for batch in _batches(records, IMPORT_BATCH):
                new, changed = registry.upsert_agencies(
                    session, batch, province_domain=self.province_domain, now=now
                )
                inserted, updated = inserted + new, updated + changed
                if progress is not None:
                    progress(len(batch))
            auth_store.record_audit(
                session,
                at=now,
                event="agency.import",
                outcome="ok",
                detail=f"{inserted} new, {updated} updated",
            )
        return ImportSummary(inserted, updated)

    def set_agency_state(self, code: str, state: AgencyState) -> Agency:
        now = self.clock()
        with self.database.transaction() as session:
            agency = registry.set_agency_state(session, code, state, now=now)
            auth_store.record_audit(
                session, at=now, event=f"agency.{state.value}", outcome="ok", agency_code=code
            )
        return agency

    # -- signatures: policy and signing certificates -------------------------------------------

    def set_signature_policy(self, code: str, policy: SignaturePolicy | None) -> Agency:
        """The agency's own signature policy; ``None`` clears it (the hub's default applies)."""
        now = self.clock()
        with self.database.transaction() as session:
            agency = registry.set_signature_policy(
                session, code, policy.value if policy is not None else None, now=now
            )
            auth_store.record_audit(
                session,
                at=now,
                event="agency.signature-policy",
                outcome="ok",
                agency_code=code,
                detail=policy.value if policy is not None else "default",
            )
        return agency

    def add_signing_certificate(self, code: str, pem_or_der: bytes) -> SigningCertificateInfo:
        """Register the certificate ``code`` signs its packages with (PEM or DER).

        A PEM with several certificates is read as a chain: the first one is registered.
        Refused with ``Client.BadCertificate``: not a certificate, a CA certificate, one whose
        KeyUsage forbids signing documents, or one already expired.
        """
        certificate = load_certificates(pem_or_der)[0]
        now = self.clock()
        _require_signing_certificate(certificate, now)
        der = certificate.public_bytes(Encoding.DER)
        with self.database.transaction() as session:
            row = registry.add_agency_certificate(
                session,
                code,
                der=der,
                sha256=hashlib.sha256(der).hexdigest(),
                subject=certificate.subject.rfc4514_string(),
                not_after=certificate.not_valid_after_utc,
                now=now,
            )
            auth_store.record_audit(
                session,
                at=now,
                event="agency.certificate.add",
                outcome="ok",
                agency_code=code,
                detail=f"sha256 {row.sha256}",
            )
            return _certificate_info(code, row)

    def remove_signing_certificate(self, code: str, sha256_prefix: str) -> SigningCertificateInfo:
        """Stop accepting one of ``code``'s certificates (named by a fingerprint prefix, ≥ 8 hex digits)."""
        prefix = sha256_prefix.strip().lower().replace(":", "")
        if len(prefix) < MIN_FINGERPRINT_PREFIX or len(prefix) > 64 or _HEX.fullmatch(prefix) is None:
            raise ClientError(
                f"name the certificate by its SHA-256 fingerprint or a prefix of at least "
                f"{MIN_FINGERPRINT_PREFIX} hex digits, not {sha256_prefix!r}",
                code="Client.InvalidRequest",
            )
        now = self.clock()
        with self.database.transaction() as session:
            matches = [
                row
                for _, row in registry.agency_certificates(session, code)
                if row.removed_at is None and row.sha256.startswith(prefix)
            ]
            if len(matches) > 1:
                raise ClientError(
                    f"{len(matches)} certificates of {code} start with {prefix}; give more digits",
                    code="Client.InvalidRequest",
                )
            row = registry.remove_agency_certificate(session, code, prefix, now=now)
            auth_store.record_audit(
                session,
                at=now,
                event="agency.certificate.remove",
                outcome="ok",
                agency_code=code,
                detail=f"sha256 {row.sha256}",
            )
            return _certificate_info(code, row)

    def signing_certificates(self, code: str | None = None) -> list[SigningCertificateInfo]:
        """Every registered signing certificate (removed ones too), of one agency or of all."""
        with self.database.transaction() as session:
            if code is not None:
                registry.get_agency(session, code)  # an unknown agency is NotRegistered, not []
            return [
                _certificate_info(owner, row) for owner, row in registry.agency_certificates(session, code)
            ]

    # -- applications -----------------------------------------------------------------------

    def register_application(
        self,
        agency_code: str,
        name: str,
        *,
        developer: str | None = None,
        endpoint: str | None = None,
        certificate: bytes | None = None,
        rules: Iterable[AccessRule] = (),
    ) -> Application:
        name = " ".join(name.split())
        if not name or len(name) > 128:
            raise ClientError(
                "the application name must be 1 to 128 characters", code="Client.InvalidRequest"
            )
        der = fingerprint = None
        if certificate is not None:
            cert = load_certificate(certificate)
            load_public_key(cert.public_bytes(Encoding.PEM).decode("ascii"))  # RSA ≥ 2048 only
            der = cert.public_bytes(Encoding.DER)
            fingerprint = certificate_fingerprint(der)
        now = self.clock()
        with self.database.transaction() as session:
            agency = registry.get_agency(session, agency_code)
            application = registry.add_application(
                session,
                agency,
                name=name,
                developer=developer,
                endpoint=endpoint,
                certificate_der=der,
                certificate_sha256=fingerprint,
                now=now,
            )
            for rule in rules:
                registry.add_rule(session, application, rule, now=now)
            auth_store.record_audit(
                session,
                at=now,
                event="application.register",
                outcome="ok",
                agency_code=agency_code,
                detail=name,
            )
        return application

    def add_rule(self, agency_code: str, application: str, rule: AccessRule) -> None:
        now = self.clock()
        with self.database.transaction() as session:
            app = registry.get_application(session, agency_code, application)
            registry.add_rule(session, app, rule, now=now)
            auth_store.record_audit(
                session,
                at=now,
                event="application.rule",
                outcome="ok",
                agency_code=agency_code,
                detail=f"{application}: {rule.effect} {rule.scope} {rule.pattern}",
            )

    # -- keys -------------------------------------------------------------------------------

    def issue_key(
        self, agency_code: str, application: str, *, public_key_pem: str | None = None
    ) -> IssuedKey:
        """A new key pair: a secret key (HMAC), or an RSA key when ``public_key_pem`` is given."""
        now = self.clock()
        with self.database.transaction() as session:
            app = registry.get_application(session, agency_code, application)
            issued = self._issue(session, app, public_key_pem, now)
            auth_store.record_audit(
                session,
                at=now,
                event="key.issue",
                outcome="ok",
                access_key=issued.access_key,
                agency_code=agency_code,
            )
        return issued

    def rotate_key(
        self, access_key: str, *, overlap: timedelta, public_key_pem: str | None = None
    ) -> IssuedKey:
        """A new key for the same application; the old one keeps working for ``overlap``, then stops."""
        now = self.clock()
        with self.database.transaction() as session:
            old = registry.get_key(session, access_key)
            _require_usable(old, now)
            if old.kind == KeyKind.RSA and public_key_pem is None:
                raise ClientError(
                    "rotating an RSA key needs the new public key", code="Client.InvalidRequest"
                )
            issued = self._issue(
                session, old.application, public_key_pem if old.kind == KeyKind.RSA else None, now
            )
            old.valid_until = now + overlap
            old.replaced_by = issued.access_key
            auth_store.record_audit(
                session,
                at=now,
                event="key.rotate",
                outcome="ok",
                access_key=access_key,
                agency_code=issued.agency_code,
                detail=f"replaced by {issued.access_key}; old key valid until {old.valid_until.isoformat()}",
            )
        return issued

    def revoke_key(self, access_key: str) -> KeyInfo:
        now = self.clock()
        with self.database.transaction() as session:
            key = registry.get_key(session, access_key)
            if key.revoked_at is None:
                key.revoked_at = now
            auth_store.record_audit(
                session,
                at=now,
                event="key.revoke",
                outcome="ok",
                access_key=access_key,
                agency_code=key.application.agency.code,
            )
            return _key_info(key)

    def list_keys(self, agency_code: str | None = None) -> list[KeyInfo]:
        with self.database.transaction() as session:
            return [_key_info(key) for key in registry.list_keys(session, agency_code)]

    def _issue(
        self, session: Session, app: Application, public_key_pem: str | None, now: datetime
    ) -> IssuedKey:
        access_key = new_access_key()
        if public_key_pem is not None:
            load_public_key(public_key_pem)
            registry.add_key(
                session,
                app,
                access_key=access_key,
                kind=KeyKind.RSA,
                secret_ciphertext=None,
                public_key_pem=public_key_pem,
                now=now,
            )
            return IssuedKey(app.agency.code, app.name, access_key, KeyKind.RSA, None)
        secret = new_secret_key()
        registry.add_key(
            session,
            app,
            access_key=access_key,
            kind=KeyKind.SECRET,
            secret_ciphertext=self.secret_box.seal(secret.encode("utf-8"), bound_to=access_key),
            public_key_pem=None,
            now=now,
        )
        return IssuedKey(app.agency.code, app.name, access_key, KeyKind.SECRET, secret)


def _require_usable(key: AccessKey, now: datetime) -> None:
    if key.is_retired(now):
        raise KeyStateError(f"key {key.access_key} is revoked or expired; issue a new one instead")
    if key.replaced_by is not None:
        raise KeyStateError(f"key {key.access_key} was already rotated (replaced by {key.replaced_by})")


def _require_signing_certificate(certificate: x509.Certificate, now: datetime) -> None:
    subject = certificate.subject.rfc4514_string() or "<empty subject>"
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    except ValueError:
        raise ClientError(
            f"certificate {subject} has unreadable extensions", code="Client.BadCertificate"
        ) from None
    if constraints is not None and constraints.ca:
        raise ClientError(
            f"{subject} is a CA certificate: register the agency's own signing certificate here, "
            "and put CA certificates in the trust store (ESB_TRUST_DIR)",
            code="Client.BadCertificate",
        )
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and not (usage.digital_signature or usage.content_commitment):
        raise ClientError(
            f"certificate {subject} may not sign documents: its key usage has neither "
            "digitalSignature nor nonRepudiation",
            code="Client.BadCertificate",
        )
    if certificate.not_valid_after_utc <= now:
        raise ClientError(
            f"certificate {subject} expired at {certificate.not_valid_after_utc.isoformat()}",
            code="Client.BadCertificate",
        )


def _certificate_info(code: str, row: AgencyCertificate) -> SigningCertificateInfo:
    issuer = serial = ""
    not_before: datetime | None = None
    try:
        certificate = x509.load_der_x509_certificate(row.der)
    except ValueError:
        pass
    else:
        issuer = certificate.issuer.rfc4514_string()
        serial = f"{certificate.serial_number:x}"
        not_before = certificate.not_valid_before_utc
    return SigningCertificateInfo(
        agency_code=code,
        sha256=row.sha256,
        subject=row.subject,
        issuer=issuer,
        serial=serial,
        not_before=not_before,
        not_after=row.not_after,
        added_at=row.added_at,
        removed_at=row.removed_at,
    )


def _key_info(key: AccessKey) -> KeyInfo:
    return KeyInfo(
        access_key=key.access_key,
        agency_code=key.application.agency.code,
        application=key.application.name,
        kind=key.kind,
        created_at=key.created_at,
        valid_until=key.valid_until,
        revoked_at=key.revoked_at,
        replaced_by=key.replaced_by,
    )


def _batches(items: Iterable[AgencyRecord], size: int) -> Iterator[list[AgencyRecord]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch
