"""``/soap/Auth``: Authenticate, VerifyAccess, GetServerTime and WhoAmI.

See docs/authentication.md for the string to sign and worked client examples.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from spyne import ComplexModel, DateTime, Unicode, rpc

from esb.pipeline.authentication import SignedRequest
from esb.soap.context import request_context, require_caller
from esb.soap.faults import TranslatingService, make_fault_class
from esb.soap.soap_types import auth_header, text

NAMESPACE = "urn:lgsp-esb:auth:1"
SERVICE = "Auth"

EsbFault = make_fault_class(NAMESPACE)
AuthHeader = auth_header(NAMESPACE, "SOAP header carrying the session key on every authenticated call.")


class SessionTicket(ComplexModel):  # type: ignore[misc]
    __namespace__ = NAMESPACE
    _type_info = [  # noqa: RUF012
        ("sessionToken", Unicode(min_occurs=1, nillable=False)),
        ("expiresAt", DateTime(min_occurs=1, nillable=False)),
        ("agency", Unicode(min_occurs=1, nillable=False)),
        ("application", Unicode(min_occurs=1, nillable=False)),
        ("target", Unicode(min_occurs=0, nillable=False)),
    ]


class SignedAccess(ComplexModel):  # type: ignore[misc]
    """The destination's own signed request in VerifyAccess (its ``target`` is the session key)."""

    __namespace__ = NAMESPACE
    _type_info = [  # noqa: RUF012
        ("accessKey", text()),
        ("timestamp", text()),
        ("nonce", text()),
        ("algorithm", text()),
        ("signature", text()),
    ]


class AccessConfirmation(ComplexModel):  # type: ignore[misc]
    __namespace__ = NAMESPACE
    _type_info = [  # noqa: RUF012
        ("requesterAgency", Unicode(min_occurs=1, nillable=False)),
        ("requesterApplication", Unicode(min_occurs=1, nillable=False)),
        ("requesterAccessKey", Unicode(min_occurs=1, nillable=False)),
        ("destinationAgency", Unicode(min_occurs=1, nillable=False)),
        ("sessionExpiresAt", DateTime(min_occurs=1, nillable=False)),
    ]


class CallerInfo(ComplexModel):  # type: ignore[misc]
    __namespace__ = NAMESPACE
    _type_info = [  # noqa: RUF012
        ("agency", Unicode(min_occurs=1, nillable=False)),
        ("application", Unicode(min_occurs=1, nillable=False)),
        ("accessKey", Unicode(min_occurs=0, nillable=False)),
        ("certificateSha256", Unicode(min_occurs=0, nillable=False)),
        ("sessionExpiresAt", DateTime(min_occurs=0, nillable=False)),
    ]


class AuthService(TranslatingService):
    fault_class = EsbFault

    @rpc(
        text(),
        text(),
        text(),
        text(),
        text(),
        text(0),
        _returns=SessionTicket.customize(min_occurs=1, nillable=False),
        _throws=[EsbFault],
    )
    def Authenticate(
        ctx: Any,
        accessKey: str,
        timestamp: str,
        nonce: str,
        algorithm: str,
        signature: str,
        target: str | None,
    ) -> SessionTicket:
        """Exchange a signed request for a session key (steps 1-2 of the six-step flow)."""
        request = request_context(ctx)
        grant = request.services.authenticator.authenticate(
            SignedRequest(accessKey, timestamp, nonce, algorithm, signature, target or None),
            remote_addr=request.remote_addr,
        )
        return SessionTicket(
            sessionToken=grant.token,
            expiresAt=grant.expires_at,
            agency=grant.caller.agency_code,
            application=grant.caller.application_name,
            target=grant.caller.session_target,
        )

    @rpc(
        text(),
        text(0),
        SignedAccess.customize(min_occurs=1, nillable=False),
        _returns=AccessConfirmation.customize(min_occurs=1, nillable=False),
        _throws=[EsbFault],
    )
    def VerifyAccess(
        ctx: Any, sessionToken: str, requesterAccessKey: str | None, destination: SignedAccess
    ) -> AccessConfirmation:
        """A destination service confirms a caller's session key (steps 4-5)."""
        request = request_context(ctx)
        confirmation = request.services.authenticator.verify_access(
            sessionToken,
            requesterAccessKey or None,
            SignedRequest(
                destination.accessKey,
                destination.timestamp,
                destination.nonce,
                destination.algorithm,
                destination.signature,
                sessionToken,
            ),
            remote_addr=request.remote_addr,
        )
        return AccessConfirmation(
            requesterAgency=confirmation.requester.agency_code,
            requesterApplication=confirmation.requester.application_name,
            requesterAccessKey=confirmation.requester.access_key,
            destinationAgency=confirmation.destination.agency_code,
            sessionExpiresAt=confirmation.session_expires_at,
        )

    @rpc(_returns=DateTime(min_occurs=1, nillable=False), _throws=[EsbFault])
    def GetServerTime(ctx: Any) -> datetime:
        """The hub's clock (UTC), for clients to check theirs before signing."""
        return request_context(ctx).services.authenticator.server_time()

    @rpc(
        _in_header=(AuthHeader,),
        _returns=CallerInfo.customize(min_occurs=1, nillable=False),
        _throws=[EsbFault],
    )
    def WhoAmI(ctx: Any) -> CallerInfo:
        """Who the hub thinks is calling: an authenticated no-op (session key or WS-Security)."""
        caller = require_caller(ctx, SERVICE)
        return CallerInfo(
            agency=caller.agency_code,
            application=caller.application_name,
            accessKey=caller.access_key,
            certificateSha256=caller.certificate_sha256,
            sessionExpiresAt=caller.session_expires_at,
        )
