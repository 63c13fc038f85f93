"""DocumentExchange end to end over real HTTP: gunicorn-served, zeep importing the served WSDL,
on SQLite and PostgreSQL.

Every test registers agencies of its own (``parties``), so mailboxes never mix between tests.
What the tests send is remembered, and the last test checks that none of it reached the server
log.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import random
import re
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import zeep.helpers
from zeep.exceptions import Fault

from esb.domain.edxml_enums import Priority, StatusCode
from esb.domain.edxml_model import EdocPackage, StatusPackage
from esb.pipeline.demo_packages import build_edoc, build_status, edoc_spec
from esb.xml_processing.attachments import AttachmentPolicy
from esb.xml_processing.edxml_reader import read_package

HUB = "000.00.00.H53"  # ESB_HUB_ORGAN_ID's default: the organ the hub's TraceHeader names
PROMULGATED = date(2024, 5, 2)
UNREGISTERED = "000.99.99.H53"  # conforming, never registered

_numbers = itertools.count(1)
# Everything sent by this module, for the final look at the server logs.
SENT_PACKAGES: list[bytes] = []
SENT_SUBJECTS: list[str] = []


# -- helpers ------------------------------------------------------------------------------------


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def binary_attachment(size: int = 6000) -> bytes:
    """A few KB of binary bytes, every byte value included, reproducible."""
    return bytes(range(256)) + random.Random(size).randbytes(size - 256)


def edoc(
    sender: str,
    recipients: Sequence[str],
    *,
    priority: Priority = Priority.THUONG,
    attachment: bytes = b"noi dung",
    number: str | None = None,
    subject: str | None = None,
    due_date: date | None = None,
) -> tuple[bytes, str]:
    """(package bytes, code number) of a new strict edoc with one attachment; remembered for the log test."""
    number = number or str(next(_numbers))
    subject = subject or f"Báo cáo số {number} về kế hoạch mật {secrets.token_hex(4)}"
    spec = edoc_spec(
        sender,
        list(recipients),
        number=number,
        promulgated=PROMULGATED,
        subject=subject,
        priority=priority,
        due_date=due_date,
        attachment_name="so-lieu.bin",
        content_type="application/octet-stream",
    )
    package = build_edoc(spec, attachment, now=datetime.now(UTC))
    SENT_PACKAGES.append(package)
    SENT_SUBJECTS.append(subject)
    return package, number


def document_id(sender: str, number: str) -> str:
    return f"{sender},{PROMULGATED:%Y/%m/%d},{number}/BC-DEMO"


def status(sender: Any, original_sender: Any, number: str, code: StatusCode) -> bytes:
    return build_status(
        sender.code,
        original_sender.code,
        document_id(original_sender.code, number),
        code,
        number=number,
        promulgated=PROMULGATED,
        now=datetime.now(UTC),
    )


def refused(party: Any, operation: str, *args: Any, **kwargs: Any) -> Any:
    """Call an operation that must fail; its typed EsbFault detail (faultcode checked against it)."""
    with pytest.raises(Fault) as info:
        getattr(party.service, operation)(*args, **kwargs)
    detail = party.fault_detail(info.value)
    assert info.value.code.endswith(detail.code)
    assert detail.message == info.value.message
    assert len(detail.reference) == 12
    return detail


def pending(party: Any, message_type: str = "edoc") -> list[Any]:
    return list(party.service.GetPendingDocuments(message_type) or [])


def recipients_of(receipt: Any) -> list[str]:
    """The receipt's recipients, each of which must already have the document in its mailbox."""
    assert {r.state for r in receipt.recipient} == {"pending"}
    return sorted(r.organId for r in receipt.recipient)


def fetch(party: Any, item: Any) -> bytes:
    """GetDocument inline, checked against the mailbox item."""
    content = party.service.GetDocument(item.hubDocumentId)
    assert content.downloadUrl is None
    assert (content.hubDocumentId, content.sha256, content.size) == (
        item.hubDocumentId,
        item.sha256,
        item.size,
    )
    data: bytes = content.edxmlPackage
    assert sha256(data) == item.sha256
    assert len(data) == item.size
    return data


def confirm(party: Any, item: Any) -> None:
    answer = party.service.ConfirmReceived(item.hubDocumentId, item.sha256, "done")
    assert (answer.hubDocumentId, answer.state) == (item.hubDocumentId, "done")


def events(party: Any, **which: str) -> list[tuple[str, str | None, str | None]]:
    """GetTrace as (event, recipient, sha256) triples."""
    return [(e.kind, e.recipient, e.sha256) for e in party.service.GetTrace(**which).event]


def stored_files(server: Any) -> set[Path]:
    """What the server keeps on disk (content blobs, spools, upload spaces)."""
    return {path for path in server.settings.data_dir.rglob("*") if path.is_file()}


# -- 1. one exchange, start to finish ---------------------------------------------------------


def test_two_agencies_exchange_a_document_its_statuses_and_the_trace(parties: Any, tmp_path: Path) -> None:
    a, b = parties(2)
    attachment = binary_attachment()
    package, number = edoc(a.code, [b.code], attachment=attachment)

    receipt = a.service.SendDocument(edxmlPackage=package)
    assert receipt.sha256 == sha256(package)
    assert receipt.size == len(package)
    assert receipt.documentId == document_id(a.code, number)
    assert receipt.duplicate is False
    assert recipients_of(receipt) == [b.code]
    hub_id = receipt.hubDocumentId

    [item] = pending(b)
    assert item.hubDocumentId == hub_id
    assert item.documentId == receipt.documentId
    assert item.messageType == "edoc"
    assert item["from"] == a.code
    assert item.subject == SENT_SUBJECTS[-1]
    assert item.priority == int(Priority.THUONG)
    assert item.attempts == 0
    assert item.sha256 != receipt.sha256  # the hub added its TraceHeader
    assert item.size > receipt.size

    delivered = fetch(b, item)
    read = read_package(delivered, attachments=AttachmentPolicy(extract_dir=tmp_path))
    assert isinstance(read.package, EdocPackage)
    assert [t.organ_id for t in read.package.trace_headers] == [a.code, HUB]
    [extracted] = read.package.attachments
    assert extracted.attachment_name == "so-lieu.bin"
    assert extracted.data.location is not None
    assert Path(extracted.data.location).read_bytes() == attachment
    assert pending(b)[0].attempts == 1

    confirm(b, item)
    assert pending(b) == []

    # B reports on the document; A's status mailbox gets each notice, in the order sent.
    codes = [
        StatusCode.ARRIVED,
        StatusCode.ACCEPTED,
        StatusCode.ASSIGNED,
        StatusCode.PROCESSING,
        StatusCode.FINISHED,
    ]
    status_receipts = []
    for code in codes:
        sent = status(b, a, number, code)
        status_receipt = b.service.SendStatus(edxmlPackage=sent)
        assert status_receipt.sha256 == sha256(sent)
        assert recipients_of(status_receipt) == [a.code]
        status_receipts.append(status_receipt)
    notices = pending(a, "status")
    assert [n.statusCode for n in notices] == [code.value for code in codes]
    assert [n.hubDocumentId for n in notices] == [r.hubDocumentId for r in status_receipts]
    assert pending(b, "status") == []
    for notice, code, status_receipt in zip(notices, codes, status_receipts, strict=True):
        assert (notice["from"], notice.messageType, notice.relatesTo) == (b.code, "status", hub_id)
        data = fetch(a, notice)
        assert sha256(data) == status_receipt.sha256  # statuses travel as sent
        parsed = read_package(data).package
        assert isinstance(parsed, StatusPackage)
        assert parsed.status_code is code
        confirm(a, notice)
    assert pending(a, "status") == []

    trace = a.service.GetTrace(hubDocumentId=hub_id)
    assert trace.hubDocumentId == hub_id
    by_document_id = a.service.GetTrace(documentId=receipt.documentId)
    assert zeep.helpers.serialize_object(by_document_id) == zeep.helpers.serialize_object(trace)
    # The content is purged as soon as its only recipient confirmed; the statuses come after.
    assert [(e.kind, e.recipient, e.sha256) for e in trace.event] == [
        ("accepted", None, receipt.sha256),
        ("routed", b.code, item.sha256),
        ("fetched", b.code, item.sha256),
        ("confirmed", b.code, item.sha256),
        ("purged", None, None),
        *[("status", a.code, r.sha256) for r in status_receipts],
    ]
    statuses = [e for e in trace.event if e.kind == "status"]
    assert [e.detail.split()[0] for e in statuses] == [code.value for code in codes]
    assert {e.actor for e in statuses} == {f"{b.code}/QLVB"}
    assert trace.event[0].actor == f"{a.code}/QLVB"
    assert [e.at for e in trace.event] == sorted(e.at for e in trace.event)

    # The content is gone, the trace stays (for the recipient too).
    assert refused(b, "GetDocument", hub_id).code == "Client.ContentPurged"
    assert events(b, hubDocumentId=hub_id) == events(a, hubDocumentId=hub_id)
    assert len(events(a, hubDocumentId=hub_id)) == len(trace.event)


# -- 2. fan-out ---------------------------------------------------------------------------------


def test_each_of_three_recipients_gets_the_document_independently(parties: Any) -> None:
    a, *recipients = parties(4)
    codes = [p.code for p in recipients]
    package, _ = edoc(a.code, codes, priority=Priority.KHAN)
    receipt = a.service.SendDocument(edxmlPackage=package)
    assert recipients_of(receipt) == sorted(codes)
    hub_id = receipt.hubDocumentId

    items = {}
    for party in recipients:
        [items[party.code]] = pending(party)
    assert {i.hubDocumentId for i in items.values()} == {hub_id}
    assert len({i.sha256 for i in items.values()}) == 1  # one delivered copy for all

    first, second, third = recipients
    for party in (first, second):
        fetch(party, items[party.code])
        confirm(party, items[party.code])
        assert pending(party) == []
    assert "purged" not in [e[0] for e in events(a, hubDocumentId=hub_id)]

    [still] = pending(third)
    fetch(third, still)
    confirm(third, still)
    assert pending(third) == []
    for party in recipients:
        assert refused(party, "GetDocument", hub_id).code == "Client.ContentPurged"

    trace = events(a, hubDocumentId=hub_id)
    assert trace[-1] == ("purged", None, None)
    assert [e[0] for e in trace].count("purged") == 1
    assert sorted(e[1] for e in trace if e[0] == "routed") == sorted(codes)
    assert sorted(e[1] for e in trace if e[0] == "confirmed") == sorted(codes)


def test_the_receipt_tells_the_mailbox_state_while_another_worker_routes(
    live_server: Any, parties: Any
) -> None:
    """SendDocument while a second worker node polls as fast as it can.

    The worker often claims the just-accepted document before the inline routing does; the
    receipt must still say ``pending``, and the document be in the mailbox, when SendDocument
    returns.  A regression test: the receipt said ``queued`` in 30-70 % of these sends before
    inline routing waited for the worker's row.
    """
    a, b = parties(2)
    runtime = live_server.runtime()
    stop = threading.Event()

    def poll() -> None:  # what every pass of a delivery worker starts with
        while not stop.is_set():
            runtime.exchange.route()

    thread = threading.Thread(target=poll, name="second-worker")
    thread.start()
    observed = []
    try:
        for _ in range(12):
            receipt = a.service.SendDocument(edxmlPackage=edoc(a.code, [b.code])[0])
            listed = {i.hubDocumentId for i in b.service.GetPendingDocuments("edoc")}
            observed.append((receipt.recipient[0].state, receipt.hubDocumentId in listed))
    finally:
        stop.set()
        thread.join()
        runtime.database.dispose()
    assert observed == [("pending", True)] * 12


def test_recipients_confirming_at_the_same_moment_complete_the_document(
    live_server: Any, parties: Any
) -> None:
    """Two recipients confirm at once, a few times over: the last confirmation purges the content.

    A regression test: on PostgreSQL each confirmation used to lock only its own delivery and
    count the open ones under READ COMMITTED, so two concurrent ones each saw the other still
    pending (write skew, about one time in three) and the content stayed until the retention
    ended.  SQLite's BEGIN IMMEDIATE serialises them.
    """
    a, b, c = parties(3)
    completed = []
    for _ in range(10 if live_server.engine == "postgresql" else 3):
        receipt = a.service.SendDocument(edxmlPackage=edoc(a.code, [b.code, c.code])[0])
        items = [(p, pending(p)[0]) for p in (b, c)]
        start = threading.Barrier(len(items))

        def confirm_at_once(party: Any, item: Any, start: threading.Barrier = start) -> None:
            start.wait(timeout=10)
            confirm(party, item)

        with ThreadPoolExecutor(max_workers=len(items)) as pool:
            for done in [pool.submit(confirm_at_once, party, item) for party, item in items]:
                done.result(timeout=30)
        completed.append(events(a, hubDocumentId=receipt.hubDocumentId)[-1][0] == "purged")
    assert all(completed)


# -- 3. priority ----------------------------------------------------------------------------


def test_the_mailbox_lists_the_most_urgent_first(parties: Any) -> None:
    a, b = parties(2)
    order = [
        Priority.THUONG,
        Priority.KHAN,
        Priority.HOA_TOC_HEN_GIO,
        Priority.THUONG_KHAN,
        Priority.HOA_TOC,
    ]
    hub_ids = {}
    for priority in order:
        package, _ = edoc(a.code, [b.code], priority=priority)
        hub_ids[a.service.SendDocument(edxmlPackage=package).hubDocumentId] = priority
    listed = pending(b)
    assert [item.priority for item in listed] == [4, 3, 2, 1, 0]
    assert [hub_ids[item.hubDocumentId] for item in listed] == sorted(order, reverse=True)

    # Within one priority, the nearest due date first, then the oldest.
    later, _ = edoc(a.code, [b.code], priority=Priority.KHAN, due_date=date(2031, 1, 2))
    sooner, _ = edoc(a.code, [b.code], priority=Priority.KHAN, due_date=date(2031, 1, 1))
    later_id = a.service.SendDocument(edxmlPackage=later).hubDocumentId
    sooner_id = a.service.SendDocument(edxmlPackage=sooner).hubDocumentId
    urgent = [(i.hubDocumentId, i.dueDate) for i in pending(b) if i.priority == int(Priority.KHAN)]
    assert urgent == [(sooner_id, date(2031, 1, 1)), (later_id, date(2031, 1, 2))] + [
        (hub_id, None) for hub_id, priority in hub_ids.items() if priority is Priority.KHAN
    ]


# -- 4. duplicates ------------------------------------------------------------------------------


def test_sending_the_same_document_again_returns_the_first_receipt(parties: Any) -> None:
    a, b = parties(2)
    package, number = edoc(a.code, [b.code])
    first = a.service.SendDocument(edxmlPackage=package)
    again = a.service.SendDocument(edxmlPackage=package)
    # Rebuilt (a new TraceHeader time, so other bytes) with the same DocumentId: the same document.
    rebuilt, _ = edoc(a.code, [b.code], number=number)
    assert rebuilt != package
    third = a.service.SendDocument(edxmlPackage=rebuilt)

    assert first.duplicate is False
    assert (again.duplicate, third.duplicate) == (True, True)
    assert first.hubDocumentId == again.hubDocumentId == third.hubDocumentId
    assert first.sha256 == again.sha256 == third.sha256 == sha256(package)
    assert [item.hubDocumentId for item in pending(b)] == [first.hubDocumentId]
    trace = events(a, hubDocumentId=first.hubDocumentId)
    assert [e[0] for e in trace] == ["accepted", "routed", "duplicate", "duplicate"]
    assert [e[2] for e in trace if e[0] == "duplicate"] == [sha256(package), sha256(rebuilt)]


# -- 5. confirmation ------------------------------------------------------------------------------


def test_a_wrong_digest_or_a_failure_keeps_the_document_pending(parties: Any) -> None:
    a, b = parties(2)
    package, _ = edoc(a.code, [b.code])
    hub_id = a.service.SendDocument(edxmlPackage=package).hubDocumentId
    [item] = pending(b)
    fetch(b, item)

    wrong = refused(b, "ConfirmReceived", hub_id, sha256(package), "done")  # the digest of what A sent
    assert wrong.code == "Client.DigestMismatch"
    assert "pending" in wrong.message
    assert [i.hubDocumentId for i in pending(b)] == [hub_id]

    failed = b.service.ConfirmReceived(hub_id, item.sha256, "fail", "không mở được tệp đính kèm")
    assert (failed.hubDocumentId, failed.state) == (hub_id, "pending")
    assert [i.hubDocumentId for i in pending(b)] == [hub_id]
    assert refused(b, "ConfirmReceived", hub_id, item.sha256, "maybe").code == "Client.BadOutcome"

    fetch(b, item)  # still available after all that
    confirm(b, item)
    assert pending(b) == []
    assert [e[0] for e in events(a, hubDocumentId=hub_id)] == [
        "accepted",
        "routed",
        "fetched",
        "digest-mismatch",
        "fetch-failed",
        "fetched",
        "confirmed",
        "purged",
    ]


# -- 6. refusals: a stable code, and nothing stored -----------------------------------------------


def _without_subject(package: bytes) -> bytes:
    stripped = re.sub(rb"<edXML:Subject>.*?</edXML:Subject>", b"", package, count=1)
    assert stripped != package
    return stripped


def _status_from(a: Any, b: Any, number: str) -> bytes:
    """A's status about B's document ``number`` (which the hub never carried)."""
    return build_status(
        a.code,
        b.code,
        document_id(b.code, number),
        StatusCode.ARRIVED,
        number=number,
        promulgated=PROMULGATED,
        now=datetime.now(UTC),
    )


Refusal = Callable[[Any, Any, Any, str], tuple[bytes, str]]
# case: (package and a text its message must contain, from (a, b, c, locked), operation, code)
SEND_REFUSALS: dict[str, tuple[Refusal, str, str]] = {
    "not XML": (
        lambda a, b, c, locked: (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", ""),
        "SendDocument",
        "Client.XmlNotXml",
    ),
    "invalid edXML": (
        lambda a, b, c, locked: (
            _without_subject(edoc(a.code, [b.code])[0]),
            "/edXML/edXMLEnvelope/edXMLHeader/MessageHeader/Subject",
        ),
        "SendDocument",
        "Client.EdxmlMissingElement",
    ),
    "unknown recipient": (
        lambda a, b, c, locked: (edoc(a.code, [b.code, UNREGISTERED])[0], UNREGISTERED),
        "SendDocument",
        "Client.UnknownRecipient",
    ),
    "locked recipient": (
        lambda a, b, c, locked: (edoc(a.code, [b.code, locked])[0], locked),
        "SendDocument",
        "Client.RecipientLocked",
    ),
    "sender mismatch": (
        lambda a, b, c, locked: (edoc(c.code, [b.code])[0], c.code),
        "SendDocument",
        "Client.SenderMismatch",
    ),
    "status given to SendDocument": (
        lambda a, b, c, locked: (_status_from(a, b, "1"), "SendStatus"),
        "SendDocument",
        "Client.WrongPackageKind",
    ),
    "edoc given to SendStatus": (
        lambda a, b, c, locked: (edoc(a.code, [b.code])[0], "SendDocument"),
        "SendStatus",
        "Client.WrongPackageKind",
    ),
    "status for an unknown document": (
        lambda a, b, c, locked: (_status_from(a, b, "424242"), document_id(b.code, "424242")),
        "SendStatus",
        "Client.StatusUnknownDocument",
    ),
}


@pytest.fixture(scope="module")
def trio(party_factory: Any, live_server: Any) -> tuple[Any, Any, Any, str]:
    """Sender a, recipient b, bystander c and a locked agency, shared by the refusal tests."""
    a, b, c = party_factory(live_server, 3)
    locked = party_factory.register(live_server, 1, locked=True)[0].agency
    return a, b, c, locked


def mailboxes(*agencies: Any) -> list[list[str]]:
    return [[i.hubDocumentId for i in pending(p, kind)] for p in agencies for kind in ("edoc", "status")]


@pytest.mark.parametrize("case", list(SEND_REFUSALS))
def test_refused_packages_leave_nothing_behind(live_server: Any, trio: Any, case: str) -> None:
    a, b, c, locked = trio
    make, operation, code = SEND_REFUSALS[case]
    package, words = make(a, b, c, locked)
    before = mailboxes(a, b, c), stored_files(live_server)

    detail = refused(a, operation, edxmlPackage=package)
    assert detail.code == code
    assert words in detail.message

    assert (mailboxes(a, b, c), stored_files(live_server)) == before
    found = re.search(rb"<edXML:DocumentId>(.*?)</edXML:DocumentId>", package)
    if found:  # the document the sender tried to send is unknown to the hub
        missing = refused(a, "GetTrace", documentId=found.group(1).decode())
        assert missing.code == "Client.DocumentNotFound"


def test_other_agencies_cannot_touch_a_delivery(live_server: Any, trio: Any) -> None:
    a, b, c, _ = trio
    package, _ = edoc(a.code, [b.code])
    hub_id = a.service.SendDocument(edxmlPackage=package).hubDocumentId
    [item] = pending(b)
    assert item.hubDocumentId == hub_id
    trace = events(a, hubDocumentId=hub_id)
    before = mailboxes(a, b, c), stored_files(live_server)

    # A bystander, and the sender itself, look like they asked for an unknown document.
    for outsider in (c, a):
        assert (
            refused(outsider, "ConfirmReceived", hub_id, item.sha256, "done").code
            == "Client.DocumentNotFound"
        )
        assert refused(outsider, "GetDocument", hub_id).code == "Client.DocumentNotFound"
    assert refused(c, "GetTrace", hubDocumentId=hub_id).code == "Client.DocumentNotFound"
    # Only a recipient reports on a document.
    number = item.documentId.rsplit(",", 1)[1].split("/")[0]
    assert refused(c, "SendStatus", edxmlPackage=status(c, a, number, StatusCode.ARRIVED)).code == (
        "Client.StatusUnknownDocument"
    )
    unknown = refused(c, "GetDocument", "00000000-0000-0000-0000-000000000000")
    assert unknown.code == "Client.DocumentNotFound"

    assert events(a, hubDocumentId=hub_id) == trace
    assert (mailboxes(a, b, c), stored_files(live_server)) == before
    fetch(b, item)
    confirm(b, item)


def test_every_operation_needs_a_session(parties: Any, trio: Any) -> None:
    a, b, _, _ = trio
    anonymous = parties.client()
    package, number = edoc(a.code, [b.code])
    calls = {
        "SendDocument": {"edxmlPackage": package},
        "SendStatus": {"edxmlPackage": status(b, a, number, StatusCode.ARRIVED)},
        "RequestSendSpace": {
            "recipient": [b.code],
            "subject": "x",
            "priority": 0,
            "dataType": "edoc",
            "protocol": "edXML",
        },
        "GetPendingDocuments": {"messageType": "edoc"},
        "GetDocument": {"hubDocumentId": "00000000-0000-0000-0000-000000000000"},
        "ConfirmReceived": {"hubDocumentId": "x", "sha256": "0" * 64, "outcome": "done"},
        "GetTrace": {"documentId": document_id(a.code, "1")},
    }
    for operation, arguments in calls.items():
        with pytest.raises(Fault) as info:
            getattr(anonymous.service, operation)(**arguments)
        assert info.value.code.endswith("Client.AuthenticationRequired"), operation
    with pytest.raises(Fault) as forged:
        anonymous.service.GetPendingDocuments("edoc", _soapheaders={"AuthHeader": {"sessionToken": "S" * 40}})
    assert a.fault_detail(forged.value).code == "Client.SessionInvalid"
    # The anonymous SendDocument stored nothing.
    assert refused(a, "GetTrace", documentId=document_id(a.code, number)).code == "Client.DocumentNotFound"


# -- 8. the server log ------------------------------------------------------------------------------


def _base64_fragments(data: bytes) -> Iterator[str]:
    """Pieces of the base64 text of ``data`` at every alignment, as a log would hold them."""
    for shift in range(3):
        text = base64.b64encode(data[shift:]).decode()
        middle = len(text) // 2
        yield text[middle : middle + 40]


def test_no_package_content_reaches_the_server_log(live_server: Any) -> None:
    """Runs after the module's other tests on each engine (pytest keeps the file's order)."""
    assert SENT_PACKAGES, "run with the other tests of this module"
    log = live_server.log.read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in log
    for subject in SENT_SUBJECTS:
        assert subject not in log
    for package in SENT_PACKAGES:
        for fragment in _base64_fragments(package):
            assert fragment not in log
    assert base64.b64encode(binary_attachment()[:300]).decode()[:40] not in log
