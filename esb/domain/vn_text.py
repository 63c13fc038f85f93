"""Vietnamese text as the directory search compares it: folded, tokenised, abbreviations expanded.

* **Folding** removes diacritics (``Ủy ban`` → ``uy ban``, ``Đồng`` → ``dong``) and lowercases,
  so that a query typed without tone marks finds names written with them.
* **Tokens** are the words of the folded text.  Punctuation separates words, except inside a
  run of letters joined by ``&``, ``-``, ``.`` or ``/`` (``TT&TT``, ``LĐ-TB&XH``, ``Tp.HCM``):
  such a run is first looked up as one abbreviation (``tttt``, ``ldtbxh``), and only split
  into its parts when it is not one.
* **Abbreviations** (:data:`ABBREVIATIONS`, data rather than code) are replaced by the words
  they stand for, on names and on queries alike, so ``UBND tỉnh Tây Ninh`` and ``Ủy ban nhân
  dân tỉnh Tây Ninh`` give the same tokens.  An abbreviation that is also an ordinary word
  (``CA`` công an / ``cà``) is only expanded when written in capitals.
* **Stop words** (:data:`STOP_WORDS`: ``và``) are dropped: ``Sở Thông tin Truyền thông`` and
  ``Sở Thông tin và Truyền thông`` are the same name to a person typing.
* **Acronyms**: :func:`acronyms` gives, for every word of a name, the initials of the words
  from there on (``so thong tin truyen thong`` → ``sttt…``, ``tttt``, ``ttt``…), so that an
  abbreviation missing from the table, made of the initials of consecutive words, still
  matches (``STTTT``, ``TTCNTT``).

Pure functions, standard library only.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from functools import lru_cache
from types import MappingProxyType

__all__ = [
    "ABBREVIATIONS",
    "ACRONYM_MAX",
    "STOP_WORDS",
    "acronyms",
    "fold",
    "tokens",
]

ACRONYM_MAX = 8
"""Initials kept per acronym: enough for ``ttcntttt`` (Trung tâm Công nghệ thông tin và Truyền thông)."""

STOP_WORDS: frozenset[str] = frozenset({"va"})
"""Folded words ignored on both sides of a comparison."""

# Folded, compacted abbreviation (letters and digits only) → the words it stands for.
ABBREVIATIONS: Mapping[str, str] = MappingProxyType(
    {
        # People's Committees and Councils
        "ubnd": "uy ban nhan dan",
        "hdnd": "hoi dong nhan dan",
        "ubmttq": "uy ban mat tran to quoc",
        "mttq": "mat tran to quoc",
        # Departments (sở) and ministries (bộ) by their usual short forms
        "tttt": "thong tin truyen thong",
        "gddt": "giao duc dao tao",
        "khdt": "ke hoach dau tu",
        "khcn": "khoa hoc cong nghe",
        "tnmt": "tai nguyen moi truong",
        "ldtbxh": "lao dong thuong binh xa hoi",
        "nnptnt": "nong nghiep phat trien nong thon",
        "vhttdl": "van hoa the thao du lich",
        "vhtt": "van hoa thong tin",
        "gtvt": "giao thong van tai",
        "bhxh": "bao hiem xa hoi",
        "cntt": "cong nghe thong tin",
        "nhnn": "ngan hang nha nuoc",
        "vks": "vien kiem sat",
        "vksnd": "vien kiem sat nhan dan",
        "tand": "toa an nhan dan",
        # Places and kinds of unit
        "tp": "thanh pho",
        "tx": "thi xa",
        "tt": "thi tran",
        "vp": "van phong",
        "ca": "cong an",
        "bql": "ban quan ly",
        "bqlda": "ban quan ly du an",
        "thcs": "trung hoc co so",
        "thpt": "trung hoc pho thong",
        "th": "tieu hoc",
        "mn": "mam non",
        "ttyt": "trung tam y te",
        "hcm": "ho chi minh",
    }
)

# Abbreviations that are also ordinary words once folded: expanded only when written in capitals.
_CAPITALS_ONLY: frozenset[str] = frozenset({"ca", "tt", "th", "mn", "tx"})

_JOINERS = "&-./"
_CHUNK = re.compile(r"[0-9A-Za-z&\-./]+")
_PART = re.compile(r"[0-9A-Za-z]+")


def _fold_table() -> dict[int, str]:
    """Precomposed Latin letters with diacritics → their base letter (``ệ`` → ``e``, ``Đ`` → ``D``)."""
    table: dict[int, str] = {ord("đ"): "d", ord("Đ"): "D"}
    for codepoint in range(0x00C0, 0x2000):
        char = chr(codepoint)
        base = "".join(c for c in unicodedata.normalize("NFD", char) if not unicodedata.combining(c))
        if base != char and len(base) == 1 and base.isascii():
            table[codepoint] = base
    return table


_FOLD = _fold_table()


def strip_marks(text: str) -> str:
    """``text`` without diacritics, case kept (``Ủy ban`` → ``Uy ban``, ``Đà`` → ``Da``)."""
    if not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)  # decomposed input: compose, then fold
    folded = text.translate(_FOLD)
    if not folded.isascii():  # marks the table does not know: drop whatever combining is left
        folded = "".join(c for c in unicodedata.normalize("NFD", folded) if not unicodedata.combining(c))
    return folded


def fold(text: str) -> str:
    """Lower case without diacritics; punctuation kept (``Sở TT&TT`` → ``so tt&tt``)."""
    return strip_marks(text).lower()


@lru_cache(maxsize=65536)
def _expand_chunk(chunk: str) -> tuple[str, ...]:
    """The words of one run of letters, digits and joiners, abbreviations expanded, stop words dropped."""
    return tuple(word for word in _expanded(chunk) if word not in STOP_WORDS)


def _expanded(chunk: str) -> tuple[str, ...]:
    compact = "".join(c for c in chunk if c not in _JOINERS)
    if not compact:
        return ()
    expansion = _abbreviation(compact)
    if expansion is not None:
        return expansion
    parts = _PART.findall(chunk)
    if len(parts) == 1:
        return (compact.lower(),)
    words: list[str] = []
    for part in parts:
        words.extend(_abbreviation(part) or (part.lower(),))
    return tuple(words)


def _abbreviation(compact: str) -> tuple[str, ...] | None:
    lowered = compact.lower()
    expansion = ABBREVIATIONS.get(lowered)
    if expansion is None:
        return None
    if lowered in _CAPITALS_ONLY and not compact.isupper():
        return None
    return tuple(expansion.split())


def tokens(text: str) -> list[str]:
    """The folded words of ``text``: abbreviations expanded, stop words dropped.

    ``"Sở TT&TT tỉnh Hậu Giang"`` → ``["so", "thong", "tin", "truyen", "thong", "tinh", "hau", "giang"]``.
    """
    words: list[str] = []
    for chunk in _CHUNK.findall(strip_marks(text)):
        words.extend(_expand_chunk(chunk))
    return words


def acronyms(words: Sequence[str], *, longest: int = ACRONYM_MAX) -> list[str]:
    """For each word, the initials of it and the words after it (at most ``longest``); 2 letters or more.

    ``["so", "thong", "tin", "truyen", "thong"]`` → ``["stttt", "tttt", "ttt", "tt"]``.
    """
    initials = "".join(word[0] for word in words)
    return [initials[i : i + longest] for i in range(len(initials) - 1)]
