"""Auditing a database's trace chain and receipts, and evidence bundles, on both engines.

The exchange runs as wired for production (``build_runtime``: a hub key made in the data
directory, receipts issued after each commit); the tampering is done with plain SQL, as
someone with database access would do it.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, text, update

from esb.domain.access import Caller
from esb.domain.exchange import Outcome
from esb.domain.trace_chain import GENESIS, chain_event
from esb.pipeline.audit import export_evidence, verify_database
from esb.pipeline.demo_packages import build_edoc, edoc_spec
from esb.pipeline.demo_seed import seed_demo
from esb.security.evidence_bundle import BundleUnreadable, verify_bundle
from esb.security.pki import load_certificates
from esb.security.trust_store import TrustStore
from esb.storage import registry, trace_log
from esb.storage.tables import Document, HubReceiptRow, TraceChainHead, TraceEventRow
from esb.wiring import Runtime

SENDER, RECIPIENT, OTHER = "000.00.00.H53", "000.00.00.H30", "000.00.01.H53"


@dataclass
class Exchanged:
    runtime: Runtime
    hub_ids: list[str]
    packages: dict[str, bytes]
    hub_trust: TrustStore

    def sql(self, statement: str, **params: object) -> None:
        with self.runtime.database.transaction() as session:
            session.execute(text(statement), params)


def _caller(runtime: Runtime, code: str) -> Caller:
    with runtime.database.transaction() as session:
        return Caller(code, registry.get_application(session, code, "QLVB").id, "QLVB", None)


@pytest.fixture
def exchanged(runtime: Runtime) -> Exchanged:
    """Three documents: one confirmed by its recipient (so purged), two still pending."""
    seed_demo(runtime.registration)
    sender, recipient = _caller(runtime, SENDER), _caller(runtime, RECIPIENT)
    hub_ids, packages = [], {}
    for number, recipients in (("1", [RECIPIENT]), ("2", [RECIPIENT, OTHER]), ("3", [OTHER])):
        spec = edoc_spec(SENDER, recipients, number=number, promulgated=date(2026, 11, 20))
        package = build_edoc(spec, f"nội dung {number}".encode(), now=datetime.now(UTC))
        receipt = runtime.exchange.send_document(sender, package=package)
        hub_ids.append(receipt.hub_document_id)
        packages[receipt.hub_document_id] = package
    fetched = runtime.exchange.get_document(recipient, hub_ids[0])
    assert fetched.package is not None
    runtime.exchange.confirm(recipient, hub_ids[0], hashlib.sha256(fetched.package).hexdigest(), Outcome.DONE)
    hub_cert = load_certificates(runtime.settings.hub_cert_file.read_bytes())  # type: ignore[union-attr]
    return Exchanged(runtime, hub_ids, packages, TrustStore.of(hub_cert[:1]))


def _events(exchanged: Exchanged) -> list[TraceEventRow]:
    with exchanged.runtime.database.transaction() as session:
        return list(session.scalars(select(TraceEventRow).order_by(TraceEventRow.seq)))


def test_an_untouched_database_is_intact(exchanged: Exchanged) -> None:
    result = verify_database(exchanged.runtime.database)
    events = _events(exchanged)
    assert result.intact, result.to_dict()
    assert (result.events, result.documents) == (len(events), 3)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert (result.head_seq, result.head_hash) == result.stored_head == (events[-1].seq, events[-1].hash)
    # 3 acceptances and 1 confirmed delivery: 4 receipts, each checked
    assert result.receipts == 4


def test_editing_one_event_names_it(exchanged: Exchanged) -> None:
    events = _events(exchanged)
    routed = next(e for e in events if e.kind == "routed")
    exchanged.sql("UPDATE trace_event SET detail = 'nothing happened' WHERE seq = :seq", seq=routed.seq)
    result = verify_database(exchanged.runtime.database)
    assert result.first_break is not None
    assert (result.first_break.seq, result.first_break.problem) == (routed.seq, "edited")
    assert not result.intact


def test_deleting_an_event_leaves_a_gap(exchanged: Exchanged) -> None:
    events = _events(exchanged)
    victim = events[3]
    exchanged.sql("DELETE FROM trace_event WHERE seq = :seq", seq=victim.seq)
    result = verify_database(exchanged.runtime.database)
    assert result.first_break is not None
    assert (result.first_break.seq, result.first_break.problem) == (victim.seq + 1, "missing-before")


def test_deleting_the_newest_events_is_seen_against_the_head(exchanged: Exchanged) -> None:
    newest = _events(exchanged)[-1]
    assert newest.kind == "purged"
    assert newest.seq not in _attested(exchanged)  # no receipt gives it away
    exchanged.sql("DELETE FROM trace_event WHERE seq = :seq", seq=newest.seq)
    result = verify_database(exchanged.runtime.database)
    assert result.first_break is not None
    assert (result.first_break.seq, result.first_break.problem) == (newest.seq, "missing-at-end")


def test_a_rewritten_and_rehashed_chain_is_caught_by_the_signed_receipts(exchanged: Exchanged) -> None:
    """Someone edits an accepted event, recomputes every hash after it and the head: the chain
    is consistent again, but the receipt the hub signed for that event no longer matches."""
    accepted = next(e for e in _events(exchanged) if e.kind == "accepted")
    with exchanged.runtime.database.transaction() as session:
        rows = list(session.scalars(select(TraceEventRow).order_by(TraceEventRow.seq)))
        hub_of = {row[0]: row[1] for row in session.execute(select(Document.id, Document.hub_id)).all()}
        previous, last_of = GENESIS, {}
        for row in rows:
            if row.seq == accepted.seq:
                row.sha256 = "0" * 64  # claim another package was accepted
            link = chain_event(
                seq=row.seq,
                hub_document_id=hub_of[row.document_id],
                at=row.at,
                kind=row.kind,
                actor=row.actor,
                recipient=row.recipient_code,
                sha256=row.sha256,
                detail=row.detail,
                prev_hash=previous,
                doc_prev_hash=last_of.get(row.document_id, GENESIS),
            )
            row.prev_hash, row.doc_prev_hash, row.hash = link.prev_hash, link.doc_prev_hash, link.hash
            previous = last_of[row.document_id] = link.hash
        session.execute(update(TraceChainHead).values(seq=rows[-1].seq, hash=previous))
    result = verify_database(exchanged.runtime.database)
    assert result.first_break is None  # the chain itself was re-forged consistently
    assert not result.intact
    # A head written down before the rewrite gives it away too, receipts or not.
    recorded = verify_database(exchanged.runtime.database, recorded_head=(accepted.seq, accepted.hash))
    assert recorded.first_break is not None
    assert (recorded.first_break.seq, recorded.first_break.problem) == (accepted.seq, "recorded-head")
    problems = {p.trace_seq: p.message for p in result.receipt_problems}
    assert "no longer hashes to what the hub signed" in problems[accepted.seq]


def test_an_edited_receipt_is_caught(exchanged: Exchanged) -> None:
    with exchanged.runtime.database.transaction() as session:
        row = session.scalars(select(HubReceiptRow).order_by(HubReceiptRow.id)).first()
        assert row is not None
        forged = bytes(row.xml).replace(SENDER.encode(), b"000.00.00.G22", 1)
        assert forged != bytes(row.xml)
        row.xml, row.sha256 = forged, hashlib.sha256(forged).hexdigest()  # even with its digest fixed
        seq = row.trace_seq
    result = verify_database(exchanged.runtime.database)
    problems = {p.trace_seq: p.message for p in result.receipt_problems}
    assert problems[seq].startswith("its signature is invalid")


def test_a_receipt_whose_bytes_changed_under_its_digest_is_caught(exchanged: Exchanged) -> None:
    exchanged.sql(
        "UPDATE hub_receipt SET sha256 = :sha WHERE id = (SELECT MIN(id) FROM hub_receipt)", sha="0" * 64
    )
    result = verify_database(exchanged.runtime.database)
    assert [p.message for p in result.receipt_problems] == [
        "the stored receipt bytes differ from their recorded SHA-256"
    ]


def _attested(exchanged: Exchanged) -> set[int]:
    with exchanged.runtime.database.transaction() as session:
        return set(session.scalars(select(HubReceiptRow.trace_seq)))


# -- evidence bundles ---------------------------------------------------------------------------


def _export(exchanged: Exchanged, tmp_path: Path, index: int = 0) -> Path:
    issuer = exchanged.runtime.exchange.receipts
    assert issuer is not None
    out = tmp_path / f"bundle-{index}.zip"
    summary = export_evidence(
        exchanged.runtime.database, issuer, exchanged.hub_ids[index], out, exported_by="test"
    )
    assert summary.sha256 == hashlib.sha256(out.read_bytes()).hexdigest()
    return out


def _rewrite(bundle: Path, out: Path, change: dict[str, bytes | None], *, fix_manifest: bool) -> Path:
    """A copy of ``bundle`` with members replaced (or removed: None), the manifest fixed or not."""
    with zipfile.ZipFile(bundle) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    for name, data in change.items():
        if data is None:
            files.pop(name, None)
        else:
            files[name] = data
    if fix_manifest:
        manifest = json.loads(files["manifest.json"])
        manifest["files"] = {
            name: hashlib.sha256(data).hexdigest()
            for name, data in files.items()
            if name not in ("manifest.json", "manifest.seal.xml")  # the seal is not listed: it signs the list
        }
        files["manifest.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return out


def test_an_exported_bundle_verifies_offline_with_the_hub_certificate(
    exchanged: Exchanged, tmp_path: Path
) -> None:
    bundle = _export(exchanged, tmp_path)
    result = verify_bundle(bundle, trust=exchanged.hub_trust)
    assert result.ok, result.to_dict()
    names = [c.name for c in result.checks]
    assert names[:3] == ["manifest seal", "manifest", "trace chain"]
    assert sum(name.startswith("receipts/") for name in names) == 2  # accepted + delivered
    with zipfile.ZipFile(bundle) as archive:
        listed = set(archive.namelist())
        document = json.loads(archive.read("document.json"))
    assert {"manifest.json", "document.json", "trace.json", "signature.json"} <= listed
    assert any(name.startswith("certificates/hub-") for name in listed)
    assert "subject" not in document  # no content in evidence
    assert document["state"] == "completed"


def test_the_package_from_an_archive_is_matched_to_the_receipts(exchanged: Exchanged, tmp_path: Path) -> None:
    bundle = _export(exchanged, tmp_path)
    right = tmp_path / "right.edxml"
    right.write_bytes(exchanged.packages[exchanged.hub_ids[0]])
    wrong = tmp_path / "wrong.edxml"
    wrong.write_bytes(exchanged.packages[exchanged.hub_ids[1]])
    good = verify_bundle(bundle, trust=exchanged.hub_trust, package=right)
    assert good.ok, good.to_dict()
    assert {c.name: c.detail for c in good.checks}["package digest"].endswith("(as sent)")
    bad = verify_bundle(bundle, trust=exchanged.hub_trust, package=wrong)
    assert {c.name: c.ok for c in bad.checks}["package digest"] is False


def test_a_bundle_without_the_hub_anchor_is_not_trusted(exchanged: Exchanged, tmp_path: Path) -> None:
    result = verify_bundle(_export(exchanged, tmp_path), trust=None)
    assert not result.ok
    failed = [c for c in result.checks if not c.ok]
    assert any("untrusted" in c.detail for c in failed if c.name.startswith("receipts/"))


def test_an_edited_event_in_a_bundle_is_found_even_with_the_manifest_fixed(
    exchanged: Exchanged, tmp_path: Path
) -> None:
    bundle = _export(exchanged, tmp_path)
    with zipfile.ZipFile(bundle) as archive:
        trace = json.loads(archive.read("trace.json"))
    trace[1]["detail"] = "forged"
    forged = _rewrite(
        bundle, tmp_path / "forged.zip", {"trace.json": json.dumps(trace).encode()}, fix_manifest=True
    )
    result = verify_bundle(forged, trust=exchanged.hub_trust)
    checks = {c.name: c for c in result.checks}
    assert checks["manifest"].ok  # consistent again, but no longer what the hub sealed
    assert (checks["manifest seal"].ok, checks["manifest seal"].detail) == (
        False,
        "the manifest is not the one the hub sealed",
    )
    assert not checks["trace chain"].ok
    assert f"event {trace[1]['seq']}" in checks["trace chain"].detail
    # without fixing the manifest, the manifest says so first
    unfixed = _rewrite(
        bundle, tmp_path / "unfixed.zip", {"trace.json": json.dumps(trace).encode()}, fix_manifest=False
    )
    assert (
        "trace.json was changed"
        in {c.name: c for c in verify_bundle(unfixed, trust=exchanged.hub_trust).checks}["manifest"].detail
    )


def test_a_removed_or_edited_receipt_in_a_bundle_is_found(exchanged: Exchanged, tmp_path: Path) -> None:
    bundle = _export(exchanged, tmp_path)
    with zipfile.ZipFile(bundle) as archive:
        receipts = sorted(n for n in archive.namelist() if n.startswith("receipts/"))
        delivered = archive.read(receipts[1])
    removed = _rewrite(bundle, tmp_path / "removed.zip", {receipts[1]: None}, fix_manifest=True)
    checks = {c.name: c for c in verify_bundle(removed, trust=exchanged.hub_trust).checks}
    assert not checks["manifest seal"].ok
    assert not checks["receipts complete"].ok
    assert "confirmed" in checks["receipts complete"].detail

    edited = delivered.replace(RECIPIENT.encode(), OTHER.encode())
    assert edited != delivered
    tampered = _rewrite(bundle, tmp_path / "edited.zip", {receipts[1]: edited}, fix_manifest=True)
    checks = {c.name: c for c in verify_bundle(tampered, trust=exchanged.hub_trust).checks}
    assert not checks[receipts[1]].ok
    assert "invalid" in checks[receipts[1]].detail


def test_a_receipt_of_another_document_does_not_pass_as_this_ones(
    exchanged: Exchanged, tmp_path: Path
) -> None:
    first, second = _export(exchanged, tmp_path, 0), _export(exchanged, tmp_path, 1)
    with zipfile.ZipFile(second) as archive:
        foreign = next(n for n in archive.namelist() if n.startswith("receipts/"))
        data = archive.read(foreign)
    mixed = _rewrite(
        first, tmp_path / "mixed.zip", {"receipts/99999999-accepted.xml": data}, fix_manifest=True
    )
    checks = {c.name: c for c in verify_bundle(mixed, trust=exchanged.hub_trust).checks}
    assert not checks["receipts/99999999-accepted.xml"].ok
    assert "it is about" in checks["receipts/99999999-accepted.xml"].detail


def test_leaving_out_the_newest_events_and_their_receipt_breaks_the_seal(
    exchanged: Exchanged, tmp_path: Path
) -> None:
    """The trace and receipts alone would still agree after dropping the delivery's events and
    its receipt; only the hub's seal over the manifest shows that something was left out."""
    bundle = _export(exchanged, tmp_path)
    with zipfile.ZipFile(bundle) as archive:
        trace = json.loads(archive.read("trace.json"))
        delivered = next(n for n in archive.namelist() if n.endswith("-delivered.xml"))
    confirmed = next(i for i, e in enumerate(trace) if e["kind"] == "confirmed")
    shortened = {"trace.json": json.dumps(trace[:confirmed]).encode(), delivered: None}
    cut = _rewrite(bundle, tmp_path / "cut.zip", shortened, fix_manifest=True)
    checks = {c.name: c for c in verify_bundle(cut, trust=exchanged.hub_trust).checks}
    assert [name for name, check in checks.items() if not check.ok] == ["manifest seal"]
    unsealed = _rewrite(bundle, tmp_path / "unsealed.zip", {"manifest.seal.xml": None}, fix_manifest=False)
    seal = {c.name: c for c in verify_bundle(unsealed, trust=exchanged.hub_trust).checks}["manifest seal"]
    assert (seal.ok, seal.detail) == (
        False,
        "the bundle has no manifest.seal.xml: anything could have been left out",
    )


@pytest.mark.parametrize(
    "content",
    [b"not a zip", b"PK\x03\x04garbage"],
)
def test_unreadable_bundles_are_refused_with_a_code(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.zip"
    path.write_bytes(content)
    with pytest.raises(BundleUnreadable) as raised:
        verify_bundle(path, trust=None)
    assert raised.value.code == "Client.BundleUnreadable"


def test_a_bundle_with_an_unsafe_member_name_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("../../etc/passwd", b"x")
        archive.writestr("manifest.json", b"{}")
    with pytest.raises(BundleUnreadable, match="unsafe name"):
        verify_bundle(path, trust=None)


def test_chain_links_survive_many_concurrent_writers(runtime: Runtime) -> None:
    """Several transactions appending at once (threads, each with its own connection) still
    write one chain with consecutive seq numbers (PostgreSQL: the head row lock)."""
    import threading

    seed_demo(runtime.registration)
    sender = _caller(runtime, SENDER)
    errors: list[BaseException] = []

    def send(worker: int) -> None:
        try:
            for n in range(5):
                spec = edoc_spec(SENDER, [RECIPIENT], number=f"{worker}{n}", promulgated=date(2026, 11, 20))
                runtime.exchange.send_document(sender, package=build_edoc(spec, b"x", now=datetime.now(UTC)))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    result = verify_database(runtime.database)
    assert result.intact, result.to_dict()
    assert result.documents == 20
    assert result.receipts == 20


def test_a_rolled_back_transaction_leaves_the_chain_alone(runtime: Runtime) -> None:
    seed_demo(runtime.registration)
    sender = _caller(runtime, SENDER)
    spec = edoc_spec(SENDER, [RECIPIENT], number="1", promulgated=date(2026, 11, 20))
    runtime.exchange.send_document(sender, package=build_edoc(spec, b"x", now=datetime.now(UTC)))
    with runtime.database.transaction() as session:
        before = trace_log.head(session)

    def crash() -> None:
        with runtime.database.transaction() as session:
            document = session.scalars(select(Document)).one()
            trace_log.append(session, document, "routed", at=datetime.now(UTC), actor="test")
            raise RuntimeError("crash before commit")

    with pytest.raises(RuntimeError):
        crash()
    with runtime.database.transaction() as session:
        assert trace_log.head(session) == before
        assert session.scalars(select(TraceEventRow).where(TraceEventRow.seq > before[0])).all() == []
    assert verify_database(runtime.database).intact


def test_receipts_are_not_issued_twice(exchanged: Exchanged) -> None:
    issuer = exchanged.runtime.exchange.receipts
    assert issuer is not None
    first = issuer.receipts_for(None, exchanged.hub_ids[0])
    again = issuer.receipts_for(None, exchanged.hub_ids[0])
    assert [r.receipt_id for r in first] == [r.receipt_id for r in again]
    assert [r.kind.value for r in first] == ["accepted", "delivered"]
    assert replace(first[0], xml=b"") != replace(first[1], xml=b"")
