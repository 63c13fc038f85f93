"""``esb edxml validate | inspect | extract | build``: check and produce packages before calling the bus."""

from __future__ import annotations

import json
import mimetypes
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import yaml

from esb.cli import rendering
from esb.cli.main import EXIT_REFUSED, reports_errors
from esb.domain.edxml_dates import VN_TZ
from esb.domain.edxml_model import EdocPackage
from esb.domain.issues import Issue, Severity
from esb.domain.package_spec import AttachmentSpec, package_from_spec, wrap_attachments_as_zip
from esb.errors import EdxmlBuildError, EdxmlInvalid, XmlInputError
from esb.xml_processing.attachments import AttachmentPolicy, publish_file
from esb.xml_processing.edxml_reader import ReadResult, read_package
from esb.xml_processing.edxml_writer import WriteResult, write_package
from esb.xml_processing.schemas import SchemaName, SchemaRegistry

MAX_SPEC_BYTES = 1024 * 1024


@dataclass
class Verdict:
    """The outcome of validating one file."""

    file: str
    verdict: str  # valid | valid-with-warnings | invalid
    code: str | None = None
    message: str | None = None
    kind: str | None = None
    sha256: str | None = None
    size: int | None = None
    issues: list[Issue] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "verdict": self.verdict,
            "code": self.code,
            "message": self.message,
            "kind": self.kind,
            "sha256": self.sha256,
            "size": self.size,
            "issues": [i.as_dict() for i in self.issues],
        }


def validate_file(path: Path, *, strict: bool = False) -> Verdict:
    """Read one package and turn every outcome into a verdict (never raises for bad input)."""
    try:
        result = read_package(path)
    except EdxmlInvalid as exc:
        return Verdict(str(path), "invalid", exc.code, exc.message, issues=list(exc.issues))
    except XmlInputError as exc:
        return Verdict(str(path), "invalid", exc.code, exc.message)
    except OSError as exc:
        return Verdict(str(path), "invalid", "Client.FileUnreadable", f"{exc.strerror or exc}")
    issues = list(result.warnings)
    if strict:
        issues.extend(_strict_deviations(result))
    return Verdict(
        str(path),
        "valid-with-warnings" if issues else "valid",
        kind=result.package.kind.value,
        sha256=result.sha256,
        size=result.size,
        issues=issues,
    )


def _strict_deviations(result: ReadResult) -> list[Issue]:
    violations = SchemaRegistry.default().validate(SchemaName.EDXML_STRICT, result.tree)
    return [Issue(Severity.WARNING, "W.StrictSchema", v.path, v.message) for v in violations]


@click.group()
def edxml() -> None:
    """Validate, inspect, extract and build edXML packages (gói tin edXML)."""


@edxml.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of tables.")
@click.option("--strict", is_flag=True, help="Also report every deviation from our strict XSD as a warning.")
@reports_errors
def validate(files: tuple[Path, ...], as_json: bool, strict: bool) -> None:
    """Give each FILE a verdict: valid, valid with warnings, or invalid (exit 1 if any is invalid)."""
    verdicts = []
    with rendering.progress(len(files), "validating", enabled=not as_json and len(files) > 3) as advance:
        for path in files:
            verdicts.append(validate_file(path, strict=strict))
            advance()
    if as_json:
        click.echo(json.dumps([v.as_dict() for v in verdicts], ensure_ascii=False, indent=2))
    else:
        rendering.print_verdicts(verdicts)
    if any(v.verdict == "invalid" for v in verdicts):
        raise SystemExit(EXIT_REFUSED)


@edxml.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the package model as JSON.")
@reports_errors
def inspect(file: Path, as_json: bool) -> None:
    """Show the header, trace, business information and attachments of FILE."""
    result = read_package(file)
    if as_json:
        click.echo(json.dumps(rendering.to_jsonable(result), ensure_ascii=False, indent=2))
    else:
        rendering.print_package(result, file)


@edxml.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "-o",
    "--output",
    "output",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Directory to write the attachments to (created if missing).",
)
@reports_errors
def extract(file: Path, output: Path) -> None:
    """Write the attachments of FILE to a directory (VNPT ZIP wrappers are unwrapped)."""
    output.mkdir(parents=True, exist_ok=True)
    result = read_package(file, attachments=AttachmentPolicy(extract_dir=output))
    rendering.print_extracted(result)


@edxml.command()
@click.argument("spec", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "-o",
    "--output",
    "output",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where to write the .edxml package.",
)
@click.option(
    "--attach",
    "attach",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="A file to attach (repeatable); its content type is guessed from the name.",
)
@click.option(
    "--zip",
    "zip_files",
    is_flag=True,
    help="Wrap each attachment in a ZIP as the VNPT/VXP SDK does (receivers unwrap it).",
)
@reports_errors
def build(spec: Path, output: Path, attach: tuple[Path, ...], zip_files: bool) -> None:
    """Build a strict package from a small YAML description SPEC (see docs/edxml.md)."""
    description = load_spec(spec)
    extra = [
        AttachmentSpec(
            str(p.resolve()), p.name, mimetypes.guess_type(p.name)[0] or "application/octet-stream"
        )
        for p in attach
    ]
    result = build_to_file(
        description, output, base_dir=spec.parent, now=datetime.now(VN_TZ), extra=extra, zip_files=zip_files
    )
    rendering.print_built(result, output)


def build_to_file(
    description: dict[str, Any],
    output: Path,
    *,
    base_dir: Path,
    now: datetime,
    extra: Sequence[AttachmentSpec] = (),
    zip_files: bool = False,
) -> WriteResult:
    """Description → strict package file, stamped with the sender's TraceHeader, written atomically."""
    built = package_from_spec(description, now=now, extra_attachments=extra)
    files = {cid: _resolve(base_dir, name) for cid, name in built.attachment_files}
    package = built.package
    if zip_files and isinstance(package, EdocPackage):
        package = wrap_attachments_as_zip(package)
    result: WriteResult = write_atomically(
        output, lambda handle: write_package(package, handle, files=files, append_trace=built.sender_trace)
    )
    return result


def load_spec(path: Path) -> dict[str, Any]:
    """Read a YAML (or JSON) package description, refusing anything that is not a plain mapping."""
    if path.stat().st_size > MAX_SPEC_BYTES:
        raise EdxmlBuildError(f"{path} is larger than {MAX_SPEC_BYTES} bytes", code="Client.EdxmlSpecInvalid")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise EdxmlBuildError(f"{path} is not valid YAML: {exc}", code="Client.EdxmlSpecInvalid") from None
    if not isinstance(data, dict):
        raise EdxmlBuildError(f"{path} must describe a mapping of fields", code="Client.EdxmlSpecInvalid")
    return data


def _resolve(base: Path, name: str) -> Path:
    """Attachment paths in a description are relative to the description's folder."""
    path = Path(name).expanduser()
    return path if path.is_absolute() else base / path


def write_atomically(target: Path, write: Any) -> Any:
    """Write through a temporary file in the same directory; the target appears whole or not at all."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", delete=False)  # noqa: SIM115
    try:
        with handle:
            result = write(handle)
        publish_file(Path(handle.name), target)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    return result
