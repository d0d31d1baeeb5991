"""Errors domain code may raise without knowing about HTTP; the web layer maps them to problems."""


class InvalidInput(ValueError):
    """Input that breaks a domain rule (HTTP 422); `field` names the input at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class NotFound(LookupError):
    """The entity a use case needs does not exist (HTTP 404)."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} does not exist")


class Conflict(Exception):
    """The change clashes with the current state, e.g. a unique name is taken (HTTP 409)."""
