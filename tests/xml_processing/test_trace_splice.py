"""The hub's TraceHeader is spliced into the sender's bytes: nothing else changes, memory stays flat."""

from __future__ import annotations

import base64
import hashlib
import io
import re
import tracemalloc
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from esb.domain.edxml_dates import to_local
from esb.domain.edxml_model import EdocPackage, StatusPackage, TraceHeader
from esb.errors import EdxmlInvalid, XmlInputError
from esb.xml_processing import namespaces as ns
from esb.xml_processing.edxml_reader import ReadResult, read_package
from esb.xml_processing.trace_splice import (
    Placement,
    SpliceResult,
    TraceSplice,
    append_trace_header,
    append_trace_header_bytes,
    plan_trace_splice,
)

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "samples" / "edxml"
AXIS = SAMPLES / "mic_edoc_received_via_axis_2_traces.edxml"  # prefixed, CRLF, 2 traces, Signature
BUSINESS_FIRST = SAMPLES / "mic_edoc_new_multi_recipient_zipped_edxml_attachment.edxml"
MINIMAL = SAMPLES / "mic_edoc_minimal_gateway_test.edxml"  # no TraceHeaderList, no Signature

ORGAN = "000.00.00.H53"
STAMP = datetime(2024, 5, 6, 1, 2, 3, tzinfo=UTC)
OURS = TraceHeader(ORGAN, to_local(STAMP))  # 2024/05/06 08:02:03 in Vietnam
OURS_XML = (
    b"<edXML:TraceHeader><edXML:OrganId>000.00.00.H53</edXML:OrganId>"
    b"<edXML:Timestamp>2024/05/06 08:02:03</edXML:Timestamp></edXML:TraceHeader>"
)
EXPECTED_PLACEMENT = {MINIMAL.name: Placement.NEW_LIST_AFTER_LAST_CHILD}
# A new list has no Bussiness (the reader notes it); nothing else may be reported anew.
TOLERATED_NEW_WARNINGS = {"W.MissingRecommended"}
TRACE_LIST = re.compile(rb"\s*<edXML:TraceHeaderList>.*?</edXML:TraceHeaderList>", re.DOTALL)
TRACE_HEADER = re.compile(rb"\s*<edXML:TraceHeader>.*?</edXML:TraceHeader>", re.DOTALL)
LAST_END = b"</edXML:TraceHeader>"


def _assert_edit(before: bytes, after: bytes, plan: TraceSplice) -> None:
    """``after`` is ``before`` with exactly the planned slice inserted (and ``delete`` bytes replaced)."""
    end = plan.offset + len(plan.insert)
    assert after[: plan.offset] == before[: plan.offset]
    assert after[plan.offset : end] == plan.insert
    assert after[end:] == before[plan.offset + plan.delete :]


def _assert_digest(data: bytes, result: SpliceResult) -> None:
    assert result.size == len(data)
    assert result.sha256 == hashlib.sha256(data).hexdigest()


def _edoc(data: bytes) -> EdocPackage:
    package = read_package(data).package
    assert isinstance(package, EdocPackage)
    return package


def _same_but_trace(original: ReadResult, spliced: ReadResult) -> None:
    before, after = original.package, spliced.package
    assert isinstance(before, EdocPackage)
    assert isinstance(after, EdocPackage)
    assert after.trace_headers == (*before.trace_headers, OURS)
    assert replace(after, trace_headers=()) == replace(before, trace_headers=())
    added = Counter(w.code for w in spliced.warnings) - Counter(w.code for w in original.warnings)
    assert set(added) <= TOLERATED_NEW_WARNINGS, added


def _roundtrip(
    data: bytes, placement: Placement, *, chunk_size: int | None = None
) -> tuple[bytes, TraceSplice]:
    """Splice ``data`` (read as bytes), check the edit and the model, return the output and plan."""
    extra = {} if chunk_size is None else {"_chunk_size": chunk_size}
    original = read_package(data)
    out, result = append_trace_header_bytes(data, ORGAN, STAMP, **extra)
    plan = plan_trace_splice(data, ORGAN, STAMP, **extra)
    assert result.appended, result.reason
    assert result.reason is None
    assert plan is not None
    assert plan.placement is placement
    _assert_edit(data, out, plan)
    _assert_digest(out, result)
    _same_but_trace(original, read_package(out))
    return out, plan


def _verdict(exc: BaseException) -> tuple[str, ...]:
    """The error codes (line numbers move: our slice may hold a line break)."""
    if isinstance(exc, EdxmlInvalid):
        return tuple(sorted(i.code for i in exc.issues if i.is_error))
    assert isinstance(exc, XmlInputError)
    return (exc.code,)


# -- every real sample --------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(SAMPLES.glob("*.edxml")), ids=lambda p: p.name)
def test_real_sample(path: Path, tmp_path: Path) -> None:
    data = path.read_bytes()
    try:
        original: ReadResult | Exception = read_package(path)
    except (EdxmlInvalid, XmlInputError) as exc:
        original = exc
    target = tmp_path / "out.edxml"
    with target.open("wb") as sink:
        result = append_trace_header(path, sink, ORGAN, STAMP)
    out = target.read_bytes()
    _assert_digest(out, result)
    plan = plan_trace_splice(path, ORGAN, STAMP)

    if isinstance(original, ReadResult) and isinstance(original.package, StatusPackage):
        # The status schema has no TraceHeaderList: the bytes go through untouched.
        assert not result.appended
        assert result.reason == "a status package has no TraceHeaderList"
        assert plan is None
        assert out == data
        return

    assert result.appended, result.reason
    assert plan is not None
    assert plan.delete == 0
    _assert_edit(data, out, plan)
    # the sender's prefix and line endings are reused
    assert OURS_XML in plan.insert
    assert plan.insert.strip().startswith(b"<edXML:")
    assert (b"\r\n" in plan.insert) == (b"\r\n" in data[: plan.offset])
    if isinstance(original, Exception):
        # A package we refuse stays refused, for the same reasons, with our trace in it.
        with pytest.raises(type(original)) as again:
            read_package(out)
        assert _verdict(again.value) == _verdict(original)
        return
    assert plan.placement is EXPECTED_PLACEMENT.get(path.name, Placement.AFTER_LAST_TRACE_HEADER)
    _same_but_trace(original, read_package(out))
    assert append_trace_header_bytes(data, ORGAN, STAMP) == (out, result)


def test_each_hop_appends_in_order() -> None:
    first, _ = append_trace_header_bytes(AXIS.read_bytes(), "000.00.00.H53", STAMP)
    second, result = append_trace_header_bytes(first, "000.00.01.H53", STAMP.replace(hour=2))
    assert result.appended
    traces = _edoc(second).trace_headers
    assert [t.organ_id for t in traces] == ["01.02.G22", "001.00.20.TT2", "000.00.00.H53", "000.00.01.H53"]
    assert traces[-1].timestamp == to_local(STAMP.replace(hour=2))


# -- where the element goes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signature", "placement"),
    [
        (None, Placement.NEW_LIST_BEFORE_SIGNATURE),  # unqualified Signature (edXML default namespace)
        (ns.DS, Placement.NEW_LIST_BEFORE_SIGNATURE),
        ("", Placement.NEW_LIST_AFTER_LAST_CHILD),  # no Signature at all
    ],
    ids=["edxml-signature", "xmldsig-signature", "no-signature"],
)
def test_no_trace_list(signature: str | None, placement: Placement) -> None:
    data = TRACE_LIST.sub(b"", AXIS.read_bytes(), count=1)
    if signature == "":
        data = re.sub(rb"\s*<Signature>.*?</Signature>", b"", data, count=1, flags=re.DOTALL)
    elif signature is not None:
        data = data.replace(b"<Signature>", b'<Signature xmlns="' + signature.encode() + b'">', 1)
    out, plan = _roundtrip(data, placement)
    new_list = b"<edXML:TraceHeaderList>" + OURS_XML + b"</edXML:TraceHeaderList>"
    if placement is Placement.NEW_LIST_BEFORE_SIGNATURE:
        assert plan.insert == new_list + b"\r\n      "
        assert out[plan.offset + len(plan.insert) :].startswith(b"<Signature")
    else:
        assert plan.insert == b"\r\n      " + new_list
        assert data[: plan.offset].endswith(b"</edXML:MessageHeader>")
        assert out[plan.offset + len(plan.insert) :].lstrip().startswith(b"</edXML:edXMLHeader>")


@pytest.mark.parametrize(
    ("empty_list", "placement"),
    [
        (b"<edXML:TraceHeaderList/>", Placement.EXPANDED_EMPTY_LIST),
        (b'<edXML:TraceHeaderList id="t-1" version="1.0" />', Placement.EXPANDED_EMPTY_LIST),
        (b"<edXML:TraceHeaderList\r\n   id='t-1'\t/>", Placement.EXPANDED_EMPTY_LIST),
        (b'<edXML:TraceHeaderList id="t-1 /> >"/>', Placement.EXPANDED_EMPTY_LIST),  # ">" in a value
        (b"<edXML:TraceHeaderList></edXML:TraceHeaderList>", Placement.START_OF_LIST),
        (b'<edXML:TraceHeaderList id="t-1">\r\n      </edXML:TraceHeaderList>', Placement.START_OF_LIST),
    ],
)
def test_empty_trace_list(empty_list: bytes, placement: Placement) -> None:
    data = TRACE_LIST.sub(b"\r\n      " + empty_list, AXIS.read_bytes(), count=1)
    out, plan = _roundtrip(data, placement)
    start = data.index(b"<edXML:TraceHeaderList")
    if placement is Placement.EXPANDED_EMPTY_LIST:
        assert (plan.offset, plan.delete) == (start + len(empty_list) - 2, 1)
        assert plan.insert == b">" + OURS_XML + b"</edXML:TraceHeaderList"
        assert out[start:].startswith(empty_list[:-2] + b">" + OURS_XML + b"</edXML:TraceHeaderList>")
    else:
        assert plan.offset == data.index(b">", start) + 1
        assert plan.insert == OURS_XML
    if b"t-1" in empty_list:
        assert (_edoc(out).trace_list_id or "").startswith("t-1")


def test_list_with_only_bussiness() -> None:
    data = TRACE_HEADER.sub(b"", BUSINESS_FIRST.read_bytes(), count=1)
    assert b"TraceHeader>" not in data
    out, plan = _roundtrip(data, Placement.START_OF_LIST)
    assert plan.offset == data.index(b"<edXML:TraceHeaderList>") + len(b"<edXML:TraceHeaderList>")
    assert plan.insert == b"\r\n        " + OURS_XML  # the indentation of Bussiness, repeated
    assert out[plan.offset + len(plan.insert) :].startswith(b"\r\n        <edXML:Bussiness>")


def test_trace_list_after_signature_is_still_found() -> None:
    data = AXIS.read_bytes()
    trace_list = TRACE_LIST.search(data)
    assert trace_list is not None
    data = data.replace(trace_list[0], b"", 1)
    data = data.replace(b"</Signature>", b"</Signature>" + trace_list[0], 1)
    _, plan = _roundtrip(data, Placement.AFTER_LAST_TRACE_HEADER)
    assert plan.offset == data.rindex(LAST_END) + len(LAST_END)


def _unprefixed(data: bytes) -> bytes:
    data = re.sub(rb'\s+xmlns:edXML="[^"]*"', b"", data)
    return data.replace(b"<edXML:", b"<").replace(b"</edXML:", b"</")


def test_default_namespace_without_prefix() -> None:
    data = _unprefixed(AXIS.read_bytes())
    assert b"edXML:" not in data
    _, plan = _roundtrip(data, Placement.AFTER_LAST_TRACE_HEADER)
    assert plan.insert == b"\r\n        " + OURS_XML.replace(b"edXML:", b"")


def test_no_namespace_at_all() -> None:
    """The reader accepts a package in no namespace (with a warning); ours joins it there."""
    data = _unprefixed(AXIS.read_bytes()).replace(b' xmlns="' + ns.EDXML.encode() + b'"', b"", 1)
    assert ns.EDXML.encode() not in data
    _, plan = _roundtrip(data, Placement.AFTER_LAST_TRACE_HEADER)
    assert plan.insert.lstrip().startswith(b"<TraceHeader>")


def test_prefix_declared_on_the_list_is_reused() -> None:
    data = AXIS.read_bytes()
    trace_list = TRACE_LIST.search(data)
    assert trace_list is not None
    scoped = trace_list[0].replace(b"edXML:", b"t:")
    scoped = scoped.replace(
        b"<t:TraceHeaderList>", b'<t:TraceHeaderList xmlns:t="' + ns.EDXML.encode() + b'">'
    )
    _, plan = _roundtrip(data.replace(trace_list[0], scoped), Placement.AFTER_LAST_TRACE_HEADER)
    assert plan.insert.lstrip().startswith(b"<t:TraceHeader><t:OrganId>")


def test_prefix_declared_only_on_the_siblings_is_not_reused() -> None:
    """``x:`` is bound on each TraceHeader only: after their end tags it is out of scope."""
    data = _unprefixed(AXIS.read_bytes())
    declared = b'<x:TraceHeader xmlns:x="' + ns.EDXML.encode() + b'">'
    data = re.sub(
        rb"<TraceHeader>(.*?)</TraceHeader>",
        lambda m: declared + re.sub(rb"<(/?)", rb"<\1x:", m[1]) + b"</x:TraceHeader>",
        data,
        flags=re.DOTALL,
    )
    assert data.count(declared) == 2
    _, plan = _roundtrip(data, Placement.AFTER_LAST_TRACE_HEADER)
    assert plan.insert.lstrip().startswith(b"<TraceHeader><OrganId>")


def test_comments_cdata_and_processing_instructions_are_skipped() -> None:
    data = AXIS.read_bytes()
    decoy = b"<!-- </edXML:TraceHeader></edXML:TraceHeaderList></edXML:edXMLHeader> -->"
    fake_trace = b"<edXML:TraceHeader><edXML:OrganId>x</edXML:OrganId></edXML:TraceHeader>"
    data = data.replace(
        b"</edXML:TraceHeaderList>",
        b"<!-- "
        + fake_trace
        + b" -->\r\n      <?hub </edXML:TraceHeader> ?>\r\n      </edXML:TraceHeaderList>",
        1,
    )
    data = data.replace(b"<edXML:TraceHeader>", decoy + b"<edXML:TraceHeader>", 1)
    data = data.replace(
        b"<edXML:Subject>",
        b"<edXML:Subject><![CDATA[<edXML:TraceHeaderList/></edXML:TraceHeader> ]]>",
        1,
    )
    real_end = data.rindex(LAST_END, 0, data.index(b"<!-- " + fake_trace)) + len(LAST_END)
    for chunk_size in (None, 1, 5, 13):
        _, plan = _roundtrip(data, Placement.AFTER_LAST_TRACE_HEADER, chunk_size=chunk_size)
        assert plan.offset == real_end
    subject = _edoc(data).header.subject
    assert subject.startswith("<edXML:TraceHeaderList/></edXML:TraceHeader>")


# -- chunking and limits ----------------------------------------------------------------------------


def _boundary_chunk_sizes() -> list[int]:
    """Chunk sizes whose first boundary falls at every byte of the last TraceHeader end tag."""
    data = AXIS.read_bytes()
    start = data.rindex(LAST_END, 0, data.index(b"</edXML:TraceHeaderList>"))
    return list(range(start, start + len(LAST_END) + 1))


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 7, 64, *_boundary_chunk_sizes()])
def test_chunk_boundaries(chunk_size: int) -> None:
    data = AXIS.read_bytes()
    expected, _ = append_trace_header_bytes(data, ORGAN, STAMP)
    out, result = append_trace_header_bytes(data, ORGAN, STAMP, _chunk_size=chunk_size)
    assert result.appended
    assert out == expected
    assert plan_trace_splice(data, ORGAN, STAMP, _chunk_size=chunk_size) == plan_trace_splice(
        data, ORGAN, STAMP
    )


def test_header_larger_than_the_scan_limit_is_copied_unchanged() -> None:
    data = AXIS.read_bytes()
    out, result = append_trace_header_bytes(data, ORGAN, STAMP, _chunk_size=512, _max_header_bytes=2048)
    assert (out, result.appended) == (data, False)
    assert result.reason == "the header region is larger than 2048 bytes"
    _assert_digest(out, result)


def _write_big_package(path: Path, megabytes: int) -> None:
    """The axis sample's header and an attachment of ``megabytes`` MiB of base64, written in 1 MiB lines."""
    sample = AXIS.read_bytes()
    open_tag = re.search(rb"<edXML:ContentTransferEncoded[^>]*>", sample)
    assert open_tag is not None
    close = sample.index(b"</edXML:ContentTransferEncoded>")
    line = base64.b64encode(bytes(range(256)) * 3072) + b"\r\n"  # 1 MiB + CRLF
    with path.open("wb") as sink:
        sink.write(sample[: open_tag.end()])
        for _ in range(megabytes):
            sink.write(line)
        sink.write(sample[close:])


def test_big_package_streams_with_flat_memory(tmp_path: Path) -> None:
    source, target = tmp_path / "big.edxml", tmp_path / "out.edxml"
    _write_big_package(source, 50)
    size = source.stat().st_size
    assert size > 50 * 1024 * 1024

    tracemalloc.start()
    try:
        with target.open("wb") as sink:
            result = append_trace_header(source, sink, ORGAN, STAMP)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.appended
    assert peak < 8 * 1024 * 1024, f"peak {peak} bytes"

    plan = plan_trace_splice(source, ORGAN, STAMP)
    assert plan is not None
    assert plan.placement is Placement.AFTER_LAST_TRACE_HEADER
    assert result.size == target.stat().st_size == size + len(plan.insert)
    # compare in chunks: the head up to the offset, our slice, then the rest byte for byte
    digest = hashlib.sha256()
    with source.open("rb") as before, target.open("rb") as after:
        head = after.read(plan.offset)
        assert head == before.read(plan.offset)
        assert after.read(len(plan.insert)) == plan.insert
        digest.update(head + plan.insert)
        while block := before.read(1024 * 1024):
            assert after.read(len(block)) == block
            digest.update(block)
        assert after.read(1) == b""
    assert digest.hexdigest() == result.sha256
    assert (head + plan.insert).count(b"<edXML:TraceHeader>") == 3


# -- copied unchanged -------------------------------------------------------------------------------


def _utf16(bom: bool) -> bytes:
    text = AXIS.read_text(encoding="utf-8").replace('encoding="UTF-8"', 'encoding="UTF-16"', 1)
    return text.encode("utf-16" if bom else "utf-16-le")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (_utf16(bom=True), "UTF-16 or UTF-32"),
        (_utf16(bom=False), "UTF-16 or UTF-32"),
        (AXIS.read_text(encoding="utf-8").encode("utf-32"), "UTF-16 or UTF-32"),
        (AXIS.read_bytes().replace(b'"UTF-8"', b'"UTF-16"', 1), "encoding UTF-16 is not ASCII-compatible"),
        (AXIS.read_bytes().replace(b'"UTF-8"', b'"Shift_JIS"', 1), "encoding Shift_JIS is not ASCII"),
        (b"", "the document ends before"),
        (b"not xml at all", "the document ends before"),
        (b"<html><body/></html>", "the root element is not edXML"),
        (AXIS.read_bytes()[:3000], "the document ends before"),
        (b'<!DOCTYPE edXML [<!ENTITY x "y">]><edXML/>', "DOCTYPE"),
        (b'<edXML xmlns="' + ns.EDXML.encode() + b'"><edXMLEnvelope/></edXML>', "edXMLHeader not found"),
        (b"<edXML><edXMLEnvelope><edXMLHeader></edXMLEnvelope>", "mismatched end tag"),
        (b"<e:edXML><e:edXMLEnvelope/></e:edXML>", "prefix b'e' is not declared"),
        (b"<edXML><edXMLEnvelope><edXMLHeader><MessageHeader a=1>", "malformed tag"),
        (b"<edXML><edXMLEnvelope><edXMLBody/>", "edXMLBody comes before any edXMLHeader"),
        (b"<edXML><edXMLEnvelope><edXMLHeader/></edXMLEnvelope></edXML>", "no MessageHeader"),
        (b"<edXML><edXMLEnvelope><edXMLHeader><!-- never closed", "unterminated comment"),
        (b'<edXML xmlns="urn:other"><edXMLEnvelope/></edXML>', "the root element is not edXML"),
    ],
    ids=[
        "utf16-bom",
        "utf16-no-bom",
        "utf32",
        "declared-utf16",
        "declared-shift-jis",
        "empty",
        "text",
        "html",
        "truncated",
        "doctype",
        "no-header",
        "mismatched",
        "undeclared-prefix",
        "bad-attribute",
        "body-first",
        "empty-header",
        "open-comment",
        "foreign-root",
    ],
)
def test_copied_unchanged(data: bytes, reason: str) -> None:
    out, result = append_trace_header_bytes(data, ORGAN, STAMP)
    assert out == data
    assert not result.appended
    assert result.reason is not None
    assert reason in result.reason
    _assert_digest(out, result)
    assert plan_trace_splice(data, ORGAN, STAMP) is None


# -- encodings and values ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "placement"),
    [
        (b"\xef\xbb\xbf" + AXIS.read_bytes(), Placement.AFTER_LAST_TRACE_HEADER),
        (MINIMAL.read_bytes().replace(b'"UTF-8"', b'"ISO-8859-1"', 1), Placement.NEW_LIST_AFTER_LAST_CHILD),
        (MINIMAL.read_bytes().replace(b'"UTF-8"', b"'us-ascii'", 1), Placement.NEW_LIST_AFTER_LAST_CHILD),
        (MINIMAL.read_bytes().split(b"\n", 1)[1], Placement.NEW_LIST_AFTER_LAST_CHILD),  # no declaration
    ],
    ids=["utf8-bom", "latin-1", "us-ascii", "no-declaration"],
)
def test_ascii_compatible_encodings(data: bytes, placement: Placement) -> None:
    _roundtrip(data, placement)


@pytest.mark.parametrize("organ_id", ["A&B<C>", "Sở Tài chính", "x]]>y"])
def test_organ_id_is_escaped(organ_id: str) -> None:
    out, result = append_trace_header_bytes(AXIS.read_bytes(), organ_id, STAMP)
    assert result.appended
    traces = _edoc(out).trace_headers
    assert traces[-1] == TraceHeader(organ_id, to_local(STAMP))


def test_naive_timestamp_is_vietnamese_local_time() -> None:
    out, _ = append_trace_header_bytes(AXIS.read_bytes(), ORGAN, datetime(2024, 5, 6, 8, 2, 3))
    assert b"<edXML:Timestamp>2024/05/06 08:02:03</edXML:Timestamp>" in out


def test_organ_id_xml_cannot_carry_is_refused_before_writing(tmp_path: Path) -> None:
    sink = io.BytesIO()
    with pytest.raises(ValueError, match="cannot carry"):
        append_trace_header(AXIS, sink, "000\x01", STAMP)
    assert sink.getvalue() == b""
