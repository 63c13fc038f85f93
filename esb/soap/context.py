"""What every operation can reach: the use cases (wired once per process) and the request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from esb.domain.access import Caller
from esb.errors import ClientError
from esb.pipeline.authentication import Authenticator
from esb.pipeline.directory import Directory
from esb.pipeline.exchange import Exchange
from esb.pipeline.notifications import NotificationHub
from esb.security.wsse import find_security_header


@dataclass(frozen=True)
class Services:
    """The use cases the SOAP operations call; built by :mod:`esb.wiring`."""

    authenticator: Authenticator
    exchange: Exchange
    notifications: NotificationHub
    directory: Directory


@dataclass
class RequestContext:
    services: Services
    remote_addr: str | None


def request_context(ctx: Any) -> RequestContext:
    udc = ctx.udc
    if not isinstance(udc, RequestContext):  # the method_call listener sets it for every call
        raise TypeError("no request context: the service was not built by esb.soap.app")
    return udc


def require_caller(ctx: Any, service: str) -> Caller:
    """The authenticated caller of this request: a WS-Security signature or a session key.

    A WS-Security header, when present, is verified on the very tree spyne deserialised
    (``ctx.in_document``), so what was verified is what the operation receives.
    """
    request = request_context(ctx)
    authenticator = request.services.authenticator
    envelope = ctx.in_document
    if envelope is not None and find_security_header(envelope) is not None:
        return authenticator.caller_for_wsse(envelope, service, remote_addr=request.remote_addr)
    header = ctx.in_header
    token = getattr(header, "sessionToken", None)
    if token:
        return authenticator.caller_for_session(str(token), service, remote_addr=request.remote_addr)
    raise ClientError(
        "this operation needs a session key (AuthHeader/sessionToken SOAP header, from Authenticate) "
        "or a WS-Security signature",
        code="Client.AuthenticationRequired",
    )
