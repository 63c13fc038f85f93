"""The Directory service over real HTTP (gunicorn, zeep importing the served WSDL), on SQLite and
PostgreSQL: FindAgencies, GetAgency, GetAgencyChanges, presence, and typed faults for bad input.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import zeep
from hmac_signing import hmac_signed
from zeep.exceptions import Fault

from esb.domain.access import AgencyState
from esb.domain.agencies import AgencyRecord

NS = "urn:lgsp-esb:directory:1"
HARDENED = zeep.Settings(forbid_dtd=True, forbid_entities=True, forbid_external=True, strict=True)
CALLER = "000.00.00.H53"  # UBND tỉnh Tây Ninh (demo)
COUNCIL = "000.00.00.K53"
TTTT = "000.00.11.H30"
TTTT_OFFICE = "000.01.11.H30"
# Agencies of this module only (no other test uses these codes).
OWN = (
    AgencyRecord(COUNCIL, "Hội đồng nhân dân tỉnh Tây Ninh", qd20_code="K53"),
    AgencyRecord(
        TTTT, "Sở Thông tin và Truyền thông tỉnh Hậu Giang", qd20_code="H30.11", old_code="VXP.HG.11"
    ),
    AgencyRecord(TTTT_OFFICE, "Văn phòng Sở TT&TT tỉnh Hậu Giang", qd20_code="H30.11.01"),
)
T = TypeVar("T")


def eventually(check: Callable[[], T], *, seconds: float = 15) -> T:
    """``check()`` once it passes: each node's directory and presence refresh within about a second."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture
def directory(live_server: Any) -> zeep.Client:
    """A Directory client signed in as the demo UBND tỉnh Tây Ninh, with this module's agencies registered."""
    runtime = live_server.runtime()
    try:
        runtime.registration.import_agencies(OWN)
    finally:
        runtime.database.dispose()
    ticket = zeep.Client(live_server.wsdl("Auth"), settings=HARDENED).service.Authenticate(
        **hmac_signed(live_server.credential(CALLER))
    )
    client = zeep.Client(live_server.wsdl("Directory"), settings=HARDENED)
    client.set_default_soapheaders({"AuthHeader": {"sessionToken": ticket.sessionToken}})
    eventually(lambda: _first_code(client, "hdnd tinh tay ninh", COUNCIL))
    return client


def _first_code(client: zeep.Client, query: str, code: str) -> None:
    found = client.service.FindAgencies(query=query)
    assert found
    assert found[0].code == code


def fault_code(client: zeep.Client, operation: str, **arguments: Any) -> str:
    with pytest.raises(Fault) as info:
        getattr(client.service, operation)(**arguments)
    assert info.value.detail is not None
    detail = client.get_element(f"{{{NS}}}EsbFault").parse(info.value.detail[0], client.wsdl.types)
    assert info.value.code.endswith(detail.code)
    assert "Traceback" not in str(detail.message)
    return str(detail.code)


def test_find_by_name_without_diacritics_and_with_abbreviations(directory: zeep.Client) -> None:
    for query in ("so thong tin truyen thong hau giang", "Sở TT&TT Hậu Giang", "STTTT hau giang"):
        found = directory.service.FindAgencies(query=query, limit=5)
        assert found[0].code == TTTT, query
    first = directory.service.FindAgencies(query="Sở Thông tin và Truyền thông tỉnh Hậu Giang")[0]
    assert (first.code, first.qd20Code, first.oldCode, first.level, first.state) == (
        TTTT,
        "H30.11",
        "VXP.HG.11",
        2,
        "active",
    )
    assert first.parentCode == "000.00.00.H30"
    assert (first.match, first.score) == ("name-exact", 4)
    assert first.presence in ("online", "offline", "unknown")


def test_find_by_code_in_every_form_then_the_subtree(directory: zeep.Client) -> None:
    found = directory.service.FindAgencies(query="000.00.32.H53")
    assert [(a.code, a.match) for a in found[:2]] == [("000.00.32.H53", "code"), ("000.05.32.H53", "subtree")]
    assert directory.service.FindAgencies(query="h30.11")[0].code == TTTT
    assert directory.service.FindAgencies(query="VXP.HG.11")[0].code == TTTT
    prefixed = directory.service.FindAgencies(query="H30.11.", limit=100)
    assert [a.code for a in prefixed] == [TTTT_OFFICE]


def test_filters_and_limit(directory: zeep.Client) -> None:
    under = directory.service.FindAgencies(query="", parentCode="000.00.00.H53", level=2, limit=100)
    assert {"000.00.01.H53", "000.00.32.H53"} <= {a.code for a in under}
    assert all(a.level == 2 for a in under)
    assert len(directory.service.FindAgencies(query="ubnd", limit=1)) == 1


def test_the_caller_shows_online_and_only_online_finds_it(directory: zeep.Client) -> None:
    def online() -> None:
        found = directory.service.FindAgencies(query="ubnd tinh tay ninh", onlyOnline=True)
        assert CALLER in [a.code for a in found]
        assert all(a.presence == "online" for a in found)

    eventually(online)


def test_get_agency_with_its_parent_and_children(directory: zeep.Client) -> None:
    province = directory.service.GetAgency(code=CALLER)
    assert province.code == CALLER
    assert province.parent is None
    assert {"000.00.01.H53", "000.00.32.H53"} <= {c.code for c in province.child}
    assert province.version > 0
    office = directory.service.GetAgency(code="h30.11.01")
    assert office.code == TTTT_OFFICE
    assert office.parent.code == TTTT
    assert office.child == []


def test_changes_page_through_and_carry_locks(directory: zeep.Client, live_server: Any) -> None:
    first = directory.service.GetAgencyChanges(sinceVersion=0, limit=2)
    assert len(first.agency) == 2
    assert first.more is True
    codes: list[str] = []
    version, page = 0, first
    while True:
        codes += [a.code for a in page.agency]
        version = page.version
        if not page.more:
            break
        page = directory.service.GetAgencyChanges(sinceVersion=version, limit=500)
    assert {CALLER, COUNCIL, TTTT, TTTT_OFFICE} <= set(codes)
    runtime = live_server.runtime()
    try:
        runtime.registration.set_agency_state(TTTT_OFFICE, AgencyState.LOCKED)
        after = directory.service.GetAgencyChanges(sinceVersion=version)
        assert [(a.code, a.state) for a in after.agency] == [(TTTT_OFFICE, "locked")]
        assert after.version > version
        assert after.more is False

        def locked() -> None:
            assert directory.service.GetAgency(code=TTTT_OFFICE).state == "locked"

        eventually(locked)
    finally:
        runtime.registration.set_agency_state(TTTT_OFFICE, AgencyState.ACTIVE)
        runtime.database.dispose()


@pytest.mark.parametrize(
    ("operation", "arguments", "code"),
    [
        ("FindAgencies", {"query": "   "}, "Client.DirectoryQueryEmpty"),
        ("FindAgencies", {}, "Client.DirectoryQueryEmpty"),
        ("FindAgencies", {"query": "tây ninh " * 30}, "Client.DirectoryQueryTooLong"),
        ("FindAgencies", {"query": "ubnd", "limit": 0}, "Client.DirectoryLimitInvalid"),
        ("FindAgencies", {"query": "ubnd", "limit": 1000}, "Client.DirectoryLimitInvalid"),
        ("FindAgencies", {"query": "ubnd", "level": 42}, "Client.DirectoryLevelInvalid"),
        ("FindAgencies", {"query": "ubnd", "parentCode": "Tây Ninh"}, "Client.MalformedCode"),
        ("GetAgency", {"code": "000.00.99.H53"}, "Client.UnknownAgency"),
        ("GetAgency", {"code": "not a code"}, "Client.MalformedCode"),
        ("GetAgencyChanges", {"sinceVersion": -1}, "Client.DirectoryVersionInvalid"),
        ("GetAgencyChanges", {"sinceVersion": 0, "limit": 0}, "Client.DirectoryLimitInvalid"),
    ],
)
def test_bad_input_is_a_typed_fault(
    directory: zeep.Client, operation: str, arguments: dict[str, Any], code: str
) -> None:
    assert fault_code(directory, operation, **arguments) == code


def test_every_operation_needs_a_caller(live_server: Any) -> None:
    anonymous = zeep.Client(live_server.wsdl("Directory"), settings=HARDENED)
    assert fault_code(anonymous, "FindAgencies", query="ubnd") == "Client.AuthenticationRequired"
    assert fault_code(anonymous, "GetAgency", code=CALLER) == "Client.AuthenticationRequired"
    assert fault_code(anonymous, "GetAgencyChanges", sinceVersion=0) == "Client.AuthenticationRequired"


EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "zeep_directory.py"


def test_the_documented_zeep_example_runs(directory: zeep.Client, live_server: Any, tmp_path: Path) -> None:
    credentials = tmp_path / "demo-credentials.json"
    caller = live_server.credential(CALLER)
    credentials.write_text(json.dumps([caller.as_json()]), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), str(credentials), live_server.base_url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "'ubnd tinh hau giang': 000.00.00.H30 UBND tỉnh Hậu Giang [name-exact" in result.stdout
    assert "'000.00.32.H53': 000.00.32.H53 UBND huyện Châu Thành [code" in result.stdout
    assert "000.00.00.H53 UBND tỉnh Tây Ninh:" in result.stdout
    assert "local copy:" in result.stdout
