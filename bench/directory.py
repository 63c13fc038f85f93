#!/usr/bin/env python3
"""Benchmark: directory lookups (FindAgencies' search) at 120,000 agencies, in-process.

The script generates a national agency list (:func:`esb.pipeline.directory_fixture.generate_agencies`,
120,000 units by default), builds the in-memory index (:class:`esb.domain.directory_search.DirectoryIndex`)
and reports its build time and memory.  It then runs a realistic query mix, drawn at random
(from ``--seed``) from the list itself, and reports p50/p95/p99/max latency per class of
query and overall:

* codes: exact (QCVN 102, QĐ 20, former code), prefixes, a province or district code
  (exact, then its subtree);
* names: in full with diacritics, folded without them, the first words while typing (last
  word unfinished), abbreviated (``UBND``, ``Sở TT&TT``, ``Phòng GD&ĐT``), initials
  (``STTTT``), two words of the name in any order;
* filters: a name under a province (``parentCode``), at a level, only the online agencies
  (5 % of all);
* broad: one frequent word (``ubnd``, ``trường``, ``xã``) or a single letter.

The mix runs again with 1,000 changed agencies waiting in the index's overlay (searched
exhaustively until the next rebuild), the state a node is in between two compactions.

The baseline is a naive linear scan of the same index's folded names, measured in the same
run on a sample of the name queries: every name checked for every word, the matches sorted
by the same ranking.  Its ratio to the index is the point; absolute figures depend on the
machine.  Target: overall p99 ≤ 5 ms.  A benchmark prints numbers and never fails on them.

Usage::

    python bench/directory.py                  # 120,000 agencies, 300 queries per class, 3 rounds
    python bench/directory.py --count 500000   # a larger directory
    python bench/directory.py --quick          # 30,000 agencies, fewer queries
"""

from __future__ import annotations

import argparse
import gc
import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent
if str(_REPO) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(_REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from auth import print_table  # noqa: E402 - bench/auth.py, beside this script

from esb.domain import vn_text  # noqa: E402
from esb.domain.directory_search import DirectoryEntry, DirectoryIndex, parse_query  # noqa: E402
from esb.pipeline.directory_fixture import PROVINCES, generate_agencies  # noqa: E402

TARGET_P99_MS = 5.0


@dataclass(frozen=True)
class Query:
    text: str
    parent: str | None = None
    level: int | None = None
    online: bool = False


@dataclass(frozen=True)
class Measured:
    label: str
    times: list[float]  # seconds, sorted
    hits: int

    def percentile(self, percent: float) -> float:
        if not self.times:
            return math.nan
        rank = max(1, math.ceil(percent / 100 * len(self.times)))
        return self.times[rank - 1]


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


# -- the query mix ------------------------------------------------------------------------------


def query_mix(
    entries: Sequence[DirectoryEntry], per_class: int, rng: random.Random
) -> dict[str, list[Query]]:
    """Queries of each class, drawn from the directory itself."""
    with_qd20 = [e for e in entries if e.qd20_code]
    with_old = [e for e in entries if e.old_code]
    districts = [e for e in entries if e.level == 2 and e.code.startswith("000.00.3")]
    communes = [e for e in entries if e.level == 3 and "xã" in e.name]
    provinces = [(code, name, city) for code, name, city in PROVINCES]

    def sample(population: Sequence[DirectoryEntry]) -> DirectoryEntry:
        return population[rng.randrange(len(population))]

    def typing(name: str) -> str:
        words = name.split()
        cut = rng.randrange(2, max(3, len(words)))
        last = words[cut - 1]
        return " ".join([*words[: cut - 1], last[: max(1, len(last) - rng.randrange(0, 3))]])

    def abbreviated() -> str:
        _, province, city = provinces[rng.randrange(len(provinces))]
        kind = "Tp." if city else "tỉnh"
        district = sample(districts).name.split(maxsplit=3)[-1]  # "huyện Châu Thành"
        commune = sample(communes).name.split("xã", 1)[-1].strip()
        return rng.choice(
            [
                f"UBND {kind} {province}",
                f"Sở TT&TT {province}",
                f"Sở KH&ĐT {kind} {province}",
                f"Sở LĐ-TB&XH {province}",
                f"HĐND {kind} {province}",
                f"Phòng GD&ĐT {district}",
                f"UBND xã {commune}",
                f"BHXH {province}",
            ]
        )

    def initials() -> str:
        _, province, _ = provinces[rng.randrange(len(provinces))]
        return rng.choice([f"STTTT {province}", f"TTCNTT {province}", f"SGDDT {province}", "ttcntt"])

    def two_words(entry: DirectoryEntry) -> str:
        words = entry.name.split()
        picked = rng.sample(words, min(2, len(words)))
        return " ".join(vn_text.fold(w) for w in picked)

    online_pool = [e.code for e in rng.sample(list(entries), max(1, len(entries) // 20))]
    classes: dict[str, Callable[[], Query]] = {
        "code exact (3 forms)": lambda: Query(
            rng.choice(
                [sample(entries).code, sample(with_qd20).qd20_code or "", sample(with_old).old_code or ""]
            )
        ),
        "code prefix": lambda: Query(
            rng.choice([sample(with_qd20).qd20_code or "", sample(entries).code])[: rng.randrange(3, 9)]
        ),
        "code subtree": lambda: Query(rng.choice([sample(districts).code, provinces[rng.randrange(63)][0]])),
        "name, diacritics": lambda: Query(sample(entries).name),
        "name, folded": lambda: Query(vn_text.fold(sample(entries).name)),
        "name, typing": lambda: Query(typing(sample(entries).name)),
        "abbreviations": lambda: Query(abbreviated()),
        "initials": lambda: Query(initials()),
        "two words, any order": lambda: Query(two_words(sample(entries))),
        "filter: parentCode": lambda: Query(
            rng.choice(["truong", "ubnd xa", "phong", "tram y te", "cong an"]),
            parent=f"000.00.00.{provinces[rng.randrange(63)][0]}",
        ),
        "filter: level": lambda: Query(
            rng.choice(["ubnd", "so", "phong", "truong tieu hoc"]), level=rng.randrange(1, 5)
        ),
        "filter: onlyOnline": lambda: Query(rng.choice(["ubnd", "so", "truong", "cong an xa"]), online=True),
        "broad": lambda: Query(rng.choice(["ubnd", "trường", "xã", "t", "tr", "sở", "phòng"])),
    }
    mix = {label: [make() for _ in range(per_class)] for label, make in classes.items()}
    mix["filter: onlyOnline"] = [replace(q, parent=None) for q in mix["filter: onlyOnline"]]
    global ONLINE
    ONLINE = frozenset(online_pool)
    return mix


ONLINE: frozenset[str] = frozenset()


def run(index: DirectoryIndex, queries: Sequence[Query]) -> tuple[list[float], int]:
    times: list[float] = []
    hits = 0
    clock = time.perf_counter
    for query in queries:
        only = ONLINE if query.online else None
        start = clock()
        found = index.search(query.text, parent_code=query.parent, level=query.level, only=only)
        times.append(clock() - start)
        hits += len(found)
    return times, hits


def measure(index: DirectoryIndex, mix: dict[str, list[Query]], rounds: int) -> list[Measured]:
    results: list[Measured] = []
    for label, queries in mix.items():
        times: list[float] = []
        hits = 0
        run(index, queries[:20])  # warm-up: first-use caches
        for _ in range(rounds):
            round_times, round_hits = run(index, queries)
            times += round_times
            hits += round_hits
        results.append(Measured(label, sorted(times), hits // max(1, rounds * len(queries))))
    everything = sorted(t for r in results for t in r.times)
    results.append(Measured("overall", everything, sum(r.hits for r in results) // len(results)))
    return results


# -- the naive baseline ---------------------------------------------------------------------------


class NaiveScan:
    """Every folded name checked for every word, matches sorted by the same ranking: no index."""

    def __init__(self, entries: Sequence[DirectoryEntry]) -> None:
        self.entries = list(entries)
        self.names = [" " + " ".join(vn_text.tokens(e.name)) + " " for e in self.entries]

    def search(self, text: str, limit: int = 20) -> list[DirectoryEntry]:
        words = parse_query(text).words
        if not words:
            return []
        needles = [f" {w} " for w in words[:-1]] + [f" {words[-1]}"]
        found = [
            (self._bucket(name, words), e.level, len(e.name), e.code, e)
            for e, name in zip(self.entries, self.names, strict=True)
            if all(needle in name for needle in needles)
        ]
        found.sort(key=lambda row: row[:4])
        return [row[-1] for row in found[:limit]]

    @staticmethod
    def _bucket(name: str, words: Sequence[str]) -> int:
        query = " ".join(words)
        if name == f" {query} ":
            return 0
        return 1 if name.startswith(f" {query}") else 2


def baseline(naive: NaiveScan, mix: dict[str, list[Query]], sample: int) -> Measured:
    queries = [
        q
        for label in ("name, diacritics", "name, folded", "name, typing", "abbreviations")
        for q in mix[label]
    ]
    chosen = queries[:: max(1, len(queries) // sample)][:sample]
    times: list[float] = []
    hits = 0
    for query in chosen:
        start = time.perf_counter()
        hits += len(naive.search(query.text))
        times.append(time.perf_counter() - start)
    return Measured("naive linear scan (names)", sorted(times), hits // max(1, len(chosen)))


# -- report -----------------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    if math.isnan(seconds):
        return "—"
    ms = seconds * 1000
    return f"{ms:.3f} ms" if ms < 1 else f"{ms:.2f} ms" if ms < 100 else f"{ms:,.0f} ms"


def report(title: str, results: Sequence[Measured]) -> None:
    headers = ["query class", "queries", "p50", "p95", "p99", "max", "hits/query"]
    rows = [
        [
            r.label,
            f"{len(r.times):,}",
            _ms(r.percentile(50)),
            _ms(r.percentile(95)),
            _ms(r.percentile(99)),
            _ms(r.times[-1] if r.times else math.nan),
            str(r.hits),
        ]
        for r in results
    ]
    print_table(title, headers, rows, width=120)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--count", type=int, default=120_000, help="agencies in the directory (default 120,000)"
    )
    parser.add_argument("--per-class", type=int, default=300, help="queries per class (default 300)")
    parser.add_argument("--rounds", type=int, default=3, help="times the mix runs (default 3)")
    parser.add_argument("--baseline-sample", type=int, default=40, help="name queries for the naive scan")
    parser.add_argument("--seed", type=int, default=6, help="the query mix's random seed")
    parser.add_argument("--quick", action="store_true", help="30,000 agencies, 60 queries per class, 1 round")
    args = parser.parse_args(argv)
    if args.quick:
        args.count, args.per_class, args.rounds, args.baseline_sample = 30_000, 60, 1, 10

    progress(f"generating {args.count:,} agencies…")
    started = time.perf_counter()
    entries = [
        DirectoryEntry.from_record(r, version=n) for n, r in enumerate(generate_agencies(args.count), 1)
    ]
    generated = time.perf_counter() - started
    gc.collect()
    before = rss_mib()
    progress("building the index…")
    started = time.perf_counter()
    index = DirectoryIndex.build(entries)
    built = time.perf_counter() - started
    gc.collect()
    index_mib = rss_mib() - before
    progress("updating 1,000 agencies…")
    rng = random.Random(args.seed)
    changed = [
        replace(e, name=e.name + " (mới)", version=e.version + args.count) for e in rng.sample(entries, 1000)
    ]
    started = time.perf_counter()
    with_overlay = index.updated(changed)
    updated = time.perf_counter() - started

    mix = query_mix(entries, args.per_class, rng)
    progress(f"running {sum(len(q) for q in mix.values()):,} queries × {args.rounds} rounds…")
    results = measure(index, mix, args.rounds)
    overlay_results = measure(with_overlay, mix, 1)
    naive = NaiveScan(entries)
    slow = baseline(naive, mix, args.baseline_sample)
    name_classes = ("name, diacritics", "name, folded", "name, typing", "abbreviations")
    fast_names = sorted(t for r in results if r.label in name_classes for t in r.times)
    fast_hits = sum(r.hits for r in results if r.label in name_classes) // len(name_classes)
    fast = Measured("index, the same classes", fast_names, fast_hits)

    print(f"directory: {len(index):,} agencies (generated in {generated:.1f} s)")
    print(
        f"index build: {built:.2f} s; index memory (RSS growth over the build): {index_mib:.0f} MiB; "
        f"process RSS {rss_mib():.0f} MiB"
    )
    overlay = with_overlay.overlay_size
    print(f"incremental update of 1,000 agencies: {updated * 1000:.1f} ms (overlay of {overlay:,})")
    print()
    report(f"FindAgencies search, {len(index):,} agencies, in-process", results)
    report("the same mix with 1,000 changed agencies in the overlay", overlay_results[-1:])
    ratio_50 = slow.percentile(50) / fast.percentile(50) if fast.percentile(50) else math.nan
    ratio_99 = slow.percentile(99) / fast.percentile(99) if fast.percentile(99) else math.nan
    report("baseline: naive linear scan of the folded names (name queries)", [fast, slow])
    print(f"speed-up over the naive scan: ×{ratio_50:,.0f} at p50, ×{ratio_99:,.0f} at p99")
    p99 = results[-1].percentile(99) * 1000
    verdict = "OK" if p99 <= TARGET_P99_MS else "FAIL"
    overlay_p99 = overlay_results[-1].percentile(99) * 1000
    print(
        f"overall p99 = {p99:.2f} ms (target ≤ {TARGET_P99_MS:.0f} ms): {verdict}; "
        f"with the overlay: {overlay_p99:.2f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
