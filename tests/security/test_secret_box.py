"""Tests for esb.security.secret_box: secrets sealed at rest under the master key."""

from __future__ import annotations

import base64
import secrets
import stat
from pathlib import Path

import pytest

from esb.errors import ConfigurationError
from esb.security.secret_box import SecretBox, SecretUnreadable

ACCESS_KEY = "AKABCDEFGHIJKLMNOPQRST"
SECRET = "bí-mật-0123456789".encode()


@pytest.fixture
def master_key() -> bytes:
    return secrets.token_bytes(32)


def test_sealed_secret_opens_to_the_same_bytes(master_key: bytes) -> None:
    box = SecretBox(master_key)
    sealed = box.seal(SECRET, bound_to=ACCESS_KEY)
    assert SECRET not in sealed
    assert box.open(sealed, bound_to=ACCESS_KEY) == SECRET
    assert SecretBox(master_key).open(sealed, bound_to=ACCESS_KEY) == SECRET  # same key, new box


def test_sealing_twice_gives_different_ciphertexts(master_key: bytes) -> None:
    box = SecretBox(master_key)
    assert box.seal(SECRET, bound_to=ACCESS_KEY) != box.seal(SECRET, bound_to=ACCESS_KEY)


def test_wrong_master_key_is_secret_unreadable_naming_the_setting(master_key: bytes) -> None:
    sealed = SecretBox(master_key).seal(SECRET, bound_to=ACCESS_KEY)
    with pytest.raises(SecretUnreadable) as caught:
        SecretBox(secrets.token_bytes(32)).open(sealed, bound_to=ACCESS_KEY)
    assert caught.value.code == "Server.SecretUnreadable"
    assert "another master key" in caught.value.message
    assert "ESB_MASTER_KEY" in caught.value.message


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda b: b[:-1] + bytes([b[-1] ^ 1]), "integrity"),  # the tag
        (lambda b: b[:20] + bytes([b[20] ^ 1]) + b[21:], "integrity"),  # the ciphertext
        (lambda b: b[:8] + bytes([b[8] ^ 1]) + b[9:], "integrity"),  # the nonce
        (lambda b: b"v2" + b[2:], "unknown format"),
        (lambda b: b[:30], "unknown format"),
        (lambda b: b"", "unknown format"),
    ],
)
def test_tampered_ciphertext_is_secret_unreadable(master_key: bytes, tamper: object, message: str) -> None:
    box = SecretBox(master_key)
    sealed = box.seal(SECRET, bound_to=ACCESS_KEY)
    with pytest.raises(SecretUnreadable, match=message):
        box.open(tamper(sealed), bound_to=ACCESS_KEY)  # type: ignore[operator]


def test_ciphertext_moved_to_another_access_key_does_not_open(master_key: bytes) -> None:
    box = SecretBox(master_key)
    sealed = box.seal(SECRET, bound_to=ACCESS_KEY)
    with pytest.raises(SecretUnreadable, match="integrity"):
        box.open(sealed, bound_to="AKZZZZZZZZZZZZZZZZZZZZ")


def test_missing_key_file_is_created_with_mode_0600_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "not" / "yet" / "master.key"
    first = SecretBox.from_config(None, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(base64.b64decode(path.read_text(encoding="ascii").strip(), validate=True)) == 32
    content = path.read_bytes()
    second = SecretBox.from_config(None, path)
    assert path.read_bytes() == content
    assert second.key_id == first.key_id
    assert second.open(first.seal(SECRET, bound_to=ACCESS_KEY), bound_to=ACCESS_KEY) == SECRET


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_key_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "master.key"
    path.write_text(base64.b64encode(secrets.token_bytes(32)).decode() + "\n", encoding="ascii")
    path.chmod(mode)
    with pytest.raises(ConfigurationError, match="chmod 600") as caught:
        SecretBox.from_config(None, path)
    assert caught.value.code == "Server.Configuration"


def test_environment_key_wins_and_no_key_file_is_created(tmp_path: Path, master_key: bytes) -> None:
    path = tmp_path / "master.key"
    box = SecretBox.from_config(base64.b64encode(master_key).decode(), path)
    assert not path.exists()
    assert box.key_id == SecretBox(master_key).key_id


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not base64 at all!", "not base64"),
        (base64.b64encode(b"k" * 32).decode()[:-1], "not base64"),  # broken padding
        (base64.b64encode(b"k" * 16).decode(), "32 bytes"),
        (base64.b64encode(b"k" * 33).decode(), "32 bytes"),
    ],
)
def test_malformed_environment_key_is_a_configuration_error(value: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        SecretBox.from_config(value, None)
    assert caught.value.code == "Server.Configuration"
    assert value not in caught.value.message


def test_no_key_and_no_key_file_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="no master key"):
        SecretBox.from_config(None, None)


def test_key_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="32 bytes"):
        SecretBox(b"\x00" * 31)


def test_repr_contains_no_key_material(master_key: bytes) -> None:
    text = repr(SecretBox(master_key))
    assert text.startswith("SecretBox(")
    for encoding in (master_key.hex(), base64.b64encode(master_key).decode(), repr(master_key)):
        assert encoding not in text
    assert master_key.hex()[:8] not in text


def test_key_file_with_raw_bytes_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    path.write_bytes(bytes(range(128, 160)))  # e.g. `head -c 32 /dev/urandom > master.key`
    path.chmod(0o600)
    with pytest.raises(ConfigurationError, match="base64") as caught:
        SecretBox.from_config(None, path)
    assert caught.value.code == "Server.Configuration"
