"""Content stores (esb.storage.content_store): every read verified, no partial blob ever visible.

Each test runs on the directory store and on the database store on both engines
(``database_url``; the directory store never touches the database, so it runs once, next to
SQLite).  ``CHUNK`` is made small so that a few hundred bytes span several chunks.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select, update

from esb.errors import EsbError
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
BLOB = bytes(range(256)) * 2 + b"tail"  # 516 bytes: 8 chunks of 64 and one of 4
DIGEST = hashlib.sha256(BLOB).hexdigest()
SIZE = len(BLOB)

# (store kind, engine): the directory store once, the database store on each engine.
STORES = pytest.mark.parametrize(
    ("store", "database_url"),
    [("directory", "sqlite"), ("database", "sqlite"), ("database", "postgresql")],
    indirect=True,
    ids=["directory", "database-sqlite", "database-postgresql"],
)


@dataclass
class Store:
    """A content store, and the means to damage what it holds as a disk fault or a person would."""

    kind: str
    store: ContentStore
    root: Path | None
    database: Database | None

    def raw(self, key: str) -> bytes:
        if self.root is not None:
            return (self.root / key[:2] / key).read_bytes()
        assert self.database is not None
        with self.database.transaction() as session:
            rows = session.scalars(
                select(ContentChunk.data).where(ContentChunk.key == key).order_by(ContentChunk.seq)
            )
            return b"".join(bytes(data) for data in rows)

    def chunk_sizes(self, key: str) -> list[int]:
        assert self.database is not None
        with self.database.transaction() as session:
            rows = session.scalars(
                select(ContentChunk.data).where(ContentChunk.key == key).order_by(ContentChunk.seq)
            )
            return [len(data) for data in rows]

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
            where = (ContentChunk.key == key, ContentChunk.seq == seq)
            data = bytearray(session.scalars(select(ContentChunk.data).where(*where)).one())
            data[at] ^= 0x01
            session.execute(update(ContentChunk).where(*where).values(data=bytes(data)))

    def truncate(self, key: str, size: int) -> None:
        """Keep the first ``size`` bytes (a multiple of CHUNK: the database store loses whole chunks)."""
        if self.root is not None:
            path = self.root / key[:2] / key
            path.write_bytes(path.read_bytes()[:size])
            return
        assert self.database is not None
        with self.database.transaction() as session:
            session.execute(
                delete(ContentChunk).where(ContentChunk.key == key, ContentChunk.seq >= size // CHUNK)
            )

    def append(self, key: str, extra: bytes) -> None:
        if self.root is not None:
            with (self.root / key[:2] / key).open("ab") as handle:
                handle.write(extra)
            return
        assert self.database is not None
        with self.database.transaction() as session:
            last = session.scalar(select(func.max(ContentChunk.seq)).where(ContentChunk.key == key))
            session.add(ContentChunk(key=key, seq=int(last or 0) + 1, data=extra))

    def leftovers(self) -> list[str]:
        """Everything the store holds: files (partial ones included) or chunk rows."""
        if self.root is not None:
            return sorted(path.name for path in self.root.rglob("*") if path.is_file())
        assert self.database is not None
        with self.database.transaction() as session:
            return sorted(f"{row.key}/{row.seq}" for row in session.scalars(select(ContentChunk)))


@pytest.fixture
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
    """A file holding the given bytes, as the exchange's spool would."""
    names = iter(range(1_000_000))

    def make(data: bytes) -> Path:
        path = tmp_path / f"spool-{next(names)}"
        path.write_bytes(data)
        return path

    return make


@dataclass(frozen=True)
class Refusal:
    kind: type[EsbError]
    code: str
    message: str


def refused(call: Callable[[], object]) -> Refusal:
    """What ``call`` raised.  The exception itself is not kept: its traceback holds the reader's
    frames, and with them (directory store) an open file that only the garbage collector would close."""
    try:
        call()
    except EsbError as exc:
        return Refusal(type(exc), exc.code, exc.message)
    pytest.fail("the call was not refused")


def streamed_until_refused(store: ContentStore, key: str) -> list[bytes]:
    """The chunks a reader got before ContentCorrupted stopped the stream."""
    yielded: list[bytes] = []

    def consume() -> None:
        for chunk in store.read(key, sha256=DIGEST, size=SIZE):
            yielded.append(chunk)

    error = refused(consume)
    assert error.kind is ContentCorrupted
    assert error.code == "Server.ContentCorrupted"
    assert key in error.message
    return yielded


# -- round trip ------------------------------------------------------------------------------------------


@STORES
def test_round_trip(store: Store, source: Callable[[bytes], Path], tmp_path: Path) -> None:
    key = new_key()
    spool = source(BLOB)

    store.store.put_file(key, spool)

    assert spool.read_bytes() == BLOB  # a copy: the caller's file is left as it was
    chunks = list(store.store.read(key, sha256=DIGEST, size=SIZE))
    assert b"".join(chunks) == BLOB
    assert [len(chunk) for chunk in chunks] == [CHUNK] * 8 + [4]
    if store.kind == "database":
        assert store.chunk_sizes(key) == [CHUNK] * 8 + [4]
    assert read_all(store.store, key, sha256=DIGEST, size=SIZE) == BLOB
    store.store.verify(key, sha256=DIGEST, size=SIZE)
    out = tmp_path / "copy"
    with out.open("wb") as handle:
        copy_verified(store.store, key, handle, sha256=DIGEST, size=SIZE)
    assert out.read_bytes() == BLOB

    # Written through the writer, in pieces.
    written = new_key()
    with store.store.writer(written) as handle:
        for start in range(0, SIZE, 100):
            handle.write(BLOB[start : start + 100])
    assert read_all(store.store, written, sha256=DIGEST, size=SIZE) == BLOB

    # An empty blob is a blob.
    empty = new_key()
    store.store.put_file(empty, source(b""))
    assert read_all(store.store, empty, sha256=hashlib.sha256(b"").hexdigest(), size=0) == b""

    # Deleting one blob leaves the others.
    store.store.delete(key)
    assert refused(lambda: store.store.read(key, sha256=DIGEST, size=SIZE)).kind is ContentMissing
    assert read_all(store.store, written, sha256=DIGEST, size=SIZE) == BLOB


# -- damage ------------------------------------------------------------------------------------------------


@STORES
def test_changed_bytes_are_refused_and_the_last_chunk_never_leaves(
    store: Store, source: Callable[[bytes], Path]
) -> None:
    for offset in (0, 300, SIZE - 1):  # in the first, a middle and the last chunk
        key = new_key()
        store.store.put_file(key, source(BLOB))
        store.flip_byte(key, offset)

        yielded = streamed_until_refused(store.store, key)

        stored = store.raw(key)
        assert len(stored) == SIZE
        assert stored != BLOB
        assert len(yielded) == 8, offset  # every chunk but the last: the check needs them all
        assert stored.startswith(b"".join(yielded))
        assert refused(partial(store.store.verify, key, sha256=DIGEST, size=SIZE)).kind is ContentCorrupted
        assert refused(partial(read_all, store.store, key, sha256=DIGEST, size=SIZE)).kind is ContentCorrupted


@STORES
def test_truncated_or_extended_blobs_are_refused(store: Store, source: Callable[[bytes], Path]) -> None:
    truncated = new_key()
    store.store.put_file(truncated, source(BLOB))
    store.truncate(truncated, 4 * CHUNK)
    assert b"".join(streamed_until_refused(store.store, truncated)) == BLOB[: 3 * CHUNK]  # 4th held back

    extended = new_key()
    store.store.put_file(extended, source(BLOB))
    store.append(extended, b"<!-- appended -->")
    streamed = b"".join(streamed_until_refused(store.store, extended))
    # Refused as soon as the recorded size is passed: the chunk before never leaves.
    assert BLOB.startswith(streamed)
    assert len(streamed) <= SIZE - 4

    # The right bytes checked against another recorded digest or size.
    intact = new_key()
    store.store.put_file(intact, source(BLOB))
    for sha256, size in ((hashlib.sha256(b"x").hexdigest(), SIZE), (DIGEST, SIZE + 1), (DIGEST, SIZE - 1)):
        error = refused(partial(store.store.verify, intact, sha256=sha256, size=size))
        assert error.kind is ContentCorrupted


@STORES
def test_missing_blobs_and_idempotent_delete(store: Store, source: Callable[[bytes], Path]) -> None:
    key = new_key()
    for call in (
        lambda: store.store.read(key, sha256=DIGEST, size=SIZE),  # refused before any chunk is asked for
        lambda: store.store.verify(key, sha256=DIGEST, size=SIZE),
        lambda: read_all(store.store, key, sha256=DIGEST, size=SIZE),
    ):
        error = refused(call)
        assert error.kind is ContentMissing
        assert error.code == "Server.ContentMissing"

    store.store.delete(key)  # never stored: not an error
    store.store.put_file(key, source(BLOB))
    store.store.delete(key)
    store.store.delete(key)

    assert refused(lambda: read_all(store.store, key, sha256=DIGEST, size=SIZE)).kind is ContentMissing
    assert store.leftovers() == []


# -- crashes while writing -----------------------------------------------------------------------------------


@STORES
def test_a_failed_write_leaves_no_blob_and_no_partial_file(
    store: Store, source: Callable[[bytes], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The source vanished.
    gone = new_key()
    with pytest.raises(FileNotFoundError):
        store.store.put_file(gone, tmp_path / "gone")
    assert refused(lambda: store.store.read(gone, sha256=DIGEST, size=SIZE)).kind is ContentMissing
    assert store.leftovers() == []

    # The writer's block failed half way.
    half = new_key()

    def write_half() -> None:
        with store.store.writer(half) as handle:
            handle.write(BLOB[:200])
            raise RuntimeError("the client went away")

    with pytest.raises(RuntimeError, match="client went away"):
        write_half()
    assert refused(lambda: store.store.read(half, sha256=DIGEST, size=SIZE)).kind is ContentMissing
    assert store.leftovers() == []

    # The storage failed after part of the bytes were written.
    broken = new_key()
    if store.kind == "directory":

        def failing_fsync(fd: int) -> None:
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(os, "fsync", failing_fsync)
    else:
        real = ContentChunk

        def chunk(*, key: str, seq: int, data: bytes) -> ContentChunk:
            if seq == 2:  # two chunks are already flushed in the transaction
                raise OSError(28, "No space left on device")
            return real(key=key, seq=seq, data=data)

        monkeypatch.setattr(cs, "ContentChunk", chunk)
    with pytest.raises(OSError):  # noqa: PT011 - the injected failure, whatever its errno
        store.store.put_file(broken, source(BLOB))
    monkeypatch.undo()
    monkeypatch.setattr(cs, "CHUNK", CHUNK)

    assert refused(lambda: store.store.read(broken, sha256=DIGEST, size=SIZE)).kind is ContentMissing
    assert store.leftovers() == []


def test_directory_store_refuses_keys_that_are_not_alphanumeric(tmp_path: Path) -> None:
    store = DirectoryContentStore(tmp_path / "content")
    for key in ("../../etc/passwd", "ab/cd", ".hidden", ""):
        with pytest.raises(ValueError, match="alphanumeric"):
            store.delete(key)


def test_closing_an_unread_directory_stream_closes_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cs, "CHUNK", CHUNK)
    store = DirectoryContentStore(tmp_path / "content")
    key = new_key()
    spool = tmp_path / "spool"
    spool.write_bytes(BLOB)
    store.put_file(key, spool)
    path = str(store.root / key[:2] / key)

    def open_on_blob() -> int:
        fds = Path("/proc/self/fd")
        return sum(1 for fd in fds.iterdir() if os.path.exists(fd) and os.readlink(fd) == path)

    stream = store.read(key, sha256=DIGEST, size=SIZE)
    assert open_on_blob() == 0  # opened on the first read, not before
    stream.close()  # type: ignore[attr-defined]  # an abandoned download
    assert open_on_blob() == 0

    stream = store.read(key, sha256=DIGEST, size=SIZE)
    next(stream)  # several chunks: the first leaves while the file is open
    assert open_on_blob() == 1
    stream.close()  # type: ignore[attr-defined]
    assert open_on_blob() == 0
