"""Attachment bytes without holding them in memory.

Reading: :class:`Base64Decoder` receives the text of one ``ContentTransferEncoded`` element in
chunks, decodes it incrementally, hashes it, counts the tell-tale of text-decoded binaries
(U+FFFD as ``EF BF BD``) and writes the bytes to a spool only when somebody needs them (an
extraction directory, or a ZIP that may have to be unwrapped).  :func:`finish_attachment`
then applies the VNPT ZIP convention.

Writing: :func:`encode_base64` streams a file into base64 text chunks, :func:`zip_single_file`
wraps a file the way the VNPT SDK does.
"""

from __future__ import annotations

import binascii
import hashlib
import os
import re
import shutil
import tempfile
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from esb.domain.edxml_model import AttachmentData
from esb.domain.issues import Issue, error, warning

ZIP_MAGIC = b"PK\x03\x04"
ZIP_CONTENT_TYPE = "application/zip"
REPLACEMENT_CHAR = "\ufffd".encode()
SPOOL_IN_MEMORY = 4 * 1024 * 1024
ENCODE_CHUNK = 3 * 256 * 1024  # a multiple of 3, so every chunk encodes without padding
_WHITESPACE = str.maketrans("", "", " \t\r\n")


@dataclass(frozen=True)
class AttachmentPolicy:
    """Where decoded attachments go: nowhere (digests only) or files in ``extract_dir``."""

    extract_dir: Path | None = None
    max_unzipped_bytes: int = 2 * 1024 * 1024 * 1024


class Base64Decoder:
    """Incremental, strict base64 decoder for one attachment (a parsing.TextConsumer)."""

    def __init__(self, path: str, spool_dir: Path | None) -> None:
        self.path = path
        self._spool_dir = spool_dir
        self._pending = ""
        self._padded = False
        self._tail = b""
        self.size = 0
        self.digest = hashlib.sha256()
        self.head = b""
        self.replacement_chars = 0
        self.had_line_breaks = False
        self._data_seen = False
        self._whitespace_pending = False
        self.failure: Issue | None = None
        self.spool: IO[bytes] | None = None

    # TextConsumer ------------------------------------------------------------------------
    def write(self, text: str) -> None:
        if self.failure is not None:
            return
        stripped = text.translate(_WHITESPACE)
        self._note_whitespace(text, stripped)
        data = self._pending + stripped
        usable = len(data) - len(data) % 4
        self._pending = data[usable:]
        if usable:
            self._decode(data[:usable])

    def _note_whitespace(self, text: str, stripped: str) -> None:
        """Whitespace *between* base64 characters is a deviation; around the whole content it is not."""
        if not stripped:
            self._whitespace_pending = self._whitespace_pending or (self._data_seen and bool(text))
            return
        inner = text.strip()
        if (self._data_seen and (self._whitespace_pending or text[0].isspace())) or len(
            inner.translate(_WHITESPACE)
        ) != len(inner):
            self.had_line_breaks = True
        self._data_seen = True
        self._whitespace_pending = text[-1].isspace()

    def close(self) -> None:
        if self.failure is None and self._pending:
            self._fail("the base64 content ends in the middle of a 4-character group (truncated?)")

    # ------------------------------------------------------------------------------------
    def _decode(self, text: str) -> None:
        if self._padded:
            self._fail("base64 data continues after its '=' padding")
            return
        try:
            chunk = binascii.a2b_base64(text, strict_mode=True)
        except (binascii.Error, ValueError) as exc:
            self._fail(f"the content is not valid base64 ({exc})")
            return
        self._padded = text.endswith("=")
        self._consume(chunk)

    def _consume(self, chunk: bytes) -> None:
        if not chunk:
            return
        if len(self.head) < 8:
            self.head = (self.head + chunk)[:8]
        might_be_zip = self.head.startswith(ZIP_MAGIC[: len(self.head)])
        if self.spool is None and (self._spool_dir is not None or might_be_zip):
            self.spool = self._open_spool()
        elif self.spool is not None and self._spool_dir is None and not might_be_zip:
            self.discard()  # only a ZIP may need its bytes again; a digest is enough otherwise
        joined = self._tail + chunk
        self.replacement_chars += joined.count(REPLACEMENT_CHAR)
        self._tail = joined[-2:]  # a 3-byte match cannot lie wholly inside it, so none is counted twice
        self.size += len(chunk)
        self.digest.update(chunk)
        if self.spool is not None:
            self.spool.write(chunk)

    def _open_spool(self) -> IO[bytes]:
        if self._spool_dir is not None:
            return tempfile.NamedTemporaryFile(dir=self._spool_dir, prefix=".part-", delete=False)
        return tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)

    def _fail(self, message: str) -> None:
        self.failure = error("Client.EdxmlAttachmentBase64", self.path, message)
        self.discard()

    def discard(self) -> None:
        if self.spool is not None:
            name = getattr(self.spool, "name", None)
            self.spool.close()
            if isinstance(name, str):
                Path(name).unlink(missing_ok=True)
            self.spool = None


def looks_text_decoded(decoder: Base64Decoder, content_types: tuple[str | None, ...]) -> bool:
    """A binary file pushed through a text codec: dense U+FFFD sequences in a non-text type.

    Random bytes contain ``EF BF BD`` about once per 16 MB; a text-decoded PDF or ZIP has it in
    a large share of its bytes.  The threshold (16 and one per 300 bytes) separates the two.
    """
    if any(t and t.lower().startswith("text/") for t in content_types):
        return False
    return decoder.replacement_chars >= 16 and decoder.replacement_chars * 300 >= decoder.size


def finish_attachment(
    decoder: Base64Decoder,
    *,
    attachment_type: str | None,
    manifest_type: str | None,
    file_name: str | None,
    policy: AttachmentPolicy,
    used_names: set[str],
) -> tuple[AttachmentData, list[Issue]]:
    """Apply the VNPT ZIP convention, move the file into place, and describe the content."""
    issues: list[Issue] = []
    encoded = (decoder.size, decoder.digest.hexdigest())
    unwrap = (
        decoder.head.startswith(ZIP_MAGIC)
        and _same_type(attachment_type, ZIP_CONTENT_TYPE)
        and not _same_type(manifest_type, ZIP_CONTENT_TYPE)
    )
    try:
        if unwrap and decoder.spool is not None:
            result = _unwrap_zip(decoder, policy, file_name, used_names, issues)
            if result is not None:
                size, sha, location = result
                return AttachmentData(size, sha, True, encoded[0], encoded[1], location), issues
        location = _keep_raw(decoder, policy, file_name, used_names)
        return AttachmentData(encoded[0], encoded[1], False, encoded[0], encoded[1], location), issues
    finally:
        decoder.discard()


def _unwrap_zip(
    decoder: Base64Decoder,
    policy: AttachmentPolicy,
    file_name: str | None,
    used_names: set[str],
    issues: list[Issue],
) -> tuple[int, str, str | None] | None:
    assert decoder.spool is not None  # noqa: S101 - guarded by the caller
    decoder.spool.flush()
    decoder.spool.seek(0)
    try:
        with zipfile.ZipFile(decoder.spool) as archive:
            entries = [i for i in archive.infolist() if not i.is_dir()]
            if len(entries) != 1:
                issues.append(
                    warning(
                        "W.ZipNotSingleEntry",
                        decoder.path,
                        f"the attachment is a ZIP with {len(entries)} files; kept as the ZIP itself",
                    )
                )
                return None
            with archive.open(entries[0]) as member:
                return _copy_out(member, policy, file_name, used_names, decoder.path)
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        EOFError,
        OSError,
        NotImplementedError,
        RuntimeError,
    ) as exc:
        issues.append(
            warning(
                "W.ZipUnreadable",
                decoder.path,
                f"declared as a ZIP but cannot be unzipped ({exc}); kept as is",
            )
        )
        return None


def _copy_out(
    member: IO[bytes], policy: AttachmentPolicy, file_name: str | None, used_names: set[str], path: str
) -> tuple[int, str, str | None]:
    digest, size = hashlib.sha256(), 0
    target = _target_path(policy, file_name, used_names)
    out = target.open("wb") if target is not None else None
    try:
        while chunk := member.read(1 << 20):
            size += len(chunk)
            _check_unzipped_size(size, policy.max_unzipped_bytes, path)
            digest.update(chunk)
            if out is not None:
                out.write(chunk)
    except BaseException:
        if out is not None and target is not None:
            out.close()
            target.unlink(missing_ok=True)
            used_names.discard(target.name.lower())  # the raw file may take the name instead
        raise
    if out is not None:
        out.close()
    return size, digest.hexdigest(), str(target) if target is not None else None


def _check_unzipped_size(size: int, limit: int, path: str) -> None:
    if size > limit:
        raise zipfile.LargeZipFile(f"unzipped content exceeds {limit} bytes at {path}")


def _keep_raw(
    decoder: Base64Decoder, policy: AttachmentPolicy, file_name: str | None, used: set[str]
) -> str | None:
    target = _target_path(policy, file_name, used)
    if target is None:
        return None
    spool = decoder.spool
    if spool is None:  # an empty attachment: nothing was spooled
        target.write_bytes(b"")
        return str(target)
    spool.flush()
    name = getattr(spool, "name", None)
    spool.close()
    decoder.spool = None
    if isinstance(name, str):
        publish_file(Path(name), target)
    return str(target)


def publish_file(temporary: Path, target: Path) -> None:
    """Move a finished temporary file into place with the usual permissions (temp files are 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    temporary.chmod(0o666 & ~umask)
    os.replace(temporary, target)


_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]")


def safe_file_name(name: str | None, fallback: str = "attachment") -> str:
    """A file name that cannot leave the extraction directory or hide itself."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE.sub("_", base).strip().lstrip(".")
    return base[:200] or fallback


def _target_path(policy: AttachmentPolicy, file_name: str | None, used: set[str]) -> Path | None:
    if policy.extract_dir is None:
        return None
    name = safe_file_name(file_name)
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    candidate, n = name, 1
    while candidate.lower() in used or (policy.extract_dir / candidate).exists():
        n += 1
        candidate = f"{stem} ({n}).{ext}" if ext else f"{stem} ({n})"
    used.add(candidate.lower())
    return policy.extract_dir / candidate


def _same_type(value: str | None, expected: str) -> bool:
    return value is not None and value.split(";", 1)[0].strip().lower() == expected


# Writing --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EncodedFile:
    size: int
    sha256: str


def encode_base64(source: IO[bytes], sink: list[EncodedFile] | None = None) -> Iterator[bytes]:
    """Yield one-line base64 of ``source`` in chunks; append its size and SHA-256 to ``sink``."""
    digest, size = hashlib.sha256(), 0
    while chunk := source.read(ENCODE_CHUNK):
        digest.update(chunk)
        size += len(chunk)
        yield binascii.b2a_base64(chunk, newline=False)
    if sink is not None:
        sink.append(EncodedFile(size, digest.hexdigest()))


def file_digest(path: Path) -> EncodedFile:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return EncodedFile(size, digest.hexdigest())


def zip_single_file(source: Path, original_name: str, work_dir: Path) -> Path:
    """Wrap one file as the VNPT SDK does: a ZIP holding ``<uuid>.<original extension>``."""
    ext = original_name.rpartition(".")[2] if "." in original_name else "bin"
    target = work_dir / f"{uuid.uuid4()}.zip"
    entry = f"{uuid.uuid4()}.{ext}"
    with (
        zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive,
        source.open("rb") as src,
        archive.open(entry, "w", force_zip64=True) as dst,
    ):
        shutil.copyfileobj(src, dst, 1 << 20)
    return target
