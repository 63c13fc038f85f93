"""Typed model of the two edXML package kinds (QCVN 102:2016): edoc and status.

Absent and empty elements are ``None`` (or an empty tuple).  Dates are ``datetime.date``,
timestamps timezone-aware ``datetime`` in Vietnamese local time.  Attachment *content* is never
held here: an :class:`AttachmentData` describes the decoded bytes (size and SHA-256) that a sink
wrote somewhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from esb.domain.edxml_enums import (
    BusinessDocType,
    PackageKind,
    Priority,
    ReceiverType,
    StatusCode,
    SteeringType,
)


@dataclass(frozen=True)
class Organization:
    """From / To (cơ quan, đơn vị)."""

    organ_id: str
    organization_in_charge: str | None = None
    organ_name: str | None = None
    organ_add: str | None = None
    email: str | None = None
    telephone: str | None = None
    fax: str | None = None
    website: str | None = None


@dataclass(frozen=True)
class Code:
    """Số và ký hiệu văn bản."""

    number: str
    notation: str

    def __str__(self) -> str:
        return f"{self.number}/{self.notation}"


@dataclass(frozen=True)
class PromulgationInfo:
    promulgation_date: date
    place: str | None = None


@dataclass(frozen=True)
class DocumentType:
    type: int | None = None
    type_name: str | None = None
    type_detail: int | None = None


@dataclass(frozen=True)
class SignerInfo:
    full_name: str | None = None
    competence: str | None = None
    position: str | None = None


@dataclass(frozen=True)
class OtherInfo:
    priority: Priority | None = None
    sphere_of_promulgation: str | None = None
    typer_notation: str | None = None
    promulgation_amount: int | None = None
    page_amount: int | None = None
    reply_fors: str | None = None
    direction: bool | None = None
    reference_codes: str | None = None
    appendixes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ResponseFor:
    """The document a package answers: in an edoc a reply, in a status the document concerned."""

    organ_id: str
    code: str | None = None
    promulgation_date: date | None = None
    document_id: str | None = None


@dataclass(frozen=True)
class StaffInfo:
    department: str | None = None
    department_id: str | None = None
    staff: str | None = None
    staff_id: str | None = None
    email: str | None = None
    mobile: str | None = None


@dataclass(frozen=True)
class TraceHeader:
    """One hop: who emitted or forwarded the package, and when."""

    organ_id: str | None
    timestamp: datetime | None


@dataclass(frozen=True)
class Receiver:
    organ_id: str
    receiver_type: ReceiverType


@dataclass(frozen=True)
class BusinessDocumentInfo:
    """Used with an update (BussinessDocType 2)."""

    document_info: int | None = None
    document_receiver: int | None = None
    receivers: tuple[Receiver, ...] = ()


@dataclass(frozen=True)
class ReplacementInfo:
    """Used with a replacement (BussinessDocType 3)."""

    document_id: str
    organ_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Business:
    """Bussiness block inside TraceHeaderList (the spelling with double s is the standard's)."""

    doc_type: BusinessDocType
    document_id: str | None = None
    reason: str | None = None
    paper: int | None = None
    document_info: BusinessDocumentInfo | None = None
    replacements: tuple[ReplacementInfo, ...] = ()
    staff_info: StaffInfo | None = None


@dataclass(frozen=True)
class EdocHeader:
    """MessageHeader of an edoc package."""

    from_: Organization
    to: tuple[Organization, ...]
    document_id: str
    subject: str
    code: Code | None = None
    promulgation_info: PromulgationInfo | None = None
    document_type: DocumentType | None = None
    content: str | None = None
    signer_info: SignerInfo | None = None
    due_date: date | None = None
    other_info: OtherInfo | None = None
    response_for: tuple[ResponseFor, ...] = ()
    steering_type: SteeringType | None = None
    response_for_task: tuple[str, ...] = ()
    application_type: str | None = None
    to_places: tuple[str, ...] = ()

    @property
    def priority(self) -> Priority:
        if self.other_info is not None and self.other_info.priority is not None:
            return self.other_info.priority
        return Priority.THUONG


@dataclass(frozen=True)
class ManifestReference:
    """edXMLManifest/Reference: how the header announces a file."""

    content_id: str  # without the "cid:" prefix
    attachment_name: str | None = None
    content_type: str | None = None
    description: str | None = None


@dataclass(frozen=True)
class AttachmentData:
    """What a sink received for one attachment.

    ``size``/``sha256`` describe the file content (after unwrapping the VNPT ZIP convention);
    ``encoded_*`` describe the bytes as carried (the ZIP itself when wrapped).  Only the content
    takes part in equality: re-wrapping a file in a new ZIP does not change the document.
    """

    size: int
    sha256: str
    unwrapped_zip: bool = field(default=False, compare=False)
    encoded_size: int = field(default=0, compare=False)
    encoded_sha256: str = field(default="", compare=False)
    location: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Attachment:
    """AttachmentEncoded/Attachment metadata plus the decoded-content description."""

    content_id: str  # without the "cid:" prefix
    attachment_name: str | None
    content_type: str | None
    data: AttachmentData
    description: str | None = None
    field_name: str | None = None
    mime_type: str | None = None
    format: str | None = None


@dataclass(frozen=True)
class SignatureInfo:
    """What the reader saw of a Signature element (verification is a separate step)."""

    in_xmldsig_namespace: bool
    signature_method: str | None = None
    digest_method: str | None = None
    has_certificate: bool = False


@dataclass(frozen=True)
class EdocPackage:
    header: EdocHeader
    trace_headers: tuple[TraceHeader, ...] = ()
    business: Business | None = None
    references: tuple[ManifestReference, ...] = ()
    attachments: tuple[Attachment, ...] = ()
    signature: SignatureInfo | None = None
    trace_list_id: str | None = None
    trace_list_version: str | None = None

    kind = PackageKind.EDOC

    @property
    def business_doc_type(self) -> BusinessDocType:
        return self.business.doc_type if self.business is not None else BusinessDocType.NEW


@dataclass(frozen=True)
class StatusPackage:
    from_: Organization
    response_for: ResponseFor
    status_code: StatusCode
    timestamp: datetime
    staff_info: StaffInfo | None = None
    description: str | None = None

    kind = PackageKind.STATUS


Package = EdocPackage | StatusPackage


def canonical_document_id(organ_id: str, promulgation_date: date, code: Code) -> str:
    """DocumentId in the recommended form ``OrganId,yyyy/MM/dd,Number/Notation``."""
    d = promulgation_date
    return f"{organ_id},{d.year:04d}/{d.month:02d}/{d.day:02d},{code.number}/{code.notation}"
