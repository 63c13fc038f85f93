#!/usr/bin/env python3
"""Benchmark: the authentication service over real HTTP, against an unauthenticated baseline.

The script seeds a fresh database (the demo agencies of :mod:`esb.pipeline.demo_seed`, plus an
application registered with a self-signed certificate for WS-Security), starts ``esb serve``
(gunicorn, ``--workers 2`` by default) on a free local port, and drives it from several client
processes, each posting prebuilt SOAP 1.1 envelopes with a ``requests`` session.  In the same
run, one after the other, it measures:

* ``GetServerTime``: an unauthenticated no-op, the **baseline** (HTTP, gunicorn, the WSGI guard,
  spyne's XSD validation and serialisation, no database);
* ``Authenticate``: a signed request (HMAC-SHA256) exchanged for a session key.  Every call
  needs a fresh nonce and signature, so each client precomputes them before the clock starts;
  each call writes a session, a replay-cache entry and an audit event;
* ``WhoAmI`` with the ``AuthHeader/sessionToken`` SOAP header: an authenticated no-op, one
  session lookup;
* ``WhoAmI`` with a WS-Security X.509 signature (zeep's ``BinarySignature``, RSA-SHA256 and
  SHA-256, and a Timestamp): certificate lookup, XML-signature verification and a replay-cache
  insert.  The replay cache refuses a signature seen before, so every call needs its own
  envelope: the clients sign them (zeep + xmlsec) before the clock starts.

Figures: calls/s (successful calls ÷ the phase's wall time), p50 and p99 latency of one call as
the client sees it, and the ratio of calls/s to the baseline.  The client processes share the
machine with the server: on a small machine, absolute figures are a floor, ratios are the point.

Usage::

    python bench/auth.py [--seconds 5] [--concurrency 8] [--workers 2]
    python bench/auth.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test

With ``--database-url`` pointing at PostgreSQL, the run works in a schema of its own
(``esb_bench_<random>``, set through the connection's ``search_path``) and drops it at the end.

A benchmark prints numbers; it never fails on them (exit status 0 unless something errors).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import math
import multiprocessing
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

_REPO = Path(__file__).resolve().parent.parent
if str(_REPO) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(_REPO))

NS = "urn:lgsp-esb:auth:1"
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
HEADERS = {"Content-Type": "text/xml; charset=utf-8"}
WSS_APPLICATION = "QLVB WS-Security (bench)"
WSS_AGENCY = "000.00.00.H30"


@dataclass(frozen=True)
class Phase:
    key: str
    label: str
    soap_action: str
    marker: bytes  # present in every successful response


PHASES = (
    Phase("baseline", "GetServerTime (no auth, baseline)", "GetServerTime", b"GetServerTimeResult"),
    Phase("authenticate", "Authenticate (HMAC-SHA256)", "Authenticate", b"sessionToken"),
    Phase("session", "WhoAmI + AuthHeader session key", "WhoAmI", b"WhoAmIResult"),
    Phase("wsse", "WhoAmI + WS-Security X.509", "WhoAmI", b"WhoAmIResult"),
)


@dataclass(frozen=True)
class ClientConfig:
    """What every client process needs to build its requests (picklable)."""

    url: str
    access_key: str
    secret_key: str
    key_path: str
    cert_path: str


@dataclass
class Outcome:
    """One client's share of a phase."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str | None = None
    elapsed: float = 0.0
    signed_late: int = 0  # payloads made during the timed run because the pool ran out


@dataclass(frozen=True)
class Result:
    phase: Phase
    calls: int
    errors: int
    seconds: float
    p50: float
    p99: float
    signed_late: int
    first_error: str | None

    @property
    def rate(self) -> float:
        return self.calls / self.seconds if self.seconds > 0 else 0.0


# output helpers ---------------------------------------------------------------------------------


def progress(message: str) -> None:
    print(f"… {message}", file=sys.stderr, flush=True)


# envelopes --------------------------------------------------------------------------------------


def envelope(body: str, header: str = "") -> bytes:
    return (
        f'<soap:Envelope xmlns:soap="{SOAP}" xmlns:a="{NS}"><soap:Header>{header}</soap:Header>'
        f"<soap:Body>{body}</soap:Body></soap:Envelope>"
    ).encode()


def server_time_envelope() -> bytes:
    return envelope("<a:GetServerTime/>")


def authenticate_envelope(access_key: str, secret_key: str, target: str = "") -> bytes:
    """A signed Authenticate request with a fresh timestamp and nonce (docs/authentication.md)."""
    timestamp = datetime.now(UTC).isoformat(timespec="seconds")
    nonce = secrets.token_hex(16)
    message = "\n".join((access_key, timestamp, nonce, "HMAC-SHA256", target)).encode()
    signature = base64.b64encode(hmac.new(secret_key.encode(), message, hashlib.sha256).digest()).decode()
    target_element = f"<a:target>{target}</a:target>" if target else ""
    return envelope(
        f"<a:Authenticate><a:accessKey>{access_key}</a:accessKey><a:timestamp>{timestamp}</a:timestamp>"
        f"<a:nonce>{nonce}</a:nonce><a:algorithm>HMAC-SHA256</a:algorithm>"
        f"<a:signature>{signature}</a:signature>{target_element}</a:Authenticate>"
    )


def session_envelope(token: str) -> bytes:
    return envelope("<a:WhoAmI/>", f"<a:AuthHeader><a:sessionToken>{token}</a:sessionToken></a:AuthHeader>")


class WsseSigner:
    """Signs WhoAmI envelopes as an integrator would: zeep's BinarySignature after a Timestamp."""

    def __init__(self, key_path: str, cert_path: str) -> None:
        import xmlsec
        from zeep.wsse import BinarySignature, Compose

        self._compose = Compose(
            [
                _Timestamp(),
                BinarySignature(
                    key_path,
                    cert_path,
                    signature_method=xmlsec.constants.TransformRsaSha256,
                    digest_method=xmlsec.constants.TransformSha256,
                ),
            ]
        )

    def sign(self) -> bytes:
        from lxml import etree

        root = etree.Element(f"{{{SOAP}}}Envelope", nsmap={"soap": SOAP, "a": NS})
        etree.SubElement(root, f"{{{SOAP}}}Header")
        body = etree.SubElement(root, f"{{{SOAP}}}Body")
        etree.SubElement(body, f"{{{NS}}}WhoAmI")
        signed, _ = self._compose.apply(root, {})
        return bytes(etree.tostring(signed))


class _Timestamp:
    """zeep has no Timestamp plugin: wsu:Timestamp (Created, Expires = +5 min) under Security."""

    def apply(self, envelope: Any, headers: dict[str, str]) -> tuple[Any, dict[str, str]]:
        from zeep.wsse.utils import WSU, get_security_header, get_timestamp

        created = datetime.now(UTC)
        get_security_header(envelope).append(
            WSU.Timestamp(
                WSU.Created(get_timestamp(created, zulu_timestamp=True)),
                WSU.Expires(get_timestamp(created + timedelta(minutes=5), zulu_timestamp=True)),
            )
        )
        return envelope, headers

    def verify(self, envelope: Any) -> Any:
        return envelope


# the client processes ---------------------------------------------------------------------------


class _Payloads:
    """The requests one client posts in a phase: prepared before the clock starts."""

    def __init__(self, prepared: list[bytes], make: Callable[[], bytes] | None) -> None:
        self.prepared = prepared
        self.make = make  # None: the same payload every time
        self.index = 0
        self.made_late = 0

    def __len__(self) -> int:
        return len(self.prepared)

    def next(self) -> bytes:
        if self.make is None:
            return self.prepared[0]
        if self.index < len(self.prepared):
            self.index += 1
            return self.prepared[self.index - 1]
        self.made_late += 1
        return self.make()


def _prepare(phase: str, config: ClientConfig, pool: int, state: dict[str, Any]) -> _Payloads:
    import requests

    if phase == "baseline":
        return _Payloads([server_time_envelope()], None)
    if phase == "authenticate":

        def make() -> bytes:
            return authenticate_envelope(config.access_key, config.secret_key)

        return _Payloads([make() for _ in range(pool)], make)
    if phase == "session":
        response = requests.post(
            config.url,
            data=authenticate_envelope(config.access_key, config.secret_key),
            headers={**HEADERS, "SOAPAction": '"Authenticate"'},
            timeout=30,
        )
        token = _between(response.content, b"sessionToken>", b"</")
        if response.status_code != 200 or token is None:
            raise RuntimeError(f"could not open a session: HTTP {response.status_code} {response.text[:300]}")
        return _Payloads([session_envelope(token.decode())], None)
    if phase == "wsse":
        signer = state.get("signer")
        if signer is None:
            signer = state["signer"] = WsseSigner(config.key_path, config.cert_path)
        return _Payloads([signer.sign() for _ in range(pool)], signer.sign)
    raise ValueError(phase)


def _between(data: bytes, start: bytes, end: bytes) -> bytes | None:
    begin = data.find(start)
    if begin < 0:
        return None
    begin += len(start)
    stop = data.find(end, begin)
    return data[begin:stop] if stop > begin else None


def client_main(index: int, config: ClientConfig, conn: Connection, counters: Any, barrier: Any) -> None:
    """One client process: prepare a phase when told, wait for the others, post until the deadline."""
    import requests

    http = requests.Session()
    state: dict[str, Any] = {}
    while True:
        command = conn.recv()
        if command is None:
            return
        phase_key, seconds, pool = command
        phase = next(p for p in PHASES if p.key == phase_key)
        try:
            payloads = _prepare(phase_key, config, pool, state)
        except Exception:  # noqa: BLE001 - reported to the parent, which stops the run
            conn.send(("error", traceback.format_exc()))
            return
        conn.send(("ready", len(payloads)))
        barrier.wait()
        outcome = Outcome()
        headers = {**HEADERS, "SOAPAction": f'"{phase.soap_action}"'}
        start = time.perf_counter()
        deadline = start + seconds
        end = start
        while end < deadline:
            data = payloads.next()
            sent = time.perf_counter()
            try:
                response = http.post(config.url, data=data, headers=headers, timeout=60)
                ok = response.status_code == 200 and phase.marker in response.content
                detail = f"HTTP {response.status_code}: {response.text[:400]}"
            except requests.RequestException as exc:
                ok, detail = False, f"{type(exc).__name__}: {exc}"
            end = time.perf_counter()
            if ok:
                outcome.latencies.append(end - sent)
                counters[index] += 1
            else:
                outcome.errors += 1
                outcome.first_error = outcome.first_error or detail
        outcome.elapsed = end - start
        outcome.signed_late = payloads.made_late
        conn.send(("done", outcome))


class Clients:
    """``concurrency`` client processes, kept for the whole run."""

    def __init__(self, concurrency: int, configs: Sequence[ClientConfig]) -> None:
        context = multiprocessing.get_context("spawn")
        self.counters = context.RawArray("q", concurrency)
        self.barrier = context.Barrier(concurrency + 1)
        self.connections: list[Connection] = []
        self.processes: list[Any] = []
        for index in range(concurrency):
            parent, child = context.Pipe()
            process = context.Process(
                target=client_main,
                args=(index, configs[index % len(configs)], child, self.counters, self.barrier),
                daemon=True,
            )
            process.start()
            self.connections.append(parent)
            self.processes.append(process)

    def run(self, phase: Phase, seconds: float, pool: int) -> Result:
        for connection in self.connections:
            connection.send((phase.key, seconds, pool))
        for connection in self.connections:
            kind, value = connection.recv()
            if kind == "error":
                self.barrier.abort()
                raise RuntimeError(f"a client failed to prepare {phase.key}:\n{value}")
        for index in range(len(self.counters)):
            self.counters[index] = 0
        self.barrier.wait()
        started = time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds:
            time.sleep(min(1.0, max(0.05, seconds - elapsed)))
            calls = sum(self.counters)
            shown = min(time.perf_counter() - started, seconds)
            progress(f"{phase.label}: {shown:4.1f}/{seconds:g} s, {calls:,} calls ({calls / shown:,.0f}/s)")
        outcomes: list[Outcome] = []
        for connection in self.connections:
            kind, value = connection.recv()
            outcomes.append(value)
        latencies = sorted(x for o in outcomes for x in o.latencies)
        return Result(
            phase=phase,
            calls=len(latencies),
            errors=sum(o.errors for o in outcomes),
            seconds=max(o.elapsed for o in outcomes),
            p50=_percentile(latencies, 50),
            p99=_percentile(latencies, 99),
            signed_late=sum(o.signed_late for o in outcomes),
            first_error=next((o.first_error for o in outcomes if o.first_error), None),
        )

    def close(self) -> None:
        for connection in self.connections:
            with suppress(OSError):
                connection.send(None)
        for process in self.processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()


def _percentile(sorted_values: Sequence[float], percent: float) -> float:
    """Nearest-rank percentile; NaN when there are no values."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(percent / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


# database, seed and server ----------------------------------------------------------------------


@contextmanager
def bench_database(database_url: str | None, data_dir: Path) -> Iterator[tuple[str, str]]:
    """(URL the server uses, description): SQLite in ``data_dir``, or a throw-away PostgreSQL schema."""
    if not database_url:
        yield f"sqlite:///{data_dir / 'esb.sqlite3'}", "SQLite (WAL) in a temporary directory"
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        raise SystemExit("--database-url: only PostgreSQL URLs are supported (SQLite is the default)")
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    schema = f"esb_bench_{secrets.token_hex(4)}"
    admin = create_engine(url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        scoped = url.update_query_dict({"options": f"-csearch_path={schema}"})
        yield scoped.render_as_string(hide_password=False), f"PostgreSQL, schema {schema} (dropped after)"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed RSA-2048 certificate and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "qlvb-bench.haugiang.gov.vn")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = directory / "bench.key.pem", directory / "bench.cert.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def seed(database_url: str, data_dir: Path, cert_path: Path) -> list[tuple[str, str]]:
    """Migrate, register the demo agencies and the WS-Security application; (accessKey, secretKey)s."""
    from esb.pipeline.demo_seed import seed_demo
    from esb.settings import Settings
    from esb.wiring import build_runtime

    runtime = build_runtime(Settings(data_dir=data_dir, database_url=database_url))
    try:
        credentials = seed_demo(runtime.registration)
        runtime.registration.register_application(
            WSS_AGENCY, WSS_APPLICATION, certificate=cert_path.read_bytes()
        )
    finally:
        runtime.database.dispose()
    return [(c.accessKey, c.secretKey) for c in credentials]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def gunicorn_server(command: list[str], env: dict[str, str], base: str, log_path: Path) -> Iterator[Any]:
    """Start ``command`` (a gunicorn master), wait for ``/healthz``; yields the process, stops it after."""
    import requests

    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{command[2]} exited with {process.returncode}:\n{_tail(log_path)}")
            try:
                if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not become healthy within 60 s:\n{_tail(log_path)}")
            time.sleep(0.2)
        yield process
    finally:
        process.terminate()  # gunicorn: graceful stop of the master and its workers
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def server(database_url: str, data_dir: Path, workers: int, log_path: Path) -> Iterator[str]:
    """``esb serve`` on a free port; yields the base URL, stops the server at the end."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESB_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(_REPO), env.get("PYTHONPATH"))))
    command = [
        sys.executable,
        "-m",
        "esb",
        "serve",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--data-dir",
        str(data_dir),
        "--database-url",
        database_url,
    ]
    with gunicorn_server(command, env, base, log_path):
        yield base


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"


# report -----------------------------------------------------------------------------------------

TABLE_HEADERS = ["call", "calls/s", "p50 latency", "p99 latency", "vs baseline", "errors"]


def _ms(seconds: float) -> str:
    if math.isnan(seconds):
        return "—"
    ms = seconds * 1000
    return f"{ms:.2f} ms" if ms < 10 else f"{ms:.1f} ms" if ms < 100 else f"{ms:,.0f} ms"


def _cells(result: Result, baseline: Result) -> list[str]:
    ratio = result.rate / baseline.rate if baseline.rate else math.nan
    return [
        result.phase.label,
        f"{result.rate:,.0f}",
        _ms(result.p50),
        _ms(result.p99),
        f"{ratio:.2f}×",
        f"{result.errors:,}" if result.errors else "0",
    ]


def render(results: Sequence[Result], title: str) -> None:
    baseline = results[0]
    print_table(title, TABLE_HEADERS, [_cells(r, baseline) for r in results])


def print_table(
    title: str,
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    left: int = 1,
    width: int = 120,
    wrap_labels: bool = False,
) -> None:
    """A rich table (plain columns without rich): the first ``left`` columns left-aligned."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(title)
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
        print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
        print("  ".join("-" * w for w in widths))
        for row in rows:
            print(
                "  ".join(
                    c.ljust(w) if i < left else c.rjust(w)
                    for i, (c, w) in enumerate(zip(row, widths, strict=True))
                )
            )
        print()
        return
    table = Table(title=title)
    for i, header in enumerate(headers):
        label = i < left
        table.add_column(header, justify="left" if label else "right", no_wrap=not (label and wrap_labels))
    for row in rows:
        table.add_row(*row)
    Console(width=width).print(table)


# main -------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each phase (default 5)")
    parser.add_argument("--concurrency", type=int, default=8, help="client processes (default 8)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument(
        "--database-url", help="PostgreSQL URL (a throw-away schema is used); default SQLite in a temp dir"
    )
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="untimed GetServerTime calls first (s, default 1)"
    )
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.concurrency < 1 or args.workers < 1:
        parser.error("--seconds, --concurrency and --workers must be positive")

    started = time.perf_counter()
    data_dir = Path(tempfile.mkdtemp(prefix="esb-bench-auth-"))
    try:
        with bench_database(args.database_url, data_dir) as (database_url, database_label):
            progress(f"database: {database_label}")
            key_path, cert_path = make_certificate(data_dir)
            progress("migrating and seeding the demo agencies, applications and keys …")
            credentials = seed(database_url, data_dir, cert_path)
            progress(f"starting esb serve with {args.workers} gunicorn worker(s) …")
            with server(database_url, data_dir, args.workers, data_dir / "server.log") as base:
                url = f"{base}/soap/Auth"
                configs = [
                    ClientConfig(url, access_key, secret_key, str(key_path), str(cert_path))
                    for access_key, secret_key in credentials
                ]
                progress(f"serving at {base}; starting {args.concurrency} client processes …")
                clients = Clients(args.concurrency, configs)
                try:
                    results = run_phases(clients, args)
                finally:
                    clients.close()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)

    print()
    title = (
        f"Authentication over HTTP: {args.concurrency} client processes, {args.workers} gunicorn "
        f"workers, {args.seconds:g} s per call, {'PostgreSQL' if args.database_url else 'SQLite'}"
    )
    render(results, title)
    print(
        "calls/s: successful calls ÷ wall time of the phase; latency: one call as a client sees it "
        "(queueing included).\n"
        "vs baseline: calls/s ÷ GetServerTime calls/s in this run (1.00× = as fast as the no-op).\n"
        f"clients and server share this machine ({os.cpu_count()} CPUs); "
        "gunicorn sync workers, one TCP connection per call."
    )
    for result in results:
        if result.signed_late:
            print(f"{result.phase.label}: {result.signed_late:,} payloads made during the run (pool ran out)")
        if result.first_error:
            print(f"{result.phase.label}: first error: {result.first_error}")
    print(f"total time {time.perf_counter() - started:.1f} s")
    return 0


def run_phases(clients: Clients, args: argparse.Namespace) -> list[Result]:
    by_key = {phase.key: phase for phase in PHASES}
    if args.warmup > 0:
        progress(f"warm-up: {args.warmup:g} s of GetServerTime (not reported) …")
        clients.run(by_key["baseline"], args.warmup, 1)
    results: list[Result] = []
    for phase in PHASES:
        pool = _pool_size(phase, results, args)
        if pool > 1:
            what = "WS-Security envelopes (zeep)" if phase.key == "wsse" else "signed requests"
            progress(f"{phase.label}: preparing {pool:,} {what} in each client …")
        results.append(clients.run(phase, args.seconds, pool))
    return results


def _pool_size(phase: Phase, done: Sequence[Result], args: argparse.Namespace) -> int:
    """How many one-use payloads each client prepares: the expected calls plus a margin.

    Authenticate cannot be faster than the no-op baseline, nor WS-Security than the session
    WhoAmI (which does less work), so the phase measured before bounds what is needed.
    """
    if phase.key not in ("authenticate", "wsse"):
        return 1
    bound = {"authenticate": "baseline", "wsse": "session"}[phase.key]
    rate = next(r.rate for r in done if r.phase.key == bound)
    return math.ceil(rate * float(args.seconds) * 1.2 / int(args.concurrency)) + 20


if __name__ == "__main__":
    sys.exit(main())
