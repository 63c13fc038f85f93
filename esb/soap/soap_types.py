"""Type factories the SOAP services share.

spyne needs a fresh type per use (it names a shared restricted type after its first user)
and a header class per namespace, so these build one on every call rather than being shared.
"""

from __future__ import annotations

from typing import Any

from spyne import ComplexModel, Unicode

SESSION_HEADER_DOC = "SOAP header carrying the session key from Auth.Authenticate on every call."


def text(min_occurs: int = 1, max_len: int = 4096) -> Any:
    """A fresh type per use: spyne names a shared restricted type after its first user."""
    return Unicode(min_occurs=min_occurs, nillable=False, max_len=max_len)


def out(kind: Any, min_occurs: int = 1) -> Any:
    """``kind`` as a non-nillable element, required unless ``min_occurs`` is 0."""
    return kind(min_occurs=min_occurs, nillable=False)


def auth_header(namespace: str, doc: str = SESSION_HEADER_DOC) -> type[ComplexModel]:
    """A new ``AuthHeader`` SOAP header class (``sessionToken``) in ``namespace``."""

    class AuthHeader(ComplexModel):  # type: ignore[misc]
        __doc__ = doc
        __namespace__ = namespace
        _type_info = [("sessionToken", Unicode(min_occurs=1, nillable=False, max_len=128))]  # noqa: RUF012

    return AuthHeader
