"""The directory use case (esb.pipeline.directory): two Directory instances on one database
act as two nodes; presence is injected; a fake clock drives the once-a-second refresh."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from esb.domain import directory_search
from esb.domain.access import AgencyState
from esb.domain.agencies import AgencyRecord
from esb.domain.directory_search import DirectoryQueryError, MalformedCode, MatchKind
from esb.pipeline.demo_seed import DEMO_AGENCIES
from esb.pipeline.directory import Directory, Presence, UnknownAgency
from esb.pipeline.directory_fixture import generate_agencies
from esb.pipeline.registration import Registration
from esb.wiring import Runtime

if TYPE_CHECKING:
    from conftest import FakeClock

TAY_NINH = "000.00.00.H53"
OFFICE = "000.00.01.H53"
CHAU_THANH = "000.00.32.H53"
HAU_GIANG = "000.00.00.H30"


@pytest.fixture
def seeded(registration: Registration) -> Registration:
    registration.import_agencies(DEMO_AGENCIES)
    return registration


Node = Callable[..., Directory]


@pytest.fixture
def node(runtime: Runtime, clock: FakeClock) -> Node:
    """``node(online=..., states=...)``: a Directory on the runtime's database, as one more node."""

    def make(
        online: frozenset[str] = frozenset(),
        states: Mapping[str, str] | None = None,
        **options: object,
    ) -> Directory:
        presence_of = (
            (lambda codes: {c: states[c] for c in codes if c in states}) if states is not None else None
        )
        return Directory(
            runtime.database,
            lambda: online,
            clock,
            presence_of=presence_of,
            **options,  # type: ignore[arg-type]
        )

    return make


def codes(found: Sequence[object]) -> list[str]:
    return [item.entry.code for item in found]  # type: ignore[attr-defined]


def test_find_by_name_and_code(seeded: Registration, node: Node) -> None:
    directory = node()
    first = directory.find("ubnd tinh tay ninh")[0]
    assert (first.entry.code, first.match, first.score, first.presence) == (
        TAY_NINH,
        MatchKind.NAME_EXACT,
        4,
        Presence.UNKNOWN,
    )
    found = directory.find(CHAU_THANH)
    assert codes(found) == [CHAU_THANH, "000.05.32.H53"]
    assert [f.match for f in found] == [MatchKind.CODE, MatchKind.SUBTREE]
    assert codes(directory.find("H53.01")) == [OFFICE, "000.01.01.H53"]  # the QĐ 20 code, then below it


def test_two_nodes_agree_within_a_second(seeded: Registration, node: Node, clock: FakeClock) -> None:
    a, b = node(), node()
    assert codes(a.find("so du lich")) == codes(b.find("so du lich")) == []
    seeded.add_agency(AgencyRecord("000.00.20.H53", "Sở Văn hóa, Thể thao và Du lịch tỉnh Tây Ninh"))
    seeded.set_agency_state(OFFICE, AgencyState.LOCKED)
    assert codes(a.find("so du lich")) == []  # each node checks the database at most once a second
    clock.advance(seconds=1)
    assert codes(a.find("so du lich")) == ["000.00.20.H53"]
    assert codes(b.find("sở vh-tt&dl")) == ["000.00.20.H53"]
    assert a.get(OFFICE).agency.entry.state == b.get(OFFICE).agency.entry.state == "locked"
    assert a.version == b.version > 0


def test_a_renamed_agency_is_found_by_its_new_name_only(
    seeded: Registration, node: Node, clock: FakeClock
) -> None:
    directory = node()
    assert codes(directory.find("ban tiep cong dan")) == ["000.01.01.H53"]
    seeded.import_agencies(
        [AgencyRecord("000.01.01.H53", "Ban Tiếp dân tỉnh Tây Ninh", qd20_code="H53.01.01")]
    )
    clock.advance(seconds=2)
    assert codes(directory.find("ban tiep cong dan")) == []
    assert codes(directory.find("ban tiep dan")) == ["000.01.01.H53"]


def test_a_bulk_change_rebuilds_the_index(
    seeded: Registration, node: Node, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = node(rebuild_in_background=False)
    assert len(directory.index()) == len(DEMO_AGENCIES)
    monkeypatch.setattr(directory_search, "OVERLAY_LIMIT", 10)
    monkeypatch.setattr("esb.pipeline.directory.OVERLAY_LIMIT", 10)
    generated = generate_agencies(300, seed=3)
    seeded.import_agencies(generated)
    clock.advance(seconds=1)
    index = directory.index()
    assert len(index) == len({r.code for r in (*DEMO_AGENCIES, *generated)})
    assert index.overlay_size == 0  # compiled afresh, not patched
    assert directory.find("ubnd tp ha noi")[0].entry.code == "000.00.00.H24"


def test_only_online_agencies_and_presence_states(seeded: Registration, node: Node) -> None:
    directory = node(online=frozenset({OFFICE}), states={TAY_NINH: "offline", HAU_GIANG: "bogus"})
    assert codes(directory.find("ubnd", only_online=True)) == [OFFICE]
    presence = {f.entry.code: f.presence for f in directory.find("ubnd tinh")}
    assert presence[OFFICE] is Presence.ONLINE
    assert presence[TAY_NINH] is Presence.OFFLINE
    assert presence[HAU_GIANG] is Presence.UNKNOWN  # an unknown state reads as unknown
    assert node().find("ubnd", only_online=True) == []  # nobody online


def test_get_gives_parent_children_and_their_presence(seeded: Registration, node: Node) -> None:
    directory = node(online=frozenset({OFFICE}), states={CHAU_THANH: "offline"})
    view = directory.get(TAY_NINH)
    assert view.agency.entry.code == TAY_NINH
    assert view.parent is None
    assert [(c.entry.code, c.presence) for c in view.children] == [
        (OFFICE, Presence.ONLINE),
        (CHAU_THANH, Presence.OFFLINE),
    ]
    office = directory.get("h53.01")  # by its QĐ 20 code, in any case
    assert office.agency.entry.code == OFFICE
    assert office.parent is not None
    assert office.parent.entry.code == TAY_NINH
    assert codes(office.children) == ["000.01.01.H53"]


@pytest.mark.parametrize(
    ("code", "error", "fault"),
    [
        ("000.00.99.H53", UnknownAgency, "Client.UnknownAgency"),
        ("H99", UnknownAgency, "Client.UnknownAgency"),
        ("Tây Ninh", MalformedCode, "Client.MalformedCode"),
        ("", MalformedCode, "Client.MalformedCode"),
        ("x" * 300, MalformedCode, "Client.MalformedCode"),
    ],
)
def test_get_refuses_unknown_and_malformed_codes(
    seeded: Registration, node: Node, code: str, error: type[Exception], fault: str
) -> None:
    with pytest.raises(error) as refused:
        node().get(code)
    assert refused.value.code == fault  # type: ignore[attr-defined]


def test_changes_page_through_the_whole_directory(seeded: Registration, node: Node) -> None:
    directory = node()
    seen: list[str] = []
    version, pages = 0, 0
    while True:
        page = directory.changes(version, 3)
        seen += [entry.code for entry in page.entries]
        version, pages = page.version, pages + 1
        if not page.more:
            break
    assert sorted(seen) == sorted(r.code for r in DEMO_AGENCIES)
    assert pages == 3
    seeded.set_agency_state(CHAU_THANH, AgencyState.LOCKED)
    later = directory.changes(version)
    assert [(e.code, e.state) for e in later.entries] == [(CHAU_THANH, "locked")]
    assert later.version == version + 1
    assert directory.changes(later.version).entries == ()


@pytest.mark.parametrize(
    ("since", "limit", "fault"),
    [
        (-1, None, "Client.DirectoryVersionInvalid"),
        (0, 0, "Client.DirectoryLimitInvalid"),
        (0, 5001, "Client.DirectoryLimitInvalid"),
    ],
)
def test_changes_refuse_bad_arguments(node: Node, since: int, limit: int | None, fault: str) -> None:
    with pytest.raises(DirectoryQueryError) as refused:
        node().changes(since, limit)
    assert refused.value.code == fault


def test_find_checks_its_input_before_touching_the_index(node: Node) -> None:
    directory = node()
    with pytest.raises(DirectoryQueryError) as empty:
        directory.find("  ")
    assert empty.value.code == "Client.DirectoryQueryEmpty"
    with pytest.raises(MalformedCode):
        directory.find("", parent_code="not a code")


def test_the_index_is_loaded_once_and_refreshed_at_most_once_a_second(
    seeded: Registration, node: Node, clock: FakeClock, runtime: Runtime
) -> None:
    directory = node(refresh_interval=timedelta(seconds=1))
    first = directory.index()
    assert directory.index() is first  # within the second: no database work at all
    clock.advance(seconds=1)
    assert directory.index() is first  # checked: nothing changed, same index
    seeded.add_agency(AgencyRecord("000.00.21.H53", "Ban Quản lý khu kinh tế tỉnh Tây Ninh"))
    clock.advance(seconds=1)
    refreshed = directory.index()
    assert refreshed is not first
    assert refreshed.version == first.version + 1
    assert refreshed.overlay_size == 1


def test_warm_up_loads_in_the_background(seeded: Registration, node: Node) -> None:
    directory = node()
    directory.warm_up().join(timeout=60)
    assert len(directory.index()) == len(DEMO_AGENCIES)
