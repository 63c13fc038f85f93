"""node-soap (``soap`` on npm, pinned in node/package.json) against the served ``/soap/Auth``.

``node/auth_client.js`` signs with node's crypto, calls GetServerTime, Authenticate, WhoAmI
with the ``AuthHeader`` SOAP header, then a replayed nonce and a bad signature; it prints one
JSON object, asserted here.  node-soap has no typed header from the WSDL: the header is added
with ``client.addSoapHeader(..., '', 'tns', namespace)`` and must come out as the element
``{urn:lgsp-esb:auth:1}AuthHeader`` (checked on the request it actually sent).

node and node_modules come from ``scripts/ensure-interop-tools``; without them this test fails.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from esb.xml_processing.parsing import parse_untrusted

NODE_DIR = Path(__file__).resolve().parent / "node"
NAMESPACE = "urn:lgsp-esb:auth:1"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: run scripts/ensure-interop-tools", pytrace=False)
    if not (NODE_DIR / "node_modules" / "soap" / "package.json").is_file():
        message = f"node-soap is not installed in {NODE_DIR}: run scripts/ensure-interop-tools"
        pytest.fail(message, pytrace=False)
    return node


def test_node_soap_authenticate_whoami_and_faults(sqlite_server: Any) -> None:
    credential = sqlite_server.credential("000.00.00.H30")
    completed = subprocess.run(
        [_node(), "auth_client.js", sqlite_server.wsdl("Auth"), credential.accessKey, credential.secretKey],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = f"{completed.stderr}\n{completed.stdout}"
    assert completed.returncode == 0, f"node exited {completed.returncode}:\n{output}"
    result = json.loads(completed.stdout)

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
