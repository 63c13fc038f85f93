"""The real edXML samples (../shared/samples/edxml, see its README.md): their signature verdicts, written out.

Nothing here is computed from the files: each sample's verdict and reason is stated, with why.
Then every sample we can sign is re-signed with a test key and must verify ``valid``, and must
read exactly as before apart from the W.SignatureNamespace warning its placeholder caused.
"""

from __future__ import annotations

import base64
import hashlib
import io
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from esb.domain.signatures import Verdict
from esb.errors import EdxmlInvalid, EsbError, XmlInputError
from esb.security import pki
from esb.security.package_signature import (
    VPCP_SAMPLE_SIGNATURE_VALUE_SHA256,
    sign_package,
    verify_package,
)
from esb.security.signing_key import SigningKey
from esb.security.trust_store import TrustStore
from esb.xml_processing.edxml_reader import read_package

# /work/main/tests/security/this_file -> /work/shared (the repository's ../shared)
SAMPLES_DIR = Path(__file__).resolve().parents[3] / "shared" / "samples" / "edxml"
NOW = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
QCVN_NAMESPACE = ("signature-namespace",)


@dataclass(frozen=True)
class Expected:
    verdict: Verdict | None  # None: verify_package raises (the parser refuses the bytes)
    reason: str  # the reason code, or the XmlInputError code
    warnings: tuple[str, ...] = ()
    signable: str = ""  # "" when re-signing works, else the code of the refusal


UNSIGNED = Expected(Verdict.UNSIGNED, "no-signature")
STATUS = Expected(Verdict.UNSIGNED, "no-signature", signable="Client.EdxmlInvalid")  # statuses carry none
# The VPCP/VNPT SDK fixture signature: <Signature> without the xmldsig declaration (so in the QCVN
# namespace), the SignatureValue shared by every fixture, a truncated CN=user05 certificate, and
# the unregistered exclusive-c14n URI.  The shared SignatureValue is what is reported.
VPCP_FIXTURE = Expected(Verdict.PLACEHOLDER, "sample-signature", QCVN_NAMESPACE)

EXPECTED: dict[str, Expected] = {
    # No Signature.  The attachment's bytes went through a text codec (the reader refuses it
    # with Client.EdxmlAttachmentCorrupted), but that is not the signature layer's verdict; the
    # corrupted bytes can be signed like any others.
    "ANTIEXAMPLE_mic_edoc_corrupted_binary.edxml": UNSIGNED,
    "mic_edoc_minimal_gateway_test.edxml": UNSIGNED,
    "mic_edoc_new_bdt0.edxml": VPCP_FIXTURE,
    "mic_edoc_new_bdt0_vpcp_original.edxml": VPCP_FIXTURE,
    "mic_edoc_new_multi_recipient_zipped_edxml_attachment.edxml": VPCP_FIXTURE,
    # Re-serialised by the VNPT library: the xmldsig declaration is gone, only the enveloped
    # transform is left, and KeyInfo holds a whole VNPT-CA certificate; but the SignatureValue
    # is still the shared sample one.
    "mic_edoc_received_via_axis_2_traces.edxml": VPCP_FIXTURE,
    "mic_edoc_replacement_bdt3.edxml": VPCP_FIXTURE,
    "mic_edoc_revocation_bdt1.edxml": VPCP_FIXTURE,
    "mic_edoc_update_bdt2.edxml": VPCP_FIXTURE,
    # Not namespace-well-formed (xlink:href without a declaration): the hardened parser refuses
    # the bytes, as the hub's reader does.  Its Signature (in the xmldsig namespace, the shared
    # SignatureValue) is a placeholder: see test_the_vxp_template_signature_is_a_placeholder.
    "mic_edoc_vxp_sdk_template_placeholder.edxml": Expected(
        None, "Client.XmlNotNamespaceWellFormed", signable="Client.XmlNotNamespaceWellFormed"
    ),
    "mic_status_01_alt.edxml": STATUS,
    "mic_status_01_inbox.edxml": STATUS,
    "mic_status_02_rejection.edxml": STATUS,
    "mic_status_03_acceptance.edxml": STATUS,
    "mic_status_04_assignment.edxml": STATUS,
    "mic_status_05_processing.edxml": STATUS,
    "mic_status_06_finish.edxml": STATUS,
    "mic_status_13_cancellation.edxml": STATUS,
    "mic_status_15_change_acceptance.edxml": STATUS,
    "mic_status_16_change_rejection.edxml": STATUS,
}


@dataclass(frozen=True)
class Signer:
    key: SigningKey
    trust: TrustStore


@pytest.fixture(scope="module")
def signer() -> Signer:
    root = pki.make_root_ca("Samples Root CA", now=NOW)
    leaf = pki.issue_signing_certificate(root, "Samples signer", now=NOW)
    return Signer(SigningKey(leaf.key, [leaf.certificate]), TrustStore.of(anchors=[root.certificate]))


def test_every_sample_has_an_expected_verdict() -> None:
    assert sorted(EXPECTED) == sorted(path.name for path in SAMPLES_DIR.glob("*.edxml"))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_verdict(name: str, signer: Signer) -> None:
    expected = EXPECTED[name]
    path = SAMPLES_DIR / name
    if expected.verdict is None:
        with pytest.raises(XmlInputError) as raised:
            verify_package(path, trust=signer.trust, at=NOW)
        assert raised.value.code == expected.reason
        return
    for source in (path, path.read_bytes()):
        found = verify_package(source, trust=signer.trust, at=NOW)
        assert (found.verdict, found.reason, found.warnings) == (
            expected.verdict,
            expected.reason,
            expected.warnings,
        ), found.message
        assert found.signer is None
        assert found.covered == ""


def test_the_sample_value_is_recognised_by_its_value(signer: Signer) -> None:
    """Another DigestValue does not hide the sample; another SignatureValue does, and then the
    fixture is judged on what is left: a truncated certificate, or (the axis sample, which has a
    whole certificate) SHA-1, and with legacy allowed a SignatureValue that does not verify."""
    data = (SAMPLES_DIR / "mic_edoc_new_bdt0.edxml").read_bytes()
    value = data.split(b"<SignatureValue>")[1].split(b"</SignatureValue>")[0]
    digest = hashlib.sha256(base64.b64decode(b"".join(value.split()))).hexdigest()
    assert digest == VPCP_SAMPLE_SIGNATURE_VALUE_SHA256

    other_digest = data.replace(b"FwgIqsSYJshUS2+wlOM61L+q7Aw=", b"AAAAAAAAAAAAAAAAAAAAAAAAAAA=", 1)
    assert other_digest != data
    found = verify_package(other_digest, trust=signer.trust, at=NOW)
    assert (found.verdict, found.reason) == (Verdict.PLACEHOLDER, "sample-signature")

    other_value = data.replace(b"<SignatureValue>GbVb8n9+", b"<SignatureValue>HbVb8n9+", 1)
    assert other_value != data
    found = verify_package(other_value, trust=signer.trust, at=NOW)
    assert (found.verdict, found.reason) == (Verdict.PLACEHOLDER, "truncated-certificate")

    axis = (SAMPLES_DIR / "mic_edoc_received_via_axis_2_traces.edxml").read_bytes()
    axis_other_value = axis.replace(b"<SignatureValue>GbVb8n9+", b"<SignatureValue>HbVb8n9+", 1)
    assert axis_other_value != axis
    found = verify_package(axis_other_value, trust=signer.trust, at=NOW)
    assert (found.verdict, found.reason, found.weak) == (Verdict.INVALID, "weak-algorithm", True)
    found = verify_package(axis_other_value, trust=signer.trust, at=NOW, allow_legacy=True)
    assert (found.verdict, found.reason) == (Verdict.INVALID, "signature-value-mismatch")


def test_the_vxp_template_signature_is_a_placeholder(signer: Signer) -> None:
    """With its two missing declarations added on the root (``xlink:``, and ``edXML:``, which
    AttachmentEncoded uses outside the envelope that declares it), the template parses; its
    Signature is the sample one."""
    data = (SAMPLES_DIR / "mic_edoc_vxp_sdk_template_placeholder.edxml").read_bytes()
    root_tag = b'<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016"'
    assert root_tag in data
    declarations = (
        b' xmlns:xlink="http://www.w3.org/1999/xlink" xmlns:edXML="http://www.mic.gov.vn/TBT/QCVN_102_2016"'
    )
    repaired = data.replace(root_tag, root_tag + declarations, 1)
    found = verify_package(repaired, trust=signer.trust, at=NOW)
    assert (found.verdict, found.reason, found.warnings) == (Verdict.PLACEHOLDER, "sample-signature", ())


def _reading(data: bytes | Path) -> tuple[str, ...] | str:
    """What the hub's reader makes of a package: its warning codes, or its error code."""
    try:
        return tuple(sorted({warning.code for warning in read_package(data).warnings}))
    except EsbError as error:
        return error.code


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_sample_re_signed_verifies(name: str, signer: Signer) -> None:
    expected = EXPECTED[name]
    path = SAMPLES_DIR / name
    out = io.BytesIO()
    if expected.signable:
        with pytest.raises((XmlInputError, EdxmlInvalid)) as raised:
            sign_package(path, out, key=signer.key, replace=True)
        assert raised.value.code == expected.signable
        return
    sign_package(path, out, key=signer.key, replace=True)
    signed = out.getvalue()
    found = verify_package(signed, trust=signer.trust, at=NOW)
    assert (found.verdict, found.reason, found.warnings) == (Verdict.VALID, "ok", ()), found.message
    before = _reading(path)
    after = _reading(signed)
    if isinstance(before, str):
        assert after == before  # refused by the reader for the same reason as before signing
    else:
        assert after == tuple(code for code in before if code != "W.SignatureNamespace")
