"""Finding agencies in the directory by identifier code or by Vietnamese name, in memory.

A :class:`DirectoryIndex` is built from :class:`DirectoryEntry` values (the registry's
agencies) and answers :meth:`DirectoryIndex.search` in a few milliseconds at 120,000
agencies, within one process (bench/directory.py measures it).

**What matches.** A query that looks like a code (one word with a digit or a dot) is looked
up as an identifier code in any of its three forms (QCVN 102, QĐ 20, former code): exact,
then as a prefix, then the subtree below it in the code hierarchy (QCVN 102 codes are
written lowest level on the left: ``000.05.32.H53`` is under ``000.00.32.H53``, itself
under ``000.00.00.H53``).  Any query is also matched against names: every word of the query
must be a word of the name (the last one may be the start of a word), compared without
diacritics and with abbreviations expanded (:mod:`esb.domain.vn_text`); a word that is no
word of any name may also be the initials of consecutive words (``STTTT``).

**Ranking.** Exact code, code prefix (by level, then code), subtree; then names: the exact
name, a name starting with the query, all words in the query's order, all words in any
order; ties go to the higher level (closer to the root), the shorter name, then the code.

**How it stays fast.** Entries are numbered in that static order (level, name length,
code), so every posting list is already sorted by rank, and a search walks candidates
best-first and stops once it has enough.  Names equal to or starting with the query come
from each level's names sorted by their folded form, walked best rank first through a
sparse table of range minima.  The other candidates come from the frequent words' bitsets
(Python ints, ANDed in one C-level operation each) or, when one condition is rare, from its
short posting list.  Broad queries are capped (:data:`SCAN_LIMIT`, :data:`EXAMINE_LIMIT`,
:data:`PREFIX_SCAN_LIMIT`): past a cap a better-ordered hit may be missed, never a wrong one
given.

**Updates.** :meth:`DirectoryIndex.updated` returns a new index in which the changed entries
(upsert by code) form a small second segment, compiled on each update, and their old
versions are left out of the main one; past :data:`OVERLAY_LIMIT` changed entries the whole
index is compiled afresh.  An index is never modified, so readers on other threads need no
lock.
"""

from __future__ import annotations

import heapq
import re
from array import array
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from esb.domain import vn_text
from esb.domain.agencies import AgencyRecord
from esb.domain.identifiers import CodeForm, classify_organ_id
from esb.domain.identifiers import parent_code as code_parent
from esb.errors import ClientError, InvalidIdentifier

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LEVEL",
    "MAX_LIMIT",
    "MAX_QUERY_LENGTH",
    "DirectoryEntry",
    "DirectoryIndex",
    "DirectoryQuery",
    "DirectoryQueryError",
    "MalformedCode",
    "MatchKind",
    "SearchHit",
    "parse_query",
]

MAX_QUERY_LENGTH = 200
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_LEVEL = 10
MAX_CODE_LENGTH = 64
UNKNOWN_LEVEL = 99  # the level of a nonconforming code (sorted after every real level)

OVERLAY_LIMIT = 2000
"""Changed entries kept beside the compiled index before it is rebuilt."""
SCAN_LIMIT = 40_000
"""Candidates a name search walks (in rank order) before it stops looking for better-ordered hits."""
EXAMINE_LIMIT = 1000
"""Candidates whose word order is checked before a name search settles for what it has."""
PREFIX_SCAN_LIMIT = 1000
"""Names starting with the query walked (best first) before the rest is left to the word scan."""
"""Candidates whose word order is checked before a name search settles for what it has."""
_SMALL_DRIVER = 2000  # a prefix or initials matching at most this many ids is listed, not checked
_DRIVER_LIST = 4096  # a list at most this long is walked rather than the bitset
_BIG_WORD = 512  # words in at least this many names have a bitset

_CODE_LIKE = re.compile(r"[0-9A-Za-z][0-9A-Za-z._\-]*")


class DirectoryQueryError(ClientError):
    """A directory search that cannot be run as asked (empty, too long, limit or level out of range)."""

    default_code = "Client.DirectoryQueryInvalid"


class MalformedCode(InvalidIdentifier):
    """A code given to the directory that is not a conforming identifier code (mã định danh)."""

    default_code = "Client.MalformedCode"


class MatchKind(StrEnum):
    """Why an agency is in the result, best first."""

    CODE = "code"
    CODE_PREFIX = "code-prefix"
    SUBTREE = "subtree"
    NAME_EXACT = "name-exact"
    NAME_PREFIX = "name-prefix"
    NAME_ORDERED = "name-ordered"
    NAME_WORDS = "name-words"


_BUCKETS: tuple[MatchKind, ...] = tuple(MatchKind)
SCORES: Mapping[MatchKind, int] = MappingProxyType(
    {kind: len(_BUCKETS) - bucket for bucket, kind in enumerate(_BUCKETS)}
)
"""Score of each kind of match: 7 for an exact code down to 1 for all words in any order."""


def level_of(code: str) -> int:
    """The level of a code in its hierarchy (1 = level-1 unit), or :data:`UNKNOWN_LEVEL`."""
    return classify_organ_id(code).level or UNKNOWN_LEVEL


@dataclass(frozen=True, slots=True)
class DirectoryEntry:
    """One agency as the directory shows it; ``level`` is derived from ``code`` when 0."""

    code: str
    name: str
    qd20_code: str | None = None
    old_code: str | None = None
    parent_code: str | None = None
    state: str = "active"
    version: int = 0
    level: int = 0

    def __post_init__(self) -> None:
        if not self.level:
            object.__setattr__(self, "level", level_of(self.code))

    @property
    def codes(self) -> tuple[str, ...]:
        """The agency's codes that are set: its own, its QĐ 20 code, its former code."""
        return tuple(c for c in (self.code, self.qd20_code, self.old_code) if c)

    @property
    def parent(self) -> str | None:
        """The parent's code: as registered, else derived from the code."""
        return self.parent_code or code_parent(self.code)

    @classmethod
    def from_record(cls, record: AgencyRecord, *, version: int = 0) -> DirectoryEntry:
        return cls(
            code=record.code,
            name=record.name,
            qd20_code=record.qd20_code,
            old_code=record.old_code,
            parent_code=record.parent_code,
            state=record.state.value,
            version=version,
        )


@dataclass(frozen=True, slots=True)
class SearchHit:
    entry: DirectoryEntry
    match: MatchKind

    @property
    def score(self) -> int:
        return SCORES[self.match]


# -- queries ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DirectoryQuery:
    """A checked search: the text, its code form and words, the filters and the limit."""

    text: str
    code: str | None  # upper-cased, when the text looks like a code
    words: tuple[str, ...]
    parent: str | None  # upper-cased conforming code
    level: int | None
    limit: int
    only: frozenset[str] | None = None  # codes, as given (onlyOnline): compared case-insensitively

    @property
    def is_empty(self) -> bool:
        return not self.words and self.code is None


def normalise_code(value: str) -> str:
    """A code as the directory compares it: trimmed, upper case."""
    return value.strip().upper()


def check_code(value: str, *, what: str = "code") -> str:
    """``value`` upper-cased if it is a conforming identifier code, else :class:`MalformedCode`."""
    text = normalise_code(value) if isinstance(value, str) else ""
    if not text or len(text) > MAX_CODE_LENGTH or classify_organ_id(text).form is CodeForm.NONCONFORMING:
        shown = value if isinstance(value, str) and len(value) <= MAX_CODE_LENGTH else "(too long)"
        raise MalformedCode(
            f"{what} {shown!r} is not an identifier code (QCVN 102 like 000.00.32.H53, or QĐ 20 like H53.32)"
        )
    return text


def parse_query(
    query: str | None,
    *,
    parent_code: str | None = None,
    level: int | None = None,
    limit: int | None = None,
    only: Iterable[str] | None = None,
) -> DirectoryQuery:
    """Check a search's inputs; raise :class:`DirectoryQueryError` or :class:`MalformedCode`."""
    text = " ".join((query or "").split())
    if len(text) > MAX_QUERY_LENGTH:
        raise DirectoryQueryError(
            f"the query is {len(text)} characters long; at most {MAX_QUERY_LENGTH} are searched",
            code="Client.DirectoryQueryTooLong",
        )
    chosen = DEFAULT_LIMIT if limit is None else limit
    if isinstance(chosen, bool) or not isinstance(chosen, int) or not 1 <= chosen <= MAX_LIMIT:
        raise DirectoryQueryError(
            f"limit must be between 1 and {MAX_LIMIT}, not {limit!r}", code="Client.DirectoryLimitInvalid"
        )
    if level is not None and (
        isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= MAX_LEVEL
    ):
        raise DirectoryQueryError(
            f"level must be between 1 and {MAX_LEVEL}, not {level!r}", code="Client.DirectoryLevelInvalid"
        )
    parent = check_code(parent_code, what="parentCode") if parent_code and parent_code.strip() else None
    code = text.upper() if " " not in text and _looks_like_code(text) else None
    words = tuple(vn_text.tokens(text))
    if not words and code is None and parent is None:
        raise DirectoryQueryError(
            "the query is empty: give a name, a code, or a parentCode to list the units under it",
            code="Client.DirectoryQueryEmpty",
        )
    return DirectoryQuery(
        text=text,
        code=code,
        words=words,
        parent=parent,
        level=level,
        limit=chosen,
        only=None if only is None else only if isinstance(only, frozenset) else frozenset(only),
    )


def _looks_like_code(text: str) -> bool:
    return (
        len(text) <= MAX_CODE_LENGTH
        and _CODE_LIKE.fullmatch(text) is not None
        and any(c.isdigit() or c == "." for c in text)
    )


# -- what searching an entry needs ----------------------------------------------------------


def _upper(code: str) -> str:
    upper = code.strip().upper()
    return code if upper == code else upper  # keep the caller's string when it is already normal


def _own_codes(entry: DirectoryEntry) -> tuple[str, ...]:
    return tuple(dict.fromkeys(_upper(c) for c in entry.codes))


def _chain(code: str, memo: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    """``code`` upper-cased, then its ancestors by the code hierarchy (``memo``: parents recur)."""
    found = memo.get(code)
    if found is None:
        parent = code_parent(code)
        found = (_upper(code),) if parent is None else (_upper(code), *_chain(parent, memo))
        memo[code] = found
    return found


def _ancestry(
    entry: DirectoryEntry, own: tuple[str, ...], memo: dict[str, tuple[str, ...]]
) -> tuple[str, ...]:
    """The codes of every unit above ``entry``: its registered parent (by default the parent by
    its code) and the units above that, and the units above its QĐ 20 code."""
    parent = entry.parent_code or code_parent(entry.code)
    above: dict[str, None] = dict.fromkeys(_chain(parent, memo)) if parent else {}
    if entry.qd20_code:
        qd20_parent = code_parent(entry.qd20_code)
        if qd20_parent:
            above.update(dict.fromkeys(_chain(qd20_parent, memo)))
    for code in own:
        above.pop(code, None)
    return tuple(above)


def _key(words: Sequence[str]) -> str:
    return " " + " ".join(words) + " "


def _initials_of(key: str) -> str:
    return _key(vn_text.acronyms(key.split()))


@dataclass(frozen=True, slots=True)
class _Term:
    """One word of the query: the last may be the start of a word; some may be initials."""

    text: str
    last: bool
    initials: bool
    padded: str  # what to find in a name's key: " word " (" word" for the last, a prefix)
    start: str  # " word": the start of a word or of initials

    @classmethod
    def of(cls, text: str, *, last: bool, initials: bool) -> _Term:
        return cls(text, last, initials, f" {text}" if last else f" {text} ", f" {text}")

    def matches(self, key: str) -> bool:
        if self.padded in key:
            return True
        return self.initials and self.start in _initials_of(key)


def _name_bucket(key: str, query_key: str, terms: Sequence[_Term]) -> int:
    """3 exact name, 4 starts with the query, 5 words in order, 6 words in any order."""
    if key == f" {query_key} ":
        return 3
    if key.startswith(f" {query_key}"):
        return 4
    return 5 if _in_order(key, terms) else 6


def _in_order(key: str, terms: Sequence[_Term]) -> bool:
    position = 0
    for term in terms:
        found = key.find(term.padded, position)
        if found < 0:
            if term.initials:
                continue  # matched by initials: no position to keep in order
            return False
        position = found + len(term.text) + 1
    return True


# -- the compiled segment ---------------------------------------------------------------------


class _Postings:
    """Word → ids (ascending arrays), a sorted vocabulary for prefixes, bitsets of frequent words."""

    def __init__(self, lists: Mapping[str, array[int]], size: int, *, bitsets: bool) -> None:
        self.vocabulary: list[str] = sorted(lists)
        self.lists: dict[str, array[int]] = dict(lists)
        self.cumulative: array[int] = array("q", [0])
        total = 0
        for word in self.vocabulary:
            total += len(lists[word])
            self.cumulative.append(total)
        self.bitsets: dict[str, int] = {}
        if bitsets:
            for word, ids in lists.items():
                if len(ids) >= _BIG_WORD:
                    self.bitsets[word] = _bitset(ids, size)

    def prefix_range(self, prefix: str) -> tuple[int, int]:
        lo = bisect_left(self.vocabulary, prefix)
        return lo, bisect_left(self.vocabulary, prefix + "\uffff", lo)

    def count(self, lo: int, hi: int) -> int:
        return self.cumulative[hi] - self.cumulative[lo]

    def union(self, lo: int, hi: int) -> set[int]:
        found: set[int] = set()
        for word in self.vocabulary[lo:hi]:
            found.update(self.lists[word])
        return found

    def has_prefix(self, prefix: str) -> bool:
        lo, hi = self.prefix_range(prefix)
        return hi > lo


def _bitset(ids: Iterable[int], size: int) -> int:
    """An int whose bit ``i`` is set for each id (``&`` of two of them is one C-level operation)."""
    bits = bytearray((size + 7) // 8)
    for i in ids:
        bits[i >> 3] |= 1 << (i & 7)
    return int.from_bytes(bits, "little")


_BITS_OF_BYTE: tuple[tuple[int, ...], ...] = tuple(
    tuple(b for b in range(8) if byte >> b & 1) for byte in range(256)
)
_NONZERO_BYTE = re.compile(rb"[^\x00]")


def _ids_in(bits: bytes) -> Iterator[int]:
    """The ids set in a little-endian bitset, ascending (zero bytes skipped by the regex engine)."""
    for found in _NONZERO_BYTE.finditer(bits):
        base = found.start() * 8
        for bit in _BITS_OF_BYTE[bits[found.start()]]:
            yield base + bit


class _RangeMinimum:
    """Ids in some order (all within ``offset..offset+len``); gives the ids at positions lo..hi
    smallest first, lazily, from a sparse table of range minima."""

    _DIRECT = 16  # ranges this short are scanned: no table rows for spans under 16

    def __init__(self, ids: array[int], offset: int) -> None:
        self.ids = ids
        self.offset = offset
        self.position = array("i", bytes(4 * len(ids)))
        for position, i in enumerate(ids):
            self.position[i - offset] = position
        self.table: dict[int, array[int]] = {}
        previous, span, k = ids, 1, 0
        while span * 2 <= len(ids):
            previous = array(
                "i", [a if a < b else b for a, b in zip(previous, previous[span:], strict=False)]
            )
            span, k = span * 2, k + 1
            if span >= self._DIRECT:  # shorter rows were only steps towards these
                self.table[k] = previous

    def _minimum(self, lo: int, hi: int) -> int:
        if hi - lo <= self._DIRECT:
            return min(self.ids[lo:hi])
        k = (hi - lo).bit_length() - 1
        row = self.table[k]
        a, b = row[lo], row[hi - (1 << k)]
        return a if a < b else b

    def ascending(self, lo: int, hi: int) -> Iterator[int]:
        """The ids at positions ``lo..hi-1``, smallest first, each in O(log n)."""
        if lo >= hi:
            return
        heap = [(self._minimum(lo, hi), lo, hi)]
        while heap:
            smallest, left, right = heapq.heappop(heap)
            yield smallest
            at = self.position[smallest - self.offset]
            if left < at:
                heapq.heappush(heap, (self._minimum(left, at), left, at))
            if at + 1 < right:
                heapq.heappush(heap, (self._minimum(at + 1, right), at + 1, right))


@dataclass(frozen=True)
class _Names:
    """The names of one level, sorted by their folded key, with a range-minimum table of ids."""

    level: int
    keys: list[str]
    ranks: _RangeMinimum

    def prefix_range(self, prefix: str) -> tuple[int, int]:
        lo = bisect_left(self.keys, prefix)
        return lo, bisect_left(self.keys, prefix + "\uffff", lo)

    def exact(self, key: str, lo: int, hi: int) -> list[int]:
        start = end = bisect_left(self.keys, key, lo, hi)
        while end < hi and self.keys[end] == key:
            end += 1
        return sorted(self.ranks.ids[start:end])


def _ids() -> array[int]:
    return array("i")


def _by_code(entry: DirectoryEntry) -> str:
    return entry.code


def _by_level_and_length(entry: DirectoryEntry) -> int:
    return entry.level << 10 | min(len(entry.name), 1023)


class _Segment:
    """Entries numbered in rank order (level, name length, code) with their posting lists.

    Built once, never changed.  Ids are ranks: a lower id is a better-ordered entry, and the
    ids of one level are contiguous, so each level's names are sorted and searched apart.
    """

    def __init__(self, entries: Iterable[DirectoryEntry]) -> None:
        ordered = sorted(entries, key=_by_code)
        ordered.sort(key=_by_level_and_length)  # stable: (level, name length, code)
        size = len(ordered)
        self.entries: list[DirectoryEntry] = ordered
        self.keys: list[str] = []
        self.level_ranges: dict[int, tuple[int, int]] = {}
        words: defaultdict[str, array[int]] = defaultdict(_ids)
        initials: defaultdict[str, array[int]] = defaultdict(_ids)
        children: defaultdict[str, array[int]] = defaultdict(_ids)
        subtree: defaultdict[str, array[int]] = defaultdict(_ids)
        level_codes: defaultdict[int, list[tuple[str, int]]] = defaultdict(list)
        memo: dict[str, tuple[str, ...]] = {}
        for i, entry in enumerate(ordered):
            tokens = vn_text.tokens(entry.name)
            self.keys.append(_key(tokens))
            start, _ = self.level_ranges.get(entry.level, (i, i))
            self.level_ranges[entry.level] = (start, i + 1)
            own = _own_codes(entry)
            codes_here = level_codes[entry.level]
            for code in own:
                codes_here.append((code, i))
            parent = entry.parent
            if parent:
                children[_upper(parent)].append(i)
            for above in _ancestry(entry, own, memo):
                subtree[above].append(i)
            for word in set(tokens):
                words[word].append(i)
            for acronym in set(vn_text.acronyms(tokens)):
                initials[acronym].append(i)
        del memo
        self.words = _Postings(words, size, bitsets=True)
        self.initials = _Postings(initials, size, bitsets=False)
        self.children: dict[str, array[int]] = dict(children)
        self.subtree: dict[str, array[int]] = dict(subtree)
        self.names: list[_Names] = []
        for level, (lo, hi) in sorted(self.level_ranges.items()):
            order = sorted(range(lo, hi), key=self.keys.__getitem__)
            keys = [self.keys[i] for i in order]
            self.names.append(_Names(level, keys, _RangeMinimum(array("i", order), lo)))
        self.level_codes: list[tuple[int, list[str], array[int]]] = []
        for level in sorted(level_codes):
            pairs = sorted(level_codes[level])
            self.level_codes.append((level, [c for c, _ in pairs], array("i", [i for _, i in pairs])))

    def __len__(self) -> int:
        return len(self.entries)

    def ids_of(self, code: str) -> list[int]:
        """Ids of the entries having ``code`` (upper-cased) as one of their codes."""
        found: list[int] = []
        for _, keys, ids in self.level_codes:
            position = bisect_left(keys, code)
            while position < len(keys) and keys[position] == code:
                found.append(ids[position])
                position += 1
        return found

    def primary_ids_of(self, code: str) -> list[int]:
        return [i for i in self.ids_of(code) if _upper(self.entries[i].code) == code]


# -- searching one segment ------------------------------------------------------------------

_SortKey = tuple[int, int, int, str]
_Hit = tuple[_SortKey, DirectoryEntry, int]  # (sort key, entry, bucket)


def _hit(entry: DirectoryEntry, bucket: int, matched: str | None = None) -> _Hit:
    if bucket == 1:  # code prefix: by level, then the code form that matched
        return (bucket, entry.level, 0, matched or entry.code), entry, bucket
    return (bucket, entry.level, len(entry.name), entry.code), entry, bucket


@dataclass(frozen=True)
class _Only:
    """The ``only`` filter of a query, resolved to one segment's ids (ascending)."""

    ids: frozenset[int]
    ordered: list[int]


class _SegmentSearch:
    """One search over a compiled segment, ``dead`` ids (changed since) left out."""

    def __init__(
        self,
        segment: _Segment,
        query: DirectoryQuery,
        terms: Sequence[_Term],
        dead: frozenset[int],
        roots: Sequence[str],
        only: _Only | None,
    ) -> None:
        self.segment = segment
        self.query = query
        self.terms = terms
        self.dead = dead
        self.roots = roots  # the codes whose subtree a code query lists
        self.seen: set[int] = set()
        self.hits: list[_Hit] = []
        self.level_range = segment.level_ranges.get(query.level, (0, 0)) if query.level else None
        self.below: array[int] | None = None
        self._below_bits: bytes | None = None
        if query.parent is not None:
            self.below = segment.subtree.get(query.parent, array("i"))
        self.only = only

    @property
    def below_bits(self) -> bytes:
        if self._below_bits is None:
            size = len(self.segment)
            self._below_bits = _bitset(self.below or (), size).to_bytes((size + 7) // 8, "little")
        return self._below_bits

    @property
    def filtered(self) -> bool:
        return self.level_range is not None or self.below is not None or self.only is not None

    def accepts(self, i: int) -> bool:
        if i in self.dead or i in self.seen:
            return False
        if self.level_range is not None and not self.level_range[0] <= i < self.level_range[1]:
            return False
        if self.below is not None and not self.below_bits[i >> 3] >> (i & 7) & 1:
            return False
        return self.only is None or i in self.only.ids

    def add(self, i: int, bucket: int, matched: str | None = None) -> None:
        self.seen.add(i)
        self.hits.append(_hit(self.segment.entries[i], bucket, matched))

    @property
    def room(self) -> int:
        return self.query.limit - len(self.hits)

    def run(self) -> list[_Hit]:
        if self.query.code is not None:
            self.codes(self.query.code)
        if self.room > 0 and self.terms:
            self.names()
        if self.query.is_empty and self.below is not None:
            self.extend(self.below, 2)
        return sorted(self.hits, key=lambda hit: hit[0])

    def extend(self, ids: Iterable[int], bucket: int) -> None:
        for i in ids:
            if self.room <= 0:
                return
            if self.accepts(i):
                self.add(i, bucket)

    # codes: exact, prefix (by level, then code), subtree

    def codes(self, code: str) -> None:
        segment = self.segment
        self.extend(sorted(segment.ids_of(code)), 0)
        for level, keys, ids in segment.level_codes:
            if self.query.level is not None and level != self.query.level:
                continue
            lo = bisect_left(keys, code)
            hi = bisect_left(keys, code + "\uffff", lo)
            for position in range(lo, hi):
                if self.room <= 0:
                    return
                i = ids[position]
                if self.accepts(i):
                    self.add(i, 1, keys[position])
        lists = [segment.subtree[root] for root in self.roots if root in segment.subtree]
        self.extend(heapq.merge(*lists) if len(lists) > 1 else (lists[0] if lists else ()), 2)

    # names: exact, starting with the query, then every word in order / in any order

    def names(self) -> None:
        query_key = " ".join(t.text for t in self.terms)
        start = f" {query_key}"
        levels = [n for n in self.segment.names if self.query.level in (None, n.level)]
        ranges = [(names, *names.prefix_range(start)) for names in levels]
        for names, lo, hi in ranges:  # every exact name first, whatever its level
            self.extend(names.exact(f" {query_key} ", lo, hi), 3)
        narrow = self._narrowest_filter()
        if narrow is not None and len(narrow) < sum(hi - lo for _, lo, hi in ranges):
            # few units under the parent (or online): test their names rather than walk the ranges
            keys = self.segment.keys
            self.extend((i for i in narrow if keys[i].startswith(start)), 4)
        else:
            visited = 0
            for names, lo, hi in ranges:  # ids of one level all precede the next level's
                for i in names.ranks.ascending(lo, hi):
                    if self.room <= 0:
                        return
                    visited += 1
                    if visited > PREFIX_SCAN_LIMIT:
                        break  # past the limit, the word scan below finds the rest in rank order
                    if self.accepts(i):
                        self.add(i, 4)
        if self.room > 0:
            self.words_in_any_order(query_key)

    def _narrowest_filter(self) -> Sequence[int] | None:
        """The shortest id list among the parent and online filters, ascending."""
        options: list[Sequence[int]] = []
        if self.below is not None:
            options.append(self.below)
        if self.only is not None:
            options.append(self.only.ordered)
        return min(options, key=len) if options else None

    def words_in_any_order(self, query_key: str) -> None:
        """Names holding every word, best rank first: in order (5) before in any order (6)."""
        plan = _Plan.make(self)
        if plan is None:
            return
        need = self.room
        ordered: list[int] = []
        unordered: list[int] = []
        examined = 0
        keys, terms, checks = self.segment.keys, self.terms, plan.checks
        filtered, dead, seen = self.filtered, self.dead, self.seen
        for visited, i in enumerate(plan.candidates()):
            if visited >= SCAN_LIMIT or examined >= EXAMINE_LIMIT:
                break
            key = keys[i]
            if checks and not all(term.matches(key) for term in checks):
                continue
            if (filtered and not self.accepts(i)) or i in dead or i in seen:
                continue
            examined += 1
            if _in_order(key, terms):
                ordered.append(i)
                if len(ordered) >= need:
                    break
            elif len(unordered) < need:
                unordered.append(i)
        for i in ordered:
            self.add(i, _name_bucket(keys[i], query_key, terms))
        for i in unordered[: need - len(ordered)]:
            self.add(i, 6)


class _Plan:
    """How a name search walks its candidates, in rank order.

    The frequent words' bitsets are ANDed (one C-level operation each).  When some condition
    has a short list of ids (a rare word, a narrow prefix, the units under a parent, the
    online agencies), that list is walked and each id tested against the bitset; otherwise the
    bits set in the bitset are walked.  Conditions that have neither are checked on the
    candidate's folded name.
    """

    def __init__(
        self, bits: bytes | None, driver: Sequence[int] | None, checks: list[_Term], size: int
    ) -> None:
        self.bits = bits
        self.driver = driver
        self.checks = checks
        self.size = size

    @classmethod
    def make(cls, search: _SegmentSearch) -> _Plan | None:
        segment = search.segment
        size = len(segment)
        bitsets: list[int] = []
        lists: list[tuple[int, int, Callable[[], Sequence[int]], _Term | None]] = []
        checks: list[_Term] = []
        for number, term in enumerate(search.terms):
            if not term.last and not term.initials:
                ids = segment.words.lists.get(term.text)
                if ids is None:
                    return None  # no name has this word
                bitset = segment.words.bitsets.get(term.text)
                if bitset is not None:
                    bitsets.append(bitset)
                else:
                    lists.append((len(ids), number, lambda ids=ids: ids, term))  # type: ignore[misc]
                continue
            if term.last:
                estimate = segment.words.count(*segment.words.prefix_range(term.text))
            else:
                estimate = len(segment.words.lists.get(term.text, ()))
            if term.initials:
                estimate += segment.initials.count(*segment.initials.prefix_range(term.text))
            if estimate == 0:
                return None
            if estimate <= _SMALL_DRIVER:
                lists.append((estimate, number, lambda term=term: sorted(_materialize(segment, term)), term))  # type: ignore[misc]
                continue
            prefix_bits = None if term.initials else _prefix_bitset(segment, term.text)
            if prefix_bits is not None:
                bitsets.append(prefix_bits)
            else:
                checks.append(term)
        if search.level_range is not None:
            lo, hi = search.level_range
            if hi <= lo:
                return None
            bitsets.append(((1 << (hi - lo)) - 1) << lo)
        if search.below is not None:
            below = search.below
            lists.append((len(below), -2, lambda: below, None))
        if search.only is not None:
            only = search.only.ordered
            lists.append((len(only), -1, lambda: only, None))
        bits = None
        if bitsets:
            combined = bitsets[0]
            for bitset in bitsets[1:]:
                combined &= bitset
            if not combined:
                return None
            bits = combined.to_bytes((size + 7) // 8, "little")
        if lists:
            lists.sort(key=lambda option: (option[0], option[1]))
            shortest, _, source, chosen = lists[0]
            checks.extend(term for _, _, _, term in lists[1:] if term is not None)
            if shortest <= _DRIVER_LIST or bits is None:
                return cls(bits, source(), checks, size)
            if chosen is not None:
                checks.append(chosen)
        return cls(bits, None, checks, size)

    def candidates(self) -> Iterator[int]:
        bits = self.bits
        if self.driver is not None:
            if bits is None:
                yield from self.driver
            else:
                for i in self.driver:
                    if bits[i >> 3] >> (i & 7) & 1:
                        yield i
        elif bits is not None:
            yield from _ids_in(bits)
        else:
            yield from range(self.size)


def _prefix_bitset(segment: _Segment, prefix: str) -> int | None:
    """The bitset of every name with a word starting with ``prefix``, if it is cheap to make:
    the frequent words' bitsets ORed, the rare words' ids (at most :data:`_DRIVER_LIST`) added."""
    words = segment.words
    lo, hi = words.prefix_range(prefix)
    combined = 0
    rare: list[array[int]] = []
    for word in words.vocabulary[lo:hi]:
        bitset = words.bitsets.get(word)
        if bitset is None:
            rare.append(words.lists[word])
        else:
            combined |= bitset
    if sum(len(ids) for ids in rare) > _DRIVER_LIST:
        return None
    if rare:
        combined |= _bitset((i for ids in rare for i in ids), len(segment))
    return combined


def _materialize(segment: _Segment, term: _Term) -> set[int]:
    if term.last:
        found = segment.words.union(*segment.words.prefix_range(term.text))
    else:
        found = set(segment.words.lists.get(term.text, ()))
    if term.initials:
        found |= segment.initials.union(*segment.initials.prefix_range(term.text))
    return found


# -- the index ------------------------------------------------------------------------------


class DirectoryIndex:
    """The directory in memory: a compiled segment, and a small one of the entries changed since.

    The changed entries (the overlay) are compiled again on each update; their codes' entries
    in the main segment are left out of every answer.  Past :data:`OVERLAY_LIMIT` of them, the
    whole index is compiled afresh.
    """

    def __init__(
        self,
        segment: _Segment,
        overlay: Mapping[str, DirectoryEntry] | None = None,
        *,
        version: int = 0,
    ) -> None:
        self._segment = segment
        self._changed: dict[str, DirectoryEntry] = dict(overlay or {})
        self._overlay = _Segment(self._changed.values()) if self._changed else None
        self._dead = frozenset(i for code in self._changed for i in segment.primary_ids_of(code))
        self._only: tuple[frozenset[str], tuple[_Only, _Only | None]] | None = None
        self.version = version

    @classmethod
    def build(cls, entries: Iterable[DirectoryEntry], *, version: int | None = None) -> DirectoryIndex:
        """An index of ``entries`` (the last of a code wins); ``version`` defaults to the newest entry's."""
        latest: dict[str, DirectoryEntry] = {}
        for entry in entries:
            latest[_upper(entry.code)] = entry
        newest = max((e.version for e in latest.values()), default=0)
        return cls(_Segment(latest.values()), version=newest if version is None else version)

    def __len__(self) -> int:
        return len(self._segment) - len(self._dead) + len(self._changed)

    @property
    def overlay_size(self) -> int:
        """Entries changed since the index was compiled (kept in the small second segment)."""
        return len(self._changed)

    def updated(self, entries: Iterable[DirectoryEntry], *, version: int | None = None) -> DirectoryIndex:
        """A new index with ``entries`` added or replaced (by code); this one is unchanged."""
        changed = dict(self._changed)
        newest = self.version
        for entry in entries:
            changed[_upper(entry.code)] = entry
            newest = max(newest, entry.version)
        chosen = newest if version is None else max(version, newest)
        if len(changed) > OVERLAY_LIMIT:
            return DirectoryIndex.build(self._merged(changed), version=chosen)
        return DirectoryIndex(self._segment, changed, version=chosen)

    def _merged(self, changed: Mapping[str, DirectoryEntry]) -> Iterator[DirectoryEntry]:
        for entry in self._segment.entries:
            if _upper(entry.code) not in changed:
                yield entry
        yield from changed.values()

    def entries(self) -> Iterator[DirectoryEntry]:
        """Every entry, the newest of each code."""
        return self._merged(self._changed)

    def _segments(self) -> Iterator[tuple[_Segment, frozenset[int]]]:
        yield self._segment, self._dead
        if self._overlay is not None:
            yield self._overlay, frozenset()

    def get(self, code: str) -> DirectoryEntry | None:
        """The agency with this code in any of its three forms (its own code first)."""
        wanted = normalise_code(code)
        changed = self._changed.get(wanted)
        if changed is not None:
            return changed
        found = [s.entries[i] for s, dead in self._segments() for i in s.ids_of(wanted) if i not in dead]
        own = [e for e in found if _upper(e.code) == wanted]
        return min(own or found, key=lambda e: (e.level, len(e.name), e.code)) if found else None

    def children(self, code: str) -> list[DirectoryEntry]:
        """The units directly under ``code``, by code."""
        wanted = normalise_code(code)
        found = [
            s.entries[i] for s, dead in self._segments() for i in s.children.get(wanted, ()) if i not in dead
        ]
        return sorted(found, key=lambda e: e.code)

    def search(
        self,
        query: str | None,
        *,
        parent_code: str | None = None,
        level: int | None = None,
        only: Iterable[str] | None = None,
        limit: int | None = None,
    ) -> list[SearchHit]:
        """Ranked hits for ``query`` (see the module's description); inputs checked by :func:`parse_query`."""
        return self.run(parse_query(query, parent_code=parent_code, level=level, limit=limit, only=only))

    def run(self, query: DirectoryQuery) -> list[SearchHit]:
        """Ranked hits for a query already checked by :func:`parse_query`."""
        terms = self._terms(query.words)
        roots: list[str] = []
        if query.code is not None:
            exact = self.get(query.code)
            own = _own_codes(exact) if exact is not None else ()
            roots = list(dict.fromkeys([query.code, *(own if query.code in own else ())]))
        only = self._resolve_only(query.only)
        hits = _SegmentSearch(self._segment, query, terms, self._dead, roots, only[0]).run()
        if self._overlay is not None:
            extra = _SegmentSearch(self._overlay, query, terms, frozenset(), roots, only[1]).run()
            hits = sorted(hits + extra, key=lambda hit: hit[0])[: query.limit]
        return [SearchHit(entry, _BUCKETS[bucket]) for _, entry, bucket in hits]

    def _terms(self, words: Sequence[str]) -> list[_Term]:
        terms = []
        vocabulary = self._segment.words
        for position, word in enumerate(words):
            last = position == len(words) - 1
            known = vocabulary.has_prefix(word) if last else word in vocabulary.lists
            terms.append(_Term.of(word, last=last, initials=len(word) >= 2 and word.isalpha() and not known))
        return terms

    def _resolve_only(self, only: frozenset[str] | None) -> tuple[_Only | None, _Only | None]:
        """The ``only`` codes as ids of each segment; the last set resolved is kept (the online
        agencies change at most once a second, and each search would otherwise redo it)."""
        if only is None:
            return None, None
        cached = self._only
        if cached is not None and cached[0] == only:
            return cached[1]
        codes = {normalise_code(code) for code in only}
        resolved: list[_Only] = []
        for segment, dead in self._segments():
            ids = frozenset(i for code in codes for i in segment.primary_ids_of(code) if i not in dead)
            resolved.append(_Only(ids, sorted(ids)))
        result = (resolved[0], resolved[1] if len(resolved) > 1 else None)
        self._only = (only, result)
        return result
