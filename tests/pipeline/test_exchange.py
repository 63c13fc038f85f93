"""The document exchange (esb.pipeline.exchange) on both engines, with a fake clock.

``hub`` (tests/pipeline/conftest.py) is an Exchange on the runtime's database with every demo
agency registered; packages are real strict edXML built by esb.pipeline.demo_packages.  The
main sender is the Government Office (G22), so that the last TraceHeader of a delivered
package (the hub's, ``000.00.00.H53``) cannot be mistaken for the sender's.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from functools import partial
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import func, select

from esb.domain.access import AgencyState, Caller
from esb.domain.edxml_enums import BusinessDocType, Priority, StatusCode
from esb.domain.edxml_model import EdocPackage
from esb.domain.exchange import (
    DeliveryState,
    DocumentState,
    MessageType,
    Outcome,
    PendingItem,
    TraceEvent,
    TraceKind,
    pending_order_key,
)
from esb.errors import EsbError
from esb.storage import exchange_store
from esb.storage.tables import Delivery, Document, UploadSpaceRow
from esb.xml_processing.edxml_reader import read_package

if TYPE_CHECKING:
    from conftest import Hub

SENDER = "000.00.00.G22"  # Văn phòng Chính phủ
B = "000.00.01.H53"  # Văn phòng UBND tỉnh Tây Ninh
C = "000.00.00.H30"  # UBND tỉnh Hậu Giang
OUTSIDER = "000.00.01.H30"  # registered, but party to nothing below
HUB_ORGAN_ID = "000.00.00.H53"  # the settings' default ESB_HUB_ORGAN_ID

BOTH_CONTENT_STORES = pytest.mark.parametrize("content_kind", ["directory", "database"])


@dataclass(frozen=True)
class Refusal:
    code: str
    message: str


def refused(call: Callable[[], object]) -> Refusal:
    """What ``call`` raised.  Not the exception itself: its traceback would keep the frames of a
    refused read alive, and with them (directory store) an open file until garbage collection."""
    try:
        call()
    except EsbError as exc:
        return Refusal(exc.code, exc.message)
    pytest.fail("the call was not refused")


def kinds(events: list[TraceEvent]) -> list[str]:
    return [event.kind.value for event in events]


def send(hub: Hub, sender: str, package: bytes, *, retention_days: int | None = None) -> str:
    """Send an edoc; its hub id."""
    receipt = hub.exchange.send_document(hub.caller(sender), package=package, retention_days=retention_days)
    return receipt.hub_document_id


def only_pending(hub: Hub, recipient: str, kind: MessageType = MessageType.EDOC) -> PendingItem:
    items = hub.exchange.pending(hub.caller(recipient), kind)
    assert len(items) == 1, items
    return items[0]


def fetch_and_confirm(hub: Hub, recipient: str, hub_id: str) -> bytes:
    fetched = hub.exchange.get_document(hub.caller(recipient), hub_id)
    assert fetched.package is not None
    state = hub.exchange.confirm(
        hub.caller(recipient), hub_id, hashlib.sha256(fetched.package).hexdigest(), Outcome.DONE
    )
    assert state is DeliveryState.DONE
    return fetched.package


def document_row(hub: Hub, hub_id: str) -> Document:
    with hub.runtime.database.transaction() as session:
        document = exchange_store.find_document(session, hub_id)
        assert document is not None
        session.expunge(document)
        return document


# -- the whole journey ---------------------------------------------------------------------------------


@BOTH_CONTENT_STORES
def test_send_list_fetch_confirm_purge(hub: Hub) -> None:
    package = hub.edoc(SENDER, [B], number="101", due_date=date(2026, 12, 1), priority=Priority.KHAN)
    accepted_sha = hashlib.sha256(package).hexdigest()

    receipt = hub.exchange.send_document(hub.caller(SENDER), package=package)

    assert receipt.document_id == hub.document_id(SENDER, "101")
    assert (receipt.sha256, receipt.size, receipt.duplicate) == (accepted_sha, len(package), False)
    assert receipt.accepted_at == hub.clock.now
    assert [(r.organ_id, r.state) for r in receipt.recipients] == [(B, DeliveryState.PENDING)]
    assert len(hub.blobs()) == 1
    assert hub.work_files() == []

    item = only_pending(hub, B)
    assert (item.hub_document_id, item.document_id, item.sender) == (
        receipt.hub_document_id,
        receipt.document_id,
        SENDER,
    )
    assert (item.message_type, item.priority, item.due_date) == (
        MessageType.EDOC,
        Priority.KHAN,
        date(2026, 12, 1),
    )
    assert (item.business_doc_type, item.relates_to, item.status_code, item.attempts) == (
        BusinessDocType.NEW,
        None,
        None,
        0,
    )
    assert item.received_at == hub.clock.now
    assert hub.exchange.pending(hub.caller(SENDER), MessageType.EDOC) == []
    assert hub.exchange.pending(hub.caller(B), MessageType.STATUS) == []

    hub.clock.advance(minutes=5)
    fetched = hub.exchange.get_document(hub.caller(B), receipt.hub_document_id)
    assert fetched.package is not None
    assert fetched.download_url is None
    delivered = fetched.package
    delivered_sha = hashlib.sha256(delivered).hexdigest()
    assert delivered_sha == item.sha256 == fetched.sha256
    assert delivered_sha != accepted_sha
    assert len(delivered) == item.size == fetched.size > len(package)
    read = read_package(delivered)
    assert isinstance(read.package, EdocPackage)
    traces = read.package.trace_headers
    assert [t.organ_id for t in traces] == [SENDER, HUB_ORGAN_ID]  # the hub's TraceHeader is the last
    assert traces[-1].timestamp == receipt.accepted_at
    assert read.package.header.document_id == receipt.document_id
    assert only_pending(hub, B).attempts == 1  # still pending until confirmed

    hub.clock.advance(minutes=1)
    state = hub.exchange.confirm(hub.caller(B), receipt.hub_document_id, delivered_sha.upper(), Outcome.DONE)

    assert state is DeliveryState.DONE
    assert hub.exchange.pending(hub.caller(B), MessageType.EDOC) == []
    assert hub.blobs() == []  # the only recipient confirmed: content purged at once
    after = hub.exchange.receipt(receipt.hub_document_id)
    assert [(r.organ_id, r.state) for r in after.recipients] == [(B, DeliveryState.DONE)]
    row = document_row(hub, receipt.hub_document_id)
    assert (row.state, row.content_key, row.purged_at) == (DocumentState.COMPLETED.value, None, hub.clock.now)
    assert (row.sha256, row.delivered_sha256) == (accepted_sha, delivered_sha)
    assert refused(lambda: hub.exchange.get_document(hub.caller(B), receipt.hub_document_id)).code == (
        "Client.ContentPurged"
    )
    # Confirming again is harmless (a client retrying after a lost answer).
    assert hub.exchange.confirm(hub.caller(B), receipt.hub_document_id, delivered_sha, Outcome.DONE) is (
        DeliveryState.DONE
    )

    hub_id, events = hub.exchange.trace(hub.caller(SENDER), hub_id=receipt.hub_document_id)
    assert hub_id == receipt.hub_document_id
    assert kinds(events) == ["accepted", "routed", "fetched", "confirmed", "purged"]
    accepted, routed, fetched_event, confirmed, purged = events
    assert (accepted.sha256, accepted.actor, accepted.recipient) == (accepted_sha, f"{SENDER}/QLVB", None)
    assert (routed.sha256, routed.recipient, routed.actor) == (delivered_sha, B, "hub:node-a")
    assert routed.detail is not None
    assert HUB_ORGAN_ID in routed.detail
    assert (fetched_event.sha256, fetched_event.recipient, fetched_event.actor) == (
        delivered_sha,
        B,
        f"{B}/QLVB",
    )
    assert (confirmed.sha256, confirmed.recipient) == (delivered_sha, B)
    assert (purged.sha256, purged.actor) == (None, "hub:node-a")
    assert [e.at for e in events] == sorted(e.at for e in events)
    assert events[0].at < events[2].at < events[3].at


def test_each_recipient_has_its_own_delivery_and_content_waits_for_the_last(hub: Hub) -> None:
    package = hub.edoc(SENDER, [B, C, B], number="102")  # B twice in To: one delivery

    hub_id = send(hub, SENDER, package)

    assert [r.organ_id for r in hub.exchange.receipt(hub_id).recipients] == [B, C]
    item_b, item_c = only_pending(hub, B), only_pending(hub, C)
    assert item_b.sha256 == item_c.sha256  # one delivered copy for every recipient
    fetch_and_confirm(hub, B, hub_id)

    assert hub.exchange.pending(hub.caller(B), MessageType.EDOC) == []
    assert only_pending(hub, C).hub_document_id == hub_id
    assert len(hub.blobs()) == 1  # C has not confirmed: the content stays
    states = {r.organ_id: r.state for r in hub.exchange.receipt(hub_id).recipients}
    assert states == {B: DeliveryState.DONE, C: DeliveryState.PENDING}
    assert document_row(hub, hub_id).state == DocumentState.ROUTED.value

    # C receives a large package through the download URL (a node with a small inline limit).
    streaming = hub.node("node-a", inline_package_bytes=64)
    fetched = streaming.get_document(hub.caller(C), hub_id)
    assert (fetched.package, fetched.download_url) == (None, f"https://lgsp.test/download/{hub_id}")
    download = streaming.download(hub.caller(C), hub_id)
    body = b"".join(download.chunks)
    assert hashlib.sha256(body).hexdigest() == download.sha256 == item_c.sha256
    assert download.size == len(body)
    streaming.confirm(hub.caller(C), hub_id, download.sha256, Outcome.DONE)

    assert hub.blobs() == []
    _, events = hub.exchange.trace(None, hub_id=hub_id)
    assert kinds(events) == [
        "accepted",
        "routed",
        "routed",
        "fetched",
        "confirmed",
        "fetched",
        "confirmed",
        "purged",
    ]
    assert [e.recipient for e in events if e.kind is TraceKind.ROUTED] == [B, C]
    # Handing out the download URL is not a fetch; streaming the bytes is.
    assert [e.detail for e in events if e.kind is TraceKind.FETCHED] == [None, "streamed"]


def test_mailbox_lists_most_urgent_first_then_due_date_then_age(hub: Hub) -> None:
    sent: dict[str, str] = {}
    plan = [  # name, priority, due date; each sent one minute after the one before
        ("thuong-old", Priority.THUONG, None),
        ("khan", Priority.KHAN, None),
        ("hoa-toc-no-due", Priority.HOA_TOC, None),
        ("hoa-toc-due-late", Priority.HOA_TOC, date(2026, 12, 31)),
        ("thuong-khan", Priority.THUONG_KHAN, None),
        ("hoa-toc-due-soon-old", Priority.HOA_TOC, date(2026, 11, 25)),
        ("hoa-toc-hen-gio", Priority.HOA_TOC_HEN_GIO, None),
        ("hoa-toc-due-soon-new", Priority.HOA_TOC, date(2026, 11, 25)),
        ("thuong-new", Priority.THUONG, None),
    ]
    for number, (name, priority, due) in enumerate(plan, start=200):
        sent[
            send(hub, SENDER, hub.edoc(SENDER, [B], number=str(number), priority=priority, due_date=due))
        ] = name
        hub.clock.advance(minutes=1)

    items = hub.exchange.pending(hub.caller(B), MessageType.EDOC)

    assert [sent[item.hub_document_id] for item in items] == [
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
    assert items == sorted(items, key=lambda i: pending_order_key(i.priority, i.due_date, i.received_at))
    assert [i.hub_document_id for i in hub.exchange.pending(hub.caller(B), MessageType.EDOC, limit=2)] == [
        i.hub_document_id for i in items[:2]
    ]


def test_same_new_document_twice_returns_the_first_receipt_and_delivers_once(hub: Hub) -> None:
    package = hub.edoc(SENDER, [B], number="103")
    first = hub.exchange.send_document(hub.caller(SENDER), package=package)
    hub.clock.advance(minutes=3)
    again = hub.edoc(SENDER, [B], number="103", attachment=b"a re-sent copy, built again")

    second = hub.exchange.send_document(hub.caller(SENDER), package=again)

    assert second.duplicate is True
    assert (second.hub_document_id, second.sha256, second.accepted_at) == (
        first.hub_document_id,
        first.sha256,
        first.accepted_at,
    )
    assert len(hub.exchange.pending(hub.caller(B), MessageType.EDOC)) == 1
    assert hub.row_counts()[:2] == (1, 1)
    assert len(hub.blobs()) == 1  # the re-sent bytes were not kept
    _, events = hub.exchange.trace(hub.caller(SENDER), hub_id=first.hub_document_id)
    assert kinds(events) == ["accepted", "routed", "duplicate"]
    assert events[-1].sha256 == hashlib.sha256(again).hexdigest()
    assert events[-1].at == hub.clock.now


def test_revoke_is_delivered_and_linked_to_the_document_it_revokes(hub: Hub) -> None:
    first = send(hub, SENDER, hub.edoc(SENDER, [B, C], number="104"))
    target = hub.document_id(SENDER, "104")
    revoke = hub.edoc(SENDER, [B], number="105", business={"doc_type": 1, "document_id": target})

    revoke_id = send(hub, SENDER, revoke)

    pending = {item.hub_document_id: item for item in hub.exchange.pending(hub.caller(B), MessageType.EDOC)}
    assert set(pending) == {first, revoke_id}
    item = pending[revoke_id]
    assert (item.business_doc_type, item.relates_to) == (BusinessDocType.REVOKE, first)
    assert pending[first].relates_to is None
    _, events = hub.exchange.trace(hub.caller(C), hub_id=first)
    assert kinds(events) == ["accepted", "routed", "routed", "linked"]
    assert events[-1].sha256 == hashlib.sha256(revoke).hexdigest()
    assert events[-1].detail == f"revoke by {revoke_id}"

    # An update of a document this hub never carried is delivered, unlinked, with a note.
    unknown = f"{SENDER},2026/01/02,1/BC-DEMO"
    update_id = send(
        hub, SENDER, hub.edoc(SENDER, [B], number="106", business={"doc_type": 2, "document_id": unknown})
    )
    update_item = next(
        i for i in hub.exchange.pending(hub.caller(B), MessageType.EDOC) if i.hub_document_id == update_id
    )
    assert (update_item.business_doc_type, update_item.relates_to) == (BusinessDocType.UPDATE, None)
    _, update_events = hub.exchange.trace(hub.caller(SENDER), hub_id=update_id)
    assert update_events[0].detail is not None
    assert f"target document {unknown} is not known" in update_events[0].detail


def test_confirmations_that_do_not_end_the_delivery(hub: Hub) -> None:
    hub_id = send(hub, SENDER, hub.edoc(SENDER, [B], number="107"))
    item = only_pending(hub, B)
    hub.exchange.get_document(hub.caller(B), hub_id)
    wrong = hashlib.sha256(b"something else").hexdigest()

    mismatch = refused(lambda: hub.exchange.confirm(hub.caller(B), hub_id, wrong, Outcome.DONE))
    assert mismatch.code == "Client.DigestMismatch"
    assert only_pending(hub, B).hub_document_id == hub_id

    state = hub.exchange.confirm(hub.caller(B), hub_id, "", Outcome.FAIL, "không giải nén được tệp đính kèm")
    assert state is DeliveryState.PENDING
    assert only_pending(hub, B).attempts == 1
    with hub.runtime.database.transaction() as session:
        delivery = session.scalars(select(Delivery)).one()
        assert delivery.last_failure == "không giải nén được tệp đính kèm"

    # Neither a stranger nor the sender can fetch or confirm: the answer is "no such document".
    for who in (OUTSIDER, SENDER):
        assert refused(
            partial(hub.exchange.confirm, hub.caller(who), hub_id, item.sha256, Outcome.DONE)
        ).code == ("Client.DocumentNotFound")
        assert (
            refused(partial(hub.exchange.get_document, hub.caller(who), hub_id)).code
            == "Client.DocumentNotFound"
        )
    assert (
        refused(lambda: hub.exchange.get_document(hub.caller(B), "no-such-id")).code
        == "Client.DocumentNotFound"
    )

    _, events = hub.exchange.trace(hub.caller(SENDER), hub_id=hub_id)
    assert kinds(events) == ["accepted", "routed", "fetched", "digest-mismatch", "fetch-failed"]
    assert (events[3].sha256, events[3].recipient) == (wrong, B)
    assert (events[4].detail, events[4].sha256) == ("không giải nén được tệp đính kèm", None)
    assert len(hub.blobs()) == 1

    assert refused(lambda: hub.exchange.confirm(hub.caller(B), hub_id, None, Outcome.DONE)).code == (
        "Client.BadRequest"  # done without a digest
    )
    assert hub.exchange.confirm(hub.caller(B), hub_id, item.sha256, Outcome.DONE) is DeliveryState.DONE
    assert hub.blobs() == []

    # A retried confirmation answers done; anything else after done is refused, not silently "done".
    assert (
        hub.exchange.confirm(hub.caller(B), hub_id, item.sha256.upper(), Outcome.DONE) is DeliveryState.DONE
    )
    for digest, outcome in ((wrong, Outcome.DONE), (None, Outcome.FAIL)):
        assert refused(partial(hub.exchange.confirm, hub.caller(B), hub_id, digest, outcome)).code == (
            "Client.NotPending"
        )


# -- refusals ------------------------------------------------------------------------------------------


def test_refused_sends_store_nothing(hub: Hub) -> None:
    hub.registration.set_agency_state(C, AgencyState.LOCKED)
    valid = hub.edoc(SENDER, [B], number="108")
    status = hub.status(B, SENDER, hub.document_id(SENDER, "108"), StatusCode.ARRIVED)
    cases: list[tuple[str, Callable[[], object], str]] = [
        (
            "sender mismatch",
            lambda: hub.exchange.send_document(hub.caller(B), package=valid),
            "Client.SenderMismatch",
        ),
        (
            "unknown recipient",
            lambda: hub.exchange.send_document(
                hub.caller(SENDER), package=hub.edoc(SENDER, [B, "000.00.00.H99"], number="109")
            ),
            "Client.UnknownRecipient",
        ),
        (
            "locked recipient",
            lambda: hub.exchange.send_document(
                hub.caller(SENDER), package=hub.edoc(SENDER, [B, C], number="110")
            ),
            "Client.RecipientLocked",
        ),
        (
            "not XML",
            lambda: hub.exchange.send_document(hub.caller(SENDER), package=b"%PDF-1.7 not a package"),
            "Client.XmlNotXml",
        ),
        (
            "truncated XML",
            lambda: hub.exchange.send_document(hub.caller(SENDER), package=valid[: len(valid) // 2]),
            "Client.XmlTruncated",
        ),
        (
            "status to SendDocument",
            lambda: hub.exchange.send_document(hub.caller(B), package=status),
            "Client.WrongPackageKind",
        ),
        (
            "edoc to SendStatus",
            lambda: hub.exchange.send_status(hub.caller(SENDER), package=valid),
            "Client.WrongPackageKind",
        ),
        (
            "neither package nor space",
            lambda: hub.exchange.send_document(hub.caller(SENDER)),
            "Client.BadRequest",
        ),
        (
            "both package and space",
            lambda: hub.exchange.send_document(hub.caller(SENDER), package=valid, space_id="abc"),
            "Client.BadRequest",
        ),
        (
            "inline package over the limit",
            lambda: hub.node("node-a", max_package_bytes=len(valid) - 1).send_document(
                hub.caller(SENDER), package=valid
            ),
            "Client.PackageTooLarge",
        ),
    ]
    for name, call, code in cases:
        error = refused(call)
        assert error.code == code, name
        assert hub.row_counts() == (0, 0, 0), name
        assert hub.blobs() == [], name
        assert hub.work_files() == [], name

    no_subject = valid.replace(b"<edXML:Subject>", b"<edXML:Subjekt>").replace(
        b"</edXML:Subject>", b"</edXML:Subjekt>"
    )
    invalid = refused(lambda: hub.exchange.send_document(hub.caller(SENDER), package=no_subject))
    assert invalid.code.startswith("Client.Edxml")
    assert "/edXML/edXMLEnvelope/edXMLHeader/MessageHeader/Subject" in invalid.message
    assert hub.row_counts() == (0, 0, 0)
    assert hub.blobs() == []
    assert hub.work_files() == []
    assert hub.exchange.pending(hub.caller(B), MessageType.EDOC) == []


# -- statuses ------------------------------------------------------------------------------------------


def test_statuses_go_to_the_other_party_of_a_document_the_hub_carried(hub: Hub) -> None:
    document_id = hub.document_id(SENDER, "111")
    arrived = hub.status(B, SENDER, document_id, StatusCode.ARRIVED)
    before = refused(lambda: hub.exchange.send_status(hub.caller(B), package=arrived))
    assert before.code == "Client.StatusUnknownDocument"
    assert hub.row_counts() == (0, 0, 0)
    assert hub.blobs() == []

    edoc_id = send(hub, SENDER, hub.edoc(SENDER, [B, C], number="111"))
    receipt = hub.exchange.send_status(hub.caller(B), package=arrived)

    assert [(r.organ_id, r.state) for r in receipt.recipients] == [(SENDER, DeliveryState.PENDING)]
    item = only_pending(hub, SENDER, MessageType.STATUS)
    assert (item.message_type, item.sender, item.status_code, item.relates_to) == (
        MessageType.STATUS,
        B,
        StatusCode.ARRIVED,
        edoc_id,
    )
    assert (item.subject, item.document_id, item.business_doc_type) == ("01 Đã đến", None, None)
    assert hub.exchange.pending(hub.caller(SENDER), MessageType.EDOC) == []
    assert item.sha256 == receipt.sha256  # a status is delivered exactly as sent
    assert fetch_and_confirm(hub, SENDER, receipt.hub_document_id) == arrived

    # 13: the sender asks a recipient to give the document back.
    recall = hub.status(SENDER, C, document_id, StatusCode.RECALL_REQUESTED)
    recall_receipt = hub.exchange.send_status(hub.caller(SENDER), package=recall)
    recall_item = only_pending(hub, C, MessageType.STATUS)
    assert (
        recall_item.hub_document_id,
        recall_item.sender,
        recall_item.status_code,
        recall_item.relates_to,
    ) == (
        recall_receipt.hub_document_id,
        SENDER,
        StatusCode.RECALL_REQUESTED,
        edoc_id,
    )

    _, events = hub.exchange.trace(hub.caller(B), hub_id=edoc_id)
    statuses = [e for e in events if e.kind is TraceKind.STATUS]
    assert [(e.recipient, e.sha256) for e in statuses] == [
        (SENDER, receipt.sha256),
        (C, recall_receipt.sha256),
    ]
    assert statuses[0].detail == f"01 Đã đến ({receipt.hub_document_id})"

    # Parties the document never went between.
    cases = [
        (OUTSIDER, hub.status(OUTSIDER, SENDER, document_id, StatusCode.ACCEPTED)),  # not a recipient
        (SENDER, hub.status(SENDER, OUTSIDER, document_id, StatusCode.RECALL_REQUESTED)),  # 13 to a stranger
        (B, hub.status(B, C, document_id, StatusCode.ACCEPTED)),  # C did not send it
        (B, hub.status(B, SENDER, hub.document_id(SENDER, "999"), StatusCode.ACCEPTED)),  # unknown DocumentId
    ]
    counts = hub.row_counts()
    for sender, package in cases:
        assert refused(partial(hub.exchange.send_status, hub.caller(sender), package=package)).code == (
            "Client.StatusUnknownDocument"
        )
    assert hub.row_counts() == counts


def test_status_from_a_recipient_of_a_later_package_with_the_same_document_id(hub: Hub) -> None:
    document_id = hub.document_id(SENDER, "112")
    send(hub, SENDER, hub.edoc(SENDER, [B], number="112"))
    # The update keeps the DocumentId (as the VXP SDK samples do) and goes to C as well.
    update = hub.edoc(SENDER, [B, C], number="112", business={"doc_type": 2, "document_id": document_id})
    update_id = send(hub, SENDER, update)
    assert only_pending(hub, C).hub_document_id == update_id

    receipt = hub.exchange.send_status(
        hub.caller(C), package=hub.status(C, SENDER, document_id, StatusCode.ARRIVED)
    )

    assert only_pending(hub, SENDER, MessageType.STATUS).hub_document_id == receipt.hub_document_id


# -- stored bytes that changed -------------------------------------------------------------------------


def test_corrupted_stored_content_is_never_served(hub: Hub) -> None:
    """Directory store (the database store's chunks are damaged in tests/storage/test_content_store.py)."""
    hub_id = send(hub, SENDER, hub.edoc(SENDER, [B], number="113"))
    item = only_pending(hub, B)
    key = document_row(hub, hub_id).content_key
    assert key is not None
    assert hub.content_dir is not None
    path = hub.content_dir / key[:2] / key
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x20
    path.write_bytes(bytes(data))

    error = refused(lambda: hub.exchange.get_document(hub.caller(B), hub_id))
    assert error.code == "Server.ContentCorrupted"
    streamed = refused(lambda: hub.node("node-a").download(hub.caller(B), hub_id))
    assert streamed.code == "Server.ContentCorrupted"

    _, events = hub.exchange.trace(None, hub_id=hub_id)
    assert kinds(events) == ["accepted", "routed", "content-corrupted", "content-corrupted"]
    assert events[-1].actor == "hub:node-a"
    assert only_pending(hub, B).attempts == 0  # nothing was handed out
    assert only_pending(hub, B).sha256 == item.sha256


# -- trace ---------------------------------------------------------------------------------------------


def test_trace_is_visible_to_the_sender_the_recipients_and_operators_only(hub: Hub) -> None:
    hub_id = send(hub, SENDER, hub.edoc(SENDER, [B, C], number="114"))
    document_id = hub.document_id(SENDER, "114")

    for who in (SENDER, B, C):
        found, events = hub.exchange.trace(hub.caller(who), hub_id=hub_id)
        assert (found, kinds(events)) == (hub_id, ["accepted", "routed", "routed"])
        assert hub.exchange.trace(hub.caller(who), document_id=document_id)[0] == hub_id
    assert hub.exchange.trace(None, hub_id=hub_id)[0] == hub_id  # operators (esb documents trace)
    assert hub.exchange.trace(None, document_id=document_id)[0] == hub_id

    outsider = hub.caller(OUTSIDER)
    assert refused(lambda: hub.exchange.trace(outsider, hub_id=hub_id)).code == "Client.DocumentNotFound"
    assert (
        refused(lambda: hub.exchange.trace(outsider, document_id=document_id)).code
        == "Client.DocumentNotFound"
    )
    assert refused(lambda: hub.exchange.trace(None, hub_id="no-such-id")).code == "Client.DocumentNotFound"
    assert refused(lambda: hub.exchange.trace(hub.caller(B))).code == "Client.BadRequest"
    # Another application of the sender's agency sees it too: visibility is per agency.
    other = hub.registration.register_application(SENDER, "Cổng thông tin")
    portal = Caller(SENDER, other.id, "Cổng thông tin", None)
    assert hub.exchange.trace(portal, hub_id=hub_id)[0] == hub_id


# -- retention -------------------------------------------------------------------------------------------


def test_retention_ends_undelivered_documents_and_purges_their_content(hub: Hub) -> None:
    keep_id = send(hub, SENDER, hub.edoc(SENDER, [B, C], number="115"))
    short_id = send(hub, SENDER, hub.edoc(SENDER, [B], number="116"), retention_days=2)
    fetch_and_confirm(hub, B, keep_id)  # C never confirms
    assert len(hub.blobs()) == 2

    hub.clock.advance(days=2, seconds=1)
    assert hub.exchange.expire() == 1  # the sender asked for 2 days

    assert document_row(hub, short_id).state == DocumentState.EXPIRED.value
    assert [r.state for r in hub.exchange.receipt(short_id).recipients] == [DeliveryState.EXPIRED]
    assert refused(lambda: hub.exchange.get_document(hub.caller(B), short_id)).code == "Client.ContentPurged"
    assert (
        refused(lambda: hub.exchange.confirm(hub.caller(B), short_id, "0" * 64, Outcome.DONE)).code
        == "Client.NotPending"
    )
    assert len(hub.blobs()) == 1
    _, events = hub.exchange.trace(hub.caller(SENDER), hub_id=short_id)
    assert kinds(events) == ["accepted", "routed", "expired", "purged"]
    assert events[2].detail == f"retention ended before {B} confirmed"

    hub.clock.advance(days=28)  # 30 days and a second after the first send: the default retention
    assert hub.exchange.expire() == 1
    assert hub.blobs() == []
    states = {r.organ_id: r.state for r in hub.exchange.receipt(keep_id).recipients}
    assert states == {B: DeliveryState.DONE, C: DeliveryState.EXPIRED}
    _, events = hub.exchange.trace(hub.caller(C), hub_id=keep_id)
    assert kinds(events)[-2:] == ["expired", "purged"]
    assert events[-2].detail == f"retention ended before {C} confirmed"
    assert hub.exchange.pending(hub.caller(C), MessageType.EDOC) == []
    assert hub.exchange.expire() == 0

    # A sender can shorten the retention, never lengthen it.
    long_id = send(hub, SENDER, hub.edoc(SENDER, [B], number="117"), retention_days=365)
    assert document_row(hub, long_id).retain_until == hub.clock.now + timedelta(days=30)


# -- crashes ---------------------------------------------------------------------------------------------


@BOTH_CONTENT_STORES
def test_failure_inside_the_acceptance_transaction_leaves_nothing(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = exchange_store.add_event

    def add_event(*args: object, **kwargs: object) -> None:
        if args[2] is TraceKind.ACCEPTED:
            raise RuntimeError("the database connection dropped")
        real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(exchange_store, "add_event", add_event)

    with pytest.raises(RuntimeError, match="connection dropped"):
        hub.exchange.send_document(hub.caller(SENDER), package=hub.edoc(SENDER, [B, C], number="118"))

    assert hub.row_counts() == (0, 0, 0)
    assert hub.blobs() == []
    assert hub.work_files() == []
    monkeypatch.undo()
    send(hub, SENDER, hub.edoc(SENDER, [B, C], number="118"))  # a retry goes through
    assert len(hub.blobs()) == 1


def test_a_crash_while_routing_inside_acceptance_leaves_nothing(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Local routing is part of the acceptance transaction: a crash there is a crash of the
    whole acceptance (the worker's recovery of documents left ``accepted``: test_worker.py)."""
    real = hub.exchange._routed_event
    calls: list[str] = []

    def routed_event(*args: object, **kwargs: object) -> None:
        calls.append("route")
        if len(calls) == 2:  # after the first recipient's mailbox entry
            raise RuntimeError("the node was killed while routing")
        real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(hub.exchange, "_routed_event", routed_event)

    with pytest.raises(RuntimeError, match="killed while routing"):
        hub.exchange.send_document(hub.caller(SENDER), package=hub.edoc(SENDER, [B, C], number="119"))

    assert hub.row_counts() == (0, 0, 0)
    assert hub.blobs() == []
    assert hub.exchange.pending(hub.caller(B), MessageType.EDOC) == []

    receipt = hub.exchange.send_document(hub.caller(SENDER), package=hub.edoc(SENDER, [B, C], number="119"))
    assert [(r.organ_id, r.state) for r in receipt.recipients] == [
        (B, DeliveryState.PENDING),
        (C, DeliveryState.PENDING),
    ]
    assert only_pending(hub, B).hub_document_id == receipt.hub_document_id
    _, events = hub.exchange.trace(hub.caller(SENDER), hub_id=receipt.hub_document_id)
    assert kinds(events) == ["accepted", "routed", "routed"]


# -- upload spaces ------------------------------------------------------------------------------------------


def request(hub: Hub, sender: str, recipients: list[str], **changes: object) -> str:
    exchange = hub.node("node-a", **changes) if changes else hub.exchange
    space = exchange.request_space(hub.caller(sender), recipients, "Báo cáo", 0, "edoc", "edXML")
    return space.space_id


def put(hub: Hub, sender: str, space_id: str, data: bytes, content_length: int | None = -1) -> str:
    length = len(data) if content_length == -1 else content_length
    return hub.exchange.upload(hub.caller(sender), space_id, io.BytesIO(data), length).sha256


def space_row(hub: Hub, space_id: str) -> UploadSpaceRow:
    with hub.runtime.database.transaction() as session:
        row = exchange_store.find_space(session, space_id)
        assert row is not None
        session.expunge(row)
        return row


def test_large_package_through_an_upload_space(hub: Hub) -> None:
    package = hub.edoc(SENDER, [B, C], number="120", attachment=bytes(range(256)) * 64)
    space = hub.exchange.request_space(hub.caller(SENDER), [C, B, " ", C], "Báo cáo", 3, "EDOC", "edXML")
    assert space.upload_url == f"https://lgsp.test/upload/{space.space_id}"
    assert space.expires_at == hub.clock.now + timedelta(hours=1)
    assert space_row(hub, space.space_id).recipients == f"{C}\n{B}"

    put(hub, SENDER, space.space_id, b"a first, wrong upload")  # a re-PUT replaces it
    uploaded = hub.exchange.upload(hub.caller(SENDER), space.space_id, io.BytesIO(package), None)
    assert (uploaded.size, uploaded.sha256) == (len(package), hashlib.sha256(package).hexdigest())

    receipt = hub.exchange.send_document(hub.caller(SENDER), space_id=space.space_id)

    assert receipt.sha256 == uploaded.sha256
    assert only_pending(hub, B).hub_document_id == receipt.hub_document_id
    row = space_row(hub, space.space_id)
    assert (row.state, row.hub_document_id) == ("used", receipt.hub_document_id)
    assert list(hub.exchange.spaces_dir.iterdir()) == []
    again = refused(lambda: hub.exchange.send_document(hub.caller(SENDER), space_id=space.space_id))
    assert again.code == "Client.SpaceUsed"
    assert refused(lambda: put(hub, SENDER, space.space_id, package)).code == "Client.SpaceUsed"

    # Another application of the same agency, or another agency: no such space.
    other = hub.registration.register_application(SENDER, "Cổng thông tin")
    portal = Caller(SENDER, other.id, "Cổng thông tin", None)
    fresh = request(hub, SENDER, [B])
    for stranger in (portal, hub.caller(B)):
        assert (
            refused(partial(hub.exchange.send_document, stranger, space_id=fresh)).code
            == "Client.SpaceNotFound"
        )
        assert (
            refused(partial(hub.exchange.upload, stranger, fresh, io.BytesIO(b"x"), 1)).code
            == "Client.SpaceNotFound"
        )
    assert refused(lambda: hub.exchange.send_document(hub.caller(SENDER), space_id="../../etc")).code == (
        "Client.SpaceNotFound"
    )
    assert (
        refused(lambda: hub.exchange.send_document(hub.caller(SENDER), space_id=fresh)).code
        == "Client.SpaceEmpty"
    )


def test_upload_space_refusals(hub: Hub) -> None:
    sender = hub.caller(SENDER)
    # Recipients are checked before a space exists.
    unknown = refused(
        lambda: hub.exchange.request_space(sender, [B, "000.00.00.H99"], "x", 0, "edoc", "edXML")
    )
    assert unknown.code == "Client.UnknownRecipient"
    ask = partial(hub.exchange.request_space, sender)
    for call, code in [
        (partial(ask, [], "x", 0, "edoc", "edXML"), "Client.NoRecipient"),
        (partial(ask, [B], "x", 5, "edoc", "edXML"), "Client.InvalidPriority"),
        (partial(ask, [B], "x", 0, "pdf", "edXML"), "Client.UnsupportedDataType"),
        (partial(ask, [B], "x", 0, "edoc", "SOAP"), "Client.UnsupportedProtocol"),
    ]:
        assert refused(call).code == code
    with hub.runtime.database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(UploadSpaceRow)) == 0

    package = hub.edoc(SENDER, [B], number="121")

    # Recipients differ from those announced.
    mismatch = request(hub, SENDER, [B, C])
    put(hub, SENDER, mismatch, package)
    assert (
        refused(lambda: hub.exchange.send_document(sender, space_id=mismatch)).code == "Client.SpaceMismatch"
    )

    # A status space is for SendStatus only.
    status_space = hub.exchange.request_space(sender, [B], "x", 0, "status", "edXML").space_id
    put(hub, SENDER, status_space, package)
    assert refused(lambda: hub.exchange.send_document(sender, space_id=status_space)).code == (
        "Client.WrongPackageKind"
    )

    # Too large (announced, or streamed without a length), or shorter than announced.
    small = hub.node("node-a", max_package_bytes=len(package) - 1)
    limited = request(hub, SENDER, [B])
    assert refused(lambda: small.upload(sender, limited, io.BytesIO(package), len(package))).code == (
        "Client.PackageTooLarge"
    )
    assert (
        refused(lambda: small.upload(sender, limited, io.BytesIO(package), None)).code
        == "Client.PackageTooLarge"
    )
    assert (
        refused(lambda: put(hub, SENDER, limited, package[:100], len(package))).code
        == "Client.UploadIncomplete"
    )
    assert refused(lambda: put(hub, SENDER, limited, b"")).code == "Client.UploadIncomplete"
    assert space_row(hub, limited).state == "open"
    # No partial upload is left behind; the refused sends above kept their uploads.
    assert sorted(p.name for p in hub.exchange.spaces_dir.iterdir()) == sorted(
        [f"{mismatch}.edxml", f"{status_space}.edxml"]
    )

    # A refused package stays in its space: the corrected one is PUT and sent.
    retry = request(hub, SENDER, [B])
    put(
        hub,
        SENDER,
        retry,
        package.replace(b"<edXML:Subject>", b"<edXML:Subjekt>").replace(
            b"</edXML:Subject>", b"</edXML:Subjekt>"
        ),
    )
    assert refused(lambda: hub.exchange.send_document(sender, space_id=retry)).code.startswith("Client.Edxml")
    assert space_row(hub, retry).state == "uploaded"
    assert (hub.exchange.spaces_dir / f"{retry}.edxml").exists()
    assert hub.row_counts() == (0, 0, 0)
    assert hub.blobs() == []
    put(hub, SENDER, retry, package)
    receipt = hub.exchange.send_document(sender, space_id=retry)
    assert only_pending(hub, B).hub_document_id == receipt.hub_document_id

    # Expiry: refused once the lifetime ends, and the upload is deleted by expire_spaces.
    late = request(hub, SENDER, [B])
    put(hub, SENDER, late, package)
    hub.clock.advance(hours=1)
    assert refused(lambda: hub.exchange.send_document(sender, space_id=late)).code == "Client.SpaceExpired"
    assert refused(lambda: put(hub, SENDER, late, package)).code == "Client.SpaceExpired"
    assert (hub.exchange.spaces_dir / f"{late}.edxml").exists()
    hub.clock.advance(seconds=1)
    assert hub.exchange.expire_spaces() == 4  # mismatch, status_space, limited, late
    assert space_row(hub, late).state == "expired"
    assert list(hub.exchange.spaces_dir.iterdir()) == []
    assert refused(lambda: hub.exchange.send_document(sender, space_id=late)).code == "Client.SpaceExpired"
    assert hub.exchange.expire_spaces() == 0
