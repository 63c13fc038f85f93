"""The XSD schemas of the project, compiled once from ``xsd/`` and resolved locally, never fetched.

This module is the only place that compiles an XSD.  Schema files are parsed with a hardened parser
(no entities, no DTD, no network) and a resolver that refuses every remote URL and every file outside
the schema directory, so a schema that imports ``http://…`` fails at start-up instead of reaching out.

``SchemaRegistry.validate`` returns a list of ``SchemaViolation``; it never raises on an invalid
document.  Violation paths use local names only (``/edXML/edXMLEnvelope/edXMLHeader/MessageHeader/To[2]``),
whatever prefixes the producer used, and messages never repeat the offending value (document content
stays out of logs and faults; the path and line locate it).  See ``xsd/CATALOG.md``.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, cast
from urllib.parse import unquote, urlsplit

from lxml import etree

from esb.errors import ConfigurationError

__all__ = ["SchemaName", "SchemaRegistry", "SchemaViolation"]


@dataclass(frozen=True)
class SchemaViolation:
    """One reason a document does not match a schema.

    ``path`` is the element path in local names (positions only where siblings share a name, as in
    ``/edXML/edXMLEnvelope/edXMLHeader/MessageHeader/To[2]/OrganId``); ``line`` is the source line
    (0 when unknown); ``message`` is libxml2's message without namespace URIs or document values.
    """

    path: str
    line: int
    message: str


class SchemaName(StrEnum):
    """Every schema the project ships, as a path relative to the schema directory."""

    EDXML_STRICT = "edxml/qcvn102-2016/edxml-strict.xsd"
    EDXML_TOLERANT = "edxml/qcvn102-2016/edxml-tolerant.xsd"


class SchemaRegistry:
    """Compiled schemas over one schema directory.

    Each schema is compiled lazily, once, under a lock.  Validation with one compiled schema is
    serialised by a per-schema lock, because lxml keeps the error log on the shared schema object.
    """

    def __init__(self, xsd_dir: Path) -> None:
        self._xsd_dir = xsd_dir.resolve()
        self._compile_lock = threading.Lock()
        self._schemas: dict[SchemaName, etree.XMLSchema] = {}
        self._validate_locks = {name: threading.Lock() for name in SchemaName}

    @classmethod
    def default(cls) -> SchemaRegistry:
        """The project xsd/ directory: beside the esb package in a checkout, else where the wheel put it."""
        candidates = (
            Path(__file__).resolve().parents[2] / "xsd",
            Path(sys.prefix) / "share" / "lgsp-esb" / "xsd",
        )
        for candidate in candidates:
            if (candidate / SchemaName.EDXML_STRICT.value).is_file():
                return cls(candidate)
        raise ConfigurationError(
            "the xsd/ directory was not found (looked in " + ", ".join(str(c) for c in candidates) + ")"
        )

    @property
    def xsd_dir(self) -> Path:
        return self._xsd_dir

    def validate(self, name: SchemaName, tree: etree._Element | etree._ElementTree) -> list[SchemaViolation]:
        """Validate ``tree`` (a parsed tree or element) against schema ``name``; empty list if valid.

        Raises ``ConfigurationError`` only when the schema itself cannot be compiled.
        """
        schema = self._schema(name)
        root = tree.getroot() if isinstance(tree, etree._ElementTree) else tree
        with self._validate_locks[name]:
            if schema.validate(tree):
                return []
            entries = [e for e in cast("Iterable[_LogEntry]", schema.error_log) if e.level >= _ERROR_LEVEL]
        violations = [
            SchemaViolation(
                path=_readable_path(root, e.path), line=e.line or 0, message=_readable_message(e.message)
            )
            for e in entries
        ]
        return violations or [SchemaViolation(path="", line=0, message=f"not valid against {name.value}")]

    def check_all(self) -> None:
        """Compile every schema now; raise ``ConfigurationError`` naming the first file that fails."""
        for name in SchemaName:
            self._schema(name)

    def _schema(self, name: SchemaName) -> etree.XMLSchema:
        schema = self._schemas.get(name)
        if schema is None:
            with self._compile_lock:
                schema = self._schemas.get(name)
                if schema is None:
                    schema = _compile(self._xsd_dir, name)
                    self._schemas[name] = schema
        return schema


# --------------------------------------------------------------------------------------------------
# Compilation: hardened parser, local-only resolver
# --------------------------------------------------------------------------------------------------

_REMOTE_SCHEMES = frozenset({"http", "https", "ftp"})


class _LocalOnlyResolver(etree.Resolver):
    """Resolve schema files under the schema directory only; refuse everything else.

    Refusals are also recorded, because libxml2 may turn a failed ``xs:import`` into a mere warning.
    """

    def __init__(self, root: Path) -> None:
        super().__init__()
        self._root = root
        self.refused: list[str] = []

    def resolve(self, system_url: str, public_id: str, context: Any = None) -> Any:
        path = self._local_path(system_url)
        if path is None:
            self.refused.append(system_url)
            raise ConfigurationError(
                f"schema reference refused (only files under {self._root}): {system_url}"
            )
        # lxml-stubs 0.5 does not declare Resolver.resolve_filename.
        return self.resolve_filename(str(path), context)  # type: ignore[attr-defined]

    def _local_path(self, url: str | None) -> Path | None:
        if not url:
            return None
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme in _REMOTE_SCHEMES:
            return None
        if scheme == "file":
            if parts.netloc not in ("", "localhost"):
                return None
            raw = unquote(parts.path)
        elif scheme == "":
            raw = url
        else:
            return None
        path = Path(raw).resolve()
        return path if path.is_relative_to(self._root) and path.is_file() else None


def _compile(xsd_dir: Path, name: SchemaName) -> etree.XMLSchema:
    path = xsd_dir / name.value
    if not path.is_file():
        raise ConfigurationError(f"schema file missing: {name.value} (looked in {xsd_dir})")
    resolver = _LocalOnlyResolver(xsd_dir)
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    parser.resolvers.add(resolver)
    try:
        schema = etree.XMLSchema(etree.parse(str(path), parser))
    except ConfigurationError as exc:
        raise ConfigurationError(f"schema {name.value} does not compile: {exc.message}") from exc
    except etree.LxmlError as exc:  # XMLSchemaParseError, XMLSyntaxError
        if resolver.refused:
            raise _refused(name, resolver.refused) from exc
        raise ConfigurationError(f"schema {name.value} does not compile: {exc}") from exc
    if resolver.refused:
        raise _refused(name, resolver.refused)
    return schema


def _refused(name: SchemaName, urls: list[str]) -> ConfigurationError:
    return ConfigurationError(
        f"schema {name.value} does not compile: it refers to {', '.join(urls)}; "
        "schemas are resolved from the local schema directory only, never fetched"
    )


# --------------------------------------------------------------------------------------------------
# Readable violations
# --------------------------------------------------------------------------------------------------

_ERROR_LEVEL = 2  # libxml2 XML_ERR_ERROR (etree.ErrorLevels.ERROR)


class _LogEntry(Protocol):
    """The part of lxml's ``_LogEntry`` we read (lxml-stubs 0.5 does not describe it)."""

    @property
    def level(self) -> int: ...
    @property
    def line(self) -> int: ...
    @property
    def message(self) -> str: ...
    @property
    def path(self) -> str | None: ...


_SEGMENT = re.compile(r"(?P<name>[^\[\]/]+)(?:\[(?P<index>[0-9]+)\])?")
# A namespace URI in Clark notation, unless it qualifies a wildcard ("{uri}*" says which namespace).
_NAMESPACE_URI = re.compile(r"\{[A-Za-z][A-Za-z0-9+.-]*:[^{}\s']*\}(?!\*)")
# libxml2 quotes the offending value in these messages; the value is document content.
_QUOTED_VALUE = re.compile(r"The value '.*'(?= (?:is|has|must|does) )", re.DOTALL)
_LEADING_VALUE = re.compile(
    r"^(Element '[^']*'(?:, attribute '[^']*')?: )'.*'(?= (?:is|has|must|does) )", re.DOTALL
)


def _readable_message(message: str) -> str:
    text = _QUOTED_VALUE.sub("The value", message)
    text = _LEADING_VALUE.sub(r"\1The value", text)
    return _NAMESPACE_URI.sub("", text).strip()


def _readable_path(root: etree._Element, raw: str | None) -> str:
    """Turn libxml2's node path into a path of local names.

    libxml2 writes a prefixed step (``edXML:To[2]``) for prefixed elements, and ``*[n]`` (position among
    all element siblings) for elements in a default namespace, so the path cannot be rewritten as text
    alone: it is replayed on the validated tree and the element found is named by its ancestry.
    """
    if not raw:
        return ""
    steps = raw.split("/")
    if steps[0] != "" or len(steps) < 2:
        return _strip_prefixes(raw)
    element: etree._Element | None = None
    suffix = ""
    for step in steps[1:]:
        if step.startswith("@"):
            suffix = "/@" + step[1:].rsplit(":", 1)[-1]
            break
        if "(" in step:  # text(), comment(): the element above is the one meant
            break
        element = _step(root, element, step)
        if element is None:
            return _strip_prefixes(raw)
    if element is None:
        return _strip_prefixes(raw)
    return _local_name_path(root, element) + suffix


def _step(root: etree._Element, parent: etree._Element | None, step: str) -> etree._Element | None:
    match = _SEGMENT.fullmatch(step)
    if match is None:
        return None
    name, index = match.group("name"), match.group("index")
    if parent is None:
        return root if name == "*" or _matches(root, name) else None
    if name == "*":
        candidates = _element_children(parent)
    else:
        candidates = [c for c in _element_children(parent) if _matches(c, name)]
    if index is None:
        return candidates[0] if len(candidates) == 1 else None
    position = int(index)
    return candidates[position - 1] if 0 < position <= len(candidates) else None


def _matches(element: etree._Element, step_name: str) -> bool:
    prefix, _, local = step_name.rpartition(":")
    if etree.QName(element).localname != local:
        return False
    if prefix:
        return bool(element.prefix == prefix)
    return etree.QName(element).namespace is None


def _element_children(parent: etree._Element) -> list[etree._Element]:
    return [c for c in parent if isinstance(c.tag, str)]


def _local_name_path(root: etree._Element, element: etree._Element) -> str:
    steps: list[str] = []
    current: etree._Element | None = element
    while current is not None:
        local = etree.QName(current).localname
        parent = None if current is root else current.getparent()
        if parent is not None:
            same = [c for c in _element_children(parent) if etree.QName(c).localname == local]
            if len(same) > 1:
                local = f"{local}[{next(i for i, c in enumerate(same, 1) if c is current)}]"
        steps.append(local)
        current = parent
    return "/" + "/".join(reversed(steps))


def _strip_prefixes(raw: str) -> str:
    text = _NAMESPACE_URI.sub("", raw)
    return "/".join(step.rsplit(":", 1)[-1] if ":" in step else step for step in text.split("/"))
