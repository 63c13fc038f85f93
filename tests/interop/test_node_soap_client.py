"""node-soap (``soap`` on npm, pinned in node/package.json) against the served ``/soap/Auth``
and ``/soap/DocumentExchange``.

``node/auth_client.js`` signs with node's crypto, calls GetServerTime, Authenticate, WhoAmI
with the ``AuthHeader`` SOAP header, then a replayed nonce and a bad signature; it prints one
JSON object, asserted here.  node-soap has no typed header from the WSDL: the header is added
with ``client.addSoapHeader(..., '', 'tns', namespace)`` and must come out as the element
``{urn:lgsp-esb:auth:1}AuthHeader`` (checked on the request it actually sent).

``node/exchange_client.js`` does a document exchange between two demo agencies (SendDocument,
GetPendingDocuments, GetDocument, SHA-256 with node's crypto, ConfirmReceived wrong then right,
GetTrace, and a RequestSendSpace whose repeated ``recipient`` is given as an array), with
``{urn:lgsp-esb:exchange:1}AuthHeader``.  node-soap leaves ``xs:base64Binary`` alone both ways:
the client encodes ``edxmlPackage`` itself (a Buffer would be sent as
``<edxmlPackage><0>60</0>...``, which the hub must refuse) and decodes the string it gets back.

node and node_modules come from ``scripts/ensure-interop-tools``; without them this test fails.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from esb.xml_processing.parsing import parse_untrusted

NODE_DIR = Path(__file__).resolve().parent / "node"
NAMESPACE = "urn:lgsp-esb:auth:1"
EXCHANGE_NAMESPACE = "urn:lgsp-esb:exchange:1"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
UNKNOWN_AGENCY = "000.00.99.Z99"  # well-formed, never registered


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: run scripts/ensure-interop-tools", pytrace=False)
    if not (NODE_DIR / "node_modules" / "soap" / "package.json").is_file():
        message = f"node-soap is not installed in {NODE_DIR}: run scripts/ensure-interop-tools"
        pytest.fail(message, pytrace=False)
    return node


def _run(script: str, *arguments: str) -> dict[str, Any]:
    completed = subprocess.run(
        [_node(), script, *arguments],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = f"{completed.stderr}\n{completed.stdout}"
    assert completed.returncode == 0, f"node {script} exited {completed.returncode}:\n{output}"
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


def _items(value: Any) -> list[Any]:
    """A repeated element as node-soap gave it: absent, one object, or a list."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def test_node_soap_authenticate_whoami_and_faults(sqlite_server: Any) -> None:
    credential = sqlite_server.credential("000.00.00.H30")
    result = _run("auth_client.js", sqlite_server.wsdl("Auth"), credential.accessKey, credential.secretKey)

    assert result["serverTime"]
    ticket = result["ticket"]
    assert (ticket["agency"], ticket["application"]) == (credential.agency, credential.application)
    assert ticket["tokenLength"] > 0

    whoami = result["whoami"]
    assert (whoami["agency"], whoami["application"]) == (credential.agency, credential.application)
    assert whoami["accessKey"] == credential.accessKey

    sent = parse_untrusted(result["whoamiRequest"].encode("utf-8"))
    headers = sent.findall(f"{{{SOAP_ENV}}}Header/*")
    assert [element.tag for element in headers] == [f"{{{NAMESPACE}}}AuthHeader"]
    assert [child.tag for child in headers[0]] == [f"{{{NAMESPACE}}}sessionToken"]

    replay = result["replay"]
    assert replay is not None, "the replayed Authenticate was accepted"
    assert replay["faultcode"].rpartition(":")[2] == "Client.ReplayDetected"
    assert replay["detail"]["EsbFault"]["code"] == "Client.ReplayDetected"
    assert replay["detail"]["EsbFault"]["reference"]

    refused = result["badSignature"]
    assert refused is not None, "a bad signature was accepted"
    assert refused["faultcode"].rpartition(":")[2] == "Client.AuthenticationFailed"
    assert refused["detail"]["EsbFault"]["code"] == "Client.AuthenticationFailed"


def test_node_soap_document_exchange(
    sqlite_server: Any, new_edoc: Callable[..., Any], tmp_path: Path
) -> None:
    sender = sqlite_server.credential("000.00.00.H30")
    recipient = sqlite_server.credential("000.00.01.H30")
    edoc = new_edoc(sender.agency, recipient.agency)
    received_file = tmp_path / "received.edxml"
    result = _run(
        "exchange_client.js",
        sqlite_server.wsdl("Auth"),
        sqlite_server.wsdl("DocumentExchange"),
        sender.accessKey,
        sender.secretKey,
        recipient.accessKey,
        recipient.secretKey,
        str(edoc.write(tmp_path)),
        str(received_file),
        UNKNOWN_AGENCY,
    )

    # A Buffer is not base64-encoded by node-soap: refused with a typed fault, nothing accepted.
    refused = result["bufferPackage"]
    assert refused is not None, (
        "the hub accepted node-soap's <edxmlPackage><0>60</0>... rendering of a Buffer"
    )
    assert refused["detail"]["EsbFault"]["code"] == "Client.XmlNotWellFormed"

    # Sent: the base64 text node encoded is exactly our package, and the hub stored those bytes.
    sent = parse_untrusted(result["sendRequest"].encode("utf-8"))
    headers = sent.findall(f"{{{SOAP_ENV}}}Header/*")
    assert [element.tag for element in headers] == [f"{{{EXCHANGE_NAMESPACE}}}AuthHeader"]
    body = sent.find(f"{{{SOAP_ENV}}}Body/{{{EXCHANGE_NAMESPACE}}}SendDocument")
    assert body is not None
    package_text = body.findtext(f"{{{EXCHANGE_NAMESPACE}}}edxmlPackage")
    assert package_text is not None
    assert base64.b64decode(package_text, validate=True) == edoc.data
    receipt = result["send"]
    hub_id = receipt["hubDocumentId"]
    assert receipt["documentId"] == edoc.document_id
    assert receipt["sha256"] == result["computedSha256"] == edoc.sha256
    assert receipt["size"] == len(edoc.data)
    assert receipt["duplicate"] is False
    states = [(status["organId"], status["state"]) for status in _items(receipt["recipient"])]
    assert states == [(recipient.agency, "pending")]

    # RequestSendSpace: the array became one <recipient> per item; the hub refused the second.
    space = result["space"]
    assert space is not None, f"the hub allocated a space for the unknown {UNKNOWN_AGENCY}"
    assert space["detail"]["EsbFault"]["code"] == "Client.UnknownRecipient"
    assert UNKNOWN_AGENCY in space["detail"]["EsbFault"]["message"]
    asked = parse_untrusted(result["spaceRequest"].encode("utf-8"))
    request = asked.find(f"{{{SOAP_ENV}}}Body/{{{EXCHANGE_NAMESPACE}}}RequestSendSpace")
    assert request is not None
    children = [child.tag.rpartition("}")[2] for child in request]
    assert children == ["recipient", "recipient", "subject", "priority", "dataType", "protocol"]
    sent_recipients = [child.text for child in request.findall(f"{{{EXCHANGE_NAMESPACE}}}recipient")]
    assert sent_recipients == [recipient.agency, UNKNOWN_AGENCY]

    pending = result["pending"]
    assert pending is not None, f"{hub_id} is not in {recipient.agency}'s mailbox"
    assert result["pendingIsArray"], "node-soap did not read PendingDocument (maxOccurs=unbounded) as a list"
    assert pending["documentId"] == edoc.document_id
    assert pending["from"] == sender.agency
    assert pending["messageType"] == "edoc"
    assert isinstance(pending["priority"], int)
    assert isinstance(pending["attempts"], int)

    # Received: a base64 string node decoded itself; the bytes are the delivered package.
    fetched = result["fetched"]
    assert fetched["packageType"] == "string"
    received = received_file.read_bytes()
    edoc.check_delivered(received)
    assert fetched["length"] == fetched["size"] == len(received)
    digest = fetched["computedSha256"]
    assert digest == fetched["sha256"] == pending["sha256"]
    assert fetched["downloadUrl"] is None

    mismatch = result["mismatch"]
    assert mismatch is not None, "a wrong digest was accepted"
    assert mismatch["faultcode"].rpartition(":")[2] == "Client.DigestMismatch"
    assert mismatch["detail"]["EsbFault"]["code"] == "Client.DigestMismatch"
    assert mismatch["detail"]["EsbFault"]["reference"]
    assert result["confirm"] == {"hubDocumentId": hub_id, "state": "done"}

    trace = result["trace"]
    assert trace["hubDocumentId"] == hub_id
    events = _items(trace["event"])
    kinds = [event["kind"] for event in events]
    assert kinds[0] == "accepted"
    assert "digest-mismatch" in kinds
    confirmed = [event for event in events if event["kind"] == "confirmed"]
    assert [(event["recipient"], event["sha256"]) for event in confirmed] == [(recipient.agency, digest)]
