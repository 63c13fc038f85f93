"""Tests for esb.storage.registry: agencies, applications and access rules, on both engines."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from esb.domain.access import AccessRule, AgencyState, Effect, RuleScope
from esb.domain.agencies import AgencyRecord
from esb.storage import registry
from esb.storage.registry import RegistryConflict
from esb.storage.tables import Agency, Application, utc
from esb.wiring import Runtime

NOW = datetime(2026, 11, 21, 2, 30, tzinfo=UTC)
DOMAIN = "lgsp.tayninh.gov.vn"


def _upsert(session: Session, *records: AgencyRecord, now: datetime = NOW) -> tuple[int, int]:
    return registry.upsert_agencies(session, records, province_domain=DOMAIN, now=now)


def _application(
    session: Session, agency: Agency, name: str, certificate: bytes | None = None
) -> Application:
    return registry.add_application(
        session,
        agency,
        name=name,
        developer="VNPT",
        endpoint=None,
        certificate_der=certificate,
        certificate_sha256=hashlib.sha256(certificate).hexdigest() if certificate else None,
        now=NOW,
    )


def test_upsert_agencies_counts_inserted_and_updated_rows(runtime: Runtime) -> None:
    with runtime.database.transaction() as session:
        assert _upsert(session) == (0, 0)
        assert _upsert(
            session, AgencyRecord("000.00.00.H53", "UBND tỉnh Tây Ninh"), AgencyRecord("H53.01", "Văn phòng")
        ) == (2, 0)
    later = NOW + timedelta(days=1)
    with runtime.database.transaction() as session:
        counts = _upsert(
            session,
            AgencyRecord(
                "H53.01", "Văn phòng UBND tỉnh", email="vp@tayninh.gov.vn", state=AgencyState.LOCKED
            ),
            AgencyRecord("000.00.32.H53", "UBND huyện Châu Thành"),
            now=later,
        )
        assert counts == (1, 1)
    with runtime.database.transaction() as session:
        office = registry.get_agency(session, "H53.01")
        # An import updates the details but never the state: locking is an operator action.
        assert (office.name, office.email, office.state) == (
            "Văn phòng UBND tỉnh",
            "vp@tayninh.gov.vn",
            "active",
        )
        assert utc(office.created_at) == NOW
        assert utc(office.updated_at) == later
        assert registry.count_agencies(session) == 3


def test_upsert_agencies_with_a_code_twice_in_one_batch_keeps_the_last_row(runtime: Runtime) -> None:
    with runtime.database.transaction() as session:
        _upsert(session, AgencyRecord("H53.01", "Văn phòng"))
    with runtime.database.transaction() as session:
        counts = _upsert(
            session,
            AgencyRecord("000.00.00.H30", "Tên cũ"),
            AgencyRecord("H53.01", "Văn phòng (1)"),
            AgencyRecord("000.00.00.H30", "UBND tỉnh Hậu Giang"),
            AgencyRecord("H53.01", "Văn phòng (2)"),
        )
        assert counts == (1, 1)
    with runtime.database.transaction() as session:
        assert registry.get_agency(session, "000.00.00.H30").name == "UBND tỉnh Hậu Giang"
        assert registry.get_agency(session, "H53.01").name == "Văn phòng (2)"
        assert registry.count_agencies(session) == 2


def test_agency_account_is_code_at_province_domain(runtime: Runtime) -> None:
    with runtime.database.transaction() as session:
        _upsert(session, AgencyRecord("000.00.01.H53", "Văn phòng"))
        added = registry.add_agency(
            session, AgencyRecord("H53.02", "Sở Nội vụ"), province_domain=DOMAIN, now=NOW
        )
        assert added.account == "H53.02@lgsp.tayninh.gov.vn"
        assert registry.get_agency(session, "000.00.01.H53").account == "000.00.01.H53@lgsp.tayninh.gov.vn"
        with pytest.raises(RegistryConflict) as caught:
            registry.add_agency(session, AgencyRecord("H53.02", "Sở Nội vụ"), province_domain=DOMAIN, now=NOW)
        assert caught.value.code == "Client.AlreadyRegistered"


def test_list_agencies_prefix_treats_percent_and_underscore_literally(runtime: Runtime) -> None:
    with runtime.database.transaction() as session:
        _upsert(
            session,
            AgencyRecord("000.00.00.H53", "UBND tỉnh Tây Ninh"),
            AgencyRecord("000.00.01.H53", "Văn phòng UBND tỉnh Tây Ninh"),
            AgencyRecord("000.00.32.H53", "UBND huyện Châu Thành"),
            AgencyRecord("000.00.00.H30", "UBND tỉnh Hậu Giang"),
        )
    with runtime.database.transaction() as session:

        def codes(prefix: str) -> list[str]:
            return [agency.code for agency in registry.list_agencies(session, prefix=prefix)]

        assert codes("000.00.0") == ["000.00.00.H30", "000.00.00.H53", "000.00.01.H53"]
        assert codes("000.00.00.H") == ["000.00.00.H30", "000.00.00.H53"]
        assert codes("000.00.0_") == []  # "_" is not "any character"
        assert codes("000.00.0%") == []  # "%" is not "anything"
        assert codes("%") == []
        assert codes("huyện Châu") == ["000.00.32.H53"]  # names match anywhere
        assert len(registry.list_agencies(session, prefix="000", limit=2, offset=3)) == 1
        locked = registry.list_agencies(session, state=AgencyState.LOCKED)
        assert locked == []


def test_list_agencies_finds_a_literal_percent_in_names(runtime: Runtime) -> None:
    with runtime.database.transaction() as session:
        _upsert(
            session,
            AgencyRecord("H53.90", "Công ty TNHH MTV 100% vốn nhà nước"),
            AgencyRecord("H53.91", "Công ty 1000 cổ đông"),
        )
    with runtime.database.transaction() as session:
        assert [agency.code for agency in registry.list_agencies(session, prefix="100%")] == ["H53.90"]


def test_duplicate_application_name_is_already_registered(runtime: Runtime) -> None:
    with runtime.database.transaction() as session:
        _upsert(
            session, AgencyRecord("000.00.00.H53", "UBND tỉnh"), AgencyRecord("000.00.01.H53", "Văn phòng")
        )
        province = registry.get_agency(session, "000.00.00.H53")
        _application(session, province, "QLVB")
        _application(session, registry.get_agency(session, "000.00.01.H53"), "QLVB")  # other agency: fine
        with pytest.raises(RegistryConflict, match="QLVB") as caught:
            _application(session, province, "QLVB")
        assert caught.value.code == "Client.AlreadyRegistered"
    with runtime.database.transaction() as session:
        assert [(a.agency.code, a.name) for a in registry.list_applications(session)] == [
            ("000.00.00.H53", "QLVB"),
            ("000.00.01.H53", "QLVB"),
        ]


def test_same_certificate_for_two_applications_is_refused(runtime: Runtime) -> None:
    certificate = b"0\x82 not really DER but bytes"
    with runtime.database.transaction() as session:
        _upsert(
            session, AgencyRecord("000.00.00.H53", "UBND tỉnh"), AgencyRecord("000.00.01.H53", "Văn phòng")
        )
        first = _application(session, registry.get_agency(session, "000.00.00.H53"), "QLVB", certificate)
        with pytest.raises(RegistryConflict, match="certificate"):
            _application(session, registry.get_agency(session, "000.00.01.H53"), "Cổng DVC", certificate)
    with runtime.database.transaction() as session:
        found = registry.find_application_by_certificate(session, hashlib.sha256(certificate).hexdigest())
        assert found is not None
        assert (found.id, found.agency.code, found.certificate_der) == (
            first.id,
            "000.00.00.H53",
            certificate,
        )


def test_rules_round_trip_in_insertion_order_without_duplicates(runtime: Runtime) -> None:
    rules = [
        AccessRule(RuleScope.DESTINATION, "000.00.00.H53/*"),
        AccessRule(RuleScope.DESTINATION, "000.00.32.H53/*", Effect.DENY),
        AccessRule(RuleScope.SERVICE, "DocumentExchange"),
        AccessRule(RuleScope.SERVICE, "Directory", Effect.DENY),
    ]
    with runtime.database.transaction() as session:
        _upsert(session, AgencyRecord("000.00.00.H53", "UBND tỉnh"))
        application = _application(session, registry.get_agency(session, "000.00.00.H53"), "QLVB")
        other = _application(session, registry.get_agency(session, "000.00.00.H53"), "Cổng DVC")
        for rule in [*rules, rules[0]]:
            registry.add_rule(session, application, rule, now=NOW)
        application_id, other_id = application.id, other.id
    with runtime.database.transaction() as session:
        stored = registry.rules_of(session, application_id)
        assert stored == rules
        assert all(isinstance(rule.scope, RuleScope) and isinstance(rule.effect, Effect) for rule in stored)
        assert registry.rules_of(session, other_id) == []
