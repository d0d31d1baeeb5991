import time
import uuid

import jwt
import pytest
from pydantic import SecretStr

from shared.auth import AuthError, Forbidden, Principal, TokenVerifier, issue_dev_token
from shared.settings import ServiceSettings

SECRET = "unit-test-secret-that-is-long-enough-for-hs256"
verifier = TokenVerifier(ServiceSettings(jwt_secret=SecretStr(SECRET)))
U1, U2 = uuid.uuid4(), uuid.uuid4()


async def test_a_valid_token_gives_the_principal() -> None:
    p = await verifier.authenticate("Bearer " + issue_dev_token(SECRET, U1, "responder"))
    assert p == Principal(U1, "responder")
    upper = await verifier.authenticate("Bearer " + issue_dev_token(SECRET, str(U1).upper(), "responder"))
    assert upper == p


def _jwt(claims: dict[str, object], key: str = SECRET, alg: str = "HS256") -> str:
    return "Bearer " + jwt.encode(claims, key, alg)


# Factories, not values: a token made at collection time could expire before its test runs.
BAD_CREDENTIALS = {
    "missing": (lambda: None, "missing"),
    "not bearer": (lambda: "Basic abc", "Bearer"),
    "garbage": (lambda: "Bearer not.a.jwt", "invalid token"),
    "forged": (lambda: "Bearer " + issue_dev_token("another-secret-long-enough-xxxxxxxx", "u1", "admin"), "invalid"),
    "expired": (lambda: "Bearer " + issue_dev_token(SECRET, "u1", "admin", ttl_s=-10), "expired"),
    "unknown role": (lambda: _jwt({"sub": str(U1), "role": "root", "exp": time.time() + 60}), "role"),
    "subject not a uuid": (lambda: "Bearer " + issue_dev_token(SECRET, "u1", "admin"), "UUID"),
    "non-ascii": (lambda: "Bearer \udcff\udcfe", "ASCII"),
    "control characters": (lambda: "Bearer abc\x01def", "ASCII"),
    "no expiry": (lambda: _jwt({"sub": "u1", "role": "admin"}), "exp"),
    "other algorithm": (lambda: _jwt({"sub": "u1", "role": "admin", "exp": time.time() + 60}, alg="HS512"), "invalid"),
}


@pytest.mark.parametrize("case", BAD_CREDENTIALS)
async def test_bad_credentials_are_refused_with_a_reason(case: str) -> None:
    make_header, reason = BAD_CREDENTIALS[case]
    with pytest.raises(AuthError, match=reason):
        await verifier.authenticate(make_header())


def test_roles_and_self_service() -> None:
    responder = Principal(U1, "responder")
    responder.require("admin", "responder")
    responder.require_self_or_admin(U1)
    with pytest.raises(Forbidden):
        responder.require("admin")
    with pytest.raises(Forbidden):
        responder.require_self_or_admin(U2)
    Principal(U2, "admin").require_self_or_admin(U1)


def test_rs256_needs_a_jwks_url() -> None:
    with pytest.raises(ValueError, match="JWKS"):
        TokenVerifier(ServiceSettings(jwt_algorithm="RS256"))


async def test_rs256_tokens_are_checked_against_a_jwks_endpoint() -> None:
    import json

    from aiohttp import web
    from aiohttp.test_utils import TestServer
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())) | {"kid": "k1", "use": "sig"}
    app = web.Application()
    app.router.add_get("/jwks.json", lambda _: web.json_response({"keys": [jwk]}))
    async with TestServer(app) as server:
        rs = TokenVerifier(ServiceSettings(jwt_algorithm="RS256", jwt_jwks_url=str(server.make_url("/jwks.json"))))
        claims = {"sub": str(U2), "role": "observer", "exp": time.time() + 60}
        good = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})
        assert await rs.authenticate("Bearer " + good) == Principal(U2, "observer")
        forged = jwt.encode(claims, SECRET, algorithm="HS256", headers={"kid": "k1"})
        with pytest.raises(AuthError):
            await rs.authenticate("Bearer " + forged)


def test_production_refuses_the_dev_secret() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="JWT_SECRET"):
        ServiceSettings(environment="production")
    ServiceSettings(environment="production", jwt_secret=SecretStr("x" * 40))
