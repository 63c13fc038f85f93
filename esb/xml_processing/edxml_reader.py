"""Lenient edXML reader: accepts what real hubs and SDKs emit, and says how it deviates.

The bytes are streamed through :func:`esb.xml_processing.parsing.parse_stream`; the text of
every ``AttachmentEncoded/Attachment/ContentTransferEncoded`` goes straight into a
:class:`~esb.xml_processing.attachments.Base64Decoder`, so the tree holds the header only.
Elements are matched by namespace URI and local name (never by prefix) in any order; every
deviation from the strict form becomes a warning with its element path, every problem we
cannot accept an error.  Errors raise :class:`esb.errors.EdxmlInvalid` carrying all findings.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import IO, NoReturn, TypeVar

from lxml import etree

from esb.domain import edxml_model as m
from esb.domain.edxml_dates import DateForm, parse_date, parse_datetime
from esb.domain.edxml_enums import BusinessDocType, Priority, ReceiverType, StatusCode, SteeringType
from esb.domain.identifiers import classify_organ_id
from esb.domain.issues import Issue, error, warning
from esb.errors import EdxmlInvalid
from esb.xml_processing import namespaces as ns
from esb.xml_processing.attachments import (
    AttachmentPolicy,
    Base64Decoder,
    finish_attachment,
    looks_text_decoded,
)
from esb.xml_processing.edxml_structure import CANONICAL_ORDER, REPEATABLE, SPELLING_ALIASES
from esb.xml_processing.parsing import CHUNK_SIZE, TextConsumer, XmlLimits, parse_stream

E = TypeVar("E")
Source = bytes | Path | str | IO[bytes]
_DOCUMENT_ID = re.compile(r"^(?P<organ>[^,]+),(?P<date>\d{4}/\d{2}/\d{2}),(?P<code>[^/]+/.+)$")
_NULL_LITERALS = frozenset({"null", "none", "undefined"})


@dataclass(frozen=True)
class ReadResult:
    """A package we accept, with the warnings found and digests of the bytes as received."""

    package: m.Package
    warnings: tuple[Issue, ...]
    sha256: str
    size: int
    tree: etree._Element = field(repr=False, compare=False)


def read_package(
    source: Source,
    *,
    attachments: AttachmentPolicy = AttachmentPolicy(),
    limits: XmlLimits = XmlLimits(),
) -> ReadResult:
    """Read an edoc or status package.

    Raises :class:`esb.errors.XmlInputError` when the bytes are not acceptable XML and
    :class:`esb.errors.EdxmlInvalid` when the XML is not an acceptable edXML package.
    """
    digest = hashlib.sha256()
    size = 0
    decoders: list[Base64Decoder] = []
    spool_dir = attachments.extract_dir

    def chunks() -> Iterator[bytes]:
        nonlocal size
        for chunk in _read_chunks(source):
            digest.update(chunk)
            size += len(chunk)
            yield chunk

    def divert(tag: str, depth: int) -> TextConsumer | None:
        if depth == 4 and _local(tag) == "ContentTransferEncoded":
            decoder = Base64Decoder(
                f"/edXML/AttachmentEncoded/Attachment[{len(decoders) + 1}]/ContentTransferEncoded", spool_dir
            )
            decoders.append(decoder)
            return decoder
        return None

    if spool_dir is not None:
        spool_dir.mkdir(parents=True, exist_ok=True)
    try:
        root = parse_stream(chunks(), limits=limits, divert=divert)
        reader = _Reader(root, decoders, attachments)
        package = reader.read()
    finally:
        for decoder in decoders:
            decoder.discard()
    return ReadResult(package, tuple(reader.issues), digest.hexdigest(), size, root)


def _read_chunks(source: Source) -> Iterator[bytes]:
    if isinstance(source, bytes):
        view = memoryview(source)
        for start in range(0, len(view), CHUNK_SIZE):
            yield bytes(view[start : start + CHUNK_SIZE])
    elif isinstance(source, (str, Path)):
        with Path(source).open("rb") as handle:
            yield from _read_chunks(handle)
    else:
        while chunk := source.read(CHUNK_SIZE):
            yield chunk


def _attribute(el: etree._Element | None, *names: str) -> str | None:
    if el is None:
        return None
    for name in names:
        value = el.get(name)
        if value:
            return str(value)
    return None


def _local(tag: object) -> str:
    return ns.split_tag(tag)[1] if isinstance(tag, str) else ""


class _Reader:
    """One pass over the header tree; collects issues and builds the model."""

    def __init__(self, root: etree._Element, decoders: list[Base64Decoder], policy: AttachmentPolicy) -> None:
        self.root = root
        self.decoders = decoders
        self.policy = policy
        self.issues: list[Issue] = []
        self._no_namespace: list[etree._Element] = []

    # entry ----------------------------------------------------------------------------------
    def read(self) -> m.Package:
        header, envelope_kids = self._envelope()
        message = self._one(header, "MessageHeader")
        if message is None:
            self._fatal(
                "Client.EdxmlMissingElement",
                self._path(header) + "/MessageHeader",
                "MessageHeader is missing",
            )
        kind = self._kind(message)
        package: m.Package | None
        if kind == "status":
            package = self._status(message)
            for extra in ("TraceHeaderList", "Signature"):
                if self._kids(header, "edXMLHeader").get(extra):
                    self._warn(
                        "W.UnexpectedElement",
                        self._path(header) + "/" + extra,
                        "a status package has no " + extra,
                    )
        else:
            package = self._edoc(message, header, envelope_kids)
        if self._no_namespace:
            first = self._path(self._no_namespace[0])
            self._warn(
                "W.NoNamespace",
                first,
                f"{len(self._no_namespace)} element(s) are in no namespace "
                f"instead of {ns.EDXML} (first here)",
            )
        errors = [i for i in self.issues if i.is_error]
        if errors or package is None:
            raise EdxmlInvalid(sorted(self.issues, key=lambda i: not i.is_error))
        return package

    def _envelope(self) -> tuple[etree._Element, dict[str, list[etree._Element]]]:
        root = self.root
        root_ns, root_name = ns.split_tag(root.tag)
        if root_name != "edXML":
            self._fatal(
                "Client.EdxmlWrongRoot", f"/{root_name}", f"the root element is <{root_name}>, not <edXML>"
            )
        if root_ns in (ns.EDOC_VN_2013, ns.GO_VN_EDOC):
            self._fatal(
                "Client.EdxmlUnsupportedVariant",
                "/edXML",
                f"the namespace {root_ns} belongs to a pre-QCVN 102:2016 edXML variant, "
                "which is not accepted",
            )
        if root_ns not in (ns.EDXML, None):
            self._fatal(
                "Client.EdxmlWrongNamespace", "/edXML", f"the root is in namespace {root_ns}, not {ns.EDXML}"
            )
        root_kids = self._kids(root, "edXML")
        envelope = self._first(root_kids, "edXMLEnvelope")
        if envelope is None:
            self._fatal("Client.EdxmlMissingElement", "/edXML/edXMLEnvelope", "edXMLEnvelope is missing")
        envelope_kids = self._kids(envelope, "edXMLEnvelope")
        header = self._first(envelope_kids, "edXMLHeader")
        if header is None:
            self._fatal(
                "Client.EdxmlMissingElement", "/edXML/edXMLEnvelope/edXMLHeader", "edXMLHeader is missing"
            )
        envelope_kids["AttachmentEncoded"] = root_kids.get("AttachmentEncoded", [])
        return header, envelope_kids

    def _kind(self, message: etree._Element) -> str:
        names = {_local(c.tag) for c in message if isinstance(c.tag, str)}
        if "StatusCode" in names:
            return "status"
        if "To" not in names and "ResponseFor" in names and names & {"Timestamp", "Description", "StaffInfo"}:
            self._fatal(
                "Client.EdxmlStatusCodeMissing",
                self._path(message) + "/StatusCode",
                "this is a status package (ResponseFor, Timestamp, no To) but it has no StatusCode",
            )
        return "edoc"

    # edoc -----------------------------------------------------------------------------------
    def _edoc(
        self, message: etree._Element, header: etree._Element, envelope_kids: dict[str, list[etree._Element]]
    ) -> m.EdocPackage | None:
        kids = self._kids(message, "MessageHeader/edoc")
        path = self._path(message)
        from_ = self._organization(self._one_of(kids, "From", path, required=True))
        to = tuple(o for o in (self._organization(e) for e in kids.get("To", [])) if o is not None)
        if not kids.get("To"):
            self._error("Client.EdxmlMissingElement", path + "/To", "the package has no recipient (To)")
        self._check_duplicate_recipients(to, path)
        document_id = self._text(self._one_of(kids, "DocumentId", path))
        if document_id is None:
            self._error("Client.EdxmlMissingElement", path + "/DocumentId", "DocumentId is missing or empty")
        subject = self._text(self._one_of(kids, "Subject", path))
        if subject is None:
            self._error(
                "Client.EdxmlMissingElement", path + "/Subject", "Subject (trích yếu) is missing or empty"
            )
        code = self._code(self._one_of(kids, "Code", path))
        promulgation = self._promulgation(self._one_of(kids, "PromulgationInfo", path))
        for name, value in (("Code", code), ("PromulgationInfo", promulgation)):
            if value is None:
                self._warn(
                    "W.MissingRecommended", f"{path}/{name}", f"{name} is missing; generators always send it"
                )
        if document_id is not None and from_ is not None:
            self._check_document_id(document_id, from_.organ_id, f"{path}/DocumentId")
        trace_list = self._first(self._kids(header, "edXMLHeader"), "TraceHeaderList")
        traces, business = self._trace_list(trace_list, self._path(header) + "/TraceHeaderList")
        references = self._manifest(envelope_kids.get("edXMLBody", []))
        attachments = self._attachments(envelope_kids.get("AttachmentEncoded", []), references)
        signature = self._signature(header)
        if from_ is None or document_id is None or subject is None or not to:
            return None
        edoc_header = m.EdocHeader(
            from_=from_,
            to=to,
            document_id=document_id,
            subject=subject,
            code=code,
            promulgation_info=promulgation,
            document_type=self._document_type(self._one_of(kids, "DocumentType", path)),
            content=self._text(self._one_of(kids, "Content", path)),
            signer_info=self._signer(self._one_of(kids, "SignerInfo", path)),
            due_date=self._date(self._one_of(kids, "DueDate", path)),
            other_info=self._other_info(self._one_of(kids, "OtherInfo", path)),
            response_for=tuple(
                r
                for r in (self._response_for(e, "ResponseFor/edoc") for e in kids.get("ResponseFor", []))
                if r
            ),
            steering_type=self._steering(self._one_of(kids, "SteeringType", path)),
            response_for_task=self._texts(
                self._one_of(kids, "ResponseForTask", path), "ResponseForTask", "TaskCode"
            ),
            application_type=self._text(self._one_of(kids, "ApplicationType", path)),
            to_places=self._texts(self._one_of(kids, "ToPlaces", path), "ToPlaces", "Place"),
        )
        return m.EdocPackage(
            header=edoc_header,
            trace_headers=traces,
            business=business,
            references=references,
            attachments=attachments,
            signature=signature,
            trace_list_id=_attribute(trace_list, "id", "Id"),
            trace_list_version=_attribute(trace_list, "version", "Version"),
        )

    def _organization(self, el: etree._Element | None) -> m.Organization | None:
        if el is None:
            return None
        kids = self._kids(el, _local(el.tag))
        path = self._path(el)
        organ_id = self._organ_id(self._one_of(kids, "OrganId", path))
        if organ_id is None:
            self._error(
                "Client.EdxmlMissingElement", path + "/OrganId", "OrganId (mã định danh) is missing or empty"
            )
            return None
        values = {name: self._text(self._one_of(kids, name, path)) for name in CANONICAL_ORDER["From"][1:]}
        return m.Organization(
            organ_id=organ_id,
            organization_in_charge=values["OrganizationInCharge"],
            organ_name=values["OrganName"],
            organ_add=values["OrganAdd"],
            email=values["Email"],
            telephone=values["Telephone"],
            fax=values["Fax"],
            website=values["Website"],
        )

    def _check_duplicate_recipients(self, to: tuple[m.Organization, ...], path: str) -> None:
        seen: set[str] = set()
        for index, org in enumerate(to, start=1):
            if org.organ_id in seen:
                self._warn(
                    "W.DuplicateRecipient", f"{path}/To[{index}]", f"{org.organ_id} is listed twice in To"
                )
            seen.add(org.organ_id)

    def _check_document_id(self, document_id: str, sender: str, path: str) -> None:
        match = _DOCUMENT_ID.match(document_id)
        if match is None:
            self._warn(
                "W.DocumentIdFormat", path, "DocumentId is not in the form OrganId,yyyy/MM/dd,Number/Notation"
            )
        elif match["organ"] != sender:
            self._warn(
                "W.DocumentIdSender", path, f"DocumentId names {match['organ']} but the sender is {sender}"
            )

    def _code(self, el: etree._Element | None) -> m.Code | None:
        if el is None:
            return None
        kids = self._kids(el, "Code")
        path = self._path(el)
        number = self._text(self._one_of(kids, "CodeNumber", path))
        notation = self._text(self._one_of(kids, "CodeNotation", path))
        if number is None or notation is None:
            self._warn("W.MissingRecommended", path, "Code needs both CodeNumber and CodeNotation; ignored")
            return None
        return m.Code(number, notation)

    def _promulgation(self, el: etree._Element | None) -> m.PromulgationInfo | None:
        if el is None:
            return None
        kids = self._kids(el, "PromulgationInfo")
        path = self._path(el)
        date_el = self._one_of(kids, "PromulgationDate", path)
        value = self._date(date_el)
        if value is None:
            if date_el is not None and self._text(date_el, report_empty=False) is not None:
                self._error(
                    "Client.EdxmlInvalidValue", self._path(date_el), "PromulgationDate is not a valid date"
                )
            else:
                self._warn("W.MissingRecommended", path + "/PromulgationDate", "PromulgationDate is missing")
            return None
        return m.PromulgationInfo(value, self._text(self._one_of(kids, "Place", path)))

    def _document_type(self, el: etree._Element | None) -> m.DocumentType | None:
        if el is None:
            return None
        kids = self._kids(el, "DocumentType")
        path = self._path(el)
        return m.DocumentType(
            type=self._int(self._one_of(kids, "Type", path)),
            type_name=self._text(self._one_of(kids, "TypeName", path)),
            type_detail=self._int(self._one_of(kids, "TypeDetail", path)),
        )

    def _signer(self, el: etree._Element | None) -> m.SignerInfo | None:
        if el is None:
            return None
        kids = self._kids(el, "SignerInfo")
        path = self._path(el)
        info = m.SignerInfo(
            full_name=self._text(self._one_of(kids, "FullName", path)),
            competence=self._text(self._one_of(kids, "Competence", path)),
            position=self._text(self._one_of(kids, "Position", path)),
        )
        return info if info != m.SignerInfo() else None

    def _other_info(self, el: etree._Element | None) -> m.OtherInfo | None:
        if el is None:
            return None
        kids = self._kids(el, "OtherInfo")
        path = self._path(el)
        priority_value = self._int(self._one_of(kids, "Priority", path))
        priority = self._enum(Priority, priority_value, path + "/Priority")
        return m.OtherInfo(
            priority=priority,
            sphere_of_promulgation=self._text(self._one_of(kids, "SphereOfPromulgation", path)),
            typer_notation=self._text(self._one_of(kids, "TyperNotation", path)),
            promulgation_amount=self._int(self._one_of(kids, "PromulgationAmount", path)),
            page_amount=self._int(self._one_of(kids, "PageAmount", path)),
            reply_fors=self._text(self._one_of(kids, "ReplyFors", path)),
            direction=self._bool(self._one_of(kids, "Direction", path)),
            reference_codes=self._text(self._one_of(kids, "ReferenceCodes", path)),
            appendixes=self._texts(self._one_of(kids, "Appendixes", path), "Appendixes", "Appendix"),
        )

    def _response_for(self, el: etree._Element, shape: str) -> m.ResponseFor | None:
        kids = self._kids(el, shape)
        path = self._path(el)
        organ_id = self._organ_id(self._one_of(kids, "OrganId", path))
        code = self._text(self._one_of(kids, "Code", path))
        promulgation_date = self._date(self._one_of(kids, "PromulgationDate", path))
        document_id = self._text(self._one_of(kids, "DocumentId", path))
        if organ_id is None:
            if code or promulgation_date or document_id:
                self._warn("W.IncompleteElement", path, "ResponseFor without OrganId is ignored")
            elif not kids:
                self._warn("W.EmptyElement", path, "empty ResponseFor treated as absent")
            return None
        return m.ResponseFor(organ_id, code, promulgation_date, document_id)

    def _steering(self, el: etree._Element | None) -> SteeringType | None:
        value = self._int(el)
        if value is None or el is None:
            return None
        if value not in SteeringType._value2member_map_:
            self._warn(
                "W.InvalidValue", self._path(el), f"SteeringType {value} is unknown; read as 0 (not steering)"
            )
            return SteeringType.NOT_STEERING
        return SteeringType(value)

    # trace and business ------------------------------------------------------------------------
    def _trace_list(
        self, el: etree._Element | None, path: str
    ) -> tuple[tuple[m.TraceHeader, ...], m.Business | None]:
        if el is None:
            self._warn("W.MissingRecommended", path, "TraceHeaderList is missing")
            return (), None
        kids = self._kids(el, "TraceHeaderList")
        traces: list[m.TraceHeader] = []
        for item in kids.get("TraceHeader", []):
            trace_kids = self._kids(item, "TraceHeader")
            item_path = self._path(item)
            organ_id = self._organ_id(self._one_of(trace_kids, "OrganId", item_path))
            timestamp = self._datetime(self._one_of(trace_kids, "Timestamp", item_path))
            if organ_id is None or timestamp is None:
                missing = "OrganId" if organ_id is None else "Timestamp"
                self._warn("W.IncompleteElement", item_path, f"TraceHeader without a usable {missing}")
            traces.append(m.TraceHeader(organ_id, timestamp))
        if not traces:
            self._warn(
                "W.MissingRecommended", path + "/TraceHeader", "no TraceHeader: the sender did not sign in"
            )
        business_el = self._one_of(kids, "Bussiness", path)
        business = self._business(business_el) if business_el is not None else None
        if business_el is None:
            self._warn(
                "W.MissingRecommended", path + "/Bussiness", "Bussiness is missing; read as a new document"
            )
        return tuple(traces), business

    def _business(self, el: etree._Element) -> m.Business | None:
        kids = self._kids(el, "Bussiness")
        path = self._path(el)
        doc_type_el = self._one_of(kids, "BussinessDocType", path)
        doc_type = self._enum(
            BusinessDocType, self._int(doc_type_el), path + "/BussinessDocType", error_code=True
        )
        if doc_type is None:
            if doc_type_el is None:
                self._error(
                    "Client.EdxmlMissingElement", path + "/BussinessDocType", "BussinessDocType is missing"
                )
            return None
        document_id = self._text(self._one_of(kids, "DocumentId", path))
        if doc_type in (BusinessDocType.REVOKE, BusinessDocType.UPDATE) and document_id is None:
            self._warn(
                "W.MissingRecommended",
                path + "/DocumentId",
                f"a {doc_type.name.lower()} package should name the target document in Bussiness/DocumentId",
            )
        return m.Business(
            doc_type=doc_type,
            document_id=document_id,
            reason=self._text(self._one_of(kids, "BussinessDocReason", path)),
            paper=self._int(self._one_of(kids, "Paper", path)),
            document_info=self._document_info(self._one_of(kids, "BussinessDocumentInfo", path)),
            replacements=self._replacements(self._one_of(kids, "ReplacementInfoList", path)),
            staff_info=self._staff(self._one_of(kids, "StaffInfo", path)),
        )

    def _document_info(self, el: etree._Element | None) -> m.BusinessDocumentInfo | None:
        if el is None:
            return None
        kids = self._kids(el, "BussinessDocumentInfo")
        path = self._path(el)
        receivers: list[m.Receiver] = []
        receiver_list = self._one_of(kids, "ReceiverList", path)
        if receiver_list is not None:
            for item in self._kids(receiver_list, "ReceiverList").get("Receiver", []):
                item_kids = self._kids(item, "Receiver")
                item_path = self._path(item)
                organ_id = self._organ_id(self._one_of(item_kids, "OrganId", item_path))
                kind = self._enum(
                    ReceiverType,
                    self._int(self._one_of(item_kids, "ReceiverType", item_path)),
                    item_path + "/ReceiverType",
                )
                if organ_id is None or kind is None:
                    self._warn(
                        "W.IncompleteElement", item_path, "Receiver needs OrganId and ReceiverType; ignored"
                    )
                    continue
                receivers.append(m.Receiver(organ_id, kind))
        return m.BusinessDocumentInfo(
            document_info=self._int(self._one_of(kids, "DocumentInfo", path)),
            document_receiver=self._int(self._one_of(kids, "DocumentReceiver", path)),
            receivers=tuple(receivers),
        )

    def _replacements(self, el: etree._Element | None) -> tuple[m.ReplacementInfo, ...]:
        if el is None:
            return ()
        result: list[m.ReplacementInfo] = []
        for item in self._kids(el, "ReplacementInfoList").get("ReplacementInfo", []):
            kids = self._kids(item, "ReplacementInfo")
            path = self._path(item)
            document_id = self._text(self._one_of(kids, "DocumentId", path))
            organ_list = self._one_of(kids, "OrganIdList", path)
            organ_ids: list[str] = []
            if organ_list is not None:
                for organ_el in self._kids(organ_list, "OrganIdList").get("OrganId", []):
                    organ_id = self._organ_id(organ_el)
                    if organ_id is not None:
                        organ_ids.append(organ_id)
            if document_id is None:
                self._warn("W.IncompleteElement", path, "ReplacementInfo without DocumentId is ignored")
                continue
            result.append(m.ReplacementInfo(document_id, tuple(organ_ids)))
        return tuple(result)

    def _staff(self, el: etree._Element | None) -> m.StaffInfo | None:
        if el is None:
            return None
        kids = self._kids(el, "StaffInfo")
        path = self._path(el)
        values = {name: self._text(self._one_of(kids, name, path)) for name in CANONICAL_ORDER["StaffInfo"]}
        info = m.StaffInfo(
            department=values["Department"],
            department_id=values["DepartmentId"],
            staff=values["Staff"],
            staff_id=values["StaffId"],
            email=values["Email"],
            mobile=values["Mobile"],
        )
        return info if info != m.StaffInfo() else None

    # manifest, attachments, signature ------------------------------------------------------------
    def _manifest(self, bodies: list[etree._Element]) -> tuple[m.ManifestReference, ...]:
        if not bodies:
            return ()
        manifest = self._one_of(self._kids(bodies[0], "edXMLBody"), "edXMLManifest", self._path(bodies[0]))
        if manifest is None:
            return ()
        references: list[m.ManifestReference] = []
        for ref in self._kids(manifest, "edXMLManifest").get("Reference", []):
            kids = self._kids(ref, "Reference")
            path = self._path(ref)
            content_id = self._content_id(self._one_of(kids, "ContentId", path), path)
            if content_id is None:
                content_id = self._xlink_content_id(ref)
            if content_id is None:
                self._error(
                    "Client.EdxmlMissingElement", path + "/ContentId", "a manifest Reference has no ContentId"
                )
                continue
            references.append(
                m.ManifestReference(
                    content_id=content_id,
                    attachment_name=self._text(self._one_of(kids, "AttachmentName", path)),
                    content_type=self._text(self._one_of(kids, "ContentType", path)),
                    description=self._text(self._one_of(kids, "Description", path)),
                )
            )
        return tuple(references)

    def _xlink_content_id(self, ref: etree._Element) -> str | None:
        for name, raw in ref.attrib.items():
            value = str(raw)
            if _local(name) == "href" and value.strip():
                self._warn(
                    "W.ContentIdFromHref", self._path(ref), "ContentId taken from the xlink:href attribute"
                )
                return value.strip().removeprefix("cid:")
        return None

    def _attachments(
        self, containers: list[etree._Element], references: tuple[m.ManifestReference, ...]
    ) -> tuple[m.Attachment, ...]:
        by_id = {r.content_id: r for r in references}
        content_elements = [
            e for e in self.root.iter() if isinstance(e.tag, str) and self._is_attachment_content(e)
        ]
        decoder_of = dict(zip(content_elements, self.decoders, strict=False))
        result: list[m.Attachment] = []
        seen: set[str] = set()
        used_names: set[str] = set()
        items = [a for c in containers[:1] for a in self._kids(c, "AttachmentEncoded").get("Attachment", [])]
        for item in items:
            attachment = self._attachment(item, by_id, decoder_of, seen, used_names)
            if attachment is not None:
                result.append(attachment)
        for ref in references:
            if ref.content_id not in seen:
                self._error(
                    "Client.EdxmlAttachmentMissing",
                    "/edXML/edXMLEnvelope/edXMLBody/edXMLManifest",
                    f"the manifest lists cid:{ref.content_id} ({ref.attachment_name}) "
                    "but no attachment carries it",
                )
        return tuple(result)

    def _is_attachment_content(self, el: etree._Element) -> bool:
        parent = el.getparent()
        grand = parent.getparent() if parent is not None else None
        return (
            _local(el.tag) == "ContentTransferEncoded"
            and grand is not None
            and grand.getparent() is self.root
        )

    def _attachment(
        self,
        item: etree._Element,
        by_id: dict[str, m.ManifestReference],
        decoder_of: dict[etree._Element, Base64Decoder],
        seen: set[str],
        used_names: set[str],
    ) -> m.Attachment | None:
        kids = self._kids(item, "Attachment")
        path = self._path(item)
        content_id = self._content_id(self._one_of(kids, "ContentId", path), path)
        content_el = self._one_of(kids, "ContentTransferEncoded", path)
        decoder = decoder_of.get(content_el) if content_el is not None else None
        if content_id is None or decoder is None:
            missing = "ContentId" if content_id is None else "ContentTransferEncoded"
            self._error("Client.EdxmlMissingElement", f"{path}/{missing}", f"the attachment has no {missing}")
            return None
        if content_id in seen:
            self._error("Client.EdxmlDuplicateContentId", path, f"two attachments use cid:{content_id}")
            return None
        seen.add(content_id)
        reference = by_id.get(content_id)
        if reference is None:
            self._warn("W.AttachmentUnreferenced", path, f"cid:{content_id} is not listed in the manifest")
        name = self._text(self._one_of(kids, "AttachmentName", path)) or (
            reference.attachment_name if reference else None
        )
        content_type = self._text(self._one_of(kids, "ContentType", path))
        manifest_type = reference.content_type if reference else None
        if decoder.failure is not None:
            self.issues.append(decoder.failure)
            return None
        if decoder.had_line_breaks:
            self._warn(
                "W.Base64LineBreaks", decoder.path, "base64 content is split over lines; one line is standard"
            )
        if looks_text_decoded(decoder, (content_type, manifest_type)):
            self._error(
                "Client.EdxmlAttachmentCorrupted",
                decoder.path,
                f"the {content_type or 'binary'} file holds {decoder.replacement_chars} U+FFFD replacement "
                "characters: it was converted to text and back before encoding, and its bytes are lost",
            )
            return None
        data, issues = finish_attachment(
            decoder,
            attachment_type=content_type,
            manifest_type=manifest_type,
            file_name=name,
            policy=self.policy,
            used_names=used_names,
        )
        self.issues.extend(issues)
        return m.Attachment(
            content_id=content_id,
            attachment_name=name,
            content_type=content_type,
            data=data,
            description=self._text(self._one_of(kids, "Description", path)),
            field_name=self._text(self._one_of(kids, "FieldName", path)),
            mime_type=self._text(self._one_of(kids, "MimeType", path)),
            format=self._text(self._one_of(kids, "Format", path)),
        )

    def _content_id(self, el: etree._Element | None, path: str) -> str | None:
        value = self._text(el)
        if value is None or el is None:
            return None
        if value.lower().startswith("cid:"):
            return value[4:].strip()
        self._warn("W.ContentIdPrefix", self._path(el), "ContentId without the 'cid:' prefix")
        return value

    def _signature(self, header: etree._Element) -> m.SignatureInfo | None:
        candidates = [c for c in header if isinstance(c.tag, str) and _local(c.tag) == "Signature"]
        if not candidates:
            return None
        sig = candidates[0]
        path = self._path(sig)
        sig_ns = ns.split_tag(sig.tag)[0]
        in_dsig = sig_ns == ns.DS
        if not in_dsig:
            self._warn(
                "W.SignatureNamespace",
                path,
                "Signature is not in the XML-DSig namespace, so no XML-DSig verifier will find it",
            )
        elements = [e for e in sig.iter() if isinstance(e.tag, str)]
        method = next((e.get("Algorithm") for e in elements if _local(e.tag) == "SignatureMethod"), None)
        digest = next((e.get("Algorithm") for e in elements if _local(e.tag) == "DigestMethod"), None)
        has_cert = any(_local(e.tag) == "X509Certificate" and (e.text or "").strip() for e in elements)
        if header[-1] is not sig:
            self._warn("W.ElementOrder", path, "Signature should be the last child of edXMLHeader")
        return m.SignatureInfo(in_dsig, method, digest, has_cert)

    # status ------------------------------------------------------------------------------------
    def _status(self, message: etree._Element) -> m.StatusPackage | None:
        kids = self._kids(message, "MessageHeader/status")
        path = self._path(message)
        from_ = self._organization(self._one_of(kids, "From", path, required=True))
        response_el = self._one_of(kids, "ResponseFor", path)
        response = self._response_for(response_el, "ResponseFor/status") if response_el is not None else None
        if response is None:
            self._error(
                "Client.EdxmlMissingElement",
                path + "/ResponseFor",
                "a status package needs ResponseFor with the OrganId of the document concerned",
            )
        elif response.code is None:
            self._warn(
                "W.MissingRecommended",
                path + "/ResponseFor/Code",
                "hubs find the document by ResponseFor/Code",
            )
        status = self._status_code(self._one_of(kids, "StatusCode", path))
        timestamp_el = self._one_of(kids, "Timestamp", path)
        timestamp = self._datetime(timestamp_el, required=True)
        if from_ is None or response is None or status is None or timestamp is None:
            return None
        return m.StatusPackage(
            from_=from_,
            response_for=response,
            status_code=status,
            timestamp=timestamp,
            staff_info=self._staff(self._one_of(kids, "StaffInfo", path)),
            description=self._text(self._one_of(kids, "Description", path)),
        )

    def _status_code(self, el: etree._Element | None) -> StatusCode | None:
        raw = self._text(el)
        if el is None or raw is None:
            self._fatal(
                "Client.EdxmlStatusCodeMissing",
                "/edXML/edXMLEnvelope/edXMLHeader/MessageHeader/StatusCode",
                "the status package has an empty StatusCode",
            )
        path = self._path(el)
        if not raw.isdigit() or len(raw) > 2:
            self._error("Client.EdxmlStatusCodeUnknown", path, f"StatusCode '{raw}' is not a status code")
            return None
        padded = f"{int(raw):02d}"
        if padded != raw:
            self._warn("W.StatusCodePadding", path, f"StatusCode '{raw}' should be written '{padded}'")
        if padded == "14":
            self._warn("W.StatusCodeAlias", path, "StatusCode 14 is read as 15 (agree to update or recall)")
            padded = "15"
        if padded not in StatusCode._value2member_map_:
            self._error(
                "Client.EdxmlStatusCodeUnknown",
                path,
                f"StatusCode {padded} is not one of 01-06, 13, 15, 16",
            )
            return None
        return StatusCode(padded)

    # element access -----------------------------------------------------------------------------
    def _kids(self, el: etree._Element, shape: str) -> dict[str, list[etree._Element]]:
        """Children of ``el`` by (normalised) local name; reports unknown, misnamed and misordered ones."""
        order = CANONICAL_ORDER.get(shape, ())
        result: dict[str, list[etree._Element]] = {}
        positions: list[tuple[int, str]] = []
        for child in el:
            if not isinstance(child.tag, str):
                continue
            child_ns, name = ns.split_tag(child.tag)
            if name in SPELLING_ALIASES:
                self._warn(
                    "W.BusinessSpelling",
                    self._path(child),
                    f"{name} is spelled {SPELLING_ALIASES[name]} in QCVN 102",
                )
                name = SPELLING_ALIASES[name]
            if child_ns is None:
                self._no_namespace.append(child)
            elif child_ns != ns.EDXML and not (name == "Signature" and child_ns == ns.DS):
                self._warn(
                    "W.UnknownElement", self._path(child), f"element from namespace {child_ns} ignored"
                )
                continue
            if name not in order:
                self._warn(
                    "W.UnknownElement",
                    self._path(child),
                    f"<{name}> is not part of {shape.split('/')[0]}; ignored",
                )
                continue
            result.setdefault(name, []).append(child)
            positions.append((order.index(name), name))
        self._check_order(positions, el, shape)
        self._check_repeats(result, shape)
        if el.text and el.text.strip() and order:
            self._warn("W.UnexpectedText", self._path(el), "text inside a container element ignored")
        return result

    def _check_order(self, positions: list[tuple[int, str]], el: etree._Element, shape: str) -> None:
        for (before_index, before), (after_index, after) in itertools.pairwise(positions):
            if after_index < before_index:
                self._warn(
                    "W.ElementOrder",
                    self._path(el),
                    f"<{after}> comes after <{before}>; "
                    f"the standard order is {', '.join(CANONICAL_ORDER[shape])}",
                )
                return

    def _check_repeats(self, kids: dict[str, list[etree._Element]], shape: str) -> None:
        repeatable = REPEATABLE.get(shape, frozenset())
        for name, elements in kids.items():
            if len(elements) > 1 and name not in repeatable:
                self._warn(
                    "W.DuplicateElement",
                    self._path(elements[1]),
                    f"<{name}> appears {len(elements)} times; the first is used",
                )

    def _one_of(
        self, kids: dict[str, list[etree._Element]], name: str, parent_path: str, *, required: bool = False
    ) -> etree._Element | None:
        found = self._first(kids, name)
        if found is None and required:
            self._fatal("Client.EdxmlMissingElement", f"{parent_path}/{name}", f"{name} is missing")
        return found

    def _one(self, el: etree._Element, name: str, *, required: bool = False) -> etree._Element | None:
        return self._one_of(self._kids(el, _local(el.tag)), name, self._path(el), required=required)

    @staticmethod
    def _first(kids: dict[str, list[E]], name: str) -> E | None:
        found = kids.get(name)
        return found[0] if found else None

    # values --------------------------------------------------------------------------------------
    def _text(self, el: etree._Element | None, *, report_empty: bool = True) -> str | None:
        if el is None:
            return None
        if len(el):
            self._error(
                "Client.EdxmlStructure", self._path(el), f"<{_local(el.tag)}> must hold text, not elements"
            )
            return None
        value = (el.text or "").strip()
        if not value:
            if report_empty:
                self._warn("W.EmptyElement", self._path(el), "empty element treated as absent")
            return None
        return value

    def _texts(self, el: etree._Element | None, shape: str, item: str) -> tuple[str, ...]:
        if el is None:
            return ()
        values = (self._text(e) for e in self._kids(el, shape).get(item, []))
        return tuple(v for v in values if v is not None)

    def _organ_id(self, el: etree._Element | None) -> str | None:
        value = self._text(el)
        if value is None or el is None:
            return None
        if value.lower() in _NULL_LITERALS:
            self._warn(
                "W.NullLiteral", self._path(el), f"OrganId is the literal '{value}'; treated as absent"
            )
            return None
        if not classify_organ_id(value).is_conforming:
            self._warn(
                "W.OrganIdFormat",
                self._path(el),
                f"OrganId '{value}' follows neither the QCVN 102 (LLL.KK.JJ.XNN) nor the QĐ 20/2020 form",
            )
        return value

    def _int(self, el: etree._Element | None) -> int | None:
        value = self._text(el)
        if value is None or el is None:
            return None
        try:
            return int(value)
        except ValueError:
            self._warn("W.InvalidValue", self._path(el), f"'{value}' is not a whole number; ignored")
            return None

    def _bool(self, el: etree._Element | None) -> bool | None:
        value = self._text(el)
        if value is None or el is None:
            return None
        lowered = value.lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
        self._warn("W.InvalidValue", self._path(el), f"'{value}' is not true or false; ignored")
        return None

    def _enum(self, enum: type[E], value: int | None, path: str, *, error_code: bool = False) -> E | None:
        if value is None:
            return None
        try:
            return enum(value)  # type: ignore[call-arg]
        except ValueError:
            if error_code:
                self._error("Client.EdxmlInvalidValue", path, f"{value} is not a valid {enum.__name__}")
            else:
                self._warn("W.InvalidValue", path, f"{value} is not a valid {enum.__name__}; ignored")
            return None

    def _date(self, el: etree._Element | None) -> date | None:
        value = self._text(el)
        if value is None or el is None:
            return None
        parsed = parse_date(value)
        if parsed is None:
            self._warn("W.InvalidValue", self._path(el), f"'{value}' is not a date; ignored")
            return None
        if parsed.form is not DateForm.STRICT:
            self._warn(
                "W.DateFormat", self._path(el), f"'{value}' is in {parsed.form.value} form, not yyyy/MM/dd"
            )
        return parsed.value

    def _datetime(self, el: etree._Element | None, *, required: bool = False) -> datetime | None:
        value = self._text(el)
        if value is None or el is None:
            if required:
                where = (
                    self._path(el)
                    if el is not None
                    else "/edXML/edXMLEnvelope/edXMLHeader/MessageHeader/Timestamp"
                )
                self._error("Client.EdxmlMissingElement", where, "Timestamp is missing or empty")
            return None
        parsed = parse_datetime(value)
        if parsed is None:
            if required:
                self._error("Client.EdxmlInvalidValue", self._path(el), f"'{value}' is not a date and time")
            else:
                self._warn("W.InvalidValue", self._path(el), f"'{value}' is not a date and time; ignored")
            return None
        if parsed.form is not DateForm.STRICT:
            self._warn(
                "W.DateFormat",
                self._path(el),
                f"'{value}' is in {parsed.form.value} form, not yyyy/MM/dd HH:mm:ss",
            )
        return parsed.value

    # issues and paths -----------------------------------------------------------------------------
    def _path(self, el: etree._Element) -> str:
        parts: list[str] = []
        node: etree._Element | None = el
        while node is not None:
            name = _local(node.tag)
            parent = node.getparent()
            if parent is not None:
                same = list(parent.iterchildren(node.tag))
                if len(same) > 1:
                    name = f"{name}[{same.index(node) + 1}]"
            parts.append(name)
            node = parent
        return "/" + "/".join(reversed(parts))

    def _warn(self, code: str, path: str, message: str) -> None:
        self.issues.append(warning(code, path, message))

    def _error(self, code: str, path: str, message: str) -> None:
        self.issues.append(error(code, path, message))

    def _fatal(self, code: str, path: str, message: str) -> NoReturn:
        self._error(code, path, message)
        raise EdxmlInvalid(sorted(self.issues, key=lambda i: not i.is_error))
