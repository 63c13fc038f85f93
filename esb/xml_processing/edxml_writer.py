"""Strict edXML writer: the canonical layout, validated against our own XSD before any byte is written.

Layout (what the VNPT A3 library and the axis SDK emit): root ``<edXML>`` declaring the QCVN
namespace as default, ``<edXML:edXMLEnvelope xmlns:edXML=…>`` with every header and body
element prefixed ``edXML:``, the A3 child order, dates ``yyyy/MM/dd[ HH:mm:ss]``, two-digit
status codes, ``cid:`` content ids, then an unprefixed ``AttachmentEncoded`` whose base64 is
one line per file, streamed from disk so a package of any size is written in flat memory.
"""

from __future__ import annotations

import hashlib
import secrets
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from pathlib import Path
from typing import IO

from lxml import etree

from esb.domain import edxml_model as m
from esb.domain.edxml_dates import format_date, format_datetime
from esb.domain.edxml_enums import BusinessDocType
from esb.domain.identifiers import classify_organ_id
from esb.errors import EdxmlBuildError
from esb.xml_processing import namespaces as ns
from esb.xml_processing.attachments import (
    ZIP_CONTENT_TYPE,
    EncodedFile,
    encode_base64,
    file_digest,
    zip_single_file,
)
from esb.xml_processing.edxml_structure import ORGANIZATION, STAFF_INFO
from esb.xml_processing.schemas import SchemaName, SchemaRegistry

_PREFIXED = {ns.EDXML_PREFIX: ns.EDXML}
_NEW_DOCUMENT = m.Business(BusinessDocType.NEW, reason=BusinessDocType.NEW.default_reason)


@dataclass(frozen=True)
class WriteResult:
    """The package as written (attachments described from the files) and digests of the bytes."""

    package: m.Package
    sha256: str
    size: int


def write_package(
    package: m.Package,
    out: IO[bytes],
    *,
    files: Mapping[str, Path] | None = None,
    append_trace: m.TraceHeader | None = None,
    schemas: SchemaRegistry | None = None,
) -> WriteResult:
    """Write ``package`` to ``out`` in the canonical layout.

    ``files`` maps each attachment's content id to the file holding its *content*; an
    attachment whose ``data.unwrapped_zip`` is set, or whose ContentType is application/zip
    while the manifest type is not, is wrapped in a ZIP as the VNPT SDK does.  ``append_trace``
    adds our own TraceHeader after the existing ones (never rewriting them); its OrganId must
    be a conforming identifier code.
    """
    registry = schemas or SchemaRegistry.default()
    if isinstance(package, m.StatusPackage):
        tree = _status_tree(package)
        _validate(registry, tree)
        return _serialize(tree, package, out, [])
    if append_trace is not None:
        _check_own_trace(append_trace)
        package = replace(package, trace_headers=(*package.trace_headers, append_trace))
    # A signature does not survive re-serialisation: signing is a separate, later step.
    package = replace(package, signature=None, business=package.business or _NEW_DOCUMENT)
    with tempfile.TemporaryDirectory(prefix="esb-build-") as work:
        sources, package = _prepare_files(package, files or {}, Path(work))
        tree = _edoc_tree(package)
        _validate(registry, tree)
        return _serialize(tree, package, out, sources)


def _check_own_trace(trace: m.TraceHeader) -> None:
    if trace.organ_id is None or not classify_organ_id(trace.organ_id).is_conforming:
        raise EdxmlBuildError(
            f"our own TraceHeader needs a conforming identifier code, not {trace.organ_id!r}",
            code="Client.EdxmlBuildIdentifier",
        )
    if trace.timestamp is None:
        raise EdxmlBuildError("our own TraceHeader needs a timestamp", code="Client.EdxmlBuildInvalid")


@dataclass(frozen=True)
class _Source:
    content_id: str
    path: Path


def _prepare_files(
    package: m.EdocPackage, files: Mapping[str, Path], work: Path
) -> tuple[list[_Source], m.EdocPackage]:
    """Check every attachment has a file, wrap the ZIP ones, and describe what will be written."""
    references = {r.content_id: r for r in package.references}
    sources: list[_Source] = []
    attachments: list[m.Attachment] = []
    missing = [a.content_id for a in package.attachments if a.content_id not in files]
    if missing:
        raise EdxmlBuildError(
            "no file given for attachment(s) " + ", ".join(f"cid:{c}" for c in missing),
            code="Client.EdxmlBuildAttachment",
        )
    for attachment in package.attachments:
        path = files[attachment.content_id]
        if not path.is_file():
            raise EdxmlBuildError(
                f"attachment file {path} does not exist", code="Client.EdxmlBuildAttachment"
            )
        content = file_digest(path)
        reference = references.get(attachment.content_id)
        wrap = attachment.data.unwrapped_zip or (
            _is_zip_type(attachment.content_type)
            and not _is_zip_type(reference.content_type if reference else None)
        )
        encoded_path = zip_single_file(path, attachment.attachment_name or path.name, work) if wrap else path
        encoded = file_digest(encoded_path) if wrap else content
        data = m.AttachmentData(content.size, content.sha256, wrap, encoded.size, encoded.sha256, str(path))
        attachments.append(
            replace(attachment, content_type=ZIP_CONTENT_TYPE if wrap else attachment.content_type, data=data)
        )
        sources.append(_Source(attachment.content_id, encoded_path))
    return sources, replace(package, attachments=tuple(attachments))


def _is_zip_type(value: str | None) -> bool:
    return value is not None and value.split(";", 1)[0].strip().lower() == ZIP_CONTENT_TYPE


def _validate(registry: SchemaRegistry, tree: etree._Element) -> None:
    violations = registry.validate(SchemaName.EDXML_STRICT, tree)
    if violations:
        problems = [f"{v.path}: {v.message}" for v in violations]
        raise EdxmlBuildError(
            f"the package would not be strict edXML: {problems[0]}"
            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
            code="Client.EdxmlBuildInvalid",
            problems=problems,
        )


def _serialize(
    tree: etree._Element, package: m.Package, out: IO[bytes], sources: Sequence[_Source]
) -> WriteResult:
    """Serialise with a random marker in each ContentTransferEncoded, then stream base64 in its place."""
    markers: list[str] = []
    for element in tree.iter(ns.qname("ContentTransferEncoded")):
        marker = f"ESB-ATTACHMENT-{secrets.token_hex(16)}"
        element.text = marker
        markers.append(marker)
    etree.indent(tree, space="  ")
    document = b'<?xml version="1.0" encoding="UTF-8"?>\n' + etree.tostring(tree, encoding="UTF-8")
    digest = hashlib.sha256()
    size = 0

    def emit(chunk: bytes) -> None:
        nonlocal size
        digest.update(chunk)
        size += len(chunk)
        out.write(chunk)

    rest = document
    for marker, source in zip(markers, sources, strict=True):
        before, found, rest = rest.partition(marker.encode("ascii"))
        if not found:  # pragma: no cover - the marker was just written into the tree
            raise EdxmlBuildError("internal marker lost while serialising", code="Server.EdxmlBuild")
        emit(before)
        encoded: list[EncodedFile] = []
        with source.path.open("rb") as handle:
            for chunk in encode_base64(handle, encoded):
                emit(chunk)
    emit(rest)
    return WriteResult(package, digest.hexdigest(), size)


# tree building ------------------------------------------------------------------------------------


def _el(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    child = etree.SubElement(parent, ns.qname(name))
    if text is not None:
        child.text = text
    return child


def _opt(parent: etree._Element, name: str, value: object) -> None:
    """Write ``value`` in its strict lexical form; nothing at all when it is absent."""
    if value is None:
        return
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int):  # IntEnum members too: their number, not their name
        text = str(int(value))
    elif isinstance(value, datetime):
        text = format_datetime(value)
    elif isinstance(value, date):
        text = format_date(value)
    else:
        text = str(value)
    _el(parent, name, text)


def _text_list(parent: etree._Element, container: str, item: str, values: Sequence[str]) -> None:
    if values:
        element = _el(parent, container)
        for value in values:
            _el(element, item, value)


def _root() -> tuple[etree._Element, etree._Element, etree._Element]:
    root = etree.Element(ns.qname("edXML"), nsmap={None: ns.EDXML})  # type: ignore[dict-item]  # lxml-stubs
    envelope = etree.SubElement(root, ns.qname("edXMLEnvelope"), nsmap=_PREFIXED)
    header = _el(envelope, "edXMLHeader")
    return root, envelope, header


def _organization(parent: etree._Element, name: str, org: m.Organization) -> None:
    el = _el(parent, name)
    values = (
        org.organ_id,
        org.organization_in_charge,
        org.organ_name,
        org.organ_add,
        org.email,
        org.telephone,
        org.fax,
        org.website,
    )
    for child, value in zip(ORGANIZATION, values, strict=True):
        _opt(el, child, value)


def _staff(parent: etree._Element, staff: m.StaffInfo | None) -> None:
    if staff is None:
        return
    el = _el(parent, "StaffInfo")
    values = (staff.department, staff.department_id, staff.staff, staff.staff_id, staff.email, staff.mobile)
    for child, value in zip(STAFF_INFO, values, strict=True):
        _opt(el, child, value)


def _status_tree(package: m.StatusPackage) -> etree._Element:
    root, _, header = _root()
    message = _el(header, "MessageHeader")
    _organization(message, "From", package.from_)
    response = _el(message, "ResponseFor")
    rf = package.response_for
    _opt(response, "OrganId", rf.organ_id)
    _opt(response, "Code", rf.code)
    _opt(response, "DocumentId", rf.document_id)
    _opt(response, "PromulgationDate", rf.promulgation_date)
    _staff(message, package.staff_info)
    _el(message, "StatusCode", package.status_code.value)
    _opt(message, "Description", package.description)
    _opt(message, "Timestamp", package.timestamp)
    return root


def _edoc_tree(package: m.EdocPackage) -> etree._Element:
    root, envelope, header = _root()
    _message_header(_el(header, "MessageHeader"), package.header)
    _trace_list(header, package)
    manifest = _el(_el(envelope, "edXMLBody"), "edXMLManifest")
    manifest.set("version", "1.0")
    for ref in package.references:
        el = _el(manifest, "Reference")
        _el(el, "ContentId", f"cid:{ref.content_id}")
        _opt(el, "ContentType", ref.content_type)
        _opt(el, "Description", ref.description)
        _opt(el, "AttachmentName", ref.attachment_name)
    if package.attachments:
        container = _el(root, "AttachmentEncoded")
        for att in package.attachments:
            el = _el(container, "Attachment")
            _el(el, "ContentId", f"cid:{att.content_id}")
            _opt(el, "AttachmentName", att.attachment_name)
            _opt(el, "Description", att.description)
            _opt(el, "FieldName", att.field_name)
            _opt(el, "MimeType", att.mime_type)
            _opt(el, "Format", att.format)
            _opt(el, "ContentType", att.content_type)
            etree.SubElement(el, ns.qname("ContentTransferEncoded"), nsmap=_PREFIXED).text = ""
    return root


def _message_header(message: etree._Element, h: m.EdocHeader) -> None:
    _organization(message, "From", h.from_)
    for to in h.to:
        _organization(message, "To", to)
    _el(message, "DocumentId", h.document_id)
    if h.code is not None:
        code = _el(message, "Code")
        _el(code, "CodeNumber", h.code.number)
        _el(code, "CodeNotation", h.code.notation)
    if h.promulgation_info is not None:
        info = _el(message, "PromulgationInfo")
        _opt(info, "Place", h.promulgation_info.place)
        _opt(info, "PromulgationDate", h.promulgation_info.promulgation_date)
    if h.document_type is not None:
        doc_type = _el(message, "DocumentType")
        _opt(doc_type, "Type", h.document_type.type)
        _opt(doc_type, "TypeDetail", h.document_type.type_detail)
        _opt(doc_type, "TypeName", h.document_type.type_name)
    _el(message, "Subject", h.subject)
    _opt(message, "Content", h.content)
    if h.signer_info is not None:
        signer = _el(message, "SignerInfo")
        _opt(signer, "Competence", h.signer_info.competence)
        _opt(signer, "Position", h.signer_info.position)
        _opt(signer, "FullName", h.signer_info.full_name)
    _opt(message, "DueDate", h.due_date)
    if h.other_info is not None:
        _other_info(_el(message, "OtherInfo"), h.other_info)
    for rf in h.response_for:
        response = _el(message, "ResponseFor")
        _opt(response, "OrganId", rf.organ_id)
        _opt(response, "Code", rf.code)
        _opt(response, "PromulgationDate", rf.promulgation_date)
        _opt(response, "DocumentId", rf.document_id)
    _opt(message, "SteeringType", h.steering_type)
    _text_list(message, "ResponseForTask", "TaskCode", h.response_for_task)
    _opt(message, "ApplicationType", h.application_type)
    _text_list(message, "ToPlaces", "Place", h.to_places)


def _other_info(el: etree._Element, o: m.OtherInfo) -> None:
    _opt(el, "Priority", o.priority)
    _opt(el, "SphereOfPromulgation", o.sphere_of_promulgation)
    _opt(el, "TyperNotation", o.typer_notation)
    _opt(el, "PromulgationAmount", o.promulgation_amount)
    _opt(el, "PageAmount", o.page_amount)
    _opt(el, "ReplyFors", o.reply_fors)
    _opt(el, "Direction", o.direction)
    _opt(el, "ReferenceCodes", o.reference_codes)
    _text_list(el, "Appendixes", "Appendix", o.appendixes)


def _trace_list(header: etree._Element, package: m.EdocPackage) -> None:
    trace_list = _el(header, "TraceHeaderList")
    if package.trace_list_id:
        trace_list.set("id", package.trace_list_id)
    if package.trace_list_version:
        trace_list.set("version", package.trace_list_version)
    for trace in package.trace_headers:
        el = _el(trace_list, "TraceHeader")
        _opt(el, "OrganId", trace.organ_id)
        _opt(el, "Timestamp", trace.timestamp)
    if package.business is not None:
        _business(_el(trace_list, "Bussiness"), package.business)


def _business(el: etree._Element, b: m.Business) -> None:
    _opt(el, "DocumentId", b.document_id)
    _el(el, "BussinessDocType", str(int(b.doc_type)))
    _opt(el, "BussinessDocReason", b.reason)
    _opt(el, "Paper", b.paper)
    if b.document_info is not None:
        info = _el(el, "BussinessDocumentInfo")
        _opt(info, "DocumentInfo", b.document_info.document_info)
        _opt(info, "DocumentReceiver", b.document_info.document_receiver)
        if b.document_info.receivers:
            receivers = _el(info, "ReceiverList")
            for receiver in b.document_info.receivers:
                r = _el(receivers, "Receiver")
                _el(r, "OrganId", receiver.organ_id)
                _el(r, "ReceiverType", str(int(receiver.receiver_type)))
    if b.replacements:
        replacements = _el(el, "ReplacementInfoList")
        for item in b.replacements:
            r = _el(replacements, "ReplacementInfo")
            _el(r, "DocumentId", item.document_id)
            organs = _el(r, "OrganIdList")
            for organ_id in item.organ_ids:
                _opt(organs, "OrganId", organ_id)
    _staff(el, b.staff_info)
