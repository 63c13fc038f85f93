#!/usr/bin/env python3
"""Benchmark: SendDocument over HTTP (5 KiB packages), against a bare WSGI floor.

The script seeds a fresh database with the demo agencies (:mod:`esb.pipeline.demo_seed`), starts
``esb serve`` (gunicorn, ``--workers 2`` by default) and, beside it, the **floor**
(``bench/exchange_floor.py``: a bare WSGI app under gunicorn with the same settings that parses
the same SOAP request with lxml, base64-decodes the package, hashes it, validates it against
the strict edXML schema and inserts one row, package bytes included, into a table of the same
database engine).  Several client processes post prebuilt SOAP envelopes with a ``requests``
session, each envelope carrying its own package (a unique DocumentId: the hub answers a
repeated DocumentId with the first receipt).  The same clients drive both servers, alternately,
``--runs`` times; the figures are medians over the runs.

Then, on the hub only, while it is otherwise idle:

* **visibility latency**: one sender posts SendDocument to an agency that nobody else writes
  to, while that agency polls ``GetPendingDocuments`` every ``--poll-interval`` (and confirms
  what it saw, from a second thread, so that its mailbox stays short);
* **profile** (``--profile-packages``, 0 to skip): the WSGI application runs in this process
  on a fresh database of the same engine, fed the same requests; the time per accepted
  package is split by stage (spyne, authentication, read_package, content store, database
  transactions, routing…), once with a bare clock and once under cProfile (one profiler per
  stage) for the functions that cost most in each stage.  The floor's steps are timed the
  same way.

Usage::

    python bench/exchange.py [--seconds 5] [--concurrency 8] [--workers 2] [--runs 3]
    python bench/exchange.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test

With ``--database-url`` pointing at PostgreSQL, every database the run needs is a schema of its
own (``esb_bench_<random>``, through the connection's ``search_path``), dropped at the end.

A benchmark prints numbers; it never fails on them (exit status 0 unless something errors).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import cProfile
import functools
import gc
import io
import math
import multiprocessing
import os
import pstats
import queue
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
import traceback
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

_BENCH = Path(__file__).resolve().parent
_REPO = _BENCH.parent
if str(_REPO) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(_REPO))

from auth import (  # noqa: E402 - bench/auth.py, beside this script
    _between,
    _percentile,
    authenticate_envelope,
    bench_database,
    free_port,
    gunicorn_server,
    print_table,
    progress,
)

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
NS = "urn:lgsp-esb:exchange:1"
HEADERS = {"Content-Type": "text/xml; charset=utf-8"}
KiB = 1024
PLACEHOLDER = "99999999999"  # CodeNumber (at most 11 characters), replaced by a unique number
LATENCY_RECIPIENT = "000.00.00.G22"  # nobody sends to it during the throughput runs
LATENCY_SENDER = "000.00.00.H53"
PG_TARGET = 0.5  # the target: bus ≥ 0.5 × floor on PostgreSQL
_DOCUMENT_ID = re.compile(rb"DocumentId>([^<]+)</")


# packages and envelopes -------------------------------------------------------------------------


def package_template(sender: str, recipient: str, size: int) -> bytes:
    """A strict edoc package of about ``size`` bytes whose number is :data:`PLACEHOLDER`.

    The attachment is random bytes padded so that the whole package is ``size`` bytes (to within
    the 4-byte granularity of base64).  The placeholder occurs twice: in ``Code/CodeNumber`` and in
    ``DocumentId``; :func:`numbered` replaces both with a number of the same length.
    """
    from esb.pipeline.demo_packages import build_edoc, edoc_spec

    spec = edoc_spec(sender, [recipient], number=PLACEHOLDER, promulgated=date.today())
    now = datetime.now(UTC)
    overhead = len(build_edoc(spec, b"xyz", now=now)) - 4
    attachment = os.urandom(max(3, (size - overhead) // 4 * 3))
    package = build_edoc(spec, attachment, now=now)
    if package.count(PLACEHOLDER.encode()) != 2:
        raise RuntimeError("the number placeholder must occur exactly twice in the package")
    return package


def numbered(template: bytes, number: int) -> bytes:
    return template.replace(PLACEHOLDER.encode(), f"{number:011d}".encode())


def document_id_of(package: bytes) -> str:
    found = _DOCUMENT_ID.search(package)
    if found is None:
        raise ValueError("no DocumentId in the package")
    return found.group(1).decode()


def envelope(body: str, token: str | None) -> bytes:
    header = f"<x:AuthHeader><x:sessionToken>{token}</x:sessionToken></x:AuthHeader>" if token else ""
    return (
        f'<soap:Envelope xmlns:soap="{SOAP}" xmlns:x="{NS}"><soap:Header>{header}</soap:Header>'
        f"<soap:Body>{body}</soap:Body></soap:Envelope>"
    ).encode()


@functools.cache
def parameter(operation: str, kind: str) -> str:
    """The name of an operation's parameter, read from the service the server runs.

    ``kind``: ``package`` (the base64Binary parameter of SendDocument), ``space`` (its spaceId),
    ``recipient`` (RequestSendSpace's recipients: the element repeated once per recipient,
    ``outer/inner`` when spyne wraps them in an array element).
    """
    from spyne import ByteArray
    from spyne.model.complex import Array

    from esb.soap.exchange_service import ExchangeService

    fields = ExchangeService.public_methods[operation].in_message._type_info
    if kind == "package":
        return str(next(name for name, kind_ in fields.items() if issubclass(kind_, ByteArray)))
    if kind == "space":
        return str(next(name for name in fields if "space" in name.lower()))
    if kind == "recipient":
        name, kind_ = next(iter(fields.items()))
        if issubclass(kind_, Array):
            return f"{name}/{next(iter(kind_._type_info))}"
        return str(name)
    raise ValueError(kind)


def send_envelope(token: str, package: bytes, element: str = "") -> bytes:
    """SendDocument with the package inline; ``element``: the parameter's name (see :func:`parameter`)."""
    element = element or parameter("SendDocument", "package")
    encoded = base64.b64encode(package).decode("ascii")
    return envelope(f"<x:SendDocument><x:{element}>{encoded}</x:{element}></x:SendDocument>", token)


def pending_envelope(token: str) -> bytes:
    return envelope(
        "<x:GetPendingDocuments><x:messageType>edoc</x:messageType></x:GetPendingDocuments>", token
    )


def confirm_envelope(token: str, hub_id: str, sha256: str) -> bytes:
    return envelope(
        f"<x:ConfirmReceived><x:hubDocumentId>{hub_id}</x:hubDocumentId><x:sha256>{sha256}</x:sha256>"
        "<x:outcome>done</x:outcome></x:ConfirmReceived>",
        token,
    )


def open_session(http: Any, base: str, access_key: str, secret_key: str) -> str:
    """Authenticate (HMAC-SHA256) and return the session key."""
    response = http.post(
        f"{base}/soap/Auth",
        data=authenticate_envelope(access_key, secret_key),
        headers={**HEADERS, "SOAPAction": '"Authenticate"'},
        timeout=30,
    )
    token = _between(response.content, b"sessionToken>", b"</")
    if response.status_code != 200 or token is None:
        raise RuntimeError(f"could not open a session: HTTP {response.status_code} {response.text[:300]}")
    return token.decode()


# throughput clients -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    key: str
    label: str
    path: str  # appended to the server's base URL


TARGETS = {
    "floor": Target(
        "floor", "floor: bare WSGI (lxml + base64 + SHA-256 + XSD + 1 row)", "/soap/DocumentExchange"
    ),
    "bus": Target("bus", "bus: SendDocument (esb serve)", "/soap/DocumentExchange"),
}


@dataclass(frozen=True)
class ClientConfig:
    """What one client process needs (picklable)."""

    index: int
    bases: dict[str, str]  # target key -> base URL
    access_key: str
    secret_key: str
    template: bytes
    package_element: str  # SendDocument's package parameter


@dataclass
class Outcome:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str | None = None
    elapsed: float = 0.0
    made_late: int = 0
    cpu: float = 0.0  # this client's CPU time during the run


@dataclass(frozen=True)
class Result:
    target: Target
    calls: int
    errors: int
    seconds: float
    p50: float
    p99: float
    made_late: int
    first_error: str | None
    server_cpu: float = math.nan  # CPU seconds the server's workers used during the run
    client_cpu: float = math.nan  # CPU seconds all clients used during the run

    @property
    def rate(self) -> float:
        return self.calls / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_per_call(self) -> float:
        return self.server_cpu / self.calls if self.calls else math.nan

    @property
    def client_cpu_per_call(self) -> float:
        return self.client_cpu / (self.calls + self.errors) if self.calls + self.errors else math.nan


class _Pool:
    """The envelopes one client posts in a run: built before the clock starts, more if it runs out."""

    def __init__(self, make: Callable[[], bytes], size: int) -> None:
        self.make = make
        self.prepared = [make() for _ in range(size)]
        self.index = 0
        self.made_late = 0

    def next(self) -> bytes:
        if self.index < len(self.prepared):
            self.index += 1
            return self.prepared[self.index - 1]
        self.made_late += 1
        return self.make()


def client_main(config: ClientConfig, conn: Connection, counters: Any, barrier: Any) -> None:
    """One client process: open a session, then post SendDocument envelopes when told to."""
    import requests

    http = requests.Session()
    try:
        token = open_session(http, config.bases["bus"], config.access_key, config.secret_key)
    except Exception:  # noqa: BLE001 - reported to the parent, which stops the run
        conn.send(("error", traceback.format_exc()))
        return
    conn.send(("ready", None))
    sequence = 0

    def make() -> bytes:
        nonlocal sequence
        sequence += 1
        package = numbered(config.template, config.index * 10**8 + sequence)
        return send_envelope(token, package, config.package_element)

    headers = {**HEADERS, "SOAPAction": '"SendDocument"'}
    while True:
        command = conn.recv()
        if command is None:
            return
        key, seconds, pool_size = command
        url = config.bases[key] + TARGETS[key].path
        pool = _Pool(make, pool_size)
        outcome = Outcome()
        conn.send(("prepared", None))
        barrier.wait()
        cpu_start = time.process_time()
        start = time.perf_counter()
        deadline = start + seconds
        end = start
        while end < deadline:
            data = pool.next()
            sent = time.perf_counter()
            try:
                response = http.post(url, data=data, headers=headers, timeout=60)
                ok = response.status_code == 200 and b"hubDocumentId>" in response.content
                detail = f"HTTP {response.status_code}: {response.text[:400]}"
            except requests.RequestException as exc:
                ok, detail = False, f"{type(exc).__name__}: {exc}"
            end = time.perf_counter()
            if ok:
                outcome.latencies.append(end - sent)
                counters[config.index] += 1
            else:
                outcome.errors += 1
                outcome.first_error = outcome.first_error or detail
        outcome.elapsed = end - start
        outcome.cpu = time.process_time() - cpu_start
        outcome.made_late = pool.made_late
        conn.send(("done", outcome))


class Clients:
    """``len(configs)`` client processes, kept for the whole run."""

    def __init__(self, configs: Sequence[ClientConfig]) -> None:
        context = multiprocessing.get_context("spawn")
        self.counters = context.RawArray("q", len(configs))
        self.barrier = context.Barrier(len(configs) + 1)
        self.connections: list[Connection] = []
        self.processes: list[Any] = []
        for config in configs:
            parent, child = context.Pipe()
            process = context.Process(
                target=client_main, args=(config, child, self.counters, self.barrier), daemon=True
            )
            process.start()
            self.connections.append(parent)
            self.processes.append(process)
        for connection in self.connections:
            kind, value = connection.recv()
            if kind == "error":
                self.close()
                raise RuntimeError(f"a client failed to start:\n{value}")

    def run(
        self,
        target: Target,
        seconds: float,
        pool: int,
        *,
        quiet: bool = False,
        cpu: Callable[[], float] | None = None,
    ) -> Result:
        for connection in self.connections:
            connection.send((target.key, seconds, pool))
        for connection in self.connections:
            connection.recv()
        for index in range(len(self.counters)):
            self.counters[index] = 0
        cpu_before = cpu() if cpu is not None else math.nan
        self.barrier.wait()
        started = time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds:
            time.sleep(min(1.0, max(0.05, seconds - elapsed)))
            calls = sum(self.counters)
            shown = min(time.perf_counter() - started, seconds)
            if not quiet:
                progress(
                    f"{target.label}: {shown:4.1f}/{seconds:g} s, {calls:,} calls ({calls / shown:,.0f}/s)"
                )
        outcomes: list[Outcome] = [connection.recv()[1] for connection in self.connections]
        server_cpu = cpu() - cpu_before if cpu is not None else math.nan
        latencies = sorted(x for o in outcomes for x in o.latencies)
        return Result(
            target=target,
            calls=len(latencies),
            errors=sum(o.errors for o in outcomes),
            seconds=max(o.elapsed for o in outcomes),
            p50=_percentile(latencies, 50),
            p99=_percentile(latencies, 99),
            made_late=sum(o.made_late for o in outcomes),
            first_error=next((o.first_error for o in outcomes if o.first_error), None),
            server_cpu=server_cpu,
            client_cpu=sum(o.cpu for o in outcomes),
        )

    def close(self) -> None:
        for connection in self.connections:
            with contextlib.suppress(OSError):
                connection.send(None)
        for process in self.processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()


# visibility latency -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LatencyConfig:
    base: str
    access_key: str
    secret_key: str
    template: bytes
    seconds: float
    gap: float  # sender: pause between sends
    poll_interval: float  # recipient: pause between polls
    package_element: str


def sender_main(config: LatencyConfig, conn: Connection, barrier: Any) -> None:
    """Post one SendDocument at a time; report (DocumentId, sent, returned, ok) per package."""
    import requests

    http = requests.Session()
    token = open_session(http, config.base, config.access_key, config.secret_key)
    headers = {**HEADERS, "SOAPAction": '"SendDocument"'}
    sends: list[tuple[str, float, float, bool]] = []
    number = 999 * 10**8
    barrier.wait()
    deadline = time.monotonic() + config.seconds
    while time.monotonic() < deadline:
        number += 1
        package = numbered(config.template, number)
        data = send_envelope(token, package, config.package_element)
        sent = time.monotonic()
        try:
            response = http.post(
                f"{config.base}/soap/DocumentExchange", data=data, headers=headers, timeout=60
            )
            ok = response.status_code == 200 and b"hubDocumentId>" in response.content
        except requests.RequestException:
            ok = False
        sends.append((document_id_of(package), sent, time.monotonic(), ok))
        time.sleep(config.gap)
    conn.send(sends)


def poller_main(config: LatencyConfig, conn: Connection, barrier: Any) -> None:
    """Poll GetPendingDocuments; report when each DocumentId was first listed, and the poll times."""
    import requests
    from lxml import etree

    http = requests.Session()
    token = open_session(http, config.base, config.access_key, config.secret_key)
    url = f"{config.base}/soap/DocumentExchange"
    poll = pending_envelope(token)
    poll_headers = {**HEADERS, "SOAPAction": '"GetPendingDocuments"'}
    confirmations: queue.Queue[tuple[str, str] | None] = queue.Queue()

    def confirm() -> None:  # keeps the mailbox short, off the polling loop
        session = requests.Session()
        confirm_headers = {**HEADERS, "SOAPAction": '"ConfirmReceived"'}
        while (item := confirmations.get()) is not None:
            with contextlib.suppress(requests.RequestException):
                session.post(url, data=confirm_envelope(token, *item), headers=confirm_headers, timeout=60)

    confirmer = threading.Thread(target=confirm, daemon=True)
    confirmer.start()
    seen: dict[str, float] = {}
    polls: list[float] = []
    errors = 0
    barrier.wait()
    deadline = time.monotonic() + config.seconds + 1.0  # the last send becomes visible after the sender stops
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            response = http.post(url, data=poll, headers=poll_headers, timeout=60)
        except requests.RequestException:
            errors += 1
            continue
        now = time.monotonic()
        polls.append(now - started)
        if response.status_code != 200:
            errors += 1
            continue
        for item in etree.fromstring(response.content).iter(f"{{{NS}}}PendingDocument"):
            document_id = item.findtext(f"{{{NS}}}documentId") or ""
            if document_id and document_id not in seen:
                seen[document_id] = now
                confirmations.put(
                    (item.findtext(f"{{{NS}}}hubDocumentId") or "", item.findtext(f"{{{NS}}}sha256") or "")
                )
        time.sleep(config.poll_interval)
    confirmations.put(None)
    confirmer.join(timeout=10)
    conn.send((seen, polls, errors))


@dataclass(frozen=True)
class Visibility:
    sends: int
    failed: int
    unseen: int
    send_call: list[float]  # SendDocument round trip
    send_to_visible: list[float]  # SendDocument posted → first poll response that lists it
    return_to_visible: list[float]  # SendDocument returned → first poll response that lists it
    seen_before_return: int
    polls: list[float]
    poll_errors: int


def measure_visibility(config: LatencyConfig, recipient: LatencyConfig) -> Visibility:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    sender_parent, sender_child = context.Pipe()
    poller_parent, poller_child = context.Pipe()
    processes = [
        context.Process(target=sender_main, args=(config, sender_child, barrier), daemon=True),
        context.Process(target=poller_main, args=(recipient, poller_child, barrier), daemon=True),
    ]
    for process in processes:
        process.start()
    sends: list[tuple[str, float, float, bool]] = sender_parent.recv()
    seen, polls, poll_errors = poller_parent.recv()
    for process in processes:
        process.join(timeout=10)
    ok = [s for s in sends if s[3]]
    visible = [(s, seen[s[0]]) for s in ok if s[0] in seen]
    return Visibility(
        sends=len(sends),
        failed=len(sends) - len(ok),
        unseen=len(ok) - len(visible),
        send_call=sorted(s[2] - s[1] for s in ok),
        send_to_visible=sorted(at - s[1] for s, at in visible),
        return_to_visible=sorted(max(0.0, at - s[2]) for s, at in visible),
        seen_before_return=sum(1 for s, at in visible if at < s[2]),
        polls=sorted(polls),
        poll_errors=poll_errors,
    )


# database, seed and servers ---------------------------------------------------------------------


def seed(database_url: str, data_dir: Path) -> dict[str, tuple[str, str]]:
    """Migrate and register the demo agencies; {agency code: (accessKey, secretKey)}."""
    from esb.pipeline.demo_seed import seed_demo
    from esb.settings import Settings
    from esb.wiring import build_runtime

    runtime = build_runtime(Settings(data_dir=data_dir, database_url=database_url))
    try:
        credentials = seed_demo(runtime.registration)
    finally:
        runtime.database.dispose()
    return {c.agency: (c.accessKey, c.secretKey) for c in credentials}


def _server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ESB_", "FLOOR_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(_REPO), env.get("PYTHONPATH"))))
    env.update(extra or {})
    return env


@contextlib.contextmanager
def bus_server(
    database_url: str, data_dir: Path, workers: int, *, timeout: int = 60, env: dict[str, str] | None = None
) -> Iterator[tuple[str, Any]]:
    """``esb serve`` on a free port; yields (base URL, the gunicorn master process)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [
        sys.executable,
        "-m",
        "esb",
        "serve",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--timeout",
        str(timeout),
        "--data-dir",
        str(data_dir),
        "--database-url",
        database_url,
    ]
    with gunicorn_server(command, _server_env(env), base, data_dir / "server.log") as process:
        yield base, process


@contextlib.contextmanager
def floor_server(database_url: str, work_dir: Path, workers: int) -> Iterator[tuple[str, Any]]:
    """``exchange_floor:app`` under gunicorn with ``esb serve``'s settings; yields the base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        "sync",
        "--timeout",
        "60",
        "--graceful-timeout",
        "10",
        "--error-logfile",
        "-",
        "--log-level",
        "info",
        "--pythonpath",
        str(_BENCH),
        "exchange_floor:app",
    ]
    env = _server_env({"FLOOR_DATABASE_URL": database_url})
    with gunicorn_server(command, env, base, work_dir / "floor.log") as process:
        yield base, process


def workers_cpu(master_pid: int) -> float:
    """CPU seconds (user + system) used so far by the gunicorn workers of ``master_pid``."""
    try:
        import psutil  # type: ignore[import-untyped, unused-ignore]
    except ImportError:
        return _proc_workers_cpu(master_pid)
    total = 0.0
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(master_pid).children():
            with contextlib.suppress(psutil.Error):
                times = child.cpu_times()
                total += times.user + times.system
    return total


def _proc_workers_cpu(master_pid: int) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    with contextlib.suppress(OSError):
        children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
        for pid in children:
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / ticks
    return total


# in-process profile -----------------------------------------------------------------------------


class StageClock:
    """Exclusive wall time per stage (a stage's time minus that of the stages inside it).

    With ``profile``, each stage also has its own cProfile profiler, switched on while the stage
    is innermost, so that a function's time is charged to the stage it ran in.
    """

    def __init__(self, *, profile: bool = False) -> None:
        self.exclusive: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.profilers: dict[str, cProfile.Profile] = {}
        self.profile = profile
        self._stack: list[list[Any]] = []  # [name, start, time spent in inner stages]

    @property
    def current(self) -> str:
        return str(self._stack[-1][0]) if self._stack else "top"

    def wrap(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            self.enter(name)
            try:
                return function(*args, **kwargs)
            finally:
                self.exit()

        return timed

    def wrap_context(self, name: str | Callable[[], str], factory: Callable[..., Any]) -> Callable[..., Any]:
        """For a function returning a context manager: the stage spans the whole ``with`` block."""
        clock = self

        class _Timed:
            def __init__(self, inner: Any) -> None:
                self.inner = inner

            def __enter__(self) -> Any:
                clock.enter(name() if callable(name) else name)
                try:
                    return self.inner.__enter__()
                except BaseException:
                    clock.exit()
                    raise

            def __exit__(self, *exc: Any) -> Any:
                try:
                    return self.inner.__exit__(*exc)
                finally:
                    clock.exit()

        @functools.wraps(factory)
        def make(*args: Any, **kwargs: Any) -> _Timed:
            return _Timed(factory(*args, **kwargs))

        return make

    def enter(self, name: str) -> None:
        if self.profile:
            if self._stack:
                self.profilers[self._stack[-1][0]].disable()
            self.profilers.setdefault(name, cProfile.Profile()).enable()
        self._stack.append([name, time.perf_counter(), 0.0])

    def exit(self) -> None:
        end = time.perf_counter()
        name, start, inner = self._stack.pop()
        if self.profile:
            self.profilers[name].disable()
        elapsed = end - start
        self.exclusive[name] += elapsed - inner
        self.calls[name] += 1
        if self._stack:
            self._stack[-1][2] += elapsed
            if self.profile:
                self.profilers[self._stack[-1][0]].enable()


@dataclass(frozen=True)
class Stage:
    label: str
    group: str


# The bus's stages, keyed by the name the hooks below record.  Hooks are found by name and
# skipped when the code no longer has them (the report lists what was hooked), so the profile
# keeps working while esb/ changes; time outside every hook stays with the enclosing stage.
BUS_STAGES = {
    "top": Stage("WSGI router, spyne contexts and events, remainder", "SOAP layer"),
    "guard": Stage("SoapGuard: read body, hardened parse, header checks", "SOAP layer"),
    "spyne_read": Stage("spyne: read the request body", "SOAP layer"),
    "spyne_parse": Stage("spyne: parse the envelope, find the operation", "SOAP layer"),
    "spyne_in": Stage("spyne: XSD-validate + deserialise the Body", "SOAP layer"),
    "spyne_call": Stage("spyne: dispatch + service glue (_bytes, _receipt)", "SOAP layer"),
    "spyne_out": Stage("spyne: serialise the response", "SOAP layer"),
    "auth": Stage("authentication: outside its transaction", "authentication"),
    "send": Stage("exchange._send: glue outside the stages below", "accept"),
    "spool": Stage("accept: spool the package to a file", "accept"),
    "accept": Stage("accept: envelope_of, sender checks, keys", "accept"),
    "read_package": Stage("accept: read_package (parse, base64-decode, SHA-256)", "accept"),
    "splice": Stage("TraceHeader splice, writing the delivered bytes", "routing"),
    "copy": Stage("routing: copy accepted bytes to a temp file", "routing"),
    "record": Stage("accept: _record outside its transaction", "accept"),
    "route": Stage("routing: outside its transactions", "routing"),
    "receipt": Stage("receipt: outside its transaction", "accept"),
    "content": Stage("content store: open, write, rename, delete", "content store"),
    "fsync": Stage("content store: os.fsync (file + directory)", "content store"),
    "gc": Stage("spyne: gc.collect() it forces at most once a second", "SOAP layer"),
}
_DB_PURPOSE = {
    "auth": "session lookup (authentication)",
    "record": "accept: document, deliveries, trace",
    "route": "routing: claim, mark pending, trace",
    "receipt": "receipt read-back",
    "send": "upload space",
    "accept": "accept",
    "content": "content store",
}

FLOOR_STAGES = {
    "top": Stage("WSGI call, uuid, remainder", "SOAP layer"),
    "read_body": Stage("read the request body", "SOAP layer"),
    "parse_envelope": Stage("lxml: parse the SOAP envelope", "SOAP layer"),
    "decode_package": Stage("base64-decode + SHA-256", "accept"),
    "parse_package": Stage("lxml: parse the package", "accept"),
    "validate_package": Stage("XSD: validate (edxml-strict)", "accept"),
    "store": Stage("DB: insert one row + commit", "database"),
    "respond": Stage("build the response", "SOAP layer"),
}


def stage_of(stages: dict[str, Stage], key: str) -> Stage:
    if key in stages:
        return stages[key]
    if key.startswith("db:"):
        parent = key[3:]
        return Stage(f"DB transaction: {_DB_PURPOSE.get(parent, parent)}", "database")
    return Stage(key, "other")


def _instrument_bus(router: Any, runtime: Any, clock: StageClock) -> tuple[Callable[[], None], list[str]]:
    """Wrap the bus's stages (attributes that exist); returns the undo and what was hooked."""
    import esb.pipeline.exchange as exchange_module
    import esb.soap.exchange_service as service_module
    from esb.storage.database import Database

    undo: list[Callable[[], None]] = []
    hooked: list[str] = []

    def hook(
        owner: Any,
        attribute: str,
        stage: str | Callable[[], str],
        *,
        context: bool = False,
        instance: bool = False,
    ) -> None:
        original = getattr(owner, attribute, None)
        if original is None:
            return
        if context:
            wrapped = clock.wrap_context(stage, original)
        else:
            assert isinstance(stage, str)
            wrapped = clock.wrap(stage, original)
        setattr(owner, attribute, wrapped)
        if instance:
            undo.append(lambda: delattr(owner, attribute))
        else:
            undo.append(lambda: setattr(owner, attribute, original))
        hooked.append(f"{getattr(owner, '__name__', type(owner).__name__)}.{attribute}")

    guard = router.routes["/soap/DocumentExchange"]
    spyne_app = guard.app
    hook(guard, "_checked_body", "guard", instance=True)
    hook(spyne_app, "_WsgiApplication__reconstruct_wsgi_request", "spyne_read", instance=True)
    hook(spyne_app, "generate_contexts", "spyne_parse", instance=True)
    hook(spyne_app, "get_in_object", "spyne_in", instance=True)
    hook(spyne_app, "get_out_object", "spyne_call", instance=True)
    hook(spyne_app, "get_out_string", "spyne_out", instance=True)
    hook(service_module, "require_caller", "auth")
    exchange = runtime.exchange
    for attribute, stage in (
        ("_send", "send"),
        ("_spool_bytes", "spool"),
        ("_accept", "accept"),
        ("_write_delivered", "splice"),
        ("_record", "record"),
        ("_duplicate", "record"),
        ("route", "route"),
        ("_route_one", "route"),
        ("_delivered_copy", "copy"),
        ("receipt", "receipt"),
    ):
        hook(exchange, attribute, stage, instance=True)
    for attribute in ("read_package",):
        hook(exchange_module, attribute, "read_package")
    for attribute in ("append_trace_header", "append_trace_header_bytes"):
        hook(exchange_module, attribute, "splice")
    hook(exchange.content, "writer", "content", context=True, instance=True)
    hook(exchange.content, "put_file", "content", instance=True)
    hook(exchange.content, "delete", "content", instance=True)
    hook(os, "fsync", "fsync")
    hook(gc, "collect", "gc")
    hook(Database, "transaction", lambda: f"db:{clock.current}", context=True)

    def restore() -> None:
        for step in reversed(undo):
            step()

    return restore, hooked


def _instrument_floor(floor: Any, clock: StageClock) -> tuple[Callable[[], None], list[str]]:
    originals = {name: getattr(floor, name) for name in FLOOR_STAGES if name != "top"}
    for name, function in originals.items():
        setattr(floor, name, clock.wrap(name, function))

    def restore() -> None:
        for name, function in originals.items():
            setattr(floor, name, function)

    return restore, [f"exchange_floor.{name}" for name in originals]


def _wsgi_call(app: Callable[..., Any], path: str, body: bytes, action: str) -> tuple[str, bytes]:
    from wsgiref.util import setup_testing_defaults

    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "CONTENT_TYPE": "text/xml; charset=utf-8",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_SOAPACTION": f'"{action}"',
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.input": io.BytesIO(body),
    }
    setup_testing_defaults(environ)
    status: list[str] = []

    def start_response(line: str, headers: Any, exc_info: Any = None) -> None:
        status.append(line)

    result = app(environ, start_response)
    try:
        payload = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return status[0], payload


@dataclass
class StageReport:
    packages: int
    total: float  # wall seconds for all packages, bare clock
    exclusive: dict[str, float]
    profilers: dict[str, cProfile.Profile]
    stages: dict[str, Stage]
    hooked: list[str]


@dataclass
class Profile:
    bus: StageReport
    floor: StageReport
    engine: str


def profile_in_process(database_url: str | None, packages: int, size: int) -> Profile:
    """The bus's WSGI app and the floor's, in this process, on a fresh database of the same engine."""
    import exchange_floor

    from esb.pipeline.demo_seed import seed_demo
    from esb.settings import Settings
    from esb.wiring import build_runtime, build_wsgi_app

    data_dir = Path(tempfile.mkdtemp(prefix="esb-bench-exchange-profile-"))
    try:
        with bench_database(database_url, data_dir) as (url, _label):
            runtime = build_runtime(Settings(data_dir=data_dir, database_url=url, in_process_worker=False))
            try:
                credentials = {c.agency: c for c in seed_demo(runtime.registration)}
                router = build_wsgi_app(runtime)
                sender = credentials[LATENCY_SENDER]
                status, answer = _wsgi_call(
                    router,
                    "/soap/Auth",
                    authenticate_envelope(sender.accessKey, sender.secretKey),
                    "Authenticate",
                )
                token = _between(answer, b"sessionToken>", b"</")
                if token is None:
                    raise RuntimeError(f"in-process Authenticate failed: {status} {answer[:300]!r}")
                template = package_template(LATENCY_SENDER, "000.00.01.H53", size)
                counter = iter(range(998 * 10**8, 999 * 10**8))

                def requests_for(count: int) -> list[bytes]:
                    return [
                        send_envelope(token.decode(), numbered(template, next(counter))) for _ in range(count)
                    ]

                floor_url = f"sqlite:///{data_dir / 'floor.sqlite3'}" if database_url is None else url
                exchange_floor.create_table(floor_url)
                os.environ["FLOOR_DATABASE_URL"] = floor_url
                warm = max(10, packages // 10)
                bus = _profile_app(
                    "bus", router, requests_for, packages, warm, lambda c: _instrument_bus(router, runtime, c)
                )
                floor = _profile_app(
                    "floor",
                    exchange_floor.app,
                    requests_for,
                    packages,
                    warm,
                    lambda c: _instrument_floor(exchange_floor, c),
                )
            finally:
                runtime.database.dispose()
                connection = exchange_floor._connection
                if connection is not None:
                    connection.connection.close()
                    exchange_floor._connection = None
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    return Profile(bus, floor, "PostgreSQL" if database_url else "SQLite")


def _profile_app(
    which: str,
    app: Callable[..., Any],
    requests_for: Callable[[int], list[bytes]],
    packages: int,
    warm: int,
    instrument: Callable[[StageClock], tuple[Callable[[], None], list[str]]],
) -> StageReport:
    stages = BUS_STAGES if which == "bus" else FLOOR_STAGES

    def run(bodies: list[bytes], clock: StageClock | None) -> float:
        top = clock.wrap("top", app) if clock is not None else app
        started = time.perf_counter()
        for body in bodies:
            status, payload = _wsgi_call(top, "/soap/DocumentExchange", body, "SendDocument")
            if not status.startswith("200") or b"hubDocumentId>" not in payload:
                raise RuntimeError(f"in-process {which} SendDocument failed: {status} {payload[:400]!r}")
        return time.perf_counter() - started

    progress(f"profile: {which} in-process, {warm} warm-up + {packages} packages (clock) …")
    run(requests_for(warm), None)
    clock = StageClock()
    restore, hooked = instrument(clock)
    try:
        total = run(requests_for(packages), clock)
    finally:
        restore()
    progress(f"profile: {which} in-process, {packages} packages under cProfile …")
    profiled = StageClock(profile=True)
    restore, _ = instrument(profiled)
    try:
        run(requests_for(packages), profiled)
    finally:
        restore()
    return StageReport(packages, total, dict(clock.exclusive), profiled.profilers, stages, hooked)


# report -----------------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    if math.isnan(seconds):
        return "—"
    ms = seconds * 1000
    return f"{ms:.2f} ms" if ms < 10 else f"{ms:.1f} ms" if ms < 100 else f"{ms:,.0f} ms"


def _table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> None:
    print_table(title, headers, rows, left=left, width=130, wrap_labels=True)


@dataclass(frozen=True)
class Summary:
    target: Target
    runs: list[Result]

    @property
    def rate(self) -> float:
        return statistics.median(r.rate for r in self.runs)

    @property
    def p50(self) -> float:
        return statistics.median(r.p50 for r in self.runs)

    @property
    def p99(self) -> float:
        return statistics.median(r.p99 for r in self.runs)

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.runs)

    @property
    def cpu_per_call(self) -> float:
        return statistics.median(r.cpu_per_call for r in self.runs)

    @property
    def client_cpu_per_call(self) -> float:
        return statistics.median(r.client_cpu_per_call for r in self.runs)


def render_throughput(summaries: dict[str, Summary], title: str) -> float:
    floor = summaries["floor"]
    rows = []
    for key in ("floor", "bus"):
        summary = summaries[key]
        ratio = summary.rate / floor.rate if floor.rate else math.nan
        spread = " / ".join(f"{r.rate:,.0f}" for r in summary.runs)
        rows.append(
            [
                summary.target.label,
                f"{summary.rate:,.0f}",
                spread,
                _ms(summary.p50),
                _ms(summary.p99),
                _ms(summary.cpu_per_call),
                f"{ratio:.2f}×",
                f"{summary.errors:,}",
            ]
        )
    headers = ["server", "packages/s", "runs", "p50", "p99", "worker CPU/pkg", "vs floor", "errors"]
    _table(title, headers, rows)
    return summaries["bus"].rate / floor.rate if floor.rate else math.nan


def render_visibility(result: Visibility, poll_interval: float) -> None:
    rows = []
    for label, values in (
        ("SendDocument round trip (hub idle)", result.send_call),
        ("send → listed by GetPendingDocuments", result.send_to_visible),
        ("SendDocument returned → listed", result.return_to_visible),
        ("GetPendingDocuments round trip (poll)", result.polls),
    ):
        rows.append(
            [
                label,
                f"{len(values):,}",
                _ms(_percentile(values, 50)),
                _ms(_percentile(values, 99)),
                _ms(values[-1] if values else math.nan),
            ]
        )
    _table(
        f"Visibility: one sender, one recipient polling every {poll_interval * 1000:g} ms (and confirming)",
        ["measure", "samples", "p50", "p99", "max"],
        rows,
    )
    print(
        f"sends: {result.sends} ({result.failed} failed, {result.unseen} never listed); listed before "
        f"SendDocument returned: {result.seen_before_return} (counted as 0 ms); poll errors: "
        f"{result.poll_errors}"
    )


def render_profile(profile: Profile, top: int) -> None:
    bus, floor = profile.bus, profile.floor
    per_bus = bus.total / bus.packages
    per_floor = floor.total / floor.packages
    for report, name in ((bus, "bus"), (floor, "floor")):
        per = report.total / report.packages
        measured = sum(report.exclusive.values())
        rows = []
        for key, seconds in sorted(report.exclusive.items(), key=lambda kv: -kv[1]):
            stage = stage_of(report.stages, key)
            label, group = stage.label, stage.group
            rows.append(
                [label, group, f"{seconds / report.packages * 1000:.3f}", f"{seconds / measured:.1%}"]
            )
        _table(
            f"Where the {name}'s time goes per accepted package, in-process, {profile.engine} "
            f"({report.packages} packages, {per * 1000:.2f} ms each, bare clock)",
            ["stage", "group", "ms/package", "share"],
            rows,
            left=2,
        )
        groups: dict[str, float] = defaultdict(float)
        for key, seconds in report.exclusive.items():
            groups[stage_of(report.stages, key).group] += seconds
        print(
            "by group: "
            + ", ".join(
                f"{group} {seconds / report.packages * 1000:.2f} ms ({seconds / measured:.0%})"
                for group, seconds in sorted(groups.items(), key=lambda kv: -kv[1])
            )
        )
        print(f"hooked: {', '.join(report.hooked)}\n")
    print(
        f"in-process: bus {per_bus * 1000:.2f} ms/package, floor {per_floor * 1000:.2f} ms/package: "
        f"bus/floor = {per_floor / per_bus:.2f}× (one thread, no HTTP)\n"
    )
    print("Top functions per bus stage under cProfile (tottime per package; stages ≥ 3% of the time):")
    measured = sum(bus.exclusive.values())
    for key, seconds in sorted(bus.exclusive.items(), key=lambda kv: -kv[1]):
        if seconds / measured < 0.03 or key not in bus.profilers:
            continue
        stats = pstats.Stats(bus.profilers[key])
        entries = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:top]  # type: ignore[attr-defined]
        entries = [entry for entry in entries if entry[1][2] / bus.packages >= 5e-6]  # ≥ 5 µs/package
        print(f"  {stage_of(bus.stages, key).label} ({seconds / bus.packages * 1000:.2f} ms):")
        for (filename, line, function), (_cc, calls, tottime, _ct, _callers) in entries:
            where = _short(filename, line)
            per_call = tottime / bus.packages * 1000
            print(f"    {per_call:7.3f} ms  {calls / bus.packages:6.1f} calls  {function}  {where}")
    print("(cProfile inflates pure-Python code more than C code: compare stages with the bare clock above.)")


def _short(filename: str, line: int) -> str:
    if filename == "~":
        return "(built-in)"
    for marker in ("site-packages/", "lib/python3"):
        if marker in filename:
            return f"{filename.split(marker, 1)[1]}:{line}"
    with contextlib.suppress(ValueError):
        return f"{Path(filename).relative_to(_REPO)}:{line}"
    return f"{filename}:{line}"


# main -------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each run (default 5)")
    parser.add_argument("--concurrency", type=int, default=8, help="client processes (default 8)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers, both servers (default 2)")
    parser.add_argument("--runs", type=int, default=3, help="runs per server, alternating (default 3)")
    parser.add_argument(
        "--database-url", help="PostgreSQL URL (throw-away schemas are used); default SQLite in a temp dir"
    )
    parser.add_argument("--package-size", type=int, default=5 * KiB, help="package bytes (default 5120)")
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="untimed seconds per server first (default 1)"
    )
    parser.add_argument(
        "--latency-seconds", type=float, default=5.0, help="visibility measurement, 0 to skip (default 5)"
    )
    parser.add_argument(
        "--poll-interval", type=float, default=0.005, help="recipient's pause between polls (s)"
    )
    parser.add_argument("--send-gap", type=float, default=0.02, help="sender's pause between sends (s)")
    parser.add_argument(
        "--profile-packages", type=int, default=300, help="in-process profile size, 0 to skip (default 300)"
    )
    parser.add_argument("--profile-top", type=int, default=5, help="functions shown per stage (default 5)")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.concurrency < 1 or args.workers < 1 or args.runs < 1:
        parser.error("--seconds, --concurrency, --workers and --runs must be positive")

    started = time.perf_counter()
    engine = "PostgreSQL" if args.database_url else "SQLite"
    summaries, visibility = run_http(args)
    profile = (
        profile_in_process(args.database_url, args.profile_packages, args.package_size)
        if args.profile_packages > 0
        else None
    )

    print()
    ratio = render_throughput(
        summaries,
        f"SendDocument, {args.package_size:,}-byte packages over HTTP: {args.concurrency} client processes, "
        f"{args.workers} gunicorn workers, {args.runs} × {args.seconds:g} s, {engine}",
    )
    print(
        "packages/s: accepted packages ÷ wall time, median of the runs (each run's figure after 'runs');\n"
        "p50/p99: one call as a client sees it (queueing included), median over the runs.\n"
        "worker CPU/pkg: CPU time (user + system) of the server's gunicorn workers ÷ packages accepted\n"
        "(the database server's own CPU is not included).\n"
        f"client CPU per call (building nothing: envelopes are prebuilt): floor "
        f"{_ms(summaries['floor'].client_cpu_per_call)}, bus {_ms(summaries['bus'].client_cpu_per_call)}.\n"
        f"clients and servers share this machine ({os.cpu_count()} CPUs); one TCP connection per call."
    )
    for summary in summaries.values():
        made_late = sum(r.made_late for r in summary.runs)
        if made_late:
            print(f"{summary.target.label}: {made_late:,} envelopes built during the runs (pool ran out)")
        first = next((r.first_error for r in summary.runs if r.first_error), None)
        if first:
            print(f"{summary.target.label}: first error: {first}")
    verdict = "OK" if ratio >= PG_TARGET else "FAIL"
    if args.database_url:
        print(f"\nPostgreSQL: bus/floor = {ratio:.2f} (target ≥ {PG_TARGET}): {verdict}\n")
    else:
        print(f"\nSQLite: bus/floor = {ratio:.2f} (the ≥ {PG_TARGET} target is set for PostgreSQL)\n")
    if visibility is not None:
        render_visibility(visibility, args.poll_interval)
        print()
    if profile is not None:
        render_profile(profile, args.profile_top)
    print(f"total time {time.perf_counter() - started:.1f} s")
    return 0


def run_http(args: argparse.Namespace) -> tuple[dict[str, Summary], Visibility | None]:
    data_dir = Path(tempfile.mkdtemp(prefix="esb-bench-exchange-"))
    try:
        with bench_database(args.database_url, data_dir) as (database_url, database_label):
            progress(f"database: {database_label}")
            progress("migrating and seeding the demo agencies, applications and keys …")
            credentials = seed(database_url, data_dir)
            floor_url = f"sqlite:///{data_dir / 'floor.sqlite3'}" if not args.database_url else database_url
            import exchange_floor

            exchange_floor.create_table(floor_url)
            agencies = [code for code in credentials if code != LATENCY_RECIPIENT]
            progress("building the package templates …")
            configs = []
            for index in range(args.concurrency):
                sender = list(credentials)[index % len(credentials)]
                recipient = _recipient_for(sender, agencies)
                access_key, secret_key = credentials[sender]
                template = package_template(sender, recipient, args.package_size)
                element = parameter("SendDocument", "package")
                configs.append(ClientConfig(index, {}, access_key, secret_key, template, element))
            progress(
                f"package: {len(configs[0].template):,} bytes, SOAP request "
                f"{len(send_envelope('x' * 43, configs[0].template)):,} bytes"
            )
            progress(f"starting esb serve and the floor, {args.workers} gunicorn worker(s) each …")
            with (
                bus_server(database_url, data_dir, args.workers) as (bus_base, bus_master),
                floor_server(floor_url, data_dir, args.workers) as (floor_base, floor_master),
            ):
                masters = {"bus": bus_master.pid, "floor": floor_master.pid}
                bases = {"bus": bus_base, "floor": floor_base}
                configs = [
                    ClientConfig(c.index, bases, c.access_key, c.secret_key, c.template, c.package_element)
                    for c in configs
                ]
                progress(f"hub at {bus_base}, floor at {floor_base}; starting {args.concurrency} clients …")
                clients = Clients(configs)
                try:
                    summaries = _alternate(clients, args, masters)
                finally:
                    clients.close()
                visibility = None
                if args.latency_seconds > 0:
                    progress(
                        f"visibility: {args.latency_seconds:g} s, {LATENCY_SENDER} → {LATENCY_RECIPIENT} …"
                    )
                    sender_keys, recipient_keys = credentials[LATENCY_SENDER], credentials[LATENCY_RECIPIENT]
                    template = package_template(LATENCY_SENDER, LATENCY_RECIPIENT, args.package_size)
                    common = {
                        "base": bus_base,
                        "template": template,
                        "seconds": args.latency_seconds,
                        "gap": args.send_gap,
                        "poll_interval": args.poll_interval,
                        "package_element": parameter("SendDocument", "package"),
                    }
                    visibility = measure_visibility(
                        LatencyConfig(access_key=sender_keys[0], secret_key=sender_keys[1], **common),
                        LatencyConfig(access_key=recipient_keys[0], secret_key=recipient_keys[1], **common),
                    )
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    return summaries, visibility


def _recipient_for(sender: str, agencies: Sequence[str]) -> str:
    """The agency after ``sender`` in ``agencies`` (the latency recipient is not among them)."""
    start = agencies.index(sender) + 1 if sender in agencies else 0
    return next(a for a in [*agencies[start:], *agencies] if a != sender)


def _alternate(clients: Clients, args: argparse.Namespace, masters: dict[str, int]) -> dict[str, Summary]:
    """Warm both servers up, then run floor and bus alternately (``--runs`` times each)."""
    rates = {"floor": 2000.0, "bus": 1000.0}  # pool sizes until a run tells better

    def pool(key: str, seconds: float) -> int:
        return math.ceil(rates[key] * seconds * 1.3 / int(args.concurrency)) + 20

    if args.warmup > 0:
        for key in ("floor", "bus"):
            progress(f"warm-up: {args.warmup:g} s of {TARGETS[key].label} (not reported) …")
            result = clients.run(TARGETS[key], args.warmup, pool(key, args.warmup), quiet=True)
            rates[key] = max(rates[key] / 4, result.rate * 1.5)
    runs: dict[str, list[Result]] = {"floor": [], "bus": []}
    for run in range(args.runs):
        order = ("floor", "bus") if run % 2 == 0 else ("bus", "floor")
        for key in order:
            progress(f"run {run + 1}/{args.runs}: {TARGETS[key].label}")
            cpu = functools.partial(workers_cpu, masters[key])
            result = clients.run(TARGETS[key], args.seconds, pool(key, args.seconds), cpu=cpu)
            rates[key] = max(rates[key], result.rate * 1.2)
            runs[key].append(result)
    return {key: Summary(TARGETS[key], results) for key, results in runs.items()}


if __name__ == "__main__":
    sys.exit(main())
