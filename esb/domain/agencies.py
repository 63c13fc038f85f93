"""Agency records as operators type or import them (CSV/JSON rows), checked before storage."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from esb.domain.access import AgencyState
from esb.domain.identifiers import CodeForm, classify_organ_id, parent_code
from esb.errors import InvalidIdentifier

__all__ = ["AgencyRecord", "account_for", "record_from_row"]

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_MAX_NAME = 512

# Column names accepted in imports, lower-cased, each mapped to the record field.
# Vietnamese headings appear in real agency lists (danh mục mã định danh).
_ALIASES = {
    "code": "code",
    "ma": "code",
    "madinhdanh": "code",
    "organid": "code",
    "ma_dinh_danh": "code",
    "name": "name",
    "ten": "name",
    "tencoquan": "name",
    "organname": "name",
    "qd20_code": "qd20_code",
    "qd20": "qd20_code",
    "old_code": "old_code",
    "ma_cu": "old_code",
    "parent": "parent_code",
    "parent_code": "parent_code",
    "ma_cha": "parent_code",
    "address": "address",
    "dia_chi": "address",
    "email": "email",
    "state": "state",
    "trang_thai": "state",
}


@dataclass(frozen=True)
class AgencyRecord:
    code: str
    name: str
    qd20_code: str | None = None
    old_code: str | None = None
    parent_code: str | None = None
    address: str | None = None
    email: str | None = None
    state: AgencyState = AgencyState.ACTIVE

    def __post_init__(self) -> None:
        code = self.code.strip() if isinstance(self.code, str) else ""
        if not code or len(code) > 64 or any(ch.isspace() for ch in code):
            raise InvalidIdentifier(f"agency code {self.code!r} is empty, too long or contains spaces")
        if classify_organ_id(code).form is CodeForm.NONCONFORMING:
            raise InvalidIdentifier(f"agency code {code!r} is neither a QCVN 102 nor a QĐ 20 identifier code")
        object.__setattr__(self, "code", code)
        name = " ".join(self.name.split()) if isinstance(self.name, str) else ""
        if not name or len(name) > _MAX_NAME:
            raise InvalidIdentifier(f"agency {code}: the name is empty or longer than {_MAX_NAME} characters")
        object.__setattr__(self, "name", name)
        for optional in ("qd20_code", "old_code", "parent_code", "address", "email"):
            value = getattr(self, optional)
            object.__setattr__(self, optional, value.strip() or None if isinstance(value, str) else None)
        if self.email is not None and _EMAIL.match(self.email) is None:
            raise InvalidIdentifier(f"agency {code}: {self.email!r} is not an e-mail address")
        if self.parent_code is None:
            object.__setattr__(self, "parent_code", parent_code(code))
        object.__setattr__(self, "state", AgencyState(self.state))


def account_for(code: str, province_domain: str) -> str:
    """The agency's account on the platform: ``<code>@<province domain>``."""
    return f"{code}@{province_domain}"


def record_from_row(row: Mapping[str, object]) -> AgencyRecord:
    """An :class:`AgencyRecord` from one CSV/JSON row; unknown columns are ignored."""
    fields: dict[str, str] = {}
    for key, value in row.items():
        name = _ALIASES.get(str(key).strip().lower().replace(" ", "_"))
        if name is not None and value is not None and str(value).strip():
            fields[name] = str(value).strip()
    if "code" not in fields:
        raise InvalidIdentifier("the row has no code column (code, ma_dinh_danh or organid)")
    if "name" not in fields:
        raise InvalidIdentifier(f"agency {fields['code']}: the row has no name (name, ten or organname)")
    state = fields.pop("state", AgencyState.ACTIVE.value).lower()
    if state not in (s.value for s in AgencyState):
        raise InvalidIdentifier(f"agency {fields['code']}: state {state!r} is not active or locked")
    return AgencyRecord(state=AgencyState(state), **fields)
