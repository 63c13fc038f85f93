"""Java JAX-WS (Debian ``jaxws``: JAX-WS RI 2.3.0.2 on OpenJDK 17) against the served WSDL.

``wsimport`` reads ``/soap/Auth?wsdl`` over HTTP (``-XadditionalHeaders`` so that the
``AuthHeader`` SOAP header becomes a parameter of ``whoAmI``), ``javac`` compiles the generated
sources with ``java/AuthClient.java``, and ``java`` runs it: Authenticate, WhoAmI with the
header, then a replayed nonce and a bad signature, both of which must arrive as the TYPED
exception generated from the ``wsdl:fault`` (``EsbFault_Exception.getFaultInfo().getCode()``),
not as the generic ``SOAPFaultException``.  Everything is built under ``tmp_path``.

The tools come from ``scripts/ensure-interop-tools``; without them this test fails.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

CLIENT_SOURCE = Path(__file__).resolve().parent / "java" / "AuthClient.java"
JAVA_LIBS = Path("/usr/share/java")
TIMEOUT = 60

# JAX-WS and JAXB left the JDK in Java 11 (JEP 320): on 17 every javax.xml.ws / javax.xml.bind /
# javax.jws / javax.activation class comes from these Debian jars.  The set was found by trying
# (jars with their manifest Class-Path removed, one dropped at a time, compile + run this client):
# each one is needed; FastInfoset, mimepull, woodstox, xml-resolver, xsom, txw2, relaxngDatatype,
# glassfish-management-api and geronimo-annotation are not.
JAXWS_JARS = (
    "jaxws-api.jar",  # javax.xml.ws
    "jws-api.jar",  # javax.jws
    "jaxb-api.jar",  # javax.xml.bind
    "javax.xml.soap-api.jar",  # javax.xml.soap (SAAJ API)
    "javax.activation.jar",  # javax.activation, used by JAXB and SAAJ
    "jaxws-rt.jar",  # JAX-WS RI runtime (com.sun.xml.ws)
    "jaxb-impl.jar",  # JAXB RI runtime (-> jaxb-runtime.jar)
    "jaxb-core.jar",
    "saaj-impl.jar",  # SAAJ RI (SOAPFault parsing)
    "istack-commons-runtime.jar",
    "stax-ex.jar",
    "stax2-api.jar",
    "streambuffer.jar",
    "metro-policy.jar",  # WS-Policy, read while parsing the WSDL
    "gmbal.jar",  # monitoring hooks the runtime always loads
)

# SAAJ otherwise warns on every start that it found its factory through a deprecated property.
JAVA_OPTIONS = ("-Djavax.xml.soap.SAAJMetaFactory=com.sun.xml.messaging.saaj.soap.SAAJMetaFactoryImpl",)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not on PATH: run scripts/ensure-interop-tools", pytrace=False)
    return path


def jaxws_classpath() -> str:
    """The class path for compiling and running a wsimport client on Java 17 with Debian's jars."""
    jars = [JAVA_LIBS / name for name in JAXWS_JARS]
    missing = [str(jar) for jar in jars if not jar.is_file()]
    if missing:
        pytest.fail(
            f"JAX-WS jars missing: {', '.join(missing)}; run scripts/ensure-interop-tools (Debian jaxws)",
            pytrace=False,
        )
    return ":".join(str(jar) for jar in jars)


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT, check=False)


def _succeeded(completed: subprocess.CompletedProcess[str]) -> str:
    """stdout + stderr of a command that must have exited 0 (shown in full when it did not)."""
    output = completed.stdout + completed.stderr
    tool = Path(completed.args[0]).name
    assert completed.returncode == 0, f"{tool} exited {completed.returncode}:\n{output}"
    return output


def test_java_wsimport_typed_faults_and_header(sqlite_server: Any, tmp_path: Path) -> None:
    wsimport, javac, java = _tool("wsimport"), _tool("javac"), _tool("java")
    classpath = jaxws_classpath()
    generated, classes = tmp_path / "gen", tmp_path / "classes"
    generated.mkdir()
    classes.mkdir()

    options = ["-keep", "-XadditionalHeaders", "-Xnocompile", "-p", "lgsp.auth"]
    output_dirs = ["-d", str(generated), "-s", str(generated)]
    report = _succeeded(_run([wsimport, *options, *output_dirs, sqlite_server.wsdl("Auth")], tmp_path))
    # Our WSDL must import cleanly: no schema warnings (spyne's Mandatory types used to cause some).
    assert not re.search(r"\[(WARNING|ERROR)\]", report), report
    package = generated / "lgsp" / "auth"
    assert (package / "EsbFault_Exception.java").is_file(), sorted(p.name for p in package.iterdir())
    port = (package / "Auth.java").read_text()
    assert "throws EsbFault_Exception" in port
    header_parameter = r'@WebParam\(name = "AuthHeader", [^)]*header = true'
    assert re.search(header_parameter, port), "wsimport did not bind AuthHeader as a parameter of whoAmI"

    sources = sorted(str(path) for path in generated.rglob("*.java"))
    compile_options = ["-encoding", "UTF-8", "-d", str(classes), "-cp", classpath]
    _succeeded(_run([javac, *compile_options, *sources, str(CLIENT_SOURCE)], tmp_path))

    credential = sqlite_server.credential("000.00.00.G22")
    arguments = [sqlite_server.wsdl("Auth"), credential.accessKey, credential.secretKey]
    runtime_path = f"{classes}:{classpath}"
    completed = _run([java, *JAVA_OPTIONS, "-cp", runtime_path, "AuthClient", *arguments], tmp_path)
    assert "untypedFault=" not in completed.stdout, (
        "the fault reached Java as a generic SOAPFaultException, not the typed EsbFault_Exception:\n"
        + completed.stdout
    )
    _succeeded(completed)
    result = dict(line.split("=", 1) for line in completed.stdout.splitlines() if "=" in line)

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
