"""Tests for esb.pipeline.authentication on both engines, with a fake clock.

Requests are signed here exactly as a client would: the string to sign is built by hand
(``accessKey\\ntimestamp\\nnonce\\nalgorithm\\ntarget``, UTF-8), HMAC'd with the secret's UTF-8
bytes or signed with RSA PKCS#1 v1.5 + SHA-256, and sent in base64.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from sqlalchemy import func, select

from esb.domain.access import AccessRule, AgencyState, Effect, RuleScope
from esb.pipeline.authentication import Authenticator, AuthError, SignedRequest
from esb.pipeline.registration import IssuedKey, Registration
from esb.storage.tables import AuditEvent, AuthSession, ReplayGuard
from esb.wiring import Runtime

A, B, C = "000.00.00.H53", "000.00.01.H53", "000.00.00.H30"
TTL = timedelta(minutes=30)
SKEW = timedelta(seconds=300)
VN = timezone(timedelta(hours=7))
GENERIC = "Client.AuthenticationFailed"
FORGERS_KEY = "not-the-secret-key"

# -- a client -------------------------------------------------------------------------------------


def _request(
    access_key: str,
    sign: Callable[[bytes], bytes],
    now: datetime,
    *,
    algorithm: str,
    target: str | None = None,
    nonce: str | None = None,
    timestamp: str | None = None,
) -> SignedRequest:
    timestamp = now.isoformat() if timestamp is None else timestamp
    nonce = secrets.token_hex(8) if nonce is None else nonce
    message = f"{access_key}\n{timestamp}\n{nonce}\n{algorithm}\n{target or ''}".encode()
    signature = base64.b64encode(sign(message)).decode("ascii")
    return SignedRequest(access_key, timestamp, nonce, algorithm, signature, target)


def hmac_request(
    key: IssuedKey,
    now: datetime,
    *,
    algorithm: str = "HMAC-SHA256",
    secret: str | None = None,
    access_key: str | None = None,
    **fields: str | None,
) -> SignedRequest:
    digest = hashlib.sha1 if algorithm == "HMAC-SHA1" else hashlib.sha256
    secret_bytes = (secret if secret is not None else key.secret_key or "").encode("utf-8")
    return _request(
        access_key or key.access_key,
        lambda message: hmac.new(secret_bytes, message, digest).digest(),
        now,
        algorithm=algorithm,
        **fields,  # type: ignore[arg-type]
    )


def rsa_request(
    access_key: str,
    private_key: rsa.RSAPrivateKey,
    now: datetime,
    *,
    algorithm: str = "RSA-SHA256",
    **fields: str | None,
) -> SignedRequest:
    return _request(
        access_key,
        lambda message: private_key.sign(message, padding.PKCS1v15(), hashes.SHA256()),
        now,
        algorithm=algorithm,
        **fields,  # type: ignore[arg-type]
    )


def refused(call: Callable[[], object]) -> AuthError:
    with pytest.raises(AuthError) as caught:
        call()
    return caught.value


def _rows(runtime: Runtime) -> tuple[list[AuditEvent], int, int]:
    """(audit events oldest first, number of sessions, number of replay-cache entries)."""
    with runtime.database.transaction() as session:
        audit = list(session.scalars(select(AuditEvent).order_by(AuditEvent.id)))
        sessions = session.scalar(select(func.count()).select_from(AuthSession)) or 0
        replay = session.scalar(select(func.count()).select_from(ReplayGuard)) or 0
    return audit, sessions, replay


# -- signatures -----------------------------------------------------------------------------------


def test_hmac_sha256_signature_grants_a_session(authenticator: Authenticator, agencies, clock) -> None:
    grant = authenticator.authenticate(hmac_request(agencies.a, clock.now))
    assert len(grant.token) >= 43
    assert grant.expires_at == clock.now + TTL
    caller = grant.caller
    assert (caller.agency_code, caller.application_name, caller.access_key) == (
        A,
        "QLVB",
        agencies.a.access_key,
    )
    assert (caller.session_target, caller.session_expires_at) == (None, clock.now + TTL)


def test_hmac_sha1_signature_grants_a_session(authenticator: Authenticator, agencies, clock) -> None:
    grant = authenticator.authenticate(hmac_request(agencies.b, clock.now, algorithm="HMAC-SHA1"))
    assert grant.caller.agency_code == B


def test_rsa_sha256_signature_grants_a_session(
    authenticator: Authenticator, registration: Registration, agencies, clock, rsa_pair
) -> None:
    issued = registration.issue_key(A, "QLVB", public_key_pem=rsa_pair.public_pem)
    assert issued.secret_key is None
    grant = authenticator.authenticate(
        rsa_request(issued.access_key, rsa_pair.private_key, clock.now, target=B)
    )
    assert (grant.caller.agency_code, grant.caller.access_key) == (A, issued.access_key)
    assert grant.caller.session_target == B


def test_timestamp_with_vietnam_offset_is_accepted(authenticator: Authenticator, agencies, clock) -> None:
    timestamp = clock.now.astimezone(VN).isoformat()
    assert timestamp == "2026-11-21T09:30:00+07:00"
    grant = authenticator.authenticate(hmac_request(agencies.a, clock.now, timestamp=timestamp))
    assert grant.expires_at == clock.now + TTL


def test_unknown_key_and_wrong_signature_fail_with_the_same_code_and_message(
    authenticator: Authenticator, agencies, clock
) -> None:
    unknown = refused(
        lambda: authenticator.authenticate(
            hmac_request(agencies.a, clock.now, access_key="AKUNKNOWNUNKNOWNUNKNO")
        )
    )
    wrong = refused(
        lambda: authenticator.authenticate(hmac_request(agencies.a, clock.now, secret=agencies.b.secret_key))
    )
    garbled = replace(hmac_request(agencies.a, clock.now), signature="không phải base64")
    not_base64 = refused(lambda: authenticator.authenticate(garbled))
    assert unknown.code == wrong.code == not_base64.code == GENERIC
    assert unknown.message == wrong.message == not_base64.message
    assert str(unknown) == str(wrong)


def test_signature_of_the_other_key_kind_is_refused(
    authenticator: Authenticator, registration: Registration, agencies, clock, rsa_pair
) -> None:
    rsa_key = registration.issue_key(A, "QLVB", public_key_pem=rsa_pair.public_pem).access_key
    # RSA key, HMAC keyed with the (public) PEM: the classic algorithm-confusion attack.
    as_hmac = hmac_request(agencies.a, clock.now, access_key=rsa_key, secret=rsa_pair.public_pem)
    assert refused(lambda: authenticator.authenticate(as_hmac)).code == GENERIC
    # HMAC key, RSA signature, and HMAC bytes labelled RSA-SHA256.
    as_rsa = rsa_request(agencies.a.access_key, rsa_pair.private_key, clock.now)
    assert refused(lambda: authenticator.authenticate(as_rsa)).code == GENERIC
    labelled = hmac_request(agencies.a, clock.now, algorithm="RSA-SHA256")
    assert refused(lambda: authenticator.authenticate(labelled)).code == GENERIC
    # The right signatures still work: nothing above was locked out.
    authenticator.authenticate(rsa_request(rsa_key, rsa_pair.private_key, clock.now))
    authenticator.authenticate(hmac_request(agencies.a, clock.now))


# -- timestamps and request fields ----------------------------------------------------------------


@pytest.mark.parametrize("offset", [SKEW + timedelta(seconds=1), -(SKEW + timedelta(seconds=1))])
def test_timestamp_outside_the_skew_is_clock_skew_with_server_time(
    authenticator: Authenticator, agencies, clock, offset: timedelta
) -> None:
    request = hmac_request(agencies.a, clock.now, timestamp=(clock.now + offset).astimezone(VN).isoformat())
    error = refused(lambda: authenticator.authenticate(request))
    assert error.code == "Client.ClockSkew"
    assert error.server_time == clock.now
    assert clock.now.isoformat() in error.message
    # Exactly the allowed skew is still accepted.
    exactly = SKEW if offset > timedelta(0) else -SKEW
    authenticator.authenticate(
        hmac_request(agencies.a, clock.now, timestamp=(clock.now + exactly).isoformat())
    )


def test_malformed_fields_are_invalid_request(authenticator: Authenticator, agencies, clock) -> None:
    cases: list[dict[str, str]] = [
        {"timestamp": "2026-11-21T09:30:00"},  # no UTC offset
        {"timestamp": "21/11/2026 09:30"},
        {"timestamp": "yesterday"},
        {"timestamp": ""},
        {"algorithm": "HMAC-MD5"},
        {"algorithm": "hmac-sha256"},
        {"nonce": "1234567"},  # 7 characters
        {"nonce": "with a space"},
        {"nonce": "mã-số-một-lần"},  # not ASCII
        {"nonce": "x" * 129},
    ]
    for fields in cases:
        error = refused(
            lambda fields=fields: authenticator.authenticate(hmac_request(agencies.a, clock.now, **fields))
        )
        assert error.code == "Client.InvalidRequest", fields
    assert authenticator.authenticate(hmac_request(agencies.a, clock.now, nonce="12345678"))


def test_nonce_ending_with_a_newline_is_invalid_request(
    authenticator: Authenticator, agencies, clock
) -> None:
    request = hmac_request(agencies.a, clock.now, nonce="abcdefgh\n")
    assert refused(lambda: authenticator.authenticate(request)).code == "Client.InvalidRequest"


# -- replay ---------------------------------------------------------------------------------------


def test_reused_nonce_is_replay_detected_but_another_key_may_use_it(
    authenticator: Authenticator, agencies, clock
) -> None:
    first = hmac_request(agencies.a, clock.now, nonce="nonce-0001")
    authenticator.authenticate(first)
    assert refused(lambda: authenticator.authenticate(first)).code == "Client.ReplayDetected"
    clock.advance(seconds=10)
    resigned = hmac_request(agencies.a, clock.now, nonce="nonce-0001", target=B)  # new timestamp and target
    assert refused(lambda: authenticator.authenticate(resigned)).code == "Client.ReplayDetected"
    authenticator.authenticate(hmac_request(agencies.b, clock.now, nonce="nonce-0001"))


def test_nonce_is_reusable_once_the_skew_window_has_passed(
    authenticator: Authenticator, agencies, clock
) -> None:
    authenticator.authenticate(hmac_request(agencies.a, clock.now, nonce="nonce-0002"))
    clock.advance(seconds=299)
    again = hmac_request(agencies.a, clock.now, nonce="nonce-0002")
    assert refused(lambda: authenticator.authenticate(again)).code == "Client.ReplayDetected"
    clock.advance(seconds=2)  # 301 s: the first request's timestamp would now be refused as skewed
    authenticator.authenticate(hmac_request(agencies.a, clock.now, nonce="nonce-0002"))


def test_replayed_request_with_a_negative_utc_offset_is_detected(
    authenticator: Authenticator, agencies, clock, runtime: Runtime
) -> None:
    west = timezone(timedelta(hours=-5))
    replayed = hmac_request(agencies.a, clock.now, timestamp=clock.now.astimezone(west).isoformat())
    authenticator.authenticate(replayed)
    assert refused(lambda: authenticator.authenticate(replayed)).code == "Client.ReplayDetected"


# -- key and account state ------------------------------------------------------------------------


def test_revoked_key_with_a_valid_signature_is_key_revoked(
    authenticator: Authenticator, registration: Registration, agencies, clock
) -> None:
    registration.revoke_key(agencies.a.access_key)
    assert (
        refused(lambda: authenticator.authenticate(hmac_request(agencies.a, clock.now))).code
        == "Client.KeyRevoked"
    )
    forged = hmac_request(agencies.a, clock.now, secret=FORGERS_KEY)
    assert refused(lambda: authenticator.authenticate(forged)).code == GENERIC  # no oracle without the key


def test_rotated_key_works_during_the_overlap_then_is_key_revoked(
    authenticator: Authenticator, registration: Registration, agencies, clock
) -> None:
    new = registration.rotate_key(agencies.a.access_key, overlap=timedelta(hours=1))
    assert new.access_key != agencies.a.access_key
    clock.advance(minutes=30)
    assert authenticator.authenticate(hmac_request(agencies.a, clock.now)).caller.agency_code == A
    clock.advance(minutes=31)
    old = refused(lambda: authenticator.authenticate(hmac_request(agencies.a, clock.now)))
    assert old.code == "Client.KeyRevoked"
    assert authenticator.authenticate(hmac_request(new, clock.now)).caller.access_key == new.access_key


def test_session_of_a_rotating_key_ends_with_the_overlap(
    authenticator: Authenticator, registration: Registration, agencies, clock
) -> None:
    rotated_at = clock.now
    new = registration.rotate_key(agencies.a.access_key, overlap=timedelta(hours=1))
    clock.advance(minutes=45)
    grant = authenticator.authenticate(hmac_request(agencies.a, clock.now))
    assert grant.expires_at == rotated_at + timedelta(hours=1)
    assert grant.caller.session_expires_at == rotated_at + timedelta(hours=1)
    assert authenticator.authenticate(hmac_request(new, clock.now)).expires_at == clock.now + TTL
    clock.advance(minutes=15)
    assert refused(lambda: authenticator.caller_for_session(grant.token, "DocumentExchange")).code == (
        "Client.SessionExpired"
    )


def test_locked_agency_is_account_locked_until_unlocked(
    authenticator: Authenticator, registration: Registration, agencies, clock
) -> None:
    registration.set_agency_state(A, AgencyState.LOCKED)
    error = refused(lambda: authenticator.authenticate(hmac_request(agencies.a, clock.now)))
    assert error.code == "Client.AccountLocked"
    forged = hmac_request(agencies.a, clock.now, secret=FORGERS_KEY)
    assert refused(lambda: authenticator.authenticate(forged)).code == GENERIC
    registration.set_agency_state(A, AgencyState.ACTIVE)
    assert authenticator.authenticate(hmac_request(agencies.a, clock.now)).caller.agency_code == A


# -- targets --------------------------------------------------------------------------------------


def test_target_registered_agency_is_granted_and_recorded_in_the_session(
    authenticator: Authenticator, agencies, clock, runtime: Runtime
) -> None:
    grant = authenticator.authenticate(hmac_request(agencies.a, clock.now, target=B))
    assert grant.caller.session_target == B
    with runtime.database.transaction() as session:
        stored = session.scalars(select(AuthSession)).one()
        assert stored.target == B
        assert stored.token_sha256 == hashlib.sha256(grant.token.encode()).hexdigest()


def test_target_unknown_or_locked_agency_is_access_denied(
    authenticator: Authenticator, registration: Registration, agencies, clock
) -> None:
    unknown = hmac_request(agencies.a, clock.now, target="000.00.00.H99")
    assert refused(lambda: authenticator.authenticate(unknown)).code == "Client.AccessDenied"
    registration.set_agency_state(B, AgencyState.LOCKED)
    locked = hmac_request(agencies.a, clock.now, target=B)
    assert refused(lambda: authenticator.authenticate(locked)).code == "Client.AccessDenied"


def test_target_matching_a_deny_rule_is_access_denied(
    authenticator: Authenticator, registration: Registration, agencies, clock
) -> None:
    registration.add_rule(A, "QLVB", AccessRule(RuleScope.DESTINATION, "000.00.00.H30/*", Effect.DENY))
    denied = hmac_request(agencies.a, clock.now, target=C)
    assert refused(lambda: authenticator.authenticate(denied)).code == "Client.AccessDenied"
    assert (
        authenticator.authenticate(hmac_request(agencies.a, clock.now, target=B)).caller.session_target == B
    )
    assert (
        authenticator.authenticate(hmac_request(agencies.b, clock.now, target=C)).caller.session_target == C
    )


def test_target_outside_the_allow_list_is_access_denied(
    authenticator: Authenticator, registration: Registration, agencies, clock
) -> None:
    registration.add_rule(A, "QLVB", AccessRule(RuleScope.DESTINATION, "000.00.00.H53/*"))
    outside = hmac_request(agencies.a, clock.now, target=C)
    assert refused(lambda: authenticator.authenticate(outside)).code == "Client.AccessDenied"
    assert (
        authenticator.authenticate(hmac_request(agencies.a, clock.now, target=B)).caller.session_target == B
    )


def test_hub_service_target_is_allowed_by_default_and_denied_by_a_service_rule(
    authenticator: Authenticator, registration: Registration, agencies, clock
) -> None:
    grant = authenticator.authenticate(hmac_request(agencies.a, clock.now, target="DocumentExchange"))
    assert grant.caller.session_target == "DocumentExchange"
    registration.add_rule(A, "QLVB", AccessRule(RuleScope.SERVICE, "DocumentExchange", Effect.DENY))
    denied = hmac_request(agencies.a, clock.now, target="DocumentExchange")
    assert refused(lambda: authenticator.authenticate(denied)).code == "Client.AccessDenied"
    authenticator.authenticate(hmac_request(agencies.a, clock.now, target="Directory"))


# -- sessions -------------------------------------------------------------------------------------


def test_live_session_gives_its_caller(authenticator: Authenticator, agencies, clock) -> None:
    grant = authenticator.authenticate(hmac_request(agencies.a, clock.now))
    clock.advance(minutes=29, seconds=59)
    caller = authenticator.caller_for_session(grant.token, "DocumentExchange")
    assert caller == grant.caller


def test_unknown_session_is_session_invalid(authenticator: Authenticator, agencies, clock) -> None:
    grant = authenticator.authenticate(hmac_request(agencies.a, clock.now))
    for token in (grant.token[:-1], secrets.token_urlsafe(32), ""):
        assert refused(lambda token=token: authenticator.caller_for_session(token, "Directory")).code == (
            "Client.SessionInvalid"
        )


def test_session_past_its_ttl_is_session_expired(authenticator: Authenticator, agencies, clock) -> None:
    grant = authenticator.authenticate(hmac_request(agencies.a, clock.now))
    clock.advance(minutes=30)
    error = refused(lambda: authenticator.caller_for_session(grant.token, "DocumentExchange"))
    assert error.code == "Client.SessionExpired"


def test_session_of_a_key_revoked_later_is_key_revoked(
    authenticator: Authenticator, registration: Registration, agencies, clock
) -> None:
    grant = authenticator.authenticate(hmac_request(agencies.a, clock.now))
    registration.revoke_key(agencies.a.access_key)
    assert refused(lambda: authenticator.caller_for_session(grant.token, "DocumentExchange")).code == (
        "Client.KeyRevoked"
    )


def test_session_of_an_agency_locked_later_is_account_locked(
    authenticator: Authenticator, registration: Registration, agencies, clock
) -> None:
    grant = authenticator.authenticate(hmac_request(agencies.a, clock.now))
    registration.set_agency_state(A, AgencyState.LOCKED)
    assert refused(lambda: authenticator.caller_for_session(grant.token, "DocumentExchange")).code == (
        "Client.AccountLocked"
    )


def test_session_issued_before_a_rotation_ends_with_the_overlap(
    authenticator: Authenticator, registration: Registration, agencies, clock
) -> None:
    grant = authenticator.authenticate(hmac_request(agencies.a, clock.now))  # until +30 min
    registration.rotate_key(agencies.a.access_key, overlap=timedelta(minutes=5))
    clock.advance(minutes=10)
    error = refused(lambda: authenticator.caller_for_session(grant.token, "DocumentExchange"))
    assert error.code == "Client.KeyRevoked"


def test_session_issued_for_a_target_cannot_call_another_service(
    authenticator: Authenticator, agencies, clock
) -> None:
    for_agency = authenticator.authenticate(hmac_request(agencies.a, clock.now, target=B))
    error = refused(lambda: authenticator.caller_for_session(for_agency.token, "DocumentExchange"))
    assert error.code == "Client.AccessDenied"
    for_service = authenticator.authenticate(hmac_request(agencies.a, clock.now, target="DocumentExchange"))
    assert authenticator.caller_for_session(for_service.token, "DocumentExchange").agency_code == A
    assert refused(lambda: authenticator.caller_for_session(for_service.token, "Directory")).code == (
        "Client.AccessDenied"
    )


def test_session_cannot_call_a_service_denied_by_a_rule(
    authenticator: Authenticator, registration: Registration, agencies, clock
) -> None:
    grant = authenticator.authenticate(hmac_request(agencies.a, clock.now))
    registration.add_rule(A, "QLVB", AccessRule(RuleScope.SERVICE, "Directory"))
    assert authenticator.caller_for_session(grant.token, "Directory").agency_code == A
    assert refused(lambda: authenticator.caller_for_session(grant.token, "DocumentExchange")).code == (
        "Client.AccessDenied"
    )


# -- VerifyAccess: the six steps ------------------------------------------------------------------


def test_verify_access_confirms_the_requester_to_its_destination(
    authenticator: Authenticator, agencies, clock
) -> None:
    grant = authenticator.authenticate(hmac_request(agencies.a, clock.now, target=B))  # steps 1-2
    clock.advance(seconds=20)  # step 3: A calls B's own service with grant.token
    asked = hmac_request(agencies.b, clock.now, target=grant.token)  # step 4
    confirmation = authenticator.verify_access(grant.token, agencies.a.access_key, asked)  # step 5
    requester = confirmation.requester
    assert (requester.agency_code, requester.application_name, requester.access_key) == (
        A,
        "QLVB",
        agencies.a.access_key,
    )
    assert requester.session_target == B
    assert (confirmation.destination.agency_code, confirmation.destination.access_key) == (
        B,
        agencies.b.access_key,
    )
    assert confirmation.session_expires_at == grant.expires_at
    # Without the requester's access key, the session alone identifies it.
    again = authenticator.verify_access(
        grant.token, None, hmac_request(agencies.b, clock.now, target=grant.token)
    )
    assert again.requester.access_key == agencies.a.access_key


def test_verify_access_by_another_destination_is_access_denied(
    authenticator: Authenticator, agencies, clock
) -> None:
    grant = authenticator.authenticate(hmac_request(agencies.a, clock.now, target=B))
    asked = hmac_request(agencies.c, clock.now, target=grant.token)
    error = refused(lambda: authenticator.verify_access(grant.token, agencies.a.access_key, asked))
    assert error.code == "Client.AccessDenied"


def test_verify_access_naming_another_requester_key_is_access_denied(
    authenticator: Authenticator, agencies, clock
) -> None:
    grant = authenticator.authenticate(hmac_request(agencies.a, clock.now, target=B))
    asked = hmac_request(agencies.b, clock.now, target=grant.token)
    error = refused(lambda: authenticator.verify_access(grant.token, agencies.c.access_key, asked))
    assert error.code == "Client.AccessDenied"


def test_verify_access_request_must_be_signed_for_the_session_key(
    authenticator: Authenticator, agencies, clock
) -> None:
    grant = authenticator.authenticate(hmac_request(agencies.a, clock.now, target=B))
    for target in (None, B, grant.token[:-1]):
        asked = hmac_request(agencies.b, clock.now, target=target)
        error = refused(
            lambda asked=asked: authenticator.verify_access(grant.token, agencies.a.access_key, asked)
        )
        assert error.code == "Client.InvalidRequest"


def test_verify_access_on_an_expired_session_is_session_expired(
    authenticator: Authenticator, agencies, clock
) -> None:
    grant = authenticator.authenticate(hmac_request(agencies.a, clock.now, target=B))
    clock.advance(minutes=31)
    asked = hmac_request(agencies.b, clock.now, target=grant.token)
    error = refused(lambda: authenticator.verify_access(grant.token, agencies.a.access_key, asked))
    assert error.code == "Client.SessionExpired"


# -- audit: one event per attempt, nothing else written -------------------------------------------


def test_each_refused_authentication_writes_one_audit_event_and_nothing_else(
    authenticator: Authenticator, registration: Registration, agencies, clock, runtime: Runtime
) -> None:
    used = hmac_request(agencies.a, clock.now)
    authenticator.authenticate(used)
    registration.revoke_key(agencies.c.access_key)
    registration.set_agency_state(B, AgencyState.LOCKED)
    now = clock.now
    refusals: list[tuple[SignedRequest, str]] = [
        (hmac_request(agencies.a, now, secret=FORGERS_KEY), GENERIC),
        (hmac_request(agencies.a, now, access_key="AKNOSUCHKEYNOSUCHKEY"), GENERIC),
        (hmac_request(agencies.a, now, timestamp=(now - timedelta(hours=1)).isoformat()), "Client.ClockSkew"),
        (hmac_request(agencies.a, now, nonce="short"), "Client.InvalidRequest"),
        (used, "Client.ReplayDetected"),
        (hmac_request(agencies.c, now), "Client.KeyRevoked"),
        (hmac_request(agencies.b, now), "Client.AccountLocked"),
        (
            hmac_request(agencies.a, now, target="000.00.00.H99"),
            "Client.AccessDenied",
        ),  # after the nonce check
    ]
    for request, code in refusals:
        audit_before, sessions_before, replay_before = _rows(runtime)
        assert (
            refused(lambda request=request: authenticator.authenticate(request, remote_addr="10.0.0.7")).code
            == code
        )
        audit_after, sessions_after, replay_after = _rows(runtime)
        new = audit_after[len(audit_before) :]
        assert [(e.event, e.outcome, e.access_key, e.remote_addr) for e in new] == [
            ("authenticate", code, request.access_key, "10.0.0.7")
        ], code
        assert (sessions_after, replay_after) == (sessions_before, replay_before), code


def test_successful_authentication_writes_one_ok_audit_event(
    authenticator: Authenticator, agencies, clock, runtime: Runtime
) -> None:
    audit_before, sessions_before, _ = _rows(runtime)
    authenticator.authenticate(hmac_request(agencies.a, clock.now, target=B), remote_addr="10.0.0.7")
    audit_after, sessions_after, _ = _rows(runtime)
    new = audit_after[len(audit_before) :]
    assert [(e.event, e.outcome, e.access_key, e.agency_code, e.remote_addr, e.detail) for e in new] == [
        ("authenticate", "ok", agencies.a.access_key, A, "10.0.0.7", B)
    ]
    assert sessions_after == sessions_before + 1


def test_audit_events_never_hold_secrets_signatures_or_session_keys(
    authenticator: Authenticator, agencies, clock, runtime: Runtime
) -> None:
    requests = [
        hmac_request(agencies.a, clock.now, target=B),
        hmac_request(agencies.a, clock.now, secret=FORGERS_KEY),
    ]
    grant = authenticator.authenticate(requests[0])
    refused(lambda: authenticator.authenticate(requests[1]))
    asked = hmac_request(agencies.b, clock.now, target=grant.token)
    authenticator.verify_access(grant.token, agencies.a.access_key, asked)
    refused(lambda: authenticator.verify_access(grant.token, agencies.a.access_key, asked))  # replayed
    refused(lambda: authenticator.caller_for_session(grant.token, "DocumentExchange"))  # wrong service
    forbidden = [agencies.a.secret_key, agencies.b.secret_key, grant.token, asked.signature]
    forbidden += [r.signature for r in requests]
    assert all(forbidden)
    audit, _, _ = _rows(runtime)
    assert len(audit) >= 4
    columns = [column.key for column in AuditEvent.__table__.columns]
    for event in audit:
        for column in columns:
            value = str(getattr(event, column))
            for secret in forbidden:
                assert secret not in value, (column, event.event)
