"""The shared web layer turns every kind of bad input into an RFC 9457 problem with a reason."""

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import BaseModel, Field, SecretStr

from shared.auth import TokenVerifier, issue_dev_token
from shared.errors import Conflict, InvalidInput
from shared.http import Api, Page, build_app, json_response, principal, read_json, read_query
from shared.settings import ServiceSettings

SECRET = "unit-test-secret-that-is-long-enough-for-hs256"


class Shift(BaseModel):
    user: str = Field(min_length=1)
    hours: int = Field(gt=0)


api = Api("t", "1")


@api.route("POST", "/v1/shifts", summary="echo", body=Shift, response=Shift, roles=("admin",))
async def post_shift(request: web.Request) -> web.Response:
    principal(request).require("admin")
    body = await read_json(request, Shift)
    if body.user == "ghost":
        raise InvalidInput("user", "unknown user ghost")
    return json_response(body, status=201)


@api.route("GET", "/v1/taken", summary="conflicts", conflicts=True)
async def taken(request: web.Request) -> web.Response:
    raise Conflict("the name is taken")


@api.route("GET", "/v1/page", summary="paging", query=Page)
async def page(request: web.Request) -> web.Response:
    return json_response(read_query(request, Page))


@api.route("GET", "/v1/boom", summary="fails")
async def boom(request: web.Request) -> web.Response:
    raise RuntimeError("secret detail that must not leak")


@pytest.fixture
async def client() -> AsyncIterator[TestClient]:
    app = build_app(api, TokenVerifier(ServiceSettings(jwt_secret=SecretStr(SECRET))))
    async with TestClient(TestServer(app)) as c:
        yield c


def bearer(role: str = "admin") -> dict[str, str]:
    return {"Authorization": "Bearer " + issue_dev_token(SECRET, "u1", role)}  # type: ignore[arg-type]


async def problem(resp: object, status: int) -> dict:  # type: ignore[type-arg]
    assert resp.status == status  # type: ignore[attr-defined]
    assert resp.content_type == "application/problem+json"  # type: ignore[attr-defined]
    body = await resp.json(content_type=None)  # type: ignore[attr-defined]
    assert body["status"] == status and body["title"]
    return body  # type: ignore[no-any-return]


async def test_accepted_input(client: TestClient) -> None:
    resp = await client.post("/v1/shifts", json={"user": "ada", "hours": 8}, headers=bearer())
    assert resp.status == 201 and await resp.json() == {"user": "ada", "hours": 8}
    assert resp.headers["X-Request-ID"]


async def test_malformed_json_is_400(client: TestClient) -> None:
    body = await problem(await client.post("/v1/shifts", data=b"{oops", headers=bearer()), 400)
    assert "not valid JSON" in body["detail"]


async def test_schema_violation_is_422_listing_every_field(client: TestClient) -> None:
    body = await problem(await client.post("/v1/shifts", json={"user": "", "hours": 0}, headers=bearer()), 422)
    assert {e["field"] for e in body["errors"]} == {"user", "hours"}


async def test_domain_violation_is_422_naming_the_field(client: TestClient) -> None:
    body = await problem(await client.post("/v1/shifts", json={"user": "ghost", "hours": 1}, headers=bearer()), 422)
    assert body["errors"] == [{"field": "user", "message": "unknown user ghost"}]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer x.y.z"}, {"Authorization": "Bearer " + issue_dev_token(SECRET, "u", "admin", -5)}],
)
async def test_missing_invalid_or_expired_token_is_401(client: TestClient, headers: dict[str, str]) -> None:
    resp = await client.post("/v1/shifts", json={"user": "a", "hours": 1}, headers=headers)
    await problem(resp, 401)
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_wrong_role_is_403(client: TestClient) -> None:
    body = await problem(
        await client.post("/v1/shifts", json={"user": "a", "hours": 1}, headers=bearer("observer")), 403
    )
    assert "observer" in body["detail"]


async def test_unknown_route_is_404_and_wrong_method_405(client: TestClient) -> None:
    await problem(await client.get("/v1/nothing-here", headers=bearer()), 404)
    await problem(await client.get("/nothing-here"), 404)
    await problem(await client.delete("/v1/shifts", headers=bearer()), 405)


async def test_unexpected_errors_are_500_without_internals(client: TestClient) -> None:
    body = await problem(await client.get("/v1/boom", headers=bearer()), 500)
    assert "secret" not in str(body)


async def test_health_metrics_and_openapi_need_no_token(client: TestClient) -> None:
    assert (await client.get("/healthz")).status == 200
    assert "http_requests_total" in await (await client.get("/metrics")).text()
    spec = await (await client.get("/openapi.json")).json()
    op = spec["paths"]["/v1/shifts"]["post"]
    assert op["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Shift"}
    assert {"400", "401", "403", "422"} <= set(op["responses"])
    assert "Shift" in spec["components"]["schemas"]


async def test_nul_characters_are_refused_naming_the_field(client: TestClient) -> None:
    body = await problem(await client.post("/v1/shifts", json={"user": "a\x00b", "hours": 1}, headers=bearer()), 422)
    assert body["errors"][0]["field"] == "user"


async def test_conflicts_are_409_with_the_reason(client: TestClient) -> None:
    body = await problem(await client.get("/v1/taken", headers=bearer()), 409)
    assert body["detail"] == "the name is taken"


async def test_paging_is_bounded_so_the_database_never_sees_an_overflowing_offset(client: TestClient) -> None:
    ok = await client.get("/v1/page?offset=10000000&limit=500", headers=bearer())
    assert ok.status == 200 and (await ok.json())["offset"] == 10_000_000
    body = await problem(await client.get("/v1/page?offset=112233637986066760032321536", headers=bearer()), 422)
    assert [e["field"] for e in body["errors"]] == ["offset"]
    body = await problem(await client.get("/v1/page?limit=0", headers=bearer()), 422)
    assert [e["field"] for e in body["errors"]] == ["limit"]


async def test_a_very_long_query_string_still_gets_a_problem_document(client: TestClient) -> None:
    body = await problem(await client.get("/v1/page?offset=" + "9" * 20_000, headers=bearer()), 422)
    assert [e["field"] for e in body["errors"]] == ["offset"]
