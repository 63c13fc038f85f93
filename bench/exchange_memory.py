#!/usr/bin/env python3
"""Benchmark: server memory while a ≈200 MB package goes through the upload space and the download URL.

The script writes a package whose one attachment is ``--attachment-mib`` (150 by default) of
random bytes, streaming (``write_package`` reads the attachment from a file, so the package is
never held in memory), seeds a fresh database and starts ``esb serve`` (gunicorn, 2 workers).
It then drives the large-package path once, end to end, as two agencies would:

1. ``RequestSendSpace`` (sender);
2. ``PUT`` of the package file to the upload URL, streamed from disk by ``requests``
   (a file object and ``Content-Length``);
3. ``SendDocument(spaceId)``: the hub reads, checks, splices its TraceHeader into and stores
   the uploaded bytes, then routes the document;
4. ``GetDocument`` (recipient): a download URL, since the package is larger than
   ``ESB_INLINE_PACKAGE_BYTES``;
5. ``GET`` of the download URL, streamed to disk; the SHA-256 of what arrived is checked
   against ``X-Content-SHA256`` and GetDocument's digest;
6. ``ConfirmReceived`` with that digest.

Before step 1 the whole path runs once with a small package (warm-up), then the baseline is
taken: the resident set size (RSS) of every gunicorn worker.  A thread samples the workers'
RSS every ``--interval`` (50 ms) with psutil (``/proc/<pid>/status`` without it) and keeps
the peak of their **sum** per step.  The kernel's per-process peak (VmHWM) is reset before
step 1 (``/proc/<pid>/clear_refs``), so the peak between samples is seen as well.  Growth is
reported as a multiple of the package size: the target is below 1.5×, the aim 0.5×.

Usage::

    python bench/exchange_memory.py [--attachment-mib 150] [--workers 2]
    python bench/exchange_memory.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test

It needs about three times the package size free in the temporary directory (the package,
the hub's stored copy and the downloaded copy) and takes about a minute.

A benchmark prints numbers; it never fails on them (exit status 0 unless something errors).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

_BENCH = Path(__file__).resolve().parent
_REPO = _BENCH.parent
if str(_REPO) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(_REPO))

from auth import _between, bench_database, progress  # noqa: E402 - bench/auth.py, beside this script
from exchange import (  # noqa: E402 - bench/exchange.py, beside this script
    HEADERS,
    bus_server,
    envelope,
    open_session,
    package_template,
    parameter,
    seed,
)

KiB = 1024
MiB = 1024 * KiB
GROWTH_LIMIT = 1.5
GROWTH_AIM = 0.5
SENDER = "000.00.01.H53"
RECIPIENT = "000.00.00.H30"
CHUNK = MiB


# the package --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuiltPackage:
    path: Path
    size: int
    sha256: str
    attachment_size: int
    seconds: float


def build_large_package(work: Path, attachment_bytes: int) -> BuiltPackage:
    """Random attachment to a file, then the package to a file: neither is ever held in memory."""
    from esb.domain.package_spec import package_from_spec
    from esb.pipeline.demo_packages import edoc_spec
    from esb.xml_processing.edxml_writer import write_package

    started = time.perf_counter()
    attachment = work / "attachment.bin"
    with attachment.open("wb") as out:
        left = attachment_bytes
        while left:
            chunk = os.urandom(min(left, CHUNK))
            out.write(chunk)
            left -= len(chunk)
    spec = edoc_spec(
        SENDER,
        [RECIPIENT],
        number=str(int(time.time()) % 10**9),
        promulgated=date.today(),
        subject="Hồ sơ quét (gói tin lớn, benchmark)",
        attachment_name="ho-so-quet.bin",
        content_type="application/octet-stream",
    )
    built = package_from_spec(spec, now=datetime.now(UTC))
    files = {content_id: attachment for content_id, _ in built.attachment_files}
    path = work / "package.edxml"
    with path.open("wb") as out:
        result = write_package(built.package, out, files=files, append_trace=built.sender_trace)
    attachment.unlink()
    return BuiltPackage(path, result.size, result.sha256, attachment_bytes, time.perf_counter() - started)


# the server's memory ----------------------------------------------------------------------------


def _proc_status(pid: int, field_name: str) -> int | None:
    """A ``/proc/<pid>/status`` field in bytes (VmRSS, VmHWM), or None."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) * KiB
    except OSError:
        return None
    return None


class WorkerMemory:
    """The gunicorn workers of one master: RSS now, and a sampler that keeps the peaks."""

    def __init__(self, master_pid: int, interval: float) -> None:
        self.master_pid = master_pid
        self.interval = interval
        try:
            import psutil  # type: ignore[import-untyped, unused-ignore]

            self._psutil: Any = psutil
            self.method = f"psutil RSS, sampled every {interval * 1000:g} ms"
        except ImportError:
            self._psutil = None
            self.method = f"/proc/<pid>/status VmRSS, sampled every {interval * 1000:g} ms"
        self.step = "baseline"
        self.peaks: dict[str, int] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def workers(self) -> list[int]:
        if self._psutil is not None:
            with suppress(self._psutil.Error):
                return [child.pid for child in self._psutil.Process(self.master_pid).children()]
            return []
        try:
            with open(
                f"/proc/{self.master_pid}/task/{self.master_pid}/children", encoding="ascii"
            ) as children:
                return [int(pid) for pid in children.read().split()]
        except OSError:
            return []

    def rss(self) -> dict[int, int]:
        sizes: dict[int, int] = {}
        for pid in self.workers():
            if self._psutil is not None:
                with suppress(self._psutil.Error):
                    sizes[pid] = int(self._psutil.Process(pid).memory_info().rss)
            else:
                value = _proc_status(pid, "VmRSS")
                if value is not None:
                    sizes[pid] = value
        return sizes

    def reset_peaks(self) -> bool:
        """Reset every worker's VmHWM to its current RSS (Linux ≥ 4.0); False where not allowed."""
        done = True
        for pid in self.workers():
            try:
                with open(f"/proc/{pid}/clear_refs", "w", encoding="ascii") as clear:
                    clear.write("5")
            except OSError:
                done = False
        return done

    def high_water(self) -> dict[int, int]:
        return {pid: value for pid in self.workers() if (value := _proc_status(pid, "VmHWM")) is not None}

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss-sampler")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            total = sum(self.rss().values())
            self.samples += 1
            step = self.step
            if total > self.peaks.get(step, 0):
                self.peaks[step] = total
            self._stop.wait(self.interval)


# the steps --------------------------------------------------------------------------------------


@dataclass
class Step:
    key: str
    label: str
    seconds: float = 0.0
    bytes_moved: int = 0
    peak_growth: int = 0
    note: str = ""


@dataclass
class Flow:
    steps: list[Step] = field(default_factory=list)
    delivered_size: int = 0
    delivered_sha256: str = ""


def soap(http: Any, base: str, action: str, body: str, token: str, timeout: float = 600) -> bytes:
    response = http.post(
        f"{base}/soap/DocumentExchange",
        data=envelope(body, token),
        headers={**HEADERS, "SOAPAction": f'"{action}"'},
        timeout=timeout,
    )
    if response.status_code != 200:
        raise RuntimeError(f"{action}: HTTP {response.status_code}: {response.text[:600]}")
    return bytes(response.content)


def space_request(subject: str) -> str:
    """RequestSendSpace's Body for one recipient; element names read from the service (they vary)."""
    from esb.soap.exchange_service import ExchangeService

    names = list(ExchangeService.public_methods["RequestSendSpace"].in_message._type_info)
    recipient = parameter("RequestSendSpace", "recipient")
    if "/" in recipient:
        outer, inner = recipient.split("/", 1)
        recipients = f"<x:{outer}><x:{inner}>{RECIPIENT}</x:{inner}></x:{outer}>"
    else:
        recipients = f"<x:{recipient}>{RECIPIENT}</x:{recipient}>"
    values = (subject, "0", "edoc", "edXML")  # subject, priority, dataType, protocol
    rest = "".join(f"<x:{name}>{value}</x:{name}>" for name, value in zip(names[1:], values, strict=True))
    return f"<x:RequestSendSpace>{recipients}{rest}</x:RequestSendSpace>"


def send_from_space(space_id: str) -> str:
    element = parameter("SendDocument", "space")
    return f"<x:SendDocument><x:{element}>{space_id}</x:{element}></x:SendDocument>"


def _field(payload: bytes, name: str) -> str:
    value = _between(payload, f"{name}>".encode(), b"</")
    if value is None:
        raise RuntimeError(f"no {name} in {payload[:400]!r}")
    return value.decode()


def run_flow(
    base: str,
    package: Path,
    tokens: tuple[str, str],
    download_dir: Path,
    mark: Callable[[str], None],
) -> Flow:
    """The six steps; ``mark(step)`` tells the sampler which step is running."""
    import requests

    sender_token, recipient_token = tokens
    http = requests.Session()
    flow = Flow()
    size = package.stat().st_size

    @contextmanager
    def step(key: str, label: str, moved: int = 0) -> Iterator[Step]:
        record = Step(key, label, bytes_moved=moved)
        mark(key)
        started = time.perf_counter()
        yield record
        record.seconds = time.perf_counter() - started
        flow.steps.append(record)

    with step("space", "RequestSendSpace") as record:
        answer = soap(http, base, "RequestSendSpace", space_request("Hồ sơ quét (benchmark)"), sender_token)
        space_id, upload_url = _field(answer, "spaceId"), _field(answer, "uploadUrl")
        record.note = f"space {space_id[:8]}…"
    with step("upload", "PUT upload (streamed from disk)", size) as record, package.open("rb") as body:
        response = http.put(
            upload_url,
            data=body,
            headers={
                "Content-Type": "application/xml",
                "Content-Length": str(size),
                "X-Session-Token": sender_token,
            },
            timeout=600,
        )
        if response.status_code != 200:
            raise RuntimeError(f"PUT: HTTP {response.status_code}: {response.text[:600]}")
        record.note = f"{response.json()['size']:,} B received"
    with step("send", "SendDocument(spaceId): read, splice, store, route", size) as record:
        answer = soap(
            http,
            base,
            "SendDocument",
            send_from_space(space_id),
            sender_token,
        )
        hub_id = _field(answer, "hubDocumentId")
        record.note = f"state {_field(answer, 'state')}"
    with step("get", "GetDocument (recipient): download URL") as record:
        answer = soap(
            http,
            base,
            "GetDocument",
            f"<x:GetDocument><x:hubDocumentId>{hub_id}</x:hubDocumentId></x:GetDocument>",
            recipient_token,
        )
        download_url, announced = _field(answer, "downloadUrl"), _field(answer, "sha256")
        record.note = "URL issued"
    target = download_dir / "downloaded.edxml"
    digest = hashlib.sha256()
    received = 0
    with step("download", "GET download URL (streamed to disk)") as record:
        with (
            http.get(
                download_url, headers={"X-Session-Token": recipient_token}, stream=True, timeout=600
            ) as got,
            target.open("wb") as out,
        ):
            if got.status_code != 200:
                raise RuntimeError(f"download: HTTP {got.status_code}: {got.text[:600]}")
            header_sha = got.headers.get("X-Content-SHA256", "")
            for chunk in got.iter_content(CHUNK):
                digest.update(chunk)
                received += len(chunk)
                out.write(chunk)
        record.bytes_moved = received
        if digest.hexdigest() != announced or digest.hexdigest() != header_sha:
            raise RuntimeError(
                f"downloaded SHA-256 {digest.hexdigest()} differs from GetDocument {announced} "
                f"or X-Content-SHA256 {header_sha}"
            )
        record.note = f"{received:,} B, SHA-256 ok"
    with step("confirm", "ConfirmReceived(done, SHA-256)") as record:
        answer = soap(
            http,
            base,
            "ConfirmReceived",
            f"<x:ConfirmReceived><x:hubDocumentId>{hub_id}</x:hubDocumentId><x:sha256>{digest.hexdigest()}"
            "</x:sha256><x:outcome>done</x:outcome></x:ConfirmReceived>",
            recipient_token,
        )
        record.note = f"state {_field(answer, 'state')}"
    mark("after")
    flow.delivered_size = received
    flow.delivered_sha256 = digest.hexdigest()
    target.unlink(missing_ok=True)
    return flow


def warm_up(base: str, tokens: tuple[str, str], work: Path, rounds: int) -> None:
    """The same path with a small package, a few times, so both workers have loaded everything."""
    template = package_template(SENDER, RECIPIENT, 5 * KiB)
    for index in range(rounds):
        small = work / f"warm-{index}.edxml"
        small.write_bytes(template.replace(b"99999999999", f"{index + 1:011d}".encode()))
        run_flow_small(base, small, tokens, work)
        small.unlink()


def run_flow_small(base: str, package: Path, tokens: tuple[str, str], work: Path) -> None:
    """Upload, send, fetch (inline: small packages come back in GetDocument) and confirm."""
    import requests

    sender_token, recipient_token = tokens
    http = requests.Session()
    answer = soap(http, base, "RequestSendSpace", space_request("warm-up"), sender_token)
    space_id, upload_url = _field(answer, "spaceId"), _field(answer, "uploadUrl")
    with package.open("rb") as body:
        http.put(
            upload_url, data=body, headers={"X-Session-Token": sender_token}, timeout=60
        ).raise_for_status()
    answer = soap(
        http,
        base,
        "SendDocument",
        send_from_space(space_id),
        sender_token,
    )
    hub_id = _field(answer, "hubDocumentId")
    answer = soap(
        http,
        base,
        "GetDocument",
        f"<x:GetDocument><x:hubDocumentId>{hub_id}</x:hubDocumentId></x:GetDocument>",
        recipient_token,
    )
    soap(
        http,
        base,
        "ConfirmReceived",
        f"<x:ConfirmReceived><x:hubDocumentId>{hub_id}</x:hubDocumentId>"
        f"<x:sha256>{_field(answer, 'sha256')}</x:sha256><x:outcome>done</x:outcome></x:ConfirmReceived>",
        recipient_token,
    )


# report -----------------------------------------------------------------------------------------


def _mib(n: float) -> str:
    return f"{n / MiB:,.1f} MiB"


def render(
    package: BuiltPackage,
    flow: Flow,
    baseline: dict[int, int],
    high_water: dict[int, int],
    memory: WorkerMemory,
    hwm_reset: bool,
    engine: str,
) -> float:
    rows = [["build the package (client, streaming)", f"{package.seconds:.1f} s", "", "—", "—", ""]]
    for step in flow.steps:
        rate = (
            f"{step.bytes_moved / MiB / step.seconds:,.0f} MiB/s" if step.bytes_moved and step.seconds else ""
        )
        rows.append(
            [
                step.label,
                f"{step.seconds:.2f} s",
                rate,
                _mib(step.peak_growth),
                f"{step.peak_growth / package.size:.2f}×",
                step.note,
            ]
        )
    total_seconds = sum(step.seconds for step in flow.steps)
    peak = max((step.peak_growth for step in flow.steps), default=0)
    rows.append(["whole flow", f"{total_seconds:.1f} s", "", _mib(peak), f"{peak / package.size:.2f}×", ""])
    title = (
        f"Large package through the hub: {_mib(package.size)} package ({_mib(package.attachment_size)} "
        f"attachment), {len(baseline)} gunicorn workers, {engine}"
    )
    headers = ["step", "wall time", "rate", "peak RSS growth (Σ workers)", "× package", "note"]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(title)
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
        print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
        for row in rows:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    else:
        table = Table(title=title)
        for i, header in enumerate(headers):
            table.add_column(header, justify="left" if i in (0, 5) else "right", no_wrap=i != 5)
        for row in rows:
            table.add_row(*row)
        Console(width=150).print(table)
    print(
        f"baseline (after a warm-up with small packages): {', '.join(_mib(v) for v in baseline.values())} "
        f"per worker, {_mib(sum(baseline.values()))} in all; {memory.method} ({memory.samples:,} samples)."
    )
    hwm_growth = {pid: max(0, high_water.get(pid, 0) - rss) for pid, rss in baseline.items()}
    if hwm_reset and hwm_growth:
        busiest = max(hwm_growth.values())
        print(
            "kernel peak (VmHWM, reset before step 1) minus baseline, per worker: "
            + ", ".join(f"{_mib(v)} ({v / package.size:.2f}×)" for v in hwm_growth.values())
            + f"; sum {_mib(sum(hwm_growth.values()))} (an upper bound: the peaks need not coincide)."
        )
        peak = max(peak, busiest)
    else:
        print("VmHWM could not be reset (/proc/<pid>/clear_refs): only the sampled peaks are reported.")
    print(f"delivered: {flow.delivered_size:,} bytes (accepted {package.size:,} + the hub's TraceHeader)")
    return peak / package.size


# main -------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--attachment-mib", type=float, default=150.0, help="attachment size (default 150)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument(
        "--interval", type=float, default=0.05, help="RSS sampling interval, s (default 0.05)"
    )
    parser.add_argument("--timeout", type=int, default=300, help="gunicorn worker timeout, s (default 300)")
    parser.add_argument(
        "--database-url", help="PostgreSQL URL (a throw-away schema is used); default SQLite in a temp dir"
    )
    args = parser.parse_args(argv)
    if args.attachment_mib <= 0 or args.workers < 1 or args.interval <= 0:
        parser.error("--attachment-mib, --workers and --interval must be positive")

    started = time.perf_counter()
    engine = "PostgreSQL" if args.database_url else "SQLite"
    work = Path(tempfile.mkdtemp(prefix="esb-bench-memory-"))
    try:
        progress(f"writing a package with a {args.attachment_mib:g} MiB random attachment (streaming) …")
        package = build_large_package(work, int(args.attachment_mib * MiB))
        progress(f"package: {package.size:,} bytes in {package.seconds:.1f} s")
        data_dir = work / "hub"
        with bench_database(args.database_url, data_dir) as (database_url, label):
            progress(f"database: {label}; migrating and seeding …")
            credentials = seed(database_url, data_dir)
            progress(f"starting esb serve with {args.workers} worker(s) …")
            with bus_server(database_url, data_dir, args.workers, timeout=args.timeout) as (base, master):
                import requests

                http = requests.Session()
                tokens = (
                    open_session(http, base, *credentials[SENDER]),
                    open_session(http, base, *credentials[RECIPIENT]),
                )
                progress("warm-up: the same path with small packages …")
                warm_up(base, tokens, work, rounds=4 * args.workers)
                memory = WorkerMemory(master.pid, args.interval)
                time.sleep(0.5)
                baseline = memory.rss()
                hwm_reset = memory.reset_peaks()
                memory.start()
                progress(
                    f"baseline RSS: {_mib(sum(baseline.values()))} over {len(baseline)} workers; running …"
                )

                def mark(step: str) -> None:
                    memory.step = step
                    progress(f"step: {step}")

                try:
                    flow = run_flow(base, package.path, tokens, work, mark)
                    time.sleep(2 * args.interval)
                finally:
                    memory.stop()
                high_water = memory.high_water()
                base_total = sum(baseline.values())
                for step in flow.steps:
                    step.peak_growth = max(0, memory.peaks.get(step.key, base_total) - base_total)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print()
    ratio = render(package, flow, baseline, high_water, memory, hwm_reset, engine)
    verdict = "OK" if ratio < GROWTH_LIMIT else "FAIL"
    print(
        f"\n{_mib(package.size)} package: peak growth/package = {ratio:.2f} "
        f"(limit {GROWTH_LIMIT}, aim {GROWTH_AIM}): {verdict}"
    )
    print(f"total time {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
