"""Registry queries: agencies, applications, key pairs and access rules.

Functions take an open :class:`~sqlalchemy.orm.Session` so that callers decide what commits
together (``with database.transaction() as session: ...``).  Every write to an agency row
gives the agency the next directory version (:mod:`esb.storage.directory_store`), which is
how the directory on every node, and clients syncing with ``GetAgencyChanges``, learn of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import cast

from sqlalchemy import Table, func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, joinedload

from esb.domain.access import AccessRule, AgencyState, Effect, RuleScope
from esb.domain.agencies import AgencyRecord, account_for
from esb.errors import ClientError
from esb.storage import directory_store
from esb.storage.tables import AccessKey, AccessRuleRow, Agency, AgencyCertificate, Application

_AGENCY_TABLE = cast(Table, Agency.__table__)


class RegistryConflict(ClientError):
    default_code = "Client.AlreadyRegistered"


class NotRegistered(ClientError):
    default_code = "Client.NotRegistered"


# -- agencies ---------------------------------------------------------------------------------


def find_agency(session: Session, code: str) -> Agency | None:
    return session.scalars(select(Agency).where(Agency.code == code)).one_or_none()


def agency_rows(session: Session, codes: Sequence[str]) -> dict[str, tuple[str, str | None]]:
    """``{code: (state, signature policy or None)}`` of the registered agencies among ``codes``."""
    rows = session.execute(
        select(Agency.code, Agency.state, Agency.signature_policy).where(Agency.code.in_(list(codes)))
    )
    return {str(code): (str(state), policy) for code, state, policy in rows.tuples()}


def registered_signers(session: Session, code: str, *, now: datetime) -> list[str]:
    """SHA-256 fingerprints of the certificates ``code`` registered for signing (not removed)."""
    rows = session.scalars(
        select(AgencyCertificate.sha256)
        .join(Agency, Agency.id == AgencyCertificate.agency_id)
        .where(
            Agency.code == code,
            (AgencyCertificate.removed_at.is_(None)) | (AgencyCertificate.removed_at > now),
        )
    )
    return sorted(set(rows))


def set_signature_policy(session: Session, code: str, policy: str | None, *, now: datetime) -> Agency:
    agency = get_agency(session, code)
    agency.signature_policy = policy
    agency.updated_at = now
    directory_store.mark_changed(session, agency)
    return agency


def add_agency_certificate(
    session: Session, code: str, *, der: bytes, sha256: str, subject: str, not_after: datetime, now: datetime
) -> AgencyCertificate:
    agency = get_agency(session, code)
    existing = session.scalar(
        select(AgencyCertificate).where(
            AgencyCertificate.agency_id == agency.id, AgencyCertificate.sha256 == sha256
        )
    )
    if existing is not None:
        if existing.removed_at is None:
            raise RegistryConflict(f"{code} already has the certificate {sha256[:16]}…")
        existing.removed_at = None
        existing.added_at = now
        return existing
    row = AgencyCertificate(
        agency_id=agency.id, sha256=sha256, der=der, subject=subject, not_after=not_after, added_at=now
    )
    session.add(row)
    return row


def remove_agency_certificate(
    session: Session, code: str, sha256: str, *, now: datetime
) -> AgencyCertificate:
    agency = get_agency(session, code)
    row = session.scalar(
        select(AgencyCertificate).where(
            AgencyCertificate.agency_id == agency.id,
            AgencyCertificate.sha256.startswith(sha256.lower()),
            AgencyCertificate.removed_at.is_(None),
        )
    )
    if row is None:
        raise NotRegistered(f"{code} has no registered certificate {sha256}")
    row.removed_at = now
    return row


def agency_certificates(session: Session, code: str | None = None) -> list[tuple[str, AgencyCertificate]]:
    query = (
        select(Agency.code, AgencyCertificate)
        .join(Agency, Agency.id == AgencyCertificate.agency_id)
        .order_by(Agency.code, AgencyCertificate.added_at)
    )
    if code is not None:
        query = query.where(Agency.code == code)
    return [(str(c), row) for c, row in session.execute(query).tuples()]


def get_agency(session: Session, code: str) -> Agency:
    agency = find_agency(session, code)
    if agency is None:
        raise NotRegistered(f"no agency is registered with the code {code!r}")
    return agency


def add_agency(session: Session, record: AgencyRecord, *, province_domain: str, now: datetime) -> Agency:
    if find_agency(session, record.code) is not None:
        raise RegistryConflict(f"an agency with the code {record.code} is already registered")
    agency = Agency(**_agency_values(record, province_domain), created_at=now, updated_at=now)
    directory_store.mark_changed(session, agency)
    session.add(agency)
    session.flush()
    return agency


def upsert_agencies(
    session: Session, records: Sequence[AgencyRecord], *, province_domain: str, now: datetime
) -> tuple[int, int]:
    """Insert new agencies and update known ones (by code); (inserted, updated).

    One ON CONFLICT statement run for all rows at once (executemany: compiled once, not once
    per batch).  An import never changes an existing agency's state: locking and unlocking
    are operator actions (``esb agency lock``), and a file's rows would otherwise silently
    unlock an agency.  A known agency whose details are unchanged is left as it is (its
    ``updated_at`` and directory version too), so re-importing a list is not a change.
    Each row takes its own directory version, from one block reserved for the call.
    """
    if not records:
        return 0, 0
    records = list({record.code: record for record in records}.values())  # the last row of a code wins
    codes = [record.code for record in records]
    known = set(session.scalars(select(Agency.code).where(Agency.code.in_(codes))))
    first_version = directory_store.reserve_versions(session, len(records))
    rows = [
        {
            **_agency_values(record, province_domain),
            "created_at": now,
            "updated_at": now,
            "version": first_version + number,
        }
        for number, record in enumerate(records)
    ]
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(_AGENCY_TABLE)
    details = ("qd20_code", "old_code", "name", "parent_code", "address", "email", "account")
    statement = statement.on_conflict_do_update(
        index_elements=[_AGENCY_TABLE.c.code],
        set_={column: statement.excluded[column] for column in (*details, "updated_at", "version")},
        where=or_(
            *(_AGENCY_TABLE.c[column].is_distinct_from(statement.excluded[column]) for column in details)
        ),
    )
    session.connection().execute(statement, rows)
    updated = len(known)
    return len(codes) - updated, updated


def list_agencies(
    session: Session,
    *,
    prefix: str | None = None,
    state: AgencyState | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Agency]:
    query = select(Agency).order_by(Agency.code).limit(limit).offset(offset)
    if prefix:
        pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(
            or_(Agency.code.like(pattern, escape="\\"), Agency.name.ilike(f"%{pattern}", escape="\\"))
        )
    if state is not None:
        query = query.where(Agency.state == state.value)
    return list(session.scalars(query))


def count_agencies(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Agency)) or 0


def set_agency_state(session: Session, code: str, state: AgencyState, *, now: datetime) -> Agency:
    agency = get_agency(session, code)
    agency.state = state.value
    agency.updated_at = now
    directory_store.mark_changed(session, agency)
    return agency


def _agency_values(record: AgencyRecord, province_domain: str) -> dict[str, object]:
    return {
        "code": record.code,
        "qd20_code": record.qd20_code,
        "old_code": record.old_code,
        "name": record.name,
        "parent_code": record.parent_code,
        "address": record.address,
        "email": record.email,
        "account": account_for(record.code, province_domain),
        "state": record.state.value,
    }


# -- applications -----------------------------------------------------------------------------


def add_application(
    session: Session,
    agency: Agency,
    *,
    name: str,
    developer: str | None,
    endpoint: str | None,
    certificate_der: bytes | None,
    certificate_sha256: str | None,
    now: datetime,
) -> Application:
    duplicate = session.scalars(
        select(Application).where(Application.agency_id == agency.id, Application.name == name)
    ).one_or_none()
    if duplicate is not None:
        raise RegistryConflict(f"agency {agency.code} already has an application named {name!r}")
    if certificate_sha256 is not None and find_application_by_certificate(session, certificate_sha256):
        raise RegistryConflict("this certificate is already registered to another application")
    application = Application(
        agency=agency,
        name=name,
        developer=developer,
        endpoint=endpoint,
        certificate_der=certificate_der,
        certificate_sha256=certificate_sha256,
        state=AgencyState.ACTIVE.value,
        created_at=now,
    )
    session.add(application)
    session.flush()
    return application


def find_application(session: Session, agency_code: str, name: str) -> Application | None:
    return session.scalars(
        select(Application)
        .join(Application.agency)
        .where(Agency.code == agency_code, Application.name == name)
        .options(joinedload(Application.agency))
    ).one_or_none()


def get_application(session: Session, agency_code: str, name: str) -> Application:
    application = find_application(session, agency_code, name)
    if application is None:
        raise NotRegistered(f"agency {agency_code} has no application named {name!r}")
    return application


def find_application_by_certificate(session: Session, certificate_sha256: str) -> Application | None:
    return session.scalars(
        select(Application)
        .where(Application.certificate_sha256 == certificate_sha256)
        .options(joinedload(Application.agency))
    ).one_or_none()


def list_applications(session: Session, agency_code: str | None = None) -> list[Application]:
    query = select(Application).join(Application.agency).options(joinedload(Application.agency))
    if agency_code:
        query = query.where(Agency.code == agency_code)
    return list(session.scalars(query.order_by(Agency.code, Application.name)))


# -- keys -------------------------------------------------------------------------------------


def add_key(
    session: Session,
    application: Application,
    *,
    access_key: str,
    kind: str,
    secret_ciphertext: bytes | None,
    public_key_pem: str | None,
    now: datetime,
) -> AccessKey:
    key = AccessKey(
        application=application,
        access_key=access_key,
        kind=kind,
        secret_ciphertext=secret_ciphertext,
        public_key_pem=public_key_pem,
        created_at=now,
    )
    session.add(key)
    session.flush()
    return key


def find_key(session: Session, access_key: str) -> AccessKey | None:
    return session.scalars(
        select(AccessKey)
        .where(AccessKey.access_key == access_key)
        .options(joinedload(AccessKey.application).joinedload(Application.agency))
    ).one_or_none()


def get_key(session: Session, access_key: str) -> AccessKey:
    key = find_key(session, access_key)
    if key is None:
        raise NotRegistered(f"no key {access_key!r} is registered")
    return key


def list_keys(session: Session, agency_code: str | None = None) -> list[AccessKey]:
    query = (
        select(AccessKey)
        .join(AccessKey.application)
        .join(Application.agency)
        .options(joinedload(AccessKey.application).joinedload(Application.agency))
    )
    if agency_code:
        query = query.where(Agency.code == agency_code)
    return list(session.scalars(query.order_by(Agency.code, Application.name, AccessKey.created_at)))


# -- access rules -----------------------------------------------------------------------------


def add_rule(session: Session, application: Application, rule: AccessRule, *, now: datetime) -> None:
    exists = session.scalars(
        select(AccessRuleRow).where(
            AccessRuleRow.application_id == application.id,
            AccessRuleRow.scope == rule.scope.value,
            AccessRuleRow.pattern == rule.pattern,
            AccessRuleRow.effect == rule.effect.value,
        )
    ).one_or_none()
    if exists is None:
        session.add(
            AccessRuleRow(
                application=application,
                scope=rule.scope.value,
                pattern=rule.pattern,
                effect=rule.effect.value,
                created_at=now,
            )
        )
        session.flush()


def rules_of(session: Session, application_id: int) -> list[AccessRule]:
    rows = session.scalars(
        select(AccessRuleRow).where(AccessRuleRow.application_id == application_id).order_by(AccessRuleRow.id)
    )
    return [AccessRule(RuleScope(row.scope), row.pattern, Effect(row.effect)) for row in rows]
