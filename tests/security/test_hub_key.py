"""The hub's receipt signing key: made once on a new hub, loaded from files, never guessed."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime
from pathlib import Path

import pytest

from esb.errors import ConfigurationError
from esb.security.hub_key import load_hub_key
from esb.security.pki import make_root_ca

NOW = datetime(2026, 11, 21, 2, 30, tzinfo=UTC)
ORGAN = "000.00.00.H53"


def _load(folder: Path, *, create: bool = True, password_file: Path | None = None) -> str:
    key = load_hub_key(
        folder / "key.pem",
        folder / "cert.pem",
        password_file=password_file,
        create_if_missing=create,
        hub_name="LGSP hub test",
        hub_organ_id=ORGAN,
        now=NOW,
    )
    return key.sha256


def test_a_new_hub_makes_a_self_signed_pair_once(tmp_path: Path) -> None:
    first = _load(tmp_path)
    assert (tmp_path / "key.pem").stat().st_mode & 0o777 == 0o600
    assert b"PRIVATE KEY" in (tmp_path / "key.pem").read_bytes()
    assert b"CERTIFICATE" in (tmp_path / "cert.pem").read_bytes()
    assert _load(tmp_path) == first  # loaded, not made again


def test_configured_files_that_are_missing_are_an_error_not_a_new_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"key\.pem"):
        _load(tmp_path, create=False)
    assert not (tmp_path / "key.pem").exists()


def test_one_file_without_the_other_is_never_completed(tmp_path: Path) -> None:
    _load(tmp_path)
    (tmp_path / "cert.pem").unlink()
    with pytest.raises(ConfigurationError):
        _load(tmp_path)
    assert not (tmp_path / "cert.pem").exists()


def test_an_encrypted_key_with_its_password_file(tmp_path: Path) -> None:
    root = make_root_ca("Hub test CA", now=NOW)
    (tmp_path / "key.pem").write_bytes(root.key_pem(password=b"mat-khau"))
    (tmp_path / "cert.pem").write_bytes(root.certificate_pem())
    secret = tmp_path / "password"
    secret.write_bytes(b"mat-khau\n")
    assert _load(tmp_path, create=False, password_file=secret) == root.sha256
    with pytest.raises(ConfigurationError, match="password file"):
        _load(tmp_path, create=False, password_file=tmp_path / "missing")


def _race(folder: str, results: multiprocessing.Queue[str]) -> None:
    results.put(_load(Path(folder)))


def test_processes_starting_together_make_one_pair(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    workers = [context.Process(target=_race, args=(str(tmp_path), results)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [worker.exitcode for worker in workers] == [0, 0, 0, 0]
    fingerprints = {results.get(timeout=5) for _ in workers}
    assert len(fingerprints) == 1
