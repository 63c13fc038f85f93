"""Tests for esb.xml_processing.attachments: streaming base64, the VNPT ZIP convention, safe extraction."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import random
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from esb.domain.edxml_dates import VN_TZ
from esb.domain.edxml_model import AttachmentData, EdocPackage
from esb.domain.issues import Severity
from esb.domain.package_spec import package_from_spec, wrap_attachments_as_zip
from esb.xml_processing.attachments import (
    ENCODE_CHUNK,
    REPLACEMENT_CHAR,
    AttachmentPolicy,
    Base64Decoder,
    EncodedFile,
    encode_base64,
    file_digest,
    finish_attachment,
    looks_text_decoded,
    safe_file_name,
    zip_single_file,
)
from esb.xml_processing.edxml_reader import read_package
from esb.xml_processing.edxml_writer import write_package

PATH = "/edXML/AttachmentEncoded/Attachment[1]/ContentTransferEncoded"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def feed(text: str, sizes: list[int] | int, spool_dir: Path | None = None) -> Base64Decoder:
    """Feed ``text`` to a new decoder in chunks of the given sizes (cycled), then close it."""
    decoder = Base64Decoder(PATH, spool_dir)
    cycle = [sizes] if isinstance(sizes, int) else sizes
    pos, i = 0, 0
    while pos < len(text):
        size = cycle[i % len(cycle)]
        decoder.write(text[pos : pos + size])
        pos += size
        i += 1
    decoder.close()
    return decoder


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def zip_bytes(entries: dict[str, bytes], *, directories: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in directories:
            archive.writestr(zipfile.ZipInfo(name), b"")
        for name, content in entries.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def finish(
    data: bytes,
    *,
    attachment_type: str | None,
    manifest_type: str | None,
    extract_dir: Path | None = None,
    file_name: str | None = "report.pdf",
    used: set[str] | None = None,
    **policy: Any,
) -> tuple[AttachmentData, list[Any]]:
    decoder = feed(b64(data), 4096, extract_dir)
    assert decoder.failure is None
    return finish_attachment(
        decoder,
        attachment_type=attachment_type,
        manifest_type=manifest_type,
        file_name=file_name,
        policy=AttachmentPolicy(extract_dir=extract_dir, **policy),
        used_names=used if used is not None else set(),
    )


def visible_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# Base64Decoder --------------------------------------------------------------------------------------

PAYLOAD = random.Random(102).randbytes(10_007)


@pytest.mark.parametrize("sizes", [1, 2, 3, 5, 7, 11, 4093, [1, 3, 5, 7], [7, 1, 1, 2]])
def test_decoder_chunked_digest_matches_hashlib(sizes: int | list[int]) -> None:
    decoder = feed(b64(PAYLOAD), sizes)
    assert decoder.failure is None
    assert decoder.size == len(PAYLOAD)
    assert decoder.digest.hexdigest() == sha(PAYLOAD)
    assert decoder.head == PAYLOAD[:8]
    assert decoder.had_line_breaks is False
    assert decoder.spool is None  # not a ZIP and no extraction directory: nothing is kept


@pytest.mark.parametrize("sizes", [2, 3, 5, 7, 64, [3, 5, 7]])
def test_decoder_with_line_breaks(sizes: int | list[int]) -> None:
    wrapped = base64.encodebytes(PAYLOAD).decode("ascii")  # 76-character lines
    assert "\n" in wrapped.strip()
    decoder = feed(wrapped, sizes)
    assert decoder.failure is None
    assert decoder.digest.hexdigest() == sha(PAYLOAD)
    assert decoder.size == len(PAYLOAD)
    assert decoder.had_line_breaks is True


def test_decoder_crlf_and_spaces() -> None:
    text = "\r\n  ".join(b64(PAYLOAD)[i : i + 60] for i in range(0, len(b64(PAYLOAD)), 60))
    decoder = feed(text, 997)
    assert decoder.failure is None
    assert decoder.digest.hexdigest() == sha(PAYLOAD)
    assert decoder.had_line_breaks is True


def test_decoder_line_break_in_its_own_chunk() -> None:
    decoder = Base64Decoder(PATH, None)
    for part in ("QUJD", "\n", "REVG"):
        decoder.write(part)
    decoder.close()
    assert decoder.failure is None
    assert decoder.had_line_breaks is True


def test_decoder_empty_content() -> None:
    decoder = feed("", 1)
    assert decoder.failure is None
    assert decoder.size == 0
    assert decoder.digest.hexdigest() == sha(b"")


@given(
    data=st.binary(max_size=600),
    fffd_at=st.lists(st.integers(min_value=0, max_value=600), max_size=6),
    sizes=st.lists(st.integers(min_value=1, max_value=13), min_size=1, max_size=5),
)
@settings(max_examples=150, deadline=None)
def test_decoder_properties(data: bytes, fffd_at: list[int], sizes: list[int]) -> None:
    for position in sorted(fffd_at, reverse=True):
        data = data[:position] + REPLACEMENT_CHAR + data[position:]
    decoder = feed(b64(data), sizes)
    assert decoder.failure is None
    assert decoder.size == len(data)
    assert decoder.digest.hexdigest() == sha(data)
    assert decoder.replacement_chars == data.count(REPLACEMENT_CHAR)
    decoder.discard()


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (b"ab\xef", b"\xbf\xbdc"),  # EF | BF BD
        (b"a\xef\xbf", b"\xbdcd"),  # EF BF | BD
        (b"\xef\xbf\xbd", b"abc"),  # wholly in the first group
        (b"ab\xef", b"\xbf\xbd\xef"),  # one split, one incomplete at the end
    ],
)
def test_replacement_char_split_across_chunks_counts_once(first: bytes, second: bytes) -> None:
    data = first + second
    text = b64(data)
    assert len(b64(first)) == 4  # the split falls exactly on a decoded-chunk boundary
    decoder = Base64Decoder(PATH, None)
    decoder.write(text[:4])
    decoder.write(text[4:])
    decoder.close()
    assert decoder.failure is None
    assert decoder.replacement_chars == data.count(REPLACEMENT_CHAR) == 1


def test_replacement_chars_back_to_back_across_many_chunks() -> None:
    data = REPLACEMENT_CHAR * 40  # 120 bytes, every group boundary splits some sequence or not
    decoder = feed(b64(data), 4)
    assert decoder.replacement_chars == 40


@pytest.mark.parametrize(
    ("text", "sizes"),
    [
        ("QUJD*EVG", 8),  # a character outside the alphabet
        ("QUJD REVG!!!!", 13),
        ("QUJD-_==", 8),  # URL-safe alphabet is not base64
        ("QQ==QUJD", 8),  # data after padding, in one chunk
        ("QQ==QUJD", 4),  # data after padding, in a later chunk
        ("QQ==\nQUJD", [5, 4]),
        ("QUJDR", 5),  # truncated: a lone character
        ("QUJDREV", 2),  # truncated: three characters of a group
        ("Q===", 4),  # padding too long
        ("=QUJ", 4),
    ],
)
def test_decoder_failures(text: str, sizes: int | list[int]) -> None:
    decoder = feed(text, sizes)
    assert decoder.failure is not None
    assert decoder.failure.code == "Client.EdxmlAttachmentBase64"
    assert decoder.failure.severity is Severity.ERROR
    assert decoder.failure.path == PATH
    assert decoder.spool is None


def test_decoder_ignores_input_after_failure(tmp_path: Path) -> None:
    zipped = zip_bytes({"a.txt": b"hello"})
    decoder = Base64Decoder(PATH, tmp_path)
    decoder.write(b64(zipped)[:8])
    assert decoder.spool is not None
    decoder.write("!!!!")
    assert decoder.failure is not None
    size = decoder.size
    decoder.write(b64(zipped)[8:])
    decoder.close()
    assert decoder.size == size
    assert decoder.failure.code == "Client.EdxmlAttachmentBase64"
    assert decoder.spool is None
    assert visible_files(tmp_path) == []  # the partial spool file was removed


# looks_text_decoded --------------------------------------------------------------------------------

RANDOM_BINARY = random.Random(2016).randbytes(30_000)
TEXT_DECODED = RANDOM_BINARY.decode("utf-8", "replace").encode("utf-8")


def test_text_decoded_binary_is_detected() -> None:
    decoder = feed(b64(TEXT_DECODED), 4096)
    assert decoder.replacement_chars == TEXT_DECODED.count(REPLACEMENT_CHAR) > 1000
    assert looks_text_decoded(decoder, ("application/pdf", None)) is True
    assert looks_text_decoded(decoder, (None, None)) is True


def test_random_binary_is_not_text_decoded() -> None:
    decoder = feed(b64(RANDOM_BINARY), 4096)
    assert decoder.replacement_chars < 16
    assert looks_text_decoded(decoder, ("application/pdf", "application/pdf")) is False


@pytest.mark.parametrize(
    "types", [("text/plain", None), (None, "text/plain"), ("application/zip", "Text/Plain; charset=utf-8")]
)
def test_text_types_are_never_text_decoded(types: tuple[str | None, str | None]) -> None:
    decoder = feed(b64(TEXT_DECODED), 4096)
    assert decoder.replacement_chars > 1000
    assert looks_text_decoded(decoder, types) is False


def test_few_replacement_chars_in_a_large_file_are_not_corruption() -> None:
    data = RANDOM_BINARY + REPLACEMENT_CHAR * 20  # 20 in 30 KB: below one per 300 bytes
    decoder = feed(b64(data), 4096)
    assert decoder.replacement_chars >= 20
    assert looks_text_decoded(decoder, ("application/pdf", None)) is False


def test_the_corrupted_sample_is_detected_by_read_package(samples: Path) -> None:
    from esb.errors import EdxmlInvalid

    with pytest.raises(EdxmlInvalid) as caught:
        read_package(samples / "ANTIEXAMPLE_mic_edoc_corrupted_binary.edxml")
    assert caught.value.code == "Client.EdxmlAttachmentCorrupted"
    corrupted = [i for i in caught.value.issues if i.code == "Client.EdxmlAttachmentCorrupted"]
    assert [i.path for i in corrupted] == ["/edXML/AttachmentEncoded/Attachment[1]/ContentTransferEncoded"]


@pytest.fixture
def samples() -> Path:
    folder = Path(__file__).resolve().parents[2].parent / "shared" / "samples" / "edxml"
    if not folder.is_dir():
        pytest.skip(f"shared samples not found at {folder}")
    return folder


# finish_attachment: the VNPT ZIP convention ---------------------------------------------------------

INNER = b"%PDF-1.4\n" + random.Random(7).randbytes(3000)
ZIPPED = zip_bytes({"0f1e2d3c.pdf": INNER})


@pytest.mark.parametrize(
    "attachment_type", ["application/zip", "Application/ZIP", "application/zip; name=x.zip"]
)
@pytest.mark.parametrize("manifest_type", ["application/pdf", None])
def test_zip_convention_is_unwrapped(attachment_type: str, manifest_type: str | None) -> None:
    data, issues = finish(ZIPPED, attachment_type=attachment_type, manifest_type=manifest_type)
    assert issues == []
    assert data.unwrapped_zip is True
    assert (data.size, data.sha256) == (len(INNER), sha(INNER))
    assert (data.encoded_size, data.encoded_sha256) == (len(ZIPPED), sha(ZIPPED))
    assert data.location is None


def test_zip_convention_unwrapped_into_extract_dir(tmp_path: Path) -> None:
    data, issues = finish(
        ZIPPED, attachment_type="application/zip", manifest_type="application/pdf", extract_dir=tmp_path
    )
    assert issues == []
    assert data.unwrapped_zip is True
    assert data.location == str(tmp_path / "report.pdf")
    assert (tmp_path / "report.pdf").read_bytes() == INNER
    assert visible_files(tmp_path) == ["report.pdf"]  # no spool left behind


def test_zip_with_a_directory_entry_and_one_file_is_unwrapped() -> None:
    zipped = zip_bytes({"docs/x.pdf": INNER}, directories=("docs/",))
    data, issues = finish(zipped, attachment_type="application/zip", manifest_type="application/pdf")
    assert issues == []
    assert data.unwrapped_zip is True
    assert data.sha256 == sha(INNER)


NOT_ZIP = b"%PDF-1.4 not a zip at all" + bytes(100)


@pytest.mark.parametrize(
    ("content", "attachment_type", "manifest_type"),
    [
        (NOT_ZIP, "application/zip", "application/pdf"),  # head is not PK
        (ZIPPED, "application/pdf", "application/pdf"),  # the attachment does not say zip
        (ZIPPED, None, "application/pdf"),
        (ZIPPED, "application/zip", "application/zip"),  # a real ZIP document
        (ZIPPED, "application/zip", "application/zip; charset=binary"),
    ],
)
def test_zip_convention_negative_cases(
    tmp_path: Path, content: bytes, attachment_type: str | None, manifest_type: str | None
) -> None:
    data, issues = finish(
        content, attachment_type=attachment_type, manifest_type=manifest_type, extract_dir=tmp_path
    )
    assert issues == []
    assert data.unwrapped_zip is False
    assert (data.size, data.sha256) == (len(content), sha(content))
    assert (data.encoded_size, data.encoded_sha256) == (data.size, data.sha256)
    assert (tmp_path / "report.pdf").read_bytes() == content
    assert visible_files(tmp_path) == ["report.pdf"]


@pytest.mark.parametrize("extract", [False, True])
def test_multi_entry_zip_is_kept(tmp_path: Path, extract: bool) -> None:
    zipped = zip_bytes({"a.pdf": INNER, "b.pdf": b"second"})
    data, issues = finish(
        zipped,
        attachment_type="application/zip",
        manifest_type="application/pdf",
        extract_dir=tmp_path if extract else None,
    )
    assert [(i.code, i.severity, i.path) for i in issues] == [("W.ZipNotSingleEntry", Severity.WARNING, PATH)]
    assert "2 files" in issues[0].message
    assert data.unwrapped_zip is False
    assert (data.size, data.sha256) == (len(zipped), sha(zipped))
    if extract:
        assert (tmp_path / "report.pdf").read_bytes() == zipped
        assert visible_files(tmp_path) == ["report.pdf"]
    else:
        assert data.location is None


@pytest.mark.parametrize("extract", [False, True])
def test_corrupt_zip_with_pk_header_is_kept(tmp_path: Path, extract: bool) -> None:
    corrupt = b"PK\x03\x04" + random.Random(3).randbytes(500)
    data, issues = finish(
        corrupt,
        attachment_type="application/zip",
        manifest_type="application/pdf",
        extract_dir=tmp_path if extract else None,
    )
    assert [(i.code, i.severity, i.path) for i in issues] == [("W.ZipUnreadable", Severity.WARNING, PATH)]
    assert data.unwrapped_zip is False
    assert (data.size, data.sha256) == (len(corrupt), sha(corrupt))
    if extract:
        assert (tmp_path / "report.pdf").read_bytes() == corrupt
        assert visible_files(tmp_path) == ["report.pdf"]


def test_zip_with_bad_crc_is_kept(tmp_path: Path) -> None:
    stored = io.BytesIO()
    with zipfile.ZipFile(stored, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("x.pdf", INNER)
    damaged = bytearray(stored.getvalue())
    offset = damaged.index(INNER[:32]) + 100
    damaged[offset] ^= 0xFF  # the stored content no longer matches its CRC
    data, issues = finish(
        bytes(damaged),
        attachment_type="application/zip",
        manifest_type="application/pdf",
        extract_dir=tmp_path,
    )
    assert [i.code for i in issues] == ["W.ZipUnreadable"]
    assert data.unwrapped_zip is False
    assert data.sha256 == sha(bytes(damaged))
    assert not any(name.startswith(".part-") for name in visible_files(tmp_path))
    assert len(visible_files(tmp_path)) == 1
    assert Path(str(data.location)).read_bytes() == bytes(damaged)


def test_empty_attachment_is_extracted_as_empty_file(tmp_path: Path) -> None:
    data, issues = finish(b"", attachment_type="application/pdf", manifest_type=None, extract_dir=tmp_path)
    assert issues == []
    assert (data.size, data.sha256) == (0, sha(b""))
    assert (tmp_path / "report.pdf").read_bytes() == b""


def test_max_unzipped_bytes_in_finish_attachment(tmp_path: Path) -> None:
    data, issues = finish(
        ZIPPED,
        attachment_type="application/zip",
        manifest_type="application/pdf",
        extract_dir=tmp_path,
        max_unzipped_bytes=len(INNER) - 1,
    )
    assert [i.code for i in issues] == ["W.ZipUnreadable"]
    assert f"exceeds {len(INNER) - 1} bytes" in issues[0].message
    assert data.unwrapped_zip is False
    assert (data.size, data.sha256) == (len(ZIPPED), sha(ZIPPED))
    # no partial unzipped file: only the ZIP as received is left
    assert len(visible_files(tmp_path)) == 1
    assert Path(str(data.location)).read_bytes() == ZIPPED


def test_max_unzipped_bytes_exactly_at_the_limit_unwraps() -> None:
    data, issues = finish(
        ZIPPED,
        attachment_type="application/zip",
        manifest_type="application/pdf",
        max_unzipped_bytes=len(INNER),
    )
    assert issues == []
    assert data.unwrapped_zip is True
    assert data.sha256 == sha(INNER)


# read_package with a small max_unzipped_bytes ----------------------------------------------------------

SENDER = {"organ_id": "000.00.11.H53", "organ_name": "Sở Tài chính tỉnh Tây Ninh"}
RECEIVER = {"organ_id": "000.00.01.A53", "organ_name": "Văn phòng Tỉnh ủy Tây Ninh"}


def build_package(files: list[tuple[Path, str]], *, wrap: bool) -> bytes:
    spec = {
        "from": SENDER,
        "to": [RECEIVER],
        "code": {"number": "12", "notation": "STC-VP"},
        "promulgation": {"date": "2024/01/05"},
        "subject": "Thử nghiệm tệp đính kèm",
        "signer": {"full_name": "Nguyễn Văn A"},
        "attachments": [
            {"file": str(path), "name": name, "content_type": "application/pdf"} for path, name in files
        ],
    }
    built = package_from_spec(spec, now=datetime(2024, 1, 5, 8, 0, 0, tzinfo=VN_TZ))
    package = built.package
    assert isinstance(package, EdocPackage)
    if wrap:
        package = wrap_attachments_as_zip(package)
    out = io.BytesIO()
    write_package(
        package,
        out,
        files={cid: Path(p) for cid, p in built.attachment_files},
        append_trace=built.sender_trace,
    )
    return out.getvalue()


@pytest.fixture
def pdf_file(tmp_path: Path) -> Path:
    path = tmp_path / "src" / "a.pdf"
    path.parent.mkdir()
    path.write_bytes(INNER)
    return path


def test_read_package_with_small_max_unzipped_bytes(tmp_path: Path, pdf_file: Path) -> None:
    raw = build_package([(pdf_file, "a.pdf")], wrap=True)
    extract = tmp_path / "out"
    result = read_package(raw, attachments=AttachmentPolicy(extract_dir=extract, max_unzipped_bytes=100))
    assert [(w.code, w.path) for w in result.warnings] == [("W.ZipUnreadable", PATH)]
    assert "exceeds 100 bytes" in result.warnings[0].message
    assert isinstance(result.package, EdocPackage)
    (attachment,) = result.package.attachments
    assert attachment.data.unwrapped_zip is False
    assert attachment.data.sha256 == attachment.data.encoded_sha256 != sha(INNER)
    files = visible_files(extract)
    assert len(files) == 1  # the ZIP as received, no partial unzipped file, no spool
    kept = Path(str(attachment.data.location))
    assert kept.parent == extract
    assert sha(kept.read_bytes()) == attachment.data.sha256
    assert zipfile.ZipFile(kept).read(zipfile.ZipFile(kept).namelist()[0]) == INNER

    # the same package with the default policy unwraps
    roomy = read_package(raw, attachments=AttachmentPolicy(extract_dir=tmp_path / "roomy"))
    assert roomy.warnings == ()
    assert isinstance(roomy.package, EdocPackage)
    assert roomy.package.attachments[0].data.unwrapped_zip is True
    assert (tmp_path / "roomy" / "a.pdf").read_bytes() == INNER


def test_read_package_with_small_max_unzipped_bytes_without_extraction(pdf_file: Path) -> None:
    raw = build_package([(pdf_file, "a.pdf")], wrap=True)
    result = read_package(raw, attachments=AttachmentPolicy(max_unzipped_bytes=100))
    assert [w.code for w in result.warnings] == ["W.ZipUnreadable"]
    assert isinstance(result.package, EdocPackage)
    assert result.package.attachments[0].data.unwrapped_zip is False
    assert result.package.attachments[0].data.location is None


def test_kept_zip_uses_the_attachment_name(tmp_path: Path, pdf_file: Path) -> None:
    raw = build_package([(pdf_file, "a.pdf")], wrap=True)
    extract = tmp_path / "out"
    read_package(raw, attachments=AttachmentPolicy(extract_dir=extract, max_unzipped_bytes=100))
    assert visible_files(extract) == ["a.pdf"]


# extraction names --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system32\\x.dll", "x.dll"),
        ("C:\\x\\y.pdf", "y.pdf"),
        ("/abs/path/z.doc", "z.doc"),
        ("a\x00b\nc\x7f.pdf", "a_b_c_.pdf"),
        ('q?u*o"t<e>|s:.txt', "q_u_o_t_e__s_.txt"),
        (".bashrc", "bashrc"),
        ("...hidden.pdf", "hidden.pdf"),
        ("  spaced name.pdf  ", "spaced name.pdf"),
        ("Công văn số 12.pdf", "Công văn số 12.pdf"),
        ("", "attachment"),
        (None, "attachment"),
        ("..", "attachment"),
        ("../", "attachment"),
        ("   ", "attachment"),
    ],
)
def test_safe_file_name(name: str | None, expected: str) -> None:
    assert safe_file_name(name) == expected


def test_safe_file_name_fallback_and_length() -> None:
    assert safe_file_name("", fallback="tep-dinh-kem") == "tep-dinh-kem"
    long_name = "x" * 500 + ".pdf"
    assert len(safe_file_name(long_name)) == 200


def test_extraction_dedupes_names(tmp_path: Path, pdf_file: Path) -> None:
    other = pdf_file.parent / "b.pdf"
    other.write_bytes(b"%PDF-1.4 other")
    third = pdf_file.parent / "c.pdf"
    third.write_bytes(b"%PDF-1.4 third")
    raw = build_package([(pdf_file, "a.pdf"), (other, "a.pdf"), (third, "A.PDF")], wrap=False)
    extract = tmp_path / "out"
    result = read_package(raw, attachments=AttachmentPolicy(extract_dir=extract))
    assert isinstance(result.package, EdocPackage)
    locations = [Path(str(a.data.location)).name for a in result.package.attachments]
    assert locations == ["a.pdf", "a (2).pdf", "A (3).PDF"]
    assert visible_files(extract) == ["A (3).PDF", "a (2).pdf", "a.pdf"]
    assert (extract / "a.pdf").read_bytes() == INNER
    assert (extract / "a (2).pdf").read_bytes() == b"%PDF-1.4 other"
    assert (extract / "A (3).PDF").read_bytes() == b"%PDF-1.4 third"


def test_extraction_does_not_overwrite_existing_files(tmp_path: Path) -> None:
    (tmp_path / "report.pdf").write_bytes(b"keep me")
    data, _ = finish(NOT_ZIP, attachment_type="application/pdf", manifest_type=None, extract_dir=tmp_path)
    assert data.location == str(tmp_path / "report (2).pdf")
    assert (tmp_path / "report.pdf").read_bytes() == b"keep me"


def test_extraction_of_a_traversal_name_stays_inside(tmp_path: Path) -> None:
    extract = tmp_path / "out"
    extract.mkdir()
    data, _ = finish(
        NOT_ZIP,
        attachment_type="application/pdf",
        manifest_type=None,
        extract_dir=extract,
        file_name="../../escape.pdf",
    )
    assert data.location == str(extract / "escape.pdf")
    assert visible_files(tmp_path) == ["out"]


def test_extraction_without_extension_dedupes(tmp_path: Path) -> None:
    used: set[str] = set()
    first, _ = finish(
        NOT_ZIP, attachment_type=None, manifest_type=None, extract_dir=tmp_path, file_name="README", used=used
    )
    second, _ = finish(
        NOT_ZIP, attachment_type=None, manifest_type=None, extract_dir=tmp_path, file_name="README", used=used
    )
    assert [Path(str(first.location)).name, Path(str(second.location)).name] == ["README", "README (2)"]


# writing --------------------------------------------------------------------------------------------


def test_zip_single_file_and_unwrap_round_trip(tmp_path: Path) -> None:
    source = tmp_path / "Công văn.docx"
    content = random.Random(11).randbytes(50_000)
    source.write_bytes(content)
    work = tmp_path / "work"
    work.mkdir()
    zipped = zip_single_file(source, source.name, work)
    assert zipped.parent == work
    assert zipped.suffix == ".zip"
    with zipfile.ZipFile(zipped) as archive:
        names = archive.namelist()
        assert len(names) == 1
        assert names[0].endswith(".docx")
        assert archive.read(names[0]) == content
    raw = zipped.read_bytes()
    assert raw.startswith(b"PK\x03\x04")
    data, issues = finish(raw, attachment_type="application/zip", manifest_type="application/msword")
    assert issues == []
    assert data.unwrapped_zip is True
    assert (data.size, data.sha256) == (len(content), sha(content))
    assert (data.encoded_size, data.encoded_sha256) == (len(raw), sha(raw))


def test_zip_single_file_without_extension(tmp_path: Path) -> None:
    source = tmp_path / "data"
    source.write_bytes(b"x")
    with zipfile.ZipFile(zip_single_file(source, "data", tmp_path)) as archive:
        assert archive.namelist()[0].endswith(".bin")


@pytest.mark.parametrize("size", [0, 1, 2, 3, 1000, ENCODE_CHUNK, 2 * ENCODE_CHUNK + 5])
def test_encode_base64_is_one_line_and_decodes_back(size: int) -> None:
    content = os.urandom(size)
    sink: list[EncodedFile] = []
    chunks = list(encode_base64(io.BytesIO(content), sink))
    encoded = b"".join(chunks)
    assert b"\n" not in encoded
    assert b"\r" not in encoded
    assert base64.b64decode(encoded, validate=True) == content
    assert sink == [EncodedFile(size, sha(content))]
    # every chunk but the last encodes a multiple of 3 bytes: no padding in the middle
    assert all(b"=" not in chunk for chunk in chunks[:-1])
    # the decoder reads it back
    decoder = feed(encoded.decode("ascii"), 65_536)
    assert decoder.failure is None
    assert decoder.digest.hexdigest() == sha(content)


def test_file_digest(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    content = os.urandom(3 * 1024 * 1024 + 7)
    path.write_bytes(content)
    assert file_digest(path) == EncodedFile(len(content), sha(content))
