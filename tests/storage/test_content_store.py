"""Content stores (esb.storage.content_store): every read verified, no partial blob ever visible.

Both kinds run on both engines (``database_url``): the directory store does not touch the
database, the database store keeps chunks in ``content_chunk``.  ``CHUNK`` is made small so
that a few hundred bytes span several chunks.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select, update

from esb.storage import content_store as cs
from esb.storage.content_store import (
    ContentCorrupted,
    ContentMissing,
    ContentStore,
    DatabaseContentStore,
    DirectoryContentStore,
    copy_verified,
    new_key,
    read_all,
)
from esb.storage.database import Database, open_database
from esb.storage.tables import ContentChunk

CHUNK = 64
BLOB = bytes(range(256)) * 2 + b"tail"  # 516 bytes: 9 chunks of 64, the last one 4 bytes
DIGEST = hashlib.sha256(BLOB).hexdigest()


@dataclass
class Store:
    """A content store and the means to damage what it holds, as a disk fault or an operator would."""

    kind: str
    store: ContentStore
    root: Path | None
    database: Database | None

    def chunks(self, key: str) -> list[bytes]:
        """The raw stored chunks (one "chunk" holding the whole file for the directory store)."""
        if self.root is not None:
            return [(self.root / key[:2] / key).read_bytes()]
        assert self.database is not None
        with self.database.transaction() as session:
            rows = session.scalars(select(ContentChunk).where(ContentChunk.key == key).order_by(ContentChunk.seq))
            return [bytes(row.data) for row in rows]

    def flip_byte(self, key: str, offset: int) -> None:
        if self.root is not None:
            path = self.root / key[:2] / key
            data = bytearray(path.read_bytes())
            data[offset] ^= 0x01
            path.write_bytes(bytes(data))
            return
        assert self.database is not None
        seq, at = divmod(offset, CHUNK)
        with self.database.transaction() as session:
            row = session.scalars(select(ContentChunk).where(ContentChunk.key == key, ContentChunk.seq == seq)).one()
            data = bytearray(row.data)
            data[at] ^= 0x01
            session.execute(
                update(ContentChunk)
                .where(ContentChunk.key == key, ContentChunk.seq == seq)
                .values(data=bytes(data))
            )

    def truncate(self, key: str, size: int) -> None:
        """Keep only the first ``size`` bytes (the database store loses whole trailing chunks)."""
        if self.root is not None:
            path = self.root / key[:2] / key
            path.write_bytes(path.read_bytes()[:size])
            return
        assert self.database is not None and size % CHUNK == 0
        with self.database.transaction() as session:
            session.execute(delete(ContentChunk).where(ContentChunk.key == key, ContentChunk.seq >= size // CHUNK))

    def append(self, key: str, extra: bytes) -> None:
        if self.root is not None:
            with (self.root / key[:2] / key).open("ab") as handle:
                handle.write(extra)
            return
        assert self.database is not None
        with self.database.transaction() as session:
            last = session.scalar(select(func.max(ContentChunk.seq)).where(ContentChunk.key == key))
            session.add(ContentChunk(key=key, seq=int(last or 0) + 1, data=extra))

    def visible_files(self) -> list[Path]:
        assert self.root is not None
        return [path for path in self.root.rglob("*") if path.is_file() and not path.name.startswith(".")]

    def chunk_rows(self) -> int:
        assert self.database is not None
        with self.database.transaction() as session:
            return int(session.scalar(select(func.count()).select_from(ContentChunk)) or 0)


@pytest.fixture(params=["directory", "database"])
def store(
    request: pytest.FixtureRequest, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Store]:
    monkeypatch.setattr(cs, "CHUNK", CHUNK)
    if request.param == "directory":
        root = tmp_path / "content"
        yield Store("directory", DirectoryContentStore(root), root, None)
        return
    database = open_database(database_url)
    try:
        yield Store("database", DatabaseContentStore(database), None, database)
    finally:
        database.dispose()


@pytest.fixture
def source(tmp_path: Path) -> Callable[[bytes], Path]:
    """A spool file holding the given bytes (the store may move it)."""
    counter = iter(range(1_000_000))

    def make(data: bytes = BLOB) -> Path:
        path = tmp_path / f"spool-{next(counter)}"
        path.write_bytes(data)
        return path

    return make


def read_until_refused(store: ContentStore, key: str, *, sha256: str = DIGEST, size: int = len(BLOB)) -> list[bytes]:
    """Chunks yielded before ContentCorrupted is raised (which this asserts)."""
    yielded: list[bytes] = []
    with pytest.raises(ContentCorrupted) as caught:
        for chunk in store.read(key, sha256=sha256, size=size):
            yielded.append(chunk)
    assert caught.value.code == "Server.ContentCorrupted"
    assert key in caught.value.message
    return yielded


# -- round trip ----------------------------------------------------------------------------------------


def test_put_read_round_trip_in_chunks_read_all_and_verify(store: Store, source: Callable[[bytes], Path]) -> None:
    key = new_key()
    spool = source(BLOB)

    store.store.put_file(key, spool)

    assert not spool.exists()  # moved or consumed: the caller's spool is the store's now
    chunks = list(store.store.read(key, sha256=DIGEST, size=len(BLOB)))
    assert b"".join(chunks) == BLOB
    if store.kind == "database":
        assert [len(c) for c in chunks] == [CHUNK] * 8 + [4]
        assert store.chunks(key) == chunks
    assert read_all(store.store, key, sha256=DIGEST, size=len(BLOB)) == BLOB
    store.store.verify(key, sha256=DIGEST, size=len(BLOB))
    out = source(b"")
    with out.open("wb") as handle:
        copy_verified(store.store, key, handle, sha256=DIGEST, size=len(BLOB))
    assert out.read_bytes() == BLOB


def test_empty_blob_round_trip(store: Store, source: Callable[[bytes], Path]) -> None:
    key = new_key()
    store.store.put_file(key, source(b""))
    assert read_all(store.store, key, sha256=hashlib.sha256(b"").hexdigest(), size=0) == b""


def test_keys_are_independent(store: Store, source: Callable[[bytes], Path]) -> None:
    first, second = new_key(), new_key()
    store.store.put_file(first, source(BLOB))
    store.store.put_file(second, source(b"other"))

    store.store.delete(first)

    assert read_all(store.store, second, sha256=hashlib.sha256(b"other").hexdigest(), size=5) == b"other"
    with pytest.raises(ContentMissing):
        store.store.read(first, sha256=DIGEST, size=len(BLOB))


# -- damage ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [0, 100, len(BLOB) - 1])
def test_flipped_byte_raises_corrupted_and_never_yields_the_last_chunk(
    store: Store, source: Callable[[bytes], Path], offset: int
) -> None:
    key = new_key()
    store.store.put_file(key, source(BLOB))
    store.flip_byte(key, offset)

    yielded = read_until_refused(store.store, key)

    stored = b"".join(store.chunks(key))
    assert len(stored) == len(BLOB) and stored != BLOB
    # Whatever was streamed is a strict prefix of the stored bytes: the last chunk never left.
    assert sum(map(len, yielded)) < len(BLOB)
    assert stored.startswith(b"".join(yielded))
    assert len(yielded) == 8  # both kinds stream CHUNK-sized pieces: every one but the last left
    with pytest.raises(ContentCorrupted):
        store.store.verify(key, sha256=DIGEST, size=len(BLOB))
    with pytest.raises(ContentCorrupted):
        read_all(store.store, key, sha256=DIGEST, size=len(BLOB))


def test_truncated_blob_is_corrupted(store: Store, source: Callable[[bytes], Path]) -> None:
    key = new_key()
    store.store.put_file(key, source(BLOB))
    store.truncate(key, 4 * CHUNK)

    yielded = read_until_refused(store.store, key)

    assert b"".join(yielded) == BLOB[: 3 * CHUNK]  # the 4th (last remaining) chunk is held back
    with pytest.raises(ContentCorrupted):
        store.store.verify(key, sha256=DIGEST, size=len(BLOB))


def test_extra_bytes_are_corrupted_before_they_are_yielded(store: Store, source: Callable[[bytes], Path]) -> None:
    key = new_key()
    store.store.put_file(key, source(BLOB))
    store.append(key, b"<!-- appended -->")

    yielded = read_until_refused(store.store, key)

    assert sum(map(len, yielded)) < len(BLOB)
    assert BLOB.startswith(b"".join(yielded))


def test_right_bytes_with_another_recorded_digest_or_size_are_corrupted(
    store: Store, source: Callable[[bytes], Path]
) -> None:
    key = new_key()
    store.store.put_file(key, source(BLOB))
    with pytest.raises(ContentCorrupted):
        store.store.verify(key, sha256=hashlib.sha256(b"x").hexdigest(), size=len(BLOB))
    with pytest.raises(ContentCorrupted):
        store.store.verify(key, sha256=DIGEST, size=len(BLOB) + 1)
    with pytest.raises(ContentCorrupted):
        store.store.verify(key, sha256=DIGEST, size=len(BLOB) - 1)


def test_missing_blob_is_content_missing_and_delete_is_idempotent(
    store: Store, source: Callable[[bytes], Path]
) -> None:
    key = new_key()
    with pytest.raises(ContentMissing) as caught:
        store.store.read(key, sha256=DIGEST, size=len(BLOB))
    assert caught.value.code == "Server.ContentMissing"
    with pytest.raises(ContentMissing):
        store.store.verify(key, sha256=DIGEST, size=len(BLOB))

    store.store.delete(key)  # never stored: not an error
    store.store.put_file(key, source(BLOB))
    store.store.delete(key)
    store.store.delete(key)

    with pytest.raises(ContentMissing):
        read_all(store.store, key, sha256=DIGEST, size=len(BLOB))


# -- crashes during put ------------------------------------------------------------------------------------


def test_put_of_a_missing_source_leaves_nothing(store: Store, tmp_path: Path) -> None:
    key = new_key()
    with pytest.raises(FileNotFoundError):
        store.store.put_file(key, tmp_path / "gone")

    with pytest.raises(ContentMissing):
        store.store.read(key, sha256=DIGEST, size=len(BLOB))
    if store.root is not None:
        assert [p for p in store.root.rglob("*") if p.is_file()] == []
    else:
        assert store.chunk_rows() == 0


def test_crash_in_the_middle_of_a_put_leaves_no_visible_blob(
    store: Store, source: Callable[[bytes], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    key = new_key()
    if store.kind == "directory":
        # The bytes reached the partial file, then the disk failed before the rename.
        def failing_fsync(fd: int) -> None:
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(os, "fsync", failing_fsync)
    else:
        # The third chunk cannot be written: the two before it must not stay behind.
        real = ContentChunk

        def chunk(*, key: str, seq: int, data: bytes) -> ContentChunk:
            if seq == 2:
                raise OSError(28, "No space left on device")
            return real(key=key, seq=seq, data=data)

        monkeypatch.setattr(cs, "ContentChunk", chunk)

    with pytest.raises(OSError):  # noqa: PT011 - the injected error, whatever its errno
        store.store.put_file(key, source(BLOB))
    monkeypatch.undo()

    with pytest.raises(ContentMissing):
        store.store.read(key, sha256=DIGEST, size=len(BLOB))
    if store.root is not None:
        assert store.visible_files() == []
    else:
        assert store.chunk_rows() == 0


def test_directory_store_refuses_keys_that_are_not_alphanumeric(tmp_path: Path) -> None:
    store = DirectoryContentStore(tmp_path / "content")
    with pytest.raises(ValueError, match="alphanumeric"):
        store.delete("../../etc/passwd")
