"""The shape of an edXML package: known children and the canonical (VNPT A3 writer) order.

Keys are the names of element *types* (an element name, or ``name/kind`` where the same name
has two shapes).  The reader uses the tables to report unknown elements and order deviations;
the writer emits children in exactly these orders.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

ORGANIZATION = (
    "OrganId",
    "OrganizationInCharge",
    "OrganName",
    "OrganAdd",
    "Email",
    "Telephone",
    "Fax",
    "Website",
)
STAFF_INFO = ("Department", "DepartmentId", "Staff", "StaffId", "Email", "Mobile")

CANONICAL_ORDER: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "edXML": ("edXMLEnvelope", "AttachmentEncoded"),
        "edXMLEnvelope": ("edXMLHeader", "edXMLBody"),
        "edXMLHeader": ("MessageHeader", "TraceHeaderList", "Signature"),
        "MessageHeader/edoc": (
            "From",
            "To",
            "DocumentId",
            "Code",
            "PromulgationInfo",
            "DocumentType",
            "Subject",
            "Content",
            "SignerInfo",
            "DueDate",
            "OtherInfo",
            "ResponseFor",
            "SteeringType",
            "ResponseForTask",
            "ApplicationType",
            "ToPlaces",
        ),
        "MessageHeader/status": (
            "From",
            "ResponseFor",
            "StaffInfo",
            "StatusCode",
            "Description",
            "Timestamp",
        ),
        "From": ORGANIZATION,
        "To": ORGANIZATION,
        "Code": ("CodeNumber", "CodeNotation"),
        "PromulgationInfo": ("Place", "PromulgationDate"),
        "DocumentType": ("Type", "TypeDetail", "TypeName"),
        "SignerInfo": ("Competence", "Position", "FullName"),
        "OtherInfo": (
            "Priority",
            "SphereOfPromulgation",
            "TyperNotation",
            "PromulgationAmount",
            "PageAmount",
            "ReplyFors",
            "Direction",
            "ReferenceCodes",
            "Appendixes",
        ),
        "Appendixes": ("Appendix",),
        "ResponseFor/edoc": ("OrganId", "Code", "PromulgationDate", "DocumentId"),
        "ResponseFor/status": ("OrganId", "Code", "DocumentId", "PromulgationDate"),
        "ResponseForTask": ("TaskCode",),
        "ToPlaces": ("Place",),
        "StaffInfo": STAFF_INFO,
        "TraceHeaderList": ("TraceHeader", "Bussiness"),
        "TraceHeader": ("OrganId", "Timestamp"),
        "Bussiness": (
            "DocumentId",
            "BussinessDocType",
            "BussinessDocReason",
            "Paper",
            "BussinessDocumentInfo",
            "ReplacementInfoList",
            "StaffInfo",
        ),
        "BussinessDocumentInfo": ("DocumentInfo", "DocumentReceiver", "ReceiverList"),
        "ReceiverList": ("Receiver",),
        "Receiver": ("OrganId", "ReceiverType"),
        "ReplacementInfoList": ("ReplacementInfo",),
        "ReplacementInfo": ("DocumentId", "OrganIdList"),
        "OrganIdList": ("OrganId",),
        "edXMLBody": ("edXMLManifest",),
        "edXMLManifest": ("Reference",),
        "Reference": ("ContentId", "ContentType", "Description", "AttachmentName"),
        "AttachmentEncoded": ("Attachment",),
        "Attachment": (
            "ContentId",
            "AttachmentName",
            "Description",
            "FieldName",
            "MimeType",
            "Format",
            "ContentType",
            "ContentTransferEncoded",
        ),
    }
)

# The single-s spelling used by Bkav and the pre-2016 format; the standard writes a double s.
SPELLING_ALIASES: Mapping[str, str] = MappingProxyType(
    {
        "Business": "Bussiness",
        "BusinessDocType": "BussinessDocType",
        "BusinessDocReason": "BussinessDocReason",
        "BusinessDocumentInfo": "BussinessDocumentInfo",
    }
)

# Children that may repeat, per parent type; every other known child is expected at most once.
REPEATABLE: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "MessageHeader/edoc": frozenset({"To", "ResponseFor"}),
        "TraceHeaderList": frozenset({"TraceHeader"}),
        "Appendixes": frozenset({"Appendix"}),
        "ResponseForTask": frozenset({"TaskCode"}),
        "ToPlaces": frozenset({"Place"}),
        "ReceiverList": frozenset({"Receiver"}),
        "ReplacementInfoList": frozenset({"ReplacementInfo"}),
        "OrganIdList": frozenset({"OrganId"}),
        "edXMLManifest": frozenset({"Reference"}),
        "AttachmentEncoded": frozenset({"Attachment"}),
    }
)
