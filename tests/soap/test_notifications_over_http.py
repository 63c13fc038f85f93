"""Notifications end to end over real HTTP (gunicorn gthread, zeep importing the served WSDL), on
SQLite and PostgreSQL: WaitForNotifications, Heartbeat, Subscribe, and the ``/events`` SSE stream.
"""

from __future__ import annotations

import http.client
import itertools
import json
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import zeep
from sqlalchemy import select, update
from zeep.exceptions import Fault

from esb.domain.edxml_enums import Priority
from esb.pipeline.demo_packages import build_edoc, edoc_spec
from esb.storage.tables import Application, PresenceEventRow

NS = "urn:lgsp-esb:notifications:1"
PROMULGATED = date(2024, 5, 2)
ENGINES = ("sqlite", "postgresql")
# Short keep-alives and lease, so a dropped stream shows within seconds.
QUICK_PRESENCE = {"ESB_PRESENCE_KEEPALIVE_SECONDS": "1", "ESB_PRESENCE_CHANNEL_LEASE_SECONDS": "5"}

_numbers = itertools.count(1)


@dataclass(frozen=True)
class Subscriber:
    """A party with a Notifications client that sends its session key."""

    party: Any
    client: zeep.Client

    @property
    def service(self) -> Any:
        return self.client.service

    def refused(self, operation: str, *args: Any, **kwargs: Any) -> str:
        """Call an operation that must fail; the code of its typed EsbFault."""
        with pytest.raises(Fault) as info:
            getattr(self.service, operation)(*args, **kwargs)
        assert info.value.detail is not None
        detail = self.client.get_element(f"{{{NS}}}EsbFault").parse(
            info.value.detail[0], self.client.wsdl.types
        )
        assert info.value.code.endswith(detail.code)
        return str(detail.code)


def subscriber(party_factory: Any, server: Any, party: Any) -> Subscriber:
    client = party_factory.client(server, "Notifications")
    client.set_default_soapheaders({"AuthHeader": {"sessionToken": party.token}})
    return Subscriber(party, client)


def send(sender: Any, recipient: Any, priority: Priority = Priority.THUONG) -> str:
    number = str(next(_numbers))
    spec = edoc_spec(
        sender.code,
        [recipient.code],
        number=number,
        promulgated=PROMULGATED,
        subject=f"Thông báo số {number} {secrets.token_hex(4)}",
        priority=priority,
    )
    package = build_edoc(spec, b"noi dung", now=datetime.now(UTC))
    return str(sender.service.SendDocument(edxmlPackage=package).hubDocumentId)


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=4) as executor:
        yield executor


# -- long-poll ----------------------------------------------------------------------------------


def test_a_waiter_receives_the_notification_of_a_document_sent_to_it(
    parties: Any, party_factory: Any, live_server: Any, pool: ThreadPoolExecutor
) -> None:
    sender, recipient = parties(2)
    waiter = subscriber(party_factory, live_server, recipient)
    start = waiter.service.Heartbeat().lastId
    assert start == 0
    waiting = pool.submit(waiter.service.WaitForNotifications, timeout=50, afterId=start)
    hub_id = send(sender, recipient, Priority.KHAN)
    batch = waiting.result(timeout=60)
    (notification,) = batch.notification
    assert (notification.kind, notification.hubDocumentId, notification["from"], notification.to) == (
        "document",
        hub_id,
        sender.code,
        recipient.code,
    )
    assert (notification.messageType, notification.priority) == ("edoc", int(Priority.KHAN))
    assert batch.lastId == notification.id
    assert abs(notification.at - datetime.now(UTC)) < timedelta(minutes=5)
    # Nothing further: after 1 s an empty answer, with the same cursor.
    empty = waiter.service.WaitForNotifications(timeout=1, afterId=batch.lastId)
    assert (list(empty.notification or []), empty.lastId) == ([], batch.lastId)
    # The backlog comes back at once from any earlier cursor; the sender got nothing.
    assert [n.id for n in waiter.service.WaitForNotifications(afterId=0).notification] == [notification.id]
    assert subscriber(party_factory, live_server, sender).service.Heartbeat().lastId == 0


def test_heartbeat_answers_the_time_presence_and_cursor(
    parties: Any, party_factory: Any, live_server: Any
) -> None:
    sender, recipient = parties(2)
    send(sender, recipient)
    answer = subscriber(party_factory, live_server, recipient).service.Heartbeat()
    assert abs(answer.serverTime - datetime.now(UTC)) < timedelta(minutes=1)
    assert answer.state == "online"
    assert answer.lastId > 0


def test_bad_waits_are_clear_faults(parties: Any, party_factory: Any, live_server: Any) -> None:
    (party,) = parties(1)
    waiter = subscriber(party_factory, live_server, party)
    assert waiter.refused("WaitForNotifications", timeout=0) == "Client.BadTimeout"
    assert waiter.refused("WaitForNotifications", timeout=121) == "Client.BadTimeout"
    assert waiter.refused("WaitForNotifications", timeout=1, afterId=-5) == "Client.BadCursor"
    assert waiter.refused("WaitForNotifications", timeout=1, afterId=10**15) == "Client.BadCursor"
    anonymous = party_factory.client(live_server, "Notifications")
    with pytest.raises(Fault) as info:
        anonymous.service.WaitForNotifications(timeout=1)
    assert info.value.code.endswith("Client.AuthenticationRequired")


# -- callbacks ----------------------------------------------------------------------------------


def _register_endpoint(server: Any, party: Any, url: str) -> None:
    runtime = server.runtime()
    try:
        with runtime.database.transaction() as session:
            session.execute(
                update(Application)
                .where(Application.name == "QLVB", Application.agency.has(code=party.code))
                .values(endpoint=url)
            )
    finally:
        runtime.database.dispose()


def test_subscribe_accepts_only_the_registered_endpoint(
    parties: Any, party_factory: Any, live_server: Any
) -> None:
    (party,) = parties(1)
    client = subscriber(party_factory, live_server, party)
    # No endpoint registered: nothing can be subscribed, least of all a loopback address.
    assert client.refused("Subscribe", "http://127.0.0.1:5432/") == "Client.CallbackNotRegistered"
    endpoint = f"https://qlvb.{party.code.replace('.', '-').lower()}.example.gov.vn/lgsp/notify"
    _register_endpoint(live_server, party, endpoint)
    for foreign in ("http://127.0.0.1:8080/lgsp/notify", "http://169.254.169.254/latest", endpoint + "x"):
        assert client.refused("Subscribe", foreign) == "Client.CallbackNotRegistered"
    assert client.refused("Subscribe", "file:///etc/passwd") == "Client.CallbackUrlInvalid"
    answer = client.service.Subscribe(endpoint.replace("https://qlvb", "HTTPS://QLVB"))
    assert (answer.subscribed, answer.callbackUrl) == (True, endpoint)
    answer = client.service.Unsubscribe()
    assert (answer.subscribed, answer.callbackUrl) == (False, None)


# -- server-sent events -------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    id: str | None
    event: str | None
    data: dict[str, Any]


def lines_of(response: requests.Response) -> Iterator[str]:
    """The stream's lines as they arrive (one iterator per stream: it buffers)."""
    return (str(line) for line in response.iter_lines(chunk_size=1, decode_unicode=True))


def read_events(lines: Iterator[str], count: int) -> list[Event]:
    """The next ``count`` events of a stream (comments skipped)."""
    events: list[Event] = []
    fields: dict[str, str] = {}
    for line in lines:
        if line == "":
            if "data" in fields:
                events.append(Event(fields.get("id"), fields.get("event"), json.loads(fields["data"])))
                if len(events) == count:
                    return events
            fields = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        fields[name] = value.removeprefix(" ")
    raise AssertionError(f"the stream ended after {len(events)} events")


def test_sse_streams_notifications_from_the_last_event_id(
    parties: Any, party_factory: Any, live_server: Any
) -> None:
    sender, recipient = parties(2)
    first = send(sender, recipient)
    url = live_server.url("/events")
    with requests.get(url, headers=recipient.http_headers, stream=True, timeout=60) as stream:
        assert stream.status_code == 200
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        lines = lines_of(stream)
        (backlog,) = read_events(lines, 1)
        assert (backlog.event, backlog.data["hubDocumentId"], backlog.data["from"]) == (
            "document",
            first,
            sender.code,
        )
        assert backlog.id == str(backlog.data["id"])
        second = send(sender, recipient, Priority.HOA_TOC)
        (live,) = read_events(lines, 1)
        assert (live.data["hubDocumentId"], live.data["priority"]) == (second, int(Priority.HOA_TOC))
    # Reconnecting with Last-Event-ID resumes after it; ?after= does the same; Bearer works too.
    third = send(sender, recipient)
    headers = {"Authorization": f"Bearer {recipient.token}", "Last-Event-ID": str(live.id)}
    with requests.get(url, headers=headers, stream=True, timeout=60) as stream:
        (resumed,) = read_events(lines_of(stream), 1)
        assert resumed.data["hubDocumentId"] == third
    with requests.get(
        f"{url}?after={backlog.id}", headers=recipient.http_headers, stream=True, timeout=60
    ) as stream:
        assert [e.data["hubDocumentId"] for e in read_events(lines_of(stream), 2)] == [second, third]


def test_sse_refusals_are_json_before_the_stream(parties: Any, live_server: Any) -> None:
    (party,) = parties(1)
    url = live_server.url("/events")
    cases = [
        ({}, "", 401, "Client.AuthenticationRequired"),
        ({"X-Session-Token": "not-a-session"}, "", 401, "Client.SessionInvalid"),
        (party.http_headers, "?after=abc", 400, "Client.BadCursor"),
        ({**party.http_headers, "Last-Event-ID": "999999999999"}, "", 400, "Client.BadCursor"),
    ]
    for headers, query, status, code in cases:
        answer = requests.get(url + query, headers=headers, timeout=30)
        assert (answer.status_code, answer.json()["code"]) == (status, code), (headers, query)
        assert answer.headers["Content-Type"].startswith("application/json")
    posted = requests.post(url, headers=party.http_headers, timeout=30)
    assert (posted.status_code, posted.json()["code"]) == (405, "Client.MethodNotAllowed")


@pytest.mark.parametrize("engine", ENGINES)
def test_a_dropped_sse_client_is_recorded_offline(engine: str, make_server: Any, party_factory: Any) -> None:
    server = make_server(engine, QUICK_PRESENCE)
    (party,) = party_factory(server, 1)
    split = urlsplit(server.base_url)
    connection = http.client.HTTPConnection(split.hostname or "127.0.0.1", split.port, timeout=30)
    connection.request("GET", "/events", headers=party.http_headers)
    response = connection.getresponse()
    assert response.status == 200
    assert response.read1(64).startswith(b"retry:")  # the stream is open: presence online
    connection.sock.close()  # the client goes away without a word
    connection.close()
    deadline = time.monotonic() + 60
    runtime = server.runtime()
    try:
        while True:
            with runtime.database.transaction() as session:
                events = session.execute(
                    select(PresenceEventRow.event, PresenceEventRow.reason)
                    .where(PresenceEventRow.agency_code == party.code)
                    .order_by(PresenceEventRow.id)
                ).all()
            if events and events[-1][0] == "disconnect":
                break
            assert time.monotonic() < deadline, f"no disconnect recorded: {events}"
            time.sleep(0.2)
    finally:
        runtime.database.dispose()
    assert events[0][0] == "connect"
    assert events[-1][1].startswith("channel-dropped")
