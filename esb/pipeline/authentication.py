"""The authentication service: signed requests → session keys, destination checks, SOAP callers.

The six-step flow of the provincial rules maps onto :class:`Authenticator` like this:

1. the source signs ``accessKey\\ntimestamp\\nnonce\\nalgorithm\\ntarget`` and calls
   ``Authenticate`` with ``target`` = the destination agency's code;
2. :meth:`Authenticator.authenticate` checks the key, the signature, the clock, the nonce,
   that the source is active and may reach the target, and returns a session key;
3. the source calls the destination's own service with the session key;
4. the destination signs its own request (``target`` = that session key) and calls
   ``VerifyAccess``;
5. :meth:`Authenticator.verify_access` confirms who the source is and that the session was
   issued for this destination;
6. the destination answers or refuses.

Every refusal is a :class:`AuthError` with a stable code.  Unknown keys and bad signatures
give the same code and message (no "key exists" oracle); codes that reveal more
(``KeyRevoked``, ``AccountLocked``) are only given after the signature proved possession of
the key.  Each attempt writes one audit event and nothing else.

Every success is also activity of the application (presence, :mod:`esb.pipeline.presence`):
``on_activity(caller, "authenticate")`` after ``Authenticate``, ``on_activity(caller, "call")``
for every call resolved to a caller (session key, from the cache too, or WS-Security) and for
the destination's own request in ``VerifyAccess``.  The hook runs after the transaction and
never fails the call.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cachetools import TTLCache
from lxml import etree
from sqlalchemy.orm import Session

from esb.clock import Clock, utc_now
from esb.domain.access import (
    HUB_SERVICES,
    AgencyState,
    Caller,
    KeyKind,
    RuleScope,
    SignatureAlgorithm,
    is_allowed,
    string_to_sign,
)
from esb.errors import ClientError, EsbError
from esb.security import wsse
from esb.security.request_signature import decode_signature, verify_hmac, verify_rsa
from esb.security.secret_box import SecretBox
from esb.storage import auth_store, registry
from esb.storage.database import Database
from esb.storage.tables import AccessKey, Application, AuthSession

log = logging.getLogger(__name__)

_NONCE = re.compile(r"[\x21-\x7e]{8,128}")
_DUMMY_SECRET = secrets.token_bytes(32)
PURGE_EVERY = 200  # sessions issued by one process between two purges of expired rows
_GENERIC_FAILURE = "authentication failed: unknown access key or wrong signature"

ActivityHook = Callable[[Caller, str], None]
"""Told of each authenticated caller and why: ``"authenticate"`` or ``"call"`` (presence)."""


class AuthError(ClientError):
    default_code = "Client.AuthenticationFailed"

    def __init__(self, message: str, *, code: str | None = None, server_time: datetime | None = None) -> None:
        super().__init__(message, code=code)
        self.server_time = server_time


@dataclass(frozen=True)
class AuthPolicy:
    clock_skew: timedelta = timedelta(seconds=300)
    session_ttl: timedelta = timedelta(minutes=30)
    allow_legacy_sha1: bool = False  # WS-Security RSA-SHA1/SHA1
    # How long a worker may reuse a session key it resolved, without asking the database:
    # a revoked key, locked application or expired session is refused at most this late.
    session_cache_ttl: timedelta = timedelta(seconds=5)

    @property
    def wsse(self) -> wsse.WssePolicy:
        return wsse.WssePolicy(max_clock_skew=self.clock_skew, allow_sha1=self.allow_legacy_sha1)


@dataclass(frozen=True)
class SignedRequest:
    access_key: str
    timestamp: str
    nonce: str
    algorithm: str
    signature: str
    target: str | None = None


@dataclass(frozen=True)
class SessionGrant:
    token: str
    expires_at: datetime
    caller: Caller


@dataclass(frozen=True)
class AccessConfirmation:
    requester: Caller
    destination: Caller
    session_expires_at: datetime


class Authenticator:
    def __init__(
        self,
        database: Database,
        secret_box: SecretBox,
        policy: AuthPolicy = AuthPolicy(),
        clock: Clock = utc_now,
        *,
        on_activity: ActivityHook | None = None,
    ) -> None:
        self.database = database
        self.secret_box = secret_box
        self.policy = policy
        self.clock = clock
        self.on_activity = on_activity
        self._issued = 0
        self._sessions: TTLCache[tuple[str, str], Caller] | None = None
        ttl = policy.session_cache_ttl.total_seconds()
        if ttl > 0:
            self._sessions = TTLCache(maxsize=10_000, ttl=ttl, timer=lambda: self.clock().timestamp())
        self._sessions_lock = threading.Lock()

    # -- steps 1-2: Authenticate ----------------------------------------------------------------

    def authenticate(self, request: SignedRequest, *, remote_addr: str | None = None) -> SessionGrant:
        now = self.clock()
        with (
            self._audited("authenticate", request.access_key, remote_addr, now),
            self.database.transaction() as session,
        ):
            key = self._check_signed_request(session, request, now)
            caller = _caller(key)
            self._check_target(session, key.application, request.target)
            token = secrets.token_urlsafe(32)
            expires_at = now + self.policy.session_ttl
            if key.valid_until is not None:
                expires_at = min(expires_at, key.valid_until)
            auth_store.add_session(
                session,
                token_sha256=_sha256(token),
                key=key,
                target=request.target or None,
                issued_at=now,
                expires_at=expires_at,
            )
            _audit_ok(session, "authenticate", now, key, remote_addr, request.target)
            self._issued += 1
            if self._issued % PURGE_EVERY == 0:  # expired sessions and replay entries, now and then
                auth_store.purge_expired(session, now=now)
        self._activity(caller, "authenticate")
        return SessionGrant(token, expires_at, _with_session(caller, request.target or None, expires_at))

    # -- steps 4-5: VerifyAccess ----------------------------------------------------------------

    def verify_access(
        self,
        session_token: str,
        requester_access_key: str | None,
        destination_request: SignedRequest,
        *,
        remote_addr: str | None = None,
    ) -> AccessConfirmation:
        now = self.clock()
        with self._audited("verify_access", destination_request.access_key, remote_addr, now):
            if destination_request.target != session_token:
                raise AuthError(
                    "the destination's request must be signed with target = the session key it asks about",
                    code="Client.InvalidRequest",
                )
            with self.database.transaction() as session:
                destination_key = self._check_signed_request(session, destination_request, now)
                destination = _caller(destination_key)
                auth_session, requester_key = self._live_session(session, session_token, now)
                # The destination check first: a session for someone else tells nothing more.
                if auth_session.target != destination.agency_code:
                    raise AuthError(
                        "the session key was not issued for this destination", code="Client.AccessDenied"
                    )
                if requester_access_key and not hmac.compare_digest(
                    requester_access_key.encode(), requester_key.access_key.encode()
                ):
                    raise AuthError(
                        "the session key was not issued to that access key", code="Client.AccessDenied"
                    )
                expires_at = auth_session.expires_at
                requester = _with_session(_caller(requester_key), auth_session.target, expires_at)
                _audit_ok(session, "verify_access", now, destination_key, remote_addr, requester.agency_code)
        self._activity(destination, "call")
        return AccessConfirmation(requester, destination, expires_at)

    # -- every other SOAP call ------------------------------------------------------------------

    def caller_for_session(self, token: str, service: str, *, remote_addr: str | None = None) -> Caller:
        """The caller behind a session key in a SOAP header, allowed to call ``service``.

        Resolved once per :attr:`AuthPolicy.session_cache_ttl` per worker (keyed by the token's
        SHA-256, never the token), then answered from memory until the session itself ends.
        """
        if self._sessions is None:
            caller = self._resolve_session(token, service, remote_addr)
            self._activity(caller, "call")
            return caller
        cache_key = (hashlib.sha256(token.encode("utf-8")).hexdigest(), service)
        with self._sessions_lock:
            cached = self._sessions.get(cache_key)
        if (
            cached is not None
            and cached.session_expires_at is not None
            and cached.session_expires_at > self.clock()
        ):
            self._activity(cached, "call")
            return cached
        caller = self._resolve_session(token, service, remote_addr)
        with self._sessions_lock:
            self._sessions[cache_key] = caller
        self._activity(caller, "call")
        return caller

    def _resolve_session(self, token: str, service: str, remote_addr: str | None) -> Caller:
        now = self.clock()
        with (
            self._audited("session", None, remote_addr, now, detail=service),
            self.database.transaction() as session,
        ):
            auth_session, key = self._live_session(session, token, now)
            if auth_session.target not in (None, service):
                raise AuthError(
                    f"this session key was issued for {auth_session.target}, not for the {service} service",
                    code="Client.AccessDenied",
                )
            self._check_service(session, key.application, service)
            return _with_session(_caller(key), auth_session.target, auth_session.expires_at)

    def caller_for_wsse(
        self, envelope: etree._Element, service: str, *, remote_addr: str | None = None
    ) -> Caller:
        """The caller behind a WS-Security signature made with its registered certificate."""
        now = self.clock()
        with self._audited("wsse", None, remote_addr, now):
            token = wsse.read_security_token(envelope)
        with (
            self._audited("wsse", None, remote_addr, now, detail=token.certificate_sha256[:16]),
            self.database.transaction() as session,
        ):
            application = registry.find_application_by_certificate(session, token.certificate_sha256)
            if application is None:
                raise AuthError("the signing certificate is not registered to any application")
            verified = wsse.verify_security(envelope, token, now=now, policy=self.policy.wsse)
            _check_active(application)
            expires = verified.expires + self.policy.clock_skew
            if not auth_store.remember_once(
                session, "wsse", verified.signature_digest, expires_at=expires, now=now
            ):
                raise AuthError("this signed message was already received", code="Client.ReplayDetected")
            self._check_service(session, application, service)
            caller = Caller(
                agency_code=application.agency.code,
                application_id=application.id,
                application_name=application.name,
                access_key=None,
                certificate_sha256=token.certificate_sha256,
            )
        self._activity(caller, "call")
        return caller

    def server_time(self) -> datetime:
        return self.clock()

    def _activity(self, caller: Caller, reason: str) -> None:
        if self.on_activity is None:
            return
        try:
            self.on_activity(caller, reason)
        except Exception:  # noqa: BLE001 - presence is never a reason to refuse an authenticated call
            log.warning("activity hook failed for application %s (%s)", caller.application_id, reason)

    # -- checks ---------------------------------------------------------------------------------

    def _check_signed_request(self, session: Session, request: SignedRequest, now: datetime) -> AccessKey:
        algorithm = _algorithm(request.algorithm)
        if not _NONCE.fullmatch(request.nonce or ""):
            raise AuthError(
                "nonce must be 8 to 128 printable ASCII characters without spaces",
                code="Client.InvalidRequest",
            )
        signed_at = _timestamp(request.timestamp)
        if abs(now - signed_at) > self.policy.clock_skew:
            raise AuthError(
                f"timestamp {request.timestamp} is outside the allowed clock skew of "
                f"±{int(self.policy.clock_skew.total_seconds())} s; server time is {now.isoformat()}",
                code="Client.ClockSkew",
                server_time=now,
            )
        signature = decode_signature(request.signature or "")
        key = registry.find_key(session, request.access_key or "")
        message = string_to_sign(
            request.access_key, request.timestamp, request.nonce, request.algorithm, request.target
        )
        if signature is None or key is None:
            # Spend the same work as a real check, so timing does not tell whether the key exists.
            verify_hmac(_DUMMY_SECRET, message, SignatureAlgorithm.HMAC_SHA256, signature or b"")
            raise AuthError(_GENERIC_FAILURE)
        if not self._signature_matches(key, algorithm, message, signature):
            raise AuthError(_GENERIC_FAILURE)
        if key.is_retired(now):
            raise AuthError("this access key has been revoked or replaced", code="Client.KeyRevoked")
        _check_active(key.application)
        nonce_digest = _sha256(f"{key.access_key}\n{request.nonce}")
        if not auth_store.remember_once(
            session, "nonce", nonce_digest, expires_at=signed_at + self.policy.clock_skew, now=now
        ):
            raise AuthError("this nonce was already used", code="Client.ReplayDetected")
        return key

    def _signature_matches(
        self, key: AccessKey, algorithm: SignatureAlgorithm, message: bytes, signature: bytes
    ) -> bool:
        if key.kind == KeyKind.SECRET and algorithm.is_hmac and key.secret_ciphertext is not None:
            secret = self.secret_box.open(key.secret_ciphertext, bound_to=key.access_key)
            return verify_hmac(secret, message, algorithm, signature)
        if key.kind == KeyKind.RSA and not algorithm.is_hmac and key.public_key_pem is not None:
            return verify_rsa(key.public_key_pem, message, signature)
        # Wrong algorithm for this kind of key: spend the same work as a real check.
        verify_hmac(_DUMMY_SECRET, message, SignatureAlgorithm.HMAC_SHA256, signature)
        return False

    def _check_target(self, session: Session, application: Application, target: str | None) -> None:
        if not target:
            return
        if target in HUB_SERVICES:
            self._check_service(session, application, target)
            return
        agency = registry.find_agency(session, target)
        rules = registry.rules_of(session, application.id)
        if (
            agency is None
            or agency.state != AgencyState.ACTIVE
            or not is_allowed(rules, RuleScope.DESTINATION, target)
        ):
            raise AuthError(
                f"target {target} is unknown, locked or not reachable by this application",
                code="Client.AccessDenied",
            )

    def _check_service(self, session: Session, application: Application, service: str) -> None:
        if not is_allowed(registry.rules_of(session, application.id), RuleScope.SERVICE, service):
            raise AuthError(
                f"this application may not call the {service} service", code="Client.AccessDenied"
            )

    def _live_session(self, session: Session, token: str, now: datetime) -> tuple[AuthSession, AccessKey]:
        found = auth_store.find_session(session, _sha256(token or ""))
        if found is None:
            raise AuthError("unknown session key", code="Client.SessionInvalid")
        auth_session, key = found
        if auth_session.expires_at <= now:
            raise AuthError("the session key has expired; authenticate again", code="Client.SessionExpired")
        if key.is_retired(now):
            raise AuthError(
                "the key behind this session has been revoked or replaced", code="Client.KeyRevoked"
            )
        _check_active(key.application)
        return auth_session, key

    # -- audit ----------------------------------------------------------------------------------

    def _audited(
        self,
        event: str,
        access_key: str | None,
        remote_addr: str | None,
        now: datetime,
        *,
        detail: str | None = None,
    ) -> _AuditOnFailure:
        return _AuditOnFailure(self.database, event, access_key, remote_addr, now, detail)


class _AuditOnFailure:
    """Context manager: when the block raises one of our errors, write one audit event for it
    in a transaction of its own (the failed one was rolled back) and re-raise."""

    def __init__(
        self,
        database: Database,
        event: str,
        access_key: str | None,
        remote_addr: str | None,
        now: datetime,
        detail: str | None,
    ) -> None:
        self.args = (database, event, access_key, remote_addr, now, detail)

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if not isinstance(exc, EsbError) or exc.code.startswith("Server."):
            return
        database, event, access_key, remote_addr, now, detail = self.args
        try:
            with database.transaction() as session:
                auth_store.record_audit(
                    session,
                    at=now,
                    event=event,
                    outcome=exc.code,
                    access_key=access_key,
                    remote_addr=remote_addr,
                    detail=detail,
                )
        except EsbError:
            log.warning("could not write the audit event for a refused %s", event)


def _audit_ok(
    session: Session, event: str, now: datetime, key: AccessKey, remote_addr: str | None, detail: str | None
) -> None:
    auth_store.record_audit(
        session,
        at=now,
        event=event,
        outcome="ok",
        access_key=key.access_key,
        agency_code=key.application.agency.code,
        remote_addr=remote_addr,
        detail=detail,
    )


def _check_active(application: Application) -> None:
    if application.state != AgencyState.ACTIVE or application.agency.state != AgencyState.ACTIVE:
        raise AuthError("this application or its agency is locked", code="Client.AccountLocked")


def _caller(key: AccessKey) -> Caller:
    application = key.application
    return Caller(
        agency_code=application.agency.code,
        application_id=application.id,
        application_name=application.name,
        access_key=key.access_key,
    )


def _with_session(caller: Caller, target: str | None, expires_at: datetime) -> Caller:
    return Caller(
        agency_code=caller.agency_code,
        application_id=caller.application_id,
        application_name=caller.application_name,
        access_key=caller.access_key,
        session_target=target,
        session_expires_at=expires_at,
    )


def _algorithm(value: str) -> SignatureAlgorithm:
    try:
        return SignatureAlgorithm(value)
    except ValueError:
        allowed = ", ".join(a.value for a in SignatureAlgorithm)
        raise AuthError(f"algorithm must be one of {allowed}", code="Client.InvalidRequest") from None


def _timestamp(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise AuthError(
            "timestamp must be ISO 8601 with a UTC offset, e.g. 2026-11-21T09:30:00+07:00",
            code="Client.InvalidRequest",
        )
    return parsed


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()
