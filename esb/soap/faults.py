"""The one place where errors become SOAP Faults.

Every fault has ``faultcode`` = our stable code (``Client.*`` / ``Server.*``, which SOAP 1.1
clients read as the standard ``Client`` / ``Server`` classes refined by a dot), a readable
``faultstring``, and a typed ``detail`` element ``<tns:EsbFault>`` declared in each WSDL
(so Java ``wsimport`` and .NET generate an exception class with ``getFaultInfo()``):

    <EsbFault><code>Client.ClockSkew</code><message>…</message>
              <serverTime>2026-11-21T02:30:00+00:00</serverTime><reference>a1b2c3d4e5f6</reference></EsbFault>

``reference`` is a correlation id also written to our log, so an operator can find the
event a caller reports.  Unexpected exceptions become ``Server.Internal`` with that
reference and nothing else: never a traceback, never content.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime
from typing import Any, ClassVar
from xml.sax.saxutils import escape

from lxml import etree
from spyne import DateTime, Fault, ServiceBase, Unicode

from esb.errors import ClientError, EsbError

log = logging.getLogger("esb.soap")

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"


def make_fault_class(namespace: str) -> type[Fault]:
    """The ``EsbFault`` type for one service namespace (each WSDL is self-contained)."""

    class EsbFault(Fault):  # type: ignore[misc]
        __namespace__ = namespace
        __type_name__ = "EsbFault"
        # Optional in the schema only so that spyne does not also write them, as nil elements,
        # straight under soap:Fault; the detail element always carries code, message, reference.
        _type_info = [  # noqa: RUF012 - spyne's declaration protocol
            ("code", Unicode(min_occurs=0, nillable=False)),
            ("message", Unicode(min_occurs=0, nillable=False)),
            ("serverTime", DateTime(min_occurs=0, nillable=False)),
            ("reference", Unicode(min_occurs=0, nillable=False)),
        ]

        def __init__(self, code: str, message: str, *, server_time: datetime | None, reference: str) -> None:
            detail = _detail_element(namespace, code, message, server_time, reference)
            super().__init__(faultcode=code, faultstring=message, detail=detail)
            # spyne would serialise class attributes of these names; the detail element carries them.
            self.code = self.message = self.serverTime = self.reference = None

    return EsbFault


def describe(exc: BaseException) -> tuple[str, str, datetime | None, str]:
    """(code, message, server time or None, reference) for any exception; logs what it must."""
    reference = secrets.token_hex(6)
    if isinstance(exc, EsbError):
        level = logging.INFO if isinstance(exc, ClientError) else logging.WARNING
        log.log(level, "fault %s ref=%s: %s", exc.code, reference, exc.message)
        return exc.code, exc.message, getattr(exc, "server_time", None), reference
    log.error("unexpected error ref=%s", reference, exc_info=exc)
    return "Server.Internal", f"internal error (reference {reference})", None, reference


def to_fault(fault_class: type[Fault], exc: BaseException) -> Fault:
    code, message, server_time, reference = describe(exc)
    return fault_class(code, message, server_time=server_time, reference=reference)


class TranslatingService(ServiceBase):  # type: ignore[misc]
    """Base of our services: whatever an operation raises leaves as a typed :func:`to_fault` fault."""

    fault_class: ClassVar[type[Fault]]

    @classmethod
    def call_wrapper(cls, ctx: Any, args: Any = None) -> Any:
        try:
            return super().call_wrapper(ctx, args)
        except Fault:
            raise
        except Exception as exc:  # noqa: BLE001 - the one place that turns errors into faults
            raise to_fault(cls.fault_class, exc) from None


def fault_envelope(namespace: str, exc: BaseException) -> bytes:
    """A complete SOAP 1.1 fault envelope, for refusals made before spyne runs (the WSGI guard)."""
    code, message, server_time, reference = describe(exc)
    detail = etree.tostring(_detail_element(namespace, code, message, server_time, reference))
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<soap:Envelope xmlns:soap="{SOAP_ENV}"><soap:Body>'
        f"<soap:Fault><faultcode>soap:{escape(code)}</faultcode><faultstring>{escape(message)}</faultstring>"
        f"<detail>{detail.decode('utf-8')}</detail></soap:Fault></soap:Body></soap:Envelope>"
    ).encode()


def _detail_element(
    namespace: str, code: str, message: str, server_time: datetime | None, reference: str
) -> etree._Element:
    root = etree.Element(f"{{{namespace}}}EsbFault", nsmap={"tns": namespace})
    children: list[tuple[str, Any]] = [("code", code), ("message", message)]
    if server_time is not None:
        children.append(("serverTime", server_time.isoformat()))
    children.append(("reference", reference))
    for name, value in children:
        etree.SubElement(root, f"{{{namespace}}}{name}").text = value
    return root


__all__ = ["TranslatingService", "describe", "fault_envelope", "make_fault_class", "to_fault"]
