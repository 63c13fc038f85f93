"""Signing and verifying edXML packages (QCVN 102:2016) with an enveloped XML signature.

Where the signature goes and what it signs (edxml-reference §6): the Signature is the *last*
child of ``edXMLHeader`` and its one reference, ``URI=""`` with the enveloped-signature
transform, covers the whole document from the root ``edXML`` (every header field, the
manifest and the base64 of every attachment) minus the Signature itself.  Only such a
signature counts; the checks and their order are in :func:`verify_package`, the primitives
in :mod:`esb.security.xml_signature`.

Real packages are mostly unsigned or carry placeholders (the VPCP/VNPT fixtures all share one
SignatureValue; a VXP forwarder writes an empty Signature), so a verdict is a *report*, never
an exception: the hub records it and its policy decides what to do with it.

Reading a package for a signature needs the attachments' base64 in the tree (the digest
covers it), which the hub's reader deliberately avoids.  A package of at most 8 MiB
(``FAST_PARSE_MAX_BYTES``, every inline package in practice) is first offered to
:func:`esb.xml_processing.parsing.parse_small`: the hardened ``XMLParser`` straight into a
tree, the same limits then checked in libxml2 (depth, element count, attributes, text
length outside ``ContentTransferEncoded``); whatever it does not plainly accept (a DOCTYPE,
another encoding, any parser error, a limit) goes to the streaming parser, which gives the
verdict and its error code, so both paths refuse alike.  At that size the tree, the bytes
and C14N's copies of the largest text node stay within a few tens of MB; it is about ten
times faster than the streaming parse for a 1 MB package (bench/README.md).  Larger
documents are read by the hardened streaming parser
(:func:`esb.xml_processing.parsing.parse_stream`: no DOCTYPE, no entities, no network,
limits on size, depth, element count and on any other text node over 1 Mi characters) from
the file or bytes in 1 MiB chunks, with the text of every ``ContentTransferEncoded``
diverted into 1 MiB pieces, which are then put into the element as *adjacent text nodes*.
Why pieces: libxml2 2.14 copies a text node twice while canonicalising it (the escaped
copy, then its output buffer), so one 100 MB text node costs +200 MB during the digest; in
pieces the copies are 1 MiB each.
Adjacent text nodes are the same character data to C14N (it writes them one after another),
so the digest does not change.  A ``ContentTransferEncoded`` that holds elements (no real
package does) cannot be rebuilt that way; the document is then parsed again whole, with
libxml2's ``huge_tree``, which is safe because the streaming parser has already accepted it.

The signed package is written with lxml's C14N serialiser (inclusive C14N 1.0, after an XML
declaration), not ``tree.write``: libxml2 2.14's serialiser gathers the escaped content of
consecutive text nodes in its output buffer before flushing (measured: +200 MB for a 100 MB
attachment), the C14N writer flushes each one.  The output is the same XML (same elements,
attributes, namespaces and text) in canonical spelling: ``<a></a>`` for ``<a/>``, attributes
in canonical order, a newline after the root and nothing else outside it.

Memory, measured on a 104.9 MB package (one 75 MiB attachment, i.e. 100 MiB of base64),
parsed from its file path, each call in a fresh process after a warm-up: peak RSS (VmHWM,
reset just before the call) minus the RSS just before it; lxml 6.1.3, libxml2 2.14.6,
xmlsec 1.3.17, Python 3.11 (re-measured with the small-document path in place, which such a
package does not take: unchanged)::

    verify_package   +111 MB   1.06 x the package   0.7 s
    sign_package     +113 MB   1.08 x the package   1.1 s   (written to a file path)

For comparison, a plain ``etree.parse(huge_tree=True)`` with ``tree.write`` costs about
+300 MB (2.9 x) for either.  Given ``bytes``, the caller holds one more copy (2.06 x in
all).  A package whose ``ContentTransferEncoded`` holds elements takes the whole-document
path: 3.0 x to verify, 4.0 x to sign.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, NoReturn

from lxml import etree

from esb.domain.issues import error
from esb.domain.signatures import SignatureReport, report
from esb.errors import ClientError, EdxmlInvalid, XmlInputError
from esb.security.signing_key import SigningKey
from esb.security.trust_store import TrustStore
from esb.security.xml_signature import (
    into_xmldsig_namespace,
    iso_utc,
    remove_element,
    sign_enveloped,
    verify_enveloped,
)
from esb.xml_processing import namespaces as ns
from esb.xml_processing.parsing import (
    CHUNK_SIZE,
    FAST_PARSE_MAX_BYTES,
    TextConsumer,
    XmlLimits,
    hardened_parser,
    parse_small,
    parse_stream,
)

# SHA-256 of the base64-decoded SignatureValue that every VPCP/VNPT SDK fixture carries (256
# bytes, base64 "GbVb8n9+qFxz466Ag0sbpVdLPs2R0+9JBekp12Uy..."), whatever its DigestValue:
# resources/edoc_new.edxml of all4u1089/truclienthong-example and the SDKVXP_Example files of
# PVN-Organization/API-Gateway-iOffice (copies in /work/shared/samples/edxml; edxml-reference §6).
VPCP_SAMPLE_SIGNATURE_VALUE_SHA256 = "84c02a25a4444b7e57b4fb78e4ef2e7681c64030618865204b5dff00fd86430b"
SAMPLE_SIGNATURE_VALUES = {
    VPCP_SAMPLE_SIGNATURE_VALUE_SHA256: "the sample value shared by every VPCP/VNPT SDK fixture",
}

COVERED = (
    "the whole edXML document (root edXML, every header field, the manifest and every attachment), "
    "minus this Signature"
)

ALREADY_SIGNED = "Client.AlreadySigned"
PIECE_CHARS = 1 << 20
XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'

_ATTACHMENT_TEXT = "ContentTransferEncoded"
_PIECE_MARKER = "esb-text-piece"  # no namespace: a temporary element, removed at once
_EDXML_NAMESPACES = (ns.EDXML, None)


@dataclass(frozen=True)
class SignedPackage:
    """The signed package as written: hex SHA-256 and size of its bytes."""

    sha256: str
    size: int


# ----------------------------------------------------------------------------------------- signing


def sign_package(
    source: bytes | Path, out: Path | BinaryIO, *, key: SigningKey, replace: bool = False
) -> SignedPackage:
    """Sign an edoc package with ``key`` and write it to ``out`` (a path, or a binary file object).

    Refuses (``EdxmlInvalid``) what is not an edXML package or is a status package (QCVN 102
    status packages carry no Signature), and (``ClientError`` ``Client.AlreadySigned``) a
    package whose edXMLHeader already carries a Signature, unless ``replace``: then that
    Signature is removed first.  Bytes the parser refuses raise ``XmlInputError``.
    """
    root = _parse(source, XmlLimits())
    header = _header_or_refuse(root)
    existing = _signatures_in(header)
    if existing and not replace:
        raise ClientError(
            "the package is already signed: its edXMLHeader carries a Signature "
            "(sign with replace to re-sign it)",
            code=ALREADY_SIGNED,
        )
    for signature in existing:
        remove_element(signature)
    sign_enveloped(root, header, key)
    if isinstance(out, Path):
        with out.open("wb") as handle:
            return _write(root, handle)
    return _write(root, out)


def _header_or_refuse(root: etree._Element) -> etree._Element:
    """edXMLHeader of an edoc package, or ``EdxmlInvalid`` with the reader's codes."""
    root_ns, root_name = ns.split_tag(root.tag)
    if root_name != "edXML":
        _refuse("Client.EdxmlWrongRoot", f"/{root_name}", f"the root element is <{root_name}>, not <edXML>")
    if root_ns not in _EDXML_NAMESPACES:
        _refuse("Client.EdxmlWrongNamespace", "/edXML", f"the root is in namespace {root_ns}, not {ns.EDXML}")
    envelope = _child(root, "edXMLEnvelope")
    if envelope is None:
        _refuse("Client.EdxmlMissingElement", "/edXML/edXMLEnvelope", "edXMLEnvelope is missing")
    header = _child(envelope, "edXMLHeader")
    if header is None:
        _refuse("Client.EdxmlMissingElement", "/edXML/edXMLEnvelope/edXMLHeader", "edXMLHeader is missing")
    message = _child(header, "MessageHeader")
    if message is not None and _child(message, "StatusCode") is not None:
        _refuse(
            "Client.EdxmlInvalid",
            "/edXML/edXMLEnvelope/edXMLHeader",
            "a status package carries no Signature (QCVN 102:2016); only edoc packages are signed",
        )
    return header


def _refuse(code: str, path: str, message: str) -> NoReturn:
    raise EdxmlInvalid([error(code, path, message)])


class _HashingWriter:
    """Passes bytes on to ``sink`` and keeps their SHA-256 and count."""

    def __init__(self, sink: BinaryIO) -> None:
        self._sink = sink
        self._digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._digest.update(data)
        self.size += len(data)
        self._sink.write(data)
        return len(data)

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()


def _write(root: etree._Element, sink: BinaryIO) -> SignedPackage:
    writer = _HashingWriter(sink)
    writer.write(XML_DECLARATION)
    # lxml-stubs know neither file-like targets nor the keyword arguments of write_c14n.
    root.getroottree().write_c14n(writer, exclusive=False, with_comments=False)  # type: ignore[call-arg,arg-type]
    writer.write(b"\n")
    return SignedPackage(writer.sha256, writer.size)


# ------------------------------------------------------------------------------------ verification


def verify_package(
    source: bytes | Path,
    *,
    trust: TrustStore | None,
    at: datetime,
    registered_signers: Collection[str] = (),
    allow_legacy: bool = False,
    max_bytes: int = XmlLimits().max_bytes,
) -> SignatureReport:
    """What the package's signature proves, as a report; never raises for a signature problem.

    ``at`` is the moment the signer's certificate is checked at (the package's time of
    sending, or now).  ``registered_signers``: hex SHA-256 fingerprints of the From agency's
    registered certificates; when given, the signer must be one of them and is then trusted
    as registered (pinned).  Only bytes the hardened parser refuses raise ``XmlInputError``
    (and an unreadable path ``OSError``).

    Checks, in order: the Signature children of edXMLHeader, in any namespace (none:
    ``misplaced-signature`` when an XML-DSig Signature is elsewhere in the document,
    ``no-signature`` otherwise; more than one: ``multiple-signatures``); a Signature outside
    the xmldsig namespace is moved into it (warning ``signature-namespace``); not the last
    child of edXMLHeader: warning ``signature-not-last``; then
    :func:`esb.security.xml_signature.verify_enveloped`: placeholders (``empty-signature``,
    ``empty-signature-value``, ``sample-signature``, ``truncated-certificate``), structure
    and algorithms, ``missing-key-info``, the digest and SignatureValue, and trust.
    """
    root = _parse(source, XmlLimits(max_bytes=max_bytes))
    header = _header(root)
    candidates = _signatures_in(header) if header is not None else []
    checked_at = {"checked_at": iso_utc(at)}
    if header is None or not candidates:
        if next(root.iter(f"{{{ns.DS}}}Signature"), None) is not None:
            return report(
                "misplaced-signature",
                "an XML-DSig Signature is in the document, but not as a child of edXMLHeader",
                **checked_at,
            )
        return report("no-signature", **checked_at)
    if len(candidates) > 1:
        return report(
            "multiple-signatures", f"edXMLHeader carries {len(candidates)} Signature elements", **checked_at
        )
    signature = candidates[0]
    warnings: list[str] = []
    if header[-1] is not signature:
        warnings.append("signature-not-last")
    if ns.split_tag(signature.tag)[0] != ns.DS:
        signature = into_xmldsig_namespace(signature)
        warnings.insert(0, "signature-namespace")
    return verify_enveloped(
        signature,
        trust=trust,
        at=at,
        covered=COVERED,
        pinned=registered_signers,
        pinned_name="registered certificates of the From agency",
        allow_legacy=allow_legacy,
        warnings=warnings,
        sample_values=SAMPLE_SIGNATURE_VALUES,
    )


def _header(root: etree._Element) -> etree._Element | None:
    """edXMLHeader (prefixes do not matter: the QCVN namespace or none), or None."""
    root_ns, root_name = ns.split_tag(root.tag)
    if root_name != "edXML" or root_ns not in _EDXML_NAMESPACES:
        return None
    envelope = _child(root, "edXMLEnvelope")
    return _child(envelope, "edXMLHeader") if envelope is not None else None


def _signatures_in(header: etree._Element) -> list[etree._Element]:
    return [
        child for child in header if isinstance(child.tag, str) and ns.split_tag(child.tag)[1] == "Signature"
    ]


def _child(parent: etree._Element, name: str) -> etree._Element | None:
    for child in parent:
        if isinstance(child.tag, str) and ns.split_tag(child.tag) in ((ns.EDXML, name), (None, name)):
            return child
    return None


# ------------------------------------------------------------------------------------------ parsing


class _TextPieces:
    """A diverted element's text, gathered into pieces of about ``PIECE_CHARS`` characters."""

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self._pending: list[str] = []
        self._pending_chars = 0

    def write(self, text: str) -> None:
        self._pending.append(text)
        self._pending_chars += len(text)
        if self._pending_chars >= PIECE_CHARS:
            self._flush()

    def close(self) -> None:
        self._flush()

    def _flush(self) -> None:
        if self._pending:
            self.pieces.append("".join(self._pending))
            self._pending = []
            self._pending_chars = 0


def _parse(source: bytes | Path, limits: XmlLimits) -> etree._Element:
    """The whole document as a tree, attachments' text included, in about 1x its size (module doc).

    A document of at most ``FAST_PARSE_MAX_BYTES`` is first offered to
    :func:`~esb.xml_processing.parsing.parse_small` (libxml2 straight into a tree, the same
    checks counted in C); whatever it does not plainly accept, and every larger document,
    takes the streaming path, which gives the verdict.
    """
    small = _small_bytes(source)
    if small is not None:
        root = parse_small(small, limits, long_text_in=_ATTACHMENT_TEXT)
        if root is not None:
            return root
        source = small  # the streaming path reads the very bytes the fast path saw
    spools: list[_TextPieces] = []

    def divert(tag: str, depth: int) -> TextConsumer | None:
        if ns.split_tag(tag)[1] != _ATTACHMENT_TEXT:
            return None
        spool = _TextPieces()
        spools.append(spool)
        return spool

    root = parse_stream(_chunks(source), limits=limits, divert=divert)
    if _restore_text(root, spools):
        return root
    spools.clear()
    del root
    return _parse_whole(source)


def _small_bytes(source: bytes | Path) -> bytes | None:
    """The document's bytes when it has at most ``FAST_PARSE_MAX_BYTES``, else None."""
    if isinstance(source, bytes):
        return source if len(source) <= FAST_PARSE_MAX_BYTES else None
    with Path(source).open("rb") as handle:
        if os.fstat(handle.fileno()).st_size > FAST_PARSE_MAX_BYTES:
            return None
        data = handle.read(FAST_PARSE_MAX_BYTES + 1)  # the file may have grown since
    return data if len(data) <= FAST_PARSE_MAX_BYTES else None


def _chunks(source: bytes | Path) -> Iterator[bytes]:
    if isinstance(source, bytes):
        view = memoryview(source)
        for start in range(0, len(view), CHUNK_SIZE):
            yield bytes(view[start : start + CHUNK_SIZE])
        return
    with Path(source).open("rb") as handle:
        while chunk := handle.read(CHUNK_SIZE):
            yield chunk


def _restore_text(root: etree._Element, spools: list[_TextPieces]) -> bool:
    """Put each diverted text back as adjacent text nodes; False when that cannot be exact.

    The parser diverted *all* character data inside each outermost ``ContentTransferEncoded``,
    including that of child elements, so an element with children cannot be rebuilt.
    """
    diverted = [
        element
        for element in root.iter()
        if isinstance(element.tag, str)
        and ns.split_tag(element.tag)[1] == _ATTACHMENT_TEXT
        and not any(ns.split_tag(above.tag)[1] == _ATTACHMENT_TEXT for above in element.iterancestors())
    ]
    if len(diverted) != len(spools) or any(len(element) for element in diverted):
        return False
    for element, spool in zip(diverted, spools, strict=True):
        pieces, spool.pieces = spool.pieces, []
        pieces.reverse()
        if pieces:
            element.text = pieces.pop()
        while pieces:
            etree.SubElement(element, _PIECE_MARKER).tail = pieces.pop()
        # Removing the markers (not their tails) leaves the pieces as separate text nodes.
        etree.strip_elements(element, _PIECE_MARKER, with_tail=False)
    return True


def _parse_whole(source: bytes | Path) -> etree._Element:
    """Parse again in one piece (``huge_tree``): only for bytes parse_stream has already accepted."""
    parser = hardened_parser(huge_tree=True)
    try:
        if isinstance(source, bytes):
            return etree.fromstring(source, parser)
        return etree.parse(str(source), parser).getroot()
    except etree.XMLSyntaxError as failure:
        raise XmlInputError(f"the document cannot be read: {failure.msg}") from None
