"""Signature verdicts and reports: what the hub concluded about a package's XML signature.

Pure data.  The checks themselves live in :mod:`esb.security.package_signature` (XML-DSig)
and :mod:`esb.security.trust_store` (certificate chains); the exchange records the report
with the document, in its trace and in the hub's receipts, and recipients see the verdict.

A report says *which* check decided the verdict (``reason``, a stable code from
:data:`REASONS`), never anything of the document's content.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Verdict(StrEnum):
    """The five outcomes of verifying a package's signature."""

    VALID = "valid"  # signature value and every digest check, and the signer is trusted
    INVALID = "invalid"  # a cryptographic or structural check failed (``reason`` says which)
    UNSIGNED = "unsigned"  # no Signature in edXMLHeader
    PLACEHOLDER = "placeholder"  # a Signature that was never a real one (empty, sample, truncated)
    UNTRUSTED = "untrusted"  # mathematically sound, but the signer's certificate is not trusted
    NOT_CHECKED = "not-checked"  # the policy for this package is ``off``


class SignaturePolicy(StrEnum):
    """What the hub does with a package's signature (per agency; the strictest party wins)."""

    OFF = "off"  # not verified, verdict ``not-checked``
    RECORD = "record"  # verify, record the verdict in the trace, deliver whatever it is
    REQUIRE = "require"  # verify, refuse anything but ``valid`` with a ``Client.Signature*`` fault

    @property
    def strictness(self) -> int:
        return {SignaturePolicy.OFF: 0, SignaturePolicy.RECORD: 1, SignaturePolicy.REQUIRE: 2}[self]

    @staticmethod
    def strictest(policies: list[SignaturePolicy]) -> SignaturePolicy:
        return max(policies, key=lambda p: p.strictness, default=SignaturePolicy.RECORD)


# Stable reason codes: the verdict each one leads to, and what it means.  Documented in
# docs/signatures.md; tests/docs/test_signature_reasons_documented.py keeps the two in step.
REASONS: dict[str, tuple[Verdict, str]] = {
    # unsigned / placeholder
    "no-signature": (Verdict.UNSIGNED, "edXMLHeader carries no Signature"),
    "empty-signature": (Verdict.PLACEHOLDER, "the Signature element is empty"),
    "empty-signature-value": (Verdict.PLACEHOLDER, "SignatureValue or DigestValue is empty"),
    "sample-signature": (Verdict.PLACEHOLDER, "the SignatureValue of a published sample package"),
    "truncated-certificate": (Verdict.PLACEHOLDER, "the X509Certificate is truncated or not a certificate"),
    # invalid
    "malformed-signature": (Verdict.INVALID, "the Signature does not follow XML-DSig"),
    "misplaced-signature": (Verdict.INVALID, "the Signature is not a child of edXMLHeader"),
    "multiple-signatures": (Verdict.INVALID, "edXMLHeader carries more than one Signature"),
    "missing-key-info": (Verdict.INVALID, "KeyInfo carries no X509Certificate"),
    "unsupported-algorithm": (Verdict.INVALID, "an algorithm or transform outside the accepted set"),
    "weak-algorithm": (Verdict.INVALID, "SHA-1, and the policy does not allow legacy algorithms"),
    "reference-not-document": (
        Verdict.INVALID,
        "the signed reference is not the whole edXML document (signature wrapping)",
    ),
    "digest-mismatch": (Verdict.INVALID, "a reference's digest does not match: the content was changed"),
    "signature-value-mismatch": (Verdict.INVALID, "the SignatureValue does not match SignedInfo and the key"),
    # untrusted
    "no-trust-anchors": (Verdict.UNTRUSTED, "no trust anchors are configured"),
    "chain-untrusted": (Verdict.UNTRUSTED, "the certificate does not chain to a trust anchor"),
    "certificate-expired": (Verdict.UNTRUSTED, "the certificate had expired at the verification time"),
    "certificate-not-yet-valid": (
        Verdict.UNTRUSTED,
        "the certificate was not yet valid at the verification time",
    ),
    "certificate-revoked": (Verdict.UNTRUSTED, "a CRL lists the certificate (or one of its issuers)"),
    "key-usage": (Verdict.UNTRUSTED, "the certificate's key usage does not allow signing documents"),
    "signer-not-registered": (
        Verdict.UNTRUSTED,
        "the From agency has registered certificates and the signer is not one of them",
    ),
    "signer-not-sender": (
        Verdict.UNTRUSTED,
        "the signing certificate names another agency (its UID) than the package's From",
    ),
    # valid
    "ok": (Verdict.VALID, "signature value and digests verified; signer trusted"),
    "policy-off": (Verdict.NOT_CHECKED, "the signature policy is off"),
}

# Fault codes under the ``require`` policy, by verdict (and by reason where one is sharper).
FAULT_BY_VERDICT: dict[Verdict, str] = {
    Verdict.UNSIGNED: "Client.SignatureMissing",
    Verdict.PLACEHOLDER: "Client.SignaturePlaceholder",
    Verdict.INVALID: "Client.SignatureInvalid",
    Verdict.UNTRUSTED: "Client.SignatureUntrusted",
}
FAULT_BY_REASON: dict[str, str] = {
    "weak-algorithm": "Client.SignatureWeakAlgorithm",
    "signer-not-registered": "Client.SignerMismatch",
    "signer-not-sender": "Client.SignerMismatch",
}


def fault_code(verdict: Verdict, reason: str) -> str:
    return FAULT_BY_REASON.get(reason) or FAULT_BY_VERDICT.get(verdict, "Client.SignatureInvalid")


@dataclass(frozen=True)
class SignerInfo:
    """The signing certificate as the report shows it (public data only)."""

    subject: str
    issuer: str
    serial: str  # hex
    sha256: str  # fingerprint of the DER certificate
    not_before: str  # ISO 8601 UTC
    not_after: str


@dataclass(frozen=True)
class SignatureReport:
    """The result of verifying one package's signature.

    ``covered`` says what the signature covers when it is mathematically sound (``""``
    otherwise); only what is listed there is reported as signed.  ``certificates`` are the
    base64 DER certificates the package carried (signer first), so that an auditor can
    re-check the chain offline from the report alone.
    """

    verdict: Verdict
    reason: str
    message: str
    signer: SignerInfo | None = None
    chain: tuple[str, ...] = ()  # subjects from the signer up to the anchor, when it chains
    signature_method: str | None = None
    digest_methods: tuple[str, ...] = ()
    canonicalization: str | None = None
    covered: str = ""
    digests: tuple[str, ...] = ()  # DigestValue of each reference, as in the package
    weak: bool = False  # SHA-1 somewhere (allowed by policy, reported)
    warnings: tuple[str, ...] = ()
    certificates: tuple[str, ...] = ()
    checked_at: str = ""  # ISO 8601 UTC: the time the certificates were checked at
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["verdict"] = self.verdict.value
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SignatureReport:
        signer = data.get("signer")
        return cls(
            verdict=Verdict(data["verdict"]),
            reason=str(data["reason"]),
            message=str(data.get("message", "")),
            signer=SignerInfo(**signer) if signer else None,
            chain=tuple(data.get("chain", ())),
            signature_method=data.get("signature_method"),
            digest_methods=tuple(data.get("digest_methods", ())),
            canonicalization=data.get("canonicalization"),
            covered=str(data.get("covered", "")),
            digests=tuple(data.get("digests", ())),
            weak=bool(data.get("weak", False)),
            warnings=tuple(data.get("warnings", ())),
            certificates=tuple(data.get("certificates", ())),
            checked_at=str(data.get("checked_at", "")),
            extra=dict(data.get("extra", {})),
        )

    @classmethod
    def from_json(cls, text: str) -> SignatureReport:
        return cls.from_dict(json.loads(text))


def report(verdict_reason: str, message: str | None = None, **fields: Any) -> SignatureReport:
    """A report whose verdict follows from its reason code."""
    verdict, meaning = REASONS[verdict_reason]
    return SignatureReport(verdict=verdict, reason=verdict_reason, message=message or meaning, **fields)
