#!/usr/bin/env python3
"""Benchmark: acceptance → notification latency, on one node and across two nodes (PostgreSQL).

The script makes a throw-away PostgreSQL schema, seeds the demo agencies and starts **two**
``esb serve`` nodes on it (``node-a``, ``node-b``: gunicorn ``gthread``, ``--workers 2`` each by
default, content in the database), as two machines sharing one database would run.  Then:

1. **Latency samples**: a sender sends a small edoc with SendDocument; its recipient waits for
   the notification with WaitForNotifications (long-poll) and, in a second run, on an SSE
   stream (``/events``).  Measured: from the moment SendDocument *returned* to the sender, to
   the moment the recipient received the notification (0 when it came first: the notification
   is committed with the document, before the sender's answer is even written).  Same node
   (sender and waiter on node A) and cross node (sender on node B, waiter on node A: the wake-up
   travels by PostgreSQL ``LISTEN/NOTIFY``).
2. **Urgent during a backlog**: four threads send ``--backlog`` ordinary documents (thường) to
   one recipient, spread over both nodes, while a drainer on node A fetches and confirms them
   (GetPendingDocuments, GetDocument, ConfirmReceived) and the recipient listens with a
   long-poll loop (node A) and an SSE stream (node B).  Meanwhile another agency sends a hỏa
   tốc document every ``--urgent-every`` seconds; the table gives their notification latency.

Target (issue 6): p99 ≤ 1 s everywhere.  A benchmark prints numbers; it never fails on them.

Usage::

    python bench/notify.py [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/test]
                           [--samples 100] [--backlog 500] [--workers 2]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

_BENCH = Path(__file__).resolve().parent
_REPO = _BENCH.parent
if str(_REPO) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(_REPO))

from auth import (  # noqa: E402 - bench/auth.py, beside this script
    _between,
    _percentile,
    bench_database,
    free_port,
    gunicorn_server,
    print_table,
    progress,
)
from exchange import (  # noqa: E402 - bench/exchange.py, beside this script
    confirm_envelope,
    envelope,
    open_session,
    pending_envelope,
    seed,
    send_envelope,
)

NS = "urn:lgsp-esb:notifications:1"
EXCHANGE_NS = "urn:lgsp-esb:exchange:1"
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
HEADERS = {"Content-Type": "text/xml; charset=utf-8"}
DEFAULT_DATABASE = os.environ.get(
    "ESB_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
RECIPIENT = "000.00.01.H53"  # Văn phòng UBND tỉnh Tây Ninh: every notification measured is its
SAMPLE_SENDER = "000.00.00.G22"
BACKLOG_SENDER = "000.00.00.H53"
URGENT_SENDER = "000.00.00.H30"
PLACEHOLDER = "99999999999"
TARGET = 1.0  # seconds


# packages and envelopes -------------------------------------------------------------------------


class Packages:
    """Small strict edocs from one sender to :data:`RECIPIENT`, each with a new number."""

    def __init__(self, sender: str, priority: int) -> None:
        from esb.domain.edxml_enums import Priority
        from esb.pipeline.demo_packages import build_edoc, edoc_spec

        spec = edoc_spec(
            sender, [RECIPIENT], number=PLACEHOLDER, promulgated=date.today(), priority=Priority(priority)
        )
        self.template = build_edoc(spec, os.urandom(1500), now=datetime.now(UTC))
        self._lock = threading.Lock()
        self._next = int.from_bytes(secrets.token_bytes(3), "big") * 1000

    def next(self) -> bytes:
        with self._lock:
            self._next += 1
            number = self._next
        return self.template.replace(PLACEHOLDER.encode(), f"{number:011d}".encode())


def notify_envelope(body: str, token: str) -> bytes:
    return (
        f'<soap:Envelope xmlns:soap="{SOAP}" xmlns:n="{NS}"><soap:Header><n:AuthHeader>'
        f"<n:sessionToken>{token}</n:sessionToken></n:AuthHeader></soap:Header>"
        f"<soap:Body>{body}</soap:Body></soap:Envelope>"
    ).encode()


def wait_envelope(token: str, after: int, timeout: int = 30) -> bytes:
    return notify_envelope(
        f"<n:WaitForNotifications><n:timeout>{timeout}</n:timeout><n:afterId>{after}</n:afterId>"
        "</n:WaitForNotifications>",
        token,
    )


def _texts(payload: bytes, name: str) -> list[str]:
    """Text of every element with this local name (responses are small; lxml parses them)."""
    from lxml import etree

    root = etree.fromstring(payload, etree.XMLParser(resolve_entities=False, no_network=True))
    return [
        str(e.text or "") for e in root.iter() if isinstance(e.tag, str) and etree.QName(e).localname == name
    ]


# one node's clients ----------------------------------------------------------------------------


@dataclass
class Node:
    name: str
    base: str


class Party:
    """An agency's session on one node."""

    def __init__(self, node: Node, credential: tuple[str, str]) -> None:
        import requests

        self.node = node
        self.http = requests.Session()
        self.token = open_session(self.http, node.base, *credential)

    def send(self, packages: Packages) -> tuple[str, float, float]:
        """(hubDocumentId, when the call started, when it returned), perf_counter seconds."""
        body = send_envelope(self.token, packages.next())
        started = time.perf_counter()
        response = self.http.post(
            f"{self.node.base}/soap/DocumentExchange",
            data=body,
            headers={**HEADERS, "SOAPAction": '"SendDocument"'},
            timeout=60,
        )
        returned = time.perf_counter()
        hub_id = _between(response.content, b"hubDocumentId>", b"</")
        if response.status_code != 200 or hub_id is None:
            raise RuntimeError(f"SendDocument failed: HTTP {response.status_code} {response.text[:300]}")
        return hub_id.decode(), started, returned

    def wait(self, after: int, timeout: int = 30) -> tuple[list[str], int]:
        """WaitForNotifications: (hubDocumentIds, lastId)."""
        response = self.http.post(
            f"{self.node.base}/soap/Notifications",
            data=wait_envelope(self.token, after, timeout),
            headers={**HEADERS, "SOAPAction": '"WaitForNotifications"'},
            timeout=timeout + 30,
        )
        if response.status_code != 200:
            raise RuntimeError(
                f"WaitForNotifications failed: HTTP {response.status_code} {response.text[:300]}"
            )
        return _texts(response.content, "hubDocumentId"), int(_texts(response.content, "lastId")[0])

    def last_id(self) -> int:
        response = self.http.post(
            f"{self.node.base}/soap/Notifications",
            data=notify_envelope("<n:Heartbeat/>", self.token),
            headers={**HEADERS, "SOAPAction": '"Heartbeat"'},
            timeout=30,
        )
        return int(_texts(response.content, "lastId")[0])

    def drain_once(self) -> int:
        """Fetch and confirm what is pending (most urgent first); how many."""
        exchange = f"{self.node.base}/soap/DocumentExchange"
        listing = self.http.post(
            exchange,
            data=pending_envelope(self.token),
            headers={**HEADERS, "SOAPAction": '"GetPendingDocuments"'},
        )
        items = list(
            zip(_texts(listing.content, "hubDocumentId"), _texts(listing.content, "sha256"), strict=True)
        )
        for hub_id, sha256 in items:
            get = f"<x:GetDocument><x:hubDocumentId>{hub_id}</x:hubDocumentId></x:GetDocument>"
            self.http.post(
                exchange, data=envelope(get, self.token), headers={**HEADERS, "SOAPAction": '"GetDocument"'}
            )
            self.http.post(
                exchange,
                data=confirm_envelope(self.token, hub_id, sha256),
                headers={**HEADERS, "SOAPAction": '"ConfirmReceived"'},
            )
        return len(items)


class SseListener:
    """An SSE stream in a thread: (perf_counter time, hubDocumentId) of each event, in a queue."""

    def __init__(self, party: Party, after: int) -> None:
        import requests

        self.arrivals: queue.Queue[tuple[float, str]] = queue.Queue()
        self._stop = threading.Event()
        self._response = requests.get(
            f"{party.node.base}/events",
            headers={"X-Session-Token": party.token, "Last-Event-ID": str(after)},
            stream=True,
            timeout=(10, 120),
        )
        if self._response.status_code != 200:
            raise RuntimeError(f"/events: HTTP {self._response.status_code} {self._response.text[:300]}")
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        import json

        with contextlib.suppress(Exception):
            for line in self._response.iter_lines(chunk_size=1, decode_unicode=True):
                if self._stop.is_set():
                    return
                if str(line).startswith("data:"):
                    data = json.loads(str(line)[5:])
                    self.arrivals.put((time.perf_counter(), str(data["hubDocumentId"])))

    def close(self) -> None:
        self._stop.set()
        self._response.close()


# measurements ----------------------------------------------------------------------------------


@dataclass
class Series:
    label: str
    channel: str
    latencies: list[float] = field(default_factory=list)  # from SendDocument's return, ≥ 0
    from_call: list[float] = field(default_factory=list)  # from SendDocument's start
    missed: int = 0

    def row(self) -> list[str]:
        ordered = sorted(self.latencies)
        from_call = sorted(self.from_call)
        p99 = _percentile(ordered, 99)
        verdict = "—" if not ordered else ("yes" if p99 <= TARGET else "NO")
        return [
            self.label,
            self.channel,
            str(len(ordered)),
            _ms(_percentile(ordered, 50)),
            _ms(p99),
            _ms(ordered[-1]) if ordered else "—",
            _ms(_percentile(from_call, 50)),
            str(self.missed),
            verdict,
        ]


def _ms(seconds: float) -> str:
    return "—" if seconds != seconds else f"{seconds * 1000:.1f} ms"


def _wait_until_found(waiter: Party, after: int, arrived: dict[str, float], result: dict[str, int]) -> None:
    """Long-poll from ``after`` until something arrives; arrival times by hubDocumentId."""
    while True:
        ids, last = waiter.wait(after)
        now = time.perf_counter()
        for hub_id in ids:
            arrived.setdefault(hub_id, now)
        result["last"] = last
        if ids:
            return
        after = last


def sample_long_poll(sender: Party, waiter: Party, packages: Packages, series: Series, samples: int) -> None:
    cursor = waiter.last_id()
    for _ in range(samples):
        arrived: dict[str, float] = {}
        result: dict[str, int] = {}
        thread = threading.Thread(target=_wait_until_found, args=(waiter, cursor, arrived, result))
        thread.start()
        time.sleep(0.05)  # the waiter is now held by the server (it would get a backlog otherwise)
        hub_id, started, returned = sender.send(packages)
        thread.join(60)
        cursor = result.get("last", cursor)
        if hub_id not in arrived:
            series.missed += 1
            continue
        series.latencies.append(max(0.0, arrived[hub_id] - returned))
        series.from_call.append(arrived[hub_id] - started)


def sample_sse(sender: Party, waiter: Party, packages: Packages, series: Series, samples: int) -> None:
    listener = SseListener(waiter, waiter.last_id())
    try:
        time.sleep(0.2)
        for _ in range(samples):
            hub_id, started, returned = sender.send(packages)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    at, got = listener.arrivals.get(timeout=max(0.01, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if got == hub_id:
                    series.latencies.append(max(0.0, at - returned))
                    series.from_call.append(at - started)
                    break
            else:
                series.missed += 1
            time.sleep(0.02)
    finally:
        listener.close()


def urgent_during_backlog(
    nodes: Sequence[Node], credentials: dict[str, tuple[str, str]], backlog: int, every: float
) -> tuple[list[Series], dict[str, float]]:
    a, b = nodes
    recipient_a = Party(a, credentials[RECIPIENT])
    recipient_b = Party(b, credentials[RECIPIENT])
    drainer = Party(a, credentials[RECIPIENT])
    ordinary = Packages(BACKLOG_SENDER, 0)
    urgent = Packages(URGENT_SENDER, 3)  # hỏa tốc
    senders = [Party(nodes[i % 2], credentials[BACKLOG_SENDER]) for i in range(4)]
    urgent_sender = Party(b, credentials[URGENT_SENDER])
    start_cursor = recipient_a.last_id()

    long_poll_arrivals: dict[str, float] = {}
    stop = threading.Event()

    def long_poll_loop() -> None:
        after = start_cursor
        while not stop.is_set():
            ids, after = recipient_a.wait(after, timeout=5)
            now = time.perf_counter()
            for hub_id in ids:
                long_poll_arrivals.setdefault(hub_id, now)

    def drain_loop() -> None:
        while not stop.is_set():
            if drainer.drain_once() == 0:
                time.sleep(0.05)

    sse = SseListener(recipient_b, start_cursor)
    threads = [
        threading.Thread(target=long_poll_loop, daemon=True),
        threading.Thread(target=drain_loop, daemon=True),
    ]
    for thread in threads:
        thread.start()
    sent_ordinary: list[str] = []
    lock = threading.Lock()

    def flood(party: Party, count: int) -> None:
        for _ in range(count):
            hub_id, _, _ = party.send(ordinary)
            with lock:
                sent_ordinary.append(hub_id)

    flooders = [
        threading.Thread(target=flood, args=(party, backlog // len(senders) + (i < backlog % len(senders))))
        for i, party in enumerate(senders)
    ]
    began = time.perf_counter()
    for thread in flooders:
        thread.start()
    urgent_sent: list[tuple[str, float, float]] = []
    while any(thread.is_alive() for thread in flooders):
        urgent_sent.append(urgent_sender.send(urgent))
        time.sleep(every)
    accepted_in = time.perf_counter() - began
    time.sleep(3)  # the last urgent ones arrive
    stop.set()
    sse_arrivals: dict[str, float] = {}
    while True:
        try:
            at, hub_id = sse.arrivals.get_nowait()
        except queue.Empty:
            break
        sse_arrivals.setdefault(hub_id, at)
    sse.close()
    for thread in threads:
        thread.join(15)
    results = []
    for label, channel, arrivals in (
        ("hỏa tốc during backlog (send on B)", "long-poll on A", long_poll_arrivals),
        ("hỏa tốc during backlog (send on B)", "SSE on B", sse_arrivals),
    ):
        series = Series(label, channel)
        for hub_id, started, returned in urgent_sent:
            if hub_id in arrivals:
                series.latencies.append(max(0.0, arrivals[hub_id] - returned))
                series.from_call.append(arrivals[hub_id] - started)
            else:
                series.missed += 1
        results.append(series)
    ordinary_notified = sum(1 for hub_id in sent_ordinary if hub_id in long_poll_arrivals)
    facts = {
        "backlog sent": float(len(sent_ordinary)),
        "backlog accepted in (s)": accepted_in,
        "backlog notified by long-poll": float(ordinary_notified),
    }
    return results, facts


# servers ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def node(name: str, database_url: str, data_dir: Path, workers: int, threads: int) -> Iterator[Node]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESB_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(_REPO), env.get("PYTHONPATH"))))
    env.update({"ESB_NODE_NAME": name, "ESB_CONTENT_STORE": "database", "ESB_SESSION_CACHE_SECONDS": "30"})
    command = [
        sys.executable,
        "-m",
        "esb",
        "serve",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--data-dir",
        str(data_dir),
        "--database-url",
        database_url,
    ]
    with gunicorn_server(command, env, base, data_dir / f"{name}.log"):
        yield Node(name, base)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--database-url", default=DEFAULT_DATABASE, help="PostgreSQL server (a schema is made)"
    )
    parser.add_argument("--samples", type=int, default=100, help="latency samples per row")
    parser.add_argument("--backlog", type=int, default=500, help="ordinary documents in the backlog")
    parser.add_argument("--urgent-every", type=float, default=0.25, help="seconds between urgent documents")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per node")
    parser.add_argument("--threads", type=int, default=16, help="threads per worker")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="esb-bench-notify-") as folder:
        data_dir = Path(folder)
        with bench_database(args.database_url, data_dir) as (database_url, description):
            if not database_url.startswith("postgresql"):
                raise SystemExit("bench/notify.py needs PostgreSQL (--database-url): two nodes share it")
            progress(f"database: {description}")
            credentials = seed(database_url, data_dir)
            with (
                node("node-a", database_url, data_dir, args.workers, args.threads) as a,
                node("node-b", database_url, data_dir, args.workers, args.threads) as b,
            ):
                progress(f"two nodes: {a.base} (node-a), {b.base} (node-b)")
                rows = run(a, b, credentials, args)
                return report(rows, args, description)


def run(
    a: Node, b: Node, credentials: dict[str, tuple[str, str]], args: argparse.Namespace
) -> tuple[list[Series], dict[str, float]]:
    packages = Packages(SAMPLE_SENDER, 0)
    waiter_a = Party(a, credentials[RECIPIENT])
    sender_a = Party(a, credentials[SAMPLE_SENDER])
    sender_b = Party(b, credentials[SAMPLE_SENDER])
    # Warm-up: every worker has loaded, the listener of each is LISTENing.
    for sender in (sender_a, sender_b, sender_a, sender_b):
        sender.send(packages)
    series: list[Series] = []
    plans: list[tuple[str, str, Callable[..., None], Party]] = [
        ("same node (A → A)", "long-poll", sample_long_poll, sender_a),
        ("cross node (B → A)", "long-poll", sample_long_poll, sender_b),
        ("same node (A → A)", "SSE", sample_sse, sender_a),
        ("cross node (B → A)", "SSE", sample_sse, sender_b),
    ]
    for label, channel, sample, sender in plans:
        progress(f"{label}, {channel}: {args.samples} samples")
        row = Series(label, channel)
        sample(sender, waiter_a, packages, row, args.samples)
        series.append(row)
    progress(f"urgent documents while {args.backlog} ordinary ones are sent and drained")
    urgent, facts = urgent_during_backlog((a, b), credentials, args.backlog, args.urgent_every)
    return series + urgent, facts


def report(result: tuple[list[Series], dict[str, float]], args: argparse.Namespace, description: str) -> int:
    rows, facts = result
    title = (
        f"acceptance → notification latency ({description}; two nodes, "
        f"{args.workers} workers × {args.threads} threads each)"
    )
    headers = [
        "scenario",
        "channel",
        "n",
        "p50",
        "p99",
        "max",
        "p50 from call",
        "missed",
        f"p99 ≤ {TARGET:.0f} s",
    ]
    print()
    print_table(title, headers, [row.row() for row in rows], left=2, width=140)
    print()
    for key, value in facts.items():
        print(f"  {key}: {value:.1f}" if not value.is_integer() else f"  {key}: {int(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
