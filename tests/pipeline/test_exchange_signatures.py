"""Package signatures and signed hub receipts through the exchange, on both engines.

A PKI is made once for the module (root CA → issuing CA → agency certificates; an unknown CA;
the hub's receipt key issued by the same issuing CA), and every test runs an ``Exchange``
built with ``signatures=`` and ``receipts=`` on the fake clock, so that verdicts, trace
details and receipts are exact.

What is checked: the verdict of each kind of package under the ``record`` policy (in the
SendDocument receipt, the mailbox and the ``accepted`` trace event), which bytes recipients
get (a sound or unchecked signature arrives byte for byte, anything else gets the hub's
TraceHeader); refusals under ``require`` wherever the policy comes from, with nothing stored;
``off``; pinned signers; SHA-1; the hub's signed receipts (when they are issued, who sees
which, that they verify and attest the trace); and a large signed package through an upload
space.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree
from sqlalchemy import select

from esb.domain.edxml_enums import StatusCode
from esb.domain.edxml_model import EdocPackage
from esb.domain.exchange import DeliveryState, MessageType, Outcome, Receipt, TraceEvent, TraceKind
from esb.domain.receipts import HubReceipt, ReceiptKind
from esb.domain.signatures import SignaturePolicy, SignatureReport, Verdict
from esb.errors import EsbError
from esb.pipeline.audit import verify_database
from esb.pipeline.exchange import Exchange
from esb.pipeline.receipts import IssuedReceipt, ReceiptIssuer
from esb.pipeline.signature_policy import SignatureRefused, SignatureRules
from esb.security import pki
from esb.security.hub_receipts import verify_receipt
from esb.security.package_signature import sign_package, verify_package
from esb.security.signing_key import SigningKey
from esb.security.trust_store import TrustStore
from esb.storage import receipt_store
from esb.storage.tables import HubCertificate, HubReceiptRow
from esb.xml_processing.edxml_reader import read_package
from esb.xml_processing.namespaces import DS, EDXML

if TYPE_CHECKING:
    from conftest import FakeClock, Hub

HUB_ORGAN_ID = "000.00.00.H53"
START = datetime(2026, 11, 21, 2, 30, tzinfo=UTC)  # the fake clock's start (tests/pipeline/conftest.py)
A = "000.00.01.H53"  # the usual sender
B = "000.00.00.H30"
C = "000.00.01.H30"
M = "000.00.32.H53"  # a sender with a registered signing certificate
STRANGER = "000.00.00.G22"  # neither sender nor recipient
SAMPLE = "/work/shared/samples/edxml/mic_edoc_new_bdt0.edxml"  # the VPCP sample SignatureValue
SAMPLE_FROM, SAMPLE_TO = "000.00.11.H53", "000.00.01.A53"

SIGNED_AS_SENT = (
    "delivered as accepted: a signed package is delivered as sent (a TraceHeader would break its signature)"
)
TRACE_HEADER_APPENDED = f"TraceHeader {HUB_ORGAN_ID} appended"
XMLSEC = xmlsec.constants


# -- the PKI (once per module) --------------------------------------------------------------------


@dataclass(frozen=True)
class Keys:
    root: pki.IssuedCertificate
    a: SigningKey  # A's certificate (and the issuing CA)
    b: SigningKey  # B's: "another signer" when A's package is signed with it
    m: SigningKey  # M's registered certificate
    foreign: SigningKey  # issued by a CA no trust store holds
    hub: SigningKey  # the hub's receipt key, under the same issuing CA
    hub_next: SigningKey  # the hub's next key (rotation), same CA

    @property
    def trust(self) -> TrustStore:
        return TrustStore.of(anchors=[self.root.certificate])


@pytest.fixture(scope="module")
def keys() -> Keys:
    start = START - timedelta(days=30)
    root = pki.make_root_ca("Signatures Test Root CA", now=start)
    issuing = pki.make_intermediate_ca(root, "Signatures Test Issuing CA", now=start)

    def agency(code: str, name: str, issuer: pki.IssuedCertificate = issuing) -> SigningKey:
        issued = pki.issue_signing_certificate(issuer, name, now=start, agency_code=code, organization=name)
        return SigningKey(issued.key, [issued.certificate, issuer.certificate])

    foreign_root = pki.make_root_ca("Unknown Root CA", now=start)
    return Keys(
        root=root,
        a=agency(A, "Văn phòng UBND tỉnh Tây Ninh"),
        b=agency(B, "UBND tỉnh Hậu Giang"),
        m=agency(M, "UBND huyện Châu Thành"),
        foreign=agency(A, "Văn phòng UBND tỉnh Tây Ninh", foreign_root),
        hub=agency(HUB_ORGAN_ID, "LGSP hub"),
        hub_next=agency(HUB_ORGAN_ID, "LGSP hub (2)"),
    )


# -- building the exchange ------------------------------------------------------------------------

DEFAULT_TRUST: Any = object()


@dataclass
class Signing:
    """Makes the hub's exchange (``hub.exchange``) with the given signature rules and receipts."""

    hub: Hub
    keys: Keys

    def __call__(
        self,
        policy: SignaturePolicy = SignaturePolicy.RECORD,
        *,
        trust: Any = DEFAULT_TRUST,
        allow_legacy: bool = False,
        receipts: bool = True,
    ) -> Exchange:
        hub = self.hub
        rules = SignatureRules(
            trust=self.keys.trust if trust is DEFAULT_TRUST else trust,
            default_policy=policy,
            allow_legacy=allow_legacy,
        )
        issuer = (
            ReceiptIssuer(hub.runtime.database, self.keys.hub, hub_organ_id=HUB_ORGAN_ID, clock=hub.clock)
            if receipts
            else None
        )
        assert hub.exchange.policy.hub_organ_id == HUB_ORGAN_ID
        hub.exchange = Exchange(
            hub.runtime.database,
            hub.content,
            hub.folder / "work-signatures",
            hub.exchange.policy,
            clock=hub.clock,
            signatures=rules,
            receipts=issuer,
        )
        return hub.exchange


@pytest.fixture
def signing(hub: Hub, keys: Keys) -> Signing:
    """``signing(policy, trust=..., allow_legacy=..., receipts=...)``; a record-policy exchange is made."""
    assert hub.clock.now == START  # the receipts' times below are written out
    make = Signing(hub, keys)
    make()
    hub.register(SAMPLE_FROM)
    hub.register(SAMPLE_TO)
    return make


# -- packages -------------------------------------------------------------------------------------


def sign(data: bytes, key: SigningKey) -> bytes:
    out = io.BytesIO()
    sign_package(data, out, key=key)
    return out.getvalue()


def swap(data: bytes, old: str, new: str) -> bytes:
    """Replace ``old`` (which must be there once) with ``new``."""
    assert data.count(old.encode()) == 1, old
    return data.replace(old.encode(), new.encode())


def tampered(signed: bytes) -> bytes:
    """The signed package with its Subject changed after signing."""
    return swap(signed, "nhiệm vụ</edXML:Subject>", "nhiệm vụ (đã sửa)</edXML:Subject>")


def sha1_signed(data: bytes, key: SigningKey) -> bytes:
    """Signed with xmlsec directly, RSA-SHA1 and SHA-1 (what sign_package never does), chain added."""
    root = etree.fromstring(data)
    header = root.find(f"{{{EDXML}}}edXMLEnvelope/{{{EDXML}}}edXMLHeader")
    assert header is not None
    signature = xmlsec.template.create(root, XMLSEC.TransformExclC14N, XMLSEC.TransformRsaSha1)
    header.append(signature)
    reference = xmlsec.template.add_reference(signature, XMLSEC.TransformSha1, uri="")
    xmlsec.template.add_transform(reference, XMLSEC.TransformEnveloped)
    xmlsec.template.add_transform(reference, XMLSEC.TransformExclC14N)
    xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(signature))
    context = xmlsec.SignatureContext()
    context.key = key.xmlsec_key
    context.sign(signature)
    # iter, not find: lxml's find misses the X509Data xmlsec filled in (its children changed under it)
    (x509_data,) = [e for e in signature.iter() if e.tag == f"{{{DS}}}X509Data"]
    for certificate in key.chain:
        der = certificate.public_bytes(serialization.Encoding.DER)
        etree.SubElement(x509_data, f"{{{DS}}}X509Certificate").text = base64.b64encode(der).decode()
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def sample() -> bytes:
    with open(SAMPLE, "rb") as handle:
        return handle.read()


def certificate_pem(key: SigningKey) -> bytes:
    return key.certificate.public_bytes(serialization.Encoding.PEM)


# -- helpers --------------------------------------------------------------------------------------


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def send(hub: Hub, sender: str, package: bytes) -> Receipt:
    return hub.exchange.send_document(hub.caller(sender), package=package)


def refusal(hub: Hub, sender: str, package: bytes) -> str:
    """The fault code of a send that must be refused; nothing may be stored (rows, blobs, spools)."""
    before = (hub.row_counts(), hub.blobs(), hub.work_files())
    with pytest.raises(EsbError) as refused:
        send(hub, sender, package)
    assert (hub.row_counts(), hub.blobs(), hub.work_files()) == before
    return refused.value.code


def item_of(hub: Hub, recipient: str, hub_id: str) -> Any:
    [item] = [
        i
        for i in hub.exchange.pending(hub.caller(recipient), MessageType.EDOC)
        if i.hub_document_id == hub_id
    ]
    return item


def fetch(hub: Hub, recipient: str, hub_id: str) -> bytes:
    fetched = hub.exchange.get_document(hub.caller(recipient), hub_id)
    assert fetched.package is not None
    assert sha256(fetched.package) == fetched.sha256
    return fetched.package


def events(hub: Hub, hub_id: str) -> list[TraceEvent]:
    _, found = hub.exchange.trace(None, hub_id=hub_id)
    return found


def event(hub: Hub, hub_id: str, kind: TraceKind, recipient: str | None = None) -> TraceEvent:
    [found] = [e for e in events(hub, hub_id) if e.kind is kind and e.recipient == recipient]
    return found


def verdicts(receipt: Receipt, hub: Hub, recipient: str) -> tuple[tuple[str, str], tuple[str, str]]:
    """(verdict, reason) as SendDocument answered and as the recipient's mailbox shows them."""
    item = item_of(hub, recipient, receipt.hub_document_id)
    return (receipt.signature_verdict, receipt.signature_reason), (
        item.signature_verdict,
        item.signature_reason,
    )


def signer_note(key: SigningKey) -> str:
    return f"signer {key.subject} (sha256 {key.sha256[:16]}…)"


def hub_trace_headers(package: bytes) -> list[str | None]:
    read = read_package(package).package
    assert isinstance(read, EdocPackage)
    return [t.organ_id for t in read.trace_headers]


def verified(hub: Hub, package: bytes, anchor: x509.Certificate) -> SignatureReport:
    """What a recipient trusting ``anchor`` finds, verifying the package now."""
    return verify_package(package, trust=TrustStore.of(anchors=[anchor]), at=hub.clock.now)


def remembered_hub_certificates(hub: Hub) -> set[str]:
    with hub.runtime.database.transaction() as session:
        return set(session.scalars(select(HubCertificate.sha256)))


def receipt_rows(hub: Hub) -> list[tuple[str, str | None, int]]:
    """(kind, recipient, trace seq) of every stored receipt, in seq order."""
    with hub.runtime.database.transaction() as session:
        rows = session.execute(
            select(HubReceiptRow.kind, HubReceiptRow.recipient_code, HubReceiptRow.trace_seq).order_by(
                HubReceiptRow.trace_seq
            )
        ).tuples()
        return [(str(kind), recipient, int(seq)) for kind, recipient, seq in rows]


# -- record: every kind of package is delivered, with its verdict ----------------------------------


def test_a_valid_signature_is_recorded_and_the_package_delivered_byte_for_byte(
    hub: Hub, signing: Signing, keys: Keys
) -> None:
    package = sign(hub.edoc(A, [B], number="101"), keys.a)
    receipt = send(hub, A, package)

    assert verdicts(receipt, hub, B) == (("valid", "ok"), ("valid", "ok"))
    assert (receipt.sha256, receipt.size) == (sha256(package), len(package))
    accepted = event(hub, receipt.hub_document_id, TraceKind.ACCEPTED)
    assert accepted.detail == f"1 recipient(s); 0 warning(s); signature valid: ok; {signer_note(keys.a)}"
    assert event(hub, receipt.hub_document_id, TraceKind.ROUTED, B).detail == SIGNED_AS_SENT

    item = item_of(hub, B, receipt.hub_document_id)
    assert (item.sha256, item.size) == (sha256(package), len(package))
    delivered = fetch(hub, B, receipt.hub_document_id)
    assert delivered == package
    assert hub_trace_headers(delivered) == [A]  # no hub TraceHeader: it would break the signature
    found = verified(hub, delivered, keys.root.certificate)
    assert (found.verdict, found.reason) == (Verdict.VALID, "ok")
    assert found.signer is not None
    assert found.signer.sha256 == keys.a.sha256


def test_the_same_signed_package_twice_answers_the_first_receipt_and_issues_no_other(
    hub: Hub, signing: Signing, keys: Keys
) -> None:
    package = sign(hub.edoc(A, [B], number="105"), keys.a)
    first = send(hub, A, package)
    again = send(hub, A, package)
    assert again == Receipt(**{**first.__dict__, "duplicate": True})
    assert [e.kind for e in events(hub, first.hub_document_id)] == [
        TraceKind.ACCEPTED,
        TraceKind.ROUTED,
        TraceKind.DUPLICATE,
    ]
    accepted = event(hub, first.hub_document_id, TraceKind.ACCEPTED)
    assert receipt_rows(hub) == [("accepted", None, accepted.seq)]


def test_an_unsigned_package_is_recorded_unsigned_and_gets_the_hub_trace_header(
    hub: Hub, signing: Signing
) -> None:
    package = hub.edoc(A, [B], number="102")
    receipt = send(hub, A, package)

    assert verdicts(receipt, hub, B) == (("unsigned", "no-signature"), ("unsigned", "no-signature"))
    accepted = event(hub, receipt.hub_document_id, TraceKind.ACCEPTED)
    assert accepted.detail == "1 recipient(s); 0 warning(s); signature unsigned: no-signature"
    assert event(hub, receipt.hub_document_id, TraceKind.ROUTED, B).detail == TRACE_HEADER_APPENDED
    delivered = fetch(hub, B, receipt.hub_document_id)
    assert sha256(delivered) == item_of(hub, B, receipt.hub_document_id).sha256 != receipt.sha256
    assert hub_trace_headers(delivered) == [A, HUB_ORGAN_ID]


def test_the_shared_sample_signature_is_a_placeholder_and_is_still_delivered(
    hub: Hub, signing: Signing
) -> None:
    package = sample()
    receipt = send(hub, SAMPLE_FROM, package)

    placeholder = ("placeholder", "sample-signature")
    assert verdicts(receipt, hub, SAMPLE_TO) == (placeholder, placeholder)
    accepted = event(hub, receipt.hub_document_id, TraceKind.ACCEPTED)
    assert accepted.detail == "1 recipient(s); 15 warning(s); signature placeholder: sample-signature"
    assert event(hub, receipt.hub_document_id, TraceKind.ROUTED, SAMPLE_TO).detail == TRACE_HEADER_APPENDED
    delivered = fetch(hub, SAMPLE_TO, receipt.hub_document_id)
    assert delivered != package
    assert hub_trace_headers(delivered)[-1] == HUB_ORGAN_ID
    assert hub_trace_headers(delivered)[:-1] == hub_trace_headers(package)


def test_a_package_changed_after_signing_is_invalid_and_still_delivered(
    hub: Hub, signing: Signing, keys: Keys
) -> None:
    package = tampered(sign(hub.edoc(A, [B], number="103"), keys.a))
    receipt = send(hub, A, package)

    invalid = ("invalid", "digest-mismatch")
    assert verdicts(receipt, hub, B) == (invalid, invalid)
    accepted = event(hub, receipt.hub_document_id, TraceKind.ACCEPTED)
    assert accepted.detail == "1 recipient(s); 0 warning(s); signature invalid: digest-mismatch"
    assert event(hub, receipt.hub_document_id, TraceKind.ROUTED, B).detail == TRACE_HEADER_APPENDED
    assert hub_trace_headers(fetch(hub, B, receipt.hub_document_id)) == [A, HUB_ORGAN_ID]


def test_a_signer_of_an_unknown_ca_is_untrusted_and_the_package_delivered_intact(
    hub: Hub, signing: Signing, keys: Keys
) -> None:
    package = sign(hub.edoc(A, [B], number="104"), keys.foreign)
    receipt = send(hub, A, package)

    untrusted = ("untrusted", "chain-untrusted")
    assert verdicts(receipt, hub, B) == (untrusted, untrusted)
    accepted = event(hub, receipt.hub_document_id, TraceKind.ACCEPTED)
    assert accepted.detail == (
        f"1 recipient(s); 0 warning(s); signature untrusted: chain-untrusted; {signer_note(keys.foreign)}"
    )
    assert event(hub, receipt.hub_document_id, TraceKind.ROUTED, B).detail == SIGNED_AS_SENT
    delivered = fetch(hub, B, receipt.hub_document_id)
    assert delivered == package
    # Sound maths: whoever trusts that CA can verify what the recipient got.
    found = verified(hub, delivered, keys.foreign.chain[0])
    assert (found.verdict, found.reason) == (Verdict.VALID, "ok")


# -- require: refused before anything is stored, wherever the policy comes from --------------------

REFUSALS = {
    "unsigned": "Client.SignatureMissing",
    "placeholder": "Client.SignaturePlaceholder",
    "tampered": "Client.SignatureInvalid",
    "unknown CA": "Client.SignatureUntrusted",
    "SHA-1": "Client.SignatureWeakAlgorithm",
    "not the registered signer": "Client.SignerMismatch",
}


def refused_packages(hub: Hub, keys: Keys) -> dict[str, tuple[str, tuple[str, ...], bytes]]:
    """Each refusal case: (sender, recipients, package)."""
    to = (B, C)
    return {
        "unsigned": (A, to, hub.edoc(A, list(to), number="201")),
        "placeholder": (SAMPLE_FROM, (SAMPLE_TO,), sample()),
        "tampered": (A, to, tampered(sign(hub.edoc(A, list(to), number="202"), keys.a))),
        "unknown CA": (A, to, sign(hub.edoc(A, list(to), number="203"), keys.foreign)),
        "SHA-1": (A, to, sha1_signed(hub.edoc(A, list(to), number="204"), keys.a)),
        # M registered its own certificate; A's key signs M's package.
        "not the registered signer": (M, to, sign(hub.edoc(M, list(to), number="205"), keys.a)),
    }


@pytest.mark.parametrize(
    ("required_by", "content_kind"),
    [("hub", "database"), ("sender", "directory"), ("recipient", "database")],
)
def test_require_refuses_every_signature_but_a_valid_one_and_stores_nothing(
    hub: Hub, signing: Signing, keys: Keys, required_by: str
) -> None:
    """``hub``: the default is require.  ``sender``: the default is off, the sender requires.
    ``recipient``: the sender chose off, one recipient (the last) requires: the strictest wins."""
    default = {
        "hub": SignaturePolicy.REQUIRE,
        "sender": SignaturePolicy.OFF,
        "recipient": SignaturePolicy.RECORD,
    }
    signing(default[required_by])
    hub.registration.add_signing_certificate(M, certificate_pem(keys.m))

    def require(sender: str, recipients: tuple[str, ...]) -> None:
        if required_by == "sender":
            hub.registration.set_signature_policy(sender, SignaturePolicy.REQUIRE)
        elif required_by == "recipient":
            hub.registration.set_signature_policy(sender, SignaturePolicy.OFF)
            hub.registration.set_signature_policy(recipients[-1], SignaturePolicy.REQUIRE)

    codes = {}
    for case, (sender, recipients, package) in refused_packages(hub, keys).items():
        require(sender, recipients)
        codes[case] = refusal(hub, sender, package)
    assert codes == REFUSALS
    assert hub.row_counts() == (0, 0, 0)
    assert hub.blobs() == []
    assert receipt_rows(hub) == []

    require(A, (B, C))
    package = sign(hub.edoc(A, [B, C], number="206"), keys.a)
    receipt = send(hub, A, package)
    assert verdicts(receipt, hub, C) == (("valid", "ok"), ("valid", "ok"))
    assert hub.row_counts() == (1, 2, 3)  # accepted + routed to each
    assert fetch(hub, C, receipt.hub_document_id) == package
    assert [kind for kind, _, _ in receipt_rows(hub)] == ["accepted"]


def test_the_refusal_says_which_check_failed(hub: Hub, signing: Signing, keys: Keys) -> None:
    signing(SignaturePolicy.REQUIRE)
    with pytest.raises(SignatureRefused) as refused:
        send(hub, A, tampered(sign(hub.edoc(A, [B], number="207"), keys.a)))
    assert refused.value.code == "Client.SignatureInvalid"
    assert refused.value.message.startswith(
        "a valid XML signature is required for this exchange; the package's is invalid (digest-mismatch: "
    )


def moved_out_of_the_header(signed: bytes) -> bytes:
    """The signed package with its Signature moved from edXMLHeader to the end of edXMLEnvelope."""
    root = etree.fromstring(signed)
    envelope = root.find(f"{{{EDXML}}}edXMLEnvelope")
    assert envelope is not None
    (signature,) = [e for e in root.iter() if e.tag == f"{{{DS}}}Signature"]
    envelope.append(signature)  # moves it
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def test_a_signature_outside_the_header_is_recorded_as_misplaced_like_verify_package_says(
    hub: Hub, signing: Signing, keys: Keys
) -> None:
    package = moved_out_of_the_header(sign(hub.edoc(A, [B], number="208"), keys.a))
    found = verified(hub, package, keys.root.certificate)
    assert (found.verdict, found.reason) == (Verdict.INVALID, "misplaced-signature")

    receipt = send(hub, A, package)
    misplaced = ("invalid", "misplaced-signature")
    assert verdicts(receipt, hub, B) == (misplaced, misplaced)
    signing(SignaturePolicy.REQUIRE)
    assert refusal(hub, A, moved_out_of_the_header(sign(hub.edoc(A, [B], number="209"), keys.a))) == (
        "Client.SignatureInvalid"
    )


def test_require_still_lets_status_packages_through(hub: Hub, signing: Signing, keys: Keys) -> None:
    """QCVN 102 status packages carry no Signature: recorded as unsigned, never refused."""
    signing(SignaturePolicy.REQUIRE)
    document = send(hub, A, sign(hub.edoc(A, [B], number="210"), keys.a))
    assert (document.signature_verdict, document.signature_reason) == ("valid", "ok")
    arrived = hub.status(B, A, hub.document_id(A, "210"), StatusCode.ARRIVED)
    status = hub.exchange.send_status(hub.caller(B), package=arrived)
    assert [(r.organ_id, r.state) for r in status.recipients] == [(A, DeliveryState.PENDING)]
    assert hub.exchange.get_document(hub.caller(A), status.hub_document_id).package == arrived


# -- off: nothing is verified, and the package is delivered as sent ---------------------------------


def test_off_checks_nothing_and_delivers_a_signed_package_intact(
    hub: Hub, signing: Signing, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    signing(SignaturePolicy.OFF)

    def no_verification(*args: object, **kwargs: object) -> SignatureReport:
        raise AssertionError("the policy is off: nothing may be verified")

    monkeypatch.setattr("esb.pipeline.signature_policy.verify_package", no_verification)
    broken = tampered(sign(hub.edoc(A, [B], number="301"), keys.a))
    receipt = send(hub, A, broken)
    not_checked = ("not-checked", "policy-off")
    assert verdicts(receipt, hub, B) == (not_checked, not_checked)
    accepted = event(hub, receipt.hub_document_id, TraceKind.ACCEPTED)
    assert accepted.detail == "1 recipient(s); 0 warning(s); signature not-checked: policy-off"
    assert event(hub, receipt.hub_document_id, TraceKind.ROUTED, B).detail == SIGNED_AS_SENT
    assert fetch(hub, B, receipt.hub_document_id) == broken

    unsigned = send(hub, A, hub.edoc(A, [B], number="302"))
    assert verdicts(unsigned, hub, B) == (not_checked, not_checked)
    assert hub_trace_headers(fetch(hub, B, unsigned.hub_document_id)) == [A, HUB_ORGAN_ID]

    # A recipient that records makes the exchange record: the same kind of package is checked.
    monkeypatch.undo()
    hub.registration.set_signature_policy(B, SignaturePolicy.RECORD)
    checked = send(hub, A, tampered(sign(hub.edoc(A, [B], number="303"), keys.a)))
    invalid = ("invalid", "digest-mismatch")
    assert verdicts(checked, hub, B) == (invalid, invalid)


# -- pinned signers ---------------------------------------------------------------------------------


def test_a_registered_certificate_is_trusted_without_any_trust_anchor(
    hub: Hub, signing: Signing, keys: Keys
) -> None:
    signing(trust=TrustStore.of())
    before = send(hub, A, sign(hub.edoc(A, [B], number="401"), keys.a))
    assert verdicts(before, hub, B) == (("untrusted", "no-trust-anchors"), ("untrusted", "no-trust-anchors"))

    hub.registration.add_signing_certificate(A, certificate_pem(keys.a))
    package = sign(hub.edoc(A, [B], number="402"), keys.a)
    receipt = send(hub, A, package)
    assert verdicts(receipt, hub, B) == (("valid", "ok"), ("valid", "ok"))
    assert fetch(hub, B, receipt.hub_document_id) == package


def test_another_signer_than_the_registered_one_is_untrusted_or_refused(
    hub: Hub, signing: Signing, keys: Keys
) -> None:
    hub.registration.add_signing_certificate(A, certificate_pem(keys.a))
    package = sign(hub.edoc(A, [B], number="403"), keys.b)  # B's certificate chains to the root
    receipt = send(hub, A, package)

    mismatch = ("untrusted", "signer-not-registered")
    assert verdicts(receipt, hub, B) == (mismatch, mismatch)
    accepted = event(hub, receipt.hub_document_id, TraceKind.ACCEPTED)
    assert accepted.detail == (
        f"1 recipient(s); 0 warning(s); signature untrusted: signer-not-registered; {signer_note(keys.b)}"
    )
    assert fetch(hub, B, receipt.hub_document_id) == package

    hub.registration.set_signature_policy(A, SignaturePolicy.REQUIRE)
    assert refusal(hub, A, sign(hub.edoc(A, [B], number="404"), keys.b)) == "Client.SignerMismatch"
    valid = send(hub, A, sign(hub.edoc(A, [B], number="405"), keys.a))
    assert (valid.signature_verdict, valid.signature_reason) == ("valid", "ok")


def test_a_certificate_naming_another_agency_is_not_the_senders(
    hub: Hub, signing: Signing, keys: Keys
) -> None:
    """No certificate registered: the certificate's UID ties the signer to From, or not."""
    package = sign(hub.edoc(A, [B], number="406"), keys.b)  # B's certificate (UID B) on A's package
    receipt = send(hub, A, package)
    other = ("untrusted", "signer-not-sender")
    assert verdicts(receipt, hub, B) == (other, other)
    assert fetch(hub, B, receipt.hub_document_id) == package  # sound signature: delivered intact

    hub.registration.set_signature_policy(A, SignaturePolicy.REQUIRE)
    assert refusal(hub, A, sign(hub.edoc(A, [B], number="407"), keys.b)) == "Client.SignerMismatch"
    own = send(hub, A, sign(hub.edoc(A, [B], number="408"), keys.a))
    assert (own.signature_verdict, own.signature_reason) == ("valid", "ok")


# -- SHA-1 ------------------------------------------------------------------------------------------


def test_sha1_is_invalid_by_default_valid_and_weak_when_legacy_is_allowed_refused_under_require(
    hub: Hub, signing: Signing, keys: Keys
) -> None:
    weak = sha1_signed(hub.edoc(A, [B], number="501"), keys.a)
    refused = send(hub, A, weak)
    assert verdicts(refused, hub, B) == (("invalid", "weak-algorithm"), ("invalid", "weak-algorithm"))
    accepted = event(hub, refused.hub_document_id, TraceKind.ACCEPTED)
    assert accepted.detail == (
        "1 recipient(s); 0 warning(s); signature invalid: weak-algorithm; weak algorithm (SHA-1)"
    )
    assert hub_trace_headers(fetch(hub, B, refused.hub_document_id)) == [A, HUB_ORGAN_ID]

    signing(allow_legacy=True)
    legacy = sha1_signed(hub.edoc(A, [B], number="502"), keys.a)
    receipt = send(hub, A, legacy)
    assert verdicts(receipt, hub, B) == (("valid", "ok"), ("valid", "ok"))
    accepted = event(hub, receipt.hub_document_id, TraceKind.ACCEPTED)
    assert accepted.detail == (
        f"1 recipient(s); 0 warning(s); signature valid: ok; {signer_note(keys.a)}; weak algorithm (SHA-1)"
    )
    assert fetch(hub, B, receipt.hub_document_id) == legacy

    signing(SignaturePolicy.REQUIRE)
    assert refusal(hub, A, sha1_signed(hub.edoc(A, [B], number="503"), keys.a)) == (
        "Client.SignatureWeakAlgorithm"
    )


# -- receipts ---------------------------------------------------------------------------------------


def check_receipt(
    issued: IssuedReceipt,
    hub: Hub,
    keys: Keys,
    *,
    kind: ReceiptKind,
    hub_id: str,
    package: bytes,
    recipients: tuple[str, ...],
    attests: TraceEvent,
    issued_at: str,
) -> None:
    """The stored receipt verifies (chain and pinned), and says exactly what it must."""
    assert issued.kind is kind
    assert issued.recipient == (recipients[0] if kind is ReceiptKind.DELIVERED else None)
    assert issued.trace_seq == attests.seq
    assert issued.sha256 == sha256(issued.xml)
    for check in (
        verify_receipt(issued.xml, trust=TrustStore.of(anchors=[keys.root.certificate])),
        verify_receipt(issued.xml, trust=None, hub_certificates=[keys.hub.sha256]),
    ):
        assert (check.report.verdict, check.report.reason) == (Verdict.VALID, "ok"), check.report.message
        assert check.report.signer is not None
        assert check.report.signer.sha256 == keys.hub.sha256
        assert check.receipt == HubReceipt(
            receipt_id=issued.receipt_id,
            kind=kind,
            hub_organ_id=HUB_ORGAN_ID,
            hub_document_id=hub_id,
            document_id=hub.document_id(A, "601"),
            message_type="edoc",
            sender=A,
            recipients=recipients,
            accepted_sha256=sha256(package),
            accepted_size=len(package),
            delivered_sha256=sha256(package),
            event_time=attests.at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            issued_at=issued_at,
            signature_verdict="valid",
            signature_reason="ok",
            signer_sha256=keys.a.sha256,
            trace_seq=attests.seq,
            trace_hash=attests.hash,
        )
    other_hub = verify_receipt(issued.xml, trust=None, hub_certificates=[keys.a.sha256])
    assert (other_hub.report.verdict, other_hub.report.reason) == (Verdict.UNTRUSTED, "signer-not-registered")


def kinds(receipts: list[IssuedReceipt]) -> list[tuple[str, str | None]]:
    return [(r.kind.value, r.recipient) for r in receipts]


def test_receipts_are_issued_at_acceptance_and_confirmation_and_shown_to_whom_they_concern(
    hub: Hub, signing: Signing, keys: Keys, clock: FakeClock
) -> None:
    exchange = hub.exchange
    package = sign(hub.edoc(A, [B, C], number="601"), keys.a)
    hub_id = send(hub, A, package).hub_document_id
    accepted = event(hub, hub_id, TraceKind.ACCEPTED)
    assert receipt_rows(hub) == [("accepted", None, accepted.seq)]  # issued with the send, not on demand
    stamp = "2026-11-21T02:30:00.000000Z"

    [issued] = exchange.get_receipts(hub.caller(A), hub_id)
    check_receipt(
        issued,
        hub,
        keys,
        kind=ReceiptKind.ACCEPTED,
        recipients=(B, C),
        attests=accepted,
        issued_at=stamp,
        hub_id=hub_id,
        package=package,
    )
    assert exchange.get_receipts(hub.caller(B), hub_id) == [issued]
    assert exchange.get_receipts(hub.caller(C), hub_id) == [issued]

    clock.advance(minutes=5)
    assert exchange.confirm(hub.caller(B), hub_id, sha256(package), Outcome.DONE) is DeliveryState.DONE
    confirmed_b = event(hub, hub_id, TraceKind.CONFIRMED, B)
    assert receipt_rows(hub) == [("accepted", None, accepted.seq), ("delivered", B, confirmed_b.seq)]
    by_sender = exchange.get_receipts(hub.caller(A), hub_id)
    assert kinds(by_sender) == [("accepted", None), ("delivered", B)]
    assert by_sender[0] == issued
    check_receipt(
        by_sender[1],
        hub,
        keys,
        kind=ReceiptKind.DELIVERED,
        recipients=(B,),
        attests=confirmed_b,
        issued_at="2026-11-21T02:35:00.000000Z",
        hub_id=hub_id,
        package=package,
    )
    assert exchange.get_receipts(hub.caller(B), hub_id) == by_sender
    assert exchange.get_receipts(hub.caller(C), hub_id) == [issued]  # not B's delivery

    clock.advance(minutes=5)
    exchange.confirm(hub.caller(C), hub_id, sha256(package), Outcome.DONE)
    confirmed_c = event(hub, hub_id, TraceKind.CONFIRMED, C)
    everything = exchange.get_receipts(hub.caller(A), hub_id)
    assert kinds(everything) == [("accepted", None), ("delivered", B), ("delivered", C)]
    assert everything[2].trace_seq == confirmed_c.seq
    assert kinds(exchange.get_receipts(hub.caller(B), hub_id)) == [("accepted", None), ("delivered", B)]
    assert kinds(exchange.get_receipts(hub.caller(C), hub_id)) == [("accepted", None), ("delivered", C)]
    assert exchange.get_receipts(None, hub_id) == everything  # an operator

    with pytest.raises(EsbError) as hidden:
        exchange.get_receipts(hub.caller(STRANGER), hub_id)
    assert hidden.value.code == "Client.DocumentNotFound"
    with pytest.raises(EsbError) as unknown:
        exchange.get_receipts(hub.caller(A), "00000000-0000-0000-0000-000000000000")
    assert unknown.value.code == "Client.DocumentNotFound"

    assert remembered_hub_certificates(hub) == {keys.hub.sha256}
    audit = verify_database(hub.runtime.database)
    assert (audit.receipts, audit.receipt_problems, audit.intact) == (3, [], True)


def test_a_receipt_that_failed_at_send_time_is_issued_when_asked_and_only_once(
    hub: Hub, signing: Signing, keys: Keys, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    issuer = hub.exchange.receipts
    assert issuer is not None
    real_store = issuer._store  # both paths (right after the commit, and on demand) store here
    calls: list[int] = []
    failures = [1]

    def flaky(receipt: HubReceipt, document_pk: int, now: datetime) -> IssuedReceipt:
        calls.append(receipt.trace_seq)
        if failures[0]:
            failures[0] -= 1
            raise RuntimeError("database hiccup")
        return real_store(receipt, document_pk, now)

    monkeypatch.setattr(issuer, "_store", flaky)
    package = sign(hub.edoc(A, [B], number="601"), keys.a)
    with caplog.at_level(logging.WARNING, logger="esb.pipeline.exchange"):
        receipt = send(hub, A, package)
    hub_id = receipt.hub_document_id
    accepted = event(hub, hub_id, TraceKind.ACCEPTED)
    assert (receipt.signature_verdict, [r.state for r in receipt.recipients]) == (
        "valid",
        [DeliveryState.PENDING],
    )
    assert calls == [accepted.seq]
    assert receipt_rows(hub) == []
    assert [r.getMessage() for r in caplog.records] == [
        f"receipt for event {accepted.seq} of {hub_id} not issued; GetReceipt will issue it"
    ]

    clock.advance(minutes=1)
    [issued] = hub.exchange.get_receipts(hub.caller(A), hub_id)
    assert calls == [accepted.seq, accepted.seq]
    check_receipt(
        issued,
        hub,
        keys,
        kind=ReceiptKind.ACCEPTED,
        hub_id=hub_id,
        package=package,
        recipients=(B,),
        attests=accepted,
        issued_at="2026-11-21T02:31:00.000000Z",  # when it was asked for; the event is a minute older
    )
    clock.advance(minutes=1)
    assert hub.exchange.get_receipts(hub.caller(B), hub_id) == [issued]
    assert hub.exchange.get_receipts(hub.caller(A), hub_id) == [issued]
    assert calls == [accepted.seq, accepted.seq]  # nothing was missing: nothing issued again
    assert receipt_rows(hub) == [("accepted", None, accepted.seq)]

    # The same at confirmation: the delivery receipt comes when it is asked for.
    failures[0] = 1
    hub.exchange.confirm(hub.caller(B), hub_id, sha256(package), Outcome.DONE)
    confirmed = event(hub, hub_id, TraceKind.CONFIRMED, B)
    assert receipt_rows(hub) == [("accepted", None, accepted.seq)]
    assert kinds(hub.exchange.get_receipts(hub.caller(B), hub_id)) == [("accepted", None), ("delivered", B)]
    assert receipt_rows(hub) == [("accepted", None, accepted.seq), ("delivered", B, confirmed.seq)]
    assert calls == [accepted.seq, accepted.seq, confirmed.seq, confirmed.seq]


def test_without_a_receipt_key_sending_works_and_receipts_are_unavailable(
    hub: Hub, signing: Signing, keys: Keys
) -> None:
    signing(receipts=False)
    receipt = send(hub, A, sign(hub.edoc(A, [B], number="701"), keys.a))
    assert (receipt.signature_verdict, receipt.signature_reason) == ("valid", "ok")
    with pytest.raises(EsbError) as unavailable:
        hub.exchange.get_receipts(hub.caller(A), receipt.hub_document_id)
    assert unavailable.value.code == "Server.ReceiptsUnavailable"
    assert receipt_rows(hub) == []


def test_a_node_whose_first_receipt_lost_a_race_still_remembers_its_certificate(
    hub: Hub, signing: Signing, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two nodes issue the same receipt at once: one stands, and the loser's certificate is still
    remembered, so the receipts it signs later pass ``esb audit verify``."""
    package = sign(hub.edoc(A, [B], number="702"), keys.a)
    hub_id = send(hub, A, package).hub_document_id  # node 1 issues the accepted receipt
    accepted = event(hub, hub_id, TraceKind.ACCEPTED)

    # Node 2 (the next hub key) read "no receipt yet" for the same event before node 1 committed.
    node2 = ReceiptIssuer(hub.runtime.database, keys.hub_next, hub_organ_id=HUB_ORGAN_ID, clock=hub.clock)
    lookups: list[int] = []
    real_lookup = receipt_store.receipt_for_event

    def raced(session: Any, seq: int) -> Any:
        lookups.append(seq)
        return None if len(lookups) == 1 else real_lookup(session, seq)

    monkeypatch.setattr(receipt_store, "receipt_for_event", raced)
    lost = node2.issue(hub_id, accepted.seq)
    monkeypatch.undo()
    assert lookups == [accepted.seq, accepted.seq]  # the race, then node 1's receipt read back
    [first] = hub.exchange.get_receipts(hub.caller(A), hub_id)
    assert lost == first  # node 1's receipt stands

    hub.exchange.receipts = node2  # node 2 handles the confirmation
    hub.exchange.confirm(hub.caller(B), hub_id, sha256(package), Outcome.DONE)
    assert kinds(hub.exchange.get_receipts(hub.caller(A), hub_id)) == [("accepted", None), ("delivered", B)]
    assert remembered_hub_certificates(hub) == {keys.hub.sha256, keys.hub_next.sha256}
    assert verify_database(hub.runtime.database).receipt_problems == []


# -- a large signed package through an upload space -------------------------------------------------


def test_a_large_signed_package_through_an_upload_space_is_valid_and_delivered_intact(
    hub: Hub, signing: Signing, keys: Keys
) -> None:
    attachment = random.Random(20261121).randbytes(3_600_000)
    package = sign(hub.edoc(A, [B], number="801", attachment=attachment), keys.a)
    assert len(package) > hub.exchange.policy.inline_package_bytes
    sender = hub.caller(A)
    space = hub.exchange.request_space(sender, [B], "Hồ sơ lớn", 0, "edoc", "edXML")
    uploaded = hub.exchange.upload(sender, space.space_id, io.BytesIO(package), len(package))
    assert (uploaded.size, uploaded.sha256) == (len(package), sha256(package))

    receipt = hub.exchange.send_document(sender, space_id=space.space_id)
    assert verdicts(receipt, hub, B) == (("valid", "ok"), ("valid", "ok"))
    assert (receipt.sha256, receipt.size) == (sha256(package), len(package))
    fetched = hub.exchange.get_document(hub.caller(B), receipt.hub_document_id)
    assert (fetched.package, fetched.sha256, fetched.size) == (None, sha256(package), len(package))
    delivered = b"".join(hub.exchange.download(hub.caller(B), receipt.hub_document_id).chunks)
    assert delivered == package
    found = verified(hub, delivered, keys.root.certificate)
    assert (found.verdict, found.reason) == (Verdict.VALID, "ok")
