"""Binding the signer to the sender: registered certificates, else the certificate's UID."""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from esb.domain.signatures import SignatureReport, Verdict, report
from esb.security import pki
from esb.security.signer_binding import NOT_BOUND, agency_code_of, bind_to_sender

NOW = datetime(2026, 11, 21, 2, 30, tzinfo=UTC)
SENDER = "000.00.00.H53"


@pytest.fixture(scope="module")
def ca() -> pki.IssuedCertificate:
    return pki.make_root_ca("Binding Test CA", now=NOW)


def _valid(certificate: pki.IssuedCertificate) -> SignatureReport:
    der = certificate.certificate.public_bytes(Encoding.DER)
    return report("ok", certificates=(base64.b64encode(der).decode(),))


def test_a_certificate_naming_the_sender_stays_valid(ca: pki.IssuedCertificate) -> None:
    own = pki.issue_signing_certificate(ca, "Sender", now=NOW, agency_code=SENDER)
    assert agency_code_of(own.certificate) == SENDER
    assert bind_to_sender(_valid(own), SENDER, registered=()) == _valid(own)


def test_a_certificate_naming_another_agency_is_untrusted(ca: pki.IssuedCertificate) -> None:
    other = pki.issue_signing_certificate(ca, "Other", now=NOW, agency_code="000.00.00.H30")
    bound = bind_to_sender(_valid(other), SENDER, registered=())
    assert (bound.verdict, bound.reason) == (Verdict.UNTRUSTED, "signer-not-sender")
    assert "000.00.00.H30" in bound.message
    assert bound.certificates == _valid(other).certificates  # the rest of the report is kept


def test_a_certificate_naming_no_agency_is_valid_with_a_warning(ca: pki.IssuedCertificate) -> None:
    anonymous = pki.issue_signing_certificate(ca, "Nobody", now=NOW)
    bound = bind_to_sender(_valid(anonymous), SENDER, registered=())
    assert (bound.verdict, bound.warnings) == (Verdict.VALID, (NOT_BOUND,))


def test_registered_certificates_and_other_verdicts_are_left_alone(ca: pki.IssuedCertificate) -> None:
    other = pki.issue_signing_certificate(ca, "Other", now=NOW, agency_code="000.00.00.H30")
    assert bind_to_sender(_valid(other), SENDER, registered=["ab" * 32]) == _valid(other)
    untrusted = replace(_valid(other), verdict=Verdict.UNTRUSTED, reason="chain-untrusted")
    assert bind_to_sender(untrusted, SENDER, registered=()) == untrusted
    assert bind_to_sender(report("no-signature"), SENDER, registered=()) == report("no-signature")
