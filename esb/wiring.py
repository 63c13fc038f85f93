"""Composition root: settings → database → use cases → WSGI application.

``wsgi_app()`` is what gunicorn workers load (after the fork, so each worker opens its own
connections); ``esb serve`` runs the migrations once before starting them.
"""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass

from esb import __version__
from esb.clock import utc_now
from esb.domain.identifiers import classify_organ_id
from esb.domain.signatures import SignaturePolicy
from esb.errors import ConfigurationError
from esb.pipeline.authentication import Authenticator, AuthPolicy
from esb.pipeline.exchange import Exchange, ExchangePolicy
from esb.pipeline.receipts import ReceiptIssuer
from esb.pipeline.registration import Registration
from esb.pipeline.signature_policy import SignatureRules
from esb.pipeline.worker import DeliveryWorker, WorkerStep
from esb.security.hub_key import load_hub_key
from esb.security.secret_box import SecretBox
from esb.security.signing_key import SigningKey
from esb.security.trust_store import TrustStore
from esb.settings import Settings
from esb.soap.app import create_wsgi_app
from esb.soap.context import Services
from esb.soap.guard import WsgiApp
from esb.storage.content_store import ContentStore, DatabaseContentStore, DirectoryContentStore
from esb.storage.database import Database, open_database

log = logging.getLogger(__name__)

WORKER_INTERVAL_SECONDS = 1.0


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    database: Database
    secret_box: SecretBox
    authenticator: Authenticator
    registration: Registration
    exchange: Exchange


def build_runtime(settings: Settings, *, migrate: bool = True) -> Runtime:
    database = open_database(settings.database_url, migrate=migrate)
    secret_box = SecretBox.from_config(settings.master_key, settings.master_key_file)
    policy = AuthPolicy(
        clock_skew=settings.clock_skew,
        session_ttl=settings.session_ttl,
        allow_legacy_sha1=settings.allow_legacy_sha1,
        session_cache_ttl=settings.session_cache,
    )
    return Runtime(
        settings=settings,
        database=database,
        secret_box=secret_box,
        authenticator=Authenticator(database, secret_box, policy),
        registration=Registration(database, secret_box, province_domain=settings.province_domain),
        exchange=build_exchange(settings, database),
    )


def build_exchange(settings: Settings, database: Database) -> Exchange:
    if not classify_organ_id(settings.hub_organ_id).is_conforming:
        raise ConfigurationError(
            "ESB_HUB_ORGAN_ID must be a conforming identifier code (mã định danh), "
            f"not {settings.hub_organ_id!r}"
        )
    content: ContentStore
    if settings.content_store == "database":
        content = DatabaseContentStore(database)
    else:
        content = DirectoryContentStore(settings.data_dir / "content")
    policy = ExchangePolicy(
        hub_organ_id=settings.hub_organ_id,
        public_url=settings.public_url,
        max_package_bytes=settings.max_package_bytes,
        inline_package_bytes=settings.inline_package_bytes,
        space_ttl=settings.space_ttl,
        retention=settings.retention,
        node_name=settings.node_name,
    )
    hub_key = hub_signing_key(settings)
    signatures = SignatureRules(
        trust=TrustStore.from_directory(settings.trust_dir or settings.data_dir / "trust"),
        default_policy=SignaturePolicy(settings.signature_policy),
        allow_legacy=settings.signature_allow_sha1,
        max_bytes=settings.max_package_bytes,
    )
    receipts = ReceiptIssuer(database, hub_key, hub_organ_id=settings.hub_organ_id)
    return Exchange(
        database, content, settings.data_dir / "work", policy, signatures=signatures, receipts=receipts
    )


def hub_signing_key(settings: Settings) -> SigningKey:
    """The key receipts are signed with (a self-signed pair is made on a new hub's first start)."""
    return load_hub_key(
        settings.hub_key_file or settings.data_dir / "hub" / "key.pem",
        settings.hub_cert_file or settings.data_dir / "hub" / "cert.pem",
        password_file=settings.hub_key_password_file,
        create_if_missing=settings.hub_key_is_default,
        hub_name=f"LGSP hub {settings.hub_organ_id}",
        hub_organ_id=settings.hub_organ_id,
        now=utc_now(),
    )


def build_worker(runtime: Runtime) -> DeliveryWorker:
    """The delivery worker with every kind of work this runtime has (``esb worker``, in-process)."""
    steps: list[WorkerStep] = []
    return DeliveryWorker(runtime.exchange, steps=steps)


def build_wsgi_app(runtime: Runtime) -> WsgiApp:
    def health() -> dict[str, str]:
        ok = runtime.database.ping()
        return {
            "status": "ok" if ok else "degraded",
            "database": "ok" if ok else "unreachable",
            "engine": runtime.database.dialect,
            "version": __version__,
        }

    services = Services(authenticator=runtime.authenticator, exchange=runtime.exchange)
    return create_wsgi_app(
        services,
        public_url=runtime.settings.public_url,
        max_request_bytes=runtime.settings.max_request_bytes,
        health=health,
    )


def wsgi_app() -> WsgiApp:
    """Entry point for gunicorn workers (``esb.wiring:wsgi_app()``); settings from the environment."""
    runtime = build_runtime(Settings.from_env(), migrate=False)
    if runtime.settings.in_process_worker:
        build_worker(runtime).start_thread(interval=WORKER_INTERVAL_SECONDS)
    app = build_wsgi_app(runtime)
    gc.freeze()  # the long-lived objects built above are never scanned by the collector again
    return app
