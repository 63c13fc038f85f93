"""Evidence bundles (``esb evidence export``): one document's proof, checkable offline.

A bundle is a ZIP file:

=========================  =============================================================
``manifest.json``          format, document, export time, the chain head at export, and
                           the SHA-256 of every other file
``document.json``          the document's facts: parties, digests, sizes, states, times
                           (never its content, subject included)
``trace.json``             the document's trace events with their chain fields
``signature.json``         the package's signature report as the hub found it
``receipts/*.xml``         every receipt the hub signed for the document
``certificates/*.pem``     the hub certificates those receipts were signed with
``manifest.seal.xml``      the hub's XML signature over the manifest's SHA-256: nothing
                           can be left out of, or added to, a sealed bundle
=========================  =============================================================

:func:`verify_bundle` needs nothing but the bundle and the auditor's trust anchors: the
manifest digests, the document's hash chain, each receipt's XML signature and its
certificate chain (at the receipt's own time), and that every receipt attests an event
that is in the chain, with the same digests and the same signature verdict.  Given the
package itself (from the sender's or a recipient's archive: the hub keeps none after
delivery), it also checks the package's digest against the receipts and reproduces the
signature verdict.  A bundle is untrusted input: sizes, names and counts are limited, and
the XML goes through the hardened parser.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from cryptography import x509
from lxml import etree

from esb.domain.receipts import HubReceipt, ReceiptKind
from esb.domain.signatures import SignatureReport, Verdict
from esb.domain.trace_chain import ChainedEvent, verify_document
from esb.errors import ClientError, XmlInputError
from esb.security.hub_receipts import verify_receipt
from esb.security.package_signature import verify_package
from esb.security.pki import load_certificates
from esb.security.signer_binding import agency_code_of, bind_to_sender
from esb.security.signing_key import SigningKey
from esb.security.trust_store import TrustStore
from esb.security.xml_signature import certificate_sha256, sign_enveloped, verify_enveloped
from esb.xml_processing.namespaces import DS
from esb.xml_processing.parsing import parse_untrusted

FORMAT = "lgsp-esb-evidence/1"
MANIFEST = "manifest.json"
SEAL = "manifest.seal.xml"
SEAL_NS = "urn:lgsp-esb:evidence:1"
SEAL_COVERS = "the whole seal document: the SHA-256 of manifest.json and the time it was sealed"
MAX_MEMBER_BYTES = 64 << 20
MAX_MEMBERS = 10_000


class BundleUnreadable(ClientError):
    default_code = "Client.BundleUnreadable"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class BundleCheck:
    hub_document_id: str = ""
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(check.ok for check in self.checks)

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append(Check(name, ok, detail))

    def to_dict(self) -> dict[str, Any]:
        return {
            "hub_document_id": self.hub_document_id,
            "ok": self.ok,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
        }


# ---------------------------------------------------------------------------------- writing


@dataclass(frozen=True)
class BundleContents:
    hub_document_id: str
    exported_at: str
    exported_by: str
    chain_head: tuple[int, str]
    document: dict[str, Any]
    trace: Sequence[ChainedEvent]
    signature: dict[str, Any]
    receipts: Sequence[tuple[str, bytes]]  # (file name under receipts/, signed XML)
    certificates: Sequence[tuple[str, bytes]]  # (file name under certificates/, PEM)


def write_bundle(out: Path, contents: BundleContents, *, seal_with: SigningKey | None = None) -> str:
    """Write the bundle atomically (temporary file, then rename); returns its SHA-256.

    ``seal_with``: the hub's key, to sign the manifest (``manifest.seal.xml``).
    """
    files: dict[str, bytes] = {
        "document.json": _json(contents.document),
        "trace.json": _json([event.to_dict() for event in contents.trace]),
        "signature.json": _json(contents.signature),
    }
    files.update({f"receipts/{name}": data for name, data in contents.receipts})
    files.update({f"certificates/{name}": data for name, data in contents.certificates})
    manifest = {
        "format": FORMAT,
        "hub_document_id": contents.hub_document_id,
        "exported_at": contents.exported_at,
        "exported_by": contents.exported_by,
        "chain_head": {"seq": contents.chain_head[0], "hash": contents.chain_head[1]},
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".bundle-", suffix=".zip", dir=out.parent)
    os.close(handle)
    try:
        with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(MANIFEST, _json(manifest))
            if seal_with is not None:
                archive.writestr(SEAL, _seal(_json(manifest), contents.exported_at, seal_with))
            for name, data in sorted(files.items()):
                archive.writestr(name, data)
        os.replace(temporary, out)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return hashlib.sha256(out.read_bytes()).hexdigest()


def _json(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True).encode("utf-8")


def _seal(manifest: bytes, sealed_at: str, key: SigningKey) -> bytes:
    root = etree.Element(f"{{{SEAL_NS}}}ManifestSeal", nsmap={None: SEAL_NS})  # type: ignore[dict-item]
    etree.SubElement(root, f"{{{SEAL_NS}}}ManifestSha256").text = hashlib.sha256(manifest).hexdigest()
    etree.SubElement(root, f"{{{SEAL_NS}}}SealedAt").text = sealed_at
    sign_enveloped(root, root, key)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


# ---------------------------------------------------------------------------------- reading


def verify_bundle(
    path: Path,
    *,
    trust: TrustStore | None,
    package: Path | None = None,
    allow_legacy: bool = False,
) -> BundleCheck:
    """Every check of the bundle at ``path`` (see the module docstring); never raises for a
    bundle that is wrong, only for one that cannot be read at all (:class:`BundleUnreadable`)."""
    files, manifest = _read(path)
    result = BundleCheck(hub_document_id=str(manifest.get("hub_document_id", "")))
    _check_seal(files.pop(SEAL, None), files.pop(RAW_MANIFEST), trust, result)
    _check_manifest(files, manifest, result)
    document = _load_json(files, "document.json", result, dict)
    trace = _load_trace(files, result)
    signature = _load_signature(files, result)
    if document is None or trace is None:
        return result
    _check_chain(trace, result)
    receipts = _check_receipts(files, trace, document, signature, trust, result)
    _check_completeness(trace, receipts, result)
    if signature is not None:
        _check_signer(signature, document, trust, result)
    if package is not None:
        _check_package(package, document, signature, trust, allow_legacy, result)
    return result


def _read(path: Path) -> tuple[dict[str, bytes], dict[str, Any]]:
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise BundleUnreadable(f"{path} is not a readable evidence bundle (ZIP): {exc}") from None
    with archive:
        members = archive.infolist()
        if len(members) > MAX_MEMBERS:
            raise BundleUnreadable(f"{path} holds {len(members)} files; at most {MAX_MEMBERS} are read")
        files: dict[str, bytes] = {}
        for member in members:
            if member.is_dir():
                continue
            name = PurePosixPath(member.filename)
            if name.is_absolute() or ".." in name.parts:
                raise BundleUnreadable(f"{path} holds a file with an unsafe name: {member.filename!r}")
            if member.file_size > MAX_MEMBER_BYTES:
                raise BundleUnreadable(f"{member.filename} is larger than {MAX_MEMBER_BYTES} bytes")
            try:
                with archive.open(member) as handle:
                    data = handle.read(MAX_MEMBER_BYTES + 1)
            except (zipfile.BadZipFile, OSError, RuntimeError) as exc:
                raise BundleUnreadable(f"{member.filename} cannot be read from {path}: {exc}") from None
            if len(data) > MAX_MEMBER_BYTES:
                raise BundleUnreadable(f"{member.filename} is larger than {MAX_MEMBER_BYTES} bytes")
            files[member.filename] = data
    raw = files.pop(MANIFEST, None)
    if raw is None:
        raise BundleUnreadable(f"{path} has no {MANIFEST}: not an evidence bundle")
    try:
        manifest = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleUnreadable(f"{MANIFEST} is not JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleUnreadable(f"{path} is not a {FORMAT} bundle")
    files[RAW_MANIFEST] = raw
    return files, manifest


RAW_MANIFEST = "\0manifest"  # the manifest's bytes, kept aside under a name no ZIP member has


def _check_seal(seal: bytes | None, manifest: bytes, trust: TrustStore | None, result: BundleCheck) -> None:
    """The hub's signature over the manifest: without it, files could be left out unnoticed."""
    if seal is None:
        result.add("manifest seal", False, f"the bundle has no {SEAL}: anything could have been left out")
        return
    try:
        root = parse_untrusted(seal)
    except XmlInputError as exc:
        result.add("manifest seal", False, f"{SEAL} is not XML: {exc.message}")
        return
    digest = root.findtext(f"{{{SEAL_NS}}}ManifestSha256")
    sealed_at = root.findtext(f"{{{SEAL_NS}}}SealedAt") or ""
    signatures = [child for child in root if child.tag == f"{{{DS}}}Signature"]
    try:
        at = datetime.fromisoformat(sealed_at.replace("Z", "+00:00"))
    except ValueError:
        result.add("manifest seal", False, f"{SEAL} gives no readable SealedAt")
        return
    if root.tag != f"{{{SEAL_NS}}}ManifestSeal" or len(signatures) != 1:
        result.add("manifest seal", False, f"{SEAL} is not one signed ManifestSeal")
        return
    found = verify_enveloped(signatures[0], trust=trust, at=at, covered=SEAL_COVERS)
    if found.verdict is not Verdict.VALID:
        result.add(
            "manifest seal", False, f"signature {found.verdict.value}: {found.reason} ({found.message})"
        )
    elif digest != hashlib.sha256(manifest).hexdigest():
        result.add("manifest seal", False, "the manifest is not the one the hub sealed")
    else:
        signer = found.signer.subject if found.signer else "?"
        result.add("manifest seal", True, f"sealed by {signer} at {sealed_at}")


def _check_manifest(files: dict[str, bytes], manifest: dict[str, Any], result: BundleCheck) -> None:
    listed = manifest.get("files")
    if not isinstance(listed, dict):
        result.add("manifest", False, "the manifest lists no files")
        return
    problems = []
    for name, digest in sorted(listed.items()):
        data = files.get(name)
        if data is None:
            problems.append(f"{name} is missing")
        elif hashlib.sha256(data).hexdigest() != digest:
            problems.append(f"{name} was changed (SHA-256 differs from the manifest)")
    problems += [f"{name} is not in the manifest" for name in sorted(set(files) - set(listed))]
    result.add(
        "manifest",
        not problems,
        "; ".join(problems) if problems else f"{len(listed)} files, every SHA-256 matches",
    )


def _load_json(files: dict[str, bytes], name: str, result: BundleCheck, kind: type) -> Any:
    try:
        value = json.loads(files[name])
    except KeyError:
        result.add(name, False, "missing")
        return None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        result.add(name, False, f"not JSON: {exc}")
        return None
    if not isinstance(value, kind):
        result.add(name, False, f"not a JSON {kind.__name__}")
        return None
    return value


def _load_trace(files: dict[str, bytes], result: BundleCheck) -> list[ChainedEvent] | None:
    raw = _load_json(files, "trace.json", result, list)
    if raw is None:
        return None
    try:
        return [ChainedEvent.from_dict(item) for item in raw]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        result.add("trace.json", False, f"an event is malformed: {exc}")
        return None


def _load_signature(files: dict[str, bytes], result: BundleCheck) -> SignatureReport | None:
    raw = _load_json(files, "signature.json", result, dict)
    if raw is None:
        return None
    try:
        return SignatureReport.from_dict(raw)
    except (KeyError, TypeError, ValueError) as exc:
        result.add("signature.json", False, f"malformed: {exc}")
        return None


def _check_chain(trace: list[ChainedEvent], result: BundleCheck) -> None:
    others = {e.hub_document_id for e in trace} - {result.hub_document_id}
    if others:
        result.add("trace chain", False, f"events of other documents: {', '.join(sorted(others))}")
        return
    chain = verify_document(trace)
    if chain.first_break is not None:
        result.add("trace chain", False, chain.first_break.message)
    else:
        result.add("trace chain", True, f"{chain.events} events, every hash and link recomputes")


def _check_receipts(
    files: dict[str, bytes],
    trace: list[ChainedEvent],
    document: dict[str, Any],
    signature: SignatureReport | None,
    trust: TrustStore | None,
    result: BundleCheck,
) -> list[HubReceipt]:
    by_seq = {event.seq: event for event in trace}
    verified: list[HubReceipt] = []
    for name in sorted(n for n in files if n.startswith("receipts/")):
        try:
            check = verify_receipt(files[name], trust=trust)
        except ClientError as exc:
            result.add(name, False, f"not a readable receipt: {exc.message}")
            continue
        receipt, found = check.receipt, check.report
        if receipt is None or found.verdict is not Verdict.VALID:
            result.add(name, False, f"signature {found.verdict.value}: {found.reason} ({found.message})")
            continue
        problems = _receipt_problems(receipt, by_seq, document, signature, result.hub_document_id)
        signer = found.signer.subject if found.signer else "?"
        result.add(
            name,
            not problems,
            "; ".join(problems)
            if problems
            else f"{receipt.kind.value} receipt signed by {signer}, attests event {receipt.trace_seq}",
        )
        if not problems:
            verified.append(receipt)
    return verified


def _receipt_problems(
    receipt: HubReceipt,
    by_seq: dict[int, ChainedEvent],
    document: dict[str, Any],
    signature: SignatureReport | None,
    hub_document_id: str,
) -> list[str]:
    problems = []
    if receipt.hub_document_id != hub_document_id:
        problems.append(f"it is about {receipt.hub_document_id}, not {hub_document_id}")
    event = by_seq.get(receipt.trace_seq)
    expected_kind = "accepted" if receipt.kind is ReceiptKind.ACCEPTED else "confirmed"
    if event is None:
        problems.append(f"it attests event {receipt.trace_seq}, which is not in the trace")
    else:
        if event.hash != receipt.trace_hash:
            problems.append(f"event {event.seq} in the trace does not hash to what the receipt attests")
        if event.kind != expected_kind:
            problems.append(f"event {event.seq} is {event.kind}, the receipt says {expected_kind}")
        if receipt.kind is ReceiptKind.DELIVERED and event.recipient not in receipt.recipients:
            problems.append(
                f"event {event.seq} is {event.recipient}'s confirmation, not {receipt.recipients}"
            )
        expected_sha = (
            receipt.accepted_sha256 if receipt.kind is ReceiptKind.ACCEPTED else receipt.delivered_sha256
        )
        if event.sha256 != expected_sha:
            problems.append(
                f"event {event.seq} records SHA-256 {str(event.sha256)[:16]}…, the receipt another"
            )
    if receipt.accepted_sha256 != document.get("accepted_sha256"):
        problems.append("its accepted SHA-256 differs from document.json")
    if signature is not None and (receipt.signature_verdict, receipt.signature_reason) != (
        signature.verdict.value,
        signature.reason,
    ):
        problems.append(
            f"it records the signature verdict {receipt.signature_verdict} ({receipt.signature_reason}), "
            f"signature.json {signature.verdict.value} ({signature.reason})"
        )
    return problems


def _check_completeness(trace: list[ChainedEvent], receipts: list[HubReceipt], result: BundleCheck) -> None:
    attested = {receipt.trace_seq for receipt in receipts}
    wanted = [e for e in trace if e.kind in ("accepted", "confirmed")]
    missing = [f"{e.kind} (event {e.seq})" for e in wanted if e.seq not in attested]
    result.add(
        "receipts complete",
        not missing,
        f"no valid receipt for: {', '.join(missing)}"
        if missing
        else f"{len(wanted)} accepted/confirmed events, each with a valid receipt",
    )


def _check_signer(
    signature: SignatureReport, document: dict[str, Any], trust: TrustStore | None, result: BundleCheck
) -> None:
    """Reproduce the trust half of the recorded verdict from the certificates it carries."""
    if signature.verdict not in (Verdict.VALID, Verdict.UNTRUSTED) or not signature.certificates:
        result.add(
            "package signature",
            True,
            f"recorded {signature.verdict.value} ({signature.reason}); no certificate to re-check",
        )
        return
    certificates = [load_certificates(base64.b64decode(c))[0] for c in signature.certificates]
    if signature.reason in ("signer-not-sender", "signer-not-registered"):
        _check_signer_binding(signature, certificates[0], document, result)
        return
    at = datetime.fromisoformat(str(document.get("accepted_at", signature.checked_at)).replace("Z", "+00:00"))
    if trust is None:
        result.add(
            "package signature", False, "give the signer's trust anchors (--trust) to re-check its chain"
        )
        return
    pinned = signature.signer is not None and signature.signer.sha256 in _registered(signature)
    chain = trust.check(certificates[0], untrusted_intermediates=certificates[1:], at=at, pinned=pinned)
    recorded_ok = signature.verdict is Verdict.VALID
    agrees = chain.trusted == recorded_ok and (recorded_ok or chain.reason == signature.reason)
    result.add(
        "package signature",
        agrees,
        f"recorded {signature.verdict.value} ({signature.reason}); the signer's chain re-checked at "
        f"{at.isoformat()}: {chain.reason}"
        + ("" if agrees else " — the verdict is not reproduced with these trust anchors"),
    )


def _check_signer_binding(
    signature: SignatureReport, leaf: x509.Certificate, document: dict[str, Any], result: BundleCheck
) -> None:
    """Reproduce a verdict that rests on who signed rather than on the chain."""
    sender = str(document.get("sender", ""))
    if signature.reason == "signer-not-sender":
        named = agency_code_of(leaf)
        agrees = named is not None and named != sender
        found = f"the certificate names {named or 'no agency'}, the package is from {sender}"
    else:
        registered = _registered(signature)
        agrees = bool(registered) and certificate_sha256(leaf) not in registered
        found = (
            f"the signer is {'not ' if agrees else ''}among the {len(registered)} registered certificate(s)"
        )
    result.add(
        "package signature",
        agrees,
        f"recorded {signature.verdict.value} ({signature.reason}); {found}"
        + ("" if agrees else " — the verdict is not reproduced"),
    )


def _check_package(
    package: Path,
    document: dict[str, Any],
    signature: SignatureReport | None,
    trust: TrustStore | None,
    allow_legacy: bool,
    result: BundleCheck,
) -> None:
    digest = hashlib.sha256()
    with package.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    sha = digest.hexdigest()
    known = {document.get("accepted_sha256"): "as sent", document.get("delivered_sha256"): "as delivered"}
    which = known.get(sha)
    result.add(
        "package digest",
        which is not None,
        f"the package is the one the hub handled ({which})"
        if which
        else "the package is not the one in the receipts",
    )
    if signature is None or signature.verdict is Verdict.NOT_CHECKED:
        return
    at = datetime.fromisoformat(str(document.get("accepted_at")).replace("Z", "+00:00"))
    registered = _registered(signature)
    again = bind_to_sender(
        verify_package(package, trust=trust, at=at, registered_signers=registered, allow_legacy=allow_legacy),
        str(document.get("sender", "")),
        registered=registered,
    )
    agrees = (again.verdict, again.reason) == (signature.verdict, signature.reason)
    result.add(
        "package verdict",
        agrees,
        f"re-verified: {again.verdict.value} ({again.reason}); "
        f"recorded: {signature.verdict.value} ({signature.reason})",
    )


def _registered(signature: SignatureReport) -> tuple[str, ...]:
    """The sender's registered signing certificates when the hub verified (kept in the report)."""
    value = signature.extra.get("registered_signers", ())
    return tuple(str(v) for v in value) if isinstance(value, list | tuple) else ()
