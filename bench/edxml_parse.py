#!/usr/bin/env python3
"""Benchmark: edXML package parsing speed and peak memory, ours against a bare lxml parse.

For a ≈5 KiB package, a ≈1 MiB package and a package carrying a 100 MiB attachment (random
bytes, written by :func:`esb.xml_processing.edxml_writer.write_package`) it measures, in the
same run and interleaved:

* ``ours``: :func:`esb.xml_processing.edxml_reader.read_package` on the file (attachments
  decoded incrementally into a SHA-256, nothing extracted);
* ``bare``: ``etree.parse(path, XMLParser(huge_tree=True, resolve_entities=False,
  no_network=True))`` on the same bytes.  It builds the whole tree, base64 text node included;
  ``huge_tree`` is needed because libxml2 refuses text nodes above 10 MB otherwise (the run
  shows that too, and that ours does not need it).

Speed is the median of several repetitions (packages/s for the small package, MiB/s of
package bytes for the others).  Peak memory growth is measured in a fresh subprocess per
(size, mode): the script runs itself with ``--child MODE PATH``, takes the RSS after its
imports, parses once and reads the peak RSS.  On Linux the kernel's peak counter (VmHWM) is
reset first through ``/proc/self/clear_refs``: ``ru_maxrss`` cannot be used as is, because a
child started with vfork/exec inherits the parent's peak.

Usage::

    python bench/edxml_parse.py [--sizes 5k,1m,100m] [--quick]

A benchmark prints numbers; it never fails on them (exit status 0 unless something errors).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from lxml import etree

_REPO = Path(__file__).resolve().parent.parent
if str(_REPO) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(_REPO))

from esb.domain import edxml_model as m  # noqa: E402
from esb.domain.edxml_dates import VN_TZ  # noqa: E402
from esb.domain.edxml_enums import BusinessDocType, Priority  # noqa: E402
from esb.xml_processing.edxml_reader import read_package  # noqa: E402
from esb.xml_processing.edxml_writer import write_package  # noqa: E402
from esb.xml_processing.parsing import XmlLimits  # noqa: E402

KiB = 1024
MiB = 1024 * KiB
GROWTH_LIMIT = 1.5  # issue target: peak growth at most 1.5 × the attachment size
GROWTH_AIM = 0.5
CONTENT_ID = "bench-attachment-1"
MODES = ("ours", "bare")
MODE_LABELS = {"ours": "ours (read_package)", "bare": "bare lxml (huge_tree)"}


@dataclass(frozen=True)
class SizeSpec:
    key: str
    package_target: int | None  # the whole package is about this big …
    attachment_target: int | None  # … or the attachment is exactly this big
    repetitions: int
    quick_repetitions: int
    per_package: bool  # speed in packages/s (small packages) rather than MiB/s


SIZES = {
    "5k": SizeSpec("5k", 5 * KiB, None, 200, 50, per_package=True),
    "1m": SizeSpec("1m", 1 * MiB, None, 20, 5, per_package=False),
    "100m": SizeSpec("100m", None, 100 * MiB, 3, 1, per_package=False),
}


@dataclass(frozen=True)
class Generated:
    spec: SizeSpec
    path: Path
    package_size: int
    attachment_size: int
    attachment_sha256: str


@dataclass(frozen=True)
class Speed:
    median_seconds: float
    samples: int


@dataclass(frozen=True)
class Memory:
    baseline: int
    peak: int
    method: str

    @property
    def growth(self) -> int:
        return max(0, self.peak - self.baseline)


@dataclass(frozen=True)
class Row:
    generated: Generated
    mode: str
    speed: Speed
    bare_speed: Speed
    memory: Memory


# output helpers ---------------------------------------------------------------------------------


def progress(message: str) -> None:
    print(f"… {message}", file=sys.stderr, flush=True)


def human(n: float) -> str:
    """Binary units, switching at 1000 of the smaller one (so 1,048,573 bytes is "1.0 MiB")."""
    if abs(n) >= 1000 * KiB:
        return f"{n / MiB:.1f} MiB"
    if abs(n) >= 1000:
        return f"{n / KiB:.1f} KiB"
    return f"{n:.0f} B"


# package generation -----------------------------------------------------------------------------


def _package_model() -> m.EdocPackage:
    code = m.Code("2491", "STC-BCTC")
    promulgated = date(2026, 11, 20)
    return m.EdocPackage(
        header=m.EdocHeader(
            from_=m.Organization("000.00.11.H53", organ_name="Sở Tài chính tỉnh Tây Ninh"),
            to=(m.Organization("000.00.01.A53", organ_name="Ủy ban nhân dân tỉnh Tây Ninh"),),
            document_id=m.canonical_document_id("000.00.11.H53", promulgated, code),
            subject="Báo cáo tình hình thực hiện dự toán ngân sách nhà nước năm 2026",
            code=code,
            promulgation_info=m.PromulgationInfo(promulgated, "Tây Ninh"),
            document_type=m.DocumentType(1, "Công văn"),
            signer_info=m.SignerInfo("Nguyễn Văn A"),
            other_info=m.OtherInfo(priority=Priority.THUONG),
        ),
        trace_headers=(m.TraceHeader("000.00.11.H53", datetime(2026, 11, 20, 8, 30, tzinfo=VN_TZ)),),
        business=m.Business(BusinessDocType.NEW, reason="Văn bản điện tử mới"),
        references=(m.ManifestReference(CONTENT_ID, "report.pdf", "application/pdf"),),
        attachments=(m.Attachment(CONTENT_ID, "report.pdf", "application/pdf", m.AttachmentData(0, "")),),
    )


def _write_random(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as out:
        left = size
        while left:
            chunk = os.urandom(min(left, MiB))
            digest.update(chunk)
            out.write(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def _write(package: m.EdocPackage, attachment: Path, target: Path) -> int:
    with target.open("wb") as out:
        return write_package(package, out, files={CONTENT_ID: attachment}).size


def generate(spec: SizeSpec, work: Path, overhead: int) -> Generated:
    """Write one package; ``overhead`` is the package size minus the attachment's base64."""
    if spec.attachment_target is not None:
        attachment_size = spec.attachment_target
    else:
        assert spec.package_target is not None
        attachment_size = max(0, (spec.package_target - overhead) // 4 * 3)
    attachment = work / f"attachment-{spec.key}.bin"
    sha = _write_random(attachment, attachment_size)
    path = work / f"package-{spec.key}.xml"
    size = _write(_package_model(), attachment, path)
    attachment.unlink()
    return Generated(spec, path, size, attachment_size, sha)


def measure_overhead(work: Path) -> int:
    """Bytes of a package that are not attachment base64 (same header for every size)."""
    attachment = work / "probe.bin"
    _write_random(attachment, 3)  # 3 bytes → 4 base64 characters
    probe = work / "probe.xml"
    size = _write(_package_model(), attachment, probe)
    attachment.unlink()
    probe.unlink()
    return size - 4


# the two parsers --------------------------------------------------------------------------------


def _limits_for(path: Path) -> XmlLimits:
    default = XmlLimits()
    return XmlLimits(max_bytes=max(default.max_bytes, path.stat().st_size + 1))


def parse_ours(path: Path) -> object:
    return read_package(path, limits=_limits_for(path))


def bare_parser(*, huge_tree: bool = True) -> etree.XMLParser:
    return etree.XMLParser(huge_tree=huge_tree, resolve_entities=False, no_network=True)


def parse_bare(path: Path) -> object:
    return etree.parse(str(path), bare_parser())


PARSERS: dict[str, Callable[[Path], object]] = {"ours": parse_ours, "bare": parse_bare}


def check_ours(generated: Generated) -> None:
    """One untimed read whose result is compared with what was written."""
    result = read_package(generated.path, limits=_limits_for(generated.path))
    package = result.package
    if not isinstance(package, m.EdocPackage) or len(package.attachments) != 1:
        raise RuntimeError(f"{generated.path.name}: read back as something else than a one-attachment edoc")
    data = package.attachments[0].data
    if (data.size, data.sha256) != (generated.attachment_size, generated.attachment_sha256):
        raise RuntimeError(f"{generated.path.name}: the attachment read back differs from the one written")
    if result.size != generated.package_size:
        raise RuntimeError(f"{generated.path.name}: read {result.size} bytes, wrote {generated.package_size}")


def default_parser_outcome(path: Path) -> str | None:
    """None when lxml's parser *without* huge_tree accepts the file, else its error message."""
    try:
        etree.parse(str(path), bare_parser(huge_tree=False))
    except etree.XMLSyntaxError as exc:
        return str(exc)
    return None


# speed ------------------------------------------------------------------------------------------


def measure_speed(path: Path, repetitions: int) -> dict[str, Speed]:
    """Median time per mode; the modes alternate (and swap order) so both see the same machine."""
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    for mode in MODES:  # warm-up: page cache, lazy imports, first allocations
        PARSERS[mode](path)
    gc.collect()
    for i in range(repetitions):
        for mode in MODES if i % 2 == 0 else tuple(reversed(MODES)):
            parse = PARSERS[mode]
            start = time.perf_counter()
            result = parse(path)
            times[mode].append(time.perf_counter() - start)
            del result
    return {mode: Speed(statistics.median(samples), len(samples)) for mode, samples in times.items()}


# memory (child process) -------------------------------------------------------------------------

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * KiB
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter (Linux ≥ 4.0); False where that is not possible."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return _status_kib("VmHWM") is not None


class _Sampler:
    """Fallback when VmHWM cannot be reset: poll the RSS with psutil every millisecond."""

    def __init__(self) -> None:
        import psutil  # type: ignore[import-untyped]  # optional; types-psutil is not a dependency

        self._process = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        return int(self._process.memory_info().rss)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(0.001)

    def __enter__(self) -> _Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


def child(mode: str, path: Path) -> int:
    """Run in a fresh interpreter: one parse, then print baseline and peak RSS as JSON."""
    parse = PARSERS[mode]
    gc.collect()
    if _reset_peak():
        baseline = _status_kib("VmRSS") or 0
        result = parse(path)
        memory = Memory(baseline, _status_kib("VmHWM") or 0, "VmHWM")
    else:
        try:
            sampler = _Sampler()
        except ImportError:
            # ru_maxrss is KiB on Linux, bytes on macOS; it may include an inherited peak.
            scale = 1 if sys.platform == "darwin" else KiB
            baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
            result = parse(path)
            memory = Memory(baseline, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale, "ru_maxrss")
        else:
            baseline = sampler.rss()
            with sampler:
                result = parse(path)
            memory = Memory(baseline, sampler.peak, "psutil")
    del result
    print(json.dumps({"baseline": memory.baseline, "peak": memory.peak, "method": memory.method}))
    return 0


def measure_memory(mode: str, path: Path) -> Memory:
    # our own script with our own arguments, no shell (S603 is ignored for bench/ in ruff.toml)
    completed = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", mode, str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"memory child ({mode}, {path.name}) failed:\n{completed.stderr}")
    values = json.loads(completed.stdout.strip().splitlines()[-1])
    return Memory(int(values["baseline"]), int(values["peak"]), str(values["method"]))


# report -----------------------------------------------------------------------------------------


def _milliseconds(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.2f} ms" if ms < 10 else f"{ms:.1f} ms" if ms < 100 else f"{ms:,.0f} ms"


def _speed_text(row: Row) -> str:
    seconds = row.speed.median_seconds
    if row.generated.spec.per_package:
        return f"{1 / seconds:,.0f} packages/s ({_milliseconds(seconds)})"
    return f"{row.generated.package_size / MiB / seconds:,.1f} MiB/s ({_milliseconds(seconds)})"


def _cells(row: Row) -> list[str]:
    ratio = row.bare_speed.median_seconds / row.speed.median_seconds
    return [
        human(row.generated.package_size),
        human(row.generated.attachment_size),
        MODE_LABELS[row.mode],
        _speed_text(row),
        f"{ratio:.2f}×",
        human(row.memory.growth),
        f"{row.memory.growth / row.generated.attachment_size:.2f}×" if row.generated.attachment_size else "—",
    ]


HEADERS = [
    "package",
    "attachment",
    "mode",
    "speed (median)",
    "speed vs bare",
    "peak growth",
    "growth/attachment",
]


def render(rows: Sequence[Row]) -> None:
    cells = [_cells(row) for row in rows]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(HEADERS)]
        print("  ".join(h.ljust(w) for h, w in zip(HEADERS, widths, strict=True)))
        print("  ".join("-" * w for w in widths))
        for line in cells:
            print(
                "  ".join(
                    c.rjust(w) if i != 2 else c.ljust(w)
                    for i, (c, w) in enumerate(zip(line, widths, strict=True))
                )
            )
        return
    table = Table(title="edXML package parsing: ours vs bare lxml (same bytes, same run)")
    for i, header in enumerate(HEADERS):
        table.add_column(header, justify="left" if i == 2 else "right", no_wrap=True)
    for index, (row, line) in enumerate(zip(rows, cells, strict=True)):
        last_of_size = index + 1 == len(rows) or rows[index + 1].generated is not row.generated
        table.add_row(*line, end_section=last_of_size)
    Console(width=max(120, len(HEADERS) * 20)).print(table)


def verdict(rows: Sequence[Row]) -> str:
    big = [r for r in rows if r.mode == "ours" and r.generated.spec.key == "100m"]
    if not big:
        return "100 MB: not measured (add 100m to --sizes for the verdict)"
    ratio = big[0].memory.growth / big[0].generated.attachment_size
    status = "OK" if ratio <= GROWTH_LIMIT else "FAIL"
    return f"100 MB: growth/attachment = {ratio:.2f} (limit {GROWTH_LIMIT}, aim {GROWTH_AIM}): {status}"


# main -------------------------------------------------------------------------------------------


def _parse_sizes(text: str) -> list[SizeSpec]:
    keys = [k.strip().lower() for k in text.split(",") if k.strip()]
    unknown = [k for k in keys if k not in SIZES]
    if unknown or not keys:
        raise argparse.ArgumentTypeError(f"sizes are a comma-separated subset of {','.join(SIZES)}")
    return [SIZES[k] for k in dict.fromkeys(keys)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--sizes", type=_parse_sizes, default=list(SIZES.values()), help="e.g. 5k,1m,100m (default)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="fewer repetitions (a smoke run, noisier numbers)"
    )
    parser.add_argument("--child", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        mode, path = args.child
        if mode not in PARSERS:
            parser.error(f"--child MODE is one of {', '.join(PARSERS)}")
        return child(mode, Path(path))

    sizes: list[SizeSpec] = args.sizes
    started = time.perf_counter()
    rows: list[Row] = []
    refusals: list[tuple[Generated, str | None]] = []
    with tempfile.TemporaryDirectory(prefix="esb-bench-") as tmp:
        work = Path(tmp)
        overhead = measure_overhead(work)
        generated: list[Generated] = []
        for spec in sizes:
            progress(f"generating the {spec.key} package with write_package …")
            item = generate(spec, work, overhead)
            progress(
                f"  {item.path.name}: package {human(item.package_size)} ({item.package_size:,} bytes), "
                f"attachment {human(item.attachment_size)} ({item.attachment_size:,} bytes)"
            )
            generated.append(item)
        for item in generated:
            spec = item.spec
            repetitions = spec.quick_repetitions if args.quick else spec.repetitions
            progress(f"{spec.key}: checking read_package's result against what was written …")
            check_ours(item)
            progress(f"{spec.key}: timing ours and bare lxml, {repetitions} interleaved repetitions each …")
            speeds = measure_speed(item.path, repetitions)
            memories: dict[str, Memory] = {}
            for mode in MODES:
                progress(f"{spec.key}: peak memory of {MODE_LABELS[mode]} in a fresh process …")
                memories[mode] = measure_memory(mode, item.path)
            progress(f"{spec.key}: lxml's parser without huge_tree …")
            refusals.append((item, default_parser_outcome(item.path)))
            rows.extend(Row(item, mode, speeds[mode], speeds["bare"], memories[mode]) for mode in MODES)

    print()
    render(rows)
    methods = sorted({r.memory.method for r in rows})
    print(
        "speed: median time per parse of the package file (page cache warm); MiB/s counts package bytes.\n"
        "speed vs bare: bare lxml time ÷ our time (1.00× = as fast as a bare parse, 0.25× = 4× slower).\n"
        "peak growth: peak RSS minus RSS after imports, one parse in a fresh process"
        f" ({', '.join(methods)}).\n"
        "bare lxml holds the whole tree, base64 text included; ours keeps the header only and hashes the\n"
        "attachment as it streams past (growth/attachment is only meaningful for large attachments)."
    )
    print()
    for item, refusal in refusals:
        label = f"{human(item.package_size)} package"
        if refusal is None:
            print(f"lxml without huge_tree, {label}: parses; ours: parses")
        else:
            print(f"lxml without huge_tree, {label}: FAILS ({refusal}); ours: parses (no huge_tree needed)")
    print(verdict(rows))
    print(f"total time {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
