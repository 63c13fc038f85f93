"""Java JAX-WS (Debian ``jaxws``: JAX-WS RI 2.3.0.2 on OpenJDK 17) against the served WSDLs.

``wsimport`` reads ``/soap/Auth?wsdl`` and ``/soap/DocumentExchange?wsdl`` over HTTP
(``-XadditionalHeaders`` so that the ``AuthHeader`` SOAP header becomes a parameter of each
operation), into two packages (``lgsp.auth``, ``lgsp.exchange``: both declare ``AuthHeader``
and ``EsbFault``); ONE ``javac`` compiles the generated sources with ``java/*.java`` (the
``java_build`` fixture of conftest.py, once per session), and ``java`` runs the clients:

- ``AuthClient``: Authenticate, WhoAmI with the header, then a replayed nonce and a bad
  signature, both of which must arrive as the TYPED exception generated from the
  ``wsdl:fault`` (``EsbFault_Exception.getFaultInfo().getCode()``), not as the generic
  ``SOAPFaultException``;
- ``ExchangeClient``: a real exchange between two demo agencies (SendDocument, GetPendingDocuments,
  GetDocument, SHA-256 by ``MessageDigest``, ConfirmReceived with a wrong digest → typed
  ``Client.DigestMismatch``, then with the right one, GetTrace), plus a RequestSendSpace whose
  repeated ``recipient`` (a ``List<String>`` parameter) names an unknown agency second.

wsimport must report no ``[WARNING]`` or ``[ERROR]`` for either WSDL as served: both are
imported by plain ``wsimport``, without any customization file, as an integrator would.

The tools come from ``scripts/ensure-interop-tools``; without them these tests fail.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from esb.security.hub_receipts import verify_receipt
from esb.security.pki import load_certificates
from esb.security.trust_store import TrustStore

HEADER_PARAMETER = r'@WebParam\(name = "AuthHeader", [^)]*header = true'
UNKNOWN_AGENCY = "000.00.99.Z99"  # well-formed, never registered
# The generated wrapper-style signatures the client relies on (parameter type, then name).
EXCHANGE_PARAMETERS = {
    "sendDocument": "byte[] edxmlPackage, String spaceId, SendPolicy policy, AuthHeader authHeader",
    "sendStatus": "byte[] edxmlPackage, String spaceId, AuthHeader authHeader",
    "requestSendSpace": (
        "List<String> recipient, String subject, int priority, String dataType, String protocol, "
        "AuthHeader authHeader"
    ),
}


def _result(stdout: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in stdout.splitlines() if "=" in line)


def _parameters(port: str, operation: str) -> str:
    """The Java parameters of ``operation`` in the generated port interface, annotations dropped."""
    match = re.search(rf"public \S+ {operation}\((.*?)\)\s*throws", port, re.DOTALL)
    assert match, f"no {operation} in the generated port"
    declaration = re.sub(r"@\w+\([^)]*\)", "", match.group(1))
    return ", ".join(" ".join(part.split()) for part in declaration.split(","))


def _compiled(java_build: Any) -> None:
    compiled = java_build.compiled
    output = compiled.stdout + compiled.stderr
    assert compiled.returncode == 0, f"javac exited {compiled.returncode}:\n{output}"


def _run_client(java_build: Any, main_class: str, *arguments: str) -> dict[str, str]:
    _compiled(java_build)
    completed = java_build.java(main_class, *arguments)
    assert "untypedFault=" not in completed.stdout, (
        "the fault reached Java as a generic SOAPFaultException, not the typed EsbFault_Exception:\n"
        + completed.stdout
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, f"java {main_class} exited {completed.returncode}:\n{output}"
    return _result(completed.stdout)


def _clean_report(completed: Any) -> None:
    report = completed.stdout + completed.stderr
    assert completed.returncode == 0, f"wsimport exited {completed.returncode}:\n{report}"
    # Our WSDLs must import cleanly: no schema warnings (spyne's Mandatory types used to cause some).
    assert not re.search(r"\[(WARNING|ERROR)\]", report), report


def test_java_wsimport_typed_faults_and_header(sqlite_server: Any, java_build: Any) -> None:
    imported = java_build.imports["Auth"]
    _clean_report(imported.report)
    package = imported.directory
    assert (package / "EsbFault_Exception.java").is_file(), sorted(p.name for p in package.iterdir())
    port = (package / "Auth.java").read_text()
    assert "throws EsbFault_Exception" in port
    assert re.search(HEADER_PARAMETER, port), "wsimport did not bind AuthHeader as a parameter of whoAmI"

    credential = sqlite_server.credential("000.00.00.G22")
    arguments = [sqlite_server.wsdl("Auth"), credential.accessKey, credential.secretKey]
    result = _run_client(java_build, "AuthClient", *arguments)

    expected = (credential.agency, credential.application)
    assert result["serverTime"]
    assert (result["ticket.agency"], result["ticket.application"]) == expected
    assert int(result["ticket.tokenLength"]) > 0
    assert (result["whoami.agency"], result["whoami.application"]) == expected
    assert result["whoami.accessKey"] == credential.accessKey

    assert result["replay.exception"] == "lgsp.auth.EsbFault_Exception"
    assert result["replay.code"] == "Client.ReplayDetected"
    assert result["replay.reference"]
    assert result["badSignature.exception"] == "lgsp.auth.EsbFault_Exception"
    assert result["badSignature.code"] == "Client.AuthenticationFailed"


def test_java_wsimport_document_exchange(
    sqlite_server: Any, java_build: Any, new_edoc: Callable[..., Any], tmp_path: Path
) -> None:
    imported = java_build.imports["DocumentExchange"]
    _clean_report(imported.report)
    package = imported.directory
    port = (package / "DocumentExchange.java").read_text()
    assert "throws EsbFault_Exception" in port
    operations = re.findall(r"public \S+ (\w+)\(", port)
    expected_operations = [
        "sendDocument",
        "sendStatus",
        "requestSendSpace",
        "getPendingDocuments",
        "getDocument",
        "confirmReceived",
        "getTrace",
        "getReceipt",
    ]
    assert sorted(operations) == sorted(expected_operations)
    assert len(re.findall(HEADER_PARAMETER, port)) == len(expected_operations)
    for operation, parameters in EXCHANGE_PARAMETERS.items():
        assert _parameters(port, operation) == parameters, operation
    # xs:int, not xs:integer: Java int (Integer when optional), no BigInteger anywhere.
    pending = (package / "PendingDocument.java").read_text()
    assert "public int getPriority()" in pending
    assert "public Integer getBusinessDocType()" in pending
    assert "public int getAttempts()" in pending
    assert "public Integer getRetentionDays()" in (package / "SendPolicy.java").read_text()
    assert not [path.name for path in package.glob("*.java") if "BigInteger" in path.read_text()]
    # The two AuthHeader/EsbFault classes coexist, one per service namespace.
    assert (java_build.imports["Auth"].directory / "AuthHeader.java").is_file()
    assert (package / "AuthHeader.java").is_file()

    sender = sqlite_server.credential("000.00.00.G22")
    recipient = sqlite_server.credential("000.00.01.H53")
    edoc = new_edoc(sender.agency, recipient.agency)
    received_file = tmp_path / "received.edxml"
    arguments = [
        sqlite_server.wsdl("Auth"),
        sqlite_server.wsdl("DocumentExchange"),
        sender.accessKey,
        sender.secretKey,
        recipient.accessKey,
        recipient.secretKey,
        str(edoc.write(tmp_path)),
        str(received_file),
        UNKNOWN_AGENCY,
    ]
    result = _run_client(java_build, "ExchangeClient", *arguments)

    # byte[] -> base64Binary: the hub stored exactly the bytes we gave Java.
    hub_id = result["send.hubDocumentId"]
    assert hub_id
    assert result["send.documentId"] == edoc.document_id
    assert result["send.sha256"] == result["send.computedSha256"] == edoc.sha256
    assert int(result["send.size"]) == len(edoc.data)
    assert result["send.duplicate"] == "false"
    assert result["send.recipients"] == f"{recipient.agency}:pending"

    assert result["pending.found"] == "true"
    assert result["pending.documentId"] == edoc.document_id
    assert result["pending.messageType"] == "edoc"
    assert result["pending.from"] == sender.agency
    assert 0 <= int(result["pending.priority"]) <= 4
    assert int(result["pending.attempts"]) >= 0

    # base64Binary -> byte[]: what Java decoded and hashed is the delivered package, verbatim.
    received = received_file.read_bytes()
    edoc.check_delivered(received)
    assert int(result["fetched.length"]) == int(result["fetched.size"]) == len(received)
    digest = result["fetched.computedSha256"]
    assert digest == result["fetched.sha256"] == result["pending.sha256"]
    assert result["fetched.downloadUrl"] == "null"

    assert result["mismatch.exception"] == "lgsp.exchange.EsbFault_Exception"
    assert result["mismatch.code"] == "Client.DigestMismatch"
    assert result["mismatch.reference"]
    assert result["confirm.state"] == "done"

    # RequestSendSpace: each List<String> item is one <recipient>; the hub read both (the second is
    # the one it refused), and the typed fault is raised before any space is allocated.
    assert result["space.exception"] == "lgsp.exchange.EsbFault_Exception"
    assert result["space.code"] == "Client.UnknownRecipient"
    assert UNKNOWN_AGENCY in result["space.message"]

    assert result["trace.hubDocumentId"] == hub_id
    events = result["trace.events"].split(",")
    assert events[0] == "accepted"
    assert "digest-mismatch" in events
    assert events[-1] in ("confirmed", "purged")
    assert "confirmed" in events
    assert result["trace.confirmed.recipient"] == recipient.agency
    assert result["trace.confirmed.sha256"] == digest

    # Signatures and evidence: the verdict (this package is unsigned), the chain fields, and the
    # hub's receipts as Java sees them: base64Binary -> byte[] of a receipt that verifies offline.
    assert result["send.signatureVerdict"] == result["pending.signatureVerdict"] == "unsigned"
    assert int(result["trace.firstSeq"]) >= 1
    assert len(result["trace.firstHash"]) == 64
    kinds = result["receipt.kinds"].split(",")
    assert [kind.split(":")[0] for kind in kinds] == ["accepted", "delivered"]
    assert kinds[0] == f"accepted:{result['trace.firstSeq']}"
    hub = load_certificates(sqlite_server.settings.hub_cert_file.read_bytes())[:1]
    check = verify_receipt(base64.b64decode(result["receipt.accepted.xml"]), trust=TrustStore.of(hub))
    assert (check.report.verdict.value, check.report.reason) == ("valid", "ok")
    assert check.receipt is not None
    assert (check.receipt.hub_document_id, check.receipt.trace_seq) == (hub_id, int(result["trace.firstSeq"]))
