"""What the interoperability tests share: fresh edoc packages, and ONE Java build per session.

``java_build`` runs plain ``wsimport`` (no customization file) on both served WSDLs
(``/soap/Auth`` into package ``lgsp.auth``, ``/soap/DocumentExchange`` into ``lgsp.exchange``:
they declare classes of the same names, ``AuthHeader`` and ``EsbFault``), both at once, then a
single ``javac`` over the generated sources and the clients in ``java/`` (JVM start-ups are most
of the Java cost).  Each import's report is kept: test_java_wsimport_client.py fails on any
``[WARNING]`` or ``[ERROR]`` in it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from esb.pipeline.demo_packages import build_edoc, edoc_spec
from esb.xml_processing.edxml_reader import read_package

JAVA_DIR = Path(__file__).resolve().parent / "java"
JAVA_LIBS = Path("/usr/share/java")
TIMEOUT = 60

# JAX-WS and JAXB left the JDK in Java 11 (JEP 320): on 17 every javax.xml.ws / javax.xml.bind /
# javax.jws / javax.activation class comes from these Debian jars.  The set was found by trying
# (jars with their manifest Class-Path removed, one dropped at a time, compile + run the clients):
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
# Short-lived JVMs (wsimport, javac, the clients): the C1 compiler only and the serial collector
# start faster; together they halve the Java part of the suite.
FAST_JVM = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")

# (service, Java package) in the order they are imported.
JAVA_PACKAGES = (("Auth", "lgsp.auth"), ("DocumentExchange", "lgsp.exchange"))
WSIMPORT_OPTIONS = ("-keep", "-XadditionalHeaders", "-Xnocompile")
JAVA_CLIENTS = (JAVA_DIR / "AuthClient.java", JAVA_DIR / "ExchangeClient.java")


def tool(name: str) -> str:
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


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT, check=False)


@dataclass(frozen=True)
class Imported:
    """One service's wsimport, on the WSDL as served."""

    service: str
    package: str
    report: subprocess.CompletedProcess[str]  # exit status and everything wsimport printed
    root: Path  # the -d/-s folder

    @property
    def directory(self) -> Path:
        """The generated package's folder."""
        return self.root.joinpath(*self.package.split("."))


@dataclass(frozen=True)
class JavaBuild:
    """Both services imported and every client compiled; ``java(main, *args)`` runs one."""

    imports: dict[str, Imported]
    compiled: subprocess.CompletedProcess[str]
    classes: Path
    classpath: str
    java_path: str
    work: Path

    def java(self, main_class: str, *arguments: str) -> subprocess.CompletedProcess[str]:
        runtime_path = f"{self.classes}:{self.classpath}"
        command = [self.java_path, *FAST_JVM, *JAVA_OPTIONS, "-cp", runtime_path, main_class, *arguments]
        return run(command, self.work)


def _wsimport_all(wsimport: str, server: Any, work: Path) -> dict[str, Imported]:
    """Every wsimport at once (each one is mostly JVM start-up and an HTTP fetch)."""
    # WSIMPORT_OPTS: the JVM options Debian's wsimport script passes to java.
    jvm_options = " ".join([os.environ.get("WSIMPORT_OPTS", ""), *FAST_JVM]).strip()
    environment = {**os.environ, "WSIMPORT_OPTS": jvm_options}

    jobs: dict[str, tuple[str, Path, subprocess.Popen[str]]] = {}
    for service, package in JAVA_PACKAGES:
        root = work / f"gen-{package.rsplit('.', 1)[-1]}"
        root.mkdir()
        output = ["-p", package, "-d", str(root), "-s", str(root)]
        command = [wsimport, *WSIMPORT_OPTIONS, *output, server.wsdl(service)]
        process = subprocess.Popen(
            command, cwd=work, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        jobs[service] = (package, root, process)

    imports: dict[str, Imported] = {}
    for service, (package, root, process) in jobs.items():
        try:
            stdout, _ = process.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, _ = process.communicate()
        report = subprocess.CompletedProcess(process.args, process.returncode, stdout, "")
        imports[service] = Imported(service, package, report, root)
    return imports


@pytest.fixture(scope="session")
def java_build(sqlite_server: Any, tmp_path_factory: pytest.TempPathFactory) -> JavaBuild:
    wsimport, javac, java = tool("wsimport"), tool("javac"), tool("java")
    classpath = jaxws_classpath()
    work = tmp_path_factory.mktemp("java")
    classes = work / "classes"
    classes.mkdir()

    imports = _wsimport_all(wsimport, sqlite_server, work)
    sources = sorted(str(path) for imported in imports.values() for path in imported.root.rglob("*.java"))
    clients = [str(path) for path in JAVA_CLIENTS]
    compiler = [f"-J{option}" for option in FAST_JVM]
    compile_options = [*compiler, "-encoding", "UTF-8", "-d", str(classes), "-cp", classpath]
    compiled = run([javac, *compile_options, *sources, *clients], work)
    return JavaBuild(imports, compiled, classes, classpath, java, work)


# -- edoc packages ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutgoingEdoc:
    """A fresh edoc package from ``sender`` to ``recipient``, with a DocumentId unique to this run."""

    sender: str
    recipient: str
    document_id: str
    attachment: bytes
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def write(self, folder: Path) -> Path:
        path = folder / f"{uuid.uuid4().hex}.edxml"
        path.write_bytes(self.data)
        return path

    def check_delivered(self, delivered: bytes) -> None:
        """``delivered`` (what a client received, decoded by the client) is this package.

        The hub appends its own TraceHeader on delivery, so the bytes differ from those sent;
        what must survive are the DocumentId and the attachment's content.
        """
        package = read_package(delivered).package
        assert package.header.document_id == self.document_id
        assert [a.data.sha256 for a in package.attachments] == [hashlib.sha256(self.attachment).hexdigest()]
        assert len(package.trace_headers) >= 2, "the hub did not add its TraceHeader"


def _new_edoc(sender: str, recipient: str) -> OutgoingEdoc:
    now = datetime.now(UTC)
    number = uuid.uuid4().hex[:10]  # the DocumentId is OrganId,date,number/notation: unique per call
    attachment = f"Báo cáo {number}\n".encode()
    spec = edoc_spec(sender, [recipient], number=number, promulgated=now.date())
    data = build_edoc(spec, attachment, now=now)
    document_id = read_package(data).package.header.document_id
    assert number in document_id
    return OutgoingEdoc(sender, recipient, document_id, attachment, data)


@pytest.fixture(scope="session")
def new_edoc() -> Callable[[str, str], OutgoingEdoc]:
    """``new_edoc(sender, recipient)``: a strict edoc package no one has sent yet."""
    return _new_edoc
