"""The hub's own signing key (for receipts): loaded from files, or made once for a new hub.

``ESB_HUB_KEY_FILE`` / ``ESB_HUB_CERT_FILE`` name a PEM private key (optionally encrypted,
its password in ``ESB_HUB_KEY_PASSWORD_FILE``) and its certificate followed by its chain,
typically issued by the Government CA or the province's CA.  When both are left at their
defaults under the data directory and neither file exists, a self-signed pair is made
there (key mode 0600), so the embedded default works with zero set-up; auditors then
trust that certificate itself (the file ``cert.pem``; it is also in every receipt and
evidence bundle, and its fingerprint is logged at start).

Rotation: point the settings at a new key and certificate.  Receipts carry the certificate
they were signed with, and the hub remembers every certificate it used, so old receipts
stay verifiable against their anchor.  The key is never logged; only its certificate's
subject and fingerprint are.
"""

from __future__ import annotations

import fcntl
import logging
import os
from datetime import datetime
from pathlib import Path

from esb.errors import ConfigurationError
from esb.security.pki import make_self_signed_signing_certificate
from esb.security.signing_key import SigningKey

log = logging.getLogger(__name__)

SELF_SIGNED_DAYS = 3650


def load_hub_key(
    key_file: Path,
    cert_file: Path,
    *,
    password_file: Path | None = None,
    create_if_missing: bool,
    hub_name: str,
    hub_organ_id: str,
    now: datetime,
) -> SigningKey:
    """The hub's signing key; a self-signed one is made when allowed and both files are missing."""
    if create_if_missing and not key_file.exists() and not cert_file.exists():
        _create_self_signed(key_file, cert_file, hub_name=hub_name, hub_organ_id=hub_organ_id, now=now)
    password = None
    if password_file is not None:
        try:
            password = password_file.read_bytes().strip()
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read the hub key password file {password_file}: {exc.strerror}"
            ) from None
    key = SigningKey.from_files(key_file, cert_file, password=password)
    log.info("receipts are signed by %r", key)
    return key


def _create_self_signed(
    key_file: Path, cert_file: Path, *, hub_name: str, hub_organ_id: str, now: datetime
) -> None:
    """Make the pair under an exclusive file lock: processes starting together make one pair."""
    key_file.parent.mkdir(parents=True, exist_ok=True)
    cert_file.parent.mkdir(parents=True, exist_ok=True)
    with (key_file.parent / ".hub-key.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if key_file.exists() or cert_file.exists():  # another process made it meanwhile
            return
        issued = make_self_signed_signing_certificate(
            hub_name, now=now, days=SELF_SIGNED_DAYS, agency_code=hub_organ_id
        )
        descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(issued.key_pem())
        cert_file.write_bytes(issued.certificate_pem())
    log.info(
        "made a self-signed receipt signing certificate %s (sha256 %s); give auditors %s",
        issued.subject,
        issued.sha256,
        cert_file,
    )
