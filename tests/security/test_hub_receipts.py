"""Hub receipts: signed XML that stands on its own, verified at its IssuedAt, across key rotation."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from lxml import etree

from esb.domain.receipts import HubReceipt, ReceiptKind
from esb.domain.signatures import Verdict
from esb.errors import ClientError
from esb.security import pki
from esb.security.hub_receipts import (
    COVERED,
    RECEIPT_NS,
    parse_receipt,
    receipt_xml,
    sign_receipt,
    verify_receipt,
)
from esb.security.signing_key import SigningKey
from esb.security.trust_store import TrustStore
from esb.xml_processing.namespaces import DS

NOW = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)

RECEIPT = HubReceipt(
    receipt_id="r-2025-000001",
    kind=ReceiptKind.ACCEPTED,
    hub_organ_id="000.00.00.H53",
    hub_document_id="hd-7f3a",
    document_id="000.00.01.H53,2025/02/28,123/STC-BC",
    message_type="edoc",
    sender="000.00.01.H53",
    recipients=("000.00.00.H30", "000.00.02.H53"),
    accepted_sha256="a" * 64,
    accepted_size=1_234_567,
    delivered_sha256="b" * 64,
    event_time="2025-03-01T07:59:58Z",
    issued_at="2025-03-01T08:00:00Z",
    signature_verdict="valid",
    signature_reason="ok",
    signer_sha256="c" * 64,
    trace_seq=42,
    trace_hash="d" * 64,
)

# A different value for every field, of the right type: each edit must break the digest.
EDITS: dict[str, Any] = {
    "receipt_id": "r-2025-000002",
    "kind": ReceiptKind.DELIVERED,
    "hub_organ_id": "000.00.00.H30",
    "hub_document_id": "hd-0000",
    "document_id": "000.00.01.H53,2025/02/28,124/STC-BC",
    "message_type": "status",
    "sender": "000.00.09.H53",
    "recipients": ("000.00.00.H30",),
    "accepted_sha256": "e" * 64,
    "accepted_size": 1_234_568,
    "delivered_sha256": "f" * 64,
    "event_time": "2025-03-01T07:00:00Z",
    "issued_at": "2025-03-01T08:00:01Z",
    "signature_verdict": "invalid",
    "signature_reason": "digest-mismatch",
    "signer_sha256": "0" * 64,
    "trace_seq": 43,
    "trace_hash": "1" * 64,
}


@dataclass(frozen=True)
class Hub:
    root: pki.IssuedCertificate
    old: pki.IssuedCertificate  # the hub's first key: valid NOW - 2y .. NOW - 1y + 1 day
    new: pki.IssuedCertificate  # after rotation
    stranger: pki.IssuedCertificate  # a certificate from the same CA that is not the hub's
    trust: TrustStore

    @staticmethod
    def key(issued: pki.IssuedCertificate, issuing: pki.IssuedCertificate) -> SigningKey:
        return SigningKey(issued.key, [issued.certificate, issuing.certificate])


@pytest.fixture(scope="module")
def hub() -> tuple[Hub, pki.IssuedCertificate]:
    start = NOW - timedelta(days=800)
    root = pki.make_root_ca("Province Root CA", now=start)
    issuing = pki.make_intermediate_ca(root, "Province Issuing CA", now=start)
    key = pki.new_rsa_key()
    old = pki.issue_signing_certificate(
        issuing,
        "LGSP hub (2023)",
        now=start,
        key=key,
        not_before=NOW - timedelta(days=730),
        not_after=NOW - timedelta(days=364),
    )
    new = pki.issue_signing_certificate(issuing, "LGSP hub (2025)", now=NOW - timedelta(days=1))
    stranger = pki.issue_signing_certificate(issuing, "Not the hub", now=NOW - timedelta(days=1), key=key)
    return Hub(root, old, new, stranger, TrustStore.of(anchors=[root.certificate])), issuing


def test_round_trip_sign_parse_verify(hub: tuple[Hub, pki.IssuedCertificate]) -> None:
    keys, issuing = hub
    data = sign_receipt(RECEIPT, Hub.key(keys.new, issuing))
    assert data.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    assert parse_receipt(data) == RECEIPT
    check = verify_receipt(data, trust=keys.trust)
    assert check.receipt == RECEIPT
    assert (check.report.verdict, check.report.reason) == (Verdict.VALID, "ok"), check.report.message
    assert check.report.covered == COVERED
    assert check.report.checked_at == "2025-03-01T08:00:00Z"  # its IssuedAt
    assert check.report.chain == (keys.new.subject, issuing.subject, keys.root.subject)
    root = etree.fromstring(data)
    assert root.tag == f"{{{RECEIPT_NS}}}Receipt"
    assert root[-1].tag == f"{{{DS}}}Signature"


def test_the_format_is_one_element_per_field_in_a_fixed_order() -> None:
    root = receipt_xml(RECEIPT)
    names = [etree.QName(child).localname for child in root]
    assert names == [
        "ReceiptId",
        "Kind",
        "HubOrganId",
        "HubDocumentId",
        "DocumentId",
        "MessageType",
        "Sender",
        "Recipients",
        "AcceptedSha256",
        "AcceptedSize",
        "DeliveredSha256",
        "EventTime",
        "IssuedAt",
        "SignatureVerdict",
        "SignatureReason",
        "SignerSha256",
        "TraceSeq",
        "TraceHash",
    ]
    assert [r.text for r in root[7]] == list(RECEIPT.recipients)
    sparse = dataclasses.replace(
        RECEIPT, document_id=None, delivered_sha256=None, signer_sha256=None, recipients=()
    )
    sparse_root = receipt_xml(sparse)
    assert "DocumentId" not in [etree.QName(child).localname for child in sparse_root]
    assert parse_receipt(etree.tostring(sparse_root)) == sparse


@pytest.mark.parametrize("field", sorted(EDITS))
def test_each_field_edited_is_a_digest_mismatch(hub: tuple[Hub, pki.IssuedCertificate], field: str) -> None:
    keys, issuing = hub
    data = sign_receipt(RECEIPT, Hub.key(keys.new, issuing))
    edited_receipt = dataclasses.replace(RECEIPT, **{field: EDITS[field]})
    assert edited_receipt != RECEIPT
    # the edited values, with the original Signature element carried over
    root = receipt_xml(edited_receipt)
    signature = etree.fromstring(data)[-1]
    root.append(signature)
    tampered = etree.tostring(root)
    check = verify_receipt(tampered, trust=keys.trust, at=NOW)
    assert check.receipt == edited_receipt
    assert (check.report.verdict, check.report.reason) == (Verdict.INVALID, "digest-mismatch")
    assert check.report.covered == ""


def test_an_edit_by_hand_in_the_bytes_is_a_digest_mismatch(hub: tuple[Hub, pki.IssuedCertificate]) -> None:
    keys, issuing = hub
    data = sign_receipt(RECEIPT, Hub.key(keys.new, issuing))
    tampered = data.replace(b"<AcceptedSize>1234567<", b"<AcceptedSize>1234568<")
    assert tampered != data
    check = verify_receipt(tampered, trust=keys.trust)
    assert (check.report.verdict, check.report.reason) == (Verdict.INVALID, "digest-mismatch")


def test_the_hub_certificate_pin_list(hub: tuple[Hub, pki.IssuedCertificate]) -> None:
    keys, issuing = hub
    data = sign_receipt(RECEIPT, Hub.key(keys.new, issuing))
    pinned = verify_receipt(data, trust=None, hub_certificates=[keys.old.sha256, keys.new.sha256])
    assert (pinned.report.verdict, pinned.report.reason) == (Verdict.VALID, "ok")
    by_stranger = sign_receipt(RECEIPT, Hub.key(keys.stranger, issuing))
    chained = verify_receipt(by_stranger, trust=keys.trust)
    assert (chained.report.verdict, chained.report.reason) == (Verdict.VALID, "ok")  # same CA...
    wrong = verify_receipt(by_stranger, trust=keys.trust, hub_certificates=[keys.old.sha256, keys.new.sha256])
    assert (wrong.report.verdict, wrong.report.reason) == (Verdict.UNTRUSTED, "signer-not-registered")


def test_after_key_rotation_old_receipts_still_verify_at_their_issued_at(
    hub: tuple[Hub, pki.IssuedCertificate],
) -> None:
    keys, issuing = hub
    issued_then = "2024-01-15T10:00:00Z"  # while the old certificate was valid
    old_receipt = dataclasses.replace(RECEIPT, receipt_id="r-2024-000777", issued_at=issued_then)
    old_data = sign_receipt(old_receipt, Hub.key(keys.old, issuing))
    check = verify_receipt(old_data, trust=keys.trust)
    assert (check.report.verdict, check.report.reason) == (Verdict.VALID, "ok"), check.report.message
    assert check.report.checked_at == issued_then
    assert check.report.signer is not None
    assert check.report.signer.sha256 == keys.old.sha256
    # checked today instead, the old certificate has expired
    today = verify_receipt(old_data, trust=keys.trust, at=NOW)
    assert (today.report.verdict, today.report.reason) == (Verdict.UNTRUSTED, "certificate-expired")
    # new receipts are signed with the new key and verify too, with the same anchor
    new_data = sign_receipt(RECEIPT, Hub.key(keys.new, issuing))
    assert verify_receipt(new_data, trust=keys.trust).report.verdict is Verdict.VALID
    # the old key cannot sign a receipt dated after it expired
    late = sign_receipt(RECEIPT, Hub.key(keys.old, issuing))
    late_check = verify_receipt(late, trust=keys.trust)
    assert (late_check.report.verdict, late_check.report.reason) == (Verdict.UNTRUSTED, "certificate-expired")


def test_an_unsigned_receipt_and_misplaced_or_doubled_signatures(
    hub: tuple[Hub, pki.IssuedCertificate],
) -> None:
    keys, issuing = hub
    unsigned = etree.tostring(receipt_xml(RECEIPT))
    check = verify_receipt(unsigned, trust=keys.trust)
    assert check.receipt == RECEIPT
    assert (check.report.verdict, check.report.reason) == (Verdict.UNSIGNED, "no-signature")
    signed = etree.fromstring(sign_receipt(RECEIPT, Hub.key(keys.new, issuing)))
    signature = signed[-1]
    doubled = etree.fromstring(etree.tostring(signed))
    doubled.append(etree.fromstring(etree.tostring(signature)))
    assert verify_receipt(etree.tostring(doubled), trust=keys.trust).report.reason == "multiple-signatures"
    signed[7].append(signature)  # into Recipients
    moved = verify_receipt(etree.tostring(signed), trust=keys.trust, at=NOW)
    assert moved.receipt is None  # Recipients now holds more than Recipient elements
    assert (moved.report.verdict, moved.report.reason) == (Verdict.INVALID, "misplaced-signature")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage, not XML",
        b"<Receipt/>",  # no namespace
        b'<Other xmlns="urn:lgsp-esb:receipt:1"/>',
        b'<!DOCTYPE Receipt [<!ENTITY x "y">]><Receipt xmlns="urn:lgsp-esb:receipt:1">&x;</Receipt>',
    ],
    ids=["empty", "not-xml", "no-namespace", "wrong-root", "doctype"],
)
def test_garbage_is_a_malformed_receipt(data: bytes) -> None:
    with pytest.raises(ClientError) as parsing:
        parse_receipt(data)
    assert parsing.value.code == "Client.ReceiptMalformed"
    with pytest.raises(ClientError) as verifying:
        verify_receipt(data, trust=None)
    assert verifying.value.code == "Client.ReceiptMalformed"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"<AcceptedSize>1234567</AcceptedSize>", b"<AcceptedSize>many</AcceptedSize>"),
        (b"<Kind>accepted</Kind>", b"<Kind>rejected</Kind>"),
        (b"<TraceSeq>42</TraceSeq>", b""),
        (b"<IssuedAt>2025-03-01T08:00:00Z</IssuedAt>", b"<IssuedAt>yesterday</IssuedAt>"),
        (b"<Sender>000.00.01.H53</Sender>", b"<Sender><b>x</b></Sender>"),
        (b"<TraceHash>", b"<Extra/><TraceHash>"),
    ],
    ids=["not-an-int", "unknown-kind", "missing-field", "bad-time", "element-in-field", "unknown-element"],
)
def test_unreadable_fields(hub: tuple[Hub, pki.IssuedCertificate], old: bytes, new: bytes) -> None:
    keys, issuing = hub
    data = sign_receipt(RECEIPT, Hub.key(keys.new, issuing))
    assert old in data
    broken = data.replace(old, new, 1)
    with pytest.raises(ClientError) as raised:
        parse_receipt(broken)
    assert raised.value.code == "Client.ReceiptMalformed"
    # verify_receipt still checks the signature when it is given a time; the receipt is None
    check = verify_receipt(broken, trust=keys.trust, at=NOW)
    assert check.receipt is None
    assert (check.report.verdict, check.report.reason) == (Verdict.INVALID, "digest-mismatch")
    with pytest.raises(ClientError) as no_time:
        verify_receipt(broken, trust=keys.trust)
    assert no_time.value.code == "Client.ReceiptMalformed"
