"""suds-community against the served ``/soap/Auth`` and ``/soap/DocumentExchange`` WSDLs:
Authenticate, WhoAmI with the ``AuthHeader`` SOAP header, the typed ``EsbFault`` detail of a
refused request, and a document exchange between two demo agencies.

suds speaks SOAP 1.1 only, which is what we serve.  It reads the header element from the
WSDL (``client.factory.create('AuthHeader')``: each service's own, in its own namespace) and
sends it with ``set_options(soapheaders=...)``; a fault arrives as ``suds.WebFault`` with
``fault.faultcode`` (prefixed, e.g. ``soap11env:Client.ReplayDetected``) and
``fault.detail.EsbFault`` already unmarshalled.

suds does not encode or decode ``xs:base64Binary``: ``edxmlPackage`` goes out as the base64
text we make, and comes back as a base64 ``str``.  Given ``bytes``, suds sends their ``repr``
(``b'<?xml...'``), which the hub refuses.  RequestSendSpace's repeated ``recipient`` element is
given as a Python list (one element per item).  The element ``from`` of ``PendingDocument`` is a
Python keyword: read with ``getattr(item, "from")``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from suds import WebFault
from suds.client import Client

ALGORITHM = "HMAC-SHA256"
EXCHANGE_NAMESPACE = "urn:lgsp-esb:exchange:1"
UNKNOWN_AGENCY = "000.00.99.Z99"  # well-formed, never registered


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


def _fault_of(call: Any, **kwargs: Any) -> Any:
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


def _session(auth: Client, exchange: Client, credential: Any) -> Any:
    """The DocumentExchange ``AuthHeader`` with a fresh session key of ``credential``."""
    ticket = auth.service.Authenticate(**_signed(credential.accessKey, credential.secretKey))
    header = exchange.factory.create("AuthHeader")
    header.sessionToken = ticket.sessionToken
    return header


def test_suds_document_exchange(sqlite_server: Any, new_edoc: Callable[..., Any]) -> None:
    sender = sqlite_server.credential("000.00.00.H53")
    recipient = sqlite_server.credential("000.00.32.H53")
    auth = Client(sqlite_server.wsdl("Auth"), cache=None)
    exchange = Client(sqlite_server.wsdl("DocumentExchange"), cache=None)
    edoc = new_edoc(sender.agency, recipient.agency)

    # -- sender
    exchange.set_options(soapheaders=_session(auth, exchange, sender))
    as_bytes = _fault_of(exchange.service.SendDocument, edxmlPackage=edoc.data)
    assert as_bytes.detail.EsbFault.code == "Client.SchemaValidationError"

    receipt = exchange.service.SendDocument(edxmlPackage=base64.b64encode(edoc.data).decode("ascii"))
    envelope = exchange.last_sent().getChild("Envelope")
    assert envelope.getChild("Header").getChild("AuthHeader").namespace()[1] == EXCHANGE_NAMESPACE
    sent = envelope.getChild("Body").getChild("SendDocument").getChild("edxmlPackage")
    assert base64.b64decode(sent.getText(), validate=True) == edoc.data
    hub_id = receipt.hubDocumentId
    assert receipt.documentId == edoc.document_id
    assert receipt.sha256 == edoc.sha256  # the hub decoded exactly our bytes
    assert receipt.size == len(edoc.data)
    assert receipt.duplicate is False
    assert [(status.organId, status.state) for status in receipt.recipient] == [(recipient.agency, "pending")]

    # RequestSendSpace: one <recipient> per list item; the hub refuses the second, allocating nothing.
    unknown = _fault_of(
        exchange.service.RequestSendSpace,
        recipient=[recipient.agency, UNKNOWN_AGENCY],
        subject="interop",
        priority=2,
        dataType="edoc",
        protocol="edXML",
    )
    assert unknown.detail.EsbFault.code == "Client.UnknownRecipient"
    assert UNKNOWN_AGENCY in unknown.detail.EsbFault.message
    items = exchange.last_sent().getChild("Envelope").getChild("Body").getChild("RequestSendSpace")
    assert [child.getText() for child in items.getChildren("recipient")] == [recipient.agency, UNKNOWN_AGENCY]

    # -- recipient: the mailbox may hold other documents (the server is shared by the session)
    exchange.set_options(soapheaders=_session(auth, exchange, recipient))
    mailbox = exchange.service.GetPendingDocuments("edoc")
    mine = [item for item in getattr(mailbox, "PendingDocument", []) if item.hubDocumentId == hub_id]
    assert len(mine) == 1, f"{hub_id} is not in {recipient.agency}'s mailbox"
    pending = mine[0]
    assert pending.documentId == edoc.document_id
    assert getattr(pending, "from") == sender.agency
    assert pending.messageType == "edoc"
    assert isinstance(pending.priority, int)
    assert isinstance(pending.attempts, int)

    content = exchange.service.GetDocument(hub_id)
    assert isinstance(content.edxmlPackage, str)  # base64 text, as received
    received = base64.b64decode(content.edxmlPackage, validate=True)
    edoc.check_delivered(received)
    digest = hashlib.sha256(received).hexdigest()
    assert digest == content.sha256 == pending.sha256
    assert content.size == len(received)
    assert getattr(content, "downloadUrl", None) is None

    wrong = ("1" if digest[0] == "0" else "0") + digest[1:]
    mismatch = _fault_of(exchange.service.ConfirmReceived, hubDocumentId=hub_id, sha256=wrong, outcome="done")
    assert mismatch.faultcode.rpartition(":")[2] == "Client.DigestMismatch"
    assert mismatch.detail.EsbFault.code == "Client.DigestMismatch"
    assert mismatch.detail.EsbFault.reference

    confirmation = exchange.service.ConfirmReceived(hub_id, digest, "done")
    assert (confirmation.hubDocumentId, confirmation.state) == (hub_id, "done")

    # -- sender: the trace
    exchange.set_options(soapheaders=_session(auth, exchange, sender))
    trace = exchange.service.GetTrace(hubDocumentId=hub_id)
    assert trace.hubDocumentId == hub_id
    kinds = [entry.kind for entry in trace.event]
    assert kinds[0] == "accepted"
    assert "digest-mismatch" in kinds
    confirmed = [(entry.recipient, entry.sha256) for entry in trace.event if entry.kind == "confirmed"]
    assert confirmed == [(recipient.agency, digest)]
