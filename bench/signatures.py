#!/usr/bin/env python3
"""Benchmark: signing and verifying edXML packages, ours against bare python-xmlsec, and peak memory.

For a ≈5 KiB and a ≈1 MiB package (one attachment of random bytes, written by
:func:`esb.xml_processing.edxml_writer.write_package`) it measures, in the same run and
interleaved, on the same bytes:

* ``ours``: what the hub and ``esb sign``/``esb verify`` run.
  :func:`esb.security.package_signature.sign_package` (hardened parse, the checks on
  the package, xmlsec, the chain added to KeyInfo, the canonical writer with its SHA-256) with a
  :class:`~esb.security.signing_key.SigningKey` loaded once; and
  :func:`esb.security.package_signature.verify_package` with a real
  :class:`~esb.security.trust_store.TrustStore` (root CA anchor, issuing CA, its CRL): parse,
  placeholder and structure checks, xmlsec, then the certificate chain and the CRL.
* ``bare``: the least any code can do with python-xmlsec: ``etree.fromstring`` (no entities,
  no network, ``huge_tree``), ``xmlsec.template`` (sign) or a ``find`` of the Signature
  (verify), a ``SignatureContext`` given a key loaded once, ``ctx.sign``/``ctx.verify``, and
  (sign) ``etree.tostring``.  No trust decision, no checks, no chain.

Both verify the same package, signed once by ours (the bare verify checks that it verifies).
Speed is the median of interleaved repetitions; the verdict line compares our verify with the
bare one (target: ours ≥ 0.8 × bare in operations per second).

Then peak memory for a large package: a realistic edoc with one 75 MiB attachment (100 MiB of
base64, a package of about 105 MB) is written streaming into a temporary directory, and each of
``sign_package`` (file path in, file path out) and ``verify_package`` (file path) runs once in a
fresh interpreter (this script with ``--child``), after a warm-up on a small package.  The
kernel's peak counter (VmHWM) is reset just before the call (``/proc/self/clear_refs``); growth
is the peak minus the RSS just before, reported as a multiple of the package size (target
below 1.5×).

``--breakdown`` times each step of our verify on its own (bare clock, medians), next to a bare
lxml parse and the bare verify; ``--profile N`` runs N more of our verifies of each size under
cProfile and prints the functions that cost most.

Usage::

    python bench/signatures.py [--sizes 5k,1m] [--large-mib 75] [--quick] [--breakdown] [--profile 200]

A benchmark prints numbers; it never fails on them (exit status 0 unless something errors).
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

_BENCH = Path(__file__).resolve().parent
_REPO = _BENCH.parent
if str(_REPO) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(_REPO))

import xmlsec  # noqa: E402
from auth import print_table, progress  # noqa: E402 - bench/auth.py, beside this script
from cryptography.hazmat.primitives.serialization import Encoding  # noqa: E402
from lxml import etree  # noqa: E402

from esb.domain.signatures import Verdict  # noqa: E402
from esb.security.package_signature import sign_package, verify_package  # noqa: E402
from esb.security.pki import write_demo_pki  # noqa: E402
from esb.security.signing_key import SigningKey  # noqa: E402
from esb.security.trust_store import TrustStore  # noqa: E402

KiB = 1024
MiB = 1024 * KiB
VERIFY_TARGET = 0.8  # our verify ≥ 0.8 × bare xmlsec, in operations per second
GROWTH_LIMIT = 1.5  # peak growth below 1.5 × the package size
SENDER = "000.00.01.H53"
RECIPIENT = "000.00.00.H30"
EDXML = "{http://www.mic.gov.vn/TBT/QCVN_102_2016}"
DS = "{http://www.w3.org/2000/09/xmldsig#}"
OPERATIONS = ("sign", "verify")
MODES = ("ours", "bare")
MODE_LABELS = {"ours": "ours", "bare": "bare xmlsec"}
_C = xmlsec.constants


@dataclass(frozen=True)
class SizeSpec:
    key: str
    target: int  # package bytes, about
    repetitions: int
    quick_repetitions: int


SIZES = {
    "5k": SizeSpec("5k", 5 * KiB, 1000, 100),
    "1m": SizeSpec("1m", 1 * MiB, 100, 10),
}


# output helpers ---------------------------------------------------------------------------------


def human(n: float) -> str:
    """Binary units, switching at 1000 of the smaller one."""
    if abs(n) >= 1000 * KiB:
        return f"{n / MiB:.1f} MiB"
    if abs(n) >= 1000:
        return f"{n / KiB:.1f} KiB"
    return f"{n:.0f} B"


def milliseconds(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.3f} ms" if ms < 1 else f"{ms:.2f} ms" if ms < 10 else f"{ms:.1f} ms"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import ssl

    import cryptography

    lxml_version = ".".join(map(str, etree.LXML_VERSION[:3]))
    libxml2 = ".".join(map(str, etree.LIBXML_VERSION))
    libxmlsec = ".".join(map(str, xmlsec.get_libxmlsec_version()))
    return (
        f"{cpu}, {os.cpu_count()} CPUs; Python {platform.python_version()}; lxml {lxml_version} "
        f"(libxml2 {libxml2}); python-xmlsec {xmlsec.__version__} (libxmlsec1 {libxmlsec}); "
        f"cryptography {cryptography.__version__}; {ssl.OPENSSL_VERSION}"
    )


# keys, trust and packages -----------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    key_file: Path
    cert_file: Path  # the signer's certificate, then the issuing CA
    trust_dir: Path


def make_pki(work: Path) -> Pki:
    """The demo PKI of ``esb pki demo``: root CA (anchor), issuing CA with its CRL, a signer."""
    written = write_demo_pki(
        work / "pki",
        [(SENDER, "Văn phòng UBND tỉnh Tây Ninh")],
        now=datetime.now(UTC),
        hub_organ_id="000.00.00.H53",
    )
    return Pki(written.agency_keys[SENDER], written.agency_certificates[SENDER], written.trust_dir)


def write_package_file(path: Path, attachment: Path) -> int:
    """A strict edoc whose one attachment is the file ``attachment`` (streamed, never in memory)."""
    from esb.domain.package_spec import package_from_spec
    from esb.pipeline.demo_packages import edoc_spec
    from esb.xml_processing.edxml_writer import write_package

    spec = edoc_spec(
        SENDER,
        [RECIPIENT],
        number="2491",
        promulgated=date.today(),
        subject="Hồ sơ quét kèm công văn (benchmark chữ ký số)",
        attachment_name="ho-so-quet.pdf",
        content_type="application/pdf",
    )
    built = package_from_spec(spec, now=datetime.now(UTC))
    files = {content_id: attachment for content_id, _ in built.attachment_files}
    with path.open("wb") as out:
        return write_package(built.package, out, files=files, append_trace=built.sender_trace).size


def write_random(path: Path, size: int) -> None:
    with path.open("wb") as out:
        left = size
        while left:
            chunk = os.urandom(min(left, MiB))
            out.write(chunk)
            left -= len(chunk)


def build_package(work: Path, name: str, *, attachment_bytes: int) -> Path:
    attachment = work / f"{name}.bin"
    write_random(attachment, attachment_bytes)
    path = work / f"{name}.edxml"
    write_package_file(path, attachment)
    attachment.unlink()
    return path


def build_sized(work: Path, spec: SizeSpec) -> bytes:
    """An unsigned package of about ``spec.target`` bytes."""
    probe = build_package(work, f"probe-{spec.key}", attachment_bytes=3)  # 3 bytes → 4 base64 chars
    overhead = probe.stat().st_size - 4
    probe.unlink()
    path = build_package(work, spec.key, attachment_bytes=max(3, (spec.target - overhead) // 4 * 3))
    return path.read_bytes()


# the operations ---------------------------------------------------------------------------------


class Operations:
    """Our sign and verify, and bare python-xmlsec's, each with its key loaded once."""

    def __init__(self, pki: Pki) -> None:
        self.key = SigningKey.from_files(pki.key_file, pki.cert_file)
        self.trust = TrustStore.from_directory(pki.trust_dir)
        self.now = datetime.now(UTC)
        self.parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)
        self.bare_sign_key = self.key.xmlsec_key  # private key with its certificate loaded into it
        self.bare_verify_key = xmlsec.Key.from_memory(
            self.key.certificate.public_bytes(Encoding.DER), _C.KeyDataFormatCertDer
        )

    # ours
    def sign_ours(self, package: bytes) -> bytes:
        out = io.BytesIO()
        sign_package(package, out, key=self.key)
        return out.getvalue()

    def verify_ours(self, package: bytes) -> object:
        found = verify_package(package, trust=self.trust, at=self.now)
        if found.verdict is not Verdict.VALID:
            raise RuntimeError(f"our verify: {found.verdict.value} ({found.reason}: {found.message})")
        return found

    # bare
    def sign_bare(self, package: bytes) -> bytes:
        root = etree.fromstring(package, self.parser)
        header = root.find(f"{EDXML}edXMLEnvelope/{EDXML}edXMLHeader")
        signature = xmlsec.template.create(root, _C.TransformExclC14N, _C.TransformRsaSha256)
        header.append(signature)
        reference = xmlsec.template.add_reference(signature, _C.TransformSha256, uri="")
        xmlsec.template.add_transform(reference, _C.TransformEnveloped)
        xmlsec.template.add_transform(reference, _C.TransformExclC14N)
        xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(signature))
        context = xmlsec.SignatureContext()
        context.key = self.bare_sign_key
        context.sign(signature)
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8")

    def verify_bare(self, package: bytes) -> object:
        root = etree.fromstring(package, self.parser)
        signature = root.find(f"{EDXML}edXMLEnvelope/{EDXML}edXMLHeader/{DS}Signature")
        context = xmlsec.SignatureContext()
        context.key = self.bare_verify_key
        context.verify(signature)  # raises xmlsec.Error when it does not verify
        return root

    def of(self, operation: str, mode: str) -> Callable[[bytes], object]:
        return {
            ("sign", "ours"): self.sign_ours,
            ("sign", "bare"): self.sign_bare,
            ("verify", "ours"): self.verify_ours,
            ("verify", "bare"): self.verify_bare,
        }[(operation, mode)]


# speed ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    size: SizeSpec
    package_size: int
    operation: str
    mode: str
    median: float
    samples: int


def measure(
    ops: Operations, spec: SizeSpec, unsigned: bytes, signed: bytes, repetitions: int
) -> list[Timing]:
    """Median seconds per (operation, mode); the four alternate, in turn reversed, every repetition."""
    inputs = {"sign": unsigned, "verify": signed}
    pairs = [(operation, mode) for operation in OPERATIONS for mode in MODES]
    for operation, mode in pairs:  # warm-up: lazy imports, first allocations, caches
        ops.of(operation, mode)(inputs[operation])
    times: dict[tuple[str, str], list[float]] = {pair: [] for pair in pairs}
    gc.collect()
    step = max(1, repetitions // 5)
    for i in range(repetitions):
        for operation, mode in pairs if i % 2 == 0 else list(reversed(pairs)):
            run = ops.of(operation, mode)
            data = inputs[operation]
            start = time.perf_counter()
            result = run(data)
            times[(operation, mode)].append(time.perf_counter() - start)
            del result
        if (i + 1) % step == 0 and i + 1 < repetitions:
            progress(f"{spec.key}: {i + 1}/{repetitions} repetitions")
    return [
        Timing(spec, len(unsigned), operation, mode, statistics.median(samples), len(samples))
        for (operation, mode), samples in times.items()
    ]


def _stage_calls(ops: Operations, signed: bytes) -> list[tuple[str, Callable[[], object]]]:
    """The steps of our verify, each callable on its own (private functions: skipped when renamed)."""
    from esb.security import package_signature as ps
    from esb.security import xml_signature as xs
    from esb.xml_processing import parsing

    stages: list[tuple[str, Callable[[], object]]] = []
    parse = getattr(ps, "_parse", None)
    within = getattr(parsing, "_within", None)
    prolog = getattr(parsing, "_plain_prolog", None)
    if parse is None:
        return stages
    limits = parsing.XmlLimits()
    root = parse(signed, limits)
    header = root.find(f"{EDXML}edXMLEnvelope/{EDXML}edXMLHeader")
    signature = header.find(f"{DS}Signature") if header is not None else None
    if signature is None:
        return stages
    parts = xs.read_signature(signature)
    stages.append(("hardened parse (ps._parse), all of it", lambda: parse(signed, limits)))
    if len(signed) <= getattr(parsing, "FAST_PARSE_MAX_BYTES", -1) and within and prolog:
        tree = etree.fromstring(signed, parsing.hardened_parser())
        long_text = len(signed) > limits.max_text_chars
        stages += [
            ("  of which: libxml2 into a tree", lambda: etree.fromstring(signed, parsing.hardened_parser())),
            (
                "  of which: prolog + limit checks",
                lambda: (
                    prolog(signed),
                    within(tree, limits, long_text=long_text, long_text_in="ContentTransferEncoded"),
                ),
            ),
        ]
    samples = ps.SAMPLE_SIGNATURE_VALUES
    stages += [
        ("placeholder checks", lambda: xs.find_placeholder(signature, sample_values=samples)),
        ("structure + algorithms + certificates", lambda: xs.read_signature(signature)),
        ("xmlsec verify (key from the certificate)", lambda: xs.verify_signature(parts)),
        (
            "trust: chain + CRL (TrustStore.check)",
            lambda: ops.trust.check(parts.leaf, untrusted_intermediates=parts.other_certificates, at=ops.now),
        ),
        (
            "report: signer, fingerprints, base64 certs",
            lambda: (
                xs.signer_info(parts.leaf),
                [xs.certificate_sha256(c) for c in parts.certificates],
                [base64.b64encode(c.public_bytes(Encoding.DER)) for c in parts.certificates],
            ),
        ),
    ]
    return stages


def breakdown(ops: Operations, spec: SizeSpec, signed: bytes, repetitions: int) -> None:
    """Median time of each step of our verify, run on its own, next to bare lxml and bare xmlsec."""
    rows: list[tuple[str, Callable[[], object]]] = [
        ("verify_package, whole", lambda: ops.verify_ours(signed)),
        *_stage_calls(ops, signed),
        ("bare: lxml fromstring only", lambda: etree.fromstring(signed, ops.parser)),
        ("bare: fromstring + find + ctx.verify", lambda: ops.verify_bare(signed)),
    ]
    times: dict[str, list[float]] = {name: [] for name, _ in rows}
    for _, call in rows:
        call()
    for _ in range(repetitions):
        for name, call in rows:
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    whole = statistics.median(times[rows[0][0]])
    cells = []
    for name, _ in rows:
        median = statistics.median(times[name])
        share = "" if name.startswith("bare") else f"{median / whole:.0%}"
        cells.append([name, milliseconds(median), share])
    print()
    print_table(
        f"Where our verify's time goes, {human(len(signed))} signed package (each step alone, medians)",
        ["step", "ms", "of ours"],
        cells,
    )


def profile_verify(ops: Operations, spec: SizeSpec, signed: bytes, calls: int, top: int) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        ops.verify_ours(signed)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    print(f"\ncProfile of {calls} verify_package calls, {spec.key} package: by total time")
    stats.sort_stats("tottime").print_stats(top)
    print(_trim_profile(out.getvalue()))
    out.seek(0)
    out.truncate()
    print(f"cProfile of {calls} verify_package calls, {spec.key} package: by cumulative time")
    stats.sort_stats("cumulative").print_stats(top)
    print(_trim_profile(out.getvalue()))


def _trim_profile(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls")), 0)
    return "\n".join(line.replace(str(_REPO) + "/", "") for line in lines[start:])


# memory (child process) -------------------------------------------------------------------------

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_bytes(field: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * KiB
    raise RuntimeError(f"no {field} in {_STATUS}")


def child(operation: str, work: Path, package: Path) -> int:
    """In a fresh interpreter: warm up on a small package, then one call on ``package``; JSON out."""
    agency = work / "pki" / "agencies" / SENDER
    pki = Pki(agency / "key.pem", agency / "cert.pem", work / "pki" / "trust")
    key = SigningKey.from_files(pki.key_file, pki.cert_file)
    trust = TrustStore.from_directory(pki.trust_dir)
    now = datetime.now(UTC)
    small = work / "warm-up.edxml"
    small_signed = work / "warm-up.signed.edxml"
    sign_package(small, small_signed, key=key)
    verify_package(small_signed, trust=trust, at=now)
    gc.collect()
    try:
        _CLEAR_REFS.write_text("5")
    except OSError as exc:
        raise SystemExit(f"cannot reset the peak RSS counter ({exc}): Linux ≥ 4.0 is needed") from None
    baseline = _status_bytes("VmRSS")
    started = time.perf_counter()
    result: dict[str, Any] = {}
    if operation == "sign":
        signed = sign_package(package, work / "large.signed.edxml", key=key)
        result["output_size"] = signed.size
    else:
        found = verify_package(package, trust=trust, at=now)
        result["verdict"] = f"{found.verdict.value} ({found.reason})"
    seconds = time.perf_counter() - started
    peak = _status_bytes("VmHWM")
    print(json.dumps({"baseline": baseline, "peak": peak, "seconds": seconds, **result}))
    return 0


@dataclass(frozen=True)
class Memory:
    operation: str
    package_size: int
    baseline: int
    peak: int
    seconds: float
    note: str

    @property
    def growth(self) -> int:
        return max(0, self.peak - self.baseline)

    @property
    def ratio(self) -> float:
        return self.growth / self.package_size


def measure_memory(operation: str, work: Path, package: Path) -> Memory:
    # our own script with our own arguments, no shell (S603 is ignored for bench/ in ruff.toml)
    completed = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", operation, str(work), str(package)],
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"memory child ({operation}) failed:\n{completed.stderr}")
    values = json.loads(completed.stdout.strip().splitlines()[-1])
    note = values.get("verdict") or f"wrote {values['output_size']:,} bytes"
    return Memory(
        operation,
        package.stat().st_size,
        int(values["baseline"]),
        int(values["peak"]),
        float(values["seconds"]),
        str(note),
    )


def large_package(work: Path, attachment_mib: int) -> Path:
    progress(f"writing a package with one {attachment_mib} MiB attachment (streaming) …")
    started = time.perf_counter()
    path = build_package(work, "large", attachment_bytes=attachment_mib * MiB)
    progress(f"  {path.name}: {path.stat().st_size:,} bytes in {time.perf_counter() - started:.1f} s")
    build_package(work, "warm-up", attachment_bytes=3 * KiB)
    return path


# report -----------------------------------------------------------------------------------------


def speed_rows(timings: Sequence[Timing]) -> list[list[str]]:
    by_key = {(t.size.key, t.operation, t.mode): t for t in timings}
    rows = []
    for t in timings:
        bare = by_key[(t.size.key, t.operation, "bare")]
        rows.append(
            [
                f"{human(t.package_size)} {t.operation}",
                MODE_LABELS[t.mode],
                f"{1 / t.median:,.0f}" if t.median < 0.1 else f"{1 / t.median:,.1f}",
                milliseconds(t.median),
                f"{bare.median / t.median:.2f}×",
            ]
        )
    return rows


def verify_verdicts(timings: Sequence[Timing]) -> list[str]:
    lines = []
    by_key = {(t.size.key, t.operation, t.mode): t for t in timings}
    for key in dict.fromkeys(t.size.key for t in timings):
        ours, bare = by_key[(key, "verify", "ours")], by_key[(key, "verify", "bare")]
        ratio = bare.median / ours.median
        status = "OK" if ratio >= VERIFY_TARGET else "FAIL"
        lines.append(
            f"{human(ours.package_size)} verify: ours/bare = {ratio:.2f} (target ≥ {VERIFY_TARGET}): {status}"
        )
    return lines


def memory_rows(memories: Sequence[Memory]) -> list[list[str]]:
    return [
        [
            f"{m.operation}_package",
            f"{m.package_size:,} B",
            f"{m.growth / MiB:,.1f} MiB",
            f"{m.ratio:.2f}×",
            f"{m.seconds:.1f} s",
            m.note,
        ]
        for m in memories
    ]


# main -------------------------------------------------------------------------------------------


def _parse_sizes(text: str) -> list[SizeSpec]:
    keys = [k.strip().lower() for k in text.split(",") if k.strip()]
    unknown = [k for k in keys if k not in SIZES]
    if unknown:
        raise argparse.ArgumentTypeError(f"sizes are a comma-separated subset of {','.join(SIZES)}")
    return [SIZES[k] for k in dict.fromkeys(keys)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", type=_parse_sizes, default=list(SIZES.values()), help="5k,1m (default)")
    parser.add_argument(
        "--large-mib",
        type=int,
        default=75,
        help="attachment of the large package in MiB (default 75: 100 MiB of base64); 0 skips it",
    )
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N", help="profile N of our verifies per size (cProfile)"
    )
    parser.add_argument(
        "--breakdown", action="store_true", help="time each step of our verify on its own (bare clock)"
    )
    parser.add_argument("--profile-top", type=int, default=18, help="functions listed per profile")
    parser.add_argument("--child", nargs=3, metavar=("OP", "WORK", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        operation, work, path = args.child
        if operation not in OPERATIONS:
            parser.error(f"--child OP is one of {', '.join(OPERATIONS)}")
        return child(operation, Path(work), Path(path))

    started = time.perf_counter()
    progress(f"machine: {machine()}")
    timings: list[Timing] = []
    memories: list[Memory] = []
    with tempfile.TemporaryDirectory(prefix="esb-bench-signatures-") as tmp:
        work = Path(tmp)
        progress("writing a demo PKI (root CA, issuing CA and its CRL, a signing key) …")
        pki = make_pki(work)
        ops = Operations(pki)
        signed_packages: dict[str, bytes] = {}
        for spec in args.sizes:
            unsigned = build_sized(work, spec)
            signed = ops.sign_ours(unsigned)
            ops.verify_ours(signed)  # valid, or it raises
            ops.verify_bare(signed)
            progress(
                f"{spec.key}: package {len(unsigned):,} bytes ({len(signed):,} signed); "
                "ours and bare agree that it verifies"
            )
            repetitions = spec.quick_repetitions if args.quick else spec.repetitions
            progress(f"{spec.key}: timing sign and verify, ours and bare, {repetitions} interleaved rounds …")
            timings.extend(measure(ops, spec, unsigned, signed, repetitions))
            signed_packages[spec.key] = signed
        if args.large_mib > 0:
            large = large_package(work, args.large_mib)
            progress("sign_package on it in a fresh process (file in, file out) …")
            memories.append(measure_memory("sign", work, large))
            progress(f"  {memories[-1].seconds:.1f} s, peak growth {memories[-1].growth / MiB:,.1f} MiB")
            progress("verify_package on the signed file in a fresh process …")
            memories.append(measure_memory("verify", work, work / "large.signed.edxml"))
            progress(f"  {memories[-1].seconds:.1f} s, peak growth {memories[-1].growth / MiB:,.1f} MiB")

        print()
        print(f"machine: {machine()}")
        if timings:
            print()
            print_table(
                "Sign and verify: ours vs bare python-xmlsec (same bytes, same run, interleaved)",
                ["package / operation", "mode", "ops/s", "ms/op (median)", "ours/bare"],
                speed_rows(timings),
                left=2,
            )
            print(
                "ours: sign_package (parse, checks, xmlsec, chain into KeyInfo, canonical writer, SHA-256);\n"
                "      verify_package with a TrustStore (parse, placeholder and structure checks, xmlsec,\n"
                "      certificate chain, CRL).\n"
                "bare: lxml parse, xmlsec template or find, SignatureContext with a pre-loaded key,\n"
                "      ctx.sign + tostring / ctx.verify; no checks, no trust decision.\n"
                "ours/bare: bare time ÷ our time (1.00× = as fast as bare xmlsec). "
                f"Medians of {', '.join(f'{t.samples} ({t.size.key})' for t in timings[::4])} rounds."
            )
            for line in verify_verdicts(timings):
                print(line)
        if memories:
            print()
            print_table(
                "Peak memory, large package, one call in a fresh process (VmHWM reset before the call)",
                ["call", "package", "peak growth", "× package", "time", "result"],
                memory_rows(memories),
            )
            worst = max(memories, key=lambda m: m.ratio)
            status = "OK" if worst.ratio < GROWTH_LIMIT else "FAIL"
            print(f"large package: worst growth/package = {worst.ratio:.2f} (limit {GROWTH_LIMIT}): {status}")
        if args.breakdown:
            for spec in args.sizes:
                progress(f"{spec.key}: timing each step of our verify …")
                breakdown(ops, spec, signed_packages[spec.key], max(5, spec.repetitions // 5))
        if args.profile > 0:
            for spec in args.sizes:
                profile_verify(ops, spec, signed_packages[spec.key], args.profile, args.profile_top)
    print(f"total time {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
