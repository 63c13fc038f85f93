"""``esb`` entry point and the one place where errors become exit codes and messages.

Exit status: 0 success; 1 a package or description was refused (the reason is printed);
2 the command was used wrongly or an input could not be read.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import click

from esb import __version__
from esb.errors import ClientError, EsbError

P = ParamSpec("P")
R = TypeVar("R")

EXIT_REFUSED = 1
EXIT_USAGE = 2


def reports_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn our errors into a one-line reason on stderr and a non-zero exit, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except EsbError as exc:
            click.echo(f"error: {exc.code}: {exc.message}", err=True)
            for problem in getattr(exc, "problems", ()):
                click.echo(f"  - {problem}", err=True)
            raise SystemExit(EXIT_REFUSED if isinstance(exc, ClientError) else EXIT_USAGE) from None
        except OSError as exc:
            click.echo(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), err=True)
            raise SystemExit(EXIT_USAGE) from None

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="esb")
def cli() -> None:
    """LGSP document-exchange bus: edXML (QCVN 102:2016) tools and services."""


def with_commands() -> click.Group:
    """The ``esb`` group with every command registered (what ``main`` runs, and what tests drive)."""
    from esb.cli.audit_commands import audit, evidence
    from esb.cli.delivery_commands import deliveries
    from esb.cli.demo import demo
    from esb.cli.directory_commands import directory
    from esb.cli.edxml_commands import edxml
    from esb.cli.exchange_commands import documents, worker
    from esb.cli.presence_commands import presence
    from esb.cli.registry_commands import agency, app, db, keys
    from esb.cli.routing_commands import routes
    from esb.cli.serve import serve
    from esb.cli.signature_commands import pki, sign, verify
    from esb.cli.wsdl_commands import wsdl

    for command in (
        edxml,
        demo,
        serve,
        agency,
        app,
        keys,
        db,
        wsdl,
        worker,
        documents,
        sign,
        verify,
        pki,
        audit,
        evidence,
        presence,
        routes,
        deliveries,
        directory,
    ):
        cli.add_command(command)
    return cli


def main() -> None:
    with_commands()(prog_name="esb")


if __name__ == "__main__":  # pragma: no cover
    main()
    sys.exit(0)
