"""What the plain-HTTP handlers beside the SOAP services share (``/upload``, ``/download``, ``/events``).

* :func:`session_caller`: the caller behind the session key from Auth.Authenticate, sent in
  ``X-Session-Token`` (or ``Authorization: Bearer <token>``).
* :func:`error_response` and :func:`json_response`: JSON responses; an error is
  ``{"code", "message", "reference"}`` with the stable codes of the SOAP faults, and its HTTP
  status comes from a code → status map (:data:`STATUS_BY_CODE`, which each handler extends
  with its own codes).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from esb.domain.access import Caller
from esb.errors import ClientError
from esb.pipeline.authentication import Authenticator
from esb.soap.faults import describe

# Codes every handler maps the same way; a code in no map is 400 (Client.*) or 500.
STATUS_BY_CODE: Mapping[str, str] = {
    "Client.AuthenticationRequired": "401 Unauthorized",
    "Client.AuthenticationFailed": "401 Unauthorized",
    "Client.SessionExpired": "401 Unauthorized",
    "Client.SessionInvalid": "401 Unauthorized",
    "Client.KeyRevoked": "401 Unauthorized",
    "Client.AccessDenied": "403 Forbidden",
    "Client.AccountLocked": "403 Forbidden",
    "Client.MethodNotAllowed": "405 Method Not Allowed",
}


def session_caller(environ: Mapping[str, Any], authenticator: Authenticator, service: str) -> Caller:
    """The caller of this request, allowed to call ``service``, from its session key."""
    token = environ.get("HTTP_X_SESSION_TOKEN")
    authorization = str(environ.get("HTTP_AUTHORIZATION", ""))
    if not token and authorization.lower().startswith("bearer "):
        token = authorization[7:].strip()
    if not token:
        raise ClientError(
            "send the session key from Auth.Authenticate in X-Session-Token",
            code="Client.AuthenticationRequired",
        )
    return authenticator.caller_for_session(str(token), service, remote_addr=environ.get("REMOTE_ADDR"))


def error_response(
    start_response: Callable[..., Any],
    exc: BaseException,
    statuses: Mapping[str, str],
    extra: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    """``exc`` as JSON ``{"code", "message", "reference"}``, with the status ``statuses`` maps its code to."""
    code, message, _, reference = describe(exc)
    status = statuses.get(code)
    if status is None:
        status = "400 Bad Request" if code.startswith("Client.") else "500 Internal Server Error"
    return json_response(
        start_response, status, {"code": code, "message": message, "reference": reference}, extra
    )


def json_response(
    start_response: Callable[..., Any],
    status: str,
    payload: dict[str, Any],
    extra: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    """``payload`` as UTF-8 JSON, with ``extra`` headers after the content headers."""
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    headers = [("Content-Type", "application/json; charset=utf-8"), ("Content-Length", str(len(body)))]
    start_response(status, headers + (extra or []))
    return [body]
