"""Composition root: settings → database → use cases → WSGI application.

``wsgi_app()`` is what gunicorn workers load (after the fork, so each worker opens its own
connections); ``esb serve`` runs the migrations once before starting them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from esb import __version__
from esb.pipeline.authentication import Authenticator, AuthPolicy
from esb.pipeline.registration import Registration
from esb.security.secret_box import SecretBox
from esb.settings import Settings
from esb.soap.app import create_wsgi_app
from esb.soap.context import Services
from esb.soap.guard import WsgiApp
from esb.storage.database import Database, open_database

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    database: Database
    secret_box: SecretBox
    authenticator: Authenticator
    registration: Registration


def build_runtime(settings: Settings, *, migrate: bool = True) -> Runtime:
    database = open_database(settings.database_url, migrate=migrate)
    secret_box = SecretBox.from_config(settings.master_key, settings.master_key_file)
    policy = AuthPolicy(
        clock_skew=settings.clock_skew,
        session_ttl=settings.session_ttl,
        allow_legacy_sha1=settings.allow_legacy_sha1,
    )
    return Runtime(
        settings=settings,
        database=database,
        secret_box=secret_box,
        authenticator=Authenticator(database, secret_box, policy),
        registration=Registration(database, secret_box, province_domain=settings.province_domain),
    )


def build_wsgi_app(runtime: Runtime) -> WsgiApp:
    def health() -> dict[str, str]:
        ok = runtime.database.ping()
        return {
            "status": "ok" if ok else "degraded",
            "database": "ok" if ok else "unreachable",
            "engine": runtime.database.dialect,
            "version": __version__,
        }

    services = Services(authenticator=runtime.authenticator)
    return create_wsgi_app(
        services,
        public_url=runtime.settings.public_url,
        max_request_bytes=runtime.settings.max_request_bytes,
        health=health,
    )


def wsgi_app() -> WsgiApp:
    """Entry point for gunicorn workers (``esb.wiring:wsgi_app()``); settings from the environment."""
    return build_wsgi_app(build_runtime(Settings.from_env(), migrate=False))
