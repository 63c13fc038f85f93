"""Signed packages and the hub's signed receipts over real HTTP, on SQLite and PostgreSQL.

One server per engine for the module, configured like a real hub: trust anchors from a demo PKI
(``ESB_TRUST_DIR``), receipts signed with the demo PKI's hub key (``ESB_HUB_KEY_FILE`` /
``ESB_HUB_CERT_FILE``).  The agencies are fresh for every test (random codes), so their
signing certificates are issued here by the demo issuing CA.  Everything is checked from the
client's side only: what zeep gets back, verified with the public tools (``verify_package``,
``verify_receipt``) against the demo root.
"""

from __future__ import annotations

import hashlib
import io
import itertools
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from zeep.exceptions import Fault

from esb.domain.signatures import SignaturePolicy, Verdict
from esb.pipeline.demo_packages import build_edoc, edoc_spec
from esb.security import pki
from esb.security.hub_receipts import parse_receipt, verify_receipt
from esb.security.package_signature import sign_package, verify_package
from esb.security.signing_key import SigningKey
from esb.security.trust_store import TrustStore

ENGINES = ("sqlite", "postgresql")
HUB = "000.00.00.H53"  # ESB_HUB_ORGAN_ID's default
PROMULGATED = date(2024, 7, 1)

_numbers = itertools.count(1)


@dataclass(frozen=True)
class DemoPki:
    """The demo PKI on disk, and its issuing CA in memory (to issue the parties' certificates)."""

    paths: pki.DemoPki
    issuing: pki.IssuedCertificate
    root: Any  # x509.Certificate
    hub_sha256: str

    @property
    def env(self) -> dict[str, str]:
        return {
            "ESB_TRUST_DIR": str(self.paths.trust_dir),
            "ESB_HUB_KEY_FILE": str(self.paths.hub_key),
            "ESB_HUB_CERT_FILE": str(self.paths.hub_certificate),
        }

    @property
    def trust(self) -> TrustStore:
        return TrustStore.of(anchors=[self.root])

    def agency_key(self, code: str) -> SigningKey:
        issued = pki.issue_signing_certificate(
            self.issuing,
            f"Cơ quan thử nghiệm {code}",
            now=datetime.now(UTC) - timedelta(days=1),
            agency_code=code,
        )
        return SigningKey(issued.key, [issued.certificate, self.issuing.certificate])


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoPki:
    paths = pki.write_demo_pki(
        tmp_path_factory.mktemp("demo-pki"), [], now=datetime.now(UTC) - timedelta(days=1), hub_organ_id=HUB
    )
    issuing = pki.IssuedCertificate(
        pki.load_certificates(paths.issuing_certificate.read_bytes())[0],
        pki.load_private_key(paths.issuing_key.read_bytes()),
    )
    hub = SigningKey.from_files(paths.hub_key, paths.hub_certificate)
    root = pki.load_certificates(paths.root_certificate.read_bytes())[0]
    return DemoPki(paths, issuing, root, hub.sha256)


@pytest.fixture(scope="module", params=ENGINES)
def server(request: pytest.FixtureRequest, make_server: Any, demo: DemoPki) -> Any:
    return make_server(request.param, demo.env)


# -- helpers ----------------------------------------------------------------------------------


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def edoc(sender: str, recipients: list[str]) -> bytes:
    number = str(next(_numbers))
    spec = edoc_spec(sender, recipients, number=number, promulgated=PROMULGATED)
    return build_edoc(spec, f"Nội dung văn bản số {number}".encode() * 20, now=datetime.now(UTC))


def sign(data: bytes, key: SigningKey) -> bytes:
    out = io.BytesIO()
    sign_package(data, out, key=key)
    return out.getvalue()


def fault_code(party: Any, operation: str, *args: Any) -> str:
    """The code of an operation that must fail (faultcode and the EsbFault detail agree)."""
    with pytest.raises(Fault) as info:
        getattr(party.service, operation)(*args)
    detail = party.fault_detail(info.value)
    assert info.value.code.endswith(detail.code)
    return str(detail.code)


def set_policy(server: Any, code: str, policy: SignaturePolicy) -> None:
    runtime = server.runtime()
    try:
        runtime.registration.set_signature_policy(code, policy)
    finally:
        runtime.database.dispose()


def issued_at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# -- a signed exchange, start to finish -----------------------------------------------------------


def test_a_signed_package_is_verified_delivered_intact_and_receipted(
    server: Any, party_factory: Any, demo: DemoPki, tmp_path: Path
) -> None:
    a, b, stranger = party_factory(server, 3)
    key = demo.agency_key(a.code)
    package = sign(edoc(a.code, [b.code]), key)

    sent = a.service.SendDocument(edxmlPackage=package)
    assert (sent.signatureVerdict, sent.signatureReason) == ("valid", "ok")
    assert (sent.sha256, sent.size) == (sha256(package), len(package))
    hub_id = sent.hubDocumentId

    [item] = b.service.GetPendingDocuments("edoc")
    assert (item.hubDocumentId, item.signatureVerdict, item.signatureReason) == (hub_id, "valid", "ok")
    assert (item.sha256, item.size) == (sha256(package), len(package))  # no hub TraceHeader

    content = b.service.GetDocument(hub_id)
    assert content.edxmlPackage == package
    found = verify_package(content.edxmlPackage, trust=demo.trust, at=datetime.now(UTC))
    assert (found.verdict, found.reason) == (Verdict.VALID, "ok"), found.message
    assert found.signer is not None
    assert found.signer.sha256 == key.sha256

    confirmed = b.service.ConfirmReceived(hub_id, sha256(package), "done")
    assert (confirmed.hubDocumentId, confirmed.state) == (hub_id, "done")

    by_sender = a.service.GetReceipt(hub_id)
    assert [(r.kind, r.recipient) for r in by_sender] == [("accepted", None), ("delivered", b.code)]
    by_recipient = b.service.GetReceipt(hub_id)
    assert [r.receiptId for r in by_recipient] == [r.receiptId for r in by_sender]
    assert fault_code(stranger, "GetReceipt", hub_id) == "Client.DocumentNotFound"

    trace = {e.kind: e for e in a.service.GetTrace(hubDocumentId=hub_id).event}
    attested = {"accepted": trace["accepted"], "delivered": trace["confirmed"]}
    assert trace["confirmed"].recipient == b.code
    for signed in by_sender:
        check = verify_receipt(signed.receiptXml, trust=demo.trust)
        assert (check.report.verdict, check.report.reason) == (Verdict.VALID, "ok"), check.report.message
        assert check.report.signer is not None
        assert check.report.signer.sha256 == demo.hub_sha256
        receipt = check.receipt
        assert receipt is not None
        assert receipt == parse_receipt(signed.receiptXml)
        assert signed.sha256 == sha256(signed.receiptXml)
        assert (receipt.receipt_id, receipt.kind.value, signed.traceSeq) == (
            signed.receiptId,
            signed.kind,
            receipt.trace_seq,
        )
        assert issued_at(receipt.issued_at) == signed.issuedAt
        event = attested[signed.kind]
        assert (receipt.trace_seq, receipt.trace_hash) == (event.seq, event.hash)
        assert (receipt.hub_organ_id, receipt.hub_document_id, receipt.sender) == (HUB, hub_id, a.code)
        assert receipt.recipients == (b.code,)
        assert (receipt.accepted_sha256, receipt.accepted_size, receipt.delivered_sha256) == (
            sha256(package),
            len(package),
            sha256(package),
        )
        assert (receipt.signature_verdict, receipt.signature_reason, receipt.signer_sha256) == (
            "valid",
            "ok",
            key.sha256,
        )


def test_a_recipient_that_requires_signatures_gets_only_valid_ones(
    server: Any, party_factory: Any, demo: DemoPki
) -> None:
    a, c = party_factory(server, 2)
    set_policy(server, c.code, SignaturePolicy.REQUIRE)

    assert fault_code(a, "SendDocument", edoc(a.code, [c.code])) == "Client.SignatureMissing"
    foreign = pki.make_root_ca("Unknown CA", now=datetime.now(UTC) - timedelta(days=1))
    stranger_key = pki.issue_signing_certificate(
        foreign, "Unknown", now=datetime.now(UTC) - timedelta(days=1)
    )
    untrusted = sign(edoc(a.code, [c.code]), SigningKey(stranger_key.key, [stranger_key.certificate]))
    assert fault_code(a, "SendDocument", untrusted) == "Client.SignatureUntrusted"
    assert list(c.service.GetPendingDocuments("edoc") or []) == []

    package = sign(edoc(a.code, [c.code]), demo.agency_key(a.code))
    sent = a.service.SendDocument(edxmlPackage=package)
    assert (sent.signatureVerdict, sent.signatureReason) == ("valid", "ok")
    [item] = c.service.GetPendingDocuments("edoc")
    assert (item.hubDocumentId, item.sha256) == (sent.hubDocumentId, sha256(package))
