"""``esb wsdl export``: the WSDL of every service as files, for integrators working offline.

The same documents are served at ``/soap/<Service>?wsdl``; the copies under ``wsdl/`` in the
repository are these files for the placeholder address and are checked by a test, so any
change of contract shows up as a diff in review.
"""

from __future__ import annotations

from pathlib import Path

import click

from esb.cli.main import reports_errors

GOLDEN_PUBLIC_URL = "https://lgsp.example.gov.vn"


@click.group()
def wsdl() -> None:
    """WSDL documents of the SOAP services."""


@wsdl.command("export")
@click.option("--public-url", default=GOLDEN_PUBLIC_URL, show_default=True, help="Address to publish.")
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("wsdl"), show_default=True
)
@reports_errors
def export(public_url: str, out: Path) -> None:
    """Write <out>/<Service>.wsdl for every service."""
    from esb.soap.app import SERVICES, interface_document

    out.mkdir(parents=True, exist_ok=True)
    for spec in SERVICES:
        target = out / f"{spec.name}.wsdl"
        target.write_bytes(interface_document(spec, public_url))
        click.echo(f"wrote {target}")
