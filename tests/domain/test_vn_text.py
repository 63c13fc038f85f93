"""Vietnamese text folding for the directory (esb.domain.vn_text)."""

from __future__ import annotations

import unicodedata

import pytest

from esb.domain.vn_text import ABBREVIATIONS, acronyms, fold, strip_marks, tokens


def test_fold_removes_every_diacritic_and_lowercases() -> None:
    assert fold("Ủy ban nhân dân tỉnh Tây Ninh") == "uy ban nhan dan tinh tay ninh"
    assert fold("ĐẮK LẮK, Đồng Tháp") == "dak lak, dong thap"
    assert fold("Thừa Thiên Huế – Quảng Ngãi") == "thua thien hue – quang ngai"
    assert strip_marks("Đà Nẵng") == "Da Nang"
    assert fold(unicodedata.normalize("NFD", "Hậu Giang")) == "hau giang"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("UBND tỉnh Tây Ninh", "uy ban nhan dan tinh tay ninh"),
        ("Sở TT&TT Hậu Giang", "so thong tin truyen thong hau giang"),
        ("Sở TT-TT", "so thong tin truyen thong"),
        ("Sở Thông tin và Truyền thông", "so thong tin truyen thong"),
        ("Sở LĐ-TB&XH", "so lao dong thuong binh xa hoi"),
        ("Sở Lao động - Thương binh và Xã hội", "so lao dong thuong binh xa hoi"),
        ("Sở VH-TT&DL", "so van hoa the thao du lich"),
        ("Sở GD&ĐT", "so giao duc dao tao"),
        ("Sở KH&ĐT", "so ke hoach dau tu"),
        ("Sở NN&PTNT", "so nong nghiep phat trien nong thon"),
        ("Tp.HCM", "thanh pho ho chi minh"),
        ("Tp. Hồ Chí Minh", "thanh pho ho chi minh"),
        ("HĐND tỉnh", "hoi dong nhan dan tinh"),
        ("Trường THCS Tân Hòa", "truong trung hoc co so tan hoa"),
        ("CA tỉnh Cà Mau", "cong an tinh ca mau"),  # CA in capitals only: Cà stays cà
        ("ca mau", "ca mau"),
        ("Trường số 1, H53.01", "truong so 1 h53 01"),
        ("", ""),
        ("& - . và", ""),
    ],
)
def test_tokens_expand_abbreviations_and_drop_stop_words(text: str, words: str) -> None:
    assert tokens(text) == words.split()


def test_abbreviations_are_data_in_folded_compact_form() -> None:
    assert all(key == key.lower() and key.isalnum() and key.isascii() for key in ABBREVIATIONS)
    assert all(tokens(expansion) == expansion.split() for expansion in ABBREVIATIONS.values())


def test_acronyms_start_at_every_word() -> None:
    assert acronyms(["so", "thong", "tin", "truyen", "thong"]) == ["stttt", "tttt", "ttt", "tt"]
    assert acronyms(["a"]) == []
    assert acronyms(list("abcdefghij"), longest=4) == [
        "abcd",
        "bcde",
        "cdef",
        "defg",
        "efgh",
        "fghi",
        "ghij",
        "hij",
        "ij",
    ]
