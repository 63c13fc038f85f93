"""Secrets at rest: secret keys are stored encrypted with AES-256-GCM under the master key.

The master key comes from ``ESB_MASTER_KEY`` (base64 of 32 bytes) or from a key file
(``ESB_MASTER_KEY_FILE``, default ``<data dir>/master.key``), which is created with mode
0600 when missing so that the embedded default needs no set-up.  A stored secret is
``b"v1" + key id (4 bytes) + nonce (12 bytes) + ciphertext``; the key id (the start of the
SHA-256 of the master key) makes a wrong master key a clear error, not garbage.  The access
key is bound as associated data, so a ciphertext copied onto another key does not decrypt.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from esb.errors import ConfigurationError, ServerError

_VERSION = b"v1"
_KEY_BYTES = 32
_NONCE_BYTES = 12


class SecretUnreadable(ServerError):
    default_code = "Server.SecretUnreadable"


class SecretBox:
    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != _KEY_BYTES:
            raise ConfigurationError(f"the master key must be {_KEY_BYTES} bytes, not {len(master_key)}")
        self._aead = AESGCM(master_key)
        self.key_id = hashlib.sha256(master_key).digest()[:4]

    def __repr__(self) -> str:
        return f"SecretBox(key_id={self.key_id.hex()})"

    def seal(self, plaintext: bytes, *, bound_to: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return _VERSION + self.key_id + nonce + self._aead.encrypt(nonce, plaintext, bound_to.encode())

    def open(self, sealed: bytes, *, bound_to: str) -> bytes:
        header = len(_VERSION) + len(self.key_id)
        if sealed[: len(_VERSION)] != _VERSION or len(sealed) < header + _NONCE_BYTES + 16:
            raise SecretUnreadable("a stored secret has an unknown format")
        if sealed[len(_VERSION) : header] != self.key_id:
            raise SecretUnreadable(
                "a stored secret was sealed under another master key "
                "(check ESB_MASTER_KEY / ESB_MASTER_KEY_FILE)"
            )
        nonce = sealed[header : header + _NONCE_BYTES]
        try:
            return self._aead.decrypt(nonce, sealed[header + _NONCE_BYTES :], bound_to.encode())
        except InvalidTag:
            raise SecretUnreadable("a stored secret failed its integrity check") from None

    @classmethod
    def from_config(cls, master_key_b64: str | None, key_file: Path | None) -> SecretBox:
        if master_key_b64:
            return cls(_decode(master_key_b64, "ESB_MASTER_KEY"))
        if key_file is None:
            raise ConfigurationError("no master key: set ESB_MASTER_KEY or ESB_MASTER_KEY_FILE")
        return cls(load_or_create_key_file(key_file))


def load_or_create_key_file(path: Path) -> bytes:
    """Read the master key file, or create it (mode 0600, 32 random bytes in base64)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        encoded = base64.b64encode(secrets.token_bytes(_KEY_BYTES))
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first: read theirs
        else:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(encoded + b"\n")
    if path.stat().st_mode & 0o077:
        raise ConfigurationError(f"the master key file {path} is readable by others: chmod 600 it")
    try:
        text = path.read_bytes().decode("ascii").strip()
    except UnicodeDecodeError:
        raise ConfigurationError(f"{path} must hold the key in base64 text, not raw bytes") from None
    return _decode(text, str(path))


def _decode(value: str, source: str) -> bytes:
    try:
        key = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(f"{source} is not base64") from None
    if len(key) != _KEY_BYTES:
        raise ConfigurationError(f"{source} must hold {_KEY_BYTES} bytes in base64, not {len(key)}")
    return key
