"""The malformed-input catalogue: each hostile or broken input gets its own stable code."""

from __future__ import annotations

from pathlib import Path

import pytest

from esb.errors import XmlInputError
from esb.xml_processing.parsing import XmlLimits, parse_stream, parse_untrusted

CATALOGUE = [
    (
        "xxe_file",
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>',
        "Client.XmlDtdForbidden",
    ),
    (
        "xxe_http",
        b'<!DOCTYPE r [<!ENTITY x SYSTEM "http://127.0.0.1:9/x">]><r>&x;</r>',
        "Client.XmlDtdForbidden",
    ),
    (
        "billion_laughs",
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
        b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]><lolz>&lol3;</lolz>',
        "Client.XmlDtdForbidden",
    ),
    ("external_dtd", b'<!DOCTYPE r SYSTEM "http://127.0.0.1:9/x.dtd"><r/>', "Client.XmlDtdForbidden"),
    ("undeclared_entity", b"<a>&foo;</a>", "Client.XmlEntityForbidden"),
    ("truncated", b"<edXML><edXMLEnvelope><edXMLHeader>", "Client.XmlTruncated"),
    ("truncated_in_text", b"<a><b>some te", "Client.XmlTruncated"),
    ("not_xml_pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj", "Client.XmlNotXml"),
    ("not_xml_json", b'{"edXML": 1}', "Client.XmlNotXml"),
    ("empty", b"", "Client.XmlEmpty"),
    ("tag_mismatch", b"<a><b></a>", "Client.XmlNotWellFormed"),
    ("two_roots", b"<a/><b/>", "Client.XmlNotWellFormed"),
    ("latin1_bytes", b"<a>\xe9\xff</a>", "Client.XmlEncoding"),
    ("undeclared_attribute_prefix", b'<a><b xlink:href="x"/></a>', "Client.XmlNotNamespaceWellFormed"),
    ("undeclared_element_prefix", b"<a><edXML:b/></a>", "Client.XmlNotNamespaceWellFormed"),
    ("too_deep", b"<a>" * 100 + b"</a>" * 100, "Client.XmlTooDeep"),
]


@pytest.mark.parametrize(("name", "data", "code"), CATALOGUE, ids=[c[0] for c in CATALOGUE])
def test_catalogue(name: str, data: bytes, code: str) -> None:
    with pytest.raises(XmlInputError) as caught:
        parse_untrusted(data)
    assert caught.value.code == code
    assert caught.value.message
    assert "Traceback" not in caught.value.message


def test_external_entity_content_never_appears(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-FILE-CONTENT")
    data = f'<!DOCTYPE r [<!ENTITY x SYSTEM "file://{secret}">]><r>&x;</r>'.encode()
    with pytest.raises(XmlInputError) as caught:
        parse_untrusted(data)
    assert "TOP-SECRET" not in str(caught.value)


def test_size_limit() -> None:
    with pytest.raises(XmlInputError) as caught:
        parse_untrusted(b"<a>" + b"x" * 5000 + b"</a>", XmlLimits(max_bytes=1000))
    assert caught.value.code == "Client.XmlTooLarge"


def test_text_node_limit_applies_to_undiverted_text() -> None:
    with pytest.raises(XmlInputError) as caught:
        parse_untrusted(b"<a><Subject>" + b"x" * 3000 + b"</Subject></a>", XmlLimits(max_text_chars=1000))
    assert caught.value.code == "Client.XmlTooLarge"
    assert "/a/Subject" in caught.value.message


def test_element_count_limit() -> None:
    with pytest.raises(XmlInputError) as caught:
        parse_untrusted(b"<a>" + b"<b/>" * 50 + b"</a>", XmlLimits(max_elements=10))
    assert caught.value.code == "Client.XmlTooLarge"


class _Collect:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.closed = False

    def write(self, text: str) -> None:
        self.parts.append(text)

    def close(self) -> None:
        self.closed = True


def test_diverted_text_bypasses_the_10mb_text_node_limit() -> None:
    sink = _Collect()
    body = b"A" * (12 * 1024 * 1024)
    chunks = [b"<r><big>", *[body[i : i + 65536] for i in range(0, len(body), 65536)], b"</big><s>k</s></r>"]
    root = parse_stream(chunks, divert=lambda tag, depth: sink if tag == "big" else None)
    assert sink.closed
    assert sum(len(p) for p in sink.parts) == len(body)
    assert root.find("big").text is None  # the tree never held the content
    assert root.find("s").text == "k"


def test_comments_and_processing_instructions_are_dropped() -> None:
    root = parse_untrusted(b"<a><!-- c --><?pi x?><b>t</b></a>")
    assert [child.tag for child in root] == ["b"]
