"""Errors domain code may raise without knowing about HTTP; the web layer maps them to problems."""

from __future__ import annotations

from typing import Any, TypeVar

T = TypeVar("T")


class InvalidInput(ValueError):
    """Input that breaks a domain rule (HTTP 422); `field` names the input at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field

    def __reduce__(self) -> tuple[type[InvalidInput], tuple[str, str]]:
        # raised in worker processes too (shared.cpu): keep both arguments across pickling
        return (type(self), (self.field, str(self)))


class NotFound(LookupError):
    """The entity a use case needs does not exist (HTTP 404)."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} does not exist")
        self.what = what

    def __reduce__(self) -> tuple[type[NotFound], tuple[str]]:
        return (type(self), (self.what,))


class Conflict(Exception):
    """The change clashes with the current state, e.g. a unique name is taken (HTTP 409). `details` (JSON
    values, e.g. the current status of the thing) are added to the problem document so a client can act
    without asking again."""

    def __init__(self, message: str, **details: str | int | None) -> None:
        reserved = {"type", "title", "status", "detail", "instance"} & details.keys()
        if reserved:
            raise ValueError(f"problem documents define {', '.join(sorted(reserved))} themselves")
        super().__init__(message)
        self.details = details

    def __reduce__(self) -> tuple[Any, ...]:
        return (_conflict, (str(self), self.details))


def _conflict(message: str, details: dict[str, Any]) -> Conflict:
    return Conflict(message, **details)


def found(value: T | None, what: str) -> T:
    """`value`, or NotFound naming `what` when a lookup gave nothing."""
    if value is None:
        raise NotFound(what)
    return value
