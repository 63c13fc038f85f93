"""``esb serve``: the SOAP services under gunicorn.

The database schema is migrated once, here, before any worker starts; each worker then
builds its own engine, its in-process delivery worker and its notification listener after
the fork (``esb.wiring.wsgi_app``).  Options override the environment (``ESB_*`` variables,
see esb/settings.py), and are handed to the workers through it.

Workers are gunicorn's ``gthread``: each serves ``--threads`` requests at once, so a
long-poll (WaitForNotifications, up to 120 s) or an SSE stream (``/events``, up to an hour)
holds one thread, not a whole worker.  ``--timeout`` is then the worker's heartbeat (a
worker that stops answering its master is restarted), not a limit on a request's duration.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import click

from esb.cli.main import reports_errors
from esb.settings import Settings


@click.command()
@click.option("--bind", default="127.0.0.1:8080", show_default=True, help="HOST:PORT to listen on.")
@click.option(
    "--database-url", help="SQLAlchemy URL (default: SQLite in the data dir; env ESB_DATABASE_URL)."
)
@click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), help="Default ./var (ESB_DATA_DIR)."
)
@click.option("--public-url", help="Address published in the WSDLs (default http://<bind>; ESB_PUBLIC_URL).")
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True, help="gunicorn workers.")
@click.option(
    "--threads",
    type=click.IntRange(2, 1024),
    help="Threads per worker: requests served at once, long-polls and SSE streams included "
    "(default 16; ESB_THREADS).",
)
@click.option(
    "--timeout",
    type=click.IntRange(5, 3600),
    default=60,
    show_default=True,
    help="Worker heartbeat timeout (s): a worker silent this long is restarted.",
)
@click.option("--access-log/--no-access-log", default=False, show_default=True)
@reports_errors
def serve(
    bind: str,
    database_url: str | None,
    data_dir: Path | None,
    public_url: str | None,
    workers: int,
    threads: int | None,
    timeout: int,
    access_log: bool,
) -> None:
    """Run the SOAP services (/soap/Auth …), the SSE stream /events and /healthz with gunicorn."""
    from gunicorn.app.base import BaseApplication

    from esb.storage.database import open_database
    from esb.wiring import hub_signing_key

    if public_url is None and "ESB_PUBLIC_URL" not in os.environ:
        public_url = _default_public_url(bind)
    settings = Settings.from_env(
        data_dir=data_dir, database_url=database_url, public_url=public_url, threads=threads
    )
    _export(settings)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    database = open_database(settings.database_url)  # migrate once, before the workers fork
    database.dispose()
    hub_signing_key(settings)  # made or checked once, before the workers fork
    click.echo(
        f"lgsp-esb: {database.dialect} database ready; serving {settings.public_url}/soap/Auth?wsdl", err=True
    )

    class _Gunicorn(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            options: dict[str, Any] = {
                "bind": bind,
                "workers": workers,
                "worker_class": "gthread",
                "threads": settings.threads,
                "timeout": timeout,
                "graceful_timeout": 10,
                "accesslog": "-" if access_log else None,
                "errorlog": "-",
                "loglevel": "info",
                "proc_name": "lgsp-esb",
            }
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            from esb.wiring import wsgi_app

            return wsgi_app()

    _Gunicorn().run()


def _default_public_url(bind: str) -> str:
    """``http://<bind>``, with a wildcard host replaced by loopback (set ESB_PUBLIC_URL in production)."""
    host, _, port = bind.rpartition(":")
    if host in ("0.0.0.0", "::", "[::]", ""):  # noqa: S104 - compared, not bound
        click.echo(
            f"lgsp-esb: listening on {bind}; the WSDLs publish http://127.0.0.1:{port} "
            "until ESB_PUBLIC_URL (or --public-url) names the address clients use",
            err=True,
        )
        host = "127.0.0.1"
    return f"http://{host}:{port}"


def _export(settings: Settings) -> None:
    """Hand the effective settings to the workers through the environment."""
    os.environ["ESB_DATA_DIR"] = str(settings.data_dir)
    os.environ["ESB_DATABASE_URL"] = settings.database_url
    os.environ["ESB_PUBLIC_URL"] = settings.public_url
    os.environ["ESB_THREADS"] = str(settings.threads)
