"""Errors domain code may raise without knowing about HTTP; the web layer maps them to problems."""


class InvalidInput(ValueError):
    """Input that breaks a domain rule (HTTP 422); `field` names the input at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
