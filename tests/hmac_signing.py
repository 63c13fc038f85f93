"""Authenticate's arguments signed with a demo credential (HMAC-SHA256), for the tests over HTTP.

A plain module beside tests/conftest.py (pytest puts tests/ on ``sys.path``), so that test
modules can import it; conftest modules of the same name cannot be imported reliably.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import UTC, datetime
from typing import Any

from esb.domain.access import string_to_sign


def hmac_signed(credential: Any, *, target: str | None = None, at: datetime | None = None) -> dict[str, str]:
    """``accessKey``, ``timestamp`` (``at``, default now), ``nonce``, ``algorithm``, ``signature``
    and ``target`` (when given), for ``Auth.Authenticate(**fields)``."""
    timestamp = (at or datetime.now(UTC)).isoformat(timespec="seconds")
    nonce = secrets.token_hex(8)
    message = string_to_sign(credential.accessKey, timestamp, nonce, "HMAC-SHA256", target)
    signature = base64.b64encode(hmac.new(credential.secretKey.encode(), message, hashlib.sha256).digest())
    fields = {
        "accessKey": credential.accessKey,
        "timestamp": timestamp,
        "nonce": nonce,
        "algorithm": "HMAC-SHA256",
        "signature": signature.decode(),
    }
    if target is not None:
        fields["target"] = target
    return fields
