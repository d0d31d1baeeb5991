"""The four services as OS processes on the real broker and database."""

import json
import uuid
from typing import Any

import aiohttp
import asyncpg
import pytest

from shared.messages import SendNotification
from shared.testing import eventually, produce, read_topic
from shared.topics import NOTIFICATION_COMMANDS, USERS
from tests.conftest import Infra, Stack, token
from tests.e2e.http import call

pytestmark = pytest.mark.e2e
ADMIN = token(uuid.uuid4(), "admin")


async def new_user(stack: Stack, **fields: Any) -> dict[str, Any]:
    body = {"name": "Grace", "email": f"{uuid.uuid4().hex}@example.com", "time_zone": "America/New_York"} | fields
    status, user = await call("POST", stack.url("schedule", "/v1/users"), json=body, headers=ADMIN)
    assert status == 201, user
    return user  # type: ignore[no-any-return]


async def test_a_user_written_in_schedule_reaches_notifier_and_callrouter(stack: Stack, db: asyncpg.Pool) -> None:
    user = await new_user(stack, phone="+12125550100")
    recipient_url = stack.url("notifier", f"/v1/recipients/{user['id']}")

    async def recipient() -> Any:
        status, body = await call("GET", recipient_url, headers=ADMIN)
        return body if status == 200 else None

    got = await eventually(recipient, what="recipient projected in notifier")
    assert (got["name"], got["phone"], got["version"]) == ("Grace", "+12125550100", 1)
    await eventually(
        lambda: db.fetchval("SELECT phone FROM callrouter.responders WHERE user_id = $1", uuid.UUID(user["id"])),
        what="responder projected in callrouter",
    )

    own = token(user["id"], "responder")
    status, edited = await call(
        "PATCH", stack.url("schedule", f"/v1/users/{user['id']}"), json={"time_zone": "Asia/Kolkata"}, headers=own
    )
    assert status == 200 and edited["version"] == 2

    async def second_version() -> Any:
        body = await recipient()
        return body if body and body["version"] == 2 else None

    assert (await eventually(second_version, what="edit projected"))["time_zone"] == "Asia/Kolkata"


async def test_self_service_limits(stack: Stack) -> None:
    user, other = await new_user(stack), await new_user(stack)
    own = token(user["id"], "responder")
    url = stack.url("schedule", f"/v1/users/{user['id']}")
    assert (await call("PATCH", url, json={"role": "admin"}, headers=own))[0] == 403
    assert (await call("PATCH", stack.url("schedule", f"/v1/users/{other['id']}"), json={"name": "x"}, headers=own))[
        0
    ] == 403
    assert (await call("PATCH", url, json={"name": "x"}, headers=token(user["id"], "observer")))[0] == 403
    assert (await call("POST", stack.url("schedule", "/v1/users"), json={}, headers=own))[0] == 403
    status, body = await call("GET", stack.url("notifier", f"/v1/recipients/{other['id']}"), headers=own)
    assert status == 403, body


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "fields"),
    [
        ("POST", "/v1/users", {"data": b"{nope", "headers": ADMIN | {"Content-Type": "application/json"}}, 400, None),
        ("POST", "/v1/users", {"data": b'{"name": "a"}', "headers": ADMIN}, 415, None),
        ("POST", "/v1/users", {"json": {"name": "", "time_zone": "UTC"}, "headers": ADMIN}, 422, {"name", "email"}),
        (
            "POST",
            "/v1/users",
            {"json": {"name": "a", "email": "a@b.io", "time_zone": "Nowhere/Land"}, "headers": ADMIN},
            422,
            {"time_zone"},
        ),
        (
            "POST",
            "/v1/users",
            {"json": {"name": "a", "email": "a@b.io", "time_zone": "UTC", "phone": "12"}, "headers": ADMIN},
            422,
            {"phone"},
        ),
        (
            "POST",
            "/v1/teams",
            {"json": {"name": "t", "member_ids": [str(uuid.uuid4())]}, "headers": ADMIN},
            422,
            {"member_ids"},
        ),
        (
            "POST",
            "/v1/users",
            {"json": {"name": "nul\x00byte", "email": "n@b.io", "time_zone": "UTC"}, "headers": ADMIN},
            422,
            {"name"},
        ),
        ("GET", "/v1/users/not-a-uuid", {"headers": ADMIN}, 422, {"user_id"}),
        ("GET", f"/v1/users/{uuid.uuid4()}", {"headers": ADMIN}, 404, None),
        ("GET", "/v1/users", {}, 401, None),
        ("GET", "/v1/users", {"headers": {"Authorization": "Bearer expired.or.forged"}}, 401, None),
        ("GET", "/v1/no-such-route", {"headers": ADMIN}, 404, None),
    ],
)
async def test_bad_input_gets_a_problem_with_a_reason(
    stack: Stack, method: str, path: str, kwargs: dict[str, Any], status: int, fields: set[str] | None
) -> None:
    got, body = await call(method, stack.url("schedule", path), **kwargs)
    assert got == status, body
    assert body["status"] == status and body["title"]
    if fields:
        assert {e["field"] for e in body["errors"]} == fields


async def test_a_notification_command_pages_once_however_often_it_arrives(
    stack: Stack, infra: Infra, db: asyncpg.Pool
) -> None:
    user_id = uuid.uuid4()
    command = SendNotification(user_id=user_id, idempotency_key=f"test:{user_id}", title="Take my shift?", body="Sat")
    repeat = SendNotification(user_id=user_id, idempotency_key=f"test:{user_id}", title="again", body="again")
    follow_up = SendNotification(user_id=user_id, idempotency_key=f"test:{user_id}:2", title="Reminder", body="Sat")
    raw = [(m.key.encode(), m.model_dump_json().encode()) for m in (command, command, repeat)]
    await produce(infra.kafka_bootstrap, NOTIFICATION_COMMANDS.name, [*raw, (str(user_id).encode(), b"garbage")])
    await produce(
        infra.kafka_bootstrap,
        NOTIFICATION_COMMANDS.name,
        [(follow_up.key.encode(), follow_up.model_dump_json().encode())],
    )

    async def history() -> Any:
        status, body = await call(
            "GET", stack.url("notifier", "/v1/notifications"), headers=token(user_id, "responder")
        )
        assert status == 200, body
        return body if len(body) >= 2 else None

    titles = {d["title"] for d in await eventually(history, what="two deliveries")}
    assert titles == {"Take my shift?", "Reminder"}
    assert await db.fetchval("SELECT count(*) FROM notifier.deliveries WHERE user_id = $1", user_id) == 2
    parked = await read_topic(
        infra.kafka_bootstrap,
        NOTIFICATION_COMMANDS.dlq,
        until=lambda rs: any(r.key == str(user_id).encode() for r in rs),
    )
    assert [r.value for r in parked if r.key == str(user_id).encode()] == [b"garbage"]


@pytest.mark.parametrize("service", ["schedule", "coverage", "callrouter", "notifier"])
async def test_every_service_exposes_health_metrics_and_openapi(stack: Stack, service: str) -> None:
    assert (await call("GET", stack.url(service, "/healthz")))[0] == 200
    status, ready = await call("GET", stack.url(service, "/readyz"))
    assert status == 200 and ready["status"] == "ready"
    async with aiohttp.ClientSession() as http, http.get(stack.url(service, "/metrics")) as resp:
        assert resp.status == 200 and "http_requests_total" in await resp.text()
    status, spec = await call("GET", stack.url(service, "/openapi.json"))
    assert status == 200 and spec["openapi"].startswith("3.1") and spec["info"]["title"] == service


async def test_the_correlation_id_of_a_request_travels_with_its_events(stack: Stack, infra: Infra) -> None:
    correlation_id = f"corr-{uuid.uuid4()}"
    body = {"name": "Cora", "email": f"{uuid.uuid4().hex}@example.com", "time_zone": "UTC"}
    headers = ADMIN | {"X-Correlation-ID": correlation_id}
    status, user = await call("POST", stack.url("schedule", "/v1/users"), json=body, headers=headers)
    assert status == 201
    records = await read_topic(
        infra.kafka_bootstrap, USERS.name, until=lambda rs: any(r.key == user["id"].encode() for r in rs)
    )
    (record,) = [r for r in records if r.key == user["id"].encode()]
    headers_of = dict(record.headers)
    assert headers_of["correlation_id"] == correlation_id.encode()
    assert headers_of["type"] == b"UserSnapshot"


async def test_logs_are_json_lines_carrying_the_correlation_id_across_services(stack: Stack) -> None:
    correlation_id = f"corr-{uuid.uuid4()}"
    body = {"name": "Logan", "email": f"{uuid.uuid4().hex}@example.com", "time_zone": "UTC"}
    status, user = await call(
        "POST", stack.url("schedule", "/v1/users"), json=body, headers=ADMIN | {"X-Correlation-ID": correlation_id}
    )
    assert status == 201

    def lines_with_id(service: str) -> list[dict[str, Any]]:
        lines = stack.services[service].log_path.read_text().splitlines()
        return [json.loads(line) for line in lines if correlation_id in line]

    async def projected_in_notifier() -> list[dict[str, Any]]:
        # snapshots are consumed in batches: the batch's line carries every message's correlation id
        return [e for e in lines_with_id("notifier") if e["event"] == "snapshots projected"]

    (projected,) = await eventually(projected_in_notifier, what="notifier logged the projection")
    # one message alone is handled with its own id; a batch of several lists each message's
    assert correlation_id in [projected.get("correlation_id"), *projected.get("correlation_ids", [])]
    assert user["id"] in projected["keys"]
    assert projected["service"] == "notifier" and projected["level"] == "info"
    (request,) = [e for e in lines_with_id("schedule") if e["event"] == "http request"]
    assert (request["route"], request["status"], request["service"]) == ("/v1/users", 201, "schedule")
    assert request["request_id"] and request["timestamp"].endswith("Z")


async def test_a_deactivated_users_token_stops_working_in_schedule_and_notifier(stack: Stack) -> None:
    user = await new_user(stack)
    own = token(user["id"], "responder")
    history = stack.url("notifier", "/v1/notifications")
    profile = stack.url("schedule", f"/v1/users/{user['id']}")

    async def notifier_knows() -> bool:
        return (await call("GET", stack.url("notifier", f"/v1/recipients/{user['id']}"), headers=ADMIN))[0] == 200

    await eventually(notifier_knows, what="recipient projected in notifier")
    assert (await call("GET", history, headers=own))[0] == 200
    status, _ = await call("PATCH", profile, json={"active": False}, headers=ADMIN)
    assert status == 200
    assert (await call("PATCH", profile, json={"name": "Still me"}, headers=own))[0] == 401

    async def refused_by_notifier() -> bool:
        return (await call("GET", history, headers=own))[0] == 401

    await eventually(refused_by_notifier, what="notifier refuses the deactivated user (snapshot over Kafka)")
