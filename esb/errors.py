"""The one exception tree of the project.

Every error carries a stable ``code`` whose first segment says who is to blame:
``Client.*`` (the caller sent something wrong; retrying the same input fails again) or
``Server.*`` (our side failed; the caller may retry).  The SOAP edge turns these into
faults, the CLI into a non-zero exit with the reason.  Messages are written for people
and never contain document content.

    EsbError
    ├── ClientError
    │   ├── XmlInputError          Client.Xml*        hardened parser refused the bytes
    │   ├── EdxmlInvalid           Client.Edxml*      the package breaks a rule we cannot accept
    │   ├── EdxmlBuildError        Client.EdxmlBuild* a description cannot become a strict package
    │   └── InvalidIdentifier      Client.InvalidIdentifier
    └── ServerError
        └── ConfigurationError     Server.Configuration
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from esb.domain.issues import Issue


class EsbError(Exception):
    """Base of every error we raise on purpose."""

    default_code: ClassVar[str] = "Server.Internal"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class ClientError(EsbError):
    default_code = "Client.BadRequest"


class ServerError(EsbError):
    default_code = "Server.Internal"


class XmlInputError(ClientError):
    """Bytes the hardened parser refused: not XML, truncated, DTD, entity, too deep, too large."""

    default_code = "Client.XmlNotWellFormed"

    def __init__(self, message: str, *, code: str | None = None, line: int | None = None) -> None:
        super().__init__(message, code=code)
        self.line = line


class EdxmlInvalid(ClientError):
    """Well-formed XML that is not an acceptable edXML package.

    ``issues`` holds every problem found (errors and warnings), each with an element path;
    ``code`` is the code of the first error.
    """

    default_code = "Client.EdxmlInvalid"

    def __init__(self, issues: Sequence[Issue]) -> None:
        errors = [i for i in issues if i.is_error]
        first = errors[0] if errors else None
        message = first.message if first else "invalid edXML package"
        if first is not None and first.path:
            message = f"{message} (at {first.path})"
        if len(errors) > 1:
            message = f"{message}; and {len(errors) - 1} more error(s)"
        super().__init__(message, code=first.code if first else None)
        self.issues = tuple(issues)


class EdxmlBuildError(ClientError):
    """A package description that cannot be turned into a strict edXML package."""

    default_code = "Client.EdxmlBuildInvalid"

    def __init__(self, message: str, *, code: str | None = None, problems: Sequence[str] = ()) -> None:
        super().__init__(message, code=code)
        self.problems = tuple(problems)


class InvalidIdentifier(ClientError):
    """An identifier code (mã định danh) that cannot be generated or is malformed where one is required."""

    default_code = "Client.InvalidIdentifier"


class ConfigurationError(ServerError):
    default_code = "Server.Configuration"
