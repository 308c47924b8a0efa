"""Domain errors; the API maps each to one problem answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, kw_only=True)
class FieldError:
    loc: tuple[str | int, ...]
    msg: str

    def as_dict(self) -> dict[str, Any]:
        return {"loc": list(self.loc), "msg": self.msg}


class QuorumError(Exception):
    status = 500
    title = "Internal error"

    def __init__(self, detail: str, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra or {}


class NotFound(QuorumError):
    status = 404
    title = "Not found"


class Conflict(QuorumError):
    status = 409
    title = "Conflict"


class Invalid(QuorumError):
    status = 422
    title = "Unprocessable content"

    def __init__(
        self,
        detail: str,
        *,
        errors: list[FieldError] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail, extra=extra)
        self.errors = errors or []


class Unavailable(QuorumError):
    status = 503
    title = "Service unavailable"
