"""``esb sign``, ``esb verify`` and ``esb pki demo``: XML signatures from the command line.

* ``esb sign FILE --key KEY --cert CERT`` signs an edXML package as an agency's QLVB would
  (enveloped XML-DSig in edXMLHeader, RSA-SHA256) into a new file; FILE is never changed.
* ``esb verify FILE`` checks what FILE is: a package's signature, a hub receipt, or a whole
  evidence bundle, against trust anchors the auditor names, offline.  Exit 0 only when
  everything verified.
* ``esb pki demo`` writes a demonstration PKI (trust anchors, an issuing CA and its CRL, a key
  and certificate per registered agency and for the hub) and registers each agency's
  certificate as its signing certificate.

Private keys are read from files and written to files (mode 0600); they are never printed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from esb.cli.main import EXIT_REFUSED, reports_errors
from esb.cli.registry_commands import _echo_json, database_options, load_settings, opened_runtime
from esb.cli.rendering import console
from esb.clock import utc_now
from esb.domain.signatures import REASONS, SignatureReport, Verdict
from esb.errors import ClientError

if TYPE_CHECKING:
    from cryptography import x509

    from esb.domain.receipts import HubReceipt
    from esb.pipeline.registration import Registration
    from esb.security.evidence_bundle import BundleCheck
    from esb.security.pki import DemoPki
    from esb.security.trust_store import TrustStore
    from esb.settings import Settings

RECEIPT_ROOT = "{urn:lgsp-esb:receipt:1}Receipt"
ZIP_MAGIC = b"PK\x03\x04"
# Sniffing the root element reads at most this much of FILE.
SNIFF_BYTES = 1 << 20
# Issuing a certificate for every agency of a large registry is slow and pointless for a demo.
MAX_DEMO_AGENCIES = 200

_VERDICT_STYLE = {
    Verdict.VALID: ("green", "✔ valid"),
    Verdict.INVALID: ("red", "✘ invalid"),
    Verdict.UNTRUSTED: ("yellow", "⚠ untrusted"),
    Verdict.UNSIGNED: ("yellow", "– unsigned"),
    Verdict.PLACEHOLDER: ("yellow", "– placeholder"),
    Verdict.NOT_CHECKED: ("dim", "– not checked"),
}


def _kv_table(title: str, rows: Sequence[tuple[str, str | None]]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for key, value in rows:
        if value:
            table.add_row(key, value)
    return table


# -- esb sign -----------------------------------------------------------------------------------


def default_signed_path(file: Path) -> Path:
    """``<stem>.signed.edxml`` next to ``file``."""
    return file.with_name(f"{file.stem}.signed.edxml")


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


@contextlib.contextmanager
def _replacing(out: Path) -> Iterator[Any]:
    """A temporary file next to ``out`` that becomes ``out`` when the block succeeds (never half-written)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed below, renamed or removed
        dir=out.parent, prefix=f".{out.name}.", suffix=".tmp", delete=False
    )
    temporary = Path(handle.name)
    try:
        with handle:
            yield handle
        os.chmod(temporary, 0o644)
        os.replace(temporary, out)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@click.command("sign")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--key",
    "key_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The signer's RSA private key (PEM or DER, PKCS#8 or PKCS#1).",
)
@click.option(
    "--cert",
    "cert_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The signer's certificate, then its issuing CAs (PEM); all go into KeyInfo.",
)
@click.option(
    "--password-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A file holding the password of an encrypted key (its first line).",
)
@click.option(
    "-o",
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the signed package (default: <stem>.signed.edxml next to FILE).",
)
@click.option("--replace", is_flag=True, help="Re-sign a package that already carries a Signature.")
@reports_errors
def sign(
    file: Path,
    key_file: Path,
    cert_file: Path,
    password_file: Path | None,
    out: Path | None,
    replace: bool,
) -> None:
    """Sign the edXML package FILE (enveloped XML-DSig in edXMLHeader, RSA-SHA256) into a new file.

    FILE itself is never changed.  Prints the output's path, SHA-256 and size, and the signer.
    """
    from esb.security.package_signature import sign_package
    from esb.security.signing_key import SigningKey

    target = out or default_signed_path(file)
    if _same_file(target, file):
        raise click.BadParameter("the output must not be FILE itself", param_hint="'-o' / '--out'")
    if not file.is_file():
        raise OSError(2, "no such file", str(file))
    password = _read_password(password_file) if password_file is not None else None
    key = SigningKey.from_files(key_file, cert_file, password=password)
    with _replacing(target) as handle:
        signed = sign_package(file, handle, key=key, replace=replace)
    console.print(
        _kv_table(
            "signed edXML package",
            [
                ("written", str(target)),
                ("sha256", signed.sha256),
                ("size", f"{signed.size:,} bytes"),
                ("signer", key.subject),
                ("signer sha256", key.sha256),
            ],
        )
    )


def _read_password(path: Path) -> bytes:
    lines = path.read_bytes().splitlines()
    return lines[0] if lines else b""


# -- esb verify ---------------------------------------------------------------------------------


if TYPE_CHECKING:
    _MomentBase = click.ParamType[datetime]  # generic in click ≥ 8.2 only
else:
    _MomentBase = click.ParamType


class MomentType(_MomentBase):
    """An ISO 8601 date or date-time; without a time zone it is UTC."""

    name = "iso-8601"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            moment = value
        else:
            try:
                moment = datetime.fromisoformat(str(value).strip())
            except ValueError:
                self.fail(f"{value!r} is not an ISO 8601 date or date-time", param, ctx)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


MOMENT = MomentType()


def trust_store_from(
    trust: Sequence[Path], intermediates: Sequence[Path] = (), crls: Sequence[Path] = ()
) -> TrustStore | None:
    """The trust store the options name, or None when they name nothing.

    Each ``trust`` path is a CA file, a directory of anchor files, or a trust directory with
    ``anchors/`` (and ``intermediates/``, ``crls/``) such as ``esb pki demo`` writes.
    """
    from esb.security.trust_store import TrustStore

    if not (trust or intermediates or crls):
        return None
    anchors: list[x509.Certificate] = []
    pool: list[x509.Certificate] = []
    revocations: list[x509.CertificateRevocationList] = []
    for path in trust:
        if path.is_dir() and (path / "anchors").is_dir():
            store = TrustStore.from_directory(path)
        else:
            store = TrustStore.load(anchors=[path])
        anchors.extend(store.anchors)
        pool.extend(store.intermediates)
        revocations.extend(store.crls)
    extra = TrustStore.load(intermediates=list(intermediates), crls=list(crls))
    return TrustStore.of(anchors, [*pool, *extra.intermediates], [*revocations, *extra.crls])


def certificate_fingerprints(paths: Sequence[Path]) -> list[str]:
    """SHA-256 of the first certificate of each file (PEM or DER)."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from esb.security.pki import load_certificates

    fingerprints = []
    for path in paths:
        try:
            certificate = load_certificates(path.read_bytes())[0]
        except ClientError as error:
            raise click.BadParameter(f"{path}: {error.message}", param_hint="'--signer-cert'") from None
        fingerprints.append(hashlib.sha256(certificate.public_bytes(Encoding.DER)).hexdigest())
    return fingerprints


def sniff(path: Path) -> str:
    """``bundle`` (a ZIP), ``receipt`` (root ``{urn:lgsp-esb:receipt:1}Receipt``) or ``package``.

    Reads the beginning only; raises OSError when ``path`` cannot be read.
    """
    from lxml import etree

    with path.open("rb") as handle:
        head = handle.read(len(ZIP_MAGIC))
        if head == ZIP_MAGIC:
            return "bundle"
        parser = etree.XMLPullParser(
            events=("start",), resolve_entities=False, no_network=True, load_dtd=False
        )
        data, read = head, len(head)
        while True:
            try:
                parser.feed(data)
                for _, element in parser.read_events():
                    tag = getattr(element, "tag", None)
                    return "receipt" if tag == RECEIPT_ROOT else "package"
            except etree.XMLSyntaxError:
                return "package"  # not XML: the package verifier says what is wrong
            if not data or read >= SNIFF_BYTES:
                return "package"
            data = handle.read(64 * 1024)
            read += len(data)


@click.command("verify")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--trust",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="A trust anchor (CA file), a directory of them, or a trust directory with anchors/ "
    "(intermediates/, crls/).  Repeatable.",
)
@click.option(
    "--intermediate",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="An intermediate CA file or directory (repeatable).",
)
@click.option(
    "--crl", multiple=True, type=click.Path(exists=True, path_type=Path), help="A CRL file (repeatable)."
)
@click.option(
    "--at",
    type=MOMENT,
    help="Check certificates at this time (ISO 8601; default now, or the receipt's own time).",
)
@click.option(
    "--signer-cert",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A certificate the signer must be (the agency's registered ones; for a receipt, the hub's).",
)
@click.option("--allow-sha1", is_flag=True, help="Count RSA-SHA1/SHA-1 signatures as valid (still reported).")
@click.option(
    "--package",
    "package_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="For an evidence bundle: the package itself, to check it against the receipts.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of tables.")
@reports_errors
def verify(
    file: Path,
    trust: tuple[Path, ...],
    intermediate: tuple[Path, ...],
    crl: tuple[Path, ...],
    at: datetime | None,
    signer_cert: tuple[Path, ...],
    allow_sha1: bool,
    package_file: Path | None,
    as_json: bool,
) -> None:
    """Verify FILE offline: an edXML package's signature, a hub receipt, or an evidence bundle.

    \b
    What FILE is, is detected:
      a ZIP                          an evidence bundle (every check of it)
      XML with a Receipt root        a hub receipt (its signature and the hub's certificate)
      anything else                  an edXML package's XML signature
    Exit 0 only when the verdict is valid (a bundle: every check passed), 1 otherwise,
    2 when FILE cannot be read or an option is wrong.
    --json prints the package's report; {"receipt": ..., "report": ...} for a receipt;
    the checks for a bundle.
    """
    kind = sniff(file)
    store = trust_store_from(trust, intermediate, crl)
    pins = certificate_fingerprints(signer_cert)
    if kind == "bundle":
        ok = _verify_bundle(file, store, package_file, allow_sha1, as_json=as_json)
    elif kind == "receipt":
        ok = _verify_receipt(file, store, pins, at, as_json=as_json)
    else:
        ok = _verify_package(file, store, pins, at or utc_now(), allow_sha1, as_json=as_json)
    if not ok:
        raise SystemExit(EXIT_REFUSED)


def _verify_package(
    file: Path,
    trust: TrustStore | None,
    pins: Sequence[str],
    at: datetime,
    allow_sha1: bool,
    *,
    as_json: bool,
) -> bool:
    from esb.security.package_signature import verify_package

    found = verify_package(file, trust=trust, at=at, registered_signers=pins, allow_legacy=allow_sha1)
    if as_json:
        _echo_json(found.to_dict())
    else:
        print_signature_report(found, title=f"signature of {file.name}")
    return found.verdict is Verdict.VALID


def _verify_receipt(
    file: Path, trust: TrustStore | None, pins: Sequence[str], at: datetime | None, *, as_json: bool
) -> bool:
    from esb.security.hub_receipts import verify_receipt

    checked = verify_receipt(file.read_bytes(), trust=trust, hub_certificates=pins, at=at)
    if as_json:
        receipt = receipt_view(checked.receipt) if checked.receipt is not None else None
        _echo_json({"receipt": receipt, "report": checked.report.to_dict()})
    else:
        if checked.receipt is not None:
            print_receipt(checked.receipt, title=f"receipt {file.name}")
        print_signature_report(checked.report, title=f"hub signature of {file.name}")
    return checked.report.verdict is Verdict.VALID


def _verify_bundle(
    file: Path, trust: TrustStore | None, package: Path | None, allow_sha1: bool, *, as_json: bool
) -> bool:
    from esb.security.evidence_bundle import verify_bundle

    checked = verify_bundle(file, trust=trust, package=package, allow_legacy=allow_sha1)
    if as_json:
        _echo_json(checked.to_dict())
    else:
        show_bundle_check(checked, title=f"evidence bundle {file.name}")
    return checked.ok


# -- rendering ------------------------------------------------------------------------------------


def verdict_text(verdict: Verdict) -> str:
    style, mark = _VERDICT_STYLE.get(verdict, ("red", verdict.value))
    return f"[{style}]{mark}[/]"


def print_signature_report(found: SignatureReport, *, title: str) -> None:
    """A signature report for people: verdict, why, who signed, with what, over what."""
    meaning = REASONS[found.reason][1] if found.reason in REASONS else ""
    console.print(
        _kv_table(
            title,
            [
                ("verdict", verdict_text(found.verdict)),
                ("reason", f"{found.reason}: {meaning}" if meaning else found.reason),
                ("detail", found.message if found.message != meaning else None),
                ("checked at", found.checked_at or None),
            ],
        )
    )
    signer = found.signer
    if signer is not None:
        console.print(
            _kv_table(
                "signer",
                [
                    ("subject", signer.subject),
                    ("issuer", signer.issuer),
                    ("serial", signer.serial),
                    ("sha256", signer.sha256),
                    ("valid", f"{signer.not_before} → {signer.not_after}"),
                ],
            )
        )
    if found.chain:
        chain = Table(title="issuer chain (signer → anchor)", title_justify="left")
        chain.add_column("#", justify="right")
        chain.add_column("subject", overflow="fold")
        for index, subject in enumerate(found.chain):
            chain.add_row(str(index), subject)
        console.print(chain)
    rows: list[tuple[str, str | None]] = [
        ("signature", found.signature_method),
        ("digest", ", ".join(dict.fromkeys(found.digest_methods)) or None),
        ("canonicalization", found.canonicalization),
        ("covers", found.covered or None),
        ("digests", "\n".join(found.digests) or None),
        ("weak", "[yellow]yes: SHA-1 (allowed as legacy)[/]" if found.weak else None),
        ("certificates carried", str(len(found.certificates)) if found.certificates else None),
    ]
    if any(value for _, value in rows):
        console.print(_kv_table("algorithms and coverage", rows))
    for warning in found.warnings:
        console.print(f"[yellow]warning:[/] {warning}")


def receipt_view(receipt: HubReceipt) -> dict[str, Any]:
    view = asdict(receipt)
    view["kind"] = receipt.kind.value
    view["recipients"] = list(receipt.recipients)
    return view


def print_receipt(receipt: HubReceipt, *, title: str) -> None:
    console.print(
        _kv_table(
            title,
            [
                ("kind", receipt.kind.value),
                ("receipt id", receipt.receipt_id),
                ("hub", receipt.hub_organ_id),
                ("hubDocumentId", receipt.hub_document_id),
                ("document id", receipt.document_id),
                ("message type", receipt.message_type),
                ("sender", receipt.sender),
                ("recipients", "\n".join(receipt.recipients)),
                ("accepted sha256", receipt.accepted_sha256),
                ("accepted size", f"{receipt.accepted_size:,} bytes"),
                ("delivered sha256", receipt.delivered_sha256),
                ("event time", receipt.event_time),
                ("issued at", receipt.issued_at),
                ("package signature", f"{receipt.signature_verdict} ({receipt.signature_reason})"),
                ("package signer sha256", receipt.signer_sha256),
                ("trace seq", str(receipt.trace_seq)),
                ("trace hash", receipt.trace_hash),
            ],
        )
    )


def show_bundle_check(checked: BundleCheck, *, title: str = "evidence bundle") -> None:
    """The table of a bundle's checks, and how many failed."""
    table = Table(title=f"{title} ({checked.hub_document_id})" if checked.hub_document_id else title)
    table.title_justify = "left"
    table.add_column("check", overflow="fold")
    table.add_column("result", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for check in checked.checks:
        table.add_row(check.name, "[green]✔ ok[/]" if check.ok else "[red]✘ failed[/]", check.detail)
    console.print(table)
    failed = sum(1 for check in checked.checks if not check.ok)
    if checked.ok:
        console.print(f"[green]every check passed[/] ({len(checked.checks)})")
    elif not checked.checks:
        console.print("[red]nothing could be checked[/]")
    else:
        console.print(f"[red]{failed} of {len(checked.checks)} check(s) failed[/]")


# -- esb pki demo -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegisteredCertificate:
    agency: str
    sha256: str
    subject: str
    new: bool  # registered now (False: it already was)
    replaced: int  # certificates of an earlier demo PKI removed for this agency


def demo_hub_name(settings: Settings) -> str:
    """The hub's name in its certificate, as esb.wiring names a self-made one."""
    return f"LGSP hub {settings.hub_organ_id}"


def certificate_file_fingerprint(path: Path) -> str | None:
    """SHA-256 of the first certificate of a file, or None when there is no readable one."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from esb.security.pki import load_certificates

    try:
        certificate = load_certificates(path.read_bytes())[0]
    except (OSError, ClientError):
        return None
    return hashlib.sha256(certificate.public_bytes(Encoding.DER)).hexdigest()


def register_certificate_files(
    registration: Registration, files: Mapping[str, Path], *, replacing: Mapping[str, str] = {}
) -> list[RegisteredCertificate]:
    """Register each agency's certificate file as its signing certificate.

    Already registered: left as is.  ``replacing`` maps an agency to the fingerprint of the
    certificate the file had before it was overwritten (whose key is gone): that one is
    removed from the agency's registered certificates, so only the new one is accepted.
    """
    from cryptography.hazmat.primitives.serialization import Encoding

    from esb.security.pki import load_certificates

    done: list[RegisteredCertificate] = []
    for code, path in files.items():
        leaf = load_certificates(path.read_bytes())[0]
        sha256 = hashlib.sha256(leaf.public_bytes(Encoding.DER)).hexdigest()
        existing = {
            info.sha256 for info in registration.signing_certificates(code) if info.removed_at is None
        }
        old = replacing.get(code)
        replaced = 0
        if old is not None and old != sha256 and old in existing:
            registration.remove_signing_certificate(code, old)
            replaced = 1
        if sha256 in existing:
            done.append(RegisteredCertificate(code, sha256, leaf.subject.rfc4514_string(), False, replaced))
            continue
        info = registration.add_signing_certificate(code, leaf.public_bytes(Encoding.PEM))
        done.append(RegisteredCertificate(code, info.sha256, info.subject, True, replaced))
    return done


def write_pki(
    out_dir: Path, agencies: Sequence[tuple[str, str]], settings: Settings, *, overwrite: bool
) -> DemoPki:
    from esb.security.pki import write_demo_pki

    return write_demo_pki(
        out_dir,
        agencies,
        now=utc_now(),
        hub_name=demo_hub_name(settings),
        hub_organ_id=settings.hub_organ_id,
        overwrite=overwrite,
    )


def _certificate_summary(path: Path) -> str:
    """``CN (sha256 0123456789abcdef…)`` of the first certificate of a file."""
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    from esb.security.pki import load_certificates

    certificate = load_certificates(path.read_bytes())[0]
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    name = str(names[0].value) if names else certificate.subject.rfc4514_string()
    sha256 = hashlib.sha256(certificate.public_bytes(Encoding.DER)).hexdigest()
    return f"{name} (sha256 {sha256[:16]}…)"


def print_demo_pki(pki: DemoPki, registered: Sequence[RegisteredCertificate], *, title: str) -> None:
    """What was written where, relative to the PKI's folder (never key material)."""

    def relative(path: Path) -> str:
        try:
            return str(path.relative_to(pki.out_dir))
        except ValueError:
            return str(path)

    def where(*paths: Path) -> str:
        if len({path.parent for path in paths}) == 1:  # hub/key.pem, cert.pem
            return f"{relative(paths[0].parent)}/{', '.join(path.name for path in paths)}"
        return "\n".join(relative(path) for path in paths)

    table = Table(title=title, title_justify="left")
    table.add_column("what", overflow="fold")
    table.add_column("files", overflow="fold")
    table.add_column("certificate", overflow="fold")
    table.add_row(
        "trust anchor (root CA)", where(pki.root_certificate), _certificate_summary(pki.root_certificate)
    )
    table.add_row(
        "issuing CA, its CRL",
        where(pki.issuing_certificate, pki.crl),
        _certificate_summary(pki.issuing_certificate),
    )
    table.add_row(
        "hub (signs receipts)",
        where(pki.hub_key, pki.hub_certificate),
        _certificate_summary(pki.hub_certificate),
    )
    table.add_row("CA keys", where(pki.root_key, pki.issuing_key), "")
    by_code = {item.agency: item for item in registered}
    for code, certificate in pki.agency_certificates.items():
        item = by_code.get(code)
        note = f"sha256 {item.sha256[:16]}…, registered" if item is not None else ""
        table.add_row(f"agency {code}", where(pki.agency_keys[code], certificate), note)
    console.print(table)
    console.print("Private keys (key.pem, ca/*-key.pem) are unencrypted, mode 0600: demo use only.")


@click.group()
def pki() -> None:
    """Certificates for signing packages: a demonstration PKI (esb pki demo)."""


@pki.command("demo")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write it (default: the data dir, where esb serve looks for trust/ and hub/).",
)
@click.option(
    "--agency",
    "agency_codes",
    multiple=True,
    metavar="CODE",
    help="Only these registered agencies (repeatable; default: every registered agency).",
)
@click.option("--overwrite", is_flag=True, help="Replace a demo PKI already there (new keys for all).")
@database_options
@reports_errors
def pki_demo(
    out_dir: Path | None,
    agency_codes: tuple[str, ...],
    overwrite: bool,
    database_url: str | None,
    data_dir: Path | None,
) -> None:
    """Write a demo PKI for the registered agencies, and register their certificates.

    \b
    Layout (under --out, by default the data dir):
      trust/anchors, trust/intermediates, trust/crls   what verifiers trust (ESB_TRUST_DIR)
      hub/key.pem, hub/cert.pem                        the hub's receipt-signing key
      agencies/<code>/key.pem, cert.pem                each agency's signing key
      ca/                                              the demo CA keys
    Not for production: the keys are unencrypted files.
    """
    from esb.storage import registry

    settings = load_settings(database_url, data_dir)
    target = out_dir or settings.data_dir
    with opened_runtime(database_url, data_dir) as runtime:
        with runtime.database.transaction() as session:
            if agency_codes:
                rows = [registry.get_agency(session, code) for code in dict.fromkeys(agency_codes)]
            else:
                rows = registry.list_agencies(session, limit=MAX_DEMO_AGENCIES + 1)
            agencies = [(row.code, row.name) for row in rows]
        if not agencies:
            raise ClientError(
                "no agency is registered: run esb demo seed, or esb agency add, first",
                code="Client.NotRegistered",
            )
        if len(agencies) > MAX_DEMO_AGENCIES:
            raise ClientError(
                f"more than {MAX_DEMO_AGENCIES} agencies are registered: choose some with --agency CODE",
                code="Client.InvalidRequest",
            )
        previous = {
            code: sha256
            for code, _ in agencies
            if (sha256 := certificate_file_fingerprint(target / "agencies" / code / "cert.pem")) is not None
        }
        try:
            written = write_pki(target, agencies, settings, overwrite=overwrite)
        except ClientError as error:
            if error.code != "Client.PkiExists":
                raise
            raise ClientError(
                f"a demo PKI is already in {target}: pass --overwrite to replace it (new keys for "
                "the hub and every agency; packages signed with the old keys stop verifying)",
                code=error.code,
            ) from None
        registered = register_certificate_files(
            runtime.registration, written.agency_certificates, replacing=previous
        )
    print_demo_pki(written, registered, title=f"demo PKI written to {target}")
    print_pki_hints(written, settings)


def print_pki_hints(written: DemoPki, settings: Settings) -> None:
    trust_used = (settings.trust_dir or settings.data_dir / "trust").resolve() == written.trust_dir.resolve()
    hub_used = (
        settings.hub_key_file is not None and settings.hub_key_file.resolve() == written.hub_key.resolve()
    )
    if trust_used and hub_used:
        console.print(
            "esb serve finds trust/ and hub/ at their default places; restart a running server "
            "to use the new hub key."
        )
    else:
        console.print(
            "To have esb serve use it: "
            f"ESB_TRUST_DIR={written.trust_dir} ESB_HUB_KEY_FILE={written.hub_key} "
            f"ESB_HUB_CERT_FILE={written.hub_certificate}"
        )
    code = next(iter(written.agency_keys), None)
    if code is not None:
        console.print(
            f"Sign a package as {code}: esb sign FILE --key {written.agency_keys[code]} "
            f"--cert {written.agency_certificates[code]}\n"
            f"Verify it: esb verify FILE.signed.edxml --trust {written.trust_dir}"
        )
