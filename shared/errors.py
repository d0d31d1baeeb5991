"""Errors domain code may raise without knowing about HTTP; the web layer maps them to problems."""

from __future__ import annotations

from typing import TypeVar

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
    """The change clashes with the current state, e.g. a unique name is taken (HTTP 409)."""


def found(value: T | None, what: str) -> T:
    """`value`, or NotFound naming `what` when a lookup gave nothing."""
    if value is None:
        raise NotFound(what)
    return value
