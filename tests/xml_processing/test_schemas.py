"""The schema registry and the two project-written edXML schemas (xsd/CATALOG.md)."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from lxml import etree

from esb.errors import ConfigurationError
from esb.xml_processing.schemas import SchemaName, SchemaRegistry, SchemaViolation

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLES_DIR = REPO_ROOT.parent / "shared" / "samples" / "edxml"
NOT_NAMESPACE_WELL_FORMED = "mic_edoc_vxp_sdk_template_placeholder.edxml"
# The one real sample written exactly in the A3 order with every value well formed.
STRICT_VALID_SAMPLES = {"mic_status_01_alt.edxml"}

QCVN_NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
HEADER = "/edXML/edXMLEnvelope/edXMLHeader/MessageHeader"

needs_samples = pytest.mark.skipif(not SAMPLES_DIR.is_dir(), reason=f"samples not found at {SAMPLES_DIR}")


def _sample_files() -> list[Path]:
    if not SAMPLES_DIR.is_dir():
        return []
    return sorted(p for p in SAMPLES_DIR.glob("*.edxml") if p.name != NOT_NAMESPACE_WELL_FORMED)


# Canonical layout (reference 3.1): default namespace on the root, edXML: prefix from the envelope
# down, unprefixed AttachmentEncoded, prefixed ContentTransferEncoded; A3 element order (3.2).
CANONICAL_EDOC = """<?xml version="1.0" encoding="UTF-8"?>
<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016">
  <edXML:edXMLEnvelope xmlns:edXML="http://www.mic.gov.vn/TBT/QCVN_102_2016">
    <edXML:edXMLHeader>
      <edXML:MessageHeader>
        <edXML:From>
          <edXML:OrganId>000.00.00.H53</edXML:OrganId>
          <edXML:OrganizationInCharge>Ủy ban nhân dân tỉnh Tây Ninh</edXML:OrganizationInCharge>
          <edXML:OrganName>Văn phòng Ủy ban nhân dân tỉnh Tây Ninh</edXML:OrganName>
          <edXML:OrganAdd>Số 83 Phạm Tung, Phường 3, Thành phố Tây Ninh</edXML:OrganAdd>
          <edXML:Email>vpubnd@tayninh.gov.vn</edXML:Email>
          <edXML:Telephone>0276 3822 222</edXML:Telephone>
          <edXML:Fax>0276 3822 333</edXML:Fax>
          <edXML:Website>https://tayninh.gov.vn</edXML:Website>
        </edXML:From>
        <edXML:To>
          <edXML:OrganId>000.00.11.H53</edXML:OrganId>
          <edXML:OrganName>Sở Tài chính tỉnh Tây Ninh</edXML:OrganName>
          <edXML:OrganAdd>Tây Ninh</edXML:OrganAdd>
        </edXML:To>
        <edXML:DocumentId>000.00.00.H53,2024/03/15,125/UBND-KT</edXML:DocumentId>
        <edXML:Code>
          <edXML:CodeNumber>125</edXML:CodeNumber>
          <edXML:CodeNotation>UBND-KT</edXML:CodeNotation>
        </edXML:Code>
        <edXML:PromulgationInfo>
          <edXML:Place>Tây Ninh</edXML:Place>
          <edXML:PromulgationDate>2024/03/15</edXML:PromulgationDate>
        </edXML:PromulgationInfo>
        <edXML:DocumentType>
          <edXML:Type>1</edXML:Type>
          <edXML:TypeDetail>0</edXML:TypeDetail>
          <edXML:TypeName>Công văn</edXML:TypeName>
        </edXML:DocumentType>
        <edXML:Subject>V/v báo cáo tình hình thực hiện dự toán ngân sách quý I năm 2024</edXML:Subject>
        <edXML:Content>Đề nghị Sở Tài chính báo cáo trước ngày 29/3/2024</edXML:Content>
        <edXML:SignerInfo>
          <edXML:Competence>KT. CHỦ TỊCH</edXML:Competence>
          <edXML:Position>Phó Chủ tịch</edXML:Position>
          <edXML:FullName>Nguyễn Văn An</edXML:FullName>
        </edXML:SignerInfo>
        <edXML:DueDate>2024/03/29</edXML:DueDate>
        <edXML:OtherInfo>
          <edXML:Priority>1</edXML:Priority>
          <edXML:SphereOfPromulgation>Lưu hành nội bộ</edXML:SphereOfPromulgation>
          <edXML:TyperNotation>TVC</edXML:TyperNotation>
          <edXML:PromulgationAmount>2</edXML:PromulgationAmount>
          <edXML:PageAmount>3</edXML:PageAmount>
          <edXML:Direction>false</edXML:Direction>
          <edXML:Appendixes>
            <edXML:Appendix>Phụ lục I</edXML:Appendix>
          </edXML:Appendixes>
        </edXML:OtherInfo>
        <edXML:ResponseFor>
          <edXML:OrganId>000.00.11.H53</edXML:OrganId>
          <edXML:Code>88/STC-NS</edXML:Code>
          <edXML:PromulgationDate>2024/03/01</edXML:PromulgationDate>
          <edXML:DocumentId>000.00.11.H53,2024/03/01,88/STC-NS</edXML:DocumentId>
        </edXML:ResponseFor>
        <edXML:SteeringType>0</edXML:SteeringType>
        <edXML:ToPlaces>
          <edXML:Place>Như trên</edXML:Place>
          <edXML:Place>Lưu: VT, KT</edXML:Place>
        </edXML:ToPlaces>
      </edXML:MessageHeader>
      <edXML:TraceHeaderList>
        <edXML:TraceHeader>
          <edXML:OrganId>000.00.00.H53</edXML:OrganId>
          <edXML:Timestamp>2024/03/15 09:30:00</edXML:Timestamp>
        </edXML:TraceHeader>
        <edXML:Bussiness>
          <edXML:BussinessDocType>0</edXML:BussinessDocType>
          <edXML:BussinessDocReason>Văn bản điện tử mới</edXML:BussinessDocReason>
          <edXML:Paper>0</edXML:Paper>
        </edXML:Bussiness>
      </edXML:TraceHeaderList>
    </edXML:edXMLHeader>
    <edXML:edXMLBody>
      <edXML:edXMLManifest version="1.0">
        <edXML:Reference>
          <edXML:ContentId>cid:6f1c2a9e-3b7d-4c55-9a0e-2f4b8d7c1e90</edXML:ContentId>
          <edXML:ContentType>application/pdf</edXML:ContentType>
          <edXML:Description>Công văn 125/UBND-KT</edXML:Description>
          <edXML:AttachmentName>125_UBND-KT.pdf</edXML:AttachmentName>
        </edXML:Reference>
      </edXML:edXMLManifest>
    </edXML:edXMLBody>
  </edXML:edXMLEnvelope>
  <AttachmentEncoded>
    <Attachment>
      <ContentId>cid:6f1c2a9e-3b7d-4c55-9a0e-2f4b8d7c1e90</ContentId>
      <AttachmentName>125_UBND-KT.pdf</AttachmentName>
      <Description>Công văn 125/UBND-KT</Description>
      <ContentType>application/pdf</ContentType>
      <edXML:ContentTransferEncoded xmlns:edXML="http://www.mic.gov.vn/TBT/QCVN_102_2016">JVBERi0xLjQKJeLjz9MK</edXML:ContentTransferEncoded>
    </Attachment>
  </AttachmentEncoded>
</edXML>
"""

CANONICAL_STATUS = """<?xml version="1.0" encoding="UTF-8"?>
<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016">
  <edXML:edXMLEnvelope xmlns:edXML="http://www.mic.gov.vn/TBT/QCVN_102_2016">
    <edXML:edXMLHeader>
      <edXML:MessageHeader>
        <edXML:From>
          <edXML:OrganId>000.00.11.H53</edXML:OrganId>
          <edXML:OrganizationInCharge>Ủy ban nhân dân tỉnh Tây Ninh</edXML:OrganizationInCharge>
          <edXML:OrganName>Sở Tài chính tỉnh Tây Ninh</edXML:OrganName>
          <edXML:OrganAdd>Tây Ninh</edXML:OrganAdd>
        </edXML:From>
        <edXML:ResponseFor>
          <edXML:OrganId>000.00.00.H53</edXML:OrganId>
          <edXML:Code>125/UBND-KT</edXML:Code>
          <edXML:DocumentId>000.00.00.H53,2024/03/15,125/UBND-KT</edXML:DocumentId>
          <edXML:PromulgationDate>2024/03/15</edXML:PromulgationDate>
        </edXML:ResponseFor>
        <edXML:StaffInfo>
          <edXML:Department>Văn thư</edXML:Department>
          <edXML:Staff>Trần Thị Bình</edXML:Staff>
          <edXML:Email>vanthu.stc@tayninh.gov.vn</edXML:Email>
          <edXML:Mobile>0912000001</edXML:Mobile>
        </edXML:StaffInfo>
        <edXML:StatusCode>03</edXML:StatusCode>
        <edXML:Description>Tiếp nhận văn bản điện tử, vào sổ văn bản đến của đơn vị</edXML:Description>
        <edXML:Timestamp>2024/03/15 10:05:41</edXML:Timestamp>
      </edXML:MessageHeader>
    </edXML:edXMLHeader>
  </edXML:edXMLEnvelope>
</edXML>
"""

XMLDSIG_SIGNATURE = """<Signature xmlns="http://www.w3.org/2000/09/xmldsig#">
        <SignedInfo>
          <CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>
          <SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>
          <Reference URI="">
            <DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>
            <DigestValue>AAAA</DigestValue>
          </Reference>
        </SignedInfo>
        <SignatureValue>AAAA</SignatureValue>
      </Signature>
    </edXML:edXMLHeader>"""


def _parse(text: str) -> etree._ElementTree:
    return etree.ElementTree(etree.fromstring(text.encode("utf-8")))


def _mutate(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"test data must contain {old!r} exactly once"
    return text.replace(old, new)


def _paths(violations: list[SchemaViolation]) -> list[str]:
    return [v.path for v in violations]


@pytest.fixture(scope="module")
def registry() -> SchemaRegistry:
    return SchemaRegistry.default()


# ------------------------------------------------------------------------------------------------
# Compilation and the local-only resolver
# ------------------------------------------------------------------------------------------------


def test_default_registry_uses_repository_xsd_dir(registry: SchemaRegistry) -> None:
    assert registry.xsd_dir == REPO_ROOT / "xsd"


def test_check_all_compiles_every_schema(registry: SchemaRegistry) -> None:
    registry.check_all()


@pytest.mark.parametrize("name", list(SchemaName))
def test_each_schema_compiles_and_validates(registry: SchemaRegistry, name: SchemaName) -> None:
    assert (REPO_ROOT / "xsd" / name.value).is_file()
    violations = registry.validate(name, etree.fromstring(b"<notEdxml/>"))
    assert violations
    assert violations[0].path == "/notEdxml"


def _write_schema(xsd_dir: Path, body: str) -> None:
    for name in SchemaName:
        path = xsd_dir / name.value
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:test">'
            f"{body}"
            '<xs:element name="r" type="xs:string"/></xs:schema>',
            encoding="utf-8",
        )


def test_tiny_local_schema_compiles(tmp_path: Path) -> None:
    _write_schema(tmp_path, "")
    SchemaRegistry(tmp_path).check_all()


@pytest.mark.parametrize(
    "location",
    [
        "http://example.invalid/remote.xsd",
        "https://example.invalid/remote.xsd",
        "ftp://example.invalid/r.xsd",
    ],
)
def test_schema_importing_a_remote_url_is_refused(tmp_path: Path, location: str) -> None:
    _write_schema(tmp_path, f'<xs:import namespace="urn:remote" schemaLocation="{location}"/>')
    with pytest.raises(ConfigurationError) as info:
        SchemaRegistry(tmp_path).check_all()
    assert info.value.code == "Server.Configuration"
    assert location in info.value.message
    assert SchemaName.EDXML_STRICT.value in info.value.message


def test_schema_including_a_file_outside_the_xsd_dir_is_refused(tmp_path: Path) -> None:
    xsd_dir = tmp_path / "xsd"
    (tmp_path / "outside.xsd").write_text(
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:test"/>',
        encoding="utf-8",
    )
    _write_schema(xsd_dir, '<xs:include schemaLocation="../../../../outside.xsd"/>')
    with pytest.raises(ConfigurationError, match=r"outside\.xsd"):
        SchemaRegistry(xsd_dir).check_all()


def test_missing_schema_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"edxml-strict\.xsd"):
        SchemaRegistry(tmp_path).check_all()


def test_broken_schema_names_the_file(tmp_path: Path) -> None:
    _write_schema(tmp_path, '<xs:element name="bad" type="undefined:Type"/>')
    with pytest.raises(ConfigurationError, match=r"edxml-strict\.xsd"):
        SchemaRegistry(tmp_path).check_all()
    path = tmp_path / SchemaName.EDXML_STRICT.value
    path.write_text("<xs:schema", encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"edxml-strict\.xsd"):
        SchemaRegistry(tmp_path).validate(SchemaName.EDXML_STRICT, etree.fromstring(b"<r/>"))


def test_schema_external_entities_are_not_loaded(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret", encoding="utf-8")
    _write_schema(tmp_path, "")
    (tmp_path / SchemaName.EDXML_STRICT.value).write_text(
        f'<!DOCTYPE xs:schema [<!ENTITY x SYSTEM "{secret.as_uri()}">]>'
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:test">'
        '<xs:element name="r"><xs:simpleType><xs:restriction base="xs:string">'
        '<xs:enumeration value="&x;"/></xs:restriction></xs:simpleType></xs:element></xs:schema>',
        encoding="utf-8",
    )
    with pytest.raises(ConfigurationError, match="external entity"):
        SchemaRegistry(tmp_path).check_all()


# ------------------------------------------------------------------------------------------------
# Tolerant schema: every real sample
# ------------------------------------------------------------------------------------------------


@needs_samples
def test_there_are_nineteen_well_formed_samples() -> None:
    assert len(_sample_files()) == 19
    with pytest.raises(etree.XMLSyntaxError):
        etree.parse(str(SAMPLES_DIR / NOT_NAMESPACE_WELL_FORMED))


@needs_samples
@pytest.mark.parametrize("sample", _sample_files(), ids=lambda p: p.name)
def test_tolerant_schema_accepts_every_sample(registry: SchemaRegistry, sample: Path) -> None:
    assert registry.validate(SchemaName.EDXML_TOLERANT, etree.parse(str(sample))) == []


def test_tolerant_schema_accepts_canonical_packages(registry: SchemaRegistry) -> None:
    assert registry.validate(SchemaName.EDXML_TOLERANT, _parse(CANONICAL_EDOC)) == []
    assert registry.validate(SchemaName.EDXML_TOLERANT, _parse(CANONICAL_STATUS)) == []


def test_tolerant_schema_accepts_business_spelling_any_order_and_foreign_elements(
    registry: SchemaRegistry,
) -> None:
    text = CANONICAL_EDOC.replace("Bussiness", "Business")
    text = _mutate(
        text,
        "<edXML:TraceHeaderList>",
        '<edXML:TraceHeaderList id="t1" version="1.0" mustUnderstand="1">'
        '<x:Extra xmlns:x="urn:x"><y/></x:Extra>',
    )
    subject = (
        "<edXML:Subject>V/v báo cáo tình hình thực hiện dự toán ngân sách quý I năm 2024</edXML:Subject>"
    )
    text = _mutate(text, subject, "")
    text = _mutate(text, "<edXML:From>", subject + "<edXML:From>")
    text = _mutate(text, "</edXML:edXMLHeader>", XMLDSIG_SIGNATURE)
    assert registry.validate(SchemaName.EDXML_TOLERANT, _parse(text)) == []


def test_tolerant_schema_refuses_unknown_qcvn_elements(registry: SchemaRegistry) -> None:
    text = _mutate(CANONICAL_STATUS, "<edXML:StatusCode>", "<edXML:Unknown/><edXML:StatusCode>")
    violations = registry.validate(SchemaName.EDXML_TOLERANT, _parse(text))
    assert _paths(violations) == [f"{HEADER}/Unknown"]


# ------------------------------------------------------------------------------------------------
# Strict schema: canonical packages
# ------------------------------------------------------------------------------------------------


def test_strict_schema_accepts_canonical_edoc(registry: SchemaRegistry) -> None:
    assert registry.validate(SchemaName.EDXML_STRICT, _parse(CANONICAL_EDOC)) == []


def test_strict_schema_accepts_canonical_status(registry: SchemaRegistry) -> None:
    assert registry.validate(SchemaName.EDXML_STRICT, _parse(CANONICAL_STATUS)) == []


def test_strict_schema_accepts_an_xmldsig_signature_last_in_the_header(registry: SchemaRegistry) -> None:
    text = _mutate(CANONICAL_EDOC, "</edXML:edXMLHeader>", XMLDSIG_SIGNATURE)
    assert registry.validate(SchemaName.EDXML_STRICT, _parse(text)) == []


def test_strict_schema_accepts_a_500_character_subject(registry: SchemaRegistry) -> None:
    text = _mutate(
        CANONICAL_EDOC, "V/v báo cáo tình hình thực hiện dự toán ngân sách quý I năm 2024", "ễ" * 500
    )
    assert registry.validate(SchemaName.EDXML_STRICT, _parse(text)) == []


def test_validate_accepts_element_or_tree(registry: SchemaRegistry) -> None:
    tree = _parse(_mutate(CANONICAL_STATUS, "<edXML:StatusCode>03", "<edXML:StatusCode>3"))
    from_tree = registry.validate(SchemaName.EDXML_STRICT, tree)
    from_root = registry.validate(SchemaName.EDXML_STRICT, tree.getroot())
    assert from_tree == from_root
    assert _paths(from_tree) == [f"{HEADER}/StatusCode"]


# ------------------------------------------------------------------------------------------------
# Strict schema: rejections, each pointing at the element concerned
# ------------------------------------------------------------------------------------------------

EDOC_REJECTIONS = [
    pytest.param(
        "<edXML:PromulgationDate>2024/03/15</edXML:PromulgationDate>",
        "<edXML:PromulgationDate>15/03/2024</edXML:PromulgationDate>",
        [f"{HEADER}/PromulgationInfo/PromulgationDate"],
        id="day-first-promulgation-date",
    ),
    pytest.param(
        "<edXML:Priority>1</edXML:Priority>",
        "<edXML:Priority>7</edXML:Priority>",
        [f"{HEADER}/OtherInfo/Priority"],
        id="priority-7",
    ),
    pytest.param(
        "<edXML:Subject>V/v báo cáo tình hình thực hiện dự toán ngân sách quý I năm 2024</edXML:Subject>",
        f"<edXML:Subject>{'ễ' * 501}</edXML:Subject>",
        [f"{HEADER}/Subject"],
        id="subject-501-characters",
    ),
    pytest.param(
        "<edXML:SteeringType>0</edXML:SteeringType>",
        "<edXML:SteeringType>3</edXML:SteeringType>",
        [f"{HEADER}/SteeringType"],
        id="steering-type-3",
    ),
    pytest.param(
        "<edXML:Timestamp>2024/03/15 09:30:00</edXML:Timestamp>",
        "<edXML:Timestamp>2024-03-15T09:30:00</edXML:Timestamp>",
        ["/edXML/edXMLEnvelope/edXMLHeader/TraceHeaderList/TraceHeader/Timestamp"],
        id="iso-timestamp",
    ),
    pytest.param(
        '<edXML:edXMLManifest version="1.0">',
        '<edXML:edXMLManifest version="2.0">',
        ["/edXML/edXMLEnvelope/edXMLBody/edXMLManifest"],
        id="manifest-version",
    ),
    pytest.param(
        "<edXML:OrganAdd>Tây Ninh</edXML:OrganAdd>\n        </edXML:To>",
        "<edXML:OrganAdd></edXML:OrganAdd>\n        </edXML:To>",
        [f"{HEADER}/To/OrganAdd"],
        id="empty-optional-text",
    ),
    pytest.param(
        "JVBERi0xLjQKJeLjz9MK",
        "not base64!",
        ["/edXML/AttachmentEncoded/Attachment/ContentTransferEncoded"],
        id="attachment-not-base64",
    ),
]


@pytest.mark.parametrize(("old", "new", "expected"), EDOC_REJECTIONS)
def test_strict_schema_rejects_edoc_deviation(
    registry: SchemaRegistry, old: str, new: str, expected: list[str]
) -> None:
    violations = registry.validate(SchemaName.EDXML_STRICT, _parse(_mutate(CANONICAL_EDOC, old, new)))
    assert _paths(violations) == expected
    assert all(v.line > 0 for v in violations)


def test_strict_schema_rejects_business_spelling(registry: SchemaRegistry) -> None:
    text = CANONICAL_EDOC.replace("Bussiness", "Business")
    violations = registry.validate(SchemaName.EDXML_STRICT, _parse(text))
    assert _paths(violations) == ["/edXML/edXMLEnvelope/edXMLHeader/TraceHeaderList/Business"]
    assert "Bussiness" in violations[0].message  # the expected spelling is named


def test_strict_schema_rejects_out_of_order_message_header(registry: SchemaRegistry) -> None:
    subject = (
        "<edXML:Subject>V/v báo cáo tình hình thực hiện dự toán ngân sách quý I năm 2024</edXML:Subject>"
    )
    text = _mutate(CANONICAL_EDOC, subject, "")
    text = _mutate(text, "<edXML:DocumentType>", subject + "<edXML:DocumentType>")
    violations = registry.validate(SchemaName.EDXML_STRICT, _parse(text))
    assert _paths(violations) == [f"{HEADER}/Subject"]
    assert "not expected" in violations[0].message
    assert "DocumentType" in violations[0].message


def test_strict_schema_rejects_content_id_without_cid_prefix(registry: SchemaRegistry) -> None:
    text = CANONICAL_EDOC.replace("cid:6f1c2a9e", "6f1c2a9e")
    violations = registry.validate(SchemaName.EDXML_STRICT, _parse(text))
    assert _paths(violations) == [
        "/edXML/edXMLEnvelope/edXMLBody/edXMLManifest/Reference/ContentId",
        "/edXML/AttachmentEncoded/Attachment/ContentId",
    ]


def test_strict_schema_rejects_one_digit_status_code(registry: SchemaRegistry) -> None:
    text = _mutate(
        CANONICAL_STATUS, "<edXML:StatusCode>03</edXML:StatusCode>", "<edXML:StatusCode>1</edXML:StatusCode>"
    )
    violations = registry.validate(SchemaName.EDXML_STRICT, _parse(text))
    assert _paths(violations) == [f"{HEADER}/StatusCode"]
    assert "enumeration" in violations[0].message


@pytest.mark.parametrize("code", ["07", "14", "99", " 03"])
def test_strict_schema_rejects_status_codes_outside_the_national_set(
    registry: SchemaRegistry, code: str
) -> None:
    text = _mutate(CANONICAL_STATUS, "<edXML:StatusCode>03<", f"<edXML:StatusCode>{code}<")
    assert _paths(registry.validate(SchemaName.EDXML_STRICT, _parse(text))) == [f"{HEADER}/StatusCode"]


def test_strict_schema_rejects_a_qcvn_namespaced_signature(registry: SchemaRegistry) -> None:
    text = _mutate(CANONICAL_EDOC, "</edXML:edXMLHeader>", "<Signature/></edXML:edXMLHeader>")
    violations = registry.validate(SchemaName.EDXML_STRICT, _parse(text))
    assert _paths(violations) == ["/edXML/edXMLEnvelope/edXMLHeader/Signature"]
    assert "{http://www.w3.org/2000/09/xmldsig#}*" in violations[0].message


def test_strict_schema_rejects_a_status_with_edoc_children(registry: SchemaRegistry) -> None:
    text = _mutate(CANONICAL_STATUS, "<edXML:StaffInfo>", "<edXML:Subject>x</edXML:Subject><edXML:StaffInfo>")
    assert _paths(registry.validate(SchemaName.EDXML_STRICT, _parse(text))) == [f"{HEADER}/Subject"]


def test_violation_path_names_the_repeated_element_and_skips_comments(registry: SchemaRegistry) -> None:
    second_to = (
        "<!-- a comment --><edXML:To><edXML:OrganId>   </edXML:OrganId>"
        "<edXML:OrganName>Kho bạc Nhà nước Tây Ninh</edXML:OrganName></edXML:To>"
    )
    text = _mutate(
        CANONICAL_EDOC, "<edXML:DocumentId>000.00.00.H53,", second_to + "<edXML:DocumentId>000.00.00.H53,"
    )
    violations = registry.validate(SchemaName.EDXML_STRICT, _parse(text))
    assert _paths(violations) == [f"{HEADER}/To[2]/OrganId"]


def test_violation_path_for_default_namespace_elements(registry: SchemaRegistry) -> None:
    # libxml2 writes "*[n]" steps for unprefixed elements; the path must still read in local names.
    text = CANONICAL_EDOC.replace("edXML:", "").replace(
        ' xmlns:edXML="http://www.mic.gov.vn/TBT/QCVN_102_2016"', ""
    )
    text = _mutate(text, "<Priority>1</Priority>", "<Priority>9</Priority>")
    violations = registry.validate(SchemaName.EDXML_STRICT, _parse(text))
    assert _paths(violations) == [f"{HEADER}/OtherInfo/Priority"]


def test_violation_messages_carry_no_document_values_or_namespace_uris(registry: SchemaRegistry) -> None:
    text = _mutate(
        CANONICAL_EDOC, "<edXML:PromulgationDate>2024/03/15<", "<edXML:PromulgationDate>15/03/2024<"
    )
    text = _mutate(text, "<edXML:Priority>1<", "<edXML:Priority>secret-7<")
    text = _mutate(text, 'version="1.0">', 'version="bí mật">')
    violations = registry.validate(SchemaName.EDXML_STRICT, _parse(text))
    assert len(violations) == 3
    for violation in violations:
        assert "15/03/2024" not in violation.message
        assert "secret" not in violation.message
        assert "bí mật" not in violation.message
        assert QCVN_NS not in violation.message
        assert violation.message.startswith("Element '")


def test_schema_violation_is_frozen() -> None:
    violation = SchemaViolation(path="/edXML", line=1, message="m")
    with pytest.raises(dataclasses.FrozenInstanceError):
        violation.line = 2  # type: ignore[misc]


def test_concurrent_validation_keeps_results_apart(registry: SchemaRegistry) -> None:
    good = _parse(CANONICAL_STATUS)
    bad = _parse(_mutate(CANONICAL_STATUS, "<edXML:StatusCode>03<", "<edXML:StatusCode>1<"))

    def check(i: int) -> bool:
        tree = bad if i % 2 else good
        violations = registry.validate(SchemaName.EDXML_STRICT, tree)
        return _paths(violations) == ([f"{HEADER}/StatusCode"] if i % 2 else [])

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert all(pool.map(check, range(200)))


# ------------------------------------------------------------------------------------------------
# Strict schema: real samples with known deviations
# ------------------------------------------------------------------------------------------------


@needs_samples
@pytest.mark.parametrize("sample", _sample_files(), ids=lambda p: p.name)
def test_strict_schema_verdict_on_real_samples(registry: SchemaRegistry, sample: Path) -> None:
    violations = registry.validate(SchemaName.EDXML_STRICT, etree.parse(str(sample)))
    if sample.name in STRICT_VALID_SAMPLES:
        assert violations == []
    else:
        assert violations, f"{sample.name} has known deviations and must be rejected"


@needs_samples
@pytest.mark.parametrize(
    ("sample", "expected_path"),
    [
        # dd/MM/yyyy PromulgationDate among many empty elements
        ("mic_edoc_new_bdt0.edxml", f"{HEADER}/PromulgationInfo/PromulgationDate"),
        ("mic_edoc_new_bdt0.edxml", f"{HEADER}/SignerInfo/FullName"),
        # un-namespaced Signature lands in the QCVN namespace
        ("mic_edoc_new_bdt0_vpcp_original.edxml", "/edXML/edXMLEnvelope/edXMLHeader/Signature"),
        # Bussiness before TraceHeader
        (
            "mic_edoc_new_multi_recipient_zipped_edxml_attachment.edxml",
            "/edXML/edXMLEnvelope/edXMLHeader/TraceHeaderList/Bussiness",
        ),
        # empty <edXML:ResponseFor />
        ("mic_edoc_received_via_axis_2_traces.edxml", f"{HEADER}/ResponseFor"),
        # From/To/DocumentId/Subject only
        ("mic_edoc_minimal_gateway_test.edxml", f"{HEADER}/Subject"),
        # OrganName before OrganizationInCharge
        ("mic_status_01_inbox.edxml", f"{HEADER}/From/OrganizationInCharge"),
        # second TraceHeader without OrganId
        (
            "ANTIEXAMPLE_mic_edoc_corrupted_binary.edxml",
            "/edXML/edXMLEnvelope/edXMLHeader/TraceHeaderList/TraceHeader[2]/Timestamp",
        ),
    ],
)
def test_strict_schema_points_at_known_sample_deviations(
    registry: SchemaRegistry, sample: str, expected_path: str
) -> None:
    violations = registry.validate(SchemaName.EDXML_STRICT, etree.parse(str(SAMPLES_DIR / sample)))
    assert expected_path in _paths(violations)
