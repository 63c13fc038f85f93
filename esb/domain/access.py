"""Who may call what: the pure rules of the authentication service.

* The **string to sign** of ``Authenticate`` (and of the destination's own request in
  ``VerifyAccess``) is exactly ``accessKey\\ntimestamp\\nnonce\\nalgorithm\\ntarget`` with an
  empty last line when there is no target.  It is UTF-8 encoded before signing.
* **Access rules** restrict an application.  With no rule of a scope, the default holds: any
  registered agency may be sent documents, and every hub service may be called.  Once an
  application has an ``allow`` rule in a scope, only what some ``allow`` rule matches is
  reachable in that scope.  A matching ``deny`` rule always wins.
* A **pattern** is ``*`` (everything), an exact identifier code or service name, or
  ``CODE/*`` (the code and every unit below it in the code hierarchy).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from esb.domain.identifiers import is_within

__all__ = [
    "HUB_SERVICES",
    "AccessRule",
    "AgencyState",
    "Caller",
    "Effect",
    "KeyKind",
    "RuleScope",
    "SignatureAlgorithm",
    "is_allowed",
    "pattern_matches",
    "string_to_sign",
]

HUB_SERVICES: frozenset[str] = frozenset({"Auth", "DocumentExchange", "Directory", "Notifications"})
"""Service names as they appear in ``/soap/<Service>``; a target may name one of them."""


class SignatureAlgorithm(StrEnum):
    HMAC_SHA256 = "HMAC-SHA256"
    HMAC_SHA1 = "HMAC-SHA1"
    RSA_SHA256 = "RSA-SHA256"

    @property
    def is_hmac(self) -> bool:
        return self is not SignatureAlgorithm.RSA_SHA256


class KeyKind(StrEnum):
    SECRET = "secret"  # noqa: S105 - a key kind, not a password; shared secret_key; HMAC-SHA256 / HMAC-SHA1
    RSA = "rsa"  # the application holds the private key; we keep the public key or certificate


class AgencyState(StrEnum):
    ACTIVE = "active"
    LOCKED = "locked"


class RuleScope(StrEnum):
    DESTINATION = "destination"  # agencies the application may send to / authenticate towards
    SERVICE = "service"  # hub services the application may call


class Effect(StrEnum):
    ALLOW = "allow"
    DENY = "deny"


@dataclass(frozen=True)
class AccessRule:
    scope: RuleScope
    pattern: str
    effect: Effect = Effect.ALLOW


@dataclass(frozen=True)
class Caller:
    """An authenticated application, as every service sees it."""

    agency_code: str
    application_id: int
    application_name: str
    access_key: str | None  # None when authenticated by a WS-Security certificate
    session_target: str | None = None
    session_expires_at: datetime | None = None
    certificate_sha256: str | None = None


def string_to_sign(access_key: str, timestamp: str, nonce: str, algorithm: str, target: str | None) -> bytes:
    """The exact bytes a client signs for ``Authenticate``: UTF-8, ``\\n`` separators, no final newline."""
    return "\n".join((access_key, timestamp, nonce, algorithm, target or "")).encode("utf-8")


def pattern_matches(pattern: str, target: str) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith("/*"):
        root = pattern[:-2]
        return target == root or is_within(target, root)
    return pattern == target


def is_allowed(rules: Iterable[AccessRule], scope: RuleScope, target: str) -> bool:
    """Whether ``target`` is reachable in ``scope`` under ``rules`` (see the module docstring)."""
    scoped = [rule for rule in rules if rule.scope is scope]
    if any(rule.effect is Effect.DENY and pattern_matches(rule.pattern, target) for rule in scoped):
        return False
    allows = [rule for rule in scoped if rule.effect is Effect.ALLOW]
    return not allows or any(pattern_matches(rule.pattern, target) for rule in allows)
