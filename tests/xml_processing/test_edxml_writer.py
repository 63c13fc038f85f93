"""Strict building: canonical layout, XSD-valid output, exact round trips, appended traces."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from esb.domain import edxml_model as m
from esb.domain.edxml_dates import VN_TZ
from esb.domain.edxml_enums import BusinessDocType, Priority, ReceiverType, StatusCode, SteeringType
from esb.errors import EdxmlBuildError
from esb.xml_processing.attachments import AttachmentPolicy
from esb.xml_processing.edxml_reader import read_package
from esb.xml_processing.edxml_writer import write_package
from esb.xml_processing.schemas import SchemaName, SchemaRegistry

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "samples" / "edxml"
NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
BUILDABLE = [
    "mic_edoc_new_bdt0_vpcp_original.edxml",
    "mic_edoc_new_multi_recipient_zipped_edxml_attachment.edxml",
    "mic_edoc_received_via_axis_2_traces.edxml",
    "mic_edoc_replacement_bdt3.edxml",
    "mic_edoc_revocation_bdt1.edxml",
    "mic_edoc_update_bdt2.edxml",
    *sorted(p.name for p in SAMPLES.glob("mic_status_*.edxml")),
]
NOT_STRICT = {
    "mic_edoc_minimal_gateway_test.edxml": "MessageHeader",  # no Code, PromulgationInfo, DocumentType…
    "mic_edoc_new_bdt0.edxml": "MessageHeader",  # every SignerInfo field is empty
}


def rebuild(path: Path, tmp_path: Path) -> tuple[m.Package, bytes]:
    result = read_package(path, attachments=AttachmentPolicy(extract_dir=tmp_path / "files"))
    package = result.package
    files = {}
    if isinstance(package, m.EdocPackage):
        files = {a.content_id: Path(a.data.location or "") for a in package.attachments}
    out = io.BytesIO()
    written = write_package(package, out, files=files)
    return written.package, out.getvalue()


@pytest.mark.parametrize("name", BUILDABLE)
def test_parse_build_parse_keeps_the_model(name: str, tmp_path: Path) -> None:
    written, data = rebuild(SAMPLES / name, tmp_path)
    again = read_package(data)
    assert again.package == written
    original = read_package(SAMPLES / name).package
    if isinstance(original, m.EdocPackage):
        # the writer drops a signature (it cannot survive re-serialisation) and always writes Bussiness
        new_document = m.Business(BusinessDocType.NEW, reason=BusinessDocType.NEW.default_reason)
        original = replace(original, signature=None, business=original.business or new_document)
    assert original == written
    # what we write is canonical: no order, spelling, date, padding or namespace warnings remain
    style_codes = {
        "W.ElementOrder",
        "W.DateFormat",
        "W.StatusCodePadding",
        "W.BusinessSpelling",
        "W.NoNamespace",
        "W.EmptyElement",
        "W.SignatureNamespace",
        "W.ContentIdPrefix",
        "W.Base64LineBreaks",
    }
    assert not {w.code for w in again.warnings} & style_codes


@pytest.mark.parametrize("name", BUILDABLE)
def test_built_package_is_strictly_valid_and_canonical(name: str, tmp_path: Path) -> None:
    _, data = rebuild(SAMPLES / name, tmp_path)
    tree = etree.fromstring(data)
    assert SchemaRegistry.default().validate(SchemaName.EDXML_STRICT, tree) == []
    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<edXML xmlns="' + NS.encode() + b'">')
    assert b'<edXML:edXMLEnvelope xmlns:edXML="' + NS.encode() + b'">' in data
    envelope = tree[0]
    assert envelope.prefix == "edXML"
    assert all(e.prefix == "edXML" for e in envelope.iter() if isinstance(e.tag, str))
    for content in tree.iter(f"{{{NS}}}ContentTransferEncoded"):
        assert content.text is not None
        assert "\n" not in content.text  # one-line base64


@pytest.mark.parametrize(("name", "where"), sorted(NOT_STRICT.items()))
def test_lenient_only_packages_are_refused_with_paths(name: str, where: str, tmp_path: Path) -> None:
    with pytest.raises(EdxmlBuildError) as caught:
        rebuild(SAMPLES / name, tmp_path)
    assert caught.value.code == "Client.EdxmlBuildInvalid"
    assert any(where in problem for problem in caught.value.problems)


def test_appended_trace_keeps_existing_traces(tmp_path: Path) -> None:
    path = SAMPLES / "mic_edoc_received_via_axis_2_traces.edxml"
    result = read_package(path, attachments=AttachmentPolicy(extract_dir=tmp_path))
    package = result.package
    assert isinstance(package, m.EdocPackage)
    hub = m.TraceHeader("000.00.00.H53", datetime(2026, 11, 21, 9, 30, tzinfo=VN_TZ))
    out = io.BytesIO()
    files = {a.content_id: Path(a.data.location or "") for a in package.attachments}
    write_package(package, out, files=files, append_trace=hub)
    again = read_package(out.getvalue()).package
    assert isinstance(again, m.EdocPackage)
    assert again.trace_headers == (*package.trace_headers, hub)


def test_own_trace_needs_a_conforming_code() -> None:
    package = read_package(SAMPLES / "mic_status_01_alt.edxml").package
    edoc = _edoc()
    with pytest.raises(EdxmlBuildError) as caught:
        write_package(edoc, io.BytesIO(), append_trace=m.TraceHeader("vxp.saas.03", datetime.now(VN_TZ)))
    assert caught.value.code == "Client.EdxmlBuildIdentifier"
    assert isinstance(package, m.StatusPackage)


def test_missing_attachment_file_is_refused_before_writing() -> None:
    edoc = _edoc(attachments=1)
    out = io.BytesIO()
    with pytest.raises(EdxmlBuildError) as caught:
        write_package(edoc, out, files={})
    assert caught.value.code == "Client.EdxmlBuildAttachment"
    assert out.getvalue() == b""


def test_vnpt_zip_wrapping_round_trip(tmp_path: Path) -> None:
    source = tmp_path / "báo cáo.pdf"
    source.write_bytes(b"%PDF-1.4 demo " * 100)
    edoc = _edoc(attachments=1)
    attachment = replace(edoc.attachments[0], content_type="application/zip")
    edoc = replace(edoc, attachments=(attachment,))
    out = io.BytesIO()
    written = write_package(edoc, out, files={attachment.content_id: source})
    assert written.package.attachments[0].data.unwrapped_zip  # type: ignore[union-attr]
    again = read_package(out.getvalue()).package
    assert isinstance(again, m.EdocPackage)
    assert again.attachments[0].data.unwrapped_zip
    assert again.attachments[0].data.size == source.stat().st_size
    assert again == written.package


# --- property: any strict model survives build → parse unchanged --------------------------------

_TEXT = (
    st.text(
        alphabet=st.characters(
            whitelist_categories=("L", "N"), whitelist_characters=" -.,/()ĐđàáạảãăâêôơưÀÁẠ"
        ),
        min_size=1,
        max_size=40,
    )
    .map(str.strip)
    .filter(bool)
)
_CODES = st.builds(
    lambda l1, l2, l3: f"000.{l3:02d}.{l2:02d}.{l1}" if l2 or not l3 else f"000.00.{l2:02d}.{l1}",
    st.sampled_from(["H53", "G22", "A53", "H41"]),
    st.integers(0, 99),
    st.integers(0, 99),
)
_DATES = st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31))
_TIMES = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 1, 1)).map(
    lambda d: d.replace(microsecond=0, tzinfo=VN_TZ)
)
_ORGS = st.builds(
    m.Organization, organ_id=_CODES, organ_name=_TEXT, organ_add=st.none() | _TEXT, email=st.none()
)
_STAFF = st.none() | st.builds(
    m.StaffInfo, department=_TEXT, staff=_TEXT, mobile=st.none() | st.from_regex(r"\A[0-9]{9,11}\Z")
)


@st.composite
def edoc_packages(draw: st.DrawFn) -> m.EdocPackage:
    sender = draw(_ORGS)
    code = m.Code(draw(st.from_regex(r"\A[0-9]{1,6}\Z")), draw(st.from_regex(r"\A[A-Z]{2,5}-[A-Z]{2,5}\Z")))
    promulgated = draw(_DATES)
    doc_type = draw(st.sampled_from(BusinessDocType))
    business = m.Business(
        doc_type,
        document_id=None if doc_type is BusinessDocType.NEW else f"{sender.organ_id},2020/01/01,1/X",
        reason=doc_type.default_reason,
        paper=draw(st.sampled_from([None, 0, 1])),
        document_info=m.BusinessDocumentInfo(
            1, 1, (m.Receiver(draw(_CODES), draw(st.sampled_from(ReceiverType))),)
        )
        if doc_type is BusinessDocType.UPDATE
        else None,
        replacements=(m.ReplacementInfo("000.00.00.G22,2014/01/30,7806/VPCP", (draw(_CODES),)),)
        if doc_type is BusinessDocType.REPLACE
        else (),
        staff_info=draw(_STAFF),
    )
    header = m.EdocHeader(
        from_=sender,
        to=tuple(draw(st.lists(_ORGS, min_size=1, max_size=3, unique_by=lambda o: o.organ_id))),
        document_id=m.canonical_document_id(sender.organ_id, promulgated, code),
        subject=draw(_TEXT),
        code=code,
        promulgation_info=m.PromulgationInfo(promulgated, draw(st.none() | _TEXT)),
        document_type=m.DocumentType(
            draw(st.sampled_from([1, 2])), draw(_TEXT), draw(st.none() | st.integers(0, 9))
        ),
        content=draw(st.none() | _TEXT),
        signer_info=m.SignerInfo(draw(_TEXT), draw(st.none() | _TEXT), draw(st.none() | _TEXT)),
        due_date=draw(st.none() | _DATES),
        other_info=m.OtherInfo(
            priority=draw(st.sampled_from(Priority)),
            sphere_of_promulgation=draw(st.none() | _TEXT),
            promulgation_amount=draw(st.none() | st.integers(0, 999)),
            page_amount=draw(st.none() | st.integers(0, 999)),
            direction=draw(st.none() | st.booleans()),
            appendixes=tuple(draw(st.lists(_TEXT, max_size=2))),
        ),
        response_for=tuple(
            draw(
                st.lists(
                    st.builds(
                        m.ResponseFor,
                        organ_id=_CODES,
                        code=st.just("1/X"),
                        promulgation_date=_DATES,
                        document_id=st.just("000.00.00.G22,2020/01/01,1/X"),
                    ),
                    max_size=2,
                )
            )
        ),
        steering_type=draw(st.none() | st.sampled_from(SteeringType)),
        to_places=tuple(draw(st.lists(_TEXT, max_size=2))),
    )
    return m.EdocPackage(header, (m.TraceHeader(sender.organ_id, draw(_TIMES)),), business)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edoc_packages())
def test_any_strict_edoc_round_trips(package: m.EdocPackage) -> None:
    out = io.BytesIO()
    written = write_package(package, out)
    assert written.package == package
    result = read_package(out.getvalue())
    assert result.package == package
    assert result.warnings == ()


@settings(max_examples=60, deadline=None)
@given(
    st.builds(
        m.StatusPackage,
        from_=_ORGS,
        response_for=st.builds(
            m.ResponseFor,
            organ_id=_CODES,
            code=st.just("2491/STC-BCTC"),
            promulgation_date=st.none() | _DATES,
            document_id=st.none() | st.just("x,y,z"),
        ),
        status_code=st.sampled_from(StatusCode),
        timestamp=_TIMES,
        staff_info=_STAFF,
        description=st.none() | _TEXT,
    )
)
def test_any_status_round_trips(package: m.StatusPackage) -> None:
    out = io.BytesIO()
    write_package(package, out)
    result = read_package(out.getvalue())
    assert result.package == package
    assert (
        b"<edXML:StatusCode>" + package.status_code.value.encode() + b"</edXML:StatusCode>" in out.getvalue()
    )


def _edoc(attachments: int = 0) -> m.EdocPackage:
    sender = m.Organization("000.00.11.H53", organ_name="Sở Tài chính")
    code = m.Code("1", "STC")
    header = m.EdocHeader(
        from_=sender,
        to=(m.Organization("000.00.01.A53", organ_name="Văn phòng Tỉnh ủy"),),
        document_id=m.canonical_document_id(sender.organ_id, date(2026, 11, 20), code),
        subject="Thử",
        code=code,
        promulgation_info=m.PromulgationInfo(date(2026, 11, 20)),
        document_type=m.DocumentType(1, "Công văn"),
        signer_info=m.SignerInfo("Nguyễn Văn A"),
    )
    refs = tuple(m.ManifestReference(f"f{i}", "báo cáo.pdf", "application/pdf") for i in range(attachments))
    atts = tuple(
        m.Attachment(f"f{i}", "báo cáo.pdf", "application/pdf", m.AttachmentData(0, ""))
        for i in range(attachments)
    )
    trace = (m.TraceHeader(sender.organ_id, datetime(2026, 11, 20, 8, 0, tzinfo=VN_TZ)),)
    return m.EdocPackage(header, trace, m.Business(BusinessDocType.NEW), refs, atts)
