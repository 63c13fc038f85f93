"""The published contract: each service's WSDL equals its golden copy under wsdl/.

A difference is a contract change: if it is deliberate, regenerate the copies with
``esb wsdl export`` and review the diff like code.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest
from lxml import etree

from esb.cli.wsdl_commands import GOLDEN_PUBLIC_URL
from esb.soap.app import SERVICES, ServiceSpec, interface_document

WSDL_DIR = Path(__file__).resolve().parents[2] / "wsdl"
XS = "{http://www.w3.org/2001/XMLSchema}"
WSDL = "{http://schemas.xmlsoap.org/wsdl/}"


@pytest.mark.parametrize("spec", SERVICES, ids=lambda spec: spec.name)
def test_served_wsdl_equals_the_golden_copy(spec: ServiceSpec) -> None:
    golden = (WSDL_DIR / f"{spec.name}.wsdl").read_text(encoding="utf-8")
    current = interface_document(spec, GOLDEN_PUBLIC_URL).decode("utf-8")
    diff = "".join(
        difflib.unified_diff(
            golden.splitlines(keepends=True), current.splitlines(keepends=True), "golden", "current", n=2
        )
    )
    assert not diff, f"the {spec.name} contract changed; if deliberate run `esb wsdl export`:\n{diff}"


@pytest.mark.parametrize("spec", SERVICES, ids=lambda spec: spec.name)
def test_wsdl_follows_the_interop_rules(spec: ServiceSpec) -> None:
    """The quirks of docs/decisions/0003-soap-stack.md stay fixed."""
    root = etree.fromstring(interface_document(spec, GOLDEN_PUBLIC_URL))
    text = etree.tostring(root).decode()
    # Mandatory(...) would emit types in spyne's non-URI namespaces, which wsimport cannot resolve.
    assert "spyne.model" not in text
    assert "Mandatory" not in text
    # Optional elements are not nillable, so JAXB maps them to plain fields, not JAXBElement.
    nillable = [e.get("name") for e in root.iter(f"{XS}element") if e.get("nillable") == "true"]
    assert nillable == []
    # Every operation declares the typed fault, and the fault element exists in the schema.
    operations = root.findall(f"{WSDL}portType/{WSDL}operation")
    assert operations
    for operation in operations:
        assert operation.find(f"{WSDL}fault") is not None, operation.get("name")
    assert any(e.get("name") == "EsbFault" for e in root.iter(f"{XS}element"))
    # One SOAP 1.1 address, the configured one.
    addresses = [a.get("location") for a in root.iter("{http://schemas.xmlsoap.org/wsdl/soap/}address")]
    assert addresses == [f"{GOLDEN_PUBLIC_URL}/soap/{spec.name}"]
