"""Every shared real-world sample gets its expected verdict and warnings; bad packages get their codes."""

from __future__ import annotations

import base64
import io
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from esb.domain.edxml_enums import BusinessDocType, Priority, ReceiverType, StatusCode, SteeringType
from esb.domain.edxml_model import EdocPackage, StatusPackage
from esb.errors import EdxmlInvalid, XmlInputError
from esb.xml_processing.attachments import AttachmentPolicy
from esb.xml_processing.edxml_reader import read_package

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "samples" / "edxml"
STATUS_ORDER = {"W.ElementOrder": 3}  # VXP status fixtures: From, ResponseFor and StaffInfo out of A3 order

# file -> (kind, Counter of warning codes)
ACCEPTED = {
    "mic_edoc_minimal_gateway_test.edxml": (
        "edoc",
        {"W.OrganIdFormat": 2, "W.MissingRecommended": 3, "W.DocumentIdFormat": 1},
    ),
    "mic_edoc_new_bdt0.edxml": (
        "edoc",
        {"W.EmptyElement": 13, "W.DateFormat": 1, "W.SignatureNamespace": 1},
    ),
    "mic_edoc_new_bdt0_vpcp_original.edxml": (
        "edoc",
        {"W.OrganIdFormat": 1, "W.DocumentIdSender": 1, "W.SignatureNamespace": 1},
    ),
    "mic_edoc_new_multi_recipient_zipped_edxml_attachment.edxml": (
        "edoc",
        {"W.ElementOrder": 1, "W.SignatureNamespace": 1},
    ),
    "mic_edoc_received_via_axis_2_traces.edxml": (
        "edoc",
        {
            "W.DocumentIdFormat": 1,
            "W.OrganIdFormat": 2,
            "W.MissingRecommended": 1,
            "W.SignatureNamespace": 1,
            "W.EmptyElement": 1,
        },
    ),
    "mic_edoc_replacement_bdt3.edxml": ("edoc", {"W.SignatureNamespace": 1}),
    "mic_edoc_revocation_bdt1.edxml": (
        "edoc",
        {"W.MissingRecommended": 1, "W.SignatureNamespace": 1, "W.ElementOrder": 1},
    ),
    "mic_edoc_update_bdt2.edxml": ("edoc", {"W.SignatureNamespace": 1}),
    "mic_status_01_alt.edxml": ("status", {}),
    **{
        f"mic_status_{name}.edxml": ("status", STATUS_ORDER)
        for name in (
            "01_inbox",
            "02_rejection",
            "03_acceptance",
            "04_assignment",
            "05_processing",
            "06_finish",
            "13_cancellation",
            "15_change_acceptance",
            "16_change_rejection",
        )
    },
}
REFUSED = {
    "ANTIEXAMPLE_mic_edoc_corrupted_binary.edxml": "Client.EdxmlAttachmentCorrupted",
    "mic_edoc_vxp_sdk_template_placeholder.edxml": "Client.XmlNotNamespaceWellFormed",
}


def test_the_table_covers_every_shared_sample() -> None:
    assert {p.name for p in SAMPLES.glob("*.edxml")} == set(ACCEPTED) | set(REFUSED)


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_accepted_sample(name: str) -> None:
    kind, expected = ACCEPTED[name]
    result = read_package(SAMPLES / name)
    assert result.package.kind.value == kind
    assert Counter(w.code for w in result.warnings) == Counter(expected)
    assert all(w.path.startswith("/edXML") for w in result.warnings)
    assert result.size == (SAMPLES / name).stat().st_size


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_sample(name: str) -> None:
    with pytest.raises((EdxmlInvalid, XmlInputError)) as caught:
        read_package(SAMPLES / name)
    assert caught.value.code == REFUSED[name]


def test_anti_example_reports_every_finding() -> None:
    with pytest.raises(EdxmlInvalid) as caught:
        read_package(SAMPLES / "ANTIEXAMPLE_mic_edoc_corrupted_binary.edxml")
    codes = {(i.code, i.path) for i in caught.value.issues}
    assert (
        "W.NullLiteral",
        "/edXML/edXMLEnvelope/edXMLHeader/TraceHeaderList/TraceHeader[1]/OrganId",
    ) in codes
    assert ("W.IncompleteElement", "/edXML/edXMLEnvelope/edXMLHeader/TraceHeaderList/TraceHeader[2]") in codes


def test_date_deviation_is_read_and_reported() -> None:
    result = read_package(SAMPLES / "mic_edoc_new_bdt0.edxml")
    assert isinstance(result.package, EdocPackage)
    assert result.package.header.promulgation_info is not None
    assert str(result.package.header.promulgation_info.promulgation_date) == "2020-10-30"
    paths = [w.path for w in result.warnings if w.code == "W.DateFormat"]
    assert paths == ["/edXML/edXMLEnvelope/edXMLHeader/MessageHeader/PromulgationInfo/PromulgationDate"]


def test_update_business_block() -> None:
    package = read_package(SAMPLES / "mic_edoc_update_bdt2.edxml").package
    assert isinstance(package, EdocPackage)
    assert package.business is not None
    assert package.business.doc_type is BusinessDocType.UPDATE
    info = package.business.document_info
    assert info is not None
    assert [(r.organ_id, r.receiver_type) for r in info.receivers] == [
        ("000.00.00.H41", ReceiverType.REMOVED),
        ("000.00.00.H14", ReceiverType.ADDED),
    ]


def test_replacement_business_block() -> None:
    package = read_package(SAMPLES / "mic_edoc_replacement_bdt3.edxml").package
    assert isinstance(package, EdocPackage)
    assert package.business is not None
    assert package.business.doc_type is BusinessDocType.REPLACE
    assert len(package.business.replacements) == 2
    assert package.business.replacements[0].organ_ids == ("000.00.00.H41", "000.00.00.H14")


def test_multi_recipient_header_and_order_insensitivity() -> None:
    package = read_package(SAMPLES / "mic_edoc_new_multi_recipient_zipped_edxml_attachment.edxml").package
    assert isinstance(package, EdocPackage)
    assert [t.organ_id for t in package.header.to] == ["000.00.00.H41", "000.00.00.H14", "000.00.00.G17"]
    assert package.trace_headers[0].organ_id == "000.00.00.G22"  # Bussiness came first in the file
    assert package.header.priority is Priority.THUONG
    assert package.header.steering_type is SteeringType.STEERING


def test_two_traces_kept_in_order() -> None:
    package = read_package(SAMPLES / "mic_edoc_received_via_axis_2_traces.edxml").package
    assert isinstance(package, EdocPackage)
    assert [t.organ_id for t in package.trace_headers] == ["01.02.G22", "001.00.20.TT2"]
    assert package.header.response_for == ()


def test_status_13_direction_is_kept() -> None:
    package = read_package(SAMPLES / "mic_status_13_cancellation.edxml").package
    assert isinstance(package, StatusPackage)
    assert package.status_code is StatusCode.RECALL_REQUESTED
    assert package.status_code.sent_by_original_sender
    assert package.from_.organ_id == "000.00.00.G22"
    assert package.response_for.organ_id == "000.00.00.H41"


def test_vnpt_zip_convention_is_unwrapped(tmp_path: Path) -> None:
    result = read_package(
        SAMPLES / "mic_edoc_minimal_gateway_test.edxml", attachments=AttachmentPolicy(extract_dir=tmp_path)
    )
    assert isinstance(result.package, EdocPackage)
    attachment = result.package.attachments[0]
    assert attachment.data.unwrapped_zip
    assert attachment.data.encoded_size > 0
    assert attachment.data.encoded_sha256 != attachment.data.sha256
    assert (tmp_path / "clean.txt").read_bytes()
    assert attachment.data.location == str(tmp_path / "clean.txt")
    assert [p.name for p in tmp_path.iterdir()] == ["clean.txt"]  # no spool files left behind


def test_declared_zip_in_manifest_is_kept_as_zip() -> None:
    package = read_package(SAMPLES / "mic_edoc_new_bdt0_vpcp_original.edxml").package
    assert isinstance(package, EdocPackage)
    assert not package.attachments[0].data.unwrapped_zip


# --- hand-made packages: the lenient rules and the bad-package catalogue --------------------------

NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"


def edoc(
    message: str = "", *, trace: str | None = None, body: str = "", attachments: str = "", root: str = ""
) -> bytes:
    trace_xml = (
        trace
        if trace is not None
        else (
            "<edXML:TraceHeaderList><edXML:TraceHeader><edXML:OrganId>000.00.11.H53</edXML:OrganId>"
            "<edXML:Timestamp>2026/11/20 10:00:00</edXML:Timestamp></edXML:TraceHeader>"
            "<edXML:Bussiness><edXML:BussinessDocType>0</edXML:BussinessDocType></edXML:Bussiness>"
            "</edXML:TraceHeaderList>"
        )
    )
    message_xml = message or (
        "<edXML:From><edXML:OrganId>000.00.11.H53</edXML:OrganId></edXML:From>"
        "<edXML:To><edXML:OrganId>000.00.01.A53</edXML:OrganId></edXML:To>"
        "<edXML:DocumentId>000.00.11.H53,2026/11/20,1/STC</edXML:DocumentId>"
        "<edXML:Code><edXML:CodeNumber>1</edXML:CodeNumber><edXML:CodeNotation>STC</edXML:CodeNotation></edXML:Code>"
        "<edXML:PromulgationInfo><edXML:PromulgationDate>2026/11/20</edXML:PromulgationDate></edXML:PromulgationInfo>"
        "<edXML:Subject>Thử</edXML:Subject>"
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><edXML xmlns="{NS}" {root}>'
        f'<edXML:edXMLEnvelope xmlns:edXML="{NS}"><edXML:edXMLHeader><edXML:MessageHeader>{message_xml}'
        f"</edXML:MessageHeader>{trace_xml}</edXML:edXMLHeader>{body}</edXML:edXMLEnvelope>{attachments}</edXML>"
    ).encode()


def with_attachment(
    payload: str, *, cid: str = "cid:f1", manifest_cid: str = "cid:f1", ctype: str = "text/plain"
) -> bytes:
    body = (
        "<edXML:edXMLBody><edXML:edXMLManifest version='1.0'><edXML:Reference>"
        f"<edXML:ContentId>{manifest_cid}"
        f"</edXML:ContentId><edXML:ContentType>{ctype}</edXML:ContentType>"
        "<edXML:AttachmentName>a.txt</edXML:AttachmentName></edXML:Reference></edXML:edXMLManifest></edXML:edXMLBody>"
    )
    attachments = (
        f"<AttachmentEncoded><Attachment><ContentId>{cid}</ContentId><AttachmentName>a.txt</AttachmentName>"
        f"<ContentType>{ctype}</ContentType><ContentTransferEncoded>{payload}</ContentTransferEncoded>"
        "</Attachment></AttachmentEncoded>"
    )
    return edoc(body=body, attachments=attachments)


def codes_of(data: bytes) -> set[str]:
    try:
        return {w.code for w in read_package(data).warnings}
    except EdxmlInvalid as exc:
        return {i.code for i in exc.issues}


def refused_with(data: bytes) -> str:
    with pytest.raises((EdxmlInvalid, XmlInputError)) as caught:
        read_package(data)
    return caught.value.code


def test_minimal_handmade_edoc_is_clean() -> None:
    result = read_package(edoc())
    assert result.warnings == ()
    assert isinstance(result.package, EdocPackage)
    assert result.package.header.subject == "Thử"


def test_wrong_root() -> None:
    assert refused_with(b'<Envelope xmlns="urn:x"><a/></Envelope>') == "Client.EdxmlWrongRoot"


def test_foreign_root_namespace() -> None:
    assert refused_with(b'<edXML xmlns="urn:other"><x/></edXML>') == "Client.EdxmlWrongNamespace"


def test_pre_2016_variant_is_named() -> None:
    data = b'<edXML:edXML xmlns:edXML="http://www.e-doc.vn/Schema/"><edXML:MessageHeader/></edXML:edXML>'
    assert refused_with(data) == "Client.EdxmlUnsupportedVariant"


def test_missing_envelope() -> None:
    assert refused_with(f'<edXML xmlns="{NS}"></edXML>'.encode()) == "Client.EdxmlMissingElement"


def test_status_without_status_code() -> None:
    message = (
        "<edXML:From><edXML:OrganId>000.00.00.H41</edXML:OrganId></edXML:From>"
        "<edXML:ResponseFor><edXML:OrganId>000.00.00.G22</edXML:OrganId><edXML:Code>1/X</edXML:Code></edXML:ResponseFor>"
        "<edXML:Timestamp>2026/11/20 10:00:00</edXML:Timestamp>"
    )
    assert refused_with(edoc(message, trace="")) == "Client.EdxmlStatusCodeMissing"


@pytest.mark.parametrize(
    ("raw", "outcome"),
    [("3", ("03", "W.StatusCodePadding")), ("14", ("15", "W.StatusCodeAlias")), ("06", ("06", None))],
)
def test_status_code_forms(raw: str, outcome: tuple[str, str | None]) -> None:
    message = (
        "<edXML:From><edXML:OrganId>000.00.00.H41</edXML:OrganId></edXML:From>"
        "<edXML:ResponseFor><edXML:OrganId>000.00.00.G22</edXML:OrganId><edXML:Code>1/X</edXML:Code></edXML:ResponseFor>"
        f"<edXML:StatusCode>{raw}</edXML:StatusCode><edXML:Timestamp>2026/11/20 10:00:00</edXML:Timestamp>"
    )
    result = read_package(edoc(message, trace=""))
    assert isinstance(result.package, StatusPackage)
    assert result.package.status_code.value == outcome[0]
    assert ({w.code for w in result.warnings} == {outcome[1]}) if outcome[1] else result.warnings == ()


def test_unknown_status_code() -> None:
    message = (
        "<edXML:From><edXML:OrganId>000.00.00.H41</edXML:OrganId></edXML:From>"
        "<edXML:ResponseFor><edXML:OrganId>000.00.00.G22</edXML:OrganId></edXML:ResponseFor>"
        "<edXML:StatusCode>09</edXML:StatusCode><edXML:Timestamp>2026/11/20 10:00:00</edXML:Timestamp>"
    )
    assert refused_with(edoc(message, trace="")) == "Client.EdxmlStatusCodeUnknown"


def test_edoc_without_recipient() -> None:
    message = (
        "<edXML:From><edXML:OrganId>000.00.11.H53</edXML:OrganId></edXML:From>"
        "<edXML:DocumentId>x</edXML:DocumentId><edXML:Subject>s</edXML:Subject>"
    )
    with pytest.raises(EdxmlInvalid) as caught:
        read_package(edoc(message))
    assert caught.value.code == "Client.EdxmlMissingElement"
    assert any(i.path.endswith("/MessageHeader/To") for i in caught.value.issues)


def test_single_s_business_spelling_and_unprefixed_elements() -> None:
    trace = (
        "<edXML:TraceHeaderList><edXML:TraceHeader><edXML:OrganId>000.00.11.H53</edXML:OrganId>"
        "<edXML:Timestamp>20/11/2026 10:00:00</edXML:Timestamp></edXML:TraceHeader>"
        "<edXML:Business><edXML:BusinessDocType>1</edXML:BusinessDocType>"
        "<edXML:DocumentId>000.00.11.H53,2026/11/01,9/STC</edXML:DocumentId></edXML:Business></edXML:TraceHeaderList>"
    )
    result = read_package(edoc(trace=trace))
    assert isinstance(result.package, EdocPackage)
    assert result.package.business is not None
    assert result.package.business.doc_type is BusinessDocType.REVOKE
    codes = Counter(w.code for w in result.warnings)
    assert codes["W.BusinessSpelling"] == 2
    assert codes["W.DateFormat"] == 1
    assert codes["W.ElementOrder"] == 1  # DocumentId belongs before BussinessDocType


def test_elements_in_no_namespace_are_accepted_with_one_warning() -> None:
    data = (
        edoc()
        .replace(b"edXML:", b"")
        .replace(f' xmlns:edXML="{NS}"'.encode(), b"")
        .replace(f'xmlns="{NS}"'.encode(), b"")
    )
    result = read_package(data)
    assert [w.code for w in result.warnings] == ["W.NoNamespace"]


def test_unknown_elements_are_reported_and_ignored() -> None:
    message = edoc().decode().replace("<edXML:Subject>", "<edXML:Colour>blue</edXML:Colour><edXML:Subject>")
    result = read_package(message.encode())
    assert [(w.code, w.path) for w in result.warnings] == [
        ("W.UnknownElement", "/edXML/edXMLEnvelope/edXMLHeader/MessageHeader/Colour")
    ]


def test_text_where_elements_belong_is_an_error() -> None:
    message = (
        edoc()
        .decode()
        .replace("<edXML:Subject>Thử</edXML:Subject>", "<edXML:Subject><b>x</b></edXML:Subject>")
    )
    assert refused_with(message.encode()) == "Client.EdxmlStructure"


def test_attachment_join_strips_cid_and_reports_missing_prefix() -> None:
    data = with_attachment(base64.b64encode(b"hello").decode(), cid="f1")
    result = read_package(data)
    assert isinstance(result.package, EdocPackage)
    assert result.package.attachments[0].content_id == "f1"
    assert {w.code for w in result.warnings} == {"W.ContentIdPrefix"}


def test_manifest_reference_without_attachment() -> None:
    assert refused_with(with_attachment("aGVsbG8=", cid="cid:other")) == "Client.EdxmlAttachmentMissing"


@pytest.mark.parametrize(
    "payload", ["aGVsbG8", "aGVs*G8=", "aGVsbG8=aGVsbG8=", "${__StringFromFile(test.txt,,,)}"]
)
def test_bad_base64(payload: str) -> None:
    assert refused_with(with_attachment(payload)) == "Client.EdxmlAttachmentBase64"


def test_base64_with_line_breaks_is_accepted_with_warning() -> None:
    encoded = base64.encodebytes(b"x" * 200).decode()  # 76-character lines
    result = read_package(with_attachment(encoded))
    assert isinstance(result.package, EdocPackage)
    assert result.package.attachments[0].data.size == 200
    assert "W.Base64LineBreaks" in {w.code for w in result.warnings}


def test_corrupted_binary_detected_in_handmade_package() -> None:
    corrupted = bytes(range(128, 256)).decode("utf-8", "replace").encode() * 4
    data = with_attachment(base64.b64encode(corrupted).decode(), ctype="application/pdf")
    assert refused_with(data) == "Client.EdxmlAttachmentCorrupted"


def test_zip_with_several_files_is_kept_as_is() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.txt", "a")
        archive.writestr("b.txt", "b")
    data = with_attachment(base64.b64encode(buffer.getvalue()).decode(), ctype="application/zip")
    data = data.replace(b"<edXML:ContentType>application/zip", b"<edXML:ContentType>text/plain")
    result = read_package(data)
    assert isinstance(result.package, EdocPackage)
    assert not result.package.attachments[0].data.unwrapped_zip
    assert "W.ZipNotSingleEntry" in {w.code for w in result.warnings}


def test_attachment_larger_than_libxml2_text_limit(tmp_path: Path) -> None:
    raw = bytes(range(256)) * (48 * 1024)  # 12 MiB decoded, 16 MiB of base64 text in one node
    result = read_package(with_attachment(base64.b64encode(raw).decode(), ctype="application/octet-stream"))
    assert isinstance(result.package, EdocPackage)
    assert result.package.attachments[0].data.size == len(raw)


def test_signature_in_xmldsig_namespace_is_recognised() -> None:
    data = (
        edoc()
        .decode()
        .replace(
            "</edXML:TraceHeaderList>",
            '</edXML:TraceHeaderList><Signature xmlns="http://www.w3.org/2000/09/xmldsig#"><SignedInfo>'
            '<SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/></SignedInfo></Signature>',
        )
    )
    result = read_package(data.encode())
    assert isinstance(result.package, EdocPackage)
    assert result.package.signature is not None
    assert result.package.signature.in_xmldsig_namespace
    assert result.warnings == ()
