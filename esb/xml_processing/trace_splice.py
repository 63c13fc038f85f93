"""Append the hub's ``TraceHeader`` to an edXML package by splicing bytes, never by re-serialising.

Why bytes and not a tree
    A package is kept exactly as the sender sent it: the hub stores the digest of the accepted
    bytes, and a receiver (or an auditor) must be able to see that what was delivered is the same
    document plus one hop record.  Re-serialising with an XML library would rewrite prefixes,
    attribute quoting, whitespace, line endings and character references all over the file, and
    would have to hold the tree (hundreds of MB of base64 in ``/edXML/AttachmentEncoded``) in
    memory.  Here the file is read in chunks; only the header region before ``edXMLBody`` is
    scanned, with a small tag scanner that skips comments, CDATA sections and processing
    instructions; the bytes are then copied through, with one element inserted, hashing as they go.

The signature is broken, knowingly
    The sender's enveloped XML-DSig signature covers the whole ``edXML`` document minus the
    ``Signature`` element, so it covers ``TraceHeaderList``: *any* hop that appends its trace
    invalidates it (QCVN 102 accepts this: the trace list is a hop log).  The caller therefore
    records the SHA-256 of both the accepted and the delivered bytes, and the hub verifies the
    sender's signature on the accepted bytes, before splicing.

Where the element goes
    * after the last ``TraceHeader`` of the first ``TraceHeaderList`` of ``edXMLHeader``;
    * in a list without one, right after the list's start tag (a self-closing list is opened and
      closed around it);
    * without a list, a new ``TraceHeaderList`` becomes the child of ``edXMLHeader`` before its
      ``Signature``, or after its last child element when there is no signature.

    Elements are matched by local name in the edXML namespace (or in no namespace, as the reader
    accepts), never by prefix.  The inserted elements reuse the prefix of the element they go into
    (``TraceHeaderList``, or ``edXMLHeader`` for a new list), so they are in the same namespace by
    construction.  The whitespace that precedes the sibling they follow (or precede) is repeated
    in front of (or after) them, so the sender's indentation and line endings (CRLF) carry over.

When nothing is appended
    Status packages (no trace list in that schema), UTF-16/UTF-32 or other non-ASCII-compatible
    encodings, a DOCTYPE, anything the scanner cannot read with certainty, or a header larger than
    :data:`MAX_HEADER_BYTES`: the bytes are copied unchanged and :attr:`SpliceResult.appended` is
    False with a :attr:`SpliceResult.reason`.  Delivery never fails because of the splicer.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum, StrEnum
from functools import lru_cache
from pathlib import Path
from typing import IO

from esb.domain.edxml_dates import format_datetime
from esb.xml_processing import namespaces as ns

log = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024
MAX_HEADER_BYTES = 16 * 1024 * 1024  # the header region we are willing to scan

_MAX_DEPTH = 256
_MAX_INDENT = 256  # longer whitespace runs are not repeated
_XML_NS = "http://www.w3.org/XML/1998/namespace"
_ACCEPTED_NS = (ns.EDXML, None)  # as the reader: the edXML namespace, or (with a warning) none

_NAME = rb"[^\s/>=<\"'!?]+"
_START_TAG = re.compile(rb"<(" + _NAME + rb")((?:\s+[^\s/>=<\"']+\s*=\s*(?:\"[^\"<]*\"|'[^'<]*'))*)\s*(/?)>")
_END_TAG = re.compile(rb"</(" + _NAME + rb")\s*>")
_ATTRIBUTE = re.compile(rb"([^\s=]+)\s*=\s*(?:\"([^\"]*)\"|'([^']*)')")
_ENCODING = re.compile(rb"\sencoding\s*=\s*([\"'])([A-Za-z][A-Za-z0-9._-]*)\1")
_REFERENCE = re.compile(r"&(#x[0-9A-Fa-f]+|#[0-9]+|lt|gt|amp|quot|apos);")
_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"', "apos": "'"}
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_WHITESPACE = b" \t\r\n"
_UTF16_32_HEADS = (
    b"\x00\x00\xfe\xff",
    b"\xff\xfe\x00\x00",
    b"\x00\x00\x00<",
    b"<\x00\x00\x00",
    b"\x00<\x00?",
    b"<\x00?\x00",
)


@dataclass(frozen=True)
class SpliceResult:
    """What was written to ``out``."""

    sha256: str  # hex SHA-256 of the bytes written
    size: int  # number of bytes written
    appended: bool  # True: our TraceHeader was inserted; False: the bytes were copied unchanged
    reason: str | None = None  # why nothing was appended (None when appended)


class Placement(StrEnum):
    """Where the inserted bytes went."""

    AFTER_LAST_TRACE_HEADER = "after the last TraceHeader"
    START_OF_LIST = "right after the TraceHeaderList start tag"
    EXPANDED_EMPTY_LIST = "inside the self-closing TraceHeaderList, now opened and closed"
    NEW_LIST_BEFORE_SIGNATURE = "a new TraceHeaderList before Signature"
    NEW_LIST_AFTER_LAST_CHILD = "a new TraceHeaderList as the last child of edXMLHeader"


@dataclass(frozen=True)
class TraceSplice:
    """The edit: ``output = input[:offset] + insert + input[offset + delete:]``.

    ``delete`` is 0 except for a self-closing list, where the ``/`` of ``/>`` is replaced.
    """

    offset: int
    delete: int
    insert: bytes
    placement: Placement


def append_trace_header(
    source: Path,
    out: IO[bytes],
    organ_id: str,
    timestamp: datetime,
    *,
    _chunk_size: int = CHUNK_SIZE,
    _max_header_bytes: int = MAX_HEADER_BYTES,
) -> SpliceResult:
    """Copy ``source`` to ``out`` with ``TraceHeader{organ_id, timestamp}`` appended to its trace list.

    Memory stays flat (a chunk or two); the output is not re-read.  Raises :class:`ValueError`
    only when ``organ_id`` holds characters XML cannot carry, before anything is written.
    """
    values = _trace_values(organ_id, timestamp)
    with Path(source).open("rb") as src:
        return _splice(src, out, values, _chunk_size, _max_header_bytes)


def append_trace_header_bytes(
    data: bytes,
    organ_id: str,
    timestamp: datetime,
    *,
    _chunk_size: int = CHUNK_SIZE,
    _max_header_bytes: int = MAX_HEADER_BYTES,
) -> tuple[bytes, SpliceResult]:
    """:func:`append_trace_header` for a package already in memory (small packages)."""
    values = _trace_values(organ_id, timestamp)
    out = io.BytesIO()
    result = _splice(io.BytesIO(data), out, values, _chunk_size, _max_header_bytes)
    return out.getvalue(), result


def plan_trace_splice(
    source: Path | bytes,
    organ_id: str,
    timestamp: datetime,
    *,
    _chunk_size: int = CHUNK_SIZE,
    _max_header_bytes: int = MAX_HEADER_BYTES,
) -> TraceSplice | None:
    """The edit :func:`append_trace_header` would make, or None when it would copy unchanged."""
    values = _trace_values(organ_id, timestamp)
    if isinstance(source, bytes):
        plan = _plan(io.BytesIO(source), values, _chunk_size, _max_header_bytes)
    else:
        with Path(source).open("rb") as src:
            plan = _plan(src, values, _chunk_size, _max_header_bytes)
    return plan if isinstance(plan, TraceSplice) else None


# -- the edit ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _TraceValues:
    organ_id: bytes  # escaped, ASCII
    timestamp: bytes


def _trace_values(organ_id: str, timestamp: datetime) -> _TraceValues:
    if _NOT_XML_CHAR.search(organ_id):
        raise ValueError(f"organ id {organ_id!r} holds characters XML 1.0 cannot carry")
    escaped = organ_id.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _TraceValues(
        escaped.encode("ascii", "xmlcharrefreplace"), format_datetime(timestamp).encode("ascii")
    )


def _trace_header(prefix: bytes, values: _TraceValues) -> bytes:
    p = prefix + b":" if prefix else b""
    return (
        b"<" + p + b"TraceHeader>"
        b"<" + p + b"OrganId>" + values.organ_id + b"</" + p + b"OrganId>"
        b"<" + p + b"Timestamp>" + values.timestamp + b"</" + p + b"Timestamp>"
        b"</" + p + b"TraceHeader>"
    )


def _trace_list(prefix: bytes, values: _TraceValues) -> bytes:
    p = prefix + b":" if prefix else b""
    return b"<" + p + b"TraceHeaderList>" + _trace_header(prefix, values) + b"</" + p + b"TraceHeaderList>"


def _splice(
    src: IO[bytes], out: IO[bytes], values: _TraceValues, chunk_size: int, max_header: int
) -> SpliceResult:
    plan = _plan(src, values, chunk_size, max_header)
    src.seek(0)
    digest = hashlib.sha256()
    size = 0

    def emit(data: bytes) -> None:
        nonlocal size
        out.write(data)
        digest.update(data)
        size += len(data)

    if isinstance(plan, TraceSplice):
        _copy(src, emit, chunk_size, plan.offset)
        emit(plan.insert)
        _copy(src, lambda _: None, chunk_size, plan.delete)
    _copy(src, emit, chunk_size, None)
    if isinstance(plan, TraceSplice):
        return SpliceResult(digest.hexdigest(), size, True)
    log.debug("TraceHeader not appended: %s", plan)
    return SpliceResult(digest.hexdigest(), size, False, plan)


def _copy(src: IO[bytes], emit: Callable[[bytes], None], chunk_size: int, count: int | None) -> None:
    """Copy ``count`` bytes (all that is left when None) from ``src`` through ``emit``."""
    remaining = count
    while remaining is None or remaining > 0:
        data = src.read(chunk_size if remaining is None else min(chunk_size, remaining))
        if not data:
            if remaining is not None:
                raise OSError("the package changed while the TraceHeader was being spliced in")
            return
        emit(data)
        if remaining is not None:
            remaining -= len(data)


def _plan(src: IO[bytes], values: _TraceValues, chunk_size: int, max_header: int) -> TraceSplice | str:
    """The edit, or the reason there is none."""
    if chunk_size < 1:
        raise ValueError("chunk size must be positive")
    try:
        facts = _Scanner(src, chunk_size, max_header).scan()
        return _edit(facts, values)
    except _GiveUp as exc:
        return str(exc)
    except OSError:
        raise
    except Exception:  # delivery must never fail because of the splicer
        log.exception("the TraceHeader splicer failed; the package is delivered unchanged")
        return "internal error in the TraceHeader splicer"


def _edit(facts: _Facts, values: _TraceValues) -> TraceSplice | str:
    header = facts.header
    if header is None:
        return "edXMLHeader not found"
    if facts.status:
        return "a status package has no TraceHeaderList"
    if not facts.message_seen:
        return "edXMLHeader has no MessageHeader"
    trace_list = facts.trace_list
    if trace_list is not None:
        ours = _trace_header(trace_list.prefix, values)
        if trace_list.last_trace_end is not None:
            return TraceSplice(
                trace_list.last_trace_end,
                0,
                (trace_list.last_trace_ws or b"") + ours,
                Placement.AFTER_LAST_TRACE_HEADER,
            )
        if trace_list.slash is not None:
            closing = b"</" + trace_list.qname
            return TraceSplice(trace_list.slash, 1, b">" + ours + closing, Placement.EXPANDED_EMPTY_LIST)
        return TraceSplice(
            trace_list.content_start, 0, (trace_list.first_child_ws or b"") + ours, Placement.START_OF_LIST
        )
    new_list = _trace_list(header.prefix, values)
    if facts.signature_start is not None:
        return TraceSplice(
            facts.signature_start,
            0,
            new_list + (facts.signature_ws or b""),
            Placement.NEW_LIST_BEFORE_SIGNATURE,
        )
    if facts.last_child_end is not None:
        return TraceSplice(
            facts.last_child_end,
            0,
            (facts.last_child_ws or b"") + new_list,
            Placement.NEW_LIST_AFTER_LAST_CHILD,
        )
    return "edXMLHeader has no child element"  # unreachable: a MessageHeader was seen


# -- the scanner -----------------------------------------------------------------------------------


class _GiveUp(Exception):
    """The insertion point cannot be found with certainty; the reason is the message."""


class _Role(Enum):
    OTHER = 0
    ROOT = 1
    ENVELOPE = 2
    HEADER = 3
    MESSAGE = 4
    TRACE_LIST = 5
    TRACE_HEADER = 6


@dataclass(slots=True)
class _Frame:
    qname: bytes
    prefix: bytes
    bindings: dict[bytes, str] | None
    role: _Role
    ws_before: bytes | None  # whitespace-only text right before the start tag (None: other text)


@dataclass(slots=True)
class _ListFacts:
    qname: bytes
    prefix: bytes
    content_start: int  # offset just after the start tag
    slash: int | None  # offset of the "/" of a self-closing start tag
    has_child: bool = False
    first_child_ws: bytes | None = None
    last_trace_end: int | None = None
    last_trace_ws: bytes | None = None


@dataclass(slots=True)
class _Facts:
    header: _Frame | None = None
    envelope_seen: bool = False
    message_seen: bool = False
    status: bool = False
    trace_list: _ListFacts | None = None
    signature_start: int | None = None
    signature_ws: bytes | None = None
    last_child_end: int | None = None
    last_child_ws: bytes | None = None
    done: bool = False


class _Scanner:
    """Reads markup from the start of the file to the end of the first edXMLHeader.

    ``buf`` holds the unread bytes from absolute offset ``base``; ``pos`` indexes into it.
    Consumed bytes are dropped when more is read, so memory stays near one chunk.
    """

    def __init__(self, src: IO[bytes], chunk_size: int, limit: int) -> None:
        self.src = src
        self.chunk_size = chunk_size
        self.limit = limit
        self.buf = bytearray()
        self.base = 0
        self.pos = 0
        self.eof = False
        self.stack: list[_Frame] = []
        self.facts = _Facts()
        self.ws: bytes | None = b""

    # input --------------------------------------------------------------------------------------
    def _fill(self) -> bool:
        """Read one more chunk; False at the end of the file."""
        if self.eof:
            return False
        if self.base + len(self.buf) >= self.limit:
            raise _GiveUp(f"the header region is larger than {self.limit} bytes")
        if self.pos:
            del self.buf[: self.pos]
            self.base += self.pos
            self.pos = 0
        data = self.src.read(min(self.chunk_size, self.limit - self.base - len(self.buf)))
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _need(self, count: int) -> None:
        while len(self.buf) - self.pos < count and self._fill():
            pass

    def _until(self, terminator: bytes, skip: int, what: str) -> int:
        """Index just past ``terminator``, searched from ``pos + skip``."""
        relative = skip
        while True:
            found = self.buf.find(terminator, self.pos + relative)
            if found >= 0:
                return found + len(terminator)
            relative = max(skip, len(self.buf) - self.pos - len(terminator) + 1)
            if not self._fill():
                raise _GiveUp(f"unterminated {what} at offset {self.base + self.pos}")

    def _match(self, pattern: re.Pattern[bytes]) -> re.Match[bytes]:
        while True:
            match = pattern.match(self.buf, self.pos)
            if match is not None:
                return match
            if self.buf.find(b"<", self.pos + 1) >= 0 or not self._fill():
                raise _GiveUp(f"malformed tag at offset {self.base + self.pos}")

    # main loop ----------------------------------------------------------------------------------
    def scan(self) -> _Facts:
        self._prolog()
        while not self.facts.done:
            lt = self.buf.find(b"<", self.pos)
            if lt < 0:
                self._text(len(self.buf))
                if not self._fill():
                    raise _GiveUp("the document ends before the end of edXMLHeader")
                continue
            self._text(lt)
            self._markup()
        return self.facts

    def _prolog(self) -> None:
        self._need(4)
        head = bytes(self.buf[:4])
        if head.startswith(codecs.BOM_UTF8):
            self.pos = 3
        elif head in _UTF16_32_HEADS or head[:2] in (codecs.BOM_UTF16_BE, codecs.BOM_UTF16_LE):
            raise _GiveUp("the package is in UTF-16 or UTF-32, where ASCII bytes cannot be inserted")
        self._need(6)
        if self.buf.startswith(b"<?xml", self.pos) and self.buf[self.pos + 5 : self.pos + 6].isspace():
            end = self._until(b"?>", 5, "XML declaration")
            declared = _ENCODING.search(self.buf, self.pos, end)
            if declared is not None:
                name = declared[2].decode("ascii")
                if not _ascii_compatible(name):
                    raise _GiveUp(f"the declared encoding {name} is not ASCII-compatible")
            self.pos = end

    def _text(self, end: int) -> None:
        if end <= self.pos:
            return
        if self.ws is not None:
            if len(self.ws) + end - self.pos > _MAX_INDENT:
                self.ws = None
            else:
                text = bytes(self.buf[self.pos : end])
                self.ws = None if text.strip(_WHITESPACE) else self.ws + text
        self.pos = end

    def _markup(self) -> None:
        self._need(9)
        buf, pos = self.buf, self.pos
        if buf.startswith(b"<!--", pos):
            self.pos = self._until(b"-->", 4, "comment")
            self.ws = b""
        elif buf.startswith(b"<![CDATA[", pos):
            self.pos = self._until(b"]]>", 9, "CDATA section")
            self.ws = None  # CDATA is text
        elif buf.startswith(b"<?", pos):
            self.pos = self._until(b"?>", 2, "processing instruction")
            self.ws = b""
        elif buf.startswith(b"<!", pos):
            raise _GiveUp("a DOCTYPE or other markup declaration is present")
        elif buf.startswith(b"</", pos):
            match = self._match(_END_TAG)
            self._end(match[1], self.base + match.start(), self.base + match.end())
            self.pos = match.end()
            self.ws = b""
        else:
            match = self._match(_START_TAG)
            slash = self.base + match.start(3) if match[3] else None
            self._start(match[1], match[2], self.base + match.start(), self.base + match.end(), slash)
            self.pos = match.end()
            self.ws = b""

    # elements -----------------------------------------------------------------------------------
    def _start(self, qname: bytes, attributes: bytes, start: int, end: int, slash: int | None) -> None:
        bindings = _namespace_bindings(attributes)
        prefix, _, local = qname.rpartition(b":")
        namespace = self._resolve(prefix, bindings)
        accepted = namespace in _ACCEPTED_NS
        parent = self.stack[-1] if self.stack else None
        facts = self.facts
        role = _Role.OTHER
        if parent is None:
            if local != b"edXML" or not accepted:
                raise _GiveUp("the root element is not edXML")
            role = _Role.ROOT
        elif parent.role is _Role.ROOT and accepted:
            if local == b"edXMLEnvelope" and not facts.envelope_seen:
                role = _Role.ENVELOPE
                facts.envelope_seen = True
            elif local == b"AttachmentEncoded":
                raise _GiveUp("AttachmentEncoded comes before any edXMLHeader")
        elif parent.role is _Role.ENVELOPE and accepted:
            if local == b"edXMLHeader":
                role = _Role.HEADER
            elif local == b"edXMLBody":
                raise _GiveUp("edXMLBody comes before any edXMLHeader")
        elif parent.role is _Role.HEADER:
            if accepted and local == b"MessageHeader" and not facts.message_seen:
                role = _Role.MESSAGE
                facts.message_seen = True
            elif accepted and local == b"TraceHeaderList" and facts.trace_list is None:
                role = _Role.TRACE_LIST
                facts.trace_list = _ListFacts(qname, prefix, end, slash)
            elif local == b"Signature" and (accepted or namespace == ns.DS) and facts.signature_start is None:
                facts.signature_start = start
                facts.signature_ws = self.ws
        elif parent.role is _Role.MESSAGE:
            if accepted and local == b"StatusCode":
                facts.status = True
        elif parent.role is _Role.TRACE_LIST:
            assert facts.trace_list is not None  # noqa: S101 - set with the role
            if not facts.trace_list.has_child:
                facts.trace_list.has_child = True
                facts.trace_list.first_child_ws = self.ws
            if accepted and local == b"TraceHeader":
                role = _Role.TRACE_HEADER
        frame = _Frame(qname, prefix, bindings, role, self.ws)
        if role is _Role.HEADER:
            facts.header = frame
        if slash is None:
            if len(self.stack) >= _MAX_DEPTH:
                raise _GiveUp("elements are nested too deeply")
            self.stack.append(frame)
        else:
            self._close(frame, end, start)

    def _end(self, qname: bytes, start: int, end: int) -> None:
        if not self.stack or self.stack[-1].qname != qname:
            raise _GiveUp(f"mismatched end tag at offset {start}")
        self._close(self.stack.pop(), end, start)

    def _close(self, frame: _Frame, end: int, end_tag_start: int) -> None:
        """``frame`` is complete; ``end`` is the offset just past its last byte."""
        facts = self.facts
        parent = self.stack[-1] if self.stack else None
        if frame.role is _Role.TRACE_HEADER and facts.trace_list is not None:
            facts.trace_list.last_trace_end = end
            facts.trace_list.last_trace_ws = frame.ws_before
        if parent is not None and parent.role is _Role.HEADER:
            facts.last_child_end = end
            facts.last_child_ws = frame.ws_before
        if frame.role is _Role.HEADER:
            facts.done = True
        elif frame.role in (_Role.ROOT, _Role.ENVELOPE):
            raise _GiveUp(f"edXMLHeader not found before offset {end_tag_start}")

    def _resolve(self, prefix: bytes, own: dict[bytes, str] | None) -> str | None:
        if prefix == b"xml":
            return _XML_NS
        scopes = [own] + [frame.bindings for frame in reversed(self.stack)]
        for bindings in scopes:
            if bindings is not None and prefix in bindings:
                uri = bindings[prefix]
                if uri or not prefix:
                    return uri or None
                break
        if prefix:
            raise _GiveUp(f"the namespace prefix {prefix!r} is not declared")
        return None


def _namespace_bindings(attributes: bytes) -> dict[bytes, str] | None:
    bindings: dict[bytes, str] | None = None
    for match in _ATTRIBUTE.finditer(attributes):
        name = match[1]
        if name == b"xmlns" or name.startswith(b"xmlns:"):
            raw = match[2] if match[2] is not None else match[3]
            if bindings is None:
                bindings = {}
            bindings[name[6:]] = _unescape(raw.decode("utf-8", "replace"))
    return bindings


def _unescape(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        ref = match[1]
        if not ref.startswith("#"):
            return _ENTITIES[ref]
        code = int(ref[2:], 16) if ref[1] in "xX" else int(ref[1:])
        return chr(code) if code <= 0x10FFFF else match[0]

    return _REFERENCE.sub(replace, text)


@lru_cache(maxsize=32)
def _ascii_compatible(name: str) -> bool:
    """Does every ASCII character stand for itself, one byte, with no multi-byte sequences?

    UTF-8 passes; single-byte code pages (ISO-8859-x, windows-125x) pass; UTF-16/32, EBCDIC and
    multi-byte East-Asian encodings (whose trail bytes may look like ``]``) do not.
    """
    try:
        info = codecs.lookup(name)
    except LookupError:
        return False
    if info.name == "utf-8":
        return True
    ascii_bytes = bytes(range(0x80))
    try:
        if ascii_bytes.decode(info.name) != ascii_bytes.decode("ascii"):
            return False
    except UnicodeDecodeError:
        return False
    for byte in range(0x80, 0x100):
        try:
            if info.incrementaldecoder("strict").decode(bytes([byte]), final=False) == "":
                return False  # a lead byte: the encoding is multi-byte
        except UnicodeDecodeError:
            continue
    return True
