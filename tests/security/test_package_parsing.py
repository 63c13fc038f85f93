"""The small-document parse of package signatures: same refusals, same codes, same tree as streaming.

:func:`esb.xml_processing.parsing.parse_small` never refuses by itself: it either returns the
tree or hands the document to the streaming parser.  These tests check, for every kind of
hostile or over-limit input, that the fast path declines it and that the verdict (the
``XmlInputError`` code) is the one the streaming path gives; and that for accepted documents
both paths give the same tree and the same signature report.
"""

from __future__ import annotations

import base64
import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from lxml import etree

from esb.domain.signatures import Verdict
from esb.errors import XmlInputError
from esb.security import package_signature as ps
from esb.security import pki
from esb.security.signing_key import SigningKey
from esb.xml_processing.parsing import XmlLimits, parse_document, parse_small, parse_untrusted

NOW = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
CTE = "ContentTransferEncoded"
EDXML_NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"


def package(attachment: str = "QUJD", *, extra: str = "", before_root: str = "") -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n{before_root}'
        f'<edXML xmlns="{EDXML_NS}"><edXMLEnvelope><edXMLHeader><MessageHeader>'
        f"<Subject>Công văn</Subject>{extra}</MessageHeader></edXMLHeader></edXMLEnvelope>"
        f"<edXMLAttach><Attachment><{CTE}>{attachment}</{CTE}></Attachment></edXMLAttach></edXML>"
    ).encode()


def nested(depth: int) -> bytes:
    return b"<a>" * depth + b"</a>" * depth


HOSTILE = [
    ("doctype", b'<?xml version="1.0"?><!DOCTYPE r><r/>', XmlLimits()),
    ("doctype_after_comment", b"<!-- x --><?pi y?>\n<!DOCTYPE r [<!ENTITY e 'v'>]><r>&e;</r>", XmlLimits()),
    ("external_entity", b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>', XmlLimits()),
    ("undeclared_entity", b"<a>&foo;</a>", XmlLimits()),
    ("too_deep", nested(100), XmlLimits()),
    ("too_deep_by_one", nested(11), XmlLimits(max_depth=10)),
    ("too_many_elements", b"<a>" + b"<b/>" * 50 + b"</a>", XmlLimits(max_elements=10)),
    ("too_many_elements_by_one", b"<a>" + b"<b/>" * 10 + b"</a>", XmlLimits(max_elements=10)),
    ("too_many_attributes", b"<a " + b" ".join(b'x%d="1"' % i for i in range(65)) + b"/>", XmlLimits()),
    ("unbound_attribute_prefix", b'<a><b xlink:href="x"/></a>', XmlLimits()),
    ("unbound_element_prefix", b"<a><edXML:b/></a>", XmlLimits()),
    ("too_large", b"<a>" + b"x" * 5000 + b"</a>", XmlLimits(max_bytes=1000)),
    ("long_text", b"<a><Subject>" + b"x" * 3000 + b"</Subject></a>", XmlLimits(max_text_chars=1000)),
    (
        "long_tail_of_attachment",
        b"<a><" + CTE.encode() + b"/>" + b"x" * 3000 + b"</a>",
        XmlLimits(max_text_chars=1000),
    ),
    ("truncated", b"<edXML><edXMLEnvelope>", XmlLimits()),
    ("not_xml", b'{"edXML": 1}', XmlLimits()),
    ("empty", b"", XmlLimits()),
    ("latin1", b"<a>\xe9\xff</a>", XmlLimits()),
    ("two_roots", b"<a/><b/>", XmlLimits()),
]


def streaming_code(data: bytes, limits: XmlLimits) -> str:
    with pytest.raises(XmlInputError) as caught:
        parse_untrusted(data, limits)
    return caught.value.code


@pytest.mark.parametrize(("name", "data", "limits"), HOSTILE, ids=[case[0] for case in HOSTILE])
def test_the_fast_path_declines_and_the_code_is_the_streaming_one(
    name: str, data: bytes, limits: XmlLimits
) -> None:
    assert parse_small(data, limits, long_text_in=CTE) is None
    expected = streaming_code(data, limits)
    with pytest.raises(XmlInputError) as caught:
        parse_document(data, limits, long_text_in=CTE)
    assert caught.value.code == expected
    with pytest.raises(XmlInputError) as caught:
        ps._parse(data, limits)
    assert caught.value.code == expected


def test_at_the_limits_the_fast_path_accepts() -> None:
    assert parse_small(nested(10), XmlLimits(max_depth=10)) is not None
    assert parse_small(b"<a>" + b"<b/>" * 9 + b"</a>", XmlLimits(max_elements=10)) is not None
    many = b"<a " + b" ".join(b'x%d="1"' % i for i in range(64)) + b' xmlns:p="urn:p"/>'
    assert parse_small(many, XmlLimits()) is not None
    assert parse_small(b"<a><S>" + b"x" * 1000 + b"</S></a>", XmlLimits(max_text_chars=1000)) is not None


def test_long_text_inside_an_attachment_is_exempt_as_when_streaming() -> None:
    data = package("QUJD" * 1000)
    limits = XmlLimits(max_text_chars=1000)
    root = parse_small(data, limits, long_text_in=CTE)
    assert root is not None
    assert parse_small(data, limits) is None  # without the exemption, the text is too long
    assert etree.tostring(root, method="c14n") == etree.tostring(ps._parse(data, limits), method="c14n")


@pytest.mark.parametrize(
    "data",
    [
        "<a>é</a>".encode("utf-16"),  # BOM
        '<?xml version="1.0" encoding="UTF-16"?><a>é</a>'.encode("utf-16-le"),  # no BOM
        '<?xml version="1.0" encoding="ISO-8859-1"?><a>\xe9</a>'.encode("latin-1"),
        b" <a/>",
    ],
    ids=["utf16_bom", "utf16_no_bom", "latin1_declared", "leading_space"],
)
def test_other_encodings_take_the_streaming_path(data: bytes) -> None:
    assert parse_small(data) is None
    try:
        expected: object = etree.tostring(parse_untrusted(data), method="c14n")
    except XmlInputError as error:
        expected = error.code
    try:
        got: object = etree.tostring(parse_document(data), method="c14n")
    except XmlInputError as error:
        got = error.code
    assert got == expected


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> SigningKey:
    leaf = pki.make_self_signed_signing_certificate("Leaf", now=NOW, days=30)
    return SigningKey.from_pem(leaf.key_pem(), leaf.certificate_pem())


def _streaming_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ps, "FAST_PARSE_MAX_BYTES", -1)


def test_both_paths_give_the_same_tree_and_report(
    key: SigningKey, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    big = base64.b64encode(bytes(range(256)) * 5000).decode()  # over 1 MiB: pieces when streaming
    data = package(
        big, extra="<!-- a comment --><Note>a &amp; b<![CDATA[<c>]]></Note>", before_root="<!-- c -->\n"
    )
    out = io.BytesIO()
    ps.sign_package(data, out, key=key)
    signed = out.getvalue()
    (tmp_path / "signed.edxml").write_bytes(signed)
    fast = ps._parse(signed, XmlLimits())
    fast_report = ps.verify_package(signed, trust=None, at=NOW, registered_signers=[key.sha256])
    fast_from_path = ps.verify_package(
        tmp_path / "signed.edxml", trust=None, at=NOW, registered_signers=[key.sha256]
    )
    _streaming_only(monkeypatch)
    streamed = ps._parse(signed, XmlLimits())
    streamed_report = ps.verify_package(signed, trust=None, at=NOW, registered_signers=[key.sha256])
    assert etree.tostring(fast, method="c14n") == etree.tostring(streamed, method="c14n")
    assert (fast_report.verdict, fast_report.reason) == (Verdict.VALID, "ok")
    assert fast_report == streamed_report == fast_from_path


def test_signing_writes_the_same_bytes_either_way(key: SigningKey, monkeypatch: pytest.MonkeyPatch) -> None:
    data = package("QUJD" * 300, extra="<!-- a comment --><Note>x</Note>")
    fast, streamed = io.BytesIO(), io.BytesIO()
    ps.sign_package(data, fast, key=key)
    _streaming_only(monkeypatch)
    ps.sign_package(data, streamed, key=key)
    # The signature values may differ only if the signed bytes did: RSA PKCS#1 v1.5 is deterministic.
    assert fast.getvalue() == streamed.getvalue()
