"""WS-Security for zeep clients, as the hub verifies it (docs/authentication.md).

zeep signs with RSA-SHA1/SHA1 by default, has no Timestamp, and verifies every response
with the signing object (the hub's responses are not signed).  :func:`signed_requests`
fixes all three::

    client = zeep.Client(wsdl, wsse=signed_requests("app.key.pem", "app.cert.pem"))
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import xmlsec
from lxml import etree
from zeep.wsse import BinarySignature, Compose
from zeep.wsse.utils import WSU, get_security_header, get_timestamp


class Timestamp:
    """zeep wsse plugin adding ``wsu:Timestamp`` (Created, Expires) under ``wsse:Security``.

    With no fixed ``created`` the times are taken at each call.  Put it before the signature
    in ``Compose``: zeep signs the Timestamp only if it is already there.
    """

    def __init__(
        self,
        created: datetime | None = None,
        expires: datetime | None = None,
        *,
        ttl: timedelta = timedelta(minutes=5),
    ) -> None:
        self.created, self.expires, self.ttl = created, expires, ttl

    def apply(
        self, envelope: etree._Element, headers: dict[str, Any]
    ) -> tuple[etree._Element, dict[str, Any]]:
        created = (self.created or datetime.now(UTC)).astimezone(UTC)
        expires = (self.expires or created + self.ttl).astimezone(UTC)
        get_security_header(envelope).append(
            WSU.Timestamp(
                WSU.Created(get_timestamp(created, zulu_timestamp=True)),
                WSU.Expires(get_timestamp(expires, zulu_timestamp=True)),
            )
        )
        return envelope, headers

    def verify(self, envelope: etree._Element) -> etree._Element:
        return envelope


class SigningOnlyBinarySignature(BinarySignature):
    """``BinarySignature`` that signs requests but does not expect signed responses."""

    def verify(self, envelope: etree._Element) -> etree._Element:
        return envelope


def signed_requests(
    key_file: str, cert_file: str, *, password: str | None = None, legacy_sha1: bool = False
) -> Compose:
    """Timestamp + BinarySecurityToken + RSA-SHA256/SHA-256 signature over Body and Timestamp."""
    signature_method = (
        xmlsec.constants.TransformRsaSha1 if legacy_sha1 else xmlsec.constants.TransformRsaSha256
    )
    digest_method = xmlsec.constants.TransformSha1 if legacy_sha1 else xmlsec.constants.TransformSha256
    return Compose(
        [
            Timestamp(),
            SigningOnlyBinarySignature(
                key_file, cert_file, password, signature_method=signature_method, digest_method=digest_method
            ),
        ]
    )
