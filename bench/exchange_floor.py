"""The floor for ``bench/exchange.py``: a bare WSGI app that does a SendDocument's essential work.

It is served by gunicorn with the settings ``esb serve`` uses (sync workers), and receives the
very SOAP requests the clients post to the bus.  For each request it:

1. reads the body and parses the SOAP envelope with lxml (no entities, no network);
2. takes the text of the first child of ``Body/SendDocument`` (the package parameter, whatever
   the bus names it), base64-decodes it and computes the
   package's SHA-256;
3. parses the package with lxml and validates it against the project's strict edXML schema
   (``SchemaRegistry.default().validate(SchemaName.EDXML_STRICT, …)``);
4. inserts one row (hub id, DocumentId, SHA-256, size, *the package bytes*, time) into a table
   of the same database engine as the bus, with the driver alone (``sqlite3`` or ``psycopg``,
   no ORM), and commits;
5. answers with a small SOAP envelope (hub id, SHA-256, size).

It does **not** authenticate the caller (the ``AuthHeader`` is ignored), does not check the
sender or the recipients against a registry, keeps no trace, routes nothing and keeps one copy
of the bytes, in the database.  It is a floor: nothing that accepts these packages can do less.

Configuration (environment, read when the worker loads the module):

* ``FLOOR_DATABASE_URL``: ``sqlite:///<path>`` or ``postgresql[+psycopg]://…`` (SQLAlchemy
  spelling, as the bus takes it).  The table is created by :func:`create_table`.

Serve it with ``gunicorn --pythonpath bench exchange_floor:app``.  The step functions are
module-level so that ``bench/exchange.py --profile`` can time each one in-process.
"""

from __future__ import annotations

import base64
import hashlib
import os
import sqlite3
import sys
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lxml import etree

_REPO = Path(__file__).resolve().parent.parent
if str(_REPO) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(_REPO))

from esb.xml_processing.schemas import SchemaName, SchemaRegistry  # noqa: E402

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
NS = "urn:lgsp-esb:exchange:1"
EDXML = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
TABLE = "bench_floor_package"
MAX_BODY = 10 * 1024 * 1024  # the bus's default ESB_MAX_REQUEST_BYTES

_OPERATION_PATH = f"{{{SOAP}}}Body/{{{NS}}}SendDocument"
_DOCUMENT_ID_PATH = f".//{{{EDXML}}}MessageHeader/{{{EDXML}}}DocumentId"
_SCHEMAS = SchemaRegistry.default()
_INSERT = "INSERT INTO bench_floor_package (hub_id, document_id, sha256, size, package, received_at) VALUES "


class Refused(Exception):
    """The request is not one the floor accepts: answered with a SOAP fault."""


def parser() -> etree.XMLParser:
    """Bare lxml, safe defaults only: no entity expansion, no network, no DTD, no huge text nodes."""
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


_PARSER = parser()


# the steps ----------------------------------------------------------------------------------------


def read_body(environ: dict[str, Any]) -> bytes:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length <= 0 or length > MAX_BODY:
        raise Refused("a SendDocument request of at most 10 MiB with a Content-Length is expected")
    return bytes(environ["wsgi.input"].read(length))


def parse_envelope(body: bytes) -> etree._Element:
    return etree.fromstring(body, _PARSER)


def decode_package(envelope: etree._Element) -> tuple[bytes, str]:
    """The package bytes and their SHA-256 (hex)."""
    operation = envelope.find(_OPERATION_PATH)
    element = operation[0] if operation is not None and len(operation) else None  # the package parameter
    if element is None or not element.text:
        raise Refused("no Body/SendDocument with the package as its first child")
    package = base64.b64decode(element.text)
    return package, hashlib.sha256(package).hexdigest()


def parse_package(package: bytes) -> etree._Element:
    return etree.fromstring(package, _PARSER)


def validate_package(tree: etree._Element) -> str:
    """Validate against the strict edXML schema; the package's DocumentId."""
    violations = _SCHEMAS.validate(SchemaName.EDXML_STRICT, tree)
    if violations:
        raise Refused(f"not strict edXML: {violations[0].path}: {violations[0].message}")
    document_id = tree.findtext(_DOCUMENT_ID_PATH)
    if not document_id:
        raise Refused("no DocumentId")
    return document_id


def store(hub_id: str, document_id: str, sha256: str, package: bytes) -> None:
    """One row, one transaction, committed."""
    _database().insert(hub_id, document_id, sha256, package)


def respond(hub_id: str, sha256: str, size: int) -> bytes:
    return (
        f'<soap:Envelope xmlns:soap="{SOAP}" xmlns:tns="{NS}"><soap:Body><tns:SendDocumentResponse>'
        f"<tns:SendDocumentResult><tns:hubDocumentId>{hub_id}</tns:hubDocumentId>"
        f"<tns:sha256>{sha256}</tns:sha256><tns:size>{size}</tns:size>"
        "</tns:SendDocumentResult></tns:SendDocumentResponse></soap:Body></soap:Envelope>"
    ).encode()


def handle(environ: dict[str, Any]) -> bytes:
    body = read_body(environ)
    envelope = parse_envelope(body)
    package, sha256 = decode_package(envelope)
    document_id = validate_package(parse_package(package))
    hub_id = str(uuid.uuid4())
    store(hub_id, document_id, sha256, package)
    return respond(hub_id, sha256, len(package))


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = str(environ.get("PATH_INFO", "/"))
    if path == "/healthz":
        return _reply(start_response, "200 OK", b'{"status": "ok"}', "application/json")
    if str(environ.get("REQUEST_METHOD")) != "POST":
        return _reply(start_response, "404 Not Found", b"{}", "application/json")
    try:
        payload = handle(environ)
    except (Refused, etree.XMLSyntaxError, ValueError) as exc:
        return _reply(
            start_response, "500 Internal Server Error", _fault(str(exc)), "text/xml; charset=utf-8"
        )
    return _reply(start_response, "200 OK", payload, "text/xml; charset=utf-8")


def _reply(start_response: Callable[..., Any], status: str, payload: bytes, kind: str) -> list[bytes]:
    start_response(status, [("Content-Type", kind), ("Content-Length", str(len(payload)))])
    return [payload]


def _fault(message: str) -> bytes:
    text = message.replace("&", "&amp;").replace("<", "&lt;")[:400]
    return (
        f'<soap:Envelope xmlns:soap="{SOAP}"><soap:Body><soap:Fault><faultcode>soap:Client</faultcode>'
        f"<faultstring>{text}</faultstring></soap:Fault></soap:Body></soap:Envelope>"
    ).encode()


# the database -------------------------------------------------------------------------------------


class _Sqlite:
    """The bus's SQLite settings: WAL, synchronous=NORMAL, busy timeout, ``BEGIN IMMEDIATE``."""

    def __init__(self, path: str) -> None:
        self.connection = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        for pragma in ("journal_mode=WAL", "foreign_keys=ON", "busy_timeout=30000", "synchronous=NORMAL"):
            self.connection.execute(f"PRAGMA {pragma}")

    def insert(self, hub_id: str, document_id: str, sha256: str, package: bytes) -> None:
        connection = self.connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.execute(
                _INSERT + "(?, ?, ?, ?, ?, ?)",
                (hub_id, document_id, sha256, len(package), package, datetime.now(UTC).isoformat()),
            )
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def execute(self, sql: str) -> None:
        self.connection.execute(sql)


class _Postgres:
    def __init__(self, conninfo: str) -> None:
        import psycopg

        self.connection = psycopg.connect(conninfo)

    def insert(self, hub_id: str, document_id: str, sha256: str, package: bytes) -> None:
        with self.connection.transaction():
            self.connection.execute(
                _INSERT + "(%s, %s, %s, %s, %s, %s)",
                (hub_id, document_id, sha256, len(package), package, datetime.now(UTC)),
            )

    def execute(self, sql: str) -> None:
        with self.connection.transaction():
            self.connection.execute(sql)


_connection: _Sqlite | _Postgres | None = None
_connection_pid = 0


def connect(url: str) -> _Sqlite | _Postgres:
    """A connection for a SQLAlchemy-style URL (``sqlite:///path`` or ``postgresql+psycopg://…``)."""
    if url.startswith("sqlite:///"):
        return _Sqlite(url.removeprefix("sqlite:///"))
    if url.startswith(("postgresql://", "postgresql+psycopg://")):
        return _Postgres("postgresql://" + url.split("://", 1)[1])
    raise ValueError(f"FLOOR_DATABASE_URL: sqlite:/// or postgresql:// expected, not {url[:40]!r}")


def _database() -> _Sqlite | _Postgres:
    """One connection per process, opened after gunicorn's fork."""
    global _connection, _connection_pid  # one connection per worker process
    if _connection is None or _connection_pid != os.getpid():
        _connection = connect(os.environ["FLOOR_DATABASE_URL"])
        _connection_pid = os.getpid()
    return _connection


def create_table(url: str) -> None:
    """The floor's table (run once, before the server starts)."""
    blob, stamp, key = (
        ("BLOB", "TEXT", "INTEGER PRIMARY KEY")
        if url.startswith("sqlite")
        else ("BYTEA", "TIMESTAMPTZ", "BIGSERIAL PRIMARY KEY")
    )
    database = connect(url)
    database.execute(
        f"CREATE TABLE IF NOT EXISTS {TABLE} (id {key}, hub_id TEXT NOT NULL UNIQUE, "
        f"document_id TEXT NOT NULL UNIQUE, sha256 TEXT NOT NULL, size INTEGER NOT NULL, "
        f"package {blob} NOT NULL, received_at {stamp} NOT NULL)"
    )
    database.connection.close()
