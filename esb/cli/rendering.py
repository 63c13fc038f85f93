"""How the CLI shows things to people: rich tables, progress, and JSON-able views of the model."""

from __future__ import annotations

import contextlib
import dataclasses
import enum
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from esb.domain import edxml_model as m
from esb.domain.edxml_dates import format_date, format_datetime

if TYPE_CHECKING:
    from esb.cli.edxml_commands import Verdict
    from esb.xml_processing.edxml_reader import ReadResult
    from esb.xml_processing.edxml_writer import WriteResult

console = Console(highlight=False, soft_wrap=False)
_VERDICT_STYLE = {"valid": "green", "valid-with-warnings": "yellow", "invalid": "red"}
_VERDICT_MARK = {"valid": "✔ valid", "valid-with-warnings": "⚠ valid with warnings", "invalid": "✘ invalid"}


@contextlib.contextmanager
def progress(total: int, label: str, *, enabled: bool = True) -> Iterator[Callable[[], None]]:
    """A progress bar on stderr for long runs; a no-op when disabled or not on a terminal."""
    if not enabled:
        yield lambda: None
        return
    bar = Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    with bar:
        task = bar.add_task(label, total=total)
        yield lambda: bar.advance(task)


def print_verdicts(verdicts: Sequence[Verdict]) -> None:
    summary = Table(title="edXML validation", show_lines=False)
    for column in ("file", "verdict", "kind", "warnings", "code"):
        summary.add_column(column, overflow="fold")
    for v in verdicts:
        warnings = sum(1 for i in v.issues if not i.is_error)
        summary.add_row(
            Path(v.file).name,
            f"[{_VERDICT_STYLE[v.verdict]}]{_VERDICT_MARK[v.verdict]}[/]",
            v.kind or "",
            str(warnings) if warnings else "",
            v.code or "",
        )
    console.print(summary)
    for v in verdicts:
        if v.code and not v.issues:
            console.print(f"[red]{Path(v.file).name}[/]: {v.code}: {v.message}")
        if v.issues:
            print_issues(v.issues, title=Path(v.file).name)
    counts = {k: sum(1 for v in verdicts if v.verdict == k) for k in _VERDICT_MARK}
    console.print(
        f"{len(verdicts)} file(s): [green]{counts['valid']} valid[/], "
        f"[yellow]{counts['valid-with-warnings']} valid with warnings[/], [red]{counts['invalid']} invalid[/]"
    )


def print_issues(issues: Sequence[Any], *, title: str) -> None:
    table = Table(title=title, title_justify="left")
    for column in ("severity", "code", "element path", "message"):
        table.add_column(column, overflow="fold")
    for issue in issues:
        style = "red" if issue.is_error else "yellow"
        table.add_row(f"[{style}]{issue.severity.value}[/]", issue.code, issue.path, issue.message)
    console.print(table)


def _kv_table(title: str, rows: Sequence[tuple[str, str | None]]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in rows:
        if value:
            table.add_row(key, value)
    return table


def print_package(result: ReadResult, file: Path) -> None:
    package = result.package
    console.print(
        _kv_table(
            f"{file.name}",
            [
                ("kind", package.kind.value),
                ("size", f"{result.size:,} bytes"),
                ("sha256", result.sha256),
            ],
        )
    )
    if isinstance(package, m.StatusPackage):
        _print_status(package)
    else:
        _print_edoc(package)
    if result.warnings:
        print_issues(result.warnings, title="warnings")


def _org(org: m.Organization) -> str:
    return f"{org.organ_id}  {org.organ_name or ''}".strip()


def _print_status(p: m.StatusPackage) -> None:
    rf = p.response_for
    console.print(
        _kv_table(
            "status (gói tin trạng thái)",
            [
                ("from", _org(p.from_)),
                ("status", f"{p.status_code.value} {p.status_code.label_vi}"),
                ("description", p.description),
                ("timestamp", format_datetime(p.timestamp)),
                ("response for", f"{rf.organ_id}  {rf.code or ''}  {rf.document_id or ''}"),
                ("staff", p.staff_info.staff if p.staff_info else None),
            ],
        )
    )


def _print_edoc(p: m.EdocPackage) -> None:
    h = p.header
    console.print(
        _kv_table(
            "header (MessageHeader)",
            [
                ("from", _org(h.from_)),
                ("to", "\n".join(_org(t) for t in h.to)),
                ("document id", h.document_id),
                ("code (số/ký hiệu)", str(h.code) if h.code else None),
                (
                    "promulgation",
                    f"{format_date(h.promulgation_info.promulgation_date)} {h.promulgation_info.place or ''}"
                    if h.promulgation_info
                    else None,
                ),
                ("type", h.document_type.type_name if h.document_type else None),
                ("subject (trích yếu)", h.subject),
                ("signer", h.signer_info.full_name if h.signer_info else None),
                ("priority (độ khẩn)", f"{int(h.priority)} {h.priority.label_vi}"),
                ("due date", format_date(h.due_date) if h.due_date else None),
                ("steering type", str(int(h.steering_type)) if h.steering_type is not None else None),
                ("reply to", "\n".join(f"{r.organ_id} {r.code or ''}" for r in h.response_for) or None),
            ],
        )
    )
    trace = Table(title="trace (TraceHeaderList)", title_justify="left")
    trace.add_column("#")
    trace.add_column("OrganId")
    trace.add_column("timestamp")
    for index, t in enumerate(p.trace_headers, start=1):
        trace.add_row(str(index), t.organ_id or "—", format_datetime(t.timestamp) if t.timestamp else "—")
    console.print(trace)
    b = p.business
    if b is not None:
        console.print(
            _kv_table(
                "business (Bussiness)",
                [
                    ("type", f"{int(b.doc_type)} {b.doc_type.name.lower()}"),
                    ("reason", b.reason),
                    ("target document", b.document_id if b.doc_type else None),
                    ("replaces", "\n".join(r.document_id for r in b.replacements) or None),
                    (
                        "receivers changed",
                        "\n".join(
                            f"{r.organ_id} {r.receiver_type.name.lower()}" for r in b.document_info.receivers
                        )
                        if b.document_info
                        else None,
                    ),
                    ("clerk", b.staff_info.staff if b.staff_info else None),
                ],
            )
        )
    print_attachments(p.attachments, p.references)
    if p.signature is not None:
        s = p.signature
        console.print(
            _kv_table(
                "signature (not verified here)",
                [
                    ("namespace", "XML-DSig" if s.in_xmldsig_namespace else "wrong (QCVN or none)"),
                    ("method", s.signature_method),
                    ("digest", s.digest_method),
                    ("certificate", "present" if s.has_certificate else "absent"),
                ],
            )
        )


def print_attachments(
    attachments: Sequence[m.Attachment], references: Sequence[m.ManifestReference] = ()
) -> None:
    types = {r.content_id: r.content_type for r in references}
    table = Table(title="attachments", title_justify="left")
    for column in ("content id", "name", "type", "size", "sha256", "note"):
        table.add_column(column, overflow="fold")
    for a in attachments:
        table.add_row(
            a.content_id,
            a.attachment_name or "",
            types.get(a.content_id) or a.content_type or "",
            f"{a.data.size:,}",
            a.data.sha256[:16] + "…",
            "unzipped (VNPT ZIP)" if a.data.unwrapped_zip else "",
        )
    console.print(table)


def print_extracted(result: ReadResult) -> None:
    package = result.package
    attachments = package.attachments if isinstance(package, m.EdocPackage) else ()
    table = Table(title="extracted", title_justify="left")
    for column in ("file", "size", "sha256"):
        table.add_column(column, overflow="fold")
    for a in attachments:
        table.add_row(a.data.location or "", f"{a.data.size:,}", a.data.sha256)
    console.print(table)
    console.print(f"{len(attachments)} attachment(s) written")


def print_built(result: WriteResult, output: Path) -> None:
    package = result.package
    rows = [("written", str(output)), ("size", f"{result.size:,} bytes"), ("sha256", result.sha256)]
    if isinstance(package, m.EdocPackage):
        rows += [("document id", package.header.document_id), ("attachments", str(len(package.attachments)))]
    else:
        rows += [("status", f"{package.status_code.value} {package.status_code.label_vi}")]
    console.print(_kv_table("built a strict edXML package", rows))


def to_jsonable(result: ReadResult) -> dict[str, Any]:
    return {
        "sha256": result.sha256,
        "size": result.size,
        "kind": result.package.kind.value,
        "package": _plain(result.package),
        "warnings": [w.as_dict() for w in result.warnings],
    }


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name.rstrip("_"): _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value
