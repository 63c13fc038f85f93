"""suds-community against the served ``/soap/Auth`` WSDL: Authenticate, WhoAmI with the
``AuthHeader`` SOAP header, and the typed ``EsbFault`` detail of a refused request.

suds speaks SOAP 1.1 only, which is what we serve.  It reads the header element from the
WSDL (``client.factory.create('AuthHeader')``) and sends it with ``set_options(soapheaders=...)``;
a fault arrives as ``suds.WebFault`` with ``fault.faultcode`` (prefixed, e.g.
``soap11env:Client.ReplayDetected``) and ``fault.detail.EsbFault`` already unmarshalled.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import UTC, datetime
from typing import Any

import pytest
from suds import WebFault
from suds.client import Client

ALGORITHM = "HMAC-SHA256"


def _signed(access_key: str, secret_key: str, *, target: str = "") -> dict[str, str]:
    timestamp = datetime.now(UTC).isoformat(timespec="seconds")
    nonce = secrets.token_hex(8)
    message = "\n".join([access_key, timestamp, nonce, ALGORITHM, target]).encode("utf-8")
    signature = base64.b64encode(hmac.new(secret_key.encode("utf-8"), message, hashlib.sha256).digest())
    return {
        "accessKey": access_key,
        "timestamp": timestamp,
        "nonce": nonce,
        "algorithm": ALGORITHM,
        "signature": signature.decode("ascii"),
    }


def _fault_of(call: Any, **kwargs: str) -> Any:
    with pytest.raises(WebFault) as raised:
        call(**kwargs)
    return raised.value.fault


def test_suds_authenticate_whoami_and_typed_faults(sqlite_server: Any) -> None:
    credential = sqlite_server.credential("000.00.00.H53")
    # cache=None: parse the WSDL exactly as served now, not a copy from an earlier run.
    client = Client(sqlite_server.wsdl("Auth"), cache=None)

    server_time = client.service.GetServerTime()
    assert abs((server_time - datetime.now(UTC)).total_seconds()) < 60

    request = _signed(credential.accessKey, credential.secretKey)
    ticket = client.service.Authenticate(**request)
    assert ticket.agency == credential.agency
    assert ticket.application == credential.application
    assert ticket.expiresAt > datetime.now(UTC)
    assert ticket.sessionToken

    header = client.factory.create("AuthHeader")
    header.sessionToken = ticket.sessionToken
    client.set_options(soapheaders=header)
    caller = client.service.WhoAmI()
    assert (caller.agency, caller.application) == (credential.agency, credential.application)
    assert caller.accessKey == credential.accessKey
    sent = client.last_sent()
    assert sent.getChild("Envelope").getChild("Header").getChild("AuthHeader").namespace()[1] == (
        "urn:lgsp-esb:auth:1"
    )
    client.set_options(soapheaders=())

    replayed = _fault_of(client.service.Authenticate, **request)
    assert replayed.faultcode.rpartition(":")[2] == "Client.ReplayDetected"
    assert replayed.detail.EsbFault.code == "Client.ReplayDetected"
    assert replayed.detail.EsbFault.reference

    forged = _signed(credential.accessKey, credential.secretKey + "x")
    refused = _fault_of(client.service.Authenticate, **forged)
    assert refused.faultcode.rpartition(":")[2] == "Client.AuthenticationFailed"
    assert refused.detail.EsbFault.code == "Client.AuthenticationFailed"
