"""The routing view of packages (esb.domain.exchange): pure, no storage, no clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from esb.domain import edxml_model as m
from esb.domain.edxml_enums import BusinessDocType, Priority, StatusCode
from esb.domain.exchange import (
    Envelope,
    MessageType,
    check_sender,
    envelope_of,
    pending_order_key,
)
from esb.errors import ClientError

G22, H41, H14, G17 = "000.00.00.G22", "000.00.00.H41", "000.00.00.H14", "000.00.00.G17"
FIRST = f"{G22},2026/11/20,7816/VPCP-TTĐT"
OTHER = f"{G22},2026/11/01,7806/VPCP-TTĐT"
NOW = datetime(2026, 11, 21, 2, 30, tzinfo=UTC)


def org(code: str) -> m.Organization:
    return m.Organization(code, organ_name=f"Cơ quan {code}")


def edoc(
    to: tuple[str, ...] = (H41,),
    *,
    document_id: str = FIRST,
    priority: Priority | None = None,
    due_date: date | None = None,
    business: m.Business | None = None,
) -> m.EdocPackage:
    header = m.EdocHeader(
        from_=org(G22),
        to=tuple(org(code) for code in to),
        document_id=document_id,
        subject="Về việc triển khai trục liên thông",
        due_date=due_date,
        other_info=m.OtherInfo(priority=priority) if priority is not None else None,
    )
    return m.EdocPackage(header=header, business=business)


def status(
    sender: str, response_for: str, code: StatusCode, document_id: str | None = FIRST
) -> m.StatusPackage:
    return m.StatusPackage(
        from_=org(sender),
        response_for=m.ResponseFor(response_for, code="7816/VPCP-TTĐT", document_id=document_id),
        status_code=code,
        timestamp=NOW,
    )


# -- edoc -------------------------------------------------------------------------------------------


def test_new_edoc_envelope_deduplicates_recipients_in_order_and_keeps_priority_and_due_date() -> None:
    package = edoc((H41, H14, H41, G17, H14), priority=Priority.HOA_TOC, due_date=date(2026, 12, 1))

    envelope = envelope_of(package)

    assert envelope == Envelope(
        message_type=MessageType.EDOC,
        sender=G22,
        recipients=(H41, H14, G17),
        document_id=FIRST,
        subject="Về việc triển khai trục liên thông",
        priority=Priority.HOA_TOC,
        due_date=date(2026, 12, 1),
        business_doc_type=BusinessDocType.NEW,
        refers_to_document_id=None,
        refers_to_sender=None,
        status_code=None,
    )
    assert envelope.idempotency_key == f"{G22}\n{FIRST}"


def test_edoc_without_other_info_is_thuong_and_without_due_date() -> None:
    envelope = envelope_of(edoc())
    assert (envelope.priority, envelope.due_date) == (Priority.THUONG, None)


def test_explicit_new_business_block_is_a_new_document_with_an_idempotency_key() -> None:
    envelope = envelope_of(edoc(business=m.Business(BusinessDocType.NEW)))
    assert envelope.business_doc_type is BusinessDocType.NEW
    assert (envelope.refers_to_document_id, envelope.refers_to_sender) == (None, None)
    assert envelope.idempotency_key == f"{G22}\n{FIRST}"


def test_new_edoc_without_document_id_has_no_idempotency_key() -> None:
    assert envelope_of(edoc(document_id="")).idempotency_key is None


@pytest.mark.parametrize("doc_type", [BusinessDocType.REVOKE, BusinessDocType.UPDATE])
def test_revoke_and_update_refer_to_the_business_document_id(doc_type: BusinessDocType) -> None:
    package = edoc(document_id=f"{G22},2026/11/21,7900/VPCP-TTĐT", business=m.Business(doc_type, FIRST))

    envelope = envelope_of(package)

    assert envelope.business_doc_type is doc_type
    assert (envelope.refers_to_document_id, envelope.refers_to_sender) == (FIRST, G22)
    assert envelope.idempotency_key is None  # a revoke/update is a new package every time


@pytest.mark.parametrize("doc_type", [BusinessDocType.REVOKE, BusinessDocType.UPDATE])
def test_revoke_and_update_without_business_document_id_refer_to_the_header_document_id(
    doc_type: BusinessDocType,
) -> None:
    envelope = envelope_of(edoc(business=m.Business(doc_type)))
    assert (envelope.refers_to_document_id, envelope.refers_to_sender) == (FIRST, G22)


def test_replace_refers_to_the_first_replaced_document() -> None:
    replacements = (m.ReplacementInfo(OTHER, (H41,)), m.ReplacementInfo(FIRST, (H14,)))
    package = edoc(
        document_id=f"{G22},2026/11/21,7900/VPCP-TTĐT",
        business=m.Business(BusinessDocType.REPLACE, replacements=replacements),
    )

    envelope = envelope_of(package)

    assert (envelope.refers_to_document_id, envelope.refers_to_sender) == (OTHER, G22)
    assert envelope.idempotency_key is None


def test_replace_without_replacement_info_refers_to_nothing() -> None:
    envelope = envelope_of(edoc(business=m.Business(BusinessDocType.REPLACE, document_id=OTHER)))
    assert (envelope.refers_to_document_id, envelope.refers_to_sender) == (None, None)


# -- status -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        StatusCode.ARRIVED,
        StatusCode.REFUSED,
        StatusCode.ACCEPTED,
        StatusCode.ASSIGNED,
        StatusCode.PROCESSING,
        StatusCode.FINISHED,
        StatusCode.CHANGE_ACCEPTED,
        StatusCode.CHANGE_REFUSED,
    ],
)
def test_status_from_a_recipient_goes_to_the_original_sender(code: StatusCode) -> None:
    envelope = envelope_of(status(H41, G22, code))

    assert envelope == Envelope(
        message_type=MessageType.STATUS,
        sender=H41,
        recipients=(G22,),
        document_id=None,
        subject=f"{code.value} {code.label_vi}",
        priority=Priority.THUONG,
        due_date=None,
        business_doc_type=None,
        refers_to_document_id=FIRST,
        refers_to_sender=G22,  # ResponseFor/OrganId: the recipient reports to the sender
        status_code=code,
    )
    assert envelope.idempotency_key is None


def test_status_13_goes_from_the_original_sender_to_the_recipient() -> None:
    envelope = envelope_of(status(G22, H41, StatusCode.RECALL_REQUESTED))

    assert (envelope.sender, envelope.recipients) == (G22, (H41,))  # destination: ResponseFor/OrganId
    assert (envelope.refers_to_document_id, envelope.refers_to_sender) == (FIRST, G22)  # From sent it
    assert envelope.subject == "13 Yêu cầu lấy lại"


def test_status_without_document_id_refers_to_no_document() -> None:
    envelope = envelope_of(status(H41, G22, StatusCode.ARRIVED, document_id=None))
    assert envelope.refers_to_document_id is None


# -- sender --------------------------------------------------------------------------------------


def test_check_sender_accepts_the_authenticated_agency() -> None:
    check_sender(envelope_of(edoc()), G22)
    check_sender(envelope_of(status(H41, G22, StatusCode.ARRIVED)), H41)


def test_check_sender_refuses_a_package_in_another_agencys_name() -> None:
    with pytest.raises(ClientError) as caught:
        check_sender(envelope_of(edoc()), H41)
    assert caught.value.code == "Client.SenderMismatch"
    assert G22 in caught.value.message
    assert H41 in caught.value.message


# -- mailbox order -----------------------------------------------------------------------------------


def test_pending_order_key_priority_then_due_date_then_age() -> None:
    old, new = NOW - timedelta(hours=2), NOW
    items = {
        "thuong-old": (Priority.THUONG, None, old),
        "hoa-toc-hen-gio": (Priority.HOA_TOC_HEN_GIO, None, new),
        "khan": (Priority.KHAN, None, new),
        "hoa-toc-no-due": (Priority.HOA_TOC, None, old),
        "hoa-toc-due-late": (Priority.HOA_TOC, date(2026, 12, 31), old),
        "hoa-toc-due-soon-new": (Priority.HOA_TOC, date(2026, 11, 25), new),
        "hoa-toc-due-soon-old": (Priority.HOA_TOC, date(2026, 11, 25), old),
        "thuong-khan": (Priority.THUONG_KHAN, None, new),
        "thuong-new": (Priority.THUONG, None, new),
    }

    ordered = sorted(items, key=lambda name: pending_order_key(*items[name]))

    assert ordered == [
        "hoa-toc-hen-gio",
        "hoa-toc-due-soon-old",
        "hoa-toc-due-soon-new",
        "hoa-toc-due-late",
        "hoa-toc-no-due",
        "thuong-khan",
        "khan",
        "thuong-old",
        "thuong-new",
    ]


def test_pending_order_key_orders_age_by_instant_whatever_the_offset() -> None:
    earlier_in_vietnam = (NOW - timedelta(hours=1)).astimezone(timezone(timedelta(hours=7)))  # 08:30+07:00
    later_in_utc = NOW  # 02:30+00:00
    assert pending_order_key(Priority.THUONG, None, earlier_in_vietnam) < pending_order_key(
        Priority.THUONG, None, later_in_utc
    )
