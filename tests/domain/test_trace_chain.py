"""The hash chain of trace events: each link, and what each kind of tampering looks like."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from esb.domain.trace_chain import (
    GENESIS,
    ChainedEvent,
    chain_event,
    timestamp,
    verify_document,
    verify_global,
)

T0 = datetime(2026, 11, 21, 8, 30, tzinfo=UTC)


def build(spec: list[tuple[str, str]]) -> list[ChainedEvent]:
    """Events for (document, kind) pairs, chained as the trace log chains them."""
    events: list[ChainedEvent] = []
    last: dict[str, str] = {}
    previous = GENESIS
    for seq, (doc, kind) in enumerate(spec, start=1):
        event = chain_event(
            seq=seq,
            hub_document_id=doc,
            at=T0 + timedelta(seconds=seq),
            kind=kind,
            actor="000.00.00.H53/QLVB",
            recipient="000.00.00.H30" if kind == "confirmed" else None,
            sha256="ab" * 32 if kind in ("accepted", "confirmed") else None,
            detail="Sở TT&TT — chi tiết" if kind == "accepted" else None,
            prev_hash=previous,
            doc_prev_hash=last.get(doc, GENESIS),
        )
        events.append(event)
        previous = last[doc] = event.hash
    return events


SPEC = [
    ("A", "accepted"),
    ("B", "accepted"),
    ("A", "routed"),
    ("B", "routed"),
    ("A", "confirmed"),
    ("A", "purged"),
]


def test_an_intact_chain_verifies_globally_and_per_document() -> None:
    events = build(SPEC)
    check = verify_global(events)
    assert check.intact
    assert (check.events, check.documents, check.head_seq, check.head_hash) == (6, 2, 6, events[-1].hash)
    only_a = [e for e in events if e.hub_document_id == "A"]
    assert verify_document(only_a).intact
    assert verify_document(only_a).head_hash == only_a[-1].hash


def test_the_hash_is_sha256_of_canonical_json_that_any_tool_can_recompute() -> None:
    event = build(SPEC)[0]
    fields = {k: v for k, v in event.to_dict().items() if k != "hash"}
    canonical = json.dumps(fields, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()
    assert hashlib.sha256(canonical).hexdigest() == event.hash
    assert event.at == "2026-11-21T08:30:01.000000Z"


def test_times_are_hashed_in_utc_whatever_zone_they_come_in() -> None:
    ict = timezone(timedelta(hours=7))
    assert timestamp(T0.astimezone(ict)) == timestamp(T0)
    with pytest.raises(ValueError, match="naive"):
        timestamp(T0.replace(tzinfo=None))


@pytest.mark.parametrize("field", ["kind", "actor", "detail", "sha256", "at", "recipient", "hub_document_id"])
def test_editing_any_field_is_found_at_that_event(field: str) -> None:
    events = build(SPEC)
    events[2] = replace(events[2], **{field: "edited"})
    brk = verify_global(events).first_break
    assert brk is not None
    assert (brk.seq, brk.problem) == (3, "edited")


def test_an_edit_with_its_hash_recomputed_breaks_the_next_link() -> None:
    events = build(SPEC)
    forged = replace(events[2], detail="forged")
    events[2] = replace(forged, hash=forged.computed_hash())
    brk = verify_global(events).first_break
    assert brk is not None
    assert (brk.seq, brk.problem) == (4, "missing-before")


def test_deleting_an_event_leaves_a_gap() -> None:
    events = build(SPEC)
    del events[3]
    brk = verify_global(events).first_break
    assert brk is not None
    assert (brk.seq, brk.problem) == (5, "missing-before")
    assert "4..4" in brk.message


def test_deleting_and_renumbering_still_breaks_the_link() -> None:
    events = build(SPEC)
    del events[1]
    renumbered = [replace(e, seq=i) for i, e in enumerate(events, start=1)]
    check = verify_global(renumbered)
    assert not check.intact  # the seq is hashed: renumbering is an edit


def test_swapping_two_events_is_found() -> None:
    events = build(SPEC)
    events[1], events[2] = events[2], events[1]
    assert verify_global(events).first_break is not None


def test_a_document_link_pointing_elsewhere_is_found() -> None:
    events = build(SPEC)
    rogue = replace(events[2], doc_prev_hash=GENESIS)  # A's routed event claims to be A's first
    events[2] = replace(rogue, hash=rogue.computed_hash())
    # the global link is fine up to here, the document link is not
    brk = verify_global(events[:3]).first_break
    assert brk is not None
    assert (brk.seq, brk.problem) == (3, "document-link")


def test_a_partial_run_verifies_from_a_known_link() -> None:
    events = build(SPEC)
    check = verify_global(events[3:], start_seq=4, start_hash=events[2].hash)
    assert check.first_break is not None  # document links need the earlier events of A and B
    assert check.first_break.problem == "document-link"


def test_document_chain_checks_links_and_order() -> None:
    only_a = [e for e in build(SPEC) if e.hub_document_id == "A"]
    assert verify_document(only_a[::-1]).first_break is not None
    dropped = [only_a[0], *only_a[2:]]
    brk = verify_document(dropped).first_break
    assert brk is not None
    assert brk.problem == "document-link"
    assert verify_document([]).intact


def test_round_trip_through_dict_and_type_checks() -> None:
    event = build(SPEC)[4]
    assert ChainedEvent.from_dict(event.to_dict()) == event
    with pytest.raises(TypeError):
        ChainedEvent.from_dict({**event.to_dict(), "seq": "5"})
    with pytest.raises(TypeError):
        ChainedEvent.from_dict({**event.to_dict(), "detail": 3})
    with pytest.raises(KeyError):
        ChainedEvent.from_dict({k: v for k, v in event.to_dict().items() if k != "hash"})
