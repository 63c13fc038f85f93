"""WSGI guard in front of spyne: what spyne does not check, or checks unsafely.

* ``multipart/related`` (SOAP with attachments, MTOM) is refused: spyne re-parses that path
  with lxml's default parser (internal entities expanded; XXE with older lxml).
* The body is read once, up to the size limit, and parsed with our hardened parser: any
  ``DOCTYPE`` is refused outright, as are entities, over-deep or over-large documents.
* The envelope is checked: SOAP 1.1 ``Envelope``, one ``Body`` with one operation element,
  and the SOAP headers, which spyne does not validate at all: ``AuthHeader`` must hold exactly
  one ``sessionToken``, and an unknown header with ``mustUnderstand="1"`` is a fault (spyne
  would silently ignore it).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import Any

from lxml import etree

from esb.errors import ClientError, XmlInputError
from esb.soap.faults import fault_envelope
from esb.xml_processing.namespaces import SOAP11_ENV, WSSE
from esb.xml_processing.parsing import XmlLimits, parse_untrusted

SOAP12_ENV = "http://www.w3.org/2003/05/soap-envelope"

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class SoapGuard:
    def __init__(self, app: WsgiApp, *, namespace: str, max_bytes: int) -> None:
        self.app = app
        self.namespace = namespace
        self.max_bytes = max_bytes
        self.limits = XmlLimits(max_bytes=max_bytes, max_depth=48, max_text_chars=max_bytes)
        self.auth_header = f"{{{namespace}}}AuthHeader"
        self.session_token = f"{{{namespace}}}sessionToken"
        self.understood = {self.auth_header, f"{{{WSSE}}}Security"}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD", "GET").upper() != "POST":
            return self.app(environ, start_response)
        try:
            body = self._checked_body(environ)
        except _Refusal as refusal:
            return self._refuse(start_response, refusal.status, refusal.error)
        except ClientError as error:
            return self._refuse(start_response, "500 Internal Server Error", error)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        return self.app(environ, start_response)

    def _checked_body(self, environ: dict[str, Any]) -> bytes:
        content_type = str(environ.get("CONTENT_TYPE", "")).lower()
        if content_type.startswith("multipart/"):
            raise _Refusal(
                "415 Unsupported Media Type",
                ClientError(
                    "multipart (SOAP with attachments / MTOM) requests are not accepted; send base64Binary "
                    "inline or use the upload space",
                    code="Client.UnsupportedMediaType",
                ),
            )
        body = _read_body(environ, self.max_bytes)
        if body is None:
            raise _Refusal(
                "413 Request Entity Too Large",
                ClientError(
                    f"the request is larger than {self.max_bytes} bytes; "
                    "large packages go through the upload space",
                    code="Client.RequestTooLarge",
                ),
            )
        root = parse_untrusted(body, self.limits)
        self._check_envelope(root)
        return body

    def _check_envelope(self, root: etree._Element) -> None:
        if root.tag == f"{{{SOAP12_ENV}}}Envelope":
            raise _invalid("SOAP 1.2 is not served on this endpoint; send a SOAP 1.1 envelope")
        if root.tag != f"{{{SOAP11_ENV}}}Envelope":
            raise _invalid("the request is not a SOAP 1.1 Envelope")
        headers = root.findall(f"{{{SOAP11_ENV}}}Header")
        bodies = root.findall(f"{{{SOAP11_ENV}}}Body")
        if len(headers) > 1 or len(bodies) != 1 or len(bodies[0]) != 1:
            raise _invalid(
                "the Envelope must hold at most one Header and one Body with one operation element"
            )
        if headers:
            for header in headers[0]:
                self._check_header(header)

    def _check_header(self, header: etree._Element) -> None:
        if header.tag == self.auth_header:
            tokens = list(header)
            if len(tokens) != 1 or tokens[0].tag != self.session_token or not (tokens[0].text or "").strip():
                raise ClientError(
                    "AuthHeader must contain exactly one non-empty sessionToken", code="Client.InvalidHeader"
                )
            if len(tokens[0].text or "") > 128:
                raise ClientError("sessionToken is too long", code="Client.InvalidHeader")
            return
        if header.tag in self.understood:
            return
        must = header.get(f"{{{SOAP11_ENV}}}mustUnderstand", "0").strip()
        if must in ("1", "true"):
            raise ClientError(
                f"header {header.tag} is marked mustUnderstand but this service does not process it",
                code="Client.MustUnderstand",
            )

    def _refuse(
        self, start_response: Callable[..., Any], status: str, error: ClientError | XmlInputError
    ) -> list[bytes]:
        payload = fault_envelope(self.namespace, error)
        start_response(
            status, [("Content-Type", "text/xml; charset=utf-8"), ("Content-Length", str(len(payload)))]
        )
        return [payload]


class _Refusal(Exception):
    def __init__(self, status: str, error: ClientError) -> None:
        super().__init__(error.message)
        self.status = status
        self.error = error


def _invalid(message: str) -> ClientError:
    return ClientError(message, code="Client.InvalidSoap")


def _read_body(environ: dict[str, Any], max_bytes: int) -> bytes | None:
    """The request body, or None if it is over ``max_bytes`` (never reads more than that + 1)."""
    stream = environ["wsgi.input"]
    declared = str(environ.get("CONTENT_LENGTH") or "").strip()
    if declared.isdigit() and int(declared) > max_bytes:
        return None
    remaining = int(declared) if declared.isdigit() else max_bytes + 1
    chunks: list[bytes] = []
    total = 0
    while remaining > 0:
        chunk = stream.read(min(remaining, 1 << 16))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        remaining -= len(chunk)
        if total > max_bytes:
            return None
    return b"".join(chunks)
