"""Tests for esb.domain.agencies: agency records as typed or imported, checked before storage."""

from __future__ import annotations

import pytest

from esb.domain.access import AgencyState
from esb.domain.agencies import AgencyRecord, account_for, record_from_row
from esb.errors import InvalidIdentifier

# AgencyRecord -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        "ABC",
        "000.1137.H53",  # found in real data, but neither form
        "000.00.00.h53",  # lower case
        "001.00.07.H53",  # QCVN 102 with a gap in the hierarchy
        "L53.01",  # no such level-1 group
        "000.00.00 .H53",
        "",
        "   ",
        "H53." + "1" * 70,
    ],
)
def test_nonconforming_code_is_refused(code: str) -> None:
    with pytest.raises(InvalidIdentifier) as caught:
        AgencyRecord(code, "UBND tỉnh Tây Ninh")
    assert caught.value.code == "Client.InvalidIdentifier"


@pytest.mark.parametrize("code", ["000.00.00.H53", "000.05.32.H53", "G09", "H37.DN.001"])
def test_conforming_codes_of_both_forms_are_accepted(code: str) -> None:
    assert AgencyRecord(f"  {code}\t", "Cơ quan").code == code


def test_name_whitespace_is_collapsed() -> None:
    record = AgencyRecord("000.00.01.H53", "  Văn phòng   UBND\ttỉnh\n Tây Ninh ")
    assert record.name == "Văn phòng UBND tỉnh Tây Ninh"


@pytest.mark.parametrize("name", ["", " \t\n ", "x" * 513])
def test_empty_or_too_long_name_is_refused(name: str) -> None:
    with pytest.raises(InvalidIdentifier):
        AgencyRecord("000.00.01.H53", name)


def test_name_of_512_characters_is_accepted() -> None:
    assert len(AgencyRecord("000.00.01.H53", "ồ" * 512).name) == 512


@pytest.mark.parametrize("email", ["vanthu", "vanthu@tayninh", "van thu@tayninh.gov.vn", "a@@b.vn"])
def test_malformed_email_is_refused(email: str) -> None:
    with pytest.raises(InvalidIdentifier, match="e-mail"):
        AgencyRecord("000.00.01.H53", "Văn phòng", email=email)


def test_email_is_trimmed_and_blank_optional_fields_become_none() -> None:
    record = AgencyRecord(
        "000.00.01.H53", "Văn phòng", email=" vanthu@tayninh.gov.vn ", address="  ", old_code=""
    )
    assert record.email == "vanthu@tayninh.gov.vn"
    assert record.address is None
    assert record.old_code is None


@pytest.mark.parametrize(
    ("code", "parent"),
    [
        ("000.05.32.H53", "000.00.32.H53"),
        ("000.00.32.H53", "000.00.00.H53"),
        ("000.00.00.H53", None),
        ("H37.DN.001", "H37.DN"),
        ("G09", None),
    ],
)
def test_parent_code_is_derived_from_the_code(code: str, parent: str | None) -> None:
    assert AgencyRecord(code, "Cơ quan").parent_code == parent


def test_explicit_parent_code_is_kept() -> None:
    assert AgencyRecord("000.00.01.H53", "Cơ quan", parent_code="H53").parent_code == "H53"


def test_account_is_code_at_province_domain() -> None:
    assert account_for("000.00.01.H53", "lgsp.tayninh.gov.vn") == "000.00.01.H53@lgsp.tayninh.gov.vn"


# record_from_row ----------------------------------------------------------------------------------


def test_row_with_vietnamese_column_names_becomes_a_record() -> None:
    row = {
        "Ma Dinh Danh": " 000.05.32.H53 ",
        "TenCoQuan": "Phòng  Nội vụ huyện Châu Thành",
        "QD20": "H53.32.05",
        "Ma Cu": "",
        "Ma Cha": "000.00.32.H53",
        "Dia Chi": "Thị trấn Châu Thành",
        "Email": "pnv@chauthanh.tayninh.gov.vn",
        "Trang Thai": "Locked",
        "Ghi chu": "ignored column",
    }
    assert record_from_row(row) == AgencyRecord(
        code="000.05.32.H53",
        name="Phòng Nội vụ huyện Châu Thành",
        qd20_code="H53.32.05",
        old_code=None,
        parent_code="000.00.32.H53",
        address="Thị trấn Châu Thành",
        email="pnv@chauthanh.tayninh.gov.vn",
        state=AgencyState.LOCKED,
    )


@pytest.mark.parametrize("code_column", ["code", "ma", "madinhdanh", "OrganId", "ma_dinh_danh"])
def test_every_code_column_alias_is_read(code_column: str) -> None:
    record = record_from_row({code_column: "000.00.00.G22", "ten": "Văn phòng Chính phủ"})
    assert record.code == "000.00.00.G22"
    assert record.state is AgencyState.ACTIVE


@pytest.mark.parametrize("row", [{"ten": "Văn phòng"}, {"ma_dinh_danh": "  ", "ten": "Văn phòng"}])
def test_row_without_code_is_refused(row: dict[str, str]) -> None:
    with pytest.raises(InvalidIdentifier, match="no code column"):
        record_from_row(row)


def test_row_with_unknown_state_is_refused() -> None:
    with pytest.raises(InvalidIdentifier, match="state 'closed'"):
        record_from_row({"code": "000.00.01.H53", "name": "Văn phòng", "state": "Closed"})


def test_row_without_name_is_refused_as_invalid_identifier() -> None:
    with pytest.raises(InvalidIdentifier):
        record_from_row({"ma_dinh_danh": "000.00.01.H53", "email": "vp@tayninh.gov.vn"})
