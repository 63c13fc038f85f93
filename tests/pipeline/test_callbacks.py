"""Callback pushes (esb.pipeline.callbacks) to a real local HTTP endpoint, on both engines.

Documents are sent through the exchange (``hub`` fixture, fake clock); the recipient's
application has a registered endpoint, served by a small HTTP server in a thread that answers
what each test tells it to.  The retry policy's jitter is fixed (random 0.5), so back-off
delays are exact and the fake clock can step onto them.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import select, update

from esb.clock import utc_now
from esb.domain.access import Caller
from esb.domain.delivery_policy import RetryPolicy
from esb.domain.edxml_enums import Priority
from esb.domain.exchange import DeliveryState, TraceKind
from esb.domain.notifications import NotificationKind
from esb.pipeline.callbacks import CallbackPusher
from esb.security.notification_signature import SOAP_ACTION, verify_notify
from esb.security.signing_key import SigningKey
from esb.storage import exchange_store
from esb.storage import notification_store as store
from esb.storage.tables import Application, CallbackPushRow, Delivery
from esb.wiring import hub_signing_key

if TYPE_CHECKING:
    from conftest import Hub

SENDER = "000.00.00.G22"
B = "000.00.01.H53"
RETRY = RetryPolicy(initial=timedelta(seconds=10), factor=2.0, max_attempts=3, jitter=0.2)


@dataclass
class Endpoint:
    """A callback endpoint: answers ``statuses`` in turn (then 200), records what it received."""

    server: http.server.ThreadingHTTPServer
    statuses: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/lgsp/notify"

    def stop(self) -> None:
        """Shut down and close the socket: further pushes find the connection refused."""
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    state: dict[str, Endpoint] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            served = state["endpoint"]
            with served.lock:
                served.received.append((dict(self.headers.items()), body))
                status = served.statuses.pop(0) if served.statuses else 200
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", "http://127.0.0.1:9/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    served = state["endpoint"] = Endpoint(server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served
    if server.socket.fileno() != -1:
        served.stop()


class Presence:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, str]] = []

    def seen(self, caller: Caller, reason: str) -> None:
        self.calls.append((caller.agency_code, caller.application_id, reason))


@dataclass
class Setup:
    hub: Hub
    endpoint: Endpoint
    key: SigningKey
    presence: Presence
    reports: list[tuple[str, str, str]]

    def pusher(self, **kwargs: object) -> CallbackPusher:
        options: dict[str, object] = {
            "node_name": "node-a",
            "presence": self.presence,
            "report_undeliverable": self._report,
            "clock": self.hub.clock,
            "random": lambda: 0.5,
            "timeout": 5.0,
            **kwargs,
        }
        return CallbackPusher(self.hub.runtime.database, self.key, RETRY, **options)  # type: ignore[arg-type]

    def _report(self, hub_document_id: str, recipient: str, reason: str) -> bool:
        self.reports.append((hub_document_id, recipient, reason))
        return self.hub.runtime.undeliverable.report(hub_document_id, recipient, reason)

    def send(self, number: str, priority: Priority = Priority.THUONG) -> str:
        package = self.hub.edoc(SENDER, [B], number=number, priority=priority)
        receipt = self.hub.exchange.send_document(self.hub.caller(SENDER), package=package)
        return receipt.hub_document_id

    def pushes(self) -> list[tuple[str, int, str | None]]:
        with self.hub.runtime.database.transaction() as session:
            rows = session.execute(
                select(CallbackPushRow.state, CallbackPushRow.attempts, CallbackPushRow.last_error).order_by(
                    CallbackPushRow.id
                )
            )
            return [(str(state), int(attempts), error) for state, attempts, error in rows]

    def trace(self, hub_id: str) -> list[tuple[str, str | None, str | None]]:
        with self.hub.runtime.database.transaction() as session:
            document = exchange_store.find_document(session, hub_id)
            assert document is not None
            return [
                (event.kind.value, event.recipient, event.detail)
                for event in exchange_store.events_of(session, document)
            ]


@pytest.fixture
def setup(hub: Hub, endpoint: Endpoint) -> Setup:
    """B's application QLVB registered its endpoint (an operator) and subscribed it."""
    b = hub.caller(B)
    with hub.runtime.database.transaction() as session:
        session.execute(
            update(Application).where(Application.id == b.application_id).values(endpoint=endpoint.url)
        )
        store.set_callback(session, b.application_id, endpoint.url, now=hub.clock.now)
    return Setup(hub, endpoint, hub_signing_key(hub.runtime.settings), Presence(), [])


def test_a_push_is_signed_sent_traced_and_marks_the_application_seen(setup: Setup) -> None:
    hub_id = setup.send("201", Priority.KHAN)
    pusher = setup.pusher()
    assert pusher.run(50) == 1
    assert pusher.run(50) == 0  # sent once
    ((headers, body),) = setup.endpoint.received
    assert headers["SOAPAction"] == SOAP_ACTION
    assert headers["Content-Type"].startswith("text/xml")
    check = verify_notify(body, hub_certificates=[setup.key.sha256], at=utc_now())
    assert (check.report.verdict.value, check.report.reason) == ("valid", "ok")
    assert check.message is not None
    notification = check.message.notification
    assert (notification.kind, notification.agency, notification.hub_document_id) == (
        NotificationKind.DOCUMENT,
        B,
        hub_id,
    )
    assert (
        notification.sender,
        notification.recipient,
        notification.message_type,
        notification.priority,
    ) == (
        SENDER,
        B,
        "edoc",
        int(Priority.KHAN),
    )
    assert check.message.sent_at == setup.hub.clock.now
    assert b"subject" not in body.lower()
    assert setup.pushes() == [("sent", 0, None)]
    notified = [event for event in setup.trace(hub_id) if event[0] == TraceKind.NOTIFIED.value]
    assert len(notified) == 1
    assert notified[0][1] == B
    assert notified[0][2] is not None
    assert "QLVB" in notified[0][2]
    assert setup.presence.calls == [(B, setup.hub.caller(B).application_id, "callback-ok")]


def test_a_tampered_notify_does_not_verify(setup: Setup) -> None:
    setup.send("202")
    setup.pusher().run(50)
    ((_, body),) = setup.endpoint.received
    forged = body.replace(f"<from>{SENDER}</from>".encode(), b"<from>000.00.00.H30</from>")
    assert forged != body
    check = verify_notify(forged, hub_certificates=[setup.key.sha256], at=utc_now())
    assert check.report.reason == "digest-mismatch"
    other_hub = verify_notify(body, hub_certificates=["ab" * 32], at=utc_now())
    assert other_hub.report.reason == "signer-not-registered"


def test_the_most_urgent_is_pushed_first(setup: Setup) -> None:
    ordinary = setup.send("203", Priority.THUONG)
    urgent = setup.send("204", Priority.HOA_TOC)
    assert setup.pusher(parallel=1).run(50) == 2
    sent = [verify_notify(body).message for _, body in setup.endpoint.received]
    assert [m.notification.hub_document_id for m in sent if m is not None] == [urgent, ordinary]


def test_a_document_already_fetched_is_not_pushed(setup: Setup) -> None:
    hub_id = setup.send("205")
    setup.hub.exchange.get_document(setup.hub.caller(B), hub_id)
    assert setup.pusher().run(50) == 1
    assert setup.endpoint.received == []
    assert setup.pushes() == [("cancelled", 0, "the addressee already fetched the document")]


def test_a_push_to_an_endpoint_an_operator_changed_is_cancelled(setup: Setup) -> None:
    setup.send("206")
    with setup.hub.runtime.database.transaction() as session:
        session.execute(
            update(Application)
            .where(Application.id == setup.hub.caller(B).application_id)
            .values(endpoint="https://qlvb-moi.example.gov.vn/notify")
        )
    assert setup.pusher().run(50) == 1
    assert setup.endpoint.received == []
    assert setup.pushes() == [
        ("cancelled", 0, "the callback is no longer the application's registered endpoint")
    ]


def test_failures_back_off_then_the_delivery_is_reported_undeliverable(setup: Setup) -> None:
    clock = setup.hub.clock
    hub_id = setup.send("207")
    pusher = setup.pusher()
    setup.endpoint.statuses = [500]
    start = clock.now
    assert pusher.run(50) == 1
    assert setup.pushes() == [("pending", 1, "HTTP 500")]
    clock.advance(seconds=9)  # the first retry is due after 10 s (random 0.5: no jitter)
    assert pusher.run(50) == 0
    clock.advance(seconds=1)
    setup.endpoint.stop()  # the endpoint is gone: connection refused
    assert pusher.run(50) == 1
    assert setup.pushes() == [("pending", 2, "connection failed (refused, reset or unreachable)")]
    clock.advance(seconds=19)
    assert pusher.run(50) == 0
    clock.advance(seconds=1)  # 20 s after the second attempt: the third and last
    assert clock.now - start == timedelta(seconds=30)
    assert pusher.run(50) == 1
    assert setup.pushes() == [("dead", 3, "connection failed (refused, reset or unreachable)")]
    assert len(setup.endpoint.received) == 1
    ((reported_id, recipient, reason),) = setup.reports
    assert (reported_id, recipient) == (hub_id, B)
    assert "failed 3 times" in reason
    # D's report: the delivery is undeliverable, and the sender is told.
    with setup.hub.runtime.database.transaction() as session:
        state = session.scalar(
            select(Delivery.state).where(Delivery.recipient_code == B).order_by(Delivery.id.desc()).limit(1)
        )
        told = store.after(session, SENDER, 0, limit=10)
    assert state == DeliveryState.UNDELIVERABLE.value
    assert [(n.kind, n.hub_document_id, n.recipient) for n in told] == [
        (NotificationKind.UNDELIVERABLE, hub_id, B)
    ]
    assert pusher.run(50) == 0


def test_a_redirect_is_not_followed(setup: Setup) -> None:
    setup.send("208")
    setup.endpoint.statuses = [302]
    assert setup.pusher().run(50) == 1
    assert len(setup.endpoint.received) == 1
    assert setup.pushes() == [("pending", 1, "HTTP 302: a redirect, not followed")]


def test_a_killed_nodes_lease_lapses_and_another_node_pushes(setup: Setup) -> None:
    clock = setup.hub.clock
    setup.send("209")
    node_a = setup.pusher(node_name="node-a", lease=timedelta(seconds=60))
    node_b = setup.pusher(node_name="node-b", lease=timedelta(seconds=60))
    with setup.hub.runtime.database.transaction() as session:  # node A claims, then is killed
        (claimed,) = store.claim_pushes(
            session, now=clock.now, owner=node_a.owner, lease=node_a.lease, limit=10
        )
    assert node_b.run(50) == 0  # still leased
    clock.advance(seconds=59)
    assert node_b.run(50) == 0
    clock.advance(seconds=1)
    assert node_b.run(50) == 1
    assert len(setup.endpoint.received) == 1
    assert setup.pushes() == [("sent", 0, None)]
    with setup.hub.runtime.database.transaction() as session:  # node A's late outcome changes nothing
        assert not store.postpone_push(
            session, claimed.push_id, node_a.owner, next_attempt_at=clock.now, error="x"
        )


def test_unsubscribing_cancels_what_is_pending(setup: Setup) -> None:
    setup.send("210")
    with setup.hub.runtime.database.transaction() as session:
        store.set_callback(session, setup.hub.caller(B).application_id, None, now=setup.hub.clock.now)
    assert setup.pusher().run(50) == 0
    assert setup.pushes() == [("cancelled", 0, None)]
    assert setup.endpoint.received == []


def test_many_pushes_go_out_in_parallel_rounds(setup: Setup) -> None:
    for n in range(20):
        setup.send(str(300 + n))
    pusher = setup.pusher(parallel=4)
    handled = 0
    while (count := pusher.run(50)) > 0:
        assert count <= 8  # two rounds of four
        handled += count
    pusher.close()
    assert handled == 20
    assert len(setup.endpoint.received) == 20
    assert {state for state, _, _ in setup.pushes()} == {"sent"}
