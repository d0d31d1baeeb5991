"""The shared web layer turns every kind of bad input into an RFC 9457 problem with a reason."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from shared.auth import ADMINS, ANYONE, PUBLIC, TokenVerifier, issue_dev_token
from shared.errors import Conflict, InvalidInput
from shared.http import Api, At, Call, Instant, LocalDate, Page, build_app
from shared.settings import ServiceSettings

SECRET = "unit-test-secret-that-is-long-enough-for-hs256"
ME = uuid.uuid4()


class Shift(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str = Field(min_length=1)
    hours: int = Field(gt=0)
    starts: Instant | None = None
    holiday: LocalDate | None = None


api = Api("t", "1")


@api.route("POST", "/v1/shifts", summary="echo", body=Shift, response=Shift, status=201, roles=ADMINS)
async def post_shift(call: Call[Shift, None]) -> Shift:
    if call.body.user == "ghost":
        raise InvalidInput("user", "unknown user ghost")
    return call.body


@api.route("GET", "/v1/taken", summary="conflicts", roles=ANYONE, conflicts=True)
async def taken(call: Call[None, None]) -> None:
    raise Conflict("the name is taken")


@api.route("GET", "/v1/page", summary="paging", roles=ANYONE, query=Page, response=Page)
async def page(call: Call[None, Page]) -> Page:
    return call.query


class AtOut(BaseModel):
    at: datetime | None


@api.route("GET", "/v1/at", summary="instants", roles=ANYONE, query=At, response=AtOut)
async def at(call: Call[None, At]) -> AtOut:
    return AtOut(at=call.query.at)


@api.route("GET", "/v1/me/{user_id}", summary="self", roles=ANYONE, path_types={"user_id": uuid.UUID})
async def me(call: Call[None, None]) -> None:
    call.actor.require_self_or_admin(call.path["user_id"])


@api.route("GET", "/v1/boom", summary="fails", roles=ANYONE)
async def boom(call: Call[None, None]) -> None:
    raise RuntimeError("secret detail that must not leak")


@api.route("GET", "/v1/db-down", summary="database unreachable", roles=ANYONE)
async def db_down(call: Call[None, None]) -> None:
    raise asyncpg.exceptions.CannotConnectNowError("the database system is starting up")


@api.route("GET", "/v1/refused", summary="connection refused", roles=ANYONE)
async def refused(call: Call[None, None]) -> None:
    raise ConnectionRefusedError(111, "Connect call failed")


@pytest.fixture
async def client() -> AsyncIterator[TestClient]:
    app = build_app(api, TokenVerifier(ServiceSettings(jwt_secret=SecretStr(SECRET))))
    async with TestClient(TestServer(app)) as c:
        yield c


def bearer(role: str = "admin", sub: object = ME) -> dict[str, str]:
    return {"Authorization": "Bearer " + issue_dev_token(SECRET, str(sub), role)}  # type: ignore[arg-type]


async def problem(resp: object, status: int) -> dict:  # type: ignore[type-arg]
    assert resp.status == status  # type: ignore[attr-defined]
    assert resp.content_type == "application/problem+json"  # type: ignore[attr-defined]
    body = await resp.json(content_type=None)  # type: ignore[attr-defined]
    assert body["status"] == status and body["title"]
    return body  # type: ignore[no-any-return]


async def test_accepted_input(client: TestClient) -> None:
    resp = await client.post("/v1/shifts", json={"user": "ada", "hours": 8}, headers=bearer())
    assert resp.status == 201 and await resp.json() == {"user": "ada", "hours": 8, "starts": None, "holiday": None}
    assert resp.headers["X-Request-ID"]


async def test_malformed_json_is_400(client: TestClient) -> None:
    body = await problem(await client.post("/v1/shifts", data=b"{oops", headers=json_bearer()), 400)
    assert "not valid JSON" in body["detail"]


async def test_schema_violation_is_422_listing_every_field(client: TestClient) -> None:
    body = await problem(await client.post("/v1/shifts", json={"user": "", "hours": 0}, headers=bearer()), 422)
    assert {e["field"] for e in body["errors"]} == {"user", "hours"}


async def test_domain_violation_is_422_naming_the_field(client: TestClient) -> None:
    body = await problem(await client.post("/v1/shifts", json={"user": "ghost", "hours": 1}, headers=bearer()), 422)
    assert body["errors"] == [{"field": "user", "message": "unknown user ghost", "type": "rule"}]


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



def json_bearer(role: str = "admin") -> dict[str, str]:
    return bearer(role) | {"Content-Type": "application/json"}


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"])
async def test_a_body_not_declared_as_json_is_415(client: TestClient, content_type: str) -> None:
    resp = await client.post(
        "/v1/shifts", data=b'{"user": "a", "hours": 1}', headers=bearer() | {"Content-Type": content_type}
    )
    await problem(resp, 415)
    ok = await client.post(
        "/v1/shifts", data=b'{"user": "a", "hours": 1}', headers=bearer() | {"Content-Type": "application/merge+json"}
    )
    assert ok.status == 201


@pytest.mark.parametrize("body", [b'{"hours": ' + b"9" * 5000 + b"}", b"\xff\xfe{}"])
async def test_json_python_cannot_read_is_400(client: TestClient, body: bytes) -> None:
    assert "not valid JSON" in (await problem(await client.post("/v1/shifts", data=body, headers=json_bearer()), 400))[
        "detail"
    ]


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"a":' * 100_000, b"[" * 40 + b"]" * 40])
async def test_deeply_nested_json_is_400(client: TestClient, body: bytes) -> None:
    detail = (await problem(await client.post("/v1/shifts", data=body, headers=json_bearer()), 400))["detail"]
    assert "nest" in detail or "JSON" in detail


@pytest.mark.parametrize("value", ["0.5", "0", "1700000000", "0001-01-01T00:00:00Z", "9999-12-15T00:00:00Z",
                                   "2026-03-08T09:00:00", "yesterday"])
async def test_instants_are_iso_text_with_an_offset_inside_the_documented_range(client: TestClient, value: str) -> None:
    body = await problem(await client.get("/v1/at", params={"at": value}, headers=bearer()), 422)
    assert [e["field"] for e in body["errors"]] == ["at"]


async def test_instants_are_answered_in_utc(client: TestClient) -> None:
    resp = await client.get("/v1/at", params={"at": "2026-03-08T09:00:00+05:00"}, headers=bearer())
    assert (await resp.json())["at"] == "2026-03-08T04:00:00Z"


@pytest.mark.parametrize("field,value", [("starts", 0.5), ("starts", 1700000000), ("holiday", 0), ("holiday", "0"),
                                         ("holiday", "9999-12-31"), ("starts", "0001-01-01T00:00:00+00:00")])
async def test_body_instants_and_dates_refuse_numbers_and_the_calendar_edges(
    client: TestClient, field: str, value: object
) -> None:
    resp = await client.post("/v1/shifts", json={"user": "a", "hours": 1, field: value}, headers=bearer())
    assert [e["field"] for e in (await problem(resp, 422))["errors"]] == [field]


async def test_an_undecodable_authorization_header_is_401(client: TestClient) -> None:
    assert client.server is not None
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(b"GET /v1/page HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\nConnection: close\r\n\r\n")
    await writer.drain()
    answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]


async def test_a_subject_that_is_not_a_uuid_is_401_and_ids_compare_as_uuids(client: TestClient) -> None:
    await problem(await client.get(f"/v1/me/{ME}", headers=bearer("responder", "not-a-uuid")), 401)
    upper = await client.get(f"/v1/me/{ME}", headers=bearer("responder", str(ME).upper()))
    assert upper.status == 200
    await problem(await client.get(f"/v1/me/{uuid.uuid4()}", headers=bearer("responder")), 403)


@pytest.mark.parametrize("path", ["/v1/db-down", "/v1/refused"])
async def test_an_unreachable_database_is_503_with_retry_after(client: TestClient, path: str) -> None:
    resp = await client.get(path, headers=bearer())
    await problem(resp, 503)
    assert int(resp.headers["Retry-After"]) > 0


def test_every_route_declares_who_may_call_it() -> None:
    other = Api("x", "1")
    with pytest.raises(ValueError, match="roles"):
        other.route("GET", "/v1/open", summary="no roles", roles=PUBLIC)(page)
    with pytest.raises(ValueError, match="PUBLIC"):
        other.route("GET", "/feed", summary="token route off /v1", roles=ANYONE)(page)


async def test_the_declaration_enforces_roles_before_reading_the_body(client: TestClient) -> None:
    await problem(await client.post("/v1/shifts", data=b"{oops", headers=json_bearer("responder")), 403)
