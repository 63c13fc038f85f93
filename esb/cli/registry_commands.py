"""``esb agency | app | keys | db``: the operator's registry of agencies, applications and keys.

``esb agency certificate add|list|remove`` registers the certificates an agency signs its
packages with, and ``esb agency policy`` sets what the hub does with its signatures.

Every command takes ``--database-url`` and ``--data-dir`` (or ``ESB_DATABASE_URL`` and
``ESB_DATA_DIR``) and migrates the schema before it runs, so a fresh data directory works
at once.  Secret keys are printed exactly once, by ``keys issue`` and ``keys rotate``; no
other command shows them (the database holds them sealed under the master key).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import shlex
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, ParamSpec, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from esb.cli.main import reports_errors
from esb.cli.rendering import console
from esb.clock import utc_now
from esb.domain.access import HUB_SERVICES, AccessRule, AgencyState, Effect, RuleScope
from esb.domain.agencies import AgencyRecord, record_from_row
from esb.domain.identifiers import is_conforming
from esb.domain.signatures import SignaturePolicy
from esb.errors import ClientError, InvalidIdentifier
from esb.settings import Settings

if TYPE_CHECKING:
    from esb.pipeline.registration import IssuedKey, KeyInfo, SigningCertificateInfo
    from esb.storage.tables import Agency, Application
    from esb.wiring import Runtime

P = ParamSpec("P")
R = TypeVar("R")

MAX_SHOWN_PROBLEMS = 20
SHOWN_ONCE_WARNING = (
    "⚠ The secret key is shown only this once and cannot be retrieved later (it is stored encrypted). "
    "Give it to the application's operator now, over a safe channel."
)


class ImportInvalid(ClientError):
    """An agency list that cannot be imported: unreadable, or with invalid rows (listed in ``problems``)."""

    default_code = "Client.ImportInvalid"

    def __init__(self, message: str, *, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = tuple(problems)


# -- settings and runtime: the one place the commands open the database ------------------------


def database_options(func: Callable[P, R]) -> Callable[P, R]:
    """``--database-url`` and ``--data-dir``, as ``esb serve`` takes them."""
    func = click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="ESB_DATA_DIR",
        show_envvar=True,
        help="Data directory (embedded database, master key file). Default ./var.",
    )(func)
    return click.option(
        "--database-url",
        envvar="ESB_DATABASE_URL",
        show_envvar=True,
        help="SQLAlchemy URL (default: SQLite in the data dir).",
    )(func)


def load_settings(database_url: str | None, data_dir: Path | None) -> Settings:
    return Settings.from_env(data_dir=data_dir, database_url=database_url)


@contextlib.contextmanager
def opened_runtime(database_url: str | None, data_dir: Path | None) -> Iterator[Runtime]:
    """The use cases on a migrated database; the connections are closed at the end."""
    from esb.wiring import build_runtime

    runtime = build_runtime(load_settings(database_url, data_dir))
    try:
        yield runtime
    finally:
        runtime.database.dispose()


# -- small helpers ------------------------------------------------------------------------------


def _when(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M") if value else ""


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _echo_json(value: object) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2))


@contextlib.contextmanager
def _row_progress(total: int, label: str) -> Iterator[Callable[[int], None]]:
    """A transient progress bar on stderr that advances by a number of rows at a time.

    Nothing is drawn when stderr is not a terminal (logs and pipes stay clean).
    """
    stderr = Console(stderr=True)
    if not stderr.is_terminal:
        yield lambda rows: None
        return
    bar = Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr,
        transient=True,
    )
    with bar:
        task = bar.add_task(label, total=total)
        yield lambda rows: bar.advance(task, rows)


if TYPE_CHECKING:
    _DurationBase = click.ParamType[timedelta]  # generic in click ≥ 8.2 only, so not subscripted at run time
else:
    _DurationBase = click.ParamType


class DurationType(_DurationBase):
    """``7d``, ``24h``, ``90m``, ``3600s``, ``1w`` or combinations (``1d12h``); a bare number is seconds."""

    name = "duration"
    _UNITS: ClassVar[dict[str, int]] = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
    _WHOLE = re.compile(r"(?:\d+[wdhms])+|\d+")
    _PART = re.compile(r"(\d+)([wdhms]?)")
    MAXIMUM = timedelta(days=366)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> timedelta:
        if isinstance(value, timedelta):
            return value
        text = str(value).strip().lower().replace(" ", "")
        if not self._WHOLE.fullmatch(text):
            self.fail(f"{value!r} is not a duration such as 7d, 24h, 90m or 3600s", param, ctx)
        seconds = sum(int(number) * self._UNITS[unit or "s"] for number, unit in self._PART.findall(text))
        duration = timedelta(seconds=seconds)
        if duration > self.MAXIMUM:
            self.fail(f"{value!r} is longer than {self.MAXIMUM.days} days", param, ctx)
        return duration


DURATION = DurationType()


def _describe(duration: timedelta) -> str:
    seconds = int(duration.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


# -- esb agency ---------------------------------------------------------------------------------


@click.group()
def agency() -> None:
    """Register agencies (cơ quan, đơn vị) by their identifier code (mã định danh)."""


def _agency_view(row: Agency) -> dict[str, Any]:

    return {
        "code": row.code,
        "name": row.name,
        "qd20_code": row.qd20_code,
        "old_code": row.old_code,
        "parent_code": row.parent_code,
        "address": row.address,
        "email": row.email,
        "account": row.account,
        "state": row.state,
        "signature_policy": row.signature_policy,
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
    }


def _print_agencies(views: Sequence[Mapping[str, Any]], *, title: str) -> None:
    table = Table(title=title, title_justify="left")
    table.add_column("code", no_wrap=True)
    for column in ("name", "QĐ 20", "parent", "state", "signatures"):
        table.add_column(column, overflow="fold")
    for view in views:
        state = view["state"]
        table.add_row(
            view["code"],
            view["name"],
            view["qd20_code"] or "",
            view["parent_code"] or "",
            f"[red]{state}[/]" if state == AgencyState.LOCKED.value else f"[green]{state}[/]",
            view["signature_policy"] or "[dim](default)[/]",
        )
    console.print(table)


@agency.command("add")
@click.argument("code")
@click.argument("name")
@click.option("--qd20-code", help="The agency's code in the QĐ 20/2020 form (e.g. H53.01).")
@click.option("--old-code", help="A former code, kept for looking up old documents.")
@click.option("--parent", "parent", help="The parent agency's code (default: derived from CODE).")
@click.option("--address")
@click.option("--email")
@database_options
@reports_errors
def agency_add(
    code: str,
    name: str,
    qd20_code: str | None,
    old_code: str | None,
    parent: str | None,
    address: str | None,
    email: str | None,
    database_url: str | None,
    data_dir: Path | None,
) -> None:
    """Register one agency: CODE (QCVN 102 or QĐ 20 form) and its NAME."""
    record = AgencyRecord(
        code, name, qd20_code=qd20_code, old_code=old_code, parent_code=parent, address=address, email=email
    )
    with opened_runtime(database_url, data_dir) as runtime:
        view = _agency_view(runtime.registration.add_agency(record))
    _print_agencies([view], title="agency registered")


@agency.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "file_format",
    type=click.Choice(["csv", "json"]),
    help="Default: from the file's extension (.json, otherwise CSV).",
)
@database_options
@reports_errors
def agency_import(
    file: Path, file_format: str | None, database_url: str | None, data_dir: Path | None
) -> None:
    """Insert or update agencies from a CSV or JSON list, all or nothing.

    \b
    CSV: UTF-8 (a BOM is fine), a header row; comma, semicolon or tab separated.
    JSON: a list of objects, or {"agencies": [...]}.
    Columns: code (ma_dinh_danh, Mã định danh, organid), name (ten, Tên cơ quan, organname),
    qd20_code, old_code (Mã cũ), parent_code (Mã cha), address (Địa chỉ), email,
    state (active|locked; Trạng thái).  Unknown columns are ignored.
    Every row is checked first: if any is invalid, the problems are listed (CSV by line,
    JSON by item number) and nothing is imported.
    """
    file_format = file_format or ("json" if file.suffix.lower() == ".json" else "csv")
    rows = _read_json_rows(file) if file_format == "json" else _read_csv_rows(file)
    records = _check_rows(rows, file)
    with (
        opened_runtime(database_url, data_dir) as runtime,
        _row_progress(len(records), "importing") as advance,
    ):
        summary = runtime.registration.import_agencies(records, progress=advance)
    table = Table(title=f"agency import: {file.name}", title_justify="left")
    for column in ("rows", "new", "updated"):
        table.add_column(column, justify="right")
    table.add_row(f"{len(records):,}", f"{summary.inserted:,}", f"{summary.updated:,}")
    console.print(table)


@dataclass(frozen=True)
class _Row:
    where: str  # "line 3" (CSV) or "item 3" (JSON), for messages
    values: Mapping[str, object]


def _read_text(file: Path) -> str:
    try:
        return file.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportInvalid(f"{file.name} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None


def _read_csv_rows(file: Path) -> list[_Row]:
    text = _read_text(file)
    first_line = text.split("\n", 1)[0]
    delimiter = max(",;\t", key=first_line.count)
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows: list[_Row] = []
    try:
        if not reader.fieldnames:
            raise ImportInvalid(f"{file.name} is empty: a header row is expected")
        fields = {name: _header_keys(name) for name in reader.fieldnames if name}
        for row in reader:
            values: dict[str, object] = {}
            for name, keys in fields.items():
                for key in keys:
                    values.setdefault(key, row.get(name))
            if any(str(value or "").strip() for value in values.values()):
                rows.append(_Row(f"line {reader.line_num}", values))
    except csv.Error as exc:
        raise ImportInvalid(f"{file.name}, line {reader.line_num}: not readable as CSV ({exc})") from None
    return rows


def _header_keys(header: str) -> list[str]:
    """The header as written, without Vietnamese diacritics, and also without spaces.

    ``Mã định danh`` → ``ma dinh danh`` (read as ``ma_dinh_danh``) and ``Tên cơ quan`` →
    ``tencoquan``: spreadsheets exported by agencies use such headings.
    """
    decomposed = unicodedata.normalize("NFD", header.replace("đ", "d").replace("Đ", "D"))
    folded = " ".join("".join(ch for ch in decomposed if not unicodedata.combining(ch)).split())
    keys = [header, folded]
    if " " in folded:
        keys.append(folded.replace(" ", ""))
    return keys


def _read_json_rows(file: Path) -> list[_Row]:
    try:
        data = json.loads(_read_text(file))
    except json.JSONDecodeError as exc:
        raise ImportInvalid(f"{file.name} is not valid JSON: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("agencies"), list):
        data = data["agencies"]
    if not isinstance(data, list):
        raise ImportInvalid(f'{file.name} must hold a list of agencies, or {{"agencies": [...]}}')
    rows: list[_Row] = []
    for index, item in enumerate(data, start=1):
        if not isinstance(item, dict):
            rows.append(_Row(f"item {index}", {}))  # reported as invalid by _check_rows
        else:
            rows.append(_Row(f"item {index}", item))
    return rows


def _check_rows(rows: Sequence[_Row], file: Path) -> list[AgencyRecord]:
    """Every row as a record, or ImportInvalid listing the problems (with where they are)."""
    if not rows:
        raise ImportInvalid(f"{file.name} holds no agencies")
    records: list[AgencyRecord] = []
    problems: list[str] = []
    seen: dict[str, str] = {}
    with _row_progress(len(rows), "checking") as advance:
        for number, row in enumerate(rows, start=1):
            if number % 1000 == 0:
                advance(1000)
            try:
                if not row.values:
                    raise InvalidIdentifier("not an object with the agency's fields")
                record = record_from_row(row.values)
            except ClientError as exc:
                problems.append(f"{row.where}: {exc.message}")
            else:
                if record.code in seen:
                    first = seen[record.code]
                    problems.append(f"{row.where}: code {record.code} appears again (first at {first})")
                seen.setdefault(record.code, row.where)
                records.append(record)
        advance(len(rows) % 1000)
    if problems:
        shown = problems[:MAX_SHOWN_PROBLEMS]
        if len(problems) > MAX_SHOWN_PROBLEMS:
            shown.append(f"… and {len(problems) - MAX_SHOWN_PROBLEMS} more")
        raise ImportInvalid(
            f"{len(problems)} problem(s) in {len(rows)} row(s) of {file.name}; nothing was imported",
            problems=shown,
        )
    return records


@agency.command("list")
@click.option("--prefix", help="Only codes starting with PREFIX, or names containing it.")
@click.option(
    "--state", type=click.Choice([s.value for s in AgencyState]), help="Only active or locked ones."
)
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0, show_default=True, help="Skip this many first.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
@database_options
@reports_errors
def agency_list(
    prefix: str | None,
    state: str | None,
    limit: int,
    offset: int,
    as_json: bool,
    database_url: str | None,
    data_dir: Path | None,
) -> None:
    """List registered agencies, ordered by code."""
    from esb.storage import registry

    with opened_runtime(database_url, data_dir) as runtime, runtime.database.transaction() as session:
        rows = registry.list_agencies(
            session, prefix=prefix, state=AgencyState(state) if state else None, limit=limit, offset=offset
        )
        views = [_agency_view(row) for row in rows]
        total = registry.count_agencies(session)
    if as_json:
        _echo_json(views)
        return
    _print_agencies(views, title="agencies")
    console.print(f"{len(views)} shown (from {offset + 1 if views else offset}); {total:,} registered in all")


def _set_state(code: str, state: AgencyState, database_url: str | None, data_dir: Path | None) -> None:
    with opened_runtime(database_url, data_dir) as runtime:
        view = _agency_view(runtime.registration.set_agency_state(code, state))
    _print_agencies([view], title=f"agency {state.value}")


@agency.command("lock")
@click.argument("code")
@database_options
@reports_errors
def agency_lock(code: str, database_url: str | None, data_dir: Path | None) -> None:
    """Lock an agency: none of its applications can authenticate until it is unlocked."""
    _set_state(code, AgencyState.LOCKED, database_url, data_dir)


@agency.command("unlock")
@click.argument("code")
@database_options
@reports_errors
def agency_unlock(code: str, database_url: str | None, data_dir: Path | None) -> None:
    """Unlock a locked agency."""
    _set_state(code, AgencyState.ACTIVE, database_url, data_dir)


# -- esb agency policy / certificate -------------------------------------------------------------

POLICY_CHOICES = (*(p.value for p in SignaturePolicy), "default")


@agency.command("policy")
@click.argument("code")
@click.argument("policy", type=click.Choice(POLICY_CHOICES))
@database_options
@reports_errors
def agency_policy(code: str, policy: str, database_url: str | None, data_dir: Path | None) -> None:
    """Set what the hub does with CODE's package signatures: off, record, require, or default.

    \b
    off      not verified (verdict not-checked)
    record   verified, the verdict recorded in the trace and receipts; delivered whatever it is
    require  anything but a valid signature is refused
    default  clear the agency's own policy: the hub's ESB_SIGNATURE_POLICY applies
    The strictest policy of the sender and the recipients applies to each package.
    """
    chosen = None if policy == "default" else SignaturePolicy(policy)
    with opened_runtime(database_url, data_dir) as runtime:
        view = _agency_view(runtime.registration.set_signature_policy(code, chosen))
        hub_default = runtime.settings.signature_policy
    _print_agencies([view], title="signature policy set")
    if chosen is None:
        console.print(f"{code} follows the hub's default policy ({hub_default}).")


@agency.group("certificate")
def agency_certificate() -> None:
    """The certificates an agency signs its packages with.

    Once an agency has registered certificates, a package it sends counts as validly signed
    only when the signer is one of them (otherwise: signer-not-registered).
    """


def _certificate_view(info: SigningCertificateInfo, now: datetime) -> dict[str, Any]:
    return {
        "agency": info.agency_code,
        "sha256": info.sha256,
        "subject": info.subject,
        "issuer": info.issuer,
        "serial": info.serial,
        "not_before": _iso(info.not_before),
        "not_after": _iso(info.not_after),
        "added_at": _iso(info.added_at),
        "removed_at": _iso(info.removed_at),
        "state": info.state(now),
    }


_CERTIFICATE_STYLE = {"active": "green", "expired": "yellow", "removed": "dim"}


def _print_certificates(views: Sequence[Mapping[str, Any]], *, title: str) -> None:
    table = Table(title=title, title_justify="left")
    table.add_column("agency", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("sha256", overflow="fold", min_width=16)
    for column in ("subject", "not after", "added", "removed"):
        table.add_column(column, overflow="fold")
    for view in views:
        state = view["state"]
        table.add_row(
            view["agency"],
            f"[{_CERTIFICATE_STYLE[state]}]{state}[/]",
            view["sha256"],
            view["subject"],
            datetime.fromisoformat(view["not_after"]).astimezone().strftime("%Y-%m-%d"),
            _when(datetime.fromisoformat(view["added_at"])),
            _when(datetime.fromisoformat(view["removed_at"])) if view["removed_at"] else "",
        )
    console.print(table)


@agency_certificate.command("add")
@click.argument("code")
@click.argument("certificate", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@database_options
@reports_errors
def agency_certificate_add(
    code: str, certificate: Path, database_url: str | None, data_dir: Path | None
) -> None:
    """Register CERTIFICATE (.pem or .der; of a chain, the first) as one CODE signs packages with."""
    data = certificate.read_bytes()
    with opened_runtime(database_url, data_dir) as runtime:
        info = runtime.registration.add_signing_certificate(code, data)
    _print_certificates([_certificate_view(info, utc_now())], title="signing certificate registered")


@agency_certificate.command("list")
@click.argument("code", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
@database_options
@reports_errors
def agency_certificate_list(
    code: str | None, as_json: bool, database_url: str | None, data_dir: Path | None
) -> None:
    """List the signing certificates of agency CODE (default: of every agency), removed ones too."""
    now = utc_now()
    with opened_runtime(database_url, data_dir) as runtime:
        views = [_certificate_view(info, now) for info in runtime.registration.signing_certificates(code)]
    if as_json:
        _echo_json(views)
        return
    _print_certificates(views, title="signing certificates")
    active = sum(1 for view in views if view["state"] == "active")
    console.print(f"{len(views)} certificate(s), {active} active")


@agency_certificate.command("remove")
@click.argument("code")
@click.argument("sha256_prefix", metavar="SHA256-PREFIX")
@database_options
@reports_errors
def agency_certificate_remove(
    code: str, sha256_prefix: str, database_url: str | None, data_dir: Path | None
) -> None:
    """Stop accepting a certificate of CODE, named by its SHA-256 fingerprint (or ≥ 8 first hex digits)."""
    with opened_runtime(database_url, data_dir) as runtime:
        info = runtime.registration.remove_signing_certificate(code, sha256_prefix)
    _print_certificates([_certificate_view(info, utc_now())], title="signing certificate removed")


# -- esb app ------------------------------------------------------------------------------------


@click.group()
def app() -> None:
    """Register the applications (QLVB systems, portals…) through which agencies connect."""


def _destination_rule(pattern: str, effect: Effect) -> AccessRule:
    """``*``, an agency code, or ``CODE/*`` (the code and every unit below it)."""
    text = pattern.strip()
    code = text[:-2] if text.endswith("/*") else text
    if text != "*" and not is_conforming(code):
        raise InvalidIdentifier(f"destination {pattern!r} is not *, an agency code or CODE/*")
    return AccessRule(RuleScope.DESTINATION, text, effect)


def _service_rule(name: str, effect: Effect) -> AccessRule:
    text = name.strip()
    if text != "*" and text not in HUB_SERVICES:
        known = ", ".join(sorted(HUB_SERVICES))
        raise ClientError(f"service {name!r} is not * or one of {known}", code="Client.InvalidRequest")
    return AccessRule(RuleScope.SERVICE, text, effect)


def _rule_text(scope: str, pattern: str, effect: str) -> str:
    return f"{effect} {scope} {pattern}"


def _application_view(row: Application, now: datetime) -> dict[str, Any]:
    active = [key.access_key for key in row.keys if not key.is_retired(now)]
    return {
        "agency": row.agency.code,
        "name": row.name,
        "developer": row.developer,
        "endpoint": row.endpoint,
        "certificate_sha256": row.certificate_sha256,
        "state": row.state,
        "created_at": _iso(row.created_at),
        "rules": [{"scope": r.scope, "pattern": r.pattern, "effect": r.effect} for r in row.rules],
        "usable_keys": len(active),
    }


def _print_applications(views: Sequence[Mapping[str, Any]], *, title: str) -> None:
    table = Table(title=title, title_justify="left")
    table.add_column("agency", no_wrap=True)
    for column in ("application", "developer", "endpoint", "certificate", "rules", "keys"):
        table.add_column(column, overflow="fold")
    for view in views:
        fingerprint = view["certificate_sha256"]
        table.add_row(
            view["agency"],
            view["name"],
            view["developer"] or "",
            view["endpoint"] or "",
            f"sha256 {fingerprint[:16]}…" if fingerprint else "",
            "\n".join(_rule_text(**rule) for rule in view["rules"]) or "(defaults)",
            str(view["usable_keys"]),
        )
    console.print(table)


def _application_views(
    runtime: Runtime, agency_code: str | None, name: str | None = None
) -> list[dict[str, Any]]:
    from esb.storage import registry

    now = utc_now()
    with runtime.database.transaction() as session:
        rows = registry.list_applications(session, agency_code)
        return [_application_view(row, now) for row in rows if name is None or row.name == name]


@app.command("register")
@click.argument("agency_code", metavar="AGENCY")
@click.argument("name")
@click.option("--developer", help="Who built or runs the application.")
@click.option("--endpoint", metavar="URL", help="Where the hub delivers to this application.")
@click.option(
    "--certificate",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The application's X.509 certificate (.pem or .der, RSA ≥ 2048) for WS-Security.",
)
@click.option("--allow-destination", multiple=True, metavar="PATTERN", help="*, CODE or CODE/* (repeatable).")
@click.option("--deny-destination", multiple=True, metavar="PATTERN", help="*, CODE or CODE/* (repeatable).")
@click.option("--allow-service", multiple=True, metavar="NAME", help="A hub service it may call (repeat).")
@database_options
@reports_errors
def app_register(
    agency_code: str,
    name: str,
    developer: str | None,
    endpoint: str | None,
    certificate: Path | None,
    allow_destination: tuple[str, ...],
    deny_destination: tuple[str, ...],
    allow_service: tuple[str, ...],
    database_url: str | None,
    data_dir: Path | None,
) -> None:
    """Register application NAME of agency AGENCY, with its certificate and access rules."""
    rules = [
        *(_destination_rule(p, Effect.ALLOW) for p in allow_destination),
        *(_destination_rule(p, Effect.DENY) for p in deny_destination),
        *(_service_rule(s, Effect.ALLOW) for s in allow_service),
    ]
    certificate_bytes = certificate.read_bytes() if certificate is not None else None
    with opened_runtime(database_url, data_dir) as runtime:
        registered = runtime.registration.register_application(
            agency_code,
            name,
            developer=developer,
            endpoint=endpoint,
            certificate=certificate_bytes,
            rules=rules,
        )
        views = _application_views(runtime, agency_code, registered.name)
    _print_applications(views, title="application registered")
    console.print(f"Next: esb keys issue {shlex.quote(agency_code)} {shlex.quote(registered.name)}")


@app.command("list")
@click.option("--agency", "agency_code", metavar="CODE", help="Only this agency's applications.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
@database_options
@reports_errors
def app_list(agency_code: str | None, as_json: bool, database_url: str | None, data_dir: Path | None) -> None:
    """List applications with their certificate, access rules and number of usable keys."""
    with opened_runtime(database_url, data_dir) as runtime:
        views = _application_views(runtime, agency_code)
    if as_json:
        _echo_json(views)
        return
    _print_applications(views, title="applications")
    console.print(f"{len(views)} application(s)")


@app.command("allow")
@click.argument("agency_code", metavar="AGENCY")
@click.argument("name")
@click.option("--destination", metavar="PATTERN", help="*, CODE or CODE/*: agencies it may send to.")
@click.option("--service", metavar="NAME", help="A hub service (Auth, DocumentExchange, Directory) or *.")
@click.option("--deny", is_flag=True, help="Add a deny rule instead (a matching deny always wins).")
@database_options
@reports_errors
def app_allow(
    agency_code: str,
    name: str,
    destination: str | None,
    service: str | None,
    deny: bool,
    database_url: str | None,
    data_dir: Path | None,
) -> None:
    """Add an access rule to an application: exactly one of --destination or --service."""
    if (destination is None) == (service is None):
        raise click.UsageError("give exactly one of --destination or --service")
    effect = Effect.DENY if deny else Effect.ALLOW
    if destination is not None:
        rule = _destination_rule(destination, effect)
    else:
        rule = _service_rule(str(service), effect)
    with opened_runtime(database_url, data_dir) as runtime:
        runtime.registration.add_rule(agency_code, name, rule)
        views = _application_views(runtime, agency_code, name)
    _print_applications(views, title=f"rule added: {_rule_text(rule.scope, rule.pattern, rule.effect)}")


# -- esb keys -----------------------------------------------------------------------------------


@click.group()
def keys() -> None:
    """Issue, rotate, revoke and list the key pairs applications authenticate with."""


def _credential(issued: IssuedKey) -> dict[str, str]:
    """The shape integrators receive (the same as the demo credentials file)."""
    view = {"agency": issued.agency_code, "application": issued.application, "accessKey": issued.access_key}
    if issued.secret_key is not None:
        view |= {"secretKey": issued.secret_key, "algorithm": "HMAC-SHA256"}
    else:
        view |= {"algorithm": "RSA-SHA256"}
    return view


def _show_issued(
    issued: IssuedKey, *, title: str, as_json: bool, extra: Sequence[tuple[str, str]] = ()
) -> None:
    """The new key; the secret, if any, once, on stdout, with a warning on stderr."""
    if as_json:
        _echo_json(_credential(issued))
    else:
        table = Table(title=title, title_justify="left", show_header=False)
        table.add_column("field", style="bold")
        table.add_column("value", overflow="fold")
        table.add_row("agency", issued.agency_code)
        table.add_row("application", issued.application)
        table.add_row("access key", issued.access_key)
        table.add_row("kind", str(issued.kind))
        for field, value in extra:
            table.add_row(field, value)
        console.print(table)
        if issued.secret_key is not None:
            # plain echo, never a table cell: a wrapped secret would be copied wrongly
            click.echo(f"secret key: {issued.secret_key}")
        else:
            click.echo("RSA key: the application signs with its own private key; there is no secret to show.")
    if issued.secret_key is not None:
        click.echo(SHOWN_ONCE_WARNING, err=True)


def _read_public_key(path: Path | None) -> str | None:
    if path is None:
        return None
    return path.read_bytes().decode("ascii", errors="replace")


@keys.command("issue")
@click.argument("agency_code", metavar="AGENCY")
@click.argument("application", metavar="APP")
@click.option(
    "--public-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PEM RSA public key or certificate: an RSA-SHA256 key instead of a secret key.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the credential as JSON (accessKey, secretKey…).")
@database_options
@reports_errors
def keys_issue(
    agency_code: str,
    application: str,
    public_key: Path | None,
    as_json: bool,
    database_url: str | None,
    data_dir: Path | None,
) -> None:
    """A new key pair for application APP of agency AGENCY; the secret key is shown once."""
    pem = _read_public_key(public_key)
    with opened_runtime(database_url, data_dir) as runtime:
        issued = runtime.registration.issue_key(agency_code, application, public_key_pem=pem)
    _show_issued(issued, title="key issued", as_json=as_json)


@keys.command("rotate")
@click.argument("access_key")
@click.option(
    "--overlap",
    type=DURATION,
    default="7d",
    show_default=True,
    help="How long the old key keeps working (7d, 24h, 3600s…).",
)
@click.option(
    "--public-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The new PEM public key or certificate (required to rotate an RSA key).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the new credential as JSON.")
@database_options
@reports_errors
def keys_rotate(
    access_key: str,
    overlap: timedelta,
    public_key: Path | None,
    as_json: bool,
    database_url: str | None,
    data_dir: Path | None,
) -> None:
    """Replace ACCESS_KEY by a new key; the old one keeps working for the overlap, then stops."""
    pem = _read_public_key(public_key)
    with opened_runtime(database_url, data_dir) as runtime:
        issued = runtime.registration.rotate_key(access_key, overlap=overlap, public_key_pem=pem)
        old = next(
            (k for k in runtime.registration.list_keys(issued.agency_code) if k.access_key == access_key),
            None,
        )
    valid_until = _when(old.valid_until) if old is not None else ""
    _show_issued(
        issued,
        title="key rotated",
        as_json=as_json,
        extra=[("replaces", access_key), ("old key valid until", f"{valid_until} ({_describe(overlap)})")],
    )


@keys.command("revoke")
@click.argument("access_key")
@database_options
@reports_errors
def keys_revoke(access_key: str, database_url: str | None, data_dir: Path | None) -> None:
    """Revoke ACCESS_KEY now: it and the sessions opened with it stop working."""
    with opened_runtime(database_url, data_dir) as runtime:
        info = runtime.registration.revoke_key(access_key)
    _print_keys([info], utc_now(), title="key revoked")


_KEY_STYLE = {"active": "green", "rotating": "yellow", "expired": "dim", "revoked": "red"}


def _key_view(info: KeyInfo, now: datetime) -> dict[str, Any]:
    return {
        "access_key": info.access_key,
        "agency": info.agency_code,
        "application": info.application,
        "kind": info.kind,
        "state": info.state(now),
        "created_at": _iso(info.created_at),
        "valid_until": _iso(info.valid_until),
        "revoked_at": _iso(info.revoked_at),
        "replaced_by": info.replaced_by,
    }


def _print_keys(infos: Sequence[KeyInfo], now: datetime, *, title: str) -> None:
    table = Table(title=title, title_justify="left")
    columns = (
        "access key",
        "agency",
        "application",
        "kind",
        "state",
        "created",
        "valid until",
        "replaced by",
    )
    for column in columns:
        table.add_column(column, overflow="fold")
    for info in infos:
        state = info.state(now)
        table.add_row(
            info.access_key,
            info.agency_code,
            info.application,
            info.kind,
            f"[{_KEY_STYLE[state]}]{state}[/]",
            _when(info.created_at),
            _when(info.revoked_at) if info.revoked_at else _when(info.valid_until),
            info.replaced_by or "",
        )
    console.print(table)


@keys.command("list")
@click.option("--agency", "agency_code", metavar="CODE", help="Only this agency's keys.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
@database_options
@reports_errors
def keys_list(
    agency_code: str | None, as_json: bool, database_url: str | None, data_dir: Path | None
) -> None:
    """List keys and their state (active, rotating, expired, revoked); secrets are never shown."""
    now = utc_now()
    with opened_runtime(database_url, data_dir) as runtime:
        infos = runtime.registration.list_keys(agency_code)
    if as_json:
        _echo_json([_key_view(info, now) for info in infos])
        return
    _print_keys(infos, now, title="keys")
    counts = {state: sum(1 for i in infos if i.state(now) == state) for state in _KEY_STYLE}
    console.print(f"{len(infos)} key(s): " + ", ".join(f"{n} {state}" for state, n in counts.items()))


# -- esb db -------------------------------------------------------------------------------------


@click.group()
def db() -> None:
    """The database schema: migrations."""


@db.command("upgrade")
@database_options
@reports_errors
def db_upgrade(database_url: str | None, data_dir: Path | None) -> None:
    """Bring the schema to the newest migration (safe to repeat, and on several nodes at once)."""
    from esb.storage.database import open_database

    settings = load_settings(database_url, data_dir)
    database = open_database(settings.database_url, migrate=True)
    try:
        current = database.current_revision()
    finally:
        database.dispose()
    console.print(f"{database.dialect} database upgraded; current revision [bold]{current}[/]")


@db.command("status")
@database_options
@reports_errors
def db_status(database_url: str | None, data_dir: Path | None) -> None:
    """Show the schema's current revision against the newest one, without changing anything."""
    from sqlalchemy.exc import SQLAlchemyError

    from esb.storage.database import StorageUnavailable, open_database

    settings = load_settings(database_url, data_dir)
    database = open_database(settings.database_url, migrate=False)
    try:
        current, head = database.current_revision(), database.head_revision()
    except SQLAlchemyError as exc:
        raise StorageUnavailable(f"cannot read the schema revision ({type(exc).__name__})") from None
    finally:
        database.dispose()
    up_to_date = current == head
    table = Table(title="database", title_justify="left", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("engine", database.dialect)
    table.add_row("current revision", current or "(empty: no schema yet)")
    table.add_row("newest revision", head or "")
    table.add_row("status", "[green]up to date[/]" if up_to_date else "[yellow]needs: esb db upgrade[/]")
    console.print(table)
