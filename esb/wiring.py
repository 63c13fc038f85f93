"""Composition root: settings → database → use cases → WSGI application.

``wsgi_app()`` is what gunicorn workers load (after the fork, so each worker opens its own
connections); ``esb serve`` runs the migrations once before starting them.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType

from esb import __version__
from esb.clock import utc_now
from esb.domain.identifiers import classify_organ_id
from esb.domain.notifications import NotificationPolicy
from esb.domain.presence import PresencePolicy
from esb.domain.signatures import SignaturePolicy
from esb.errors import ConfigurationError
from esb.pipeline.authentication import Authenticator, AuthPolicy
from esb.pipeline.callbacks import CallbackPusher
from esb.pipeline.directory import Directory
from esb.pipeline.exchange import Exchange, ExchangePolicy
from esb.pipeline.notifications import NotificationHub
from esb.pipeline.presence import PresenceTracker
from esb.pipeline.receipts import ReceiptIssuer
from esb.pipeline.registration import Registration
from esb.pipeline.routing import Adapters, Router
from esb.pipeline.signature_policy import SignatureRules
from esb.pipeline.undeliverable import Undeliverable
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
    presence: PresenceTracker
    router: Router
    undeliverable: Undeliverable
    notifications: NotificationHub
    callbacks: CallbackPusher
    directory: Directory


def build_runtime(settings: Settings, *, migrate: bool = True) -> Runtime:
    database = open_database(settings.database_url, migrate=migrate)
    secret_box = SecretBox.from_config(settings.master_key, settings.master_key_file)
    policy = AuthPolicy(
        clock_skew=settings.clock_skew,
        session_ttl=settings.session_ttl,
        allow_legacy_sha1=settings.allow_legacy_sha1,
        session_cache_ttl=settings.session_cache,
    )
    presence = build_presence(settings, database)
    router = Router(database)
    exchange = build_exchange(settings, database, router=router)
    undeliverable = build_undeliverable(settings, exchange, router)
    return Runtime(
        settings=settings,
        database=database,
        secret_box=secret_box,
        authenticator=Authenticator(database, secret_box, policy, on_activity=presence.seen),
        registration=Registration(database, secret_box, province_domain=settings.province_domain),
        exchange=exchange,
        presence=presence,
        router=router,
        undeliverable=undeliverable,
        notifications=build_notifications(settings, database, presence),
        callbacks=build_callbacks(settings, database, presence, undeliverable, exchange),
        directory=build_directory(database, presence),
    )


def build_directory(database: Database, presence: PresenceTracker) -> Directory:
    """The directory index of this process, with each agency's presence from the tracker."""

    def presence_of(codes: Sequence[str]) -> dict[str, str]:
        return {code: found.state.value for code, found in presence.agency_presence(codes).items()}

    return Directory(database, presence.online_agencies, presence_of=presence_of)


def build_notifications(settings: Settings, database: Database, presence: PresenceTracker) -> NotificationHub:
    """Long-poll and SSE channels of this process; at most 3/4 of its threads may wait."""
    policy = NotificationPolicy(
        max_waiters_per_application=settings.notify_max_waiters,
        max_waiters=max(1, settings.threads * 3 // 4),
        keepalive=settings.presence_keepalive,
        retention=settings.notify_retention,
    )
    return NotificationHub(database, policy, presence=presence)


def build_callbacks(
    settings: Settings,
    database: Database,
    presence: PresenceTracker,
    undeliverable: Undeliverable,
    exchange: Exchange,
) -> CallbackPusher:
    """Signed Notify pushes to subscribed endpoints (worker step ``callbacks``), with the receipts' key."""
    key = exchange.receipts.key if exchange.receipts is not None else hub_signing_key(settings)
    return CallbackPusher(
        database,
        key,
        settings.retry_policy,
        node_name=settings.node_name,
        presence=presence,
        report_undeliverable=undeliverable.report,
        timeout=settings.callback_timeout.total_seconds(),
        lease=settings.callback_lease,
    )


def build_presence(settings: Settings, database: Database) -> PresenceTracker:
    policy = PresencePolicy(
        silence=settings.presence_silence,
        keepalive=settings.presence_keepalive,
        channel_lease=settings.presence_channel_lease,
        write_throttle=settings.presence_write_throttle,
    )
    return PresenceTracker(database, policy, node_name=settings.node_name)


def build_undeliverable(
    settings: Settings, exchange: Exchange, router: Router, adapters: Adapters | None = None
) -> Undeliverable:
    """Bridge hand-overs, offline limits, dead letters; ``adapters``: none until bridges exist."""
    return Undeliverable(
        exchange,
        router=router,
        adapters=adapters or Adapters(),
        retry=settings.retry_policy,
        offline=settings.offline_policy,
    )


def build_exchange(settings: Settings, database: Database, *, router: Router | None = None) -> Exchange:
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
        database,
        content,
        settings.data_dir / "work",
        policy,
        signatures=signatures,
        receipts=receipts,
        router=router,
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
    steps.append(WorkerStep("presence", runtime.presence.sweep))
    steps.append(WorkerStep("offline", runtime.undeliverable.offline))
    steps.append(WorkerStep("bridge", runtime.undeliverable.bridge))
    steps.append(WorkerStep("callbacks", runtime.callbacks.run, urgent=True))
    steps.append(WorkerStep("notifications", runtime.notifications.sweep))
    return DeliveryWorker(runtime.exchange, steps=steps, wake=runtime.notifications.arrived)


def build_wsgi_app(runtime: Runtime) -> WsgiApp:
    def health() -> dict[str, str]:
        ok = runtime.database.ping()
        return {
            "status": "ok" if ok else "degraded",
            "database": "ok" if ok else "unreachable",
            "engine": runtime.database.dialect,
            "version": __version__,
        }

    services = Services(
        authenticator=runtime.authenticator,
        exchange=runtime.exchange,
        notifications=runtime.notifications,
        directory=runtime.directory,
    )
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
    runtime.notifications.start()  # this worker's listener (LISTEN on PostgreSQL), after the fork
    runtime.directory.warm_up()  # loads the directory index in the background
    _end_channels_on_shutdown(runtime.notifications)
    app = build_wsgi_app(runtime)
    gc.freeze()  # the long-lived objects built above are never scanned by the collector again
    return app


def _end_channels_on_shutdown(hub: NotificationHub) -> None:
    """On SIGTERM (gunicorn's graceful stop) open long-polls and SSE streams answer and end at
    once, instead of holding the worker until the graceful timeout; gunicorn's own handler runs
    as before.  Only from the main thread (where gunicorn loads the app)."""
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=hub.stop, name="esb-notification-stop", daemon=True).start()
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_term)
