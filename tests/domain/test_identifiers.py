"""Tests for esb.domain.identifiers (examples from edxml-reference §2)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from esb.domain.identifiers import (
    LEVEL1_GROUPS,
    QCVN102_PATTERN,
    QD20_PATTERN,
    CodeForm,
    OrganCode,
    ancestors,
    classify_organ_id,
    is_conforming,
    is_qcvn102,
    is_qd20,
    is_within,
    make_qcvn102_code,
    make_qd20_code,
    parent_code,
)
from esb.errors import InvalidIdentifier

# (code, level1, level) for every QCVN 102 example in §2.1 and §2.3.
QCVN102_EXAMPLES = [
    ("000.00.00.H53", "H53", 1),
    ("000.00.01.H53", "H53", 2),
    ("000.01.01.H53", "H53", 3),
    ("000.00.32.H53", "H53", 2),
    ("000.05.32.H53", "H53", 3),
    ("001.01.07.H53", "H53", 4),
    ("000.00.00.G01", "G01", 1),
    ("000.00.00.G22", "G22", 1),
    ("000.00.27.G14", "G14", 2),
    ("000.00.00.H30", "H30", 1),
    ("000.00.01.A53", "A53", 2),
]

# (code, level1, level) for every QĐ 20 example in §2.2.
QD20_EXAMPLES = [
    ("G09", "G09", 1),
    ("G09.01", "G09", 2),
    ("H55.242", "H55", 2),
    ("H37.DN.001", "H37", 3),
]

# Nonconforming codes seen in real data (§2.1).
NONCONFORMING_EXAMPLES = [
    "000.1137.H53",
    "01.02.G22",
    "28.22.H17",
    "14.00.W00",
    "vxp.saas.03",
    "002.00.20.H13",  # matches the shape but skips level 3
    "001.00.20.TT2",
]


@pytest.mark.parametrize(("code", "level1", "level"), QCVN102_EXAMPLES)
def test_qcvn102_examples(code: str, level1: str, level: int) -> None:
    result = classify_organ_id(code)
    assert result == OrganCode(code, CodeForm.QCVN102, level1, level)
    assert result.group_letter == level1[0]
    assert result.group_name == LEVEL1_GROUPS[level1[0]]
    assert is_qcvn102(code)
    assert not is_qd20(code)
    assert is_conforming(code)


@pytest.mark.parametrize(("code", "level1", "level"), QD20_EXAMPLES)
def test_qd20_examples(code: str, level1: str, level: int) -> None:
    result = classify_organ_id(code)
    assert result == OrganCode(code, CodeForm.QD20, level1, level)
    assert result.group_letter == level1[0]
    assert result.group_name == LEVEL1_GROUPS[level1[0]]
    assert is_qd20(code)
    assert not is_qcvn102(code)
    assert is_conforming(code)


@pytest.mark.parametrize("code", NONCONFORMING_EXAMPLES)
def test_nonconforming_examples(code: str) -> None:
    result = classify_organ_id(code)
    assert result == OrganCode(code, CodeForm.NONCONFORMING, None, None)
    assert result.group_letter is None
    assert result.group_name is None
    assert not is_qcvn102(code)
    assert not is_qd20(code)
    assert not is_conforming(code)
    assert parent_code(code) is None
    assert ancestors(code) == ()


@pytest.mark.parametrize(
    "code",
    [
        "",
        "   ",
        "h53",
        "H53.",
        ".H53",
        "H53..01",
        "L01",
        "H5",
        "H533",
        "H53.dn",
        "H53.01234567890",
        "000.00.00.h53",
        "000.00.00.H53.01",
        "000.00.0A.H53",
        "000.05.00.H53",
        "H53." + "0." * 20 + "1",
    ],
)
def test_other_nonconforming(code: str) -> None:
    assert classify_organ_id(code).form is CodeForm.NONCONFORMING


def test_whitespace_is_stripped() -> None:
    assert classify_organ_id("  000.05.32.H53\n") == OrganCode("000.05.32.H53", CodeForm.QCVN102, "H53", 3)
    assert classify_organ_id("\tH37.DN.001 ") == OrganCode("H37.DN.001", CodeForm.QD20, "H37", 3)
    assert classify_organ_id(" vxp.saas.03 ").value == "vxp.saas.03"
    assert parent_code(" 000.05.32.H53 ") == "000.00.32.H53"


def test_trailing_newline_does_not_match_patterns() -> None:
    assert QCVN102_PATTERN.match("000.00.00.H53\n") is None
    assert QD20_PATTERN.match("H53.01\n") is None


def test_qd20_length_limit() -> None:
    longest = "H37." + ".".join(["ABCDEFGHIJ"] * 2) + ".ABCDEFGHI"  # 3 + 11 + 11 + 10 = 35
    assert len(longest) == 35
    assert is_qd20(longest)
    assert not is_qd20(longest + "J")


def test_level1_groups() -> None:
    assert sorted(LEVEL1_GROUPS) == list("ABCDEFGHIJK")
    assert "Văn phòng Chủ tịch nước" in LEVEL1_GROUPS["B"]
    assert "(" in LEVEL1_GROUPS["H"]
    assert ")" in LEVEL1_GROUPS["H"]


def test_unknown_letter_in_qcvn102_shape_has_no_group_name() -> None:
    result = classify_organ_id("000.00.00.W00")
    assert result.form is CodeForm.QCVN102
    assert result.group_letter == "W"
    assert result.group_name is None


def test_qcvn102_parent_chain_level3() -> None:
    assert parent_code("000.05.32.H53") == "000.00.32.H53"
    assert parent_code("000.00.32.H53") == "000.00.00.H53"
    assert parent_code("000.00.00.H53") is None
    assert ancestors("000.05.32.H53") == ("000.00.32.H53", "000.00.00.H53")


def test_qcvn102_parent_chain_level4() -> None:
    assert parent_code("001.01.07.H53") == "000.01.07.H53"
    assert ancestors("001.01.07.H53") == ("000.01.07.H53", "000.00.07.H53", "000.00.00.H53")


def test_qd20_parents() -> None:
    assert parent_code("H37.DN.001") == "H37.DN"
    assert parent_code("H37.DN") == "H37"
    assert parent_code("H37") is None
    assert ancestors("H37.DN.001") == ("H37.DN", "H37")
    assert ancestors("G09.01") == ("G09",)
    assert ancestors("G09") == ()


def test_is_within() -> None:
    assert is_within("000.05.32.H53", "000.05.32.H53")
    assert is_within("000.05.32.H53", "000.00.32.H53")
    assert is_within("000.05.32.H53", "000.00.00.H53")
    assert not is_within("000.05.32.H53", "000.00.01.H53")
    assert not is_within("000.00.32.H53", "000.05.32.H53")
    assert is_within("H37.DN.001", "H37")
    assert not is_within("H37.DN.001", "H37.D")
    assert not is_within("G09.01", "000.00.00.G09")  # no crossing between forms
    assert is_within("vxp.saas.03", "vxp.saas.03")
    assert not is_within("vxp.saas.03", "vxp.saas")


def test_make_round_trips() -> None:
    assert make_qcvn102_code("H53") == "000.00.00.H53"
    assert make_qcvn102_code("H53", 32) == "000.00.32.H53"
    assert make_qcvn102_code("H53", 32, 5) == "000.05.32.H53"
    assert make_qcvn102_code("H53", 7, 1, 1) == "001.01.07.H53"
    assert make_qcvn102_code("K63", 99, 99, 999) == "999.99.99.K63"
    for code, level1, level in QCVN102_EXAMPLES:
        l4, l3, l2, _ = code.split(".")
        built = make_qcvn102_code(level1, int(l2), int(l3), int(l4))
        assert built == code
        assert classify_organ_id(built).level == level
    for code, level1, _ in QD20_EXAMPLES:
        assert make_qd20_code(level1, *code.split(".")[1:]) == code


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("h53",), "level-1"),
        (("L01",), "level-1"),
        (("W00",), "level-1"),
        (("H5",), "level-1"),
        (("H533",), "level-1"),
        ((" H53",), "level-1"),
        (("H53", 100), "level2"),
        (("H53", -1), "level2"),
        (("H53", 1, 100), "level3"),
        (("H53", 1, 1, 1000), "level4"),
        (("H53", 1, 1, -1), "level4"),
        (("H53", 0, 5), "level3"),
        (("H53", 0, 0, 1), "level4"),
        (("H53", 20, 0, 2), "level4"),
        (("H53", True), "level2"),
        (("H53", "01"), "level2"),
    ],
)
def test_make_qcvn102_rejects(args: tuple[object, ...], fragment: str) -> None:
    with pytest.raises(InvalidIdentifier) as info:
        make_qcvn102_code(*args)  # type: ignore[arg-type]
    assert info.value.code == "Client.InvalidIdentifier"
    assert fragment in info.value.message


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("h37",), "level-1"),
        (("Z01",), "level-1"),
        (("H37", "dn"), "segment 1"),
        (("H37", ""), "segment 1"),
        (("H37", "DN", "A.B"), "segment 2"),
        (("H37", "ABCDEFGHIJK"), "segment 1"),
        (("H37", "Đ"), "segment 1"),
        (("H37", 1), "segment 1"),
        (("H37", *["ABCDEFGHIJ"] * 3), "maximum is 35"),
    ],
)
def test_make_qd20_rejects(args: tuple[object, ...], fragment: str) -> None:
    with pytest.raises(InvalidIdentifier) as info:
        make_qd20_code(*args)  # type: ignore[arg-type]
    assert info.value.code == "Client.InvalidIdentifier"
    assert fragment in info.value.message


LEVEL1 = st.builds(
    lambda letter, number: f"{letter}{number:02d}", st.sampled_from("ABCDEFGHIJK"), st.integers(0, 99)
)


@st.composite
def qcvn102_args(draw: st.DrawFn) -> tuple[str, int, int, int]:
    level1 = draw(LEVEL1)
    level2 = draw(st.integers(0, 99))
    level3 = draw(st.integers(1, 99)) if level2 and draw(st.booleans()) else 0
    level4 = draw(st.integers(1, 999)) if level3 and draw(st.booleans()) else 0
    return level1, level2, level3, level4


@given(qcvn102_args())
def test_make_qcvn102_properties(args: tuple[str, int, int, int]) -> None:
    level1, level2, level3, level4 = args
    code = make_qcvn102_code(level1, level2, level3, level4)
    assert QCVN102_PATTERN.fullmatch(code)
    expected_level = 4 if level4 else 3 if level3 else 2 if level2 else 1
    assert classify_organ_id(code) == OrganCode(code, CodeForm.QCVN102, level1, expected_level)
    chain = ancestors(code)
    assert len(chain) == expected_level - 1
    assert (chain[-1] if chain else code) == f"000.00.00.{level1}"
    assert all(classify_organ_id(c).level == expected_level - 1 - i for i, c in enumerate(chain))
    assert all(is_within(code, c) for c in chain)


SEGMENT = st.text(alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=10)


@given(LEVEL1, st.lists(SEGMENT, max_size=8))
def test_make_qd20_properties(level1: str, segments: list[str]) -> None:
    if len(".".join([level1, *segments])) > 35:
        with pytest.raises(InvalidIdentifier):
            make_qd20_code(level1, *segments)
        return
    code = make_qd20_code(level1, *segments)
    assert QD20_PATTERN.fullmatch(code)
    assert classify_organ_id(code) == OrganCode(code, CodeForm.QD20, level1, 1 + len(segments))
    chain = ancestors(code)
    assert len(chain) == len(segments)
    assert (chain[-1] if chain else code) == level1


@given(st.text())
def test_classify_never_raises(text: str) -> None:
    result = classify_organ_id(text)
    assert result.value == text.strip()
    assert isinstance(result.form, CodeForm)
    assert (result.level1 is None) == (result.form is CodeForm.NONCONFORMING)
    assert (result.level is None) == (result.form is CodeForm.NONCONFORMING)
    parent_code(text)
    ancestors(text)
    assert is_within(text, text)


@given(st.from_regex(r"[0-9]{3}\.[0-9]{2}\.[0-9]{2}\.[A-Z][0-9]{2}", fullmatch=True))
def test_qcvn102_shaped_text_never_raises(text: str) -> None:
    result = classify_organ_id(text)
    assert result.form in (CodeForm.QCVN102, CodeForm.NONCONFORMING)
    for ancestor in ancestors(text):
        assert is_qcvn102(ancestor)
