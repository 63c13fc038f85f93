"""Run-time settings: read from the environment once, by the composition roots only.

* ``ESB_DATA_DIR`` (``./var``): the embedded database, the master key file, content.
* ``ESB_DATABASE_URL`` (``sqlite:///<data dir>/esb.sqlite3``): ``postgresql+psycopg://…`` in
  production.
* ``ESB_PUBLIC_URL`` (``http://127.0.0.1:8080``): the address published in the WSDLs, never
  taken from a request's ``Host``.
* ``ESB_PROVINCE_DOMAIN`` (``lgsp.example.gov.vn``): agencies' accounts are ``<code>@<domain>``.
* ``ESB_MASTER_KEY``: base64 of 32 random bytes; encrypts secret keys at rest.
* ``ESB_MASTER_KEY_FILE`` (``<data dir>/master.key``): used when ``ESB_MASTER_KEY`` is unset;
  created with mode 0600 if missing.
* ``ESB_CLOCK_SKEW_SECONDS`` (300): allowed difference between a caller's clock and ours.
* ``ESB_SESSION_TTL_SECONDS`` (1800): lifetime of a session key.
* ``ESB_SESSION_CACHE_SECONDS`` (5): a worker reuses a resolved session key this long before
  asking the database again (so a revocation takes effect within it); 0 disables.
* ``ESB_ALLOW_LEGACY_SHA1`` (false): accept RSA-SHA1/SHA1 WS-Security signatures.
* ``ESB_HUB_ORGAN_ID`` (``000.00.00.H53``): the hub's identifier code, written in the
  TraceHeader it appends to every package it delivers.
* ``ESB_CONTENT_STORE`` (``directory``): where package bytes wait for delivery:
  ``directory`` (``<data dir>/content``) or ``database``.
* ``ESB_MAX_PACKAGE_BYTES`` (1073741824): largest package accepted through an upload space.
* ``ESB_INLINE_PACKAGE_BYTES`` (4194304): GetDocument returns larger packages as a download URL.
* ``ESB_SPACE_TTL_SECONDS`` (3600): lifetime of an upload space (RequestSendSpace).
* ``ESB_RETENTION_DAYS`` (30): content not confirmed by every recipient is purged after this.
* ``ESB_WORKER`` (true): ``esb serve`` runs the delivery worker in-process (routing retries,
  purge, expiry); set false when ``esb worker`` runs separately.
* ``ESB_NODE_NAME`` (host name): names this node in trace events.
* ``ESB_MAX_REQUEST_BYTES`` (10485760): largest SOAP request (packages go by upload space).
* ``ESB_SIGNATURE_POLICY`` (``record``): what the hub does with package signatures for agencies
  that set no policy of their own: ``off``, ``record`` (verify, record, deliver) or ``require``.
* ``ESB_SIGNATURE_ALLOW_SHA1`` (false): count RSA-SHA1/SHA-1 package signatures as valid (still
  reported as weak); otherwise they are ``invalid`` (``weak-algorithm``).
* ``ESB_TRUST_DIR`` (``<data dir>/trust``): trust anchors for package signatures, in
  ``anchors/``, ``intermediates/`` and ``crls/`` (PEM or DER files).
* ``ESB_HUB_KEY_FILE`` / ``ESB_HUB_CERT_FILE`` (``<data dir>/hub/key.pem`` / ``cert.pem``): the key
  the hub signs its receipts with, and its certificate (then its chain).  When neither is set
  and the files are missing, a self-signed pair is made there on first start (mode 0600).
* ``ESB_HUB_KEY_PASSWORD_FILE``: a file holding the password of an encrypted hub key.
* ``ESB_PRESENCE_SILENCE_SECONDS`` (300): an application without an open notification channel
  that shows no activity this long is declared offline (docs/presence.md).
* ``ESB_PRESENCE_KEEPALIVE_SECONDS`` (15) / ``ESB_PRESENCE_CHANNEL_LEASE_SECONDS`` (45): an open
  notification channel renews its lease this often / a lease not renewed this long is a
  dropped channel (offline).  The keep-alive must be shorter than the lease.
* ``ESB_PRESENCE_WRITE_THROTTLE_SECONDS`` (15): a process writes an application's last
  activity at most this often (shorter than the silence).
* ``ESB_RETRY_INITIAL_SECONDS`` (10), ``ESB_RETRY_FACTOR`` (2.0), ``ESB_RETRY_MAX_DELAY_SECONDS``
  (900), ``ESB_RETRY_MAX_ATTEMPTS`` (8), ``ESB_RETRY_JITTER`` (0.2): the retry policy of callback
  pushes and bridge hand-overs (``esb.domain.delivery_policy.RetryPolicy``); once exhausted the
  delivery is reported undeliverable to its sender.
* ``ESB_OFFLINE_LIMIT_HOURS`` (24), ``ESB_OFFLINE_LIMIT_KHAN_HOURS`` (8),
  ``ESB_OFFLINE_LIMIT_THUONG_KHAN_HOURS`` (2), ``ESB_OFFLINE_LIMIT_HOA_TOC_HOURS`` (1, for hỏa tốc
  and hỏa tốc hẹn giờ): how long a destination may stay offline with a thường, khẩn, thượng
  khẩn or hỏa tốc document waiting before it is reported undeliverable
  (``esb.domain.delivery_policy.OfflinePolicy``; an agency may set its own limit).
* ``ESB_THREADS`` (16): threads per gunicorn worker (``esb serve --threads``); long-polls and
  SSE streams hold one each, so at most three quarters of them may be notification channels.
* ``ESB_NOTIFY_MAX_WAITERS`` (4): notification channels (long-polls and SSE streams) one
  application may hold open in one worker process (``Client.TooManyWaiters`` beyond).
* ``ESB_NOTIFY_RETENTION_DAYS`` (7): notifications older than this are deleted (docs/notifications.md).
* ``ESB_CALLBACK_TIMEOUT_SECONDS`` (5): a callback push waits this long to connect, and again
  for the answer, before it counts as failed.
* ``ESB_CALLBACK_LEASE_SECONDS`` (60): a node claims a callback push for this long; when it dies
  mid-push, another node takes the push over once the lease lapses.  It must be longer than
  two callback timeouts.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path

from esb.domain.delivery_policy import OfflinePolicy, RetryPolicy
from esb.domain.edxml_enums import Priority
from esb.errors import ConfigurationError

DEFAULT_PUBLIC_URL = "http://127.0.0.1:8080"
DEFAULT_PROVINCE_DOMAIN = "lgsp.example.gov.vn"
DEFAULT_HUB_ORGAN_ID = "000.00.00.H53"


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("var")
    database_url: str = ""
    public_url: str = DEFAULT_PUBLIC_URL
    province_domain: str = DEFAULT_PROVINCE_DOMAIN
    master_key: str | None = field(default=None, repr=False)
    master_key_file: Path | None = None
    clock_skew: timedelta = timedelta(seconds=300)
    session_ttl: timedelta = timedelta(minutes=30)
    session_cache: timedelta = timedelta(seconds=5)
    allow_legacy_sha1: bool = False
    max_request_bytes: int = 10 * 1024 * 1024
    hub_organ_id: str = DEFAULT_HUB_ORGAN_ID
    content_store: str = "directory"
    max_package_bytes: int = 1 << 30
    inline_package_bytes: int = 4 << 20
    space_ttl: timedelta = timedelta(hours=1)
    retention: timedelta = timedelta(days=30)
    in_process_worker: bool = True
    node_name: str = field(default_factory=socket.gethostname)
    signature_policy: str = "record"
    signature_allow_sha1: bool = False
    trust_dir: Path | None = None
    hub_key_file: Path | None = None
    hub_cert_file: Path | None = None
    hub_key_password_file: Path | None = None
    presence_silence: timedelta = timedelta(minutes=5)
    presence_keepalive: timedelta = timedelta(seconds=15)
    presence_channel_lease: timedelta = timedelta(seconds=45)
    presence_write_throttle: timedelta = timedelta(seconds=15)
    retry_initial: timedelta = timedelta(seconds=10)
    retry_factor: float = 2.0
    retry_max_delay: timedelta = timedelta(minutes=15)
    retry_max_attempts: int = 8
    retry_jitter: float = 0.2
    offline_limit: timedelta = timedelta(hours=24)
    offline_limit_khan: timedelta = timedelta(hours=8)
    offline_limit_thuong_khan: timedelta = timedelta(hours=2)
    offline_limit_hoa_toc: timedelta = timedelta(hours=1)
    threads: int = 16
    notify_max_waiters: int = 4
    notify_retention: timedelta = timedelta(days=7)
    callback_timeout: timedelta = timedelta(seconds=5)
    callback_lease: timedelta = timedelta(seconds=60)

    def __post_init__(self) -> None:
        if self.callback_lease <= 2 * self.callback_timeout:
            raise ConfigurationError(
                "ESB_CALLBACK_LEASE_SECONDS must be longer than two ESB_CALLBACK_TIMEOUT_SECONDS "
                f"({self.callback_lease.total_seconds():g} <= 2 x {self.callback_timeout.total_seconds():g})"
            )
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{self.data_dir / 'esb.sqlite3'}")
        if self.master_key_file is None:
            object.__setattr__(self, "master_key_file", self.data_dir / "master.key")
        object.__setattr__(self, "public_url", self.public_url.rstrip("/"))
        for name, default in (
            ("trust_dir", self.data_dir / "trust"),
            ("hub_key_file", self.data_dir / "hub" / "key.pem"),
            ("hub_cert_file", self.data_dir / "hub" / "cert.pem"),
        ):
            if getattr(self, name) is None:
                object.__setattr__(self, name, default)
        if self.signature_policy not in ("off", "record", "require"):
            raise ConfigurationError(
                f"ESB_SIGNATURE_POLICY must be off, record or require, not {self.signature_policy!r}"
            )
        if self.content_store not in ("directory", "database"):
            raise ConfigurationError(
                f"ESB_CONTENT_STORE must be directory or database, not {self.content_store!r}"
            )
        try:
            self.retry_policy  # noqa: B018 - checked once, here
            self.offline_policy  # noqa: B018
        except ValueError as exc:
            raise ConfigurationError(f"ESB_RETRY_* / ESB_OFFLINE_LIMIT_*: {exc}") from None

    @property
    def retry_policy(self) -> RetryPolicy:
        """How callback pushes and bridge hand-overs are retried (``ESB_RETRY_*``)."""
        return RetryPolicy(
            initial=self.retry_initial,
            factor=self.retry_factor,
            max_delay=self.retry_max_delay,
            max_attempts=self.retry_max_attempts,
            jitter=self.retry_jitter,
        )

    @property
    def offline_policy(self) -> OfflinePolicy:
        """How long a destination may stay offline, by priority (``ESB_OFFLINE_LIMIT_*``)."""
        return OfflinePolicy(
            {
                Priority.THUONG: self.offline_limit,
                Priority.KHAN: self.offline_limit_khan,
                Priority.THUONG_KHAN: self.offline_limit_thuong_khan,
                Priority.HOA_TOC: self.offline_limit_hoa_toc,
                Priority.HOA_TOC_HEN_GIO: self.offline_limit_hoa_toc,
            }
        )

    @property
    def hub_key_is_default(self) -> bool:
        """Both hub key files are the defaults under the data directory (a pair may be made there)."""
        return self.hub_key_file == self.data_dir / "hub" / "key.pem" and (
            self.hub_cert_file == self.data_dir / "hub" / "cert.pem"
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Settings from ``env`` (default ``os.environ``); ``overrides`` that are not None win."""
        env = os.environ if env is None else env
        data_dir = Path(str(overrides.pop("data_dir", None) or env.get("ESB_DATA_DIR", "var")))
        values: dict[str, object] = {
            "data_dir": data_dir,
            "database_url": env.get("ESB_DATABASE_URL", ""),
            "public_url": env.get("ESB_PUBLIC_URL", DEFAULT_PUBLIC_URL),
            "province_domain": env.get("ESB_PROVINCE_DOMAIN", DEFAULT_PROVINCE_DOMAIN),
            "master_key": env.get("ESB_MASTER_KEY") or None,
            "master_key_file": Path(env["ESB_MASTER_KEY_FILE"]) if env.get("ESB_MASTER_KEY_FILE") else None,
            "clock_skew": timedelta(seconds=_int(env, "ESB_CLOCK_SKEW_SECONDS", 300)),
            "session_ttl": timedelta(seconds=_int(env, "ESB_SESSION_TTL_SECONDS", 1800)),
            "session_cache": timedelta(seconds=_int(env, "ESB_SESSION_CACHE_SECONDS", 5, minimum=0)),
            "allow_legacy_sha1": _bool(env, "ESB_ALLOW_LEGACY_SHA1"),
            "max_request_bytes": _int(env, "ESB_MAX_REQUEST_BYTES", 10 * 1024 * 1024),
            "hub_organ_id": env.get("ESB_HUB_ORGAN_ID", DEFAULT_HUB_ORGAN_ID),
            "content_store": env.get("ESB_CONTENT_STORE", "directory"),
            "max_package_bytes": _int(env, "ESB_MAX_PACKAGE_BYTES", 1 << 30),
            "inline_package_bytes": _int(env, "ESB_INLINE_PACKAGE_BYTES", 4 << 20),
            "space_ttl": timedelta(seconds=_int(env, "ESB_SPACE_TTL_SECONDS", 3600)),
            "retention": timedelta(days=_int(env, "ESB_RETENTION_DAYS", 30)),
            "in_process_worker": _bool(env, "ESB_WORKER", default=True),
            "node_name": env.get("ESB_NODE_NAME") or socket.gethostname(),
            "signature_policy": env.get("ESB_SIGNATURE_POLICY", "record").strip().lower(),
            "signature_allow_sha1": _bool(env, "ESB_SIGNATURE_ALLOW_SHA1"),
            "trust_dir": _path(env, "ESB_TRUST_DIR"),
            "hub_key_file": _path(env, "ESB_HUB_KEY_FILE"),
            "hub_cert_file": _path(env, "ESB_HUB_CERT_FILE"),
            "hub_key_password_file": _path(env, "ESB_HUB_KEY_PASSWORD_FILE"),
            "presence_silence": timedelta(seconds=_int(env, "ESB_PRESENCE_SILENCE_SECONDS", 300)),
            "presence_keepalive": timedelta(seconds=_int(env, "ESB_PRESENCE_KEEPALIVE_SECONDS", 15)),
            "presence_channel_lease": timedelta(seconds=_int(env, "ESB_PRESENCE_CHANNEL_LEASE_SECONDS", 45)),
            "presence_write_throttle": timedelta(
                seconds=_int(env, "ESB_PRESENCE_WRITE_THROTTLE_SECONDS", 15)
            ),
            "retry_initial": timedelta(seconds=_int(env, "ESB_RETRY_INITIAL_SECONDS", 10)),
            "retry_factor": _float(env, "ESB_RETRY_FACTOR", 2.0),
            "retry_max_delay": timedelta(seconds=_int(env, "ESB_RETRY_MAX_DELAY_SECONDS", 900)),
            "retry_max_attempts": _int(env, "ESB_RETRY_MAX_ATTEMPTS", 8),
            "retry_jitter": _float(env, "ESB_RETRY_JITTER", 0.2),
            "offline_limit": timedelta(hours=_int(env, "ESB_OFFLINE_LIMIT_HOURS", 24)),
            "offline_limit_khan": timedelta(hours=_int(env, "ESB_OFFLINE_LIMIT_KHAN_HOURS", 8)),
            "offline_limit_thuong_khan": timedelta(hours=_int(env, "ESB_OFFLINE_LIMIT_THUONG_KHAN_HOURS", 2)),
            "offline_limit_hoa_toc": timedelta(hours=_int(env, "ESB_OFFLINE_LIMIT_HOA_TOC_HOURS", 1)),
            "threads": _int(env, "ESB_THREADS", 16),
            "notify_max_waiters": _int(env, "ESB_NOTIFY_MAX_WAITERS", 4),
            "notify_retention": timedelta(days=_int(env, "ESB_NOTIFY_RETENTION_DAYS", 7)),
            "callback_timeout": timedelta(seconds=_int(env, "ESB_CALLBACK_TIMEOUT_SECONDS", 5)),
            "callback_lease": timedelta(seconds=_int(env, "ESB_CALLBACK_LEASE_SECONDS", 60)),
        }
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)  # type: ignore[arg-type]

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 1) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a whole number, not {raw!r}") from None
    if value < minimum:
        raise ConfigurationError(f"{name} must be at least {minimum}, not {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, not {raw!r}") from None


def _path(env: Mapping[str, str], name: str) -> Path | None:
    raw = env.get(name, "").strip()
    return Path(raw) if raw else None


def _bool(env: Mapping[str, str], name: str, *, default: bool = False) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigurationError(f"{name} must be true or false, not {raw!r}")
