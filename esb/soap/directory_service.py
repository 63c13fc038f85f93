"""``/soap/Directory``: find agencies by code or Vietnamese name, read one, sync the changes.

FindAgencies matches identifier codes (exact, prefix, subtree; QCVN 102, QĐ 20 and former
codes) and names with or without diacritics and with the usual abbreviations; GetAgency
gives one agency with its parent, its direct children and their presence; GetAgencyChanges
pages through the agencies changed since a version (delta sync).  See docs/directory.md.
"""

from __future__ import annotations

from typing import Any

from spyne import Array, Boolean, ComplexModel, Int, Long, Unicode, rpc

from esb.domain.directory_search import DirectoryEntry
from esb.pipeline.directory import AgencySummary as Summary
from esb.soap.context import request_context, require_caller
from esb.soap.faults import TranslatingService, make_fault_class
from esb.soap.soap_types import auth_header, out, text

NAMESPACE = "urn:lgsp-esb:directory:1"
SERVICE = "Directory"

EsbFault = make_fault_class(NAMESPACE)
AuthHeader = auth_header(NAMESPACE)


class AgencySummary(ComplexModel):  # type: ignore[misc]
    """An agency in a result: its codes, name, place in the hierarchy, state and presence."""

    __namespace__ = NAMESPACE
    _type_info = [  # noqa: RUF012
        ("code", out(Unicode)),
        ("qd20Code", out(Unicode, 0)),
        ("oldCode", out(Unicode, 0)),
        ("name", out(Unicode)),
        ("parentCode", out(Unicode, 0)),
        ("level", out(Int)),
        ("state", out(Unicode)),  # active | locked
        ("presence", out(Unicode)),  # online | offline | unknown
        ("match", out(Unicode, 0)),  # code | code-prefix | subtree | name-exact | name-prefix | ...
        ("score", out(Int, 0)),  # 7 (exact code) .. 1 (every word, in any order)
    ]


class AgencyDetail(ComplexModel):  # type: ignore[misc]
    """One agency with its parent and direct children (GetAgency)."""

    __namespace__ = NAMESPACE
    _type_info = [  # noqa: RUF012
        ("code", out(Unicode)),
        ("qd20Code", out(Unicode, 0)),
        ("oldCode", out(Unicode, 0)),
        ("name", out(Unicode)),
        ("parentCode", out(Unicode, 0)),
        ("level", out(Int)),
        ("state", out(Unicode)),
        ("presence", out(Unicode)),
        ("version", out(Long)),
        ("parent", AgencySummary.customize(min_occurs=0, nillable=False)),
        ("child", AgencySummary.customize(min_occurs=0, max_occurs="unbounded", nillable=False)),
    ]


class AgencyChange(ComplexModel):  # type: ignore[misc]
    """An agency as it is after a change; ``state`` says whether it is still active."""

    __namespace__ = NAMESPACE
    _type_info = [  # noqa: RUF012
        ("code", out(Unicode)),
        ("qd20Code", out(Unicode, 0)),
        ("oldCode", out(Unicode, 0)),
        ("name", out(Unicode)),
        ("parentCode", out(Unicode, 0)),
        ("level", out(Int)),
        ("state", out(Unicode)),
        ("version", out(Long)),
    ]


class AgencyChanges(ComplexModel):  # type: ignore[misc]
    """A page of changes: pass ``version`` as the next ``sinceVersion``; ``more`` if a page waits."""

    __namespace__ = NAMESPACE
    _type_info = [  # noqa: RUF012
        ("version", out(Long)),
        ("more", out(Boolean)),
        ("agency", AgencyChange.customize(min_occurs=0, max_occurs="unbounded", nillable=False)),
    ]


class DirectoryService(TranslatingService):
    fault_class = EsbFault

    @rpc(
        text(0),
        text(0),
        Int(min_occurs=0, nillable=False),
        Boolean(min_occurs=0, nillable=False),
        Int(min_occurs=0, nillable=False),
        _in_header=(AuthHeader,),
        _returns=Array(AgencySummary.customize(nillable=False), min_occurs=1, nillable=False),
        _throws=[EsbFault],
    )
    def FindAgencies(
        ctx: Any,
        query: str | None,
        parentCode: str | None,
        level: int | None,
        onlyOnline: bool | None,
        limit: int | None,
    ) -> list[AgencySummary]:
        """Agencies by code or name (with or without diacritics, abbreviations), best first."""
        require_caller(ctx, SERVICE)
        found = request_context(ctx).services.directory.find(
            query,
            parent_code=parentCode or None,
            level=level,
            only_online=bool(onlyOnline),
            limit=limit,
        )
        return [_summary(item) for item in found]

    @rpc(
        text(1, 4096),
        _in_header=(AuthHeader,),
        _returns=AgencyDetail.customize(min_occurs=1, nillable=False),
        _throws=[EsbFault],
    )
    def GetAgency(ctx: Any, code: str) -> AgencyDetail:
        """One agency by any of its codes, with its parent, its direct children and presence."""
        require_caller(ctx, SERVICE)
        view = request_context(ctx).services.directory.get(code)
        entry = view.agency.entry
        return AgencyDetail(
            **_codes(entry),
            presence=view.agency.presence.value,
            version=entry.version,
            parent=_summary(view.parent) if view.parent is not None else None,
            child=[_summary(child) for child in view.children],
        )

    @rpc(
        Long(min_occurs=1, nillable=False),
        Int(min_occurs=0, nillable=False),
        _in_header=(AuthHeader,),
        _returns=AgencyChanges.customize(min_occurs=1, nillable=False),
        _throws=[EsbFault],
    )
    def GetAgencyChanges(ctx: Any, sinceVersion: int, limit: int | None) -> AgencyChanges:
        """Agencies changed after ``sinceVersion`` (0: the whole directory, page by page), oldest first."""
        require_caller(ctx, SERVICE)
        page = request_context(ctx).services.directory.changes(sinceVersion, limit)
        return AgencyChanges(
            version=page.version,
            more=page.more,
            agency=[AgencyChange(**_codes(entry), version=entry.version) for entry in page.entries],
        )


def _codes(entry: DirectoryEntry) -> dict[str, Any]:
    return {
        "code": entry.code,
        "qd20Code": entry.qd20_code,
        "oldCode": entry.old_code,
        "name": entry.name,
        "parentCode": entry.parent,
        "level": entry.level,
        "state": entry.state,
    }


def _summary(item: Summary) -> AgencySummary:
    return AgencySummary(
        **_codes(item.entry),
        presence=item.presence.value,
        match=item.match.value if item.match is not None else None,
        score=item.score,
    )
