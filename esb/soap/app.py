"""The WSGI application: every SOAP service under ``/soap/<Service>``, plus ``/healthz``.

Per service: spyne ``Application`` (SOAP 1.1 in and out, full XSD validation of the Body),
wrapped in :class:`~esb.soap.guard.SoapGuard`, with its WSDL built once at start-up for the
configured public address (spyne would otherwise take the address from the first request's
``Host`` header and cache it for everyone).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import spyne.const as spyne_const
import spyne.protocol.soap.soap11 as spyne_soap11
from lxml import etree
from spyne import Application, Fault
from spyne.protocol.soap import Soap11
from spyne.protocol.xml import SchemaValidationError
from spyne.server.wsgi import WsgiApplication

from esb import __version__
from esb.errors import ClientError
from esb.soap import auth_service, directory_service, exchange_service, notification_service
from esb.soap.context import RequestContext, Services
from esb.soap.events import EventsApp
from esb.soap.faults import TranslatingService, to_fault
from esb.soap.guard import SoapGuard, WsgiApp
from esb.soap.transfer import TransferApp
from esb.xml_processing.parsing import hardened_parser

# SOAP-encoding multiref resolution copies any element with id="x" into any element with
# href="#x", including from unsigned headers into a signed Body: a signature-wrapping vector
# (docs/decisions/0003-soap-stack.md).  document/literal never needs it.
spyne_soap11.resolve_hrefs = lambda element, xmlids: element

# spyne runs a full gc.collect() after a request at most once a second "to return file
# descriptors"; we hold none across requests, and a full collection of a worker's heap costs
# 25-100 ms of one unlucky request (bench/README.md).  Python's own generational GC stays on.
spyne_const.MIN_GC_INTERVAL = float("inf")

# spyne logs every fault with a full traceback at ERROR, and an XML syntax error with the
# whole request; faults are logged once, briefly, by esb.soap.faults instead.
logging.getLogger("spyne").setLevel(logging.CRITICAL)


@dataclass(frozen=True)
class ServiceSpec:
    name: str  # the path segment and the service name in the WSDL
    service: type[TranslatingService]
    namespace: str


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("Auth", auth_service.AuthService, auth_service.NAMESPACE),
    ServiceSpec("DocumentExchange", exchange_service.ExchangeService, exchange_service.NAMESPACE),
    ServiceSpec("Notifications", notification_service.NotificationService, notification_service.NAMESPACE),
    ServiceSpec("Directory", directory_service.DirectoryService, directory_service.NAMESPACE),
)


def service_url(public_url: str, name: str) -> str:
    return f"{public_url.rstrip('/')}/soap/{name}"


class ValidatingSoap11(Soap11):  # type: ignore[misc]
    """spyne's SOAP 1.1 with its Body-schema faults turned into our typed ``EsbFault``.

    spyne answers a Body that breaks the schema with a bare fault whose text is libxml2's
    raw message; Java and .NET clients would then get an untyped exception.
    """

    def __init__(self, fault_class: type[Fault], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fault_class = fault_class

    def validate_body(self, ctx: Any, message: Any) -> None:
        try:
            super().validate_body(ctx, message)
        except SchemaValidationError as exc:
            parts = str(exc.faultstring or "").rsplit(": ", 2)
            readable = ": ".join(parts[-2:]).strip(" \n\"'") if len(parts) > 1 else "invalid Body"
            error = ClientError(
                f"the request does not match the operation's schema: {readable}",
                code="Client.SchemaValidationError",
            )
            raise to_fault(self.fault_class, error) from None


def _application(spec: ServiceSpec) -> Application:
    return Application(
        [spec.service],
        tns=spec.namespace,
        name=spec.name,
        in_protocol=ValidatingSoap11(spec.service.fault_class, validator="lxml"),
        out_protocol=Soap11(),
    )


def interface_document(spec: ServiceSpec, public_url: str) -> bytes:
    """The WSDL of one service for ``public_url``, pretty-printed (``esb wsdl export``, golden files)."""
    return _render_wsdl(WsgiApplication(_application(spec)), spec, public_url)


def _render_wsdl(wsgi: WsgiApplication, spec: ServiceSpec, public_url: str) -> bytes:
    wsgi.doc.wsdl11.build_interface_document(service_url(public_url, spec.name))
    document = etree.fromstring(wsgi.doc.wsdl11.get_interface_document(), hardened_parser())
    _sort_schema_declarations(document)
    return etree.tostring(document, pretty_print=True, xml_declaration=True, encoding="UTF-8")


def _sort_schema_declarations(document: etree._Element) -> None:
    """spyne emits global schema declarations in hash order; sort them so exports are stable.

    Order among global declarations carries no meaning in XSD; ``xs:import`` stays first.
    """
    for schema in document.iter("{http://www.w3.org/2001/XMLSchema}schema"):
        children = list(schema)
        imports = [child for child in children if etree.QName(child).localname == "import"]
        others = [child for child in children if child not in imports]
        others.sort(key=lambda child: (etree.QName(child).localname, child.get("name", "")))
        schema[:] = imports + others


def build_spyne_app(
    spec: ServiceSpec, services: Services, public_url: str, max_bytes: int
) -> WsgiApplication:
    application = _application(spec)

    def _attach_context(ctx: Any) -> None:
        ctx.udc = RequestContext(services, remote_addr=ctx.transport.req_env.get("REMOTE_ADDR"))

    application.event_manager.add_listener("method_call", _attach_context)
    wsgi = WsgiApplication(application, max_content_length=max_bytes)
    wsgi._wsdl = _render_wsdl(wsgi, spec, public_url)  # pinned: never rebuilt from a request's Host
    return wsgi


def create_wsgi_app(
    services: Services, *, public_url: str, max_request_bytes: int, health: Callable[[], dict[str, str]]
) -> WsgiApp:
    routes: dict[str, WsgiApp] = {}
    for spec in SERVICES:
        wsgi = build_spyne_app(spec, services, public_url, max_request_bytes)
        routes[f"/soap/{spec.name}"] = SoapGuard(wsgi, namespace=spec.namespace, max_bytes=max_request_bytes)
    transfer = TransferApp(services)
    prefixes: dict[str, WsgiApp] = {"/upload/": transfer, "/download/": transfer}
    prefixes["/events"] = EventsApp(services)  # server-sent notifications
    return Router(routes, health=health, public_url=public_url, prefixes=prefixes)


class Router:
    """Path dispatch: ``/soap/<Service>``, transfer prefixes, ``/healthz`` and ``/`` (an index)."""

    def __init__(
        self,
        routes: dict[str, WsgiApp],
        *,
        health: Callable[[], dict[str, str]],
        public_url: str,
        prefixes: dict[str, WsgiApp] | None = None,
    ) -> None:
        self.routes = routes
        self.prefixes = prefixes or {}
        self.health = health
        self.public_url = public_url

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", "/")).rstrip("/") or "/"
        app = self.routes.get(path)
        if app is not None:
            return app(environ, start_response)
        for prefix, handler in self.prefixes.items():
            if path.startswith(prefix):
                return handler(environ, start_response)
        if path == "/healthz":
            report = self.health()
            status = "200 OK" if report.get("status") == "ok" else "503 Service Unavailable"
            return _json(start_response, status, report)
        if path == "/":
            services = {
                route.rsplit("/", 1)[-1]: service_url(self.public_url, route.rsplit("/", 1)[-1]) + "?wsdl"
                for route in self.routes
            }
            return _json(
                start_response, "200 OK", {"service": "lgsp-esb", "version": __version__, "wsdl": services}
            )
        return _json(start_response, "404 Not Found", {"error": f"no such path: {path}"})


def _json(start_response: Callable[..., Any], status: str, payload: dict[str, Any]) -> list[bytes]:
    body = json.dumps(payload, ensure_ascii=False, indent=1).encode("utf-8")
    start_response(
        status, [("Content-Type", "application/json; charset=utf-8"), ("Content-Length", str(len(body)))]
    )
    return [body]
