"""Hardened XML input: the only place that creates lxml parsers for untrusted bytes.

No DTD (a DOCTYPE is refused outright, not "not resolved"), no entity expansion, no network,
no XInclude, and explicit limits on size, depth, element count and text length.  Large
documents are fed in chunks to a parser *target*, which never builds a text node for content
the caller diverts (base64 attachments), so libxml2's 10 MB text-node limit never applies and
memory stays flat.  Every lxml error is turned into :class:`esb.errors.XmlInputError` here.
"""

from __future__ import annotations

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
