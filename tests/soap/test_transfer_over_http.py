"""Large packages over real HTTP: RequestSendSpace, PUT /upload/<spaceId>, SendDocument(spaceId),
GetDocument's downloadUrl and GET /download/<hubDocumentId>, on SQLite and PostgreSQL.

The session-wide ``live_server`` keeps the default limits (1 GiB, inline up to 4 MiB); the
``small_limits`` servers (one per engine, shared by this module) answer GetDocument with a
download URL above 64 KiB and refuse packages above 4 MiB.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import itertools
import json
import random
import secrets
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from zeep.exceptions import Fault

from esb.domain.edxml_enums import StatusCode
from esb.pipeline.demo_packages import build_edoc, build_status, edoc_spec

ENGINES = ("sqlite", "postgresql")
INLINE_BYTES = 64 * 1024
MAX_BYTES = 4 * 1024 * 1024
SMALL_LIMITS = {"ESB_INLINE_PACKAGE_BYTES": str(INLINE_BYTES), "ESB_MAX_PACKAGE_BYTES": str(MAX_BYTES)}
PROMULGATED = date(2024, 6, 3)

_numbers = itertools.count(1)
SENT_SUBJECTS: list[str] = []
SENT_ATTACHMENTS: list[bytes] = []
SENT_PACKAGES: list[bytes] = []


@pytest.fixture(scope="module", params=ENGINES)
def small_limits(request: pytest.FixtureRequest, make_server: Any) -> Any:
    return make_server(request.param, SMALL_LIMITS)


# -- helpers ----------------------------------------------------------------------------------


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def edoc(sender: str, recipients: Sequence[str], attachment_size: int = 3000) -> tuple[bytes, str]:
    """(package, subject): a strict edoc with a binary attachment of ``attachment_size`` bytes."""
    number = str(next(_numbers))
    subject = f"Hồ sơ dự án số {number} (tài liệu mật {secrets.token_hex(4)})"
    spec = edoc_spec(
        sender,
        list(recipients),
        number=number,
        promulgated=PROMULGATED,
        subject=subject,
        attachment_name="ban-ve.dwg",
        content_type="application/octet-stream",
    )
    attachment = random.Random(number).randbytes(attachment_size)
    package = build_edoc(spec, attachment, now=datetime.now(UTC))
    SENT_SUBJECTS.append(subject)
    SENT_ATTACHMENTS.append(attachment)
    SENT_PACKAGES.append(package)
    return package, subject


def space(party: Any, recipients: Sequence[str], subject: str = "Hồ sơ lớn", data_type: str = "edoc") -> Any:
    return party.service.RequestSendSpace(
        recipient=list(recipients), subject=subject, priority=0, dataType=data_type, protocol="edXML"
    )


def put(url: str, data: bytes, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.put(url, data=data, headers=headers or {}, timeout=60)


def refused(party: Any, operation: str, *args: Any, **kwargs: Any) -> str:
    """The code of the typed EsbFault an operation must answer with."""
    with pytest.raises(Fault) as info:
        getattr(party.service, operation)(*args, **kwargs)
    code: str = party.fault_detail(info.value).code
    assert info.value.code.endswith(code)
    return code


def json_error(response: requests.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"code", "message", "reference"}
    assert "Traceback" not in response.text
    code: str = body["code"]
    return code


def only_item(party: Any, hub_id: str) -> Any:
    [item] = party.service.GetPendingDocuments("edoc")
    assert item.hubDocumentId == hub_id
    return item


# -- the upload space -------------------------------------------------------------------------


def test_upload_into_a_space_then_send_it(live_server: Any, parties: Any) -> None:
    a, b = parties(2)
    package, subject = edoc(a.code, [b.code])
    allocated = space(a, [b.code], subject)
    assert allocated.uploadUrl == live_server.url(f"/upload/{allocated.spaceId}")
    assert allocated.maxBytes == 1 << 30
    assert allocated.expiresAt > datetime.now(UTC) + timedelta(minutes=30)

    uploaded = put(allocated.uploadUrl, package, a.http_headers)
    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json() == {"spaceId": allocated.spaceId, "size": len(package), "sha256": sha256(package)}

    receipt = a.service.SendDocument(spaceId=allocated.spaceId)
    assert (receipt.sha256, receipt.size, receipt.duplicate) == (sha256(package), len(package), False)
    assert [r.organId for r in receipt.recipient] == [b.code]

    item = only_item(b, receipt.hubDocumentId)
    assert (item.subject, item["from"]) == (subject, a.code)
    content = b.service.GetDocument(item.hubDocumentId)
    assert content.downloadUrl is None
    assert sha256(content.edxmlPackage) == item.sha256 == content.sha256
    assert b.service.ConfirmReceived(item.hubDocumentId, item.sha256, "done").state == "done"

    # A status package can take the same road, through a status space.
    notice = build_status(
        b.code,
        a.code,
        receipt.documentId,
        StatusCode.ARRIVED,
        number=receipt.documentId.rsplit(",", 1)[1].split("/")[0],
        promulgated=PROMULGATED,
        now=datetime.now(UTC),
    )
    status_space = space(b, [a.code], "trạng thái", data_type="status")
    assert refused(b, "SendDocument", spaceId=status_space.spaceId) == "Client.SpaceEmpty"
    assert put(status_space.uploadUrl, notice, b.http_headers).status_code == 200
    assert refused(b, "SendDocument", spaceId=status_space.spaceId) == "Client.WrongPackageKind"
    status_receipt = b.service.SendStatus(spaceId=status_space.spaceId)
    assert status_receipt.sha256 == sha256(notice)
    [arrived] = a.service.GetPendingDocuments("status")
    assert (arrived.hubDocumentId, arrived.statusCode, arrived.relatesTo) == (
        status_receipt.hubDocumentId,
        "01",
        receipt.hubDocumentId,
    )


def test_large_package_comes_back_through_the_download_url(small_limits: Any, party_factory: Any) -> None:
    a, b, c = party_factory(small_limits, 3)
    package, _ = edoc(a.code, [b.code], attachment_size=2_200_000)
    assert 2_500_000 < len(package) < MAX_BYTES
    allocated = space(a, [b.code])
    assert allocated.maxBytes == MAX_BYTES
    uploaded = put(allocated.uploadUrl, package, a.http_headers)
    assert uploaded.json()["sha256"] == sha256(package)
    receipt = a.service.SendDocument(spaceId=allocated.spaceId)
    assert receipt.sha256 == sha256(package)

    item = only_item(b, receipt.hubDocumentId)
    assert item.size > INLINE_BYTES
    content = b.service.GetDocument(item.hubDocumentId)
    assert content.edxmlPackage is None
    assert content.downloadUrl == small_limits.url(f"/download/{item.hubDocumentId}")
    assert (content.sha256, content.size) == (item.sha256, item.size)

    # Only a recipient may download, and only with its session key.
    assert json_error(requests.get(content.downloadUrl, timeout=30), 401) == "Client.AuthenticationRequired"
    outsider = requests.get(content.downloadUrl, headers=c.http_headers, timeout=30)
    assert json_error(outsider, 404) == "Client.DocumentNotFound"
    sender = requests.get(content.downloadUrl, headers=a.http_headers, timeout=30)
    assert json_error(sender, 404) == "Client.DocumentNotFound"

    digest, size = hashlib.sha256(), 0
    with requests.get(content.downloadUrl, headers=b.http_headers, stream=True, timeout=60) as download:
        assert download.status_code == 200
        assert download.headers["X-Content-SHA256"] == item.sha256
        assert int(download.headers["Content-Length"]) == item.size
        for chunk in download.iter_content(chunk_size=256 * 1024):
            digest.update(chunk)
            size += len(chunk)
    assert (digest.hexdigest(), size) == (item.sha256, item.size)
    # Bearer works as well as X-Session-Token (HEAD: the headers only).
    head = requests.head(content.downloadUrl, headers={"Authorization": f"Bearer {b.token}"}, timeout=30)
    assert (head.status_code, head.headers["X-Content-SHA256"]) == (200, item.sha256)

    assert b.service.ConfirmReceived(item.hubDocumentId, item.sha256, "done").state == "done"
    gone = requests.get(content.downloadUrl, headers=b.http_headers, timeout=30)
    assert json_error(gone, 410) == "Client.ContentPurged"
    trace = [(e.kind, e.detail) for e in a.service.GetTrace(hubDocumentId=item.hubDocumentId).event]
    assert [kind for kind, _ in trace][:2] == ["accepted", "routed"]
    assert [kind for kind, _ in trace][-2:] == ["confirmed", "purged"]
    # The URL handed out and the HEAD are not fetches; the streamed GET is, once.
    assert [entry for entry in trace if entry[0] == "fetched"] == [("fetched", "streamed")]


def test_packages_over_the_limit_are_refused(small_limits: Any, party_factory: Any) -> None:
    a, b = party_factory(small_limits, 2)
    allocated = space(a, [b.code])
    target = urlsplit(allocated.uploadUrl)
    # Announced too large: refused from the headers, before a byte of the body is read.
    connection = http.client.HTTPConnection(target.netloc, timeout=30)
    try:
        connection.putrequest("PUT", target.path)
        connection.putheader("X-Session-Token", a.token)
        connection.putheader("Content-Length", str(MAX_BYTES + 1))
        connection.endheaders()
        response = connection.getresponse()
        assert response.status == 413
        assert json.loads(response.read())["code"] == "Client.PackageTooLarge"
    finally:
        connection.close()
    assert refused(a, "SendDocument", spaceId=allocated.spaceId) == "Client.SpaceEmpty"

    # Inline, within the SOAP request limit (10 MiB) but over the package limit.
    package, _ = edoc(a.code, [b.code], attachment_size=MAX_BYTES)
    assert refused(a, "SendDocument", edxmlPackage=package) == "Client.PackageTooLarge"
    assert b.service.GetPendingDocuments("edoc") in (None, [])


def test_space_refusals(live_server: Any, parties: Any, party_factory: Any) -> None:
    a, b, c = parties(3)
    package, _ = edoc(a.code, [b.code])
    allocated = space(a, [b.code])

    assert json_error(put(allocated.uploadUrl, package), 401) == "Client.AuthenticationRequired"
    # Another application's space and a space that never existed look the same.
    assert json_error(put(allocated.uploadUrl, package, c.http_headers), 404) == "Client.SpaceNotFound"
    portal = party_factory.another_application(live_server, a.code, "Cổng dịch vụ công")
    assert json_error(put(allocated.uploadUrl, package, portal.http_headers), 404) == "Client.SpaceNotFound"
    assert refused(portal, "SendDocument", spaceId=allocated.spaceId) == "Client.SpaceNotFound"
    unknown = live_server.url(f"/upload/{secrets.token_hex(16)}")
    assert json_error(put(unknown, package, a.http_headers), 404) == "Client.SpaceNotFound"
    assert json_error(put(allocated.uploadUrl, b"", a.http_headers), 400) == "Client.UploadIncomplete"
    chunked = requests.put(allocated.uploadUrl, data=iter([package]), headers=a.http_headers, timeout=30)
    assert json_error(chunked, 411) == "Client.LengthRequired"
    assert refused(c, "SendDocument", spaceId=allocated.spaceId) == "Client.SpaceNotFound"
    assert refused(a, "SendDocument", spaceId=allocated.spaceId) == "Client.SpaceEmpty"
    both = {"edxmlPackage": package, "spaceId": allocated.spaceId}
    assert refused(a, "SendDocument", **both) == "Client.BadRequest"
    assert refused(a, "SendDocument") == "Client.BadRequest"

    # Recipients are checked before any byte is uploaded.
    assert (
        refused(a, "RequestSendSpace", ["000.99.98.H53"], "x", 0, "edoc", "edXML")
        == "Client.UnknownRecipient"
    )
    assert refused(a, "RequestSendSpace", [b.code], "x", 0, "edoc", "PDF") == "Client.UnsupportedProtocol"
    assert refused(a, "RequestSendSpace", [b.code], "x", 7, "edoc", "edXML") == "Client.InvalidPriority"

    # The package goes to b and c, the space was asked for b only.
    wider, _ = edoc(a.code, [b.code, c.code])
    assert put(allocated.uploadUrl, wider, a.http_headers).status_code == 200
    assert refused(a, "SendDocument", spaceId=allocated.spaceId) == "Client.SpaceMismatch"
    assert b.service.GetPendingDocuments("edoc") in (None, [])
    # SendStatus does not take a space requested for an edoc.
    assert refused(a, "SendStatus", spaceId=allocated.spaceId) == "Client.WrongPackageKind"

    # A re-PUT replaces the upload; the space is then used once.
    assert put(allocated.uploadUrl, package, a.http_headers).json()["sha256"] == sha256(package)
    receipt = a.service.SendDocument(spaceId=allocated.spaceId)
    assert refused(a, "SendDocument", spaceId=allocated.spaceId) == "Client.SpaceUsed"
    assert json_error(put(allocated.uploadUrl, package, a.http_headers), 409) == "Client.SpaceUsed"
    assert a.service.GetTrace(hubDocumentId=receipt.hubDocumentId).event[0].kind == "accepted"

    # The download URL works for small packages too, for recipients only.
    download = live_server.url(f"/download/{receipt.hubDocumentId}")
    assert (
        json_error(requests.get(download, headers=c.http_headers, timeout=30), 404)
        == "Client.DocumentNotFound"
    )
    item = only_item(b, receipt.hubDocumentId)
    with requests.get(download, headers=b.http_headers, timeout=30) as fetched:
        assert fetched.status_code == 200
        assert sha256(fetched.content) == item.sha256 == fetched.headers["X-Content-SHA256"]


def test_a_forged_session_key_is_unauthorized_on_the_transfer_urls(live_server: Any, parties: Any) -> None:
    """Regression: Client.SessionInvalid used to answer 400 (missing from transfer._STATUS)."""
    a, b = parties(2)
    allocated = space(a, [b.code])
    forged = {"X-Session-Token": base64.urlsafe_b64encode(secrets.token_bytes(30)).decode()}
    assert json_error(put(allocated.uploadUrl, b"<x/>", forged), 401) == "Client.SessionInvalid"
    download = live_server.url(f"/download/{secrets.token_hex(16)}")
    assert json_error(requests.get(download, headers=forged, timeout=30), 401) == "Client.SessionInvalid"


def test_a_wrong_method_on_a_transfer_url_is_405(live_server: Any, parties: Any) -> None:
    a, b = parties(2)
    allocated = space(a, [b.code])
    answer = requests.post(allocated.uploadUrl, data=b"<x/>", headers=a.http_headers, timeout=30)
    assert json_error(answer, 405) == "Client.MethodNotAllowed"
    assert answer.headers["Allow"] == "PUT"


# -- the server logs ------------------------------------------------------------------------------


def _assert_no_content(log: str) -> None:
    assert "Traceback" not in log
    for subject in SENT_SUBJECTS:
        assert subject not in log
    # The attachments as carried in the XML, and the packages as carried in SOAP (base64 of the
    # XML), at each of the three alignments a log excerpt could start at.
    for data in (*SENT_ATTACHMENTS, *SENT_PACKAGES):
        middle = len(data) // 2
        for shift in range(3):
            text = base64.b64encode(data[middle + shift : middle + shift + 300]).decode()
            assert text[100:140] not in log


def test_no_content_in_the_log_of_the_live_server(live_server: Any) -> None:
    """After this module's tests on each engine (pytest keeps the file's order)."""
    assert SENT_SUBJECTS
    _assert_no_content(live_server.log.read_text(encoding="utf-8", errors="replace"))


def test_no_content_in_the_log_of_the_small_limits_server(small_limits: Any) -> None:
    assert SENT_SUBJECTS
    _assert_no_content(small_limits.log.read_text(encoding="utf-8", errors="replace"))
