"""Package signatures at acceptance: which policy applies, verification, and refusal.

The policy of a package is the strictest of its sender's and its recipients' policies
(``off`` < ``record`` < ``require``); an agency without one of its own gets the hub's
default (``ESB_SIGNATURE_POLICY``, ``record``).  So a recipient that requires signed
documents gets only signed documents, whoever sends them.

* ``off``: not verified; the verdict is ``not-checked``.
* ``record``: verified; the verdict goes into the trace, the receipts and the recipients'
  mailbox entries; the package is delivered whatever it is.
* ``require``: anything but ``valid`` is refused with a ``Client.Signature*`` fault before
  anything is stored.

Verification runs outside any database transaction (a large package takes a while): the
policies and the sender's registered certificates are read first, in a short one.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from esb.domain.signatures import SignaturePolicy, SignatureReport, Verdict, fault_code, report
from esb.errors import ClientError
from esb.security.package_signature import verify_package
from esb.security.signer_binding import bind_to_sender
from esb.security.trust_store import TrustStore


class SignatureRefused(ClientError):
    """A package refused by the ``require`` policy (the code says which check failed)."""

    default_code = "Client.SignatureInvalid"


@dataclass(frozen=True)
class SignatureRules:
    trust: TrustStore | None = None
    default_policy: SignaturePolicy = SignaturePolicy.RECORD
    allow_legacy: bool = False
    max_bytes: int = 1 << 30

    def effective(
        self, policies: Mapping[str, str | None], parties: Sequence[str], *, status: bool = False
    ) -> SignaturePolicy:
        """The strictest policy among ``parties`` (an unset or unknown party counts as the default).

        Status packages (``status``) carry no Signature in QCVN 102 (edxml-reference §6), so
        for them ``require`` means ``record``: their verdict is kept, they are never refused.
        """
        policy = SignaturePolicy.strictest(
            [SignaturePolicy(policies.get(code) or self.default_policy) for code in parties]
        )
        return SignaturePolicy.RECORD if status and policy is SignaturePolicy.REQUIRE else policy

    def verify(
        self,
        source: bytes | Path,
        *,
        signed: bool,
        policy: SignaturePolicy,
        registered_signers: Collection[str],
        at: datetime,
        sender: str,
    ) -> SignatureReport:
        """The report for a package (``signed``: it may carry a Signature), its signer bound to
        ``sender`` (:mod:`esb.security.signer_binding`)."""
        if policy is SignaturePolicy.OFF:
            return report("policy-off")
        if not signed:
            return report("no-signature")
        found = verify_package(
            source,
            trust=self.trust,
            at=at,
            registered_signers=registered_signers,
            allow_legacy=self.allow_legacy,
            max_bytes=self.max_bytes,
        )
        return bind_to_sender(found, sender, registered=registered_signers)


def may_be_signed(source: bytes | Path, *, in_header: bool) -> bool:
    """Whether the package needs the XML-DSig verifier at all.

    The reader sees a Signature only where it belongs (in edXMLHeader); one anywhere else
    must still be verified, to be reported as ``misplaced-signature`` rather than as
    unsigned.  A byte scan for the element name finds those cheaply; a false hit (the word
    in some text) only costs a verification that answers ``no-signature``.
    """
    if in_header:
        return True
    if isinstance(source, bytes):
        return SIGNATURE_NAME in source
    overlap = len(SIGNATURE_NAME) - 1
    tail = b""
    with source.open("rb") as handle:
        for chunk in iter(lambda: handle.read(SCAN_CHUNK), b""):
            if SIGNATURE_NAME in tail + chunk:
                return True
            tail = chunk[-overlap:]
    return False


SIGNATURE_NAME = b"Signature"
SCAN_CHUNK = 1 << 20


def enforce(found: SignatureReport, policy: SignaturePolicy) -> None:
    """Refuse the package when the policy requires a valid signature and it has none."""
    if policy is not SignaturePolicy.REQUIRE or found.verdict is Verdict.VALID:
        return
    raise SignatureRefused(
        f"a valid XML signature is required for this exchange; the package's is {found.verdict.value} "
        f"({found.reason}: {found.message})",
        code=fault_code(found.verdict, found.reason),
    )


def trace_detail(found: SignatureReport) -> str:
    """The ``signature`` trace event's detail: verdict, reason, signer (no content)."""
    parts = [f"{found.verdict.value}: {found.reason}"]
    if found.signer is not None:
        parts.append(f"signer {found.signer.subject} (sha256 {found.signer.sha256[:16]}…)")
    if found.weak:
        parts.append("weak algorithm (SHA-1)")
    return "; ".join(parts)
