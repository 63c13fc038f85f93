"""Organisation identifier codes (mã định danh) used in ``OrganId`` and related fields.

Two forms are in use:

* QCVN 102:2016, ``LLL.KK.JJ.XNN``: four segments written with the LOWEST level on the LEFT.
  ``XNN`` is level 1 (group letter + 2 digits, e.g. ``H53`` Tây Ninh), ``JJ`` level 2,
  ``KK`` level 3 and ``LLL`` (3 digits) level 4; a zero segment means "none".
  ``000.05.32.H53`` is unit 05 under unit 32 under H53.  A code is only conforming if the
  hierarchy has no gap (a non-zero level needs every level above it to be non-zero).
* QĐ 20/2020/QĐ-TTg: written top-down, starting with the level-1 code, then dot-separated
  segments of ``[0-9A-Z]{1,10}``, at most 35 characters: ``G09``, ``G09.01``, ``H55.242``,
  ``H37.DN.001``.

The level-1 codes are the same in both forms, but the lower levels are not: mapping one
form to the other needs the hub's agency list, so no function here crosses forms.

Acceptance is lenient: ``classify_organ_id`` never raises, and a nonconforming OrganId is a
warning, never a reason to reject a package.  Real data contains ``000.1137.H53``,
``01.02.G22``, ``28.22.H17``, ``14.00.W00``, ``vxp.saas.03``, ``002.00.20.H13`` and
``001.00.20.TT2``.  Generation is strict: ``make_qcvn102_code`` and ``make_qd20_code``
raise ``InvalidIdentifier``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from esb.errors import InvalidIdentifier

__all__ = [
    "LEVEL1_GROUPS",
    "QCVN102_PATTERN",
    "QD20_MAX_LENGTH",
    "QD20_PATTERN",
    "CodeForm",
    "OrganCode",
    "ancestors",
    "classify_organ_id",
    "is_conforming",
    "is_qcvn102",
    "is_qd20",
    "is_within",
    "make_qcvn102_code",
    "make_qd20_code",
    "parent_code",
]


class CodeForm(StrEnum):
    """Which identifier form a code follows."""

    QCVN102 = "qcvn102"
    QD20 = "qd20"
    NONCONFORMING = "nonconforming"


QCVN102_PATTERN: re.Pattern[str] = re.compile(r"^[0-9]{3}\.[0-9]{2}\.[0-9]{2}\.[A-Z][0-9]{2}\Z")
"""Shape of a QCVN 102 code ``LLL.KK.JJ.XNN`` (the hierarchy-gap rule is checked separately)."""

QD20_MAX_LENGTH = 35

QD20_PATTERN: re.Pattern[str] = re.compile(r"^(?=.{3,35}\Z)[A-K][0-9]{2}(?:\.[0-9A-Z]{1,10})*\Z")
"""A QĐ 20 code: level-1 ``[A-K][0-9]{2}``, then ``.``-separated ``[0-9A-Z]{1,10}`` segments, ≤ 35 chars."""

_LEVEL1_PATTERN = re.compile(r"[A-K][0-9]{2}")
_QD20_SEGMENT_PATTERN = re.compile(r"[0-9A-Z]{1,10}")

LEVEL1_GROUPS: Mapping[str, str] = MappingProxyType(
    {
        "A": "Cơ quan của Đảng (Party bodies)",
        "B": "Văn phòng Chủ tịch nước (Office of the President)",
        "C": "Cơ quan của Quốc hội (National Assembly bodies)",
        "D": "Tòa án nhân dân tối cao (Supreme People's Court)",
        "E": "Viện kiểm sát nhân dân tối cao (Supreme People's Procuracy)",
        "F": "Kiểm toán Nhà nước (State Audit Office)",
        "G": "Bộ, cơ quan ngang bộ, cơ quan thuộc Chính phủ "
        "(ministries, ministerial-level agencies, government agencies)",
        "H": "Ủy ban nhân dân tỉnh, thành phố trực thuộc trung ương (provincial People's Committees)",
        "I": "Tổ chức chính trị - xã hội trung ương (central socio-political organisations)",
        "J": "Tổ chức xã hội, xã hội - nghề nghiệp trung ương "
        "(central social and socio-professional organisations)",
        "K": "Hội đồng nhân dân tỉnh, thành phố trực thuộc trung ương (provincial People's Councils)",
    }
)
"""Level-1 group letter → group name (Vietnamese, English in parentheses)."""


@dataclass(frozen=True)
class OrganCode:
    """A classified identifier code; ``level1`` and ``level`` are None when nonconforming."""

    value: str
    form: CodeForm
    level1: str | None
    level: int | None

    @property
    def group_letter(self) -> str | None:
        """The level-1 group letter (``H`` for ``H53``), or None when nonconforming."""
        return self.level1[0] if self.level1 else None

    @property
    def group_name(self) -> str | None:
        """The name of the level-1 group, or None when nonconforming or the letter is unknown."""
        letter = self.group_letter
        return LEVEL1_GROUPS.get(letter) if letter is not None else None

    @property
    def is_conforming(self) -> bool:
        return self.form is not CodeForm.NONCONFORMING


def _qcvn102_parts(value: str) -> tuple[int, int, int, str] | None:
    """Return ``(level4, level3, level2, level1)`` of a conforming QCVN 102 code, else None."""
    if QCVN102_PATTERN.fullmatch(value) is None:
        return None
    l4, l3, l2, level1 = value.split(".")
    n4, n3, n2 = int(l4), int(l3), int(l2)
    if (n3 and not n2) or (n4 and not n3):
        return None
    return n4, n3, n2, level1


def _qcvn102_level(n4: int, n3: int, n2: int) -> int:
    return 4 if n4 else 3 if n3 else 2 if n2 else 1


def classify_organ_id(value: str) -> OrganCode:
    """Classify any string as QCVN 102, QĐ 20 or nonconforming; never raises."""
    if not isinstance(value, str):
        return OrganCode(repr(value), CodeForm.NONCONFORMING, None, None)
    text = value.strip()
    parts = _qcvn102_parts(text)
    if parts is not None:
        n4, n3, n2, level1 = parts
        return OrganCode(text, CodeForm.QCVN102, level1, _qcvn102_level(n4, n3, n2))
    if QD20_PATTERN.fullmatch(text) is not None:
        segments = text.split(".")
        return OrganCode(text, CodeForm.QD20, segments[0], len(segments))
    return OrganCode(text, CodeForm.NONCONFORMING, None, None)


def is_qcvn102(value: str) -> bool:
    return classify_organ_id(value).form is CodeForm.QCVN102


def is_qd20(value: str) -> bool:
    return classify_organ_id(value).form is CodeForm.QD20


def is_conforming(value: str) -> bool:
    """True for a conforming code of either form."""
    return classify_organ_id(value).form is not CodeForm.NONCONFORMING


def parent_code(value: str) -> str | None:
    """The parent code in the same form, or None at level 1 or when nonconforming.

    QCVN 102 zeroes the leftmost non-zero segment (``000.05.32.H53`` → ``000.00.32.H53``);
    QĐ 20 drops the last segment (``H37.DN.001`` → ``H37.DN``).
    """
    code = classify_organ_id(value)
    if code.form is CodeForm.QCVN102:
        segments = code.value.split(".")
        for i in range(3):
            if int(segments[i]):
                segments[i] = "0" * len(segments[i])
                return ".".join(segments)
        return None
    if code.form is CodeForm.QD20:
        head, sep, _ = code.value.rpartition(".")
        return head if sep else None
    return None


def ancestors(value: str) -> tuple[str, ...]:
    """All parents up to level 1, nearest first; empty at level 1 or when nonconforming."""
    chain: list[str] = []
    current = parent_code(value)
    while current is not None:
        chain.append(current)
        current = parent_code(current)
    return tuple(chain)


def is_within(value: str, ancestor: str) -> bool:
    """True if ``value`` is ``ancestor`` or lies under it (same form only; whitespace ignored)."""
    if not isinstance(value, str) or not isinstance(ancestor, str):
        return False
    code, wanted = value.strip(), ancestor.strip()
    return code == wanted or wanted in ancestors(code)


def _check_level1(level1: object) -> str:
    if not isinstance(level1, str) or _LEVEL1_PATTERN.fullmatch(level1) is None:
        raise InvalidIdentifier(
            f"level-1 code {level1!r} is not a group letter A-K followed by two digits (e.g. H53)"
        )
    return level1


def _check_number(name: str, number: object, maximum: int) -> int:
    if isinstance(number, bool) or not isinstance(number, int):
        raise InvalidIdentifier(f"{name} must be an integer, got {number!r}")
    if not 0 <= number <= maximum:
        raise InvalidIdentifier(f"{name} must be between 0 and {maximum}, got {number}")
    return number


def make_qcvn102_code(level1: str, level2: int = 0, level3: int = 0, level4: int = 0) -> str:
    """Build a QCVN 102 code ``LLL.KK.JJ.XNN``; raise ``InvalidIdentifier`` on bad input.

    ``level2``/``level3`` are 0..99, ``level4`` 0..999; 0 means none, and a level may only
    be set if the level above it is.
    """
    l1 = _check_level1(level1)
    n2 = _check_number("level2", level2, 99)
    n3 = _check_number("level3", level3, 99)
    n4 = _check_number("level4", level4, 999)
    if n3 and not n2:
        raise InvalidIdentifier(f"level3 {n3} needs a level-2 unit, but level2 is 0")
    if n4 and not n3:
        raise InvalidIdentifier(f"level4 {n4} needs a level-3 unit, but level3 is 0")
    return f"{n4:03d}.{n3:02d}.{n2:02d}.{l1}"


def make_qd20_code(level1: str, *segments: str) -> str:
    """Build a QĐ 20 code ``XNN[.segment...]``; raise ``InvalidIdentifier`` on bad input."""
    parts = [_check_level1(level1)]
    for i, segment in enumerate(segments, start=1):
        if not isinstance(segment, str) or _QD20_SEGMENT_PATTERN.fullmatch(segment) is None:
            raise InvalidIdentifier(
                f"segment {i} {segment!r} is not 1 to 10 characters of 0-9 and upper-case A-Z"
            )
        parts.append(segment)
    code = ".".join(parts)
    if len(code) > QD20_MAX_LENGTH:
        raise InvalidIdentifier(
            f"QĐ 20 code is {len(code)} characters long; the maximum is {QD20_MAX_LENGTH}"
        )
    return code
