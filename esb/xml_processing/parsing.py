"""Hardened XML input: the only place that creates lxml parsers for untrusted bytes.

No DTD (a DOCTYPE is refused outright, not "not resolved"), no entity expansion, no network,
no XInclude, and explicit limits on size, depth, element count and text length.  Large
documents are fed in chunks to a parser *target*, which never builds a text node for content
the caller diverts (base64 attachments), so libxml2's 10 MB text-node limit never applies and
memory stays flat.  Every lxml error is turned into :class:`esb.errors.XmlInputError` here.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol
from xml.parsers import expat

from lxml import etree

from esb.errors import XmlInputError

CHUNK_SIZE = 1 << 20


@dataclass(frozen=True)
class XmlLimits:
    """Ceilings for untrusted XML. Loosening one is an explicit, visible argument."""

    max_bytes: int = 512 * 1024 * 1024
    max_depth: int = 64
    max_elements: int = 100_000
    max_text_chars: int = 1024 * 1024  # any text node that is not diverted to a sink
    max_attributes: int = 64


class TextConsumer(Protocol):
    """Receives the character data of one diverted element, in chunks."""

    def write(self, text: str) -> None: ...

    def close(self) -> None: ...


Divert = Callable[[str, int], "TextConsumer | None"]
"""Called with (tag, depth) at each start tag; returning a consumer diverts that element's text."""


def hardened_parser(*, huge_tree: bool = False, **extra: object) -> etree.XMLParser:
    """A fresh parser with every dangerous feature off (parsers must not be shared across threads).

    ``huge_tree`` lifts libxml2's limits (10 MB text nodes, depth 256); use it only for bytes
    that :func:`parse_stream` has already accepted (so no DOCTYPE, and within the limits).
    """
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=huge_tree,
        remove_comments=True,
        remove_pis=True,
        **extra,  # type: ignore[arg-type]
    )


def parse_untrusted(data: bytes, limits: XmlLimits = XmlLimits()) -> etree._Element:
    """Parse a small untrusted document into a tree (no diversion)."""
    return parse_stream(_chunks_of(data), limits=limits)


def parse_stream(
    chunks: Iterable[bytes],
    *,
    limits: XmlLimits = XmlLimits(),
    divert: Divert | None = None,
) -> etree._Element:
    """Feed ``chunks`` to a limited, hardened parser target and return the root element."""
    target = _LimitedTreeTarget(limits, divert)
    parser = hardened_parser(target=target)
    namespaces = _NamespaceChecker()
    total = 0
    closing = False
    try:
        for chunk in chunks:
            total += len(chunk)
            if total > limits.max_bytes:
                raise XmlInputError(
                    f"document is larger than the limit of {limits.max_bytes} bytes",
                    code="Client.XmlTooLarge",
                )
            parser.feed(chunk)
            namespaces.feed(chunk)
        if total == 0:
            raise XmlInputError("the document is empty", code="Client.XmlEmpty")
        closing = True
        root = parser.close()
        namespaces.close()
    except etree.XMLSyntaxError as exc:
        raise _syntax_error(exc, target, at_end=closing) from None
    finally:
        target.release()
    if not isinstance(root, etree._Element):
        raise XmlInputError("the document has no root element", code="Client.XmlTruncated")
    return root


def _chunks_of(data: bytes, size: int = CHUNK_SIZE) -> Iterable[bytes]:
    view = memoryview(data)
    for start in range(0, len(view), size):
        yield bytes(view[start : start + size])


class _LimitedTreeTarget:
    """Builds an lxml tree while enforcing limits and diverting selected text to consumers."""

    def __init__(self, limits: XmlLimits, divert: Divert | None) -> None:
        self._limits = limits
        self._divert = divert
        self._builder = etree.TreeBuilder()
        self._depth = 0
        self._elements = 0
        self._text_chars = 0
        self._consumer: TextConsumer | None = None
        self._consumer_depth = 0
        self.seen_root = False
        self.finished_feeding = False
        self.path: list[str] = []

    # lxml parser-target protocol -------------------------------------------------------
    def start(
        self, tag: str, attrib: Mapping[str, str], nsmap: Mapping[str | None, str] | None = None
    ) -> None:
        self.seen_root = True
        self._depth += 1
        self._elements += 1
        self.path.append(_local(tag))
        self._check_start(tag, attrib)
        self._text_chars = 0
        if self._consumer is None and self._divert is not None:
            consumer = self._divert(tag, self._depth)
            if consumer is not None:
                self._consumer, self._consumer_depth = consumer, self._depth
        # a parser target reports the default namespace under the prefix '', TreeBuilder wants None
        declared = {(prefix or None): uri for prefix, uri in (nsmap or {}).items()}
        self._builder.start(tag, dict(attrib), declared)  # type: ignore[call-arg,arg-type]  # lxml-stubs lag

    def end(self, tag: str) -> None:
        if self._consumer is not None and self._depth == self._consumer_depth:
            consumer, self._consumer = self._consumer, None
            consumer.close()
        self._depth -= 1
        self._text_chars = 0
        self.path.pop()
        self._builder.end(tag)

    def data(self, text: str) -> None:
        if self._consumer is not None:
            self._consumer.write(text)
            return
        self._text_chars += len(text)
        if self._text_chars > self._limits.max_text_chars:
            raise XmlInputError(
                f"a text node is longer than {self._limits.max_text_chars} characters "
                f"at /{'/'.join(self.path)}",
                code="Client.XmlTooLarge",
            )
        self._builder.data(text)

    def doctype(self, name: str, pubid: str | None, system: str | None) -> None:
        raise XmlInputError(
            "a DOCTYPE declaration is not allowed (no DTD, no entities)", code="Client.XmlDtdForbidden"
        )

    def comment(self, text: str) -> None:
        """Comments are dropped."""

    def pi(self, target: str, data: str | None = None) -> None:
        """Processing instructions are dropped."""

    def close(self) -> etree._Element | None:
        # lxml also calls close() after an aborted parse; the builder then has no complete tree.
        self.finished_feeding = True
        try:
            return self._builder.close()
        except etree.XMLSyntaxError:
            return None

    # ------------------------------------------------------------------------------------
    def release(self) -> None:
        self._consumer = None

    def _check_start(self, tag: str, attrib: Mapping[str, str]) -> None:
        where = "/" + "/".join(self.path)
        if self._depth > self._limits.max_depth:
            raise XmlInputError(
                f"elements are nested deeper than {self._limits.max_depth}", code="Client.XmlTooDeep"
            )
        if self._elements > self._limits.max_elements:
            raise XmlInputError(
                f"the document has more than {self._limits.max_elements} elements", code="Client.XmlTooLarge"
            )
        if len(attrib) > self._limits.max_attributes:
            raise XmlInputError(f"too many attributes at {where}", code="Client.XmlTooLarge")


def _local(tag: str) -> str:
    return tag.rpartition("}")[2] if tag.startswith("{") else tag


class _NamespaceChecker:
    """Namespace well-formedness, which lxml's target mode does not check.

    libxml2 silently drops an undeclared prefix when it reports to a parser target
    (``xlink:href`` arrives as ``href``).  Expat, fed the same chunks with no callbacks
    (about 1 GB/s), reports an unbound prefix.  It only judges namespaces: other verdicts stay
    with lxml, and it refuses any DOCTYPE before reading one declaration of it.
    """

    def __init__(self) -> None:
        self._parser: expat.XMLParserType | None = expat.ParserCreate(namespace_separator=" ")
        self._parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        self._parser.StartDoctypeDeclHandler = self._refuse_doctype

    def feed(self, chunk: bytes, final: bool = False) -> None:
        if self._parser is None:
            return
        try:
            self._parser.Parse(chunk, final)
        except expat.ExpatError as exc:
            self._parser = None
            if exc.code == expat.errors.codes[expat.errors.XML_ERROR_UNBOUND_PREFIX]:
                raise XmlInputError(
                    "a namespace prefix is used without being declared "
                    f"(line {exc.lineno}, column {exc.offset})",
                    code="Client.XmlNotNamespaceWellFormed",
                    line=exc.lineno,
                ) from None

    def close(self) -> None:
        self.feed(b"", final=True)

    @staticmethod
    def _refuse_doctype(*_: object) -> None:
        raise XmlInputError(
            "a DOCTYPE declaration is not allowed (no DTD, no entities)", code="Client.XmlDtdForbidden"
        )


def _syntax_error(exc: etree.XMLSyntaxError, target: _LimitedTreeTarget, *, at_end: bool) -> XmlInputError:
    message = str(exc.msg or exc).split(", line ")[0]
    line = exc.lineno or None
    lowered = message.lower()
    if "entity" in lowered and ("not defined" in lowered or "undeclared" in lowered):
        code, text = "Client.XmlEntityForbidden", f"entity references are not allowed: {message}"
    elif "encoding" in lowered or "utf-8" in lowered or "bytes:" in lowered:
        code, text = "Client.XmlEncoding", f"the document is not valid UTF-8 text: {message}"
    elif not target.seen_root:
        code, text = "Client.XmlNotXml", f"the input is not an XML document: {message}"
    elif at_end or "premature end" in lowered:
        code, text = "Client.XmlTruncated", f"the document ends before it is complete: {message}"
    else:
        code, text = "Client.XmlNotWellFormed", f"the document is not well-formed XML: {message}"
    return XmlInputError(text, code=code, line=line)


# -------------------------------------------------------------------------- the small-document path

FAST_PARSE_MAX_BYTES = 8 * 1024 * 1024
"""Documents up to this size may be parsed straight into a tree (:func:`parse_document`).

Below libxml2's own 10,000,000-character text-node limit (so ``huge_tree`` is never needed), and
small enough that the tree, the bytes and a C14N copy of the largest text node stay a few tens
of MB at most; larger documents keep the streaming path and its flat memory.
"""

_XML_DECLARATION = re.compile(
    rb"<\?xml[ \t\r\n]+version[ \t\r\n]*=[ \t\r\n]*(?:\"1\.[0-9]+\"|'1\.[0-9]+')"
    rb"(?:[ \t\r\n]+encoding[ \t\r\n]*=[ \t\r\n]*"
    rb"(?:\"([A-Za-z][A-Za-z0-9._-]*)\"|'([A-Za-z][A-Za-z0-9._-]*)'))?"
    rb"(?:[ \t\r\n]+standalone[ \t\r\n]*=[ \t\r\n]*(?:\"(?:yes|no)\"|'(?:yes|no)'))?"
    rb"[ \t\r\n]*\?>"
)
_UTF8_BOM = b"\xef\xbb\xbf"
_NAME_START = re.compile(rb"[A-Za-z_:\x80-\xff]")  # the first byte of a name, in UTF-8 (never NUL)
_PROLOG_SPACE = b" \t\r\n"
_MIN_ELEMENT_BYTES = 4  # "<a/>": so a document of n bytes holds at most n // 4 elements


def parse_document(
    data: bytes, limits: XmlLimits = XmlLimits(), *, long_text_in: str | None = None
) -> etree._Element:
    """Parse an untrusted document into a tree: :func:`parse_small` when it can decide, else
    :func:`parse_stream` (which gives every refusal its code).

    ``long_text_in``: the local name of elements whose text (their own and their descendants')
    is exempt from ``max_text_chars``, as a ``divert`` of :func:`parse_stream` exempts it.
    Without a divert, the streaming path counts every text node.
    """
    root = parse_small(data, limits, long_text_in=long_text_in)
    if root is not None:
        return root
    return parse_stream(_chunks_of(data), limits=limits)


def parse_small(
    data: bytes, limits: XmlLimits = XmlLimits(), *, long_text_in: str | None = None
) -> etree._Element | None:
    """The tree of a small, plain document, or None when the streaming path must decide.

    Never refuses by itself: whenever a document is not plainly acceptable (larger than
    :data:`FAST_PARSE_MAX_BYTES` or ``limits.max_bytes``, not UTF-8 by its first bytes, a
    DOCTYPE or anything else than comments and PIs before the root, any libxml2 error or
    namespace warning, a limit exceeded) it returns None, so :func:`parse_stream` gives the
    verdict and its code.  What it accepts, the streaming path accepts too, as the same tree
    (same elements, attributes, namespace declarations and character data; comments and PIs
    dropped), because the checks are the same: libxml2 without DTD, entities or network, then
    depth, element count, attributes per element and text-node length, counted in libxml2.

    Memory before the checks is bounded: at most ``limits.max_elements`` ``<`` bytes (so at
    most that many elements), no DOCTYPE (so no entity-reference nodes), at most
    :data:`FAST_PARSE_MAX_BYTES` bytes.
    """
    size = len(data)
    if size == 0 or size > FAST_PARSE_MAX_BYTES or size > limits.max_bytes:
        return None
    if not _plain_prolog(data):
        return None
    if size // _MIN_ELEMENT_BYTES > limits.max_elements and _more_than(data, b"<", limits.max_elements):
        return None
    parser = hardened_parser()
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError:
        return None
    if any(
        entry.level >= etree.ErrorLevels.ERROR or entry.domain == etree.ErrorDomains.NAMESPACE
        for entry in parser.error_log
    ):
        return None
    docinfo = root.getroottree().docinfo
    if docinfo.internalDTD is not None or docinfo.externalDTD is not None:  # any DOCTYPE makes one
        return None
    if not _within(root, limits, long_text=size > limits.max_text_chars, long_text_in=long_text_in):
        return None
    return root


def _more_than(data: bytes, byte: bytes, count: int) -> bool:
    """Does ``byte`` occur more than ``count`` times?  (``find`` is memchr: far faster than
    ``bytes.count`` on base64, and this stops at ``count + 1``.)"""
    at = -1
    for _ in range(count + 1):
        at = data.find(byte, at + 1)
        if at < 0:
            return False
    return True


def _plain_prolog(data: bytes) -> bool:
    """UTF-8 (or ASCII) by its first bytes and its declaration, and only comments, PIs and
    whitespace before the root element: so no DOCTYPE (libxml2 accepts one nowhere else)."""
    at = len(_UTF8_BOM) if data.startswith(_UTF8_BOM) else 0
    if data.startswith(b"<?xml", at):
        declaration = _XML_DECLARATION.match(data, at)
        if declaration is None:
            return False
        encoding = declaration.group(1) or declaration.group(2)
        if encoding is not None and encoding.lower() not in (b"utf-8", b"utf8"):
            return False
        at = declaration.end()
    elif not data.startswith(b"<", at):
        return False  # UTF-16 or UCS-4 without a BOM start otherwise, or leading space, or not XML
    end = len(data)
    while at < end:
        byte = data[at : at + 1]
        if byte in (b" ", b"\t", b"\r", b"\n"):
            at += 1
        elif data.startswith(b"<!--", at):
            close = data.find(b"-->", at + 4)
            if close < 0:
                return False
            at = close + 3
        elif data.startswith(b"<?", at):
            close = data.find(b"?>", at + 2)
            if close < 0:
                return False
            at = close + 2
        else:
            # the root's start tag; anything else (a DOCTYPE, text) sends the document to streaming
            return byte == b"<" and _NAME_START.match(data, at + 1) is not None
    return False


@functools.lru_cache(maxsize=64)
def _limit_checks(
    max_depth: int, max_attributes: int, max_text_chars: int | None, long_text_in: str | None
) -> etree.XPath:
    """One XPath, true when a limit is exceeded (evaluated in libxml2; lxml locks an XPath
    object around each call, so one can be shared between threads)."""
    tests = [
        # an element at depth max_depth + 1 (the root is at depth 1)
        "/*" * (max_depth + 1),
        # an element with an attribute number max_attributes + 1 (namespace declarations are not attributes)
        f"/descendant::*[@*[{max_attributes + 1}]]",
    ]
    if max_text_chars is not None:
        if long_text_in:
            # text nodes of elements that are neither such an element nor inside one (its tail is checked)
            exempt = f"[local-name() != '{long_text_in}']"
            outside = f"[not(ancestor::*[local-name() = '{long_text_in}'])]"
        else:
            exempt = outside = ""
        tests.append(f"/descendant::*{exempt}/text()[string-length() > {max_text_chars}]{outside}")
    return etree.XPath(f"boolean({' | '.join(tests)})")


def _within(root: etree._Element, limits: XmlLimits, *, long_text: bool, long_text_in: str | None) -> bool:
    if long_text_in is not None and ("'" in long_text_in or not long_text_in.strip()):
        return False
    check = _limit_checks(
        limits.max_depth, limits.max_attributes, limits.max_text_chars if long_text else None, long_text_in
    )
    # The element count needs no check here: parse_small let through only documents with at
    # most max_elements "<" bytes, or too short to hold more elements.
    return not check(root)
