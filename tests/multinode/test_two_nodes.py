"""Two ``esb serve`` nodes on one PostgreSQL database behave as one hub.

Each node is a real gunicorn (master + workers, in-process delivery worker) on its own port,
with its own ``ESB_NODE_NAME``, and package bytes in the database (``ESB_CONTENT_STORE=database``):
nothing is shared between the nodes but the database, as on two machines.  Timings (leases,
keep-alives, retry delays) are shortened through the environment so a lost node is noticed
in seconds rather than a minute.
"""

from __future__ import annotations

import hashlib
import http.server
import itertools
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
from conftest import LiveServer, Party, PartyFactory, _new_database, _settings, start_server, stop_server
from sqlalchemy import select

from esb.domain.edxml_enums import Priority
from esb.pipeline.demo_packages import build_edoc, edoc_spec
from esb.security.notification_signature import verify_notify
from esb.storage.tables import CallbackPushRow, PresenceEventRow
from esb.wiring import build_runtime

NOTIFICATIONS_NS = "urn:lgsp-esb:notifications:1"

# Short leases so that a node killed with SIGKILL is noticed within seconds.
CLUSTER_ENV = {
    "ESB_CONTENT_STORE": "database",
    "ESB_CALLBACK_LEASE_SECONDS": "6",
    "ESB_CALLBACK_TIMEOUT_SECONDS": "2",
    "ESB_PRESENCE_KEEPALIVE_SECONDS": "2",
    "ESB_PRESENCE_CHANNEL_LEASE_SECONDS": "6",
    "ESB_RETRY_INITIAL_SECONDS": "1",
}


_numbers = itertools.count(1)


def edoc(sender: str, recipient: str) -> bytes:
    number = str(next(_numbers))
    spec = edoc_spec(
        sender,
        [recipient],
        number=number,
        promulgated=date(2026, 11, 21),
        subject=f"Công văn {number} gửi qua hai nút",
        priority=Priority.THUONG,
        attachment_name="noi-dung.txt",
        content_type="text/plain",
    )
    return build_edoc(spec, f"noi dung {number}".encode(), now=datetime.now(UTC))


def pending(party: Party) -> list[Any]:
    return list(party.service.GetPendingDocuments("edoc") or [])


def fetch_and_confirm(party: Party, item: Any) -> None:
    content = party.service.GetDocument(item.hubDocumentId)
    assert hashlib.sha256(content.edxmlPackage).hexdigest() == item.sha256
    answer = party.service.ConfirmReceived(item.hubDocumentId, item.sha256, "done")
    assert answer.state == "done"


@dataclass
class Cluster:
    nodes: dict[str, LiveServer]
    folder: Path
    start: Callable[[str], LiveServer]
    runtime: Any = field(repr=False)

    def __getitem__(self, name: str) -> LiveServer:
        return self.nodes[name]

    def kill(self, name: str) -> None:
        """SIGKILL the node's gunicorn master and every worker at once: no clean-up runs."""
        master = psutil.Process(self.nodes[name].process.pid)
        victims = [*master.children(recursive=True), master]
        for process in victims:
            process.send_signal(signal.SIGKILL)
        psutil.wait_procs(victims, timeout=10)
        self.nodes[name].process.wait(timeout=10)  # reaped: no zombie, no ResourceWarning

    def restart(self, name: str) -> LiveServer:
        self.nodes[name] = self.start(name)
        return self.nodes[name]


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, postgres_admin: Callable[[str], None]
) -> Iterator[Cluster]:
    folder = tmp_path_factory.mktemp("two-nodes")
    url, schema = _new_database("postgresql", folder, lambda: postgres_admin)
    settings = _settings(folder / "data", url)
    runtime = build_runtime(settings)  # migrates, and makes the hub key both nodes sign with

    def start(name: str) -> LiveServer:
        node_folder = folder / name
        node_folder.mkdir(exist_ok=True)
        return start_server(settings, node_folder, "postgresql", env={**CLUSTER_ENV, "ESB_NODE_NAME": name})

    nodes = {name: start(name) for name in ("node-a", "node-b")}
    cluster = Cluster(nodes, folder, start, runtime)
    try:
        yield cluster
    finally:
        for server in cluster.nodes.values():
            if server.process.poll() is None:
                stop_server(server)
        runtime.database.dispose()
        postgres_admin(f"DROP SCHEMA {schema} CASCADE")


def notifications_client(factory: PartyFactory, server: LiveServer, party: Party) -> Any:
    client = factory.client(server, "Notifications")
    client.set_default_soapheaders({"AuthHeader": {"sessionToken": party.token}})
    return client.service


def wait_in_background(service: Any, after: int, timeout: int) -> tuple[threading.Thread, dict[str, Any]]:
    """WaitForNotifications in a thread; the result dict gets ``batch`` and ``at`` (monotonic)."""
    result: dict[str, Any] = {}

    def run() -> None:
        result["batch"] = service.WaitForNotifications(timeout=timeout, afterId=after)
        result["at"] = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


# -- 1. a document sent to node A is notified, pending and fetchable on node B ------------------


def test_a_document_sent_on_node_a_wakes_a_waiter_on_node_b_and_is_fetched_there(
    cluster: Cluster, party_factory: PartyFactory
) -> None:
    sender_key, recipient_key = party_factory.register(cluster["node-a"], 2)
    sender = party_factory.sign_in(cluster["node-a"], sender_key)
    recipient = party_factory.sign_in(cluster["node-b"], recipient_key)
    waiter = notifications_client(party_factory, cluster["node-b"], recipient)
    cursor = waiter.WaitForNotifications(timeout=1, afterId=0).lastId

    thread, result = wait_in_background(waiter, cursor, timeout=30)
    time.sleep(0.5)  # let the waiter park on node B (if not, the backlog answers it at once: same result)
    receipt = sender.service.SendDocument(edoc(sender.code, recipient.code))
    sent = time.monotonic()
    thread.join(35)

    (note,) = result["batch"].notification
    assert (note.kind, note.hubDocumentId, note["from"]) == ("document", receipt.hubDocumentId, sender.code)
    assert result["at"] - sent < 25, "the waiter timed out instead of being woken by node A's NOTIFY"

    (item,) = [i for i in pending(recipient) if i.hubDocumentId == receipt.hubDocumentId]
    fetch_and_confirm(recipient, item)
    trace = sender.service.GetTrace(hubDocumentId=receipt.hubDocumentId).event
    actors = {(e.kind, e.actor) for e in trace}
    assert ("routed", "hub:node-a") in actors
    assert [e.kind for e in trace][-2:] == ["confirmed", "purged"]


def test_server_sent_events_on_node_b_carry_a_document_sent_on_node_a(
    cluster: Cluster, party_factory: PartyFactory
) -> None:
    sender_key, recipient_key = party_factory.register(cluster["node-a"], 2)
    sender = party_factory.sign_in(cluster["node-a"], sender_key)
    recipient = party_factory.sign_in(cluster["node-b"], recipient_key)
    events: list[str] = []
    opened = threading.Event()

    def listen() -> None:
        with requests.get(
            cluster["node-b"].url("/events"), headers=recipient.http_headers, stream=True, timeout=30
        ) as stream:
            assert stream.status_code == 200
            opened.set()
            for line in stream.iter_lines(decode_unicode=True):
                if line.startswith("data:"):
                    events.append(line)
                    return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    assert opened.wait(10)
    receipt = sender.service.SendDocument(edoc(sender.code, recipient.code))
    thread.join(25)
    assert len(events) == 1
    assert receipt.hubDocumentId in events[0]


# -- 2. a node killed mid-delivery: nothing lost, nothing delivered twice ----------------------


class CallbackEndpoint:
    """A QLVB's callback endpoint: the first Notify is held (its node is killed meanwhile)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, bytes]] = []  # (node header, body)
        self.first = threading.Event()
        self.release = threading.Event()
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                endpoint.received.append((self.headers.get("X-LGSP-Node", ""), body))
                if len(endpoint.received) == 1:
                    endpoint.first.set()
                    endpoint.release.wait(30)  # the pushing node dies while we hold its request
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/qlvb/notify"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def test_a_node_killed_while_pushing_a_notification_loses_nothing_and_delivers_once(
    cluster: Cluster, party_factory: PartyFactory
) -> None:
    endpoint = CallbackEndpoint()
    try:
        sender_key, recipient_key = party_factory.register(cluster["node-a"], 2)
        runtime = cluster.runtime
        runtime.registration.register_application(recipient_key.agency, "QLVB-PUSH", endpoint=endpoint.url)
        issued = runtime.registration.issue_key(recipient_key.agency, "QLVB-PUSH")
        push_key = replace(
            recipient_key,
            application="QLVB-PUSH",
            accessKey=issued.access_key,
            secretKey=issued.secret_key or "",
        )
        subscriber = party_factory.sign_in(cluster["node-b"], push_key)
        notifications_client(party_factory, cluster["node-b"], subscriber).Subscribe(callbackUrl=endpoint.url)

        sender = party_factory.sign_in(cluster["node-a"], sender_key)
        receipt = sender.service.SendDocument(edoc(sender.code, recipient_key.agency))

        assert endpoint.first.wait(20), "no node pushed the notification"
        pusher = endpoint.received[0][0]
        assert pusher in cluster.nodes
        cluster.kill(pusher)  # mid-delivery: the POST is out, its outcome never recorded
        endpoint.release.set()
        survivor = next(name for name in cluster.nodes if name != pusher)

        deadline = time.monotonic() + 40  # lease (6 s) + the survivor's next worker pass
        while len(endpoint.received) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(endpoint.received) == 2, "the survivor never took the lapsed lease over"
        node, body = endpoint.received[1]
        assert node == survivor
        hub = runtime.exchange.receipts.key.sha256
        check = verify_notify(body, hub_certificates=[hub])
        assert check.report.verdict.value == "valid"
        assert check.message is not None
        assert check.message.notification.hub_document_id == receipt.hubDocumentId
        first = verify_notify(endpoint.received[0][1], hub_certificates=[hub])
        assert first.message is not None
        assert (
            first.message.notification.id == check.message.notification.id
        )  # same id: receiver de-duplicates

        def pushes() -> list[tuple[str, int]]:
            assert check.message is not None
            with runtime.database.transaction() as session:
                rows = session.scalars(
                    select(CallbackPushRow).where(
                        CallbackPushRow.notification_id == check.message.notification.id
                    )
                )
                return [(row.state, row.attempts) for row in rows]

        deadline = time.monotonic() + 10  # the survivor records the answer just after it came
        while pushes() != [("sent", 0)] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pushes() == [("sent", 0)]  # one push, sent once recorded; the lost try is no failure

        # The document was never lost: pending once, fetched and confirmed on the survivor.
        recipient = party_factory.sign_in(cluster[survivor], push_key)
        items = [i for i in pending(recipient) if i.hubDocumentId == receipt.hubDocumentId]
        assert len(items) == 1
        fetch_and_confirm(recipient, items[0])
        kinds = [e.kind for e in recipient.service.GetTrace(hubDocumentId=receipt.hubDocumentId).event]
        assert kinds.count("notified") == 1
        assert kinds.count("routed") == 1
    finally:
        endpoint.close()
        for name, server in list(cluster.nodes.items()):
            if server.process.poll() is not None:
                cluster.restart(name)


# -- 3. a notification channel held on a node that dies: offline within 60 s -------------------


def test_a_channel_lost_with_its_node_is_declared_offline_by_the_other_node(
    cluster: Cluster, party_factory: PartyFactory
) -> None:
    (key,) = party_factory.register(cluster["node-a"], 1)
    listener = party_factory.sign_in(cluster["node-b"], key)
    stream = requests.get(
        cluster["node-b"].url("/events"), headers=listener.http_headers, stream=True, timeout=30
    )
    assert stream.status_code == 200
    killed_at = time.monotonic()
    cluster.kill("node-b")
    stream.close()
    try:
        deadline = killed_at + 60
        events: list[PresenceEventRow] = []
        while time.monotonic() < deadline:
            with cluster.runtime.database.transaction() as session:
                events = list(
                    session.scalars(
                        select(PresenceEventRow)
                        .where(PresenceEventRow.agency_code == key.agency)
                        .order_by(PresenceEventRow.id)
                    )
                )
            if events and events[-1].event == "disconnect":
                break
            time.sleep(0.5)
        assert [e.event for e in events][-1] == "disconnect"
        assert events[-1].node == "node-a"
        assert events[-1].reason.startswith("channel-lease-expired")
    finally:
        cluster.restart("node-b")


def test_both_nodes_share_one_trace_chain(cluster: Cluster) -> None:
    from esb.pipeline.audit import verify_database

    report = verify_database(cluster.runtime.database)
    assert report.intact, report.to_dict()
    assert report.documents >= 3
