"""Strict edoc and status packages between demo agencies, as bytes: for `esb demo send`,
the test suite and the benchmarks (one builder, so all three exercise the same packages)."""

from __future__ import annotations

import io
import tempfile
from datetime import date, datetime
from pathlib import Path
from typing import Any

from esb.domain.edxml_dates import format_date
from esb.domain.edxml_enums import Priority, StatusCode
from esb.domain.package_spec import package_from_spec
from esb.xml_processing.edxml_writer import write_package


def edoc_spec(
    sender: str,
    recipients: list[str],
    *,
    number: str,
    promulgated: date,
    subject: str = "Báo cáo tình hình thực hiện nhiệm vụ",
    priority: Priority = Priority.THUONG,
    due_date: date | None = None,
    business: dict[str, Any] | None = None,
    attachment_name: str = "bao-cao.txt",
    content_type: str = "text/plain",
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "kind": "edoc",
        "from": {"organ_id": sender, "organ_name": f"Cơ quan {sender}"},
        "to": [{"organ_id": code, "organ_name": f"Cơ quan {code}"} for code in recipients],
        "code": {"number": number, "notation": "BC-DEMO"},
        "promulgation": {"date": format_date(promulgated), "place": "Tây Ninh"},
        "document_type": {"type": 1, "type_name": "Công văn"},
        "subject": subject,
        "signer": {"full_name": "Nguyễn Văn A", "position": "Giám đốc"},
        "priority": int(priority),
        "business": business or {"doc_type": 0},
        "attachments": [{"file": "attachment", "name": attachment_name, "content_type": content_type}],
    }
    if due_date is not None:
        spec["due_date"] = format_date(due_date)
    return spec


def build_edoc(spec: dict[str, Any], attachment: bytes, *, now: datetime) -> bytes:
    """The package ``spec`` describes, with ``attachment`` as its one file, stamped at ``now``."""
    with tempfile.TemporaryDirectory(prefix="esb-demo-") as work:
        path = Path(work) / "attachment"
        path.write_bytes(attachment)
        built = package_from_spec(spec, now=now)
        files = {cid: path for cid, _ in built.attachment_files}
        out = io.BytesIO()
        write_package(built.package, out, files=files, append_trace=built.sender_trace)
        return out.getvalue()


def build_status(
    sender: str,
    original_sender: str,
    document_id: str,
    code: StatusCode,
    *,
    number: str,
    promulgated: date,
    now: datetime,
    description: str | None = None,
) -> bytes:
    """A status package from ``sender`` about ``document_id`` (for 13, sent by the original sender)."""
    response_for = {
        "organ_id": original_sender,
        "code": f"{number}/BC-DEMO",
        "document_id": document_id,
        "promulgation_date": format_date(promulgated),
    }
    spec: dict[str, Any] = {
        "kind": "status",
        "from": {"organ_id": sender, "organ_name": f"Cơ quan {sender}"},
        "response_for": response_for,
        "status_code": code.value,
        "staff": {"department": "Văn thư", "staff": "Lê Văn C"},
    }
    if description:
        spec["description"] = description
    built = package_from_spec(spec, now=now)
    out = io.BytesIO()
    write_package(built.package, out)
    return out.getvalue()
