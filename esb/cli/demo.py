"""``esb demo``: guided tours for a newcomer, with nothing to set up.

``esb demo packages`` builds a strict edoc package (one attachment, wrapped in a ZIP as the VNPT SDK does),
validates and inspects it, builds the recipient's status 01 answer, and validates every
shared real-world sample it can find, printing each step as tables.

``esb demo seed`` registers demo agencies, their applications and one key pair each, and
writes the credentials (with their secret keys) to a file readable by its owner only.  It
also writes a demo PKI into the data directory when none is there (trust anchors, the hub's
receipt key, a signing key per demo agency; see ``esb pki demo``) and registers each demo
agency's certificate as its signing certificate.
"""

from __future__ import annotations

import contextlib
import json
import os
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from esb.cli import rendering
from esb.cli.edxml_commands import build_to_file, validate_file
from esb.cli.main import reports_errors
from esb.cli.registry_commands import database_options, load_settings, opened_runtime
from esb.cli.signature_commands import (
    RegisteredCertificate,
    print_demo_pki,
    register_certificate_files,
    write_pki,
)
from esb.domain.edxml_dates import VN_TZ, format_date
from esb.domain.edxml_model import EdocPackage
from esb.errors import EdxmlBuildError, EsbError
from esb.xml_processing.edxml_reader import read_package

if TYPE_CHECKING:
    from esb.security.pki import DemoPki

# Present once a demo PKI is complete (esb.security.pki.write_demo_pki writes it last).
DEMO_ROOT = Path("trust/anchors/demo-root-ca.pem")

TAY_NINH_FINANCE = {
    "organ_id": "000.00.11.H53",
    "organ_name": "Sở Tài chính tỉnh Tây Ninh",
    "organization_in_charge": "UBND tỉnh Tây Ninh",
    "organ_add": "Tây Ninh",
    "email": "stc@tayninh.gov.vn",
}
TAY_NINH_PARTY_OFFICE = {
    "organ_id": "000.00.01.A53",
    "organ_name": "Văn phòng Tỉnh ủy Tây Ninh",
    "organ_add": "Tây Ninh",
}
TAY_NINH_PEOPLES_COMMITTEE = {
    "organ_id": "000.00.00.H53",
    "organ_name": "UBND tỉnh Tây Ninh",
    "organ_add": "Tây Ninh",
}


def demo_spec(today: datetime, attachment: Path) -> dict[str, Any]:
    return {
        "kind": "edoc",
        "from": TAY_NINH_FINANCE,
        "to": [TAY_NINH_PARTY_OFFICE, TAY_NINH_PEOPLES_COMMITTEE],
        "code": {"number": "2491", "notation": "STC-BCTC"},
        "promulgation": {"date": format_date(today.date()), "place": "Tây Ninh"},
        "document_type": {"type": 1, "type_name": "Công văn"},
        "subject": "Báo cáo tình hình thực hiện dự toán ngân sách quý IV",
        "signer": {"full_name": "Nguyễn Văn A", "position": "Giám đốc"},
        "priority": "khan",
        "to_places": ["Như trên", "Lưu: VT"],
        "business": {"doc_type": 0, "staff": {"department": "Văn thư", "staff": "Trần Thị B"}},
        "attachments": [{"file": attachment.name, "content_type": "text/plain", "description": "Báo cáo"}],
    }


def status_spec(package: EdocPackage) -> dict[str, Any]:
    h = package.header
    if h.code is None or h.promulgation_info is None:
        raise EdxmlBuildError("the demo package lacks Code or PromulgationInfo", code="Server.Demo")
    return {
        "kind": "status",
        "from": TAY_NINH_PARTY_OFFICE,
        "response_for": {
            "organ_id": h.from_.organ_id,
            "code": str(h.code),
            "document_id": h.document_id,
            "promulgation_date": format_date(h.promulgation_info.promulgation_date),
        },
        "status_code": "01",
        "staff": {"department": "Văn thư", "staff": "Lê Văn C"},
    }


@click.group(invoke_without_command=True)
@click.pass_context
def demo(ctx: click.Context) -> None:
    """Guided tours: edXML packages (esb demo packages) and demo credentials (esb demo seed).

    Without a subcommand, runs "packages" with its defaults.
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(packages)


@demo.command()
@click.option(
    "--out",
    "out",
    default=Path("demo-output"),
    show_default=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Where the demo writes its files.",
)
@click.option(
    "--samples",
    "samples",
    default=None,
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder of .edxml samples to validate (default: ../shared/samples/edxml if present).",
)
@reports_errors
def packages(out: Path, samples: Path | None) -> None:
    """Build, validate and inspect a package, answer it with a status, and check real samples."""
    now = datetime.now(VN_TZ).replace(microsecond=0)
    out.mkdir(parents=True, exist_ok=True)
    attachment = out / "bao-cao-quy-IV.txt"
    attachment.write_text("Báo cáo tình hình thực hiện dự toán ngân sách quý IV.\n", encoding="utf-8")

    rendering.console.rule("1. Build a strict edoc package (esb edxml build)")
    edoc_path = out / "cong-van-2491.edxml"
    written = build_to_file(demo_spec(now, attachment), edoc_path, base_dir=out, now=now, zip_files=True)
    edoc = written.package
    if not isinstance(edoc, EdocPackage):
        raise EdxmlBuildError("the demo description did not give an edoc", code="Server.Demo")
    rendering.print_built(written, edoc_path)

    rendering.console.rule("2. Validate and inspect it (esb edxml validate / inspect)")
    rendering.print_verdicts([validate_file(edoc_path, strict=True)])
    rendering.print_package(read_package(edoc_path), edoc_path)

    rendering.console.rule("3. The recipient answers with status 01 (đã đến)")
    status_path = out / "trang-thai-01.edxml"
    rendering.print_built(build_to_file(status_spec(edoc), status_path, base_dir=out, now=now), status_path)

    folder = samples or _find_samples()
    if folder is not None:
        rendering.console.rule(f"4. Real-world samples in {folder}")
        files_found = sorted(folder.glob("*.edxml"))
        verdicts = []
        with rendering.progress(len(files_found), "validating samples") as advance:
            for path in files_found:
                verdicts.append(validate_file(path))
                advance()
        rendering.print_verdicts(verdicts)
    rendering.console.print(
        f"\nDemo files are in [bold]{out.resolve()}[/]. Try: esb edxml inspect {edoc_path}"
    )


def _find_samples() -> Path | None:
    here = Path(__file__).resolve()
    for candidate in (Path.cwd().parent / "shared/samples/edxml", here.parents[3] / "shared/samples/edxml"):
        if candidate.is_dir():
            return candidate
    return None


@demo.command()
@click.option(
    "--credentials-out",
    default=Path("demo-credentials.json"),
    show_default=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where to write the demo credentials, secret keys included (mode 0600).",
)
@database_options
@reports_errors
def seed(credentials_out: Path, database_url: str | None, data_dir: Path | None) -> None:
    """Register demo agencies with a QLVB application and a key pair each; save the credentials."""
    from esb.pipeline.demo_seed import DEMO_AGENCIES, seed_demo

    settings = load_settings(database_url, data_dir)
    pki_dir = settings.data_dir
    written: DemoPki | None = None
    skipped = _demo_pki_obstacle(pki_dir)
    if skipped is None and not (pki_dir / DEMO_ROOT).exists():
        # Before the runtime opens: it would make a self-signed hub key where the demo one goes.
        agencies = [(record.code, record.name) for record in DEMO_AGENCIES]
        written = write_pki(pki_dir, agencies, settings, overwrite=False)
    with opened_runtime(database_url, data_dir) as runtime:
        credentials = seed_demo(runtime.registration)
        certificate_files = {
            record.code: pki_dir / "agencies" / record.code / "cert.pem"
            for record in DEMO_AGENCIES
            if (pki_dir / "agencies" / record.code / "cert.pem").is_file()
        }
        registered = register_certificate_files(runtime.registration, certificate_files)
    _print_pki_summary(pki_dir, written, registered, skipped)
    if not credentials:
        rendering.console.print(
            "The demo agencies, applications and keys are already registered: no new key was issued "
            "(existing secret keys are sealed and cannot be shown again)."
        )
        if credentials_out.exists():
            rendering.console.print(f"{credentials_out} was left as it is.")
        else:
            rendering.console.print(
                "To start over, use an empty database (a new --data-dir), or issue keys with esb keys issue."
            )
        return
    entries = _merge_credentials(credentials_out, [c.as_json() for c in credentials])
    _write_private_json(credentials_out, entries)
    table = Table(title="demo credentials issued", title_justify="left")
    table.add_column("agency", no_wrap=True)
    table.add_column("name", overflow="fold")
    table.add_column("application", overflow="fold")
    table.add_column("accessKey", no_wrap=True)
    for credential in credentials:
        table.add_row(credential.agency, credential.name, credential.application, credential.accessKey)
    rendering.console.print(table)
    where = "--database-url <the same URL>" if database_url else f"--data-dir {settings.data_dir}"
    rendering.console.print(
        f"{len(credentials)} key pair(s) issued. Their secret keys are in [bold]{credentials_out}[/] "
        "(readable by you only; they are shown nowhere else).\n"
        f"Next: start the services with [bold]esb serve {where}[/] (same database, same master key), "
        "then call Authenticate at /soap/Auth with an accessKey and its secretKey (see the README)."
    )


def _demo_pki_obstacle(pki_dir: Path) -> str | None:
    """Why no demo PKI may be written into ``pki_dir``, or None.

    The hub key there is replaced only when it is missing or self-signed (the one a hub makes
    for itself on first start); a key issued by a real CA is never overwritten.
    """
    from esb.security.pki import load_certificates

    cert = pki_dir / "hub" / "cert.pem"
    if (pki_dir / DEMO_ROOT).exists() or not cert.exists():
        return None
    try:
        certificate = load_certificates(cert.read_bytes())[0]
    except (OSError, EsbError):
        return f"{cert} is not readable"
    if certificate.issuer != certificate.subject:
        return f"{cert} is a hub certificate issued by {certificate.issuer.rfc4514_string()}"
    return None


def _print_pki_summary(
    pki_dir: Path, written: DemoPki | None, registered: list[RegisteredCertificate], skipped: str | None
) -> None:
    new = [item for item in registered if item.new]
    if written is not None:
        print_demo_pki(written, registered, title=f"demo PKI written to {pki_dir}")
    elif skipped is not None:
        rendering.console.print(
            f"No demo PKI was written: {skipped} (it is kept). Use esb pki demo --out DIR for one elsewhere."
        )
    elif registered:
        rendering.console.print(
            f"The demo PKI in {pki_dir} is kept; {len(new)} certificate(s) newly registered."
        )
    if written is not None or registered:
        rendering.console.print(
            f"Signing keys of the demo agencies: [bold]{pki_dir / 'agencies'}/<code>/key.pem[/] "
            f"(certificates: cert.pem); the hub's receipt key: {pki_dir / 'hub' / 'key.pem'}; "
            f"trust anchors: {pki_dir / 'trust'}.\n"
            f"Sign a package: esb sign FILE --key {pki_dir / 'agencies'}/<code>/key.pem "
            f"--cert {pki_dir / 'agencies'}/<code>/cert.pem"
        )


def _merge_credentials(path: Path, new: list[dict[str, str]]) -> list[dict[str, str]]:
    """The new credentials, plus those of the existing file for other applications (still usable)."""
    with contextlib.suppress(OSError, ValueError):
        old = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(old, list):
            issued = {(c["agency"], c["application"]) for c in new}
            kept = [
                c
                for c in old
                if isinstance(c, dict) and (c.get("agency"), c.get("application")) not in issued
            ]
            return kept + new
    return new


def _write_private_json(path: Path, value: object) -> None:
    """Pretty-printed UTF-8 JSON, mode 0600, replacing ``path`` whole (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(value, handle, ensure_ascii=False, indent=2)
            handle.write("\n")
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
