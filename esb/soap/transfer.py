"""Plain-HTTP transfer of large packages, beside the SOAP services.

* ``PUT /upload/<spaceId>``: the raw ``.edxml`` bytes of a space from RequestSendSpace,
  streamed to disk as they arrive (``Content-Length`` required, never held in memory).
* ``GET /download/<hubDocumentId>``: a delivered package too large to return inline from
  GetDocument, streamed after its digest has been checked; ``X-Content-SHA256`` carries it.

Both are authenticated by the session key from Auth.Authenticate, in ``X-Session-Token``
(or ``Authorization: Bearer <token>``).  Errors are JSON ``{"code", "message", "reference"}``
with the same stable codes as the SOAP faults.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from esb.errors import ClientError, EsbError
from esb.soap.context import Services
from esb.soap.faults import describe
from esb.soap.http_edge import STATUS_BY_CODE, error_response, json_response, session_caller

SERVICE = "DocumentExchange"
_STATUS = {
    **STATUS_BY_CODE,
    "Client.SpaceNotFound": "404 Not Found",
    "Client.DocumentNotFound": "404 Not Found",
    "Client.SpaceUsed": "409 Conflict",
    "Client.SpaceExpired": "410 Gone",
    "Client.ContentPurged": "410 Gone",
    "Client.PackageTooLarge": "413 Content Too Large",
    "Client.LengthRequired": "411 Length Required",
}


class TransferApp:
    """WSGI handler for ``/upload/…`` and ``/download/…`` (mounted by the router)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        path = str(environ.get("PATH_INFO", ""))
        _, _, rest = path.lstrip("/").partition("/")
        identifier = rest.strip("/")
        try:
            if path.startswith("/upload/") and method == "PUT":
                return self._upload(environ, start_response, identifier)
            if path.startswith("/download/") and method in ("GET", "HEAD"):
                return self._download(environ, start_response, identifier, head=method == "HEAD")
            allow = "PUT" if path.startswith("/upload/") else "GET, HEAD"
            error = ClientError(
                f"{method} is not allowed on {path}; use {allow}", code="Client.MethodNotAllowed"
            )
            return error_response(start_response, error, _STATUS, [("Allow", allow)])
        except Exception as exc:  # noqa: BLE001 - the one place HTTP transfer errors become responses
            return error_response(start_response, exc, _STATUS)

    def _upload(
        self, environ: dict[str, Any], start_response: Callable[..., Any], space_id: str
    ) -> list[bytes]:
        caller = session_caller(environ, self.services.authenticator, SERVICE)
        raw_length = environ.get("CONTENT_LENGTH")
        if not raw_length:
            raise ClientError("the upload needs a Content-Length", code="Client.LengthRequired")
        try:
            length = int(raw_length)
        except ValueError:
            raise ClientError("Content-Length is not a number", code="Client.LengthRequired") from None
        upload = self.services.exchange.upload(caller, space_id, environ["wsgi.input"], length)
        return json_response(
            start_response,
            "200 OK",
            {"spaceId": upload.space_id, "size": upload.size, "sha256": upload.sha256},
        )

    def _download(
        self, environ: dict[str, Any], start_response: Callable[..., Any], hub_id: str, *, head: bool
    ) -> Iterable[bytes]:
        caller = session_caller(environ, self.services.authenticator, SERVICE)
        download = self.services.exchange.download(caller, hub_id, head=head)
        start_response(
            "200 OK",
            [
                ("Content-Type", "application/xml"),
                ("Content-Length", str(download.size)),
                ("Content-Disposition", f'attachment; filename="{download.hub_document_id}.edxml"'),
                ("X-Content-SHA256", download.sha256),
            ],
        )
        if head:
            return []
        return _stream(download.chunks)


def _stream(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Yield verified chunks; a digest failure mid-stream cuts the connection (never wrong bytes)."""
    try:
        yield from chunks
    except EsbError as exc:
        describe(exc)
        raise
