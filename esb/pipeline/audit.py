"""Audit use cases: check the whole tamper-evident trace of a database, export evidence.

``verify_database`` streams every trace event in chain order and recomputes each hash and
link (:func:`esb.domain.trace_chain.verify_global`), compares the last link with the
stored chain head (so deleting the newest events is seen too), then checks every stored
receipt: its bytes against its recorded digest, its XML signature, and that the event it
attests still hashes to what it signed.  That last check catches even an attacker who
rewrote the chain and re-computed every hash: they cannot re-sign the receipts.

``export_evidence`` writes one document's bundle (:mod:`esb.security.evidence_bundle`),
issuing any receipt that is missing first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from esb.clock import Clock, utc_now
from esb.domain.signatures import SignatureReport, Verdict, report
from esb.domain.trace_chain import ChainBreak, ChainedEvent, timestamp, verify_global
from esb.errors import ClientError
from esb.pipeline.receipts import ReceiptIssuer
from esb.security.evidence_bundle import BundleContents, write_bundle
from esb.security.hub_receipts import verify_receipt
from esb.security.trust_store import TrustStore
from esb.storage import exchange_store, receipt_store, trace_log
from esb.storage.database import Database

Progress = Callable[[int], None]


@dataclass(frozen=True)
class ReceiptProblem:
    receipt_id: str
    hub_document_id: str
    trace_seq: int
    message: str


@dataclass
class AuditReport:
    events: int = 0
    documents: int = 0
    head_seq: int = 0
    head_hash: str = ""
    stored_head: tuple[int, str] = (0, "")
    first_break: ChainBreak | None = None
    receipts: int = 0
    receipt_problems: list[ReceiptProblem] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return self.first_break is None and not self.receipt_problems

    def to_dict(self) -> dict[str, object]:
        return {
            "intact": self.intact,
            "events": self.events,
            "documents": self.documents,
            "head": {"seq": self.head_seq, "hash": self.head_hash},
            "stored_head": {"seq": self.stored_head[0], "hash": self.stored_head[1]},
            "first_break": None
            if self.first_break is None
            else {
                "seq": self.first_break.seq,
                "hub_document_id": self.first_break.hub_document_id,
                "problem": self.first_break.problem,
                "message": self.first_break.message,
            },
            "receipts": self.receipts,
            "receipt_problems": [problem.__dict__ for problem in self.receipt_problems],
        }


def verify_database(
    database: Database,
    *,
    progress: Progress | None = None,
    trust: TrustStore | None = None,
    recorded_head: tuple[int, str] | None = None,
) -> AuditReport:
    """Check the whole chain and every receipt; ``progress`` is called with events checked so far.

    ``trust``: check receipts against these anchors instead of the hub certificates the
    database lists (which whoever writes the database could add to).  ``recorded_head``: a
    head (seq, hash) written down earlier, outside the hub: the event at that seq must still
    hash to it, so that even a consistent rewrite of everything after it is seen.
    """
    result = AuditReport()
    with database.transaction() as session:
        result.stored_head = trace_log.head(session)
        total_events = result.stored_head[0]
        chain = verify_global(_counted(trace_log.stream(session), progress))
    result.events, result.documents = chain.events, chain.documents
    result.head_seq, result.head_hash = chain.head_seq, chain.head_hash
    result.first_break = chain.first_break
    if result.first_break is None and (chain.head_seq, chain.head_hash) != result.stored_head:
        result.first_break = ChainBreak(
            chain.head_seq + 1,
            "",
            "missing-at-end",
            f"the chain ends at event {chain.head_seq}, but its head says {total_events}: "
            "the newest events were deleted (or the head was edited)",
        )
    if result.first_break is None and recorded_head is not None:
        result.first_break = _check_recorded_head(database, recorded_head)
    _check_receipts(database, result, trust)
    return result


def _check_recorded_head(database: Database, recorded: tuple[int, str]) -> ChainBreak | None:
    seq, expected = recorded
    with database.transaction() as session:
        current = trace_log.event_hash(session, seq)
    if current == expected.lower():
        return None
    found = "is gone" if current is None else f"now hashes to {current[:16]}…"
    return ChainBreak(
        seq, "", "recorded-head", f"event {seq}, recorded as {expected[:16]}…, {found}: the log was rewritten"
    )


def _counted(events: Iterator[ChainedEvent], progress: Progress | None) -> Iterator[ChainedEvent]:
    for count, event in enumerate(events, start=1):
        if progress is not None and count % 1000 == 0:
            progress(count)
        yield event


def _check_receipts(database: Database, result: AuditReport, trust: TrustStore | None) -> None:
    after = 0
    while True:
        with database.transaction() as session:
            batch = receipt_store.all_receipts(session, after_id=after, limit=500)
            hubs = {c.sha256 for c in receipt_store.hub_certificates(session)}
            attested = {row.trace_seq: trace_log.event_hash(session, row.trace_seq) for row, _ in batch}
        if not batch:
            return
        for row, hub_id in batch:
            result.receipts += 1
            problem = _receipt_problem(
                bytes(row.xml),
                row.sha256,
                hub_id,
                row.trace_seq,
                attested,
                hubs if trust is None else set(),
                trust,
            )
            if problem is not None:
                result.receipt_problems.append(ReceiptProblem(row.receipt_id, hub_id, row.trace_seq, problem))
        after = batch[-1][0].id


def _receipt_problem(
    xml: bytes,
    sha256: str,
    hub_id: str,
    seq: int,
    attested: dict[int, str | None],
    hubs: set[str],
    trust: TrustStore | None,
) -> str | None:
    if hashlib.sha256(xml).hexdigest() != sha256:
        return "the stored receipt bytes differ from their recorded SHA-256"
    try:
        check = verify_receipt(xml, trust=trust, hub_certificates=sorted(hubs))
    except ClientError as exc:
        return f"it is not a readable receipt: {exc.message}"
    if check.receipt is None or check.report.verdict is not Verdict.VALID:
        return f"its signature is {check.report.verdict.value} ({check.report.reason})"
    receipt = check.receipt
    if receipt.hub_document_id != hub_id or receipt.trace_seq != seq:
        return "it is filed under another document or event than it names"
    current = attested.get(seq)
    if current is None:
        return f"the event {seq} it attests is gone from the trace"
    if current != receipt.trace_hash:
        return f"the event {seq} it attests no longer hashes to what the hub signed"
    return None


# ---------------------------------------------------------------------------------- export


@dataclass(frozen=True)
class ExportSummary:
    path: Path
    sha256: str
    events: int
    receipts: int


def export_evidence(
    database: Database,
    receipts: ReceiptIssuer,
    hub_id: str,
    out: Path,
    *,
    exported_by: str,
    clock: Clock = utc_now,
) -> ExportSummary:
    issued = receipts.receipts_for(None, hub_id)  # issues any that are missing
    with database.transaction() as session:
        document = exchange_store.find_document(session, hub_id)
        if document is None:
            raise exchange_store.DocumentNotFound(f"no document {hub_id}")
        trace = trace_log.chain_of(session, document)
        head = trace_log.head(session)
        hub_certificates = {c.sha256: c.pem for c in receipt_store.hub_certificates(session)}
        rows = receipt_store.receipts_of(session, document)
        facts = {
            "hub_document_id": document.hub_id,
            "document_id": document.document_id,
            "message_type": document.message_type,
            "sender": document.sender_code,
            "recipients": [
                {
                    "code": d.recipient_code,
                    "state": d.state,
                    "confirmed_at": _iso(d.confirmed_at),
                    "delivered_sha256": d.delivered_sha256,
                }
                for d in document.deliveries
            ],
            "accepted_at": timestamp(document.accepted_at),
            "accepted_sha256": document.sha256,
            "accepted_size": document.size,
            "delivered_sha256": document.delivered_sha256,
            "delivered_size": document.delivered_size,
            "state": document.state,
            "purged_at": _iso(document.purged_at),
        }
        signature = (
            SignatureReport.from_json(document.signature_report)
            if document.signature_report
            else report("policy-off", "recorded before signatures were verified")
        )
        used = sorted({row.hub_certificate_sha256 for row in rows})
    contents = BundleContents(
        hub_document_id=hub_id,
        exported_at=timestamp(clock()),
        exported_by=exported_by,
        chain_head=head,
        document=facts,
        trace=trace,
        signature=signature.to_dict(),
        receipts=[(f"{r.trace_seq:08d}-{r.kind.value}.xml", r.xml) for r in issued],
        certificates=[
            (f"hub-{sha[:16]}.pem", hub_certificates[sha].encode("ascii"))
            for sha in used
            if sha in hub_certificates
        ],
    )
    sha = write_bundle(out, contents, seal_with=receipts.key)
    return ExportSummary(out, sha, len(trace), len(issued))


def _iso(value: datetime | None) -> str | None:
    return timestamp(value) if value is not None else None
