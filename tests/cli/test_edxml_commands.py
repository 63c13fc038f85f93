"""Tests for ``esb edxml validate | inspect | extract | build`` and ``esb demo packages`` via CliRunner."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from lxml import etree

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO.parent / "shared" / "samples" / "edxml"
EDXML_NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"

INVALID = {
    "ANTIEXAMPLE_mic_edoc_corrupted_binary.edxml": "Client.EdxmlAttachmentCorrupted",
    "mic_edoc_vxp_sdk_template_placeholder.edxml": "Client.XmlNotNamespaceWellFormed",
}
VALID = {"mic_status_01_alt.edxml"}

SPEC = """\
kind: edoc
from:
  organ_id: 000.00.11.H53
  organ_name: Sở Tài chính tỉnh Tây Ninh
  organization_in_charge: UBND tỉnh Tây Ninh
to:
  - organ_id: 000.00.01.A53
    organ_name: Văn phòng Tỉnh ủy Tây Ninh
  - organ_id: H53.11
    organ_name: Đơn vị theo mã QĐ 20
code: {number: "2491", notation: STC-BCTC}
promulgation: {date: 2024/03/15, place: Tây Ninh}
subject: Báo cáo tình hình thực hiện dự toán ngân sách quý IV
signer: {full_name: Nguyễn Văn A, position: Giám đốc}
priority: hỏa tốc
business: {doc_type: 0}
"""
DOCUMENT_ID = "000.00.11.H53,2024/03/15,2491/STC-BCTC"


@pytest.fixture
def run(cli: click.Group) -> Any:
    runner = CliRunner(env={"COLUMNS": "250", "NO_COLOR": "1"})

    def invoke(*args: str | Path) -> Result:
        return runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)

    return invoke


@pytest.fixture(scope="module")
def samples() -> Path:
    if not SAMPLES.is_dir():
        pytest.skip(f"shared samples not found at {SAMPLES}")
    return SAMPLES


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def validate_json(run: Any, *files: str | Path, strict: bool = False) -> tuple[int, list[dict[str, Any]]]:
    args: list[str | Path] = ["edxml", "validate", "--json", *files]
    if strict:
        args.append("--strict")
    result = run(*args)
    return result.exit_code, json.loads(result.stdout)


def inspect_json(run: Any, file: Path) -> dict[str, Any]:
    result = run("edxml", "inspect", "--json", file)
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def decoded_attachments(path: Path) -> list[tuple[str, bytes]]:
    """(ContentType, decoded bytes) of every attachment, read independently of esb."""
    root = etree.parse(str(path), etree.XMLParser(resolve_entities=False, no_network=True)).getroot()
    items = []
    for attachment in root.iter(f"{{{EDXML_NS}}}Attachment"):
        content_type = attachment.findtext(f"{{{EDXML_NS}}}ContentType")
        encoded = attachment.findtext(f"{{{EDXML_NS}}}ContentTransferEncoded") or ""
        items.append((content_type or "", base64.b64decode("".join(encoded.split()), validate=True)))
    return items


# validate -----------------------------------------------------------------------------------------


def test_validate_every_sample(run: Any, samples: Path) -> None:
    files = sorted(samples.glob("*.edxml"))
    assert len(files) >= 20
    exit_code, verdicts = validate_json(run, *files)
    assert exit_code == 1  # two samples are invalid
    assert [Path(v["file"]).name for v in verdicts] == [f.name for f in files]
    for v in verdicts:
        name = Path(v["file"]).name
        if name in INVALID:
            assert (v["verdict"], v["code"]) == ("invalid", INVALID[name]), name
            assert v["kind"] is None
            assert v["sha256"] is None
        elif name in VALID:
            assert (v["verdict"], v["code"], v["issues"]) == ("valid", None, []), name
        else:
            assert v["verdict"] == "valid-with-warnings", (name, v)
            assert v["code"] is None
            assert v["issues"]
            assert all(i["severity"] == "warning" and i["code"].startswith("W.") for i in v["issues"]), name
            assert all(i["path"].startswith("/edXML") for i in v["issues"]), name
        if v["verdict"] != "invalid":
            path = samples / name
            assert v["sha256"] == sha(path.read_bytes())
            assert v["size"] == path.stat().st_size
            assert v["kind"] == ("status" if name.startswith("mic_status") else "edoc")


def test_validate_invalid_details(run: Any, samples: Path) -> None:
    exit_code, (corrupted,) = validate_json(run, samples / "ANTIEXAMPLE_mic_edoc_corrupted_binary.edxml")
    assert exit_code == 1
    errors = [i for i in corrupted["issues"] if i["severity"] == "error"]
    assert [(i["code"], i["path"]) for i in errors] == [
        ("Client.EdxmlAttachmentCorrupted", "/edXML/AttachmentEncoded/Attachment[1]/ContentTransferEncoded")
    ]
    assert "W.NullLiteral" in {i["code"] for i in corrupted["issues"]}


def test_validate_exit_codes(run: Any, samples: Path) -> None:
    assert validate_json(run, samples / "mic_status_01_alt.edxml")[0] == 0
    # warnings alone do not fail the run
    exit_code, verdicts = validate_json(
        run, samples / "mic_status_01_alt.edxml", samples / "mic_status_02_rejection.edxml"
    )
    assert exit_code == 0
    assert [v["verdict"] for v in verdicts] == ["valid", "valid-with-warnings"]
    exit_code, verdicts = validate_json(
        run, samples / "mic_status_01_alt.edxml", samples / "mic_edoc_vxp_sdk_template_placeholder.edxml"
    )
    assert exit_code == 1
    assert [v["verdict"] for v in verdicts] == ["valid", "invalid"]


def test_validate_table_output(run: Any, samples: Path) -> None:
    result = run(
        "edxml", "validate", samples / "mic_status_01_alt.edxml", samples / "mic_status_01_inbox.edxml"
    )
    assert result.exit_code == 0
    assert "mic_status_01_alt.edxml" in result.stdout
    assert "W.ElementOrder" in result.stdout
    assert "2 file(s): 1 valid, 1 valid with warnings, 0 invalid" in result.stdout


def test_validate_strict_adds_schema_warnings(run: Any, samples: Path) -> None:
    inbox = samples / "mic_status_01_inbox.edxml"
    _, (lenient,) = validate_json(run, inbox)
    exit_code, (strict,) = validate_json(run, inbox, strict=True)
    assert exit_code == 0
    assert strict["verdict"] == "valid-with-warnings"
    lenient_codes = [i["code"] for i in lenient["issues"]]
    strict_codes = [i["code"] for i in strict["issues"]]
    assert "W.StrictSchema" not in lenient_codes
    assert "W.StrictSchema" in strict_codes
    assert strict_codes[: len(lenient_codes)] == lenient_codes
    schema = [i for i in strict["issues"] if i["code"] == "W.StrictSchema"]
    assert all(i["severity"] == "warning" and i["path"].startswith("/edXML") for i in schema)


def test_validate_missing_file(run: Any, tmp_path: Path) -> None:
    missing = tmp_path / "khong-co.edxml"
    exit_code, (verdict,) = validate_json(run, missing)
    assert exit_code == 1
    assert (verdict["verdict"], verdict["code"]) == ("invalid", "Client.FileUnreadable")
    assert verdict["file"] == str(missing)


def test_validate_not_xml(run: Any, tmp_path: Path) -> None:
    junk = tmp_path / "junk.edxml"
    junk.write_bytes(b"%PDF-1.4 this is not xml")
    exit_code, (verdict,) = validate_json(run, junk)
    assert exit_code == 1
    assert verdict["verdict"] == "invalid"
    assert verdict["code"].startswith("Client.Xml")


def test_validate_timestamp_out_of_range(run: Any, samples: Path, tmp_path: Path) -> None:
    text = (samples / "mic_status_01_alt.edxml").read_text(encoding="utf-8")
    assert "<edXML:Timestamp>2018/09/28 17:25:11</edXML:Timestamp>" in text
    edge = tmp_path / "edge.edxml"
    edge.write_text(text.replace("2018/09/28 17:25:11", "0001-01-01T00:00:00+07:00"), encoding="utf-8")
    exit_code, (verdict,) = validate_json(run, edge)
    assert exit_code == 1
    assert (verdict["verdict"], verdict["code"]) == ("invalid", "Client.EdxmlInvalidValue")


# inspect ------------------------------------------------------------------------------------------


def test_inspect_table(run: Any, samples: Path) -> None:
    result = run("edxml", "inspect", samples / "mic_edoc_update_bdt2.edxml")
    assert result.exit_code == 0, result.output
    assert "000.00.00.G22,2015/09/30,7816/VPCP-TTĐT" in result.stdout
    assert "V/v kết nối, liên thông phần mềm quản lý văn bản" in result.stdout
    assert "1896_QD-TTg_m_294779.doc" in result.stdout
    assert "W.SignatureNamespace" in result.stdout


def test_inspect_json(run: Any, samples: Path) -> None:
    path = samples / "mic_edoc_update_bdt2.edxml"
    data = inspect_json(run, path)
    assert data["kind"] == "edoc"
    assert data["sha256"] == sha(path.read_bytes())
    assert data["size"] == path.stat().st_size
    package = data["package"]
    assert package["header"]["document_id"] == "000.00.00.G22,2015/09/30,7816/VPCP-TTĐT"
    assert package["header"]["subject"] == "V/v kết nối, liên thông phần mềm quản lý văn bản"
    assert package["business"]["doc_type"] == 2
    # the attachment digest matches the base64 content decoded independently (manifest says zip: kept)
    ((content_type, raw),) = decoded_attachments(path)
    (attachment,) = package["attachments"]
    assert content_type == "application/zip"
    assert attachment["data"]["unwrapped_zip"] is False
    assert attachment["data"]["sha256"] == sha(raw)
    assert attachment["data"]["size"] == len(raw)
    assert [w["code"] for w in data["warnings"]] == ["W.SignatureNamespace"]


def test_inspect_refused_package(run: Any, samples: Path) -> None:
    result = run("edxml", "inspect", samples / "ANTIEXAMPLE_mic_edoc_corrupted_binary.edxml")
    assert result.exit_code == 1
    assert "Client.EdxmlAttachmentCorrupted" in result.stderr
    assert "Traceback" not in result.output


def test_inspect_missing_file(run: Any, tmp_path: Path) -> None:
    result = run("edxml", "inspect", tmp_path / "none.edxml")
    assert result.exit_code == 2
    assert "none.edxml" in result.stderr


# extract ------------------------------------------------------------------------------------------


def test_extract_unwraps_the_vnpt_zip(run: Any, samples: Path, tmp_path: Path) -> None:
    path = samples / "mic_edoc_received_via_axis_2_traces.edxml"
    reported = inspect_json(run, path)["package"]["attachments"]
    assert len(reported) == 1
    assert reported[0]["data"]["unwrapped_zip"] is True

    out = tmp_path / "tep"
    result = run("edxml", "extract", path, "-o", out)
    assert result.exit_code == 0, result.output
    assert "1 attachment(s) written" in result.stdout
    written = sorted(out.iterdir())
    assert [p.name for p in written] == ["GUIDE_INSTALL OPENVPN.SIGNED.PDF"]
    content = written[0].read_bytes()
    assert sha(content) == reported[0]["data"]["sha256"]
    assert len(content) == reported[0]["data"]["size"]

    # independently: the carried bytes are a one-entry ZIP whose entry is the extracted file
    ((content_type, raw),) = decoded_attachments(path)
    assert content_type == "application/zip"
    assert raw.startswith(b"PK\x03\x04")
    assert sha(raw) == reported[0]["data"]["encoded_sha256"]
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        (entry,) = archive.namelist()
        assert archive.read(entry) == content


def test_extract_twice_does_not_overwrite(run: Any, samples: Path, tmp_path: Path) -> None:
    path = samples / "mic_edoc_received_via_axis_2_traces.edxml"
    assert run("edxml", "extract", path, "-o", tmp_path).exit_code == 0
    assert run("edxml", "extract", path, "-o", tmp_path).exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "GUIDE_INSTALL OPENVPN.SIGNED (2).PDF",
        "GUIDE_INSTALL OPENVPN.SIGNED.PDF",
    ]


# build --------------------------------------------------------------------------------------------


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "cong-van.yaml"
    path.write_text(SPEC, encoding="utf-8")
    return path


@pytest.fixture
def report(tmp_path: Path) -> Path:
    path = tmp_path / "bao-cao.txt"
    path.write_text("Báo cáo tình hình thực hiện dự toán ngân sách quý IV.\n", encoding="utf-8")
    return path


def test_build_with_attachment(run: Any, spec_file: Path, report: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "cong-van.edxml"
    result = run("edxml", "build", spec_file, "-o", out, "--attach", report)
    assert result.exit_code == 0, result.output
    assert DOCUMENT_ID in result.stdout
    assert out.is_file()
    assert [p.name for p in out.parent.iterdir()] == ["cong-van.edxml"]  # no temporary file left

    exit_code, (verdict,) = validate_json(run, out, strict=True)
    assert exit_code == 0
    assert (verdict["verdict"], verdict["issues"]) == ("valid", [])

    data = inspect_json(run, out)
    assert data["kind"] == "edoc"
    header = data["package"]["header"]
    assert header["document_id"] == DOCUMENT_ID
    assert header["other_info"]["priority"] == 3
    assert [t["organ_id"] for t in header["to"]] == ["000.00.01.A53", "H53.11"]
    traces = data["package"]["trace_headers"]
    assert [t["organ_id"] for t in traces] == ["000.00.11.H53"]
    assert traces[0]["timestamp"].endswith("+07:00")
    assert data["package"]["business"]["doc_type"] == 0
    (attachment,) = data["package"]["attachments"]
    (reference,) = data["package"]["references"]
    assert attachment["content_id"] == reference["content_id"]
    assert (attachment["attachment_name"], attachment["content_type"]) == ("bao-cao.txt", "text/plain")
    assert attachment["data"]["sha256"] == sha(report.read_bytes())
    assert attachment["data"]["unwrapped_zip"] is False
    # the base64 is one line
    ((_, raw),) = decoded_attachments(out)
    assert raw == report.read_bytes()
    assert (
        b"\n" not in out.read_bytes().split(b"ContentTransferEncoded")[1].split(b">", 1)[1].split(b"<", 1)[0]
    )


def test_build_zip_is_unwrapped_on_read(run: Any, spec_file: Path, report: Path, tmp_path: Path) -> None:
    out = tmp_path / "zipped.edxml"
    result = run("edxml", "build", spec_file, "-o", out, "--attach", report, "--zip")
    assert result.exit_code == 0, result.output
    assert validate_json(run, out)[1][0]["verdict"] == "valid"
    data = inspect_json(run, out)
    (attachment,) = data["package"]["attachments"]
    (reference,) = data["package"]["references"]
    assert attachment["content_type"] == "application/zip"
    assert reference["content_type"] == "text/plain"
    assert attachment["data"]["unwrapped_zip"] is True
    assert attachment["data"]["sha256"] == sha(report.read_bytes())
    assert attachment["data"]["encoded_sha256"] != attachment["data"]["sha256"]
    ((_, raw),) = decoded_attachments(out)
    assert raw.startswith(b"PK\x03\x04")
    assert sha(raw) == attachment["data"]["encoded_sha256"]

    extracted = tmp_path / "extracted"
    assert run("edxml", "extract", out, "-o", extracted).exit_code == 0
    assert (extracted / "bao-cao.txt").read_bytes() == report.read_bytes()


def test_build_spec_attachment_relative_to_spec(run: Any, tmp_path: Path) -> None:
    folder = tmp_path / "spec-dir"
    folder.mkdir()
    (folder / "phu-luc-rieng-cho-test.txt").write_bytes(b"phu luc")
    spec = folder / "spec.yaml"
    spec.write_text(
        SPEC + "attachments:\n  - file: phu-luc-rieng-cho-test.txt\n    content_type: text/plain\n",
        encoding="utf-8",
    )
    out = tmp_path / "rel.edxml"
    result = run("edxml", "build", spec, "-o", out)
    assert result.exit_code == 0, result.output
    (attachment,) = inspect_json(run, out)["package"]["attachments"]
    assert attachment["attachment_name"] == "phu-luc-rieng-cho-test.txt"
    assert attachment["data"]["sha256"] == sha(b"phu luc")


def test_build_spec_attachment_prefers_spec_folder(
    run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "spec-dir"
    folder.mkdir()
    (folder / "bao-cao.txt").write_bytes(b"the right file")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    (elsewhere / "bao-cao.txt").write_bytes(b"the wrong file")
    monkeypatch.chdir(elsewhere)
    spec = folder / "spec.yaml"
    spec.write_text(SPEC + "attachments:\n  - file: bao-cao.txt\n", encoding="utf-8")
    out = tmp_path / "rel.edxml"
    assert run("edxml", "build", spec, "-o", out).exit_code == 0
    (attachment,) = inspect_json(run, out)["package"]["attachments"]
    assert attachment["data"]["sha256"] == sha(b"the right file")


def test_build_documented_example(run: Any, tmp_path: Path) -> None:
    example = REPO / "docs" / "examples" / "cong-van.yaml"
    out = tmp_path / "example.edxml"
    result = run("edxml", "build", example, "-o", out)
    assert result.exit_code == 0, result.output
    _, (verdict,) = validate_json(run, out, strict=True)
    assert verdict["verdict"] == "valid"
    header = inspect_json(run, out)["package"]["header"]
    assert header["document_id"].startswith("000.00.11.H53,")
    assert header["document_id"].endswith(",2491/STC-BCTC")


def test_build_status(run: Any, tmp_path: Path) -> None:
    spec = tmp_path / "status.yaml"
    spec.write_text(
        "kind: status\n"
        "from: {organ_id: 000.00.01.A53, organ_name: Văn phòng Tỉnh ủy Tây Ninh}\n"
        "response_for: {organ_id: 000.00.11.H53, code: 2491/STC-BCTC, document_id: '" + DOCUMENT_ID + "'}\n"
        "status_code: 3\n",
        encoding="utf-8",
    )
    out = tmp_path / "status.edxml"
    result = run("edxml", "build", spec, "-o", out)
    assert result.exit_code == 0, result.output
    assert validate_json(run, out, strict=True)[1][0]["verdict"] == "valid"
    data = inspect_json(run, out)
    assert data["kind"] == "status"
    assert data["package"]["status_code"] == "03"
    assert data["package"]["description"] == "Đã tiếp nhận, vào sổ"
    assert b"<edXML:StatusCode>03</edXML:StatusCode>" in out.read_bytes()


def test_build_without_signer(run: Any, tmp_path: Path) -> None:
    spec = tmp_path / "no-signer.yaml"
    spec.write_text(
        SPEC.replace("signer: {full_name: Nguyễn Văn A, position: Giám đốc}\n", ""), encoding="utf-8"
    )
    out = tmp_path / "no-signer.edxml"
    result = run("edxml", "build", spec, "-o", out)
    # QCVN 102 requires SignerInfo/FullName: the description is refused with the spec path, nothing written
    assert result.exit_code == 1
    assert "Client.EdxmlSpecInvalid" in result.stderr
    assert "signer" in result.stderr
    assert not out.exists()


def test_build_broken_spec_writes_nothing(run: Any, tmp_path: Path) -> None:
    spec = tmp_path / "broken.yaml"
    broken = SPEC.replace("organ_id: 000.00.11.H53", "organ_id: vxp.saas.03").replace(
        "date: 2024/03/15", "date: 2014/02/30"
    )
    spec.write_text(broken, encoding="utf-8")
    out = tmp_path / "out" / "broken.edxml"
    result = run("edxml", "build", spec, "-o", out)
    assert result.exit_code == 1
    assert "Client.EdxmlSpecInvalid" in result.stderr
    assert "from.organ_id" in result.stderr
    assert "vxp.saas.03" in result.stderr
    assert "promulgation.date" in result.stderr
    assert "Traceback" not in result.output
    assert not out.exists()
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_build_refused_by_schema_leaves_no_file(run: Any, tmp_path: Path) -> None:
    # a value the spec accepts but the strict XSD refuses (CodeNumber is at most 11 characters):
    # the writer fails after the temporary output file was opened
    spec = tmp_path / "schema.yaml"
    spec.write_text(SPEC.replace('number: "2491"', 'number: "123456789012"'), encoding="utf-8")
    out = tmp_path / "out" / "schema.edxml"
    out.parent.mkdir()
    out.write_bytes(b"previous version")
    result = run("edxml", "build", spec, "-o", out)
    assert result.exit_code == 1
    assert "Client.EdxmlBuildInvalid" in result.stderr
    assert "CodeNumber" in result.stderr
    assert out.read_bytes() == b"previous version"  # the old file is untouched
    assert [p.name for p in out.parent.iterdir()] == ["schema.edxml"]  # no temporary file left


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("- a\n- b\n", "must describe a mapping"),
        ("just a string\n", "must describe a mapping"),
        ("", "must describe a mapping"),
        ("from: [unclosed\n", "is not valid YAML"),
    ],
)
def test_build_spec_not_a_mapping(run: Any, tmp_path: Path, content: str, fragment: str) -> None:
    spec = tmp_path / "list.yaml"
    spec.write_text(content, encoding="utf-8")
    out = tmp_path / "list.edxml"
    result = run("edxml", "build", spec, "-o", out)
    assert result.exit_code == 1
    assert "Client.EdxmlSpecInvalid" in result.stderr
    assert fragment in result.stderr
    assert not out.exists()


def test_build_missing_attachment_file(run: Any, spec_file: Path, tmp_path: Path) -> None:
    spec_file.write_text(SPEC + "attachments:\n  - file: khong-ton-tai.pdf\n", encoding="utf-8")
    out = tmp_path / "missing.edxml"
    result = run("edxml", "build", spec_file, "-o", out)
    assert result.exit_code == 1
    assert "Client.EdxmlBuildAttachment" in result.stderr
    assert not out.exists()


def test_build_attach_must_exist(run: Any, spec_file: Path, tmp_path: Path) -> None:
    result = run("edxml", "build", spec_file, "-o", tmp_path / "x.edxml", "--attach", tmp_path / "nope.pdf")
    assert result.exit_code == 2  # click usage error
    assert not (tmp_path / "x.edxml").exists()


# demo ---------------------------------------------------------------------------------------------


def test_demo(run: Any, samples: Path, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = run("demo", "packages", "--out", out, "--samples", samples)
    assert result.exit_code == 0, result.output
    edoc, status = out / "cong-van-2491.edxml", out / "trang-thai-01.edxml"
    assert edoc.is_file()
    assert status.is_file()
    exit_code, verdicts = validate_json(run, edoc, status, strict=True)
    assert exit_code == 0
    assert [v["verdict"] for v in verdicts] == ["valid", "valid"]
    assert [v["kind"] for v in verdicts] == ["edoc", "status"]
    edoc_data = inspect_json(run, edoc)["package"]
    status_data = inspect_json(run, status)["package"]
    # the status answers the edoc
    assert status_data["status_code"] == "01"
    assert status_data["response_for"]["document_id"] == edoc_data["header"]["document_id"]
    assert edoc_data["header"]["document_id"].startswith("000.00.11.H53,")
    assert edoc_data["attachments"][0]["data"]["unwrapped_zip"] is True
    assert edoc_data["attachments"][0]["data"]["sha256"] == sha((out / "bao-cao-quy-IV.txt").read_bytes())
    # the sample tour ran over the shared folder
    assert "mic_status_01_alt.edxml" in result.stdout
    assert "ANTIEXAMPLE_mic_edoc_corrupted_binary.edxml" in result.stdout
