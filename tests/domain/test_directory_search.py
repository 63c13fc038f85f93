"""Directory search (esb.domain.directory_search): quality on a generated national list of
120,000 agencies, ranking, filters, incremental updates, bad input, and the same answers as
a naive scan of every entry where the index's shortcuts must not change anything."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import replace

import pytest

from esb.domain import directory_search, vn_text
from esb.domain.directory_search import (
    DirectoryEntry,
    DirectoryIndex,
    DirectoryQueryError,
    MalformedCode,
    MatchKind,
    SearchHit,
    parse_query,
)
from esb.domain.identifiers import ancestors, is_within, parent_code
from esb.pipeline.directory_fixture import generate_agencies

TAY_NINH = "000.00.00.H53"
HAU_GIANG = "000.00.00.H30"
HAU_GIANG_TTTT = "000.00.11.H30"  # department 11 of every province: Sở Thông tin và Truyền thông
TAY_NINH_TTTT_CENTRE = "000.03.11.H53"  # its unit 3: Trung tâm Công nghệ thông tin và Truyền thông
CHAU_THANH = "000.00.32.H53"  # the first district of Tây Ninh: huyện Châu Thành


@pytest.fixture(scope="module")
def national() -> list[DirectoryEntry]:
    return [DirectoryEntry.from_record(r, version=n) for n, r in enumerate(generate_agencies(120_000), 1)]


@pytest.fixture(scope="module")
def index(national: list[DirectoryEntry]) -> DirectoryIndex:
    return DirectoryIndex.build(national)


@pytest.fixture(scope="module")
def by_code(national: list[DirectoryEntry]) -> dict[str, DirectoryEntry]:
    return {entry.code: entry for entry in national}


def codes(hits: Sequence[SearchHit]) -> list[str]:
    return [hit.entry.code for hit in hits]


def folded(name: str) -> list[str]:
    return vn_text.tokens(name)


# -- the generated list itself --------------------------------------------------------------


def test_the_generated_list_is_national_sized_deterministic_and_consistent(
    national: list[DirectoryEntry], by_code: dict[str, DirectoryEntry]
) -> None:
    assert len(national) == len(by_code) == 120_000
    position = {entry.code: n for n, entry in enumerate(national)}
    assert all(position[e.parent] < position[e.code] for e in national if e.parent)  # parents first
    assert generate_agencies(300, seed=7) == generate_agencies(300, seed=7)
    assert generate_agencies(300, seed=7) != generate_agencies(300, seed=8)
    assert {e.level for e in national} == {1, 2, 3, 4}
    assert by_code[TAY_NINH].name in ("Ủy ban nhân dân tỉnh Tây Ninh", "UBND tỉnh Tây Ninh")
    assert folded(by_code[HAU_GIANG_TTTT].name) == folded("Sở Thông tin và Truyền thông tỉnh Hậu Giang")
    assert any(e.qd20_code for e in national)
    assert any(e.old_code for e in national)
    assert any(c != unicodedata.normalize("NFD", c) for c in by_code[TAY_NINH].name)  # diacritics


# -- names: diacritics, abbreviations, initials ---------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "uy ban nhan dan tinh tay ninh",
        "UBND tỉnh Tây Ninh",
        "Ủy ban nhân dân tỉnh Tây Ninh",
        "Uỷ ban nhân dân tỉnh Tây Ninh",  # the older placement of the tone mark
        "UỶ BAN NHÂN DÂN TỈNH TÂY NINH",
        unicodedata.normalize("NFD", "Ủy ban nhân dân tỉnh Tây Ninh"),  # decomposed input
        "ubnd tinh tay ninh",
        "  UBND   tỉnh   Tây   Ninh ",
    ],
)
def test_the_provincial_committee_is_found_first_however_it_is_written(
    index: DirectoryIndex, query: str
) -> None:
    hits = index.search(query)
    assert hits[0].entry.code == TAY_NINH
    assert hits[0].match is MatchKind.NAME_EXACT
    assert hits[0].score == 4


@pytest.mark.parametrize(
    "query",
    [
        "Sở TT&TT Hậu Giang",
        "so thong tin truyen thong hau giang",
        "Sở Thông tin và Truyền thông tỉnh Hậu Giang",
        "sở tt-tt hậu giang",
        "STTTT Hau Giang",  # initials of the words, not in the abbreviation table
        "so tttt hau giang",
    ],
)
def test_a_department_is_found_by_its_name_abbreviation_or_initials(
    index: DirectoryIndex, query: str
) -> None:
    assert index.search(query)[0].entry.code == HAU_GIANG_TTTT


def test_a_name_with_a_repeated_word_is_an_exact_match() -> None:
    index = small("Sở Thông tin và Truyền thông tỉnh Hậu Giang", "Thông tin Sở Truyền tỉnh Hậu Giang")
    hits = index.search("Sở TT&TT tỉnh Hậu Giang")
    assert [(h.entry.code, h.match) for h in hits] == [
        ("000.00.01.H53", MatchKind.NAME_EXACT),
        ("000.00.02.H53", MatchKind.NAME_WORDS),  # holds each word, but "thông" once and out of order
    ]


def test_unknown_abbreviations_match_the_initials_of_consecutive_words(
    index: DirectoryIndex, by_code: dict[str, DirectoryEntry]
) -> None:
    hits = index.search("TTCNTT Tây Ninh")
    assert hits[0].entry.code == TAY_NINH_TTTT_CENTRE
    assert folded(by_code[TAY_NINH_TTTT_CENTRE].name)[:5] == ["trung", "tam", "cong", "nghe", "thong"]
    # every hit's name holds words with those initials in a row
    for hit in index.search("ttcntt", limit=50):
        initials = "".join(word[0] for word in folded(hit.entry.name))
        assert "ttcntt" in initials


def test_the_last_word_may_be_unfinished(index: DirectoryIndex) -> None:
    hits = index.search("uy ban nhan dan tinh tay ni")
    assert hits[0].entry.code == TAY_NINH
    assert hits[0].match is MatchKind.NAME_PREFIX
    for hit in index.search("phong giao duc va dao tao huyen chau th", limit=30):
        assert folded(hit.entry.name)[:8] == ["phong", "giao", "duc", "dao", "tao", "huyen", "chau", "thanh"]


def test_every_hit_holds_every_word_of_the_query(
    index: DirectoryIndex, national: list[DirectoryEntry]
) -> None:
    names = [folded(entry.name) for entry in national]

    def holds(name: list[str], words: list[str]) -> bool:
        return all(w in name for w in words[:-1]) and any(n.startswith(words[-1]) for n in name)

    for query in ("xa tan hoa", "truong mam non", "cong an xa", "so y te", "huyen xa", "tinh xa", "ninh tay"):
        words = folded(query)
        hits = index.search(query, limit=100)
        assert len(hits) == min(100, sum(1 for name in names if holds(name, words))), query
        assert all(holds(folded(hit.entry.name), words) for hit in hits), query


def test_words_out_of_order_still_match_after_those_in_order(index: DirectoryIndex) -> None:
    hits = index.search("ninh tay uy ban", limit=5)
    assert hits[0].entry.code == TAY_NINH
    assert {hit.match for hit in hits} == {MatchKind.NAME_WORDS}
    ordered = index.search("ban nhan dan tay ninh", limit=100)
    kinds = [hit.match for hit in ordered]
    assert kinds == sorted(kinds, key=list(MatchKind).index)  # buckets never interleave


def test_names_with_city_and_other_abbreviations(
    index: DirectoryIndex, by_code: dict[str, DirectoryEntry]
) -> None:
    hcm = index.search("UBND Tp. HCM")[0].entry
    assert folded(hcm.name) == folded("Ủy ban nhân dân thành phố Hồ Chí Minh")
    assert index.search("hđnd tỉnh tây ninh")[0].entry.code == "000.00.00.K53"
    assert index.search("Cục Thuế Tây Ninh")[0].entry.name == "Cục Thuế tỉnh Tây Ninh"
    school = index.search("trường thcs", parent_code=CHAU_THANH, limit=1)[0].entry
    assert folded(school.name)[:4] == ["truong", "trung", "hoc", "co"]


def test_a_query_that_matches_nothing(index: DirectoryIndex) -> None:
    assert index.search("zzzz qqqq") == []
    assert index.search("tây ninh khongcotu") == []


# -- codes: exact in three forms, prefix, subtree ---------------------------------------------


def test_codes_exact_in_any_form_then_the_subtree(
    index: DirectoryIndex, national: list[DirectoryEntry]
) -> None:
    hits = index.search(CHAU_THANH, limit=100)
    assert hits[0].entry.code == CHAU_THANH
    assert hits[0].match is MatchKind.CODE
    assert hits[0].score == 7
    below = hits[1:]
    assert below
    assert all(hit.match is MatchKind.SUBTREE for hit in below)
    assert all(is_within(hit.entry.code, CHAU_THANH) for hit in below)
    assert [h.entry.level for h in below] == sorted(h.entry.level for h in below)  # higher level first

    with_qd20 = next(e for e in national if e.qd20_code and e.level == 3)
    with_old = next(e for e in national if e.old_code and e.level == 4)
    assert index.search(with_qd20.qd20_code or "")[0].entry == with_qd20
    assert index.search(with_old.old_code or "")[0].entry == with_old
    assert index.search((with_qd20.qd20_code or "").lower())[0].entry == with_qd20  # case does not matter


def test_qd20_subtree(index: DirectoryIndex, by_code: dict[str, DirectoryEntry]) -> None:
    district = by_code[CHAU_THANH]
    qd20 = "H53.32"
    hits = index.search(qd20, limit=100)
    assert all(
        is_within(hit.entry.qd20_code or "", qd20) or is_within(hit.entry.code, CHAU_THANH) for hit in hits
    )
    if district.qd20_code == qd20:
        assert hits[0].entry.code == CHAU_THANH


def test_code_prefixes_by_level_then_code(index: DirectoryIndex) -> None:
    hits = index.search("000.00.3", limit=60)
    assert len(hits) == 60
    assert all(hit.match is MatchKind.CODE_PREFIX for hit in hits)
    assert all(any(c.upper().startswith("000.00.3") for c in hit.entry.codes) for hit in hits)
    keys = [(hit.entry.level, hit.entry.code) for hit in hits]
    assert keys == sorted(keys)
    vxp = index.search("VXP.H53.", limit=10)
    assert len(vxp) == 10
    assert all((h.entry.old_code or "").startswith("VXP.H53.") for h in vxp)


def test_a_province_code_lists_its_units(index: DirectoryIndex) -> None:
    hits = index.search("H53", limit=40)
    assert all(hit.entry.code.endswith(".H53") for hit in hits)


# -- filters and limits ---------------------------------------------------------------------


def test_level_and_parent_filters(index: DirectoryIndex) -> None:
    assert {h.entry.level for h in index.search("ubnd", level=3, limit=50)} == {3}
    assert {h.entry.level for h in index.search("ubnd", level=1, limit=100)} == {1}
    under = index.search("truong", parent_code=CHAU_THANH, limit=100)
    assert len(under) > 10
    assert all(is_within(h.entry.code, CHAU_THANH) and h.entry.code != CHAU_THANH for h in under)
    listed = index.search("", parent_code=CHAU_THANH, level=3, limit=100)
    assert listed
    assert all(h.entry.level == 3 and h.entry.parent == CHAU_THANH for h in listed)
    assert index.search("ubnd", parent_code="000.00.00.H99") == []  # a conforming code with no units


def test_a_parent_given_by_its_qd20_code(index: DirectoryIndex) -> None:
    assert all(h.entry.code.endswith(".H53") for h in index.search("so", parent_code="h53", limit=30))


def test_only_the_given_agencies(index: DirectoryIndex) -> None:
    hits = index.search("ubnd tinh", only={TAY_NINH, HAU_GIANG.lower()})
    assert sorted(codes(hits)) == [HAU_GIANG, TAY_NINH]
    assert index.search("ubnd tinh", only=set()) == []


def test_limits(index: DirectoryIndex) -> None:
    assert len(index.search("ubnd")) == directory_search.DEFAULT_LIMIT
    assert len(index.search("ubnd", limit=1)) == 1
    assert len(index.search("ubnd", limit=100)) == 100


@pytest.mark.parametrize(
    ("arguments", "code"),
    [
        ({"query": ""}, "Client.DirectoryQueryEmpty"),
        ({"query": "   "}, "Client.DirectoryQueryEmpty"),
        ({"query": None}, "Client.DirectoryQueryEmpty"),
        ({"query": "&& - ."}, "Client.DirectoryQueryEmpty"),
        ({"query": "và"}, "Client.DirectoryQueryEmpty"),  # only a stop word
        ({"query": "x" * 201}, "Client.DirectoryQueryTooLong"),
        ({"query": "ubnd", "limit": 0}, "Client.DirectoryLimitInvalid"),
        ({"query": "ubnd", "limit": 101}, "Client.DirectoryLimitInvalid"),
        ({"query": "ubnd", "level": 0}, "Client.DirectoryLevelInvalid"),
        ({"query": "ubnd", "level": 11}, "Client.DirectoryLevelInvalid"),
        ({"query": "ubnd", "parent_code": "Tây Ninh"}, "Client.MalformedCode"),
        ({"query": "ubnd", "parent_code": "000.05.00.H53"}, "Client.MalformedCode"),  # a gap
        ({"query": "", "parent_code": "x" * 300}, "Client.MalformedCode"),
    ],
)
def test_bad_input_is_refused_with_a_stable_code(
    index: DirectoryIndex, arguments: dict[str, object], code: str
) -> None:
    query = arguments.pop("query")
    with pytest.raises((DirectoryQueryError, MalformedCode)) as refused:
        index.search(query, **arguments)  # type: ignore[arg-type]
    assert refused.value.code == code
    assert "x" * 100 not in refused.value.message  # long inputs are not echoed


def test_a_query_of_exactly_the_maximum_length_is_searched(index: DirectoryIndex) -> None:
    assert index.search("tây ninh " * 22 + "ab") == []  # 200 characters
    assert parse_query("a" * 200).words == ("a" * 200,)


# -- ranking on a small hand-made directory ---------------------------------------------------


def small(*names: str) -> DirectoryIndex:
    return DirectoryIndex.build(
        DirectoryEntry(f"000.00.{n:02d}.H53", name) for n, name in enumerate(names, start=1)
    )


def test_ranking_exact_then_prefix_then_in_order_then_any_order() -> None:
    index = small(
        "Trung tâm Y tế huyện Châu Thành và thành phố",  # 3: words in order
        "Sở Y tế",  # exact
        "Châu Thành Sở Y tế",  # in order, shorter
        "Sở Y tế tỉnh Tây Ninh",  # starts with the query
        "Y tế Sở",  # any order
    )
    hits = index.search("sở y tế")
    assert [h.entry.name for h in hits] == [
        "Sở Y tế",
        "Sở Y tế tỉnh Tây Ninh",
        "Châu Thành Sở Y tế",
        "Y tế Sở",
    ]
    assert [h.match for h in hits] == [
        MatchKind.NAME_EXACT,
        MatchKind.NAME_PREFIX,
        MatchKind.NAME_ORDERED,
        MatchKind.NAME_WORDS,
    ]


def test_ties_go_to_the_higher_level_then_the_shorter_name_then_the_code() -> None:
    index = DirectoryIndex.build(
        [
            DirectoryEntry("000.01.01.H53", "Phòng Tư pháp A"),  # level 3
            DirectoryEntry("000.00.03.H53", "Phòng Tư pháp BB"),  # level 2, longer
            DirectoryEntry("000.00.02.H53", "Phòng Tư pháp B"),  # level 2
            DirectoryEntry("000.00.01.H53", "Phòng Tư pháp C"),  # level 2, same length, smaller code
        ]
    )
    assert codes(index.search("tu phap")) == [
        "000.00.01.H53",
        "000.00.02.H53",
        "000.00.03.H53",
        "000.01.01.H53",
    ]


def test_a_code_match_comes_before_names() -> None:
    index = DirectoryIndex.build(
        [DirectoryEntry("000.00.01.H53", "Trường số 1 tỉnh H53"), DirectoryEntry("H53.01", "Văn phòng")]
    )
    assert codes(index.search("H53.01")) == ["H53.01"]
    hits = index.search("h53")
    assert [(h.entry.code, h.match) for h in hits] == [
        ("H53.01", MatchKind.CODE_PREFIX),
        ("000.00.01.H53", MatchKind.NAME_ORDERED),
    ]


# -- incremental updates ----------------------------------------------------------------------


def test_updates_are_new_indexes_and_leave_the_old_one_alone() -> None:
    before = small("Sở Nội vụ", "Sở Tư pháp")
    renamed = DirectoryEntry("000.00.01.H53", "Sở Nội vụ và Dân tộc", version=5)
    added = DirectoryEntry("000.00.03.H53", "Sở Du lịch", version=6)
    after = before.updated([renamed, added])
    assert after.version == 6
    assert before.version == 0
    assert codes(after.search("dan toc")) == ["000.00.01.H53"]
    assert codes(before.search("dan toc")) == []
    assert codes(after.search("du lich")) == ["000.00.03.H53"]
    assert len(after) == 3
    assert len(before) == 2
    assert after.get("000.00.01.H53") == renamed
    assert sorted(codes(after.search("so"))) == ["000.00.01.H53", "000.00.02.H53", "000.00.03.H53"]
    assert [e.code for e in after.children("000.00.00.H53")] == [
        "000.00.01.H53",
        "000.00.02.H53",
        "000.00.03.H53",
    ]


def test_a_locked_agency_keeps_its_place_with_its_new_state() -> None:
    index = small("Sở Nội vụ")
    locked = index.updated([DirectoryEntry("000.00.01.H53", "Sở Nội vụ", state="locked", version=2)])
    assert [(h.entry.code, h.entry.state) for h in locked.search("noi vu")] == [("000.00.01.H53", "locked")]


def test_past_the_overlay_limit_the_index_is_compiled_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(directory_search, "OVERLAY_LIMIT", 3)
    index = small("Sở Nội vụ")
    for n in range(2, 6):
        index = index.updated([DirectoryEntry(f"000.00.{n:02d}.H53", f"Phòng số {n}", version=n)])
    assert index.overlay_size <= 3
    assert len(index) == 5
    assert sorted(codes(index.search("phong so", limit=10))) == [f"000.00.{n:02d}.H53" for n in range(2, 6)]


# -- the same answers as a naive scan ---------------------------------------------------------


def naive_search(
    entries: Iterable[DirectoryEntry],
    query: str,
    *,
    parent: str | None = None,
    level: int | None = None,
    limit: int = 20,
) -> list[tuple[str, MatchKind]]:
    """Every entry checked in turn, ranked by the documented rules (no index, no shortcut)."""
    entries = list(entries)
    checked = parse_query(query, parent_code=parent, level=level, limit=limit)
    vocabulary = {word for e in entries for word in folded(e.name)}
    words = list(checked.words)

    def above(entry: DirectoryEntry) -> set[str]:
        start = entry.parent_code or parent_code(entry.code)
        found = {start, *ancestors(start)} if start else set()
        if entry.qd20_code:
            found |= set(ancestors(entry.qd20_code))
        return {c.upper() for c in found} - {c.upper() for c in entry.codes}

    def initials_allowed(word: str, last: bool) -> bool:
        known = any(v.startswith(word) for v in vocabulary) if last else word in vocabulary
        return len(word) >= 2 and word.isalpha() and not known

    roots = [checked.code] if checked.code else []
    exact = [e for e in entries if checked.code and checked.code in {c.upper() for c in e.codes}]
    if checked.code and exact:
        roots += [c.upper() for c in min(exact, key=lambda e: (e.level, len(e.name), e.code)).codes]

    ranked = []
    for entry in entries:
        mine = [c.upper() for c in entry.codes]
        if level is not None and entry.level != level:
            continue
        if checked.parent is not None and checked.parent not in above(entry):
            continue
        key: tuple[int, int, int, str] | None = None
        if checked.code is not None and checked.code in mine:
            key = (0, entry.level, len(entry.name), entry.code)
        elif checked.code is not None and any(c.startswith(checked.code) for c in mine):
            key = (1, entry.level, 0, min(c for c in mine if c.startswith(checked.code)))
        elif checked.code is not None and set(roots) & above(entry):
            key = (2, entry.level, len(entry.name), entry.code)
        elif words:
            name = folded(entry.name)
            initials = "".join(w[0] for w in name)
            starts = [initials[i:] for i in range(len(initials) - 1)]

            def matches(position: int, word: str, name: list[str] = name, starts: list[str] = starts) -> bool:
                last = position == len(words) - 1
                as_word = any(n.startswith(word) for n in name) if last else word in name
                as_initials = initials_allowed(word, last) and any(s[:8].startswith(word) for s in starts)
                return as_word or as_initials

            if all(matches(p, w) for p, w in enumerate(words)):
                text = " ".join(name)
                query_text = " ".join(words)
                if text == query_text:
                    bucket = 3
                elif text.startswith(query_text):
                    bucket = 4
                else:
                    bucket = 5 if in_order(name, words, vocabulary) else 6
                key = (bucket, entry.level, len(entry.name), entry.code)
        elif checked.is_empty and checked.parent is not None:
            key = (2, entry.level, len(entry.name), entry.code)
        if key is not None:
            ranked.append((key, entry.code))
    ranked.sort()
    kinds = list(MatchKind)
    return [(code, kinds[key[0]]) for key, code in ranked[:limit]]


def in_order(name: list[str], words: list[str], vocabulary: set[str]) -> bool:
    text, position = " " + " ".join(name) + " ", 0
    for n, word in enumerate(words):
        last = n == len(words) - 1
        found = text.find(f" {word}" if last else f" {word} ", position)
        if found < 0:
            known = any(v.startswith(word) for v in vocabulary) if last else word in vocabulary
            if len(word) >= 2 and word.isalpha() and not known:
                continue
            return False
        position = found + len(word) + 1
    return True


NAIVE_QUERIES = [
    "ubnd",
    "UBND tỉnh Tây Ninh",
    "so tt&tt",
    "sở y tế",
    "ninh tay",
    "phong noi vu",
    "ttcntt",
    "stttt",
    "van phong",
    "cong an xa",
    "truong tieu hoc",
    "t",
    "xa t",
    "hoi nong dan",
    "000.00.0",
    "H53.32",
    "000.00.32.H53",
    "G07",
    "VXP.H0",
    "h5",
]


@pytest.fixture(scope="module")
def sample() -> list[DirectoryEntry]:
    return [DirectoryEntry.from_record(r) for r in generate_agencies(6_000, seed=11)]


@pytest.mark.parametrize("query", NAIVE_QUERIES)
def test_the_index_answers_as_a_naive_scan_of_every_entry(sample: list[DirectoryEntry], query: str) -> None:
    index = DirectoryIndex.build(sample)
    got = [(hit.entry.code, hit.match) for hit in index.search(query, limit=50)]
    assert got == naive_search(sample, query, limit=50)


@pytest.mark.parametrize(
    ("query", "parent", "level"),
    [("truong", "000.00.32.H01", None), ("", "H02", 2), ("ubnd", None, 3), ("so", "000.00.00.H03", 2)],
)
def test_filters_answer_as_a_naive_scan(
    sample: list[DirectoryEntry], query: str, parent: str | None, level: int | None
) -> None:
    index = DirectoryIndex.build(sample)
    got = [
        (hit.entry.code, hit.match) for hit in index.search(query, parent_code=parent, level=level, limit=50)
    ]
    assert got == naive_search(sample, query, parent=parent, level=level, limit=50)


def test_an_updated_index_answers_as_a_naive_scan_of_the_updated_entries(
    sample: list[DirectoryEntry],
) -> None:
    index = DirectoryIndex.build(sample)
    changed = [replace(e, name=e.name.replace("Ủy ban nhân dân", "UBND"), version=99) for e in sample[:400:3]]
    changed += [DirectoryEntry("000.00.99.H01", "Sở Du lịch tỉnh An Giang", version=100)]
    updated = index.updated(changed)
    merged = {e.code: e for e in sample} | {e.code: e for e in changed}
    for query in ("ubnd", "so du lich", "000.00.9", "van phong ubnd", "H01"):
        got = [(hit.entry.code, hit.match) for hit in updated.search(query, limit=40)]
        assert got == naive_search(merged.values(), query, limit=40), query
