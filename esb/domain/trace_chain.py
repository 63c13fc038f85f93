"""The tamper-evident trace: every trace event chained by hash.

Each event's hash covers its own fields, the hash of the previous event in the global log
(``prev_hash``: one chain through every event of every document, in ``seq`` order) and the
hash of the previous event of the same document (``doc_prev_hash``).  Editing an event
changes its hash, so the next link breaks; deleting one leaves a gap in ``seq`` and a link
that points at nothing; re-ordering breaks both.  A hub receipt carries the hash of the
event it attests, so anyone holding a receipt holds a commitment to the whole log up to
that event: even a rewrite of the entire tail is caught by the oldest receipt it contradicts.

The encoding is canonical JSON (sorted keys, no spaces, UTF-8) of the fields below, so the
hash can be recomputed by any tool from an exported trace without this code.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

GENESIS = "0" * 64  # prev_hash of the first event ever, and doc_prev_hash of a document's first

# The fields an event hash covers, in the order `esb audit` prints them.
HASHED_FIELDS = (
    "seq",
    "hub_document_id",
    "at",
    "kind",
    "actor",
    "recipient",
    "sha256",
    "detail",
    "prev_hash",
    "doc_prev_hash",
)


def timestamp(at: datetime) -> str:
    """The hashed form of a time: UTC, microseconds, ``Z`` (what both engines store exactly)."""
    if at.tzinfo is None:
        raise ValueError("naive datetime in the trace chain")
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class ChainedEvent:
    """One trace event as the chain sees it (what is hashed, plus the stored hash)."""

    seq: int
    hub_document_id: str
    at: str  # :func:`timestamp` form
    kind: str
    actor: str
    recipient: str | None
    sha256: str | None
    detail: str | None
    prev_hash: str
    doc_prev_hash: str
    hash: str

    def canonical(self) -> bytes:
        fields = {name: getattr(self, name) for name in HASHED_FIELDS}
        return json.dumps(fields, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")

    def computed_hash(self) -> str:
        return hashlib.sha256(self.canonical()).hexdigest()

    def to_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in (*HASHED_FIELDS, "hash")}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> ChainedEvent:
        def text(name: str) -> str:
            value = data[name]
            if not isinstance(value, str):
                raise TypeError(f"{name} must be a string")
            return value

        def optional(name: str) -> str | None:
            value = data.get(name)
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} must be a string or null")
            return value

        seq = data["seq"]
        if not isinstance(seq, int) or isinstance(seq, bool):
            raise TypeError("seq must be an integer")
        return cls(
            seq=seq,
            hub_document_id=text("hub_document_id"),
            at=text("at"),
            kind=text("kind"),
            actor=text("actor"),
            recipient=optional("recipient"),
            sha256=optional("sha256"),
            detail=optional("detail"),
            prev_hash=text("prev_hash"),
            doc_prev_hash=text("doc_prev_hash"),
            hash=text("hash"),
        )


def chain_event(
    *,
    seq: int,
    hub_document_id: str,
    at: datetime,
    kind: str,
    actor: str,
    recipient: str | None,
    sha256: str | None,
    detail: str | None,
    prev_hash: str,
    doc_prev_hash: str,
) -> ChainedEvent:
    """A new link: the event with both previous hashes and its own hash."""
    unhashed = ChainedEvent(
        seq=seq,
        hub_document_id=hub_document_id,
        at=timestamp(at),
        kind=kind,
        actor=actor,
        recipient=recipient,
        sha256=sha256,
        detail=detail,
        prev_hash=prev_hash,
        doc_prev_hash=doc_prev_hash,
        hash="",
    )
    return replace(unhashed, hash=unhashed.computed_hash())


@dataclass(frozen=True)
class ChainBreak:
    """The first broken link found: where, and what is wrong there."""

    seq: int
    hub_document_id: str
    problem: str  # edited | missing-before | document-link | reordered
    message: str


@dataclass(frozen=True)
class ChainCheck:
    events: int
    documents: int
    head_seq: int
    head_hash: str
    first_break: ChainBreak | None

    @property
    def intact(self) -> bool:
        return self.first_break is None


def verify_global(
    events: Iterable[ChainedEvent], *, start_seq: int = 1, start_hash: str = GENESIS
) -> ChainCheck:
    """Check a run of the global log, in ``seq`` order, from ``start_seq`` (1 = the beginning).

    Consumes ``events`` lazily, so a whole database can be streamed through it.
    """
    expected_seq, previous = start_seq, start_hash
    last_of_document: dict[str, str] = {}
    count = 0
    for event in events:
        problem = _check_link(
            event, expected_seq, previous, last_of_document.get(event.hub_document_id, GENESIS)
        )
        if problem is not None:
            return ChainCheck(count, len(last_of_document), expected_seq - 1, previous, problem)
        last_of_document[event.hub_document_id] = event.hash
        expected_seq, previous = event.seq + 1, event.hash
        count += 1
    return ChainCheck(count, len(last_of_document), expected_seq - 1, previous, None)


def verify_document(events: Iterable[ChainedEvent]) -> ChainCheck:
    """Check one document's own chain (what an evidence bundle carries): every hash recomputes
    and each event links to the one before it; ``seq`` only has to increase."""
    previous = GENESIS
    last_seq = 0
    count = 0
    hub_id = ""
    for event in events:
        hub_id = event.hub_document_id
        if event.computed_hash() != event.hash:
            return ChainCheck(count, 1, last_seq, previous, _edited(event))
        if event.seq <= last_seq:
            return ChainCheck(
                count,
                1,
                last_seq,
                previous,
                ChainBreak(event.seq, hub_id, "reordered", f"event {event.seq} comes after event {last_seq}"),
            )
        if event.doc_prev_hash != previous:
            return ChainCheck(count, 1, last_seq, previous, _document_link(event, previous))
        previous, last_seq = event.hash, event.seq
        count += 1
    return ChainCheck(count, 1 if count else 0, last_seq, previous, None)


def _check_link(
    event: ChainedEvent, expected_seq: int, previous: str, document_previous: str
) -> ChainBreak | None:
    if event.computed_hash() != event.hash:
        return _edited(event)
    if event.seq > expected_seq:
        return ChainBreak(
            event.seq,
            event.hub_document_id,
            "missing-before",
            f"events {expected_seq}..{event.seq - 1} are missing (deleted) before event {event.seq}",
        )
    if event.seq < expected_seq:
        return ChainBreak(
            event.seq,
            event.hub_document_id,
            "reordered",
            f"event {event.seq} comes after event {expected_seq - 1}",
        )
    if event.prev_hash != previous:
        return ChainBreak(
            event.seq,
            event.hub_document_id,
            "missing-before",
            f"event {event.seq} links to {event.prev_hash[:12]}…, "
            f"but the event before it hashes to {previous[:12]}…",
        )
    if event.doc_prev_hash != document_previous:
        return _document_link(event, document_previous)
    return None


def _edited(event: ChainedEvent) -> ChainBreak:
    return ChainBreak(
        event.seq,
        event.hub_document_id,
        "edited",
        f"event {event.seq} ({event.kind}) does not hash to its stored hash: a field was changed",
    )


def _document_link(event: ChainedEvent, expected: str) -> ChainBreak:
    return ChainBreak(
        event.seq,
        event.hub_document_id,
        "document-link",
        f"event {event.seq} ({event.kind}) links to {event.doc_prev_hash[:12]}… as the document's previous "
        f"event, but that event hashes to {expected[:12]}…",
    )
