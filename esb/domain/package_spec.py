"""Turn a small description (from YAML or JSON) into a strict edXML package model.

This is *generation*, so it is strict where the reader is lenient: From and To need
conforming identifier codes, the DocumentId is derived as ``OrganId,yyyy/MM/dd,Number/Notation``,
the sender's TraceHeader and the Bussiness block are always present.  Every problem is
reported at once, with the spec path, in one :class:`esb.errors.EdxmlBuildError`.
"""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from esb.domain import edxml_model as m
from esb.domain.edxml_dates import parse_date, parse_datetime, to_local
from esb.domain.edxml_enums import BusinessDocType, Priority, ReceiverType, StatusCode, SteeringType
from esb.domain.identifiers import classify_organ_id
from esb.errors import EdxmlBuildError

_PRIORITY_WORDS = {
    "thuong": Priority.THUONG,
    "thường": Priority.THUONG,
    "khan": Priority.KHAN,
    "khẩn": Priority.KHAN,
    "thuong_khan": Priority.THUONG_KHAN,
    "thượng khẩn": Priority.THUONG_KHAN,
    "hoa_toc": Priority.HOA_TOC,
    "hỏa tốc": Priority.HOA_TOC,
    "hoa_toc_hen_gio": Priority.HOA_TOC_HEN_GIO,
    "hỏa tốc hẹn giờ": Priority.HOA_TOC_HEN_GIO,
}


@dataclass(frozen=True)
class AttachmentSpec:
    """A file to attach: where it is, and how the package names it."""

    file: str
    name: str
    content_type: str
    description: str | None = None


@dataclass(frozen=True)
class BuiltSpec:
    package: m.Package
    attachment_files: tuple[tuple[str, str], ...]  # (content id, file path)
    sender_trace: m.TraceHeader | None


def package_from_spec(
    spec: Mapping[str, Any], *, now: datetime, extra_attachments: Sequence[AttachmentSpec] = ()
) -> BuiltSpec:
    """Build the model described by ``spec``; ``now`` stamps the TraceHeader or status Timestamp."""
    reader = _Spec(spec)
    kind = str(spec.get("kind", "edoc")).strip().lower()
    if kind == "status":
        status = reader.status(now)
        reader.raise_problems()
        if status is None:
            raise EdxmlBuildError("the status description is incomplete", code="Client.EdxmlSpecInvalid")
        return BuiltSpec(status, (), None)
    if kind != "edoc":
        reader.problem("kind", "must be 'edoc' or 'status'")
        reader.raise_problems()
    return reader.edoc(now, extra_attachments)


class _Spec:
    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.spec = spec
        self.problems: list[str] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def raise_problems(self) -> None:
        if self.problems:
            raise EdxmlBuildError(
                f"the package description has {len(self.problems)} problem(s): {self.problems[0]}"
                + (" …" if len(self.problems) > 1 else ""),
                code="Client.EdxmlSpecInvalid",
                problems=self.problems,
            )

    # edoc ---------------------------------------------------------------------------------------
    def edoc(self, now: datetime, extra: Sequence[AttachmentSpec]) -> BuiltSpec:
        s = self.spec
        from_ = self.organization(s.get("from"), "from")
        to_items = s.get("to")
        if not isinstance(to_items, list) or not to_items:
            self.problem("to", "give at least one recipient (a list)")
            to_items = []
        to = [self.organization(item, f"to[{i}]") for i, item in enumerate(to_items)]
        code = self.code(s.get("code"))
        promulgation = self.promulgation(s.get("promulgation"))
        subject = self.text(s, "subject", required=True)
        document_type = self.document_type(s.get("document_type"))
        signer = self.signer(s.get("signer"))
        other_info = m.OtherInfo(
            priority=self.priority(s.get("priority", 0)),
            sphere_of_promulgation=self.text(s, "sphere_of_promulgation"),
            typer_notation=self.text(s, "typer_notation"),
            promulgation_amount=self.int_value(s.get("promulgation_amount"), "promulgation_amount"),
            page_amount=self.int_value(s.get("page_amount"), "page_amount"),
            direction=False,
            appendixes=tuple(str(a) for a in s.get("appendixes") or ()),
        )
        steering_type = self.steering(s.get("steering_type", 0))
        due_date = self.date_value(s.get("due_date"), "due_date")
        business = self.business(s.get("business"))
        sent_at = self.datetime_value(s.get("sent_at"), "sent_at") or now
        attachments = [*self.attachment_specs(s.get("attachments")), *extra]
        self.raise_problems()  # every problem of the description at once
        if from_ is None or code is None or promulgation is None or subject is None:
            raise EdxmlBuildError("the package description is incomplete", code="Client.EdxmlSpecInvalid")
        references: list[m.ManifestReference] = []
        parts: list[m.Attachment] = []
        files: list[tuple[str, str]] = []
        for att in attachments:
            cid = str(uuid.uuid4())
            description = att.description or att.name
            references.append(m.ManifestReference(cid, att.name, att.content_type, description))
            parts.append(m.Attachment(cid, att.name, att.content_type, m.AttachmentData(0, ""), description))
            files.append((cid, att.file))
        header = m.EdocHeader(
            from_=from_,
            to=tuple(o for o in to if o is not None),
            document_id=m.canonical_document_id(from_.organ_id, promulgation.promulgation_date, code),
            subject=subject,
            code=code,
            promulgation_info=promulgation,
            document_type=document_type,
            content=self.text(s, "content") or subject,
            signer_info=signer,
            due_date=due_date,
            other_info=other_info,
            steering_type=steering_type,
            to_places=tuple(str(p) for p in s.get("to_places") or ()),
        )
        package = m.EdocPackage(
            header=header, business=business, references=tuple(references), attachments=tuple(parts)
        )
        return BuiltSpec(package, tuple(files), m.TraceHeader(from_.organ_id, to_local(sent_at)))

    def document_type(self, value: Any) -> m.DocumentType:
        kind = self.mapping(value, "document_type")
        return m.DocumentType(
            type=self.int_value(kind.get("type", 1), "document_type.type"),
            type_name=_opt_str(kind.get("type_name")) or "Công văn",
            type_detail=self.int_value(kind.get("type_detail"), "document_type.type_detail"),
        )

    def signer(self, value: Any) -> m.SignerInfo:
        signer = self.mapping(value, "signer", required=True)
        full_name = _opt_str(signer.get("full_name"))
        if value is not None and full_name is None:
            self.problem("signer.full_name", "is required (người ký)")
        return m.SignerInfo(
            full_name=full_name,
            competence=_opt_str(signer.get("competence")),
            position=_opt_str(signer.get("position")),
        )

    def organization(self, value: Any, path: str) -> m.Organization | None:
        org = self.mapping(value, path, required=True)
        organ_id = _opt_str(org.get("organ_id"))
        if organ_id is None:
            self.problem(f"{path}.organ_id", "is required")
            return None
        if not classify_organ_id(organ_id).is_conforming:
            self.problem(
                f"{path}.organ_id",
                f"'{organ_id}' is not an identifier code in the QCVN 102 (e.g. 000.00.11.H53) or QĐ 20 form",
            )
        if _opt_str(org.get("organ_name")) is None:
            self.problem(f"{path}.organ_name", "is required (hubs reject a package without it)")
        return m.Organization(
            organ_id=organ_id,
            organization_in_charge=_opt_str(org.get("organization_in_charge")),
            organ_name=_opt_str(org.get("organ_name")),
            organ_add=_opt_str(org.get("organ_add")),
            email=_opt_str(org.get("email")),
            telephone=_opt_str(org.get("telephone")),
            fax=_opt_str(org.get("fax")),
            website=_opt_str(org.get("website")),
        )

    def code(self, value: Any) -> m.Code | None:
        code = self.mapping(value, "code", required=True)
        number, notation = _opt_str(code.get("number")), _opt_str(code.get("notation"))
        if number is None or notation is None:
            self.problem("code", "needs number (số) and notation (ký hiệu)")
            return None
        return m.Code(number, notation)

    def promulgation(self, value: Any) -> m.PromulgationInfo | None:
        info = self.mapping(value, "promulgation", required=True)
        when = self.date_value(info.get("date"), "promulgation.date", required=True)
        return m.PromulgationInfo(when, _opt_str(info.get("place"))) if when else None

    def business(self, value: Any) -> m.Business:
        b = self.mapping(value, "business")
        doc_type = BusinessDocType.NEW
        try:
            doc_type = BusinessDocType(int(b.get("doc_type", 0)))
        except (TypeError, ValueError):
            self.problem("business.doc_type", "must be 0 (new), 1 (revoke), 2 (update) or 3 (replace)")
        target = _opt_str(b.get("document_id"))
        if doc_type is not BusinessDocType.NEW and target is None and doc_type is not BusinessDocType.REPLACE:
            self.problem(
                "business.document_id", "a revoke or update names the DocumentId of the target document"
            )
        staff = self.mapping(b.get("staff"), "business.staff")
        receivers = tuple(
            m.Receiver(str(r["organ_id"]), ReceiverType.REMOVED if r.get("removed") else ReceiverType.ADDED)
            for r in b.get("receivers") or ()
            if isinstance(r, Mapping) and r.get("organ_id")
        )
        replacements = tuple(
            m.ReplacementInfo(str(r["document_id"]), tuple(str(o) for o in r.get("organ_ids") or ()))
            for r in b.get("replacements") or ()
            if isinstance(r, Mapping) and r.get("document_id")
        )
        if doc_type is BusinessDocType.REPLACE and not replacements:
            self.problem("business.replacements", "a replacement lists the documents it replaces")
        return m.Business(
            doc_type=doc_type,
            document_id=target,
            reason=_opt_str(b.get("reason")) or doc_type.default_reason,
            paper=self.int_value(b.get("paper", 0), "business.paper"),
            document_info=m.BusinessDocumentInfo(1, 1 if receivers else 0, receivers)
            if doc_type is BusinessDocType.UPDATE
            else None,
            replacements=replacements,
            staff_info=_staff(staff),
        )

    def attachment_specs(self, value: Any) -> list[AttachmentSpec]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.problem("attachments", "must be a list")
            return []
        result: list[AttachmentSpec] = []
        for i, item in enumerate(value):
            att = self.mapping(item, f"attachments[{i}]", required=True)
            file = _opt_str(att.get("file"))
            if file is None:
                self.problem(f"attachments[{i}].file", "is required")
                continue
            name = _opt_str(att.get("name")) or file.replace("\\", "/").rsplit("/", 1)[-1]
            content_type = _opt_str(att.get("content_type")) or "application/octet-stream"
            result.append(AttachmentSpec(file, name, content_type, _opt_str(att.get("description"))))
        return result

    # status -------------------------------------------------------------------------------------
    def status(self, now: datetime) -> m.StatusPackage | None:
        s = self.spec
        from_ = self.organization(s.get("from"), "from")
        rf = self.mapping(s.get("response_for"), "response_for", required=True)
        rf_organ = _opt_str(rf.get("organ_id"))
        if rf_organ is None:
            self.problem(
                "response_for.organ_id", "is required (the original sender; the receiver for code 13)"
            )
        if _opt_str(rf.get("code")) is None:
            self.problem(
                "response_for.code", "is required: Number/Notation of the document, e.g. 2491/STC-BCTC"
            )
        raw_code = str(s.get("status_code", "")).strip()
        status: StatusCode | None = None
        try:
            status = StatusCode(f"{int(raw_code):02d}")
        except ValueError:
            self.problem("status_code", "must be one of 01, 02, 03, 04, 05, 06, 13, 15, 16")
        timestamp = self.datetime_value(s.get("timestamp"), "timestamp") or now
        if from_ is None or rf_organ is None or status is None:
            return None
        return m.StatusPackage(
            from_=from_,
            response_for=m.ResponseFor(
                rf_organ,
                _opt_str(rf.get("code")),
                self.date_value(rf.get("promulgation_date"), "response_for.promulgation_date"),
                _opt_str(rf.get("document_id")),
            ),
            status_code=status,
            timestamp=to_local(timestamp),
            staff_info=_staff(self.mapping(s.get("staff"), "staff")),
            description=self.text(s, "description") or status.label_vi,
        )

    # values -------------------------------------------------------------------------------------
    def mapping(self, value: Any, path: str, *, required: bool = False) -> Mapping[str, Any]:
        if value is None:
            if required:
                self.problem(path, "is required")
            return {}
        if not isinstance(value, Mapping):
            self.problem(path, "must be a mapping of fields")
            return {}
        return value

    def text(self, spec: Mapping[str, Any], key: str, *, required: bool = False) -> str | None:
        value = _opt_str(spec.get(key))
        if value is None and required:
            self.problem(key, "is required")
        return value

    def date_value(self, value: Any, path: str, *, required: bool = False) -> date | None:
        if value is None or value == "":
            if required:
                self.problem(path, "is required (yyyy/MM/dd)")
            return None
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        parsed = parse_date(str(value))
        if parsed is None:
            self.problem(path, f"'{value}' is not a date (yyyy/MM/dd)")
            return None
        return parsed.value

    def datetime_value(self, value: Any, path: str) -> datetime | None:
        if value is None or value == "":
            return None
        if isinstance(value, datetime):
            return value
        parsed = parse_datetime(str(value))
        if parsed is None:
            self.problem(path, f"'{value}' is not a date and time (yyyy/MM/dd HH:mm:ss)")
            return None
        return parsed.value

    def int_value(self, value: Any, path: str) -> int | None:
        if value is None or value == "":
            return None
        try:
            return int(value)
        except (TypeError, ValueError):
            self.problem(path, f"'{value}' is not a whole number")
            return None

    def priority(self, value: Any) -> Priority:
        if isinstance(value, str):
            word = unicodedata.normalize("NFC", value.strip().lower()).replace("hoả", "hỏa")
            if word in _PRIORITY_WORDS:
                return _PRIORITY_WORDS[word]
        try:
            return Priority(int(value))
        except (TypeError, ValueError):
            self.problem("priority", "must be 0-4 or thuong, khan, thuong_khan, hoa_toc, hoa_toc_hen_gio")
            return Priority.THUONG

    def steering(self, value: Any) -> SteeringType:
        try:
            return SteeringType(int(value))
        except (TypeError, ValueError):
            self.problem("steering_type", "must be 0 (not steering), 1 (steering) or 2 (steering report)")
            return SteeringType.NOT_STEERING


def _staff(staff: Mapping[str, Any]) -> m.StaffInfo | None:
    info = m.StaffInfo(
        department=_opt_str(staff.get("department")),
        department_id=_opt_str(staff.get("department_id")),
        staff=_opt_str(staff.get("staff")),
        staff_id=_opt_str(staff.get("staff_id")),
        email=_opt_str(staff.get("email")),
        mobile=_opt_str(staff.get("mobile")),
    )
    return info if info != m.StaffInfo() else None


def _opt_str(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def wrap_attachments_as_zip(package: m.EdocPackage) -> m.EdocPackage:
    """Mark every attachment for the VNPT ZIP convention (the manifest keeps the real type)."""
    return replace(
        package, attachments=tuple(replace(a, content_type="application/zip") for a in package.attachments)
    )
