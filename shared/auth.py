"""JWT authentication and per-role checks for the mobile API.

Tokens come from the API gateway as `Authorization: Bearer <JWT>`; every service verifies them itself and
never trusts a bare user-id header. Claims: `sub` (user id) and `role` (admin | responder | observer).
HS256 with a shared secret locally; RS256 against a JWKS endpoint in production.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, cast, get_args
from uuid import UUID

import jwt

from shared.messages import Role
from shared.settings import ServiceSettings

ROLES: tuple[Role, ...] = get_args(Role)
# Who may call a route, declared once per route (shared.http.Api.route). PUBLIC routes take no token.
ANYONE: tuple[Role, ...] = ROLES
WRITERS: tuple[Role, ...] = ("admin", "responder")
ADMINS: tuple[Role, ...] = ("admin",)
PUBLIC: tuple[Role, ...] = ()


class AuthError(Exception):
    """The request carries no valid credentials (401)."""


class Forbidden(Exception):
    """The caller is known but may not do this (403)."""


@dataclass(frozen=True)
class Principal:
    """The caller: `user_id` is the token's `sub`, always a UUID, so ids compare as UUIDs whatever their case."""

    user_id: UUID
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def require(self, *roles: Role) -> None:
        if self.role not in roles:
            raise Forbidden(f"role '{self.role}' may not do this; needs one of {', '.join(roles)}")

    def require_self_or_admin(self, user_id: UUID) -> None:
        """The one ownership rule: a non-admin acts only for themself."""
        if not self.is_admin and user_id != self.user_id:
            raise Forbidden("a non-admin may act only for themself")


class TokenVerifier:
    """Verifies bearer tokens with the algorithm and keys from the settings."""

    def __init__(self, settings: ServiceSettings) -> None:
        self._algorithm = settings.jwt_algorithm
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer
        self._secret = settings.jwt_secret.get_secret_value()
        self._jwks = jwt.PyJWKClient(settings.jwt_jwks_url) if settings.jwt_jwks_url else None
        if self._algorithm == "RS256" and self._jwks is None:
            raise ValueError("JWT_ALGORITHM=RS256 needs JWT_JWKS_URL")

    async def authenticate(self, authorization: str | None) -> Principal:
        """The caller named by a `Bearer` token; JWKS keys are fetched off the event loop and cached."""
        token = _bearer(authorization)
        if self._jwks is None:
            return self._decode(token, self._secret)
        try:
            key = await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)
        except jwt.PyJWKClientError as exc:
            raise AuthError(f"no signing key for token: {exc}") from exc
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"invalid token: {exc}") from exc
        return self._decode(token, key.key)

    def _decode(self, token: str, key: Any) -> Principal:
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[self._algorithm],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["sub", "exp"], "verify_aud": self._audience is not None},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("token expired") from exc
        except (jwt.InvalidTokenError, ValueError, TypeError) as exc:
            raise AuthError(f"invalid token: {exc}") from exc
        role = claims.get("role")
        if role not in ROLES:
            raise AuthError(f"token role must be one of {', '.join(ROLES)}")
        try:
            user_id = UUID(str(claims["sub"]))
        except ValueError as exc:
            raise AuthError("token subject (sub) must be a user id (UUID)") from exc
        return Principal(user_id=user_id, role=cast(Role, role))


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise AuthError("missing Authorization header")
    # aiohttp hands undecodable header bytes over as surrogates; a token is printable ASCII or nothing.
    if not authorization.isascii() or not authorization.isprintable():
        raise AuthError("Authorization must be printable ASCII")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("Authorization must be 'Bearer <token>'")
    return token.strip()


def issue_dev_token(secret: str, user_id: str | UUID, role: Role, ttl_s: int = 3600) -> str:
    """An HS256 token for local use and tests; production tokens come from the identity provider."""
    now = int(time.time())
    return jwt.encode({"sub": str(user_id), "role": role, "iat": now, "exp": now + ttl_s}, secret, algorithm="HS256")
