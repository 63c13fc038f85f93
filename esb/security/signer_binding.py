"""Binding a package's signer to its sender (From/OrganId).

A certificate that chains to a trust anchor proves who signed, not that the signer speaks
for the agency named in From.  Two ways tie them together:

* the sender registered its signing certificates (``esb agency certificate add``): the
  signer must be one of them (``signer-not-registered`` otherwise, checked during
  verification, :func:`esb.security.package_signature.verify_package`);
* otherwise, when the certificate names an agency code (the ``UID`` attribute of its
  subject, as the demo CA and provincial CAs issue them), it must be the sender's
  (``signer-not-sender``).

A certificate naming no agency code, from a sender that registered none, cannot be tied:
the verdict stands, with the warning ``signer-not-bound``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Collection
from dataclasses import replace

from cryptography import x509
from cryptography.x509.oid import NameOID

from esb.domain.signatures import SignatureReport, Verdict, report

NOT_BOUND = "signer-not-bound"


def agency_code_of(certificate: x509.Certificate) -> str | None:
    """The agency code a certificate's subject names (its UID), if any."""
    values = certificate.subject.get_attributes_for_oid(NameOID.USER_ID)
    return str(values[0].value).strip() if values else None


def bind_to_sender(found: SignatureReport, sender: str, *, registered: Collection[str]) -> SignatureReport:
    """``found`` with the sender binding applied (only a ``valid`` verdict can change)."""
    if found.verdict is not Verdict.VALID or registered or not found.certificates:
        return found
    try:
        leaf = x509.load_der_x509_certificate(base64.b64decode(found.certificates[0]))
    except (ValueError, binascii.Error):  # the verifier parsed it already; keep its verdict
        return found
    named = agency_code_of(leaf)
    if named is None:
        return replace(found, warnings=(*found.warnings, NOT_BOUND))
    if named != sender:
        refused = report(
            "signer-not-sender",
            f"the signing certificate names agency {named}, but the package is from {sender}",
        )
        return replace(found, verdict=refused.verdict, reason=refused.reason, message=refused.message)
    return found
