"""Enumerations of the edXML format (QCVN 102:2016), with the meanings the axis uses."""

from __future__ import annotations

from enum import IntEnum, StrEnum


class Priority(IntEnum):
    """Độ khẩn (OtherInfo/Priority). Delivery order is HOA_TOC_HEN_GIO first, THUONG last."""

    THUONG = 0  # thường: normal
    KHAN = 1  # khẩn: urgent
    THUONG_KHAN = 2  # thượng khẩn: very urgent
    HOA_TOC = 3  # hỏa tốc: express
    HOA_TOC_HEN_GIO = 4  # hỏa tốc hẹn giờ: express, timed

    @property
    def label_vi(self) -> str:
        return _PRIORITY_LABELS[self]


_PRIORITY_LABELS = {
    Priority.THUONG: "Thường",
    Priority.KHAN: "Khẩn",
    Priority.THUONG_KHAN: "Thượng khẩn",
    Priority.HOA_TOC: "Hỏa tốc",
    Priority.HOA_TOC_HEN_GIO: "Hỏa tốc hẹn giờ",
}


class BusinessDocType(IntEnum):
    """Bussiness/BussinessDocType: what the package does to a document."""

    NEW = 0  # văn bản mới
    REVOKE = 1  # thu hồi
    UPDATE = 2  # cập nhật
    REPLACE = 3  # thay thế

    @property
    def default_reason(self) -> str:
        return _BUSINESS_REASONS[self]


_BUSINESS_REASONS = {
    BusinessDocType.NEW: "Văn bản điện tử mới",
    BusinessDocType.REVOKE: "Thu hồi văn bản điện tử",
    BusinessDocType.UPDATE: "Cập nhật văn bản điện tử",
    BusinessDocType.REPLACE: "Văn bản thay thế",
}


class SteeringType(IntEnum):
    """SteeringType (loại chỉ đạo)."""

    NOT_STEERING = 0  # không phải văn bản chỉ đạo
    STEERING = 1  # văn bản chỉ đạo
    STEERING_REPORT = 2  # báo cáo thực hiện chỉ đạo


class StatusCode(StrEnum):
    """StatusCode of a status package; always two digits on the wire."""

    ARRIVED = "01"  # đã đến: the receiving software has it, the clerk has not acted
    REFUSED = "02"  # từ chối tiếp nhận
    ACCEPTED = "03"  # đã tiếp nhận, vào sổ
    ASSIGNED = "04"  # phân công xử lý
    PROCESSING = "05"  # đang xử lý (may repeat)
    FINISHED = "06"  # hoàn thành
    RECALL_REQUESTED = "13"  # the SENDER asks to take the document back (direction reversed)
    CHANGE_ACCEPTED = "15"  # receiver agrees to the update or recall request (14 is read as 15)
    CHANGE_REFUSED = "16"  # receiver refuses the update or recall request

    @property
    def label_vi(self) -> str:
        return _STATUS_LABELS[self]

    @property
    def sent_by_original_sender(self) -> bool:
        return self is StatusCode.RECALL_REQUESTED


_STATUS_LABELS = {
    StatusCode.ARRIVED: "Đã đến",
    StatusCode.REFUSED: "Từ chối tiếp nhận",
    StatusCode.ACCEPTED: "Đã tiếp nhận, vào sổ",
    StatusCode.ASSIGNED: "Phân công xử lý",
    StatusCode.PROCESSING: "Đang xử lý",
    StatusCode.FINISHED: "Hoàn thành",
    StatusCode.RECALL_REQUESTED: "Yêu cầu lấy lại",
    StatusCode.CHANGE_ACCEPTED: "Đồng ý cập nhật, lấy lại",
    StatusCode.CHANGE_REFUSED: "Từ chối cập nhật, lấy lại",
}


class ReceiverType(IntEnum):
    """BussinessDocumentInfo/ReceiverList/Receiver/ReceiverType."""

    REMOVED = 0
    ADDED = 1


class PackageKind(StrEnum):
    EDOC = "edoc"
    STATUS = "status"
