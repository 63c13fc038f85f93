"""Auditors' commands: ``esb audit verify|head`` and ``esb evidence export|verify``.

``esb audit verify`` checks the whole tamper-evident trace of a database and every stored
receipt, and names the first broken link.  ``esb evidence export`` writes one document's
evidence bundle; ``esb evidence verify`` (the same as ``esb verify BUNDLE``) checks one on
a machine that has nothing but the bundle and the trust anchors.
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from esb.cli.main import EXIT_REFUSED, reports_errors
from esb.cli.registry_commands import _echo_json, _row_progress, database_options, opened_runtime


@click.group()
def audit() -> None:
    """Check the hub's tamper-evident trace (every event chained by hash) and its receipts."""


@audit.command("verify")
@database_options
@click.option(
    "--trust",
    "trust_paths",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="Check receipts against these anchors (the hub's certificate or CA), not the database's list.",
)
@click.option(
    "--head", "recorded_head", metavar="SEQ:HASH", help="A head printed earlier by `esb audit head`."
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@reports_errors
def audit_verify(
    database_url: str | None,
    data_dir: Path | None,
    trust_paths: tuple[Path, ...],
    recorded_head: str | None,
    as_json: bool,
) -> None:
    """Recompute every event hash and link, compare with the chain head, check every receipt.

    Exit 0 when everything holds; 1 with the first broken link otherwise.
    """
    from esb.cli.signature_commands import trust_store_from
    from esb.pipeline.audit import verify_database
    from esb.storage import trace_log

    head = _recorded_head(recorded_head) if recorded_head else None
    trust = trust_store_from(trust_paths) if trust_paths else None

    with opened_runtime(database_url, data_dir) as runtime:
        with runtime.database.transaction() as session:
            total, _ = trace_log.head(session)
        with _row_progress(total, "checking the trace chain") as advance:
            seen = 0

            def progress(count: int) -> None:
                nonlocal seen
                advance(count - seen)
                seen = count

            result = verify_database(runtime.database, progress=progress, trust=trust, recorded_head=head)
    if as_json:
        _echo_json(result.to_dict())
    else:
        console = Console()
        table = Table(title="Trace chain audit", show_header=False)
        table.add_row("events checked", str(result.events))
        table.add_row("documents", str(result.documents))
        table.add_row("last link", f"{result.head_seq} {result.head_hash[:16]}…")
        table.add_row("stored head", f"{result.stored_head[0]} {result.stored_head[1][:16]}…")
        table.add_row("receipts checked", str(result.receipts))
        console.print(table)
        if result.first_break is not None:
            brk = result.first_break
            console.print(
                f"[bold red]BROKEN[/] at event {brk.seq} ({brk.problem}"
                f"{', document ' + brk.hub_document_id if brk.hub_document_id else ''}): {brk.message}"
            )
        for problem in result.receipt_problems:
            console.print(
                f"[bold red]RECEIPT[/] {problem.receipt_id} of {problem.hub_document_id} "
                f"(event {problem.trace_seq}): {problem.message}"
            )
        if result.intact:
            console.print("[bold green]INTACT[/]: every hash, link and receipt checks")
    if not result.intact:
        raise SystemExit(EXIT_REFUSED)


def _recorded_head(value: str) -> tuple[int, str]:
    seq, _, digest = value.replace(" ", ":").partition(":")
    if not seq.isdigit() or len(digest) != 64 or any(c not in "0123456789abcdefABCDEF" for c in digest):
        raise click.BadParameter(
            "give SEQ:HASH as `esb audit head` prints it (a number, a 64-digit hex hash)"
        )
    return int(seq), digest.lower()


@audit.command("head")
@database_options
@reports_errors
def audit_head(database_url: str | None, data_dir: Path | None) -> None:
    """Print the chain head (SEQ:HASH): record it outside the hub (a daily log, a letter) and
    check it later with `esb audit verify --head SEQ:HASH`."""
    from esb.storage import trace_log

    with opened_runtime(database_url, data_dir) as runtime, runtime.database.transaction() as session:
        seq, digest = trace_log.head(session)
    click.echo(f"{seq}:{digest}")


@click.group()
def evidence() -> None:
    """Evidence bundles: one document's trace, receipts, digests, verdicts and certificates."""


@evidence.command("export")
@click.argument("hub_document_id")
@click.option(
    "-o", "--output", "out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="bundle.zip"
)
@database_options
@reports_errors
def evidence_export(hub_document_id: str, out: Path, database_url: str | None, data_dir: Path | None) -> None:
    """Write the evidence bundle of HUB_DOCUMENT_ID (receipts missing so far are issued first)."""
    from esb.pipeline.audit import export_evidence

    with opened_runtime(database_url, data_dir) as runtime:
        issuer = runtime.exchange.receipts
        if issuer is None:  # pragma: no cover - wiring always configures one
            raise click.UsageError("this hub has no receipt signing key")
        summary = export_evidence(
            runtime.database,
            issuer,
            hub_document_id,
            out,
            exported_by=f"{runtime.settings.hub_organ_id} ({runtime.settings.node_name})",
        )
    click.echo(
        f"wrote {summary.path}: {summary.events} trace events, {summary.receipts} receipts; "
        f"sha256 {summary.sha256}"
    )


@evidence.command("verify")
@click.argument("bundle", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--trust",
    "trust_paths",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="Trust anchors (CA or hub certificate file, or directory); repeatable.",
)
@click.option(
    "--package",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The package itself (from an archive): its digest and signature verdict are checked too.",
)
@click.option("--allow-sha1", is_flag=True, help="Count SHA-1 package signatures as valid (weak).")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@reports_errors
def evidence_verify(
    bundle: Path, trust_paths: tuple[Path, ...], package: Path | None, allow_sha1: bool, as_json: bool
) -> None:
    """Check BUNDLE offline: manifest, hash chain, receipts and their signatures, verdicts."""
    from esb.cli.signature_commands import show_bundle_check, trust_store_from
    from esb.security.evidence_bundle import verify_bundle

    result = verify_bundle(
        bundle, trust=trust_store_from(trust_paths), package=package, allow_legacy=allow_sha1
    )
    if as_json:
        _echo_json(result.to_dict())
    else:
        show_bundle_check(result)
    if not result.ok:
        raise SystemExit(EXIT_REFUSED)
