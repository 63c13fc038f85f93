"""Tests for esb.domain.package_spec: a small description becomes a strict package model, or is refused."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime
from typing import Any

import pytest

from esb.domain import edxml_model as m
from esb.domain.edxml_dates import VN_TZ
from esb.domain.edxml_enums import BusinessDocType, Priority, ReceiverType, StatusCode, SteeringType
from esb.domain.package_spec import AttachmentSpec, package_from_spec, wrap_attachments_as_zip
from esb.errors import EdxmlBuildError

NOW = datetime(2024, 3, 15, 9, 30, 0, tzinfo=VN_TZ)
SENDER = {
    "organ_id": "000.00.11.H53",
    "organ_name": "Sở Tài chính tỉnh Tây Ninh",
    "organization_in_charge": "UBND tỉnh Tây Ninh",
    "email": "stc@tayninh.gov.vn",
}
RECEIVER = {"organ_id": "000.00.01.A53", "organ_name": "Văn phòng Tỉnh ủy Tây Ninh"}
RECEIVER_2 = {"organ_id": "000.00.00.H53", "organ_name": "UBND tỉnh Tây Ninh"}


def edoc_spec(**changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "kind": "edoc",
        "from": copy.deepcopy(SENDER),
        "to": [copy.deepcopy(RECEIVER), copy.deepcopy(RECEIVER_2)],
        "code": {"number": "2491", "notation": "STC-BCTC"},
        "promulgation": {"date": "2024/03/14", "place": "Tây Ninh"},
        "document_type": {"type": 1, "type_name": "Công văn"},
        "subject": "Báo cáo tình hình thực hiện dự toán ngân sách quý IV",
        "signer": {"full_name": "Nguyễn Văn A", "position": "Giám đốc"},
        "priority": "khan",
        "to_places": ["Như trên", "Lưu: VT"],
        "business": {"doc_type": 0, "staff": {"department": "Văn thư", "staff": "Trần Thị B"}},
        "attachments": [
            {"file": "docs/bao-cao.pdf", "content_type": "application/pdf", "description": "Báo cáo"},
            {"file": "C:\\work\\phu-luc.xlsx"},
        ],
    }
    spec.update(changes)
    return spec


def status_spec(**changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "kind": "status",
        "from": copy.deepcopy(RECEIVER),
        "response_for": {
            "organ_id": "000.00.11.H53",
            "code": "2491/STC-BCTC",
            "document_id": "000.00.11.H53,2024/03/14,2491/STC-BCTC",
            "promulgation_date": "2024/03/14",
        },
        "status_code": "3",
        "staff": {"department": "Văn thư", "staff": "Lê Văn C"},
    }
    spec.update(changes)
    return spec


def refused(spec: dict[str, Any]) -> EdxmlBuildError:
    with pytest.raises(EdxmlBuildError) as caught:
        package_from_spec(spec, now=NOW)
    exc = caught.value
    assert exc.code == "Client.EdxmlSpecInvalid"
    assert exc.problems
    assert exc.problems[0] in exc.message
    return exc


def problem_paths(exc: EdxmlBuildError) -> list[str]:
    return [p.split(":", 1)[0] for p in exc.problems]


# edoc ---------------------------------------------------------------------------------------------


def test_full_edoc_spec() -> None:
    built = package_from_spec(edoc_spec(), now=NOW)
    package = built.package
    assert isinstance(package, m.EdocPackage)
    h = package.header
    assert h.from_.organ_id == "000.00.11.H53"
    assert h.from_.organization_in_charge == "UBND tỉnh Tây Ninh"
    assert [o.organ_id for o in h.to] == ["000.00.01.A53", "000.00.00.H53"]
    assert h.code == m.Code("2491", "STC-BCTC")
    assert h.document_id == "000.00.11.H53,2024/03/14,2491/STC-BCTC"
    assert h.promulgation_info == m.PromulgationInfo(date(2024, 3, 14), "Tây Ninh")
    assert h.subject == "Báo cáo tình hình thực hiện dự toán ngân sách quý IV"
    assert h.content == h.subject  # content defaults to the subject
    assert h.document_type == m.DocumentType(type=1, type_name="Công văn", type_detail=None)
    assert h.signer_info == m.SignerInfo(full_name="Nguyễn Văn A", position="Giám đốc")
    assert h.priority is Priority.KHAN
    assert h.steering_type is SteeringType.NOT_STEERING
    assert h.to_places == ("Như trên", "Lưu: VT")

    # the sender signs in with a TraceHeader stamped `now`, in Vietnamese local time
    assert built.sender_trace == m.TraceHeader("000.00.11.H53", NOW)
    assert built.sender_trace is not None
    assert built.sender_trace.timestamp is not None
    assert built.sender_trace.timestamp.utcoffset() == NOW.utcoffset()

    # a new document with the default reason
    assert package.business is not None
    assert package.business.doc_type is BusinessDocType.NEW
    assert package.business.reason == "Văn bản điện tử mới" == BusinessDocType.NEW.default_reason
    assert package.business.document_info is None
    assert package.business.staff_info == m.StaffInfo(department="Văn thư", staff="Trần Thị B")


def test_attachments_share_content_ids_with_manifest_and_files() -> None:
    extra = AttachmentSpec("/srv/edxml/extra.txt", "ghi-chu.txt", "text/plain")
    built = package_from_spec(edoc_spec(), now=NOW, extra_attachments=[extra])
    package = built.package
    assert isinstance(package, m.EdocPackage)
    ref_ids = [r.content_id for r in package.references]
    att_ids = [a.content_id for a in package.attachments]
    file_ids = [cid for cid, _ in built.attachment_files]
    assert len(ref_ids) == 3
    assert ref_ids == att_ids == file_ids
    assert len(set(ref_ids)) == 3
    assert all(not cid.startswith("cid:") for cid in ref_ids)
    assert [f for _, f in built.attachment_files] == [
        "docs/bao-cao.pdf",
        "C:\\work\\phu-luc.xlsx",
        "/srv/edxml/extra.txt",
    ]
    # names come from the file path (either slash), types default to octet-stream
    assert [r.attachment_name for r in package.references] == ["bao-cao.pdf", "phu-luc.xlsx", "ghi-chu.txt"]
    assert [a.attachment_name for a in package.attachments] == ["bao-cao.pdf", "phu-luc.xlsx", "ghi-chu.txt"]
    assert [r.content_type for r in package.references] == [
        "application/pdf",
        "application/octet-stream",
        "text/plain",
    ]
    assert [a.content_type for a in package.attachments] == [r.content_type for r in package.references]
    assert [r.description for r in package.references] == ["Báo cáo", "phu-luc.xlsx", "ghi-chu.txt"]


def test_wrap_attachments_as_zip_keeps_the_manifest_type() -> None:
    built = package_from_spec(edoc_spec(), now=NOW)
    assert isinstance(built.package, m.EdocPackage)
    wrapped = wrap_attachments_as_zip(built.package)
    assert {a.content_type for a in wrapped.attachments} == {"application/zip"}
    assert [r.content_type for r in wrapped.references] == ["application/pdf", "application/octet-stream"]
    assert [a.content_id for a in wrapped.attachments] == [a.content_id for a in built.package.attachments]


def test_no_attachments() -> None:
    built = package_from_spec(edoc_spec(attachments=None), now=NOW)
    assert isinstance(built.package, m.EdocPackage)
    assert built.package.references == ()
    assert built.package.attachments == ()
    assert built.attachment_files == ()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("khan", Priority.KHAN),
        ("khẩn", Priority.KHAN),
        ("KHAN", Priority.KHAN),
        ("hỏa tốc", Priority.HOA_TOC),
        ("HỎA TỐC", Priority.HOA_TOC),
        ("hoa_toc", Priority.HOA_TOC),
        ("thượng khẩn", Priority.THUONG_KHAN),
        ("hỏa tốc hẹn giờ", Priority.HOA_TOC_HEN_GIO),
        ("thuong", Priority.THUONG),
        (" khan ", Priority.KHAN),
        (3, Priority.HOA_TOC),
        ("4", Priority.HOA_TOC_HEN_GIO),
        (0, Priority.THUONG),
    ],
)
def test_priority_words_and_numbers(value: object, expected: Priority) -> None:
    built = package_from_spec(edoc_spec(priority=value), now=NOW)
    assert isinstance(built.package, m.EdocPackage)
    assert built.package.header.priority is expected


def test_priority_defaults_to_thuong() -> None:
    spec = edoc_spec()
    del spec["priority"]
    built = package_from_spec(spec, now=NOW)
    assert isinstance(built.package, m.EdocPackage)
    assert built.package.header.priority is Priority.THUONG


def test_date_objects_and_sent_at() -> None:
    spec = edoc_spec(
        promulgation={"date": date(2024, 3, 1)},
        sent_at="2024-03-15T01:00:00Z",
        due_date="20/03/2024",
    )
    built = package_from_spec(spec, now=NOW)
    assert isinstance(built.package, m.EdocPackage)
    assert built.package.header.document_id == "000.00.11.H53,2024/03/01,2491/STC-BCTC"
    assert built.package.header.due_date == date(2024, 3, 20)
    # sent_at overrides `now` and is expressed in Vietnamese local time
    assert built.sender_trace == m.TraceHeader("000.00.11.H53", datetime(2024, 3, 15, 8, 0, 0, tzinfo=VN_TZ))


def test_sender_trace_from_utc_now_is_local() -> None:
    now = datetime(2024, 3, 15, 20, 0, 0, tzinfo=UTC)
    built = package_from_spec(edoc_spec(), now=now)
    assert built.sender_trace is not None
    assert built.sender_trace.timestamp is not None
    assert built.sender_trace.timestamp.utcoffset() == VN_TZ.utcoffset(None)
    assert (built.sender_trace.timestamp.day, built.sender_trace.timestamp.hour) == (16, 3)


def test_update_business() -> None:
    business = {
        "doc_type": 2,
        "document_id": "000.00.11.H53,2024/03/01,2400/STC-BCTC",
        "receivers": [
            {"organ_id": "000.00.00.H53", "removed": True},
            {"organ_id": "000.00.01.A53"},
            {"x": 1},
        ],
    }
    built = package_from_spec(edoc_spec(business=business), now=NOW)
    assert isinstance(built.package, m.EdocPackage)
    b = built.package.business
    assert b is not None
    assert b.doc_type is BusinessDocType.UPDATE
    assert b.reason == "Cập nhật văn bản điện tử"
    assert b.document_id == "000.00.11.H53,2024/03/01,2400/STC-BCTC"
    assert b.document_info == m.BusinessDocumentInfo(
        1,
        1,
        (m.Receiver("000.00.00.H53", ReceiverType.REMOVED), m.Receiver("000.00.01.A53", ReceiverType.ADDED)),
    )


def test_replace_business() -> None:
    business = {
        "doc_type": 3,
        "reason": "Thay thế do sai sót",
        "replacements": [
            {"document_id": "000.00.11.H53,2024/03/01,2400/STC-BCTC", "organ_ids": ["000.00.01.A53"]}
        ],
    }
    built = package_from_spec(edoc_spec(business=business), now=NOW)
    assert isinstance(built.package, m.EdocPackage)
    b = built.package.business
    assert b is not None
    assert b.doc_type is BusinessDocType.REPLACE
    assert b.reason == "Thay thế do sai sót"
    assert b.replacements == (
        m.ReplacementInfo("000.00.11.H53,2024/03/01,2400/STC-BCTC", ("000.00.01.A53",)),
    )


# status -------------------------------------------------------------------------------------------


def test_status_spec() -> None:
    built = package_from_spec(status_spec(), now=NOW)
    status = built.package
    assert isinstance(status, m.StatusPackage)
    assert status.status_code is StatusCode("03") is StatusCode.ACCEPTED
    assert status.description == "Đã tiếp nhận, vào sổ" == StatusCode.ACCEPTED.label_vi
    assert status.timestamp == NOW
    assert status.from_.organ_id == "000.00.01.A53"
    assert status.response_for == m.ResponseFor(
        "000.00.11.H53", "2491/STC-BCTC", date(2024, 3, 14), "000.00.11.H53,2024/03/14,2491/STC-BCTC"
    )
    assert status.staff_info == m.StaffInfo(department="Văn thư", staff="Lê Văn C")
    assert built.attachment_files == ()
    assert built.sender_trace is None


@pytest.mark.parametrize(
    ("code", "expected"),
    [("01", StatusCode.ARRIVED), (6, StatusCode.FINISHED), ("13", StatusCode.RECALL_REQUESTED)],
)
def test_status_codes(code: object, expected: StatusCode) -> None:
    built = package_from_spec(status_spec(status_code=code, description="Ghi chú"), now=NOW)
    assert isinstance(built.package, m.StatusPackage)
    assert built.package.status_code is expected
    assert built.package.description == "Ghi chú"


def test_status_timestamp_from_spec() -> None:
    built = package_from_spec(status_spec(timestamp="2024/03/16 08:00:00"), now=NOW)
    assert isinstance(built.package, m.StatusPackage)
    assert built.package.timestamp == datetime(2024, 3, 16, 8, 0, 0, tzinfo=VN_TZ)


# refusals -----------------------------------------------------------------------------------------


def _without(spec: dict[str, Any], key: str) -> dict[str, Any]:
    spec = dict(spec)
    del spec[key]
    return spec


@pytest.mark.parametrize(
    ("spec", "path", "fragment"),
    [
        (
            edoc_spec(**{"from": {"organ_id": "vxp.saas.03", "organ_name": "X"}}),
            "from.organ_id",
            "vxp.saas.03",
        ),
        (edoc_spec(**{"from": {"organ_name": "X"}}), "from.organ_id", "is required"),
        (edoc_spec(**{"from": {"organ_id": "000.00.11.H53"}}), "from.organ_name", "is required"),
        (_without(edoc_spec(), "from"), "from", "is required"),
        (_without(edoc_spec(), "to"), "to", "at least one recipient"),
        (edoc_spec(to=[]), "to", "at least one recipient"),
        (edoc_spec(to={"organ_id": "000.00.01.A53", "organ_name": "X"}), "to", "a list"),
        (
            edoc_spec(to=[RECEIVER, {"organ_id": "28.22.H17", "organ_name": "X"}]),
            "to[1].organ_id",
            "28.22.H17",
        ),
        (edoc_spec(to=["000.00.01.A53"]), "to[0]", "mapping"),
        (_without(edoc_spec(), "code"), "code", "is required"),
        (edoc_spec(code={"number": "12"}), "code", "notation"),
        (edoc_spec(promulgation={"date": "2014/02/30"}), "promulgation.date", "2014/02/30"),
        (edoc_spec(promulgation={"place": "Tây Ninh"}), "promulgation.date", "is required"),
        (_without(edoc_spec(), "promulgation"), "promulgation", "is required"),
        (_without(edoc_spec(), "subject"), "subject", "is required"),
        (edoc_spec(subject="   "), "subject", "is required"),
        (edoc_spec(priority="urgent"), "priority", "must be"),
        (edoc_spec(priority=9), "priority", "must be"),
        (edoc_spec(business={"doc_type": 2}), "business.document_id", "DocumentId"),
        (edoc_spec(business={"doc_type": 1}), "business.document_id", "DocumentId"),
        (edoc_spec(business={"doc_type": 3}), "business.replacements", "replaces"),
        (edoc_spec(business={"doc_type": 7}), "business.doc_type", "must be"),
        (edoc_spec(business="new"), "business", "mapping"),
        (edoc_spec(attachments={"file": "a.pdf"}), "attachments", "a list"),
        (edoc_spec(attachments=[{"name": "a.pdf"}]), "attachments[0].file", "is required"),
        (edoc_spec(sent_at="tomorrow"), "sent_at", "tomorrow"),
        (edoc_spec(due_date="2024/02/30"), "due_date", "2024/02/30"),
        (edoc_spec(page_amount="many"), "page_amount", "whole number"),
        (edoc_spec(steering_type=5), "steering_type", "must be"),
        (edoc_spec(kind="foo"), "kind", "'edoc' or 'status'"),
        (status_spec(status_code="07"), "status_code", "must be one of"),
        (status_spec(status_code="abc"), "status_code", "must be one of"),
        (status_spec(response_for={"code": "1/X"}), "response_for.organ_id", "is required"),
        (status_spec(response_for={"organ_id": "000.00.11.H53"}), "response_for.code", "is required"),
        (_without(status_spec(), "response_for"), "response_for", "is required"),
        (
            status_spec(**{"from": {"organ_id": "vxp.saas.03", "organ_name": "X"}}),
            "from.organ_id",
            "vxp.saas.03",
        ),
        (
            status_spec(
                response_for={"organ_id": "000.00.11.H53", "code": "1/X", "promulgation_date": "2014/02/30"}
            ),
            "response_for.promulgation_date",
            "2014/02/30",
        ),
        (status_spec(timestamp="2024/13/01 00:00:00"), "timestamp", "2024/13/01"),
    ],
)
def test_refusal_catalogue(spec: dict[str, Any], path: str, fragment: str) -> None:
    exc = refused(spec)
    matching = [p for p in exc.problems if p.split(":", 1)[0] == path]
    assert matching, exc.problems
    assert any(fragment in p for p in matching), exc.problems
    assert str(exc).startswith("Client.EdxmlSpecInvalid: ")


def test_several_problems_are_reported_together() -> None:
    spec = edoc_spec(
        **{"from": {"organ_id": "vxp.saas.03", "organ_name": "X"}},
        promulgation={"date": "2014/02/30"},
        business={"doc_type": 2},
        attachments=[{"description": "no file"}],
    )
    del spec["to"]
    del spec["code"]
    del spec["subject"]
    exc = refused(spec)
    paths = problem_paths(exc)
    for expected in (
        "from.organ_id",
        "to",
        "code",
        "promulgation.date",
        "subject",
        "business.document_id",
        "attachments[0].file",
    ):
        assert expected in paths, exc.problems
    assert f"{len(exc.problems)} problem(s)" in exc.message
    assert exc.message.endswith("…")


def test_one_problem_message_has_no_ellipsis() -> None:
    exc = refused(edoc_spec(priority="urgent"))
    assert len(exc.problems) == 1
    assert "1 problem(s)" in exc.message
    assert not exc.message.endswith("…")


def test_value_problems_are_reported_with_structural_ones() -> None:
    spec = edoc_spec(priority="urgent", steering_type=5)
    del spec["subject"]
    exc = refused(spec)
    assert {"subject", "priority", "steering_type"} <= set(problem_paths(exc))
