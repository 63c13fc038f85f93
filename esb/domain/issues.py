"""Findings about a package: an error rejects it, a warning reports a deviation we accepted."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Issue:
    """One finding, with a stable ``code``, the element ``path`` it concerns and a readable message.

    Error codes start with ``Client.``; warning codes start with ``W.`` (see docs/error-codes.md).
    """

    severity: Severity
    code: str
    path: str
    message: str

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def as_dict(self) -> dict[str, str]:
        return {
            "severity": self.severity.value,
            "code": self.code,
            "path": self.path,
            "message": self.message,
        }


def error(code: str, path: str, message: str) -> Issue:
    return Issue(Severity.ERROR, code, path, message)


def warning(code: str, path: str, message: str) -> Issue:
    return Issue(Severity.WARNING, code, path, message)
