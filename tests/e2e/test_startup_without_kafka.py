"""A service starts while no Kafka broker listens (issue 11): HTTP serves, /readyz says it is still connecting to
Kafka, writes wait in the outbox; once a broker comes up on that address the service connects by itself,
becomes ready and publishes what waited."""

import asyncio
import json
import uuid
from typing import Any

import aiohttp
import asyncpg
import pytest

from shared.testing import eventually, read_topic
from shared.topics import USERS
from tests.conftest import Infra, Processes, _create_database, token
from tests.e2e.http import get
from tools import infra as local
from tools.procs import ServiceProcess, apply_migrations

pytestmark = pytest.mark.e2e


async def test_a_service_started_before_its_broker_serves_then_connects_and_publishes_what_waited(
    infra: Infra, processes: Processes
) -> None:
    database_url = await _create_database(infra.database_url, f"nk_{uuid.uuid4().hex[:10]}")
    apply_migrations(database_url)
    port = local.free_port()
    bootstrap = f"127.0.0.1:{port}"
    schedule = processes.start("schedule", wait=False, KAFKA_BOOTSTRAP=bootstrap, DATABASE_URL=database_url)

    healthz = await eventually(lambda: get(schedule, "/healthz"), timeout_s=30, what="/healthz answers")
    assert healthz[0] == 200

    async def settled() -> tuple[int, Any] | None:
        answer = await get(schedule, "/readyz")
        return answer if answer and answer[1]["checks"].get("database") == "ok" else None

    status, body = await eventually(settled, timeout_s=30, what="/readyz with the database up")
    assert status == 503, body
    assert "connecting" in body["checks"]["kafka"], body

    email = f"{uuid.uuid4().hex}@example.com"
    async with aiohttp.ClientSession() as http:
        async with http.post(
            schedule.base_url + "/v1/users",
            json={"name": "Early", "email": email, "time_zone": "Europe/Berlin", "role": "responder"},
            headers=token(uuid.uuid4(), "admin"),
        ) as resp:
            assert resp.status == 201, await resp.text()
            user_id = (await resp.json())["id"]
    conn = await asyncpg.connect(database_url)
    try:
        waiting = await conn.fetchval("SELECT count(*) FROM schedule.outbox WHERE key = $1", user_id)
        assert waiting >= 1, "the write waits in the outbox while Kafka is away"
        await asyncio.sleep(2.0)  # a few retries against nothing: still connecting, nothing lost
        status, body = await get(schedule, "/readyz") or (None, None)
        assert status == 503 and "connecting" in body["checks"]["kafka"], body

        broker = local.start_tansu(infra.run_dir / f"late-{port}", port)
        try:
            ready = await eventually(
                lambda: _ready(schedule), timeout_s=90, what="/readyz 200 once the broker is up"
            )
            assert ready["checks"]["kafka"] == "ok"
            await eventually(
                lambda: _empty(conn, user_id), timeout_s=30, what="the waiting outbox row published and removed"
            )
            published = await read_topic(
                bootstrap,
                USERS.name,
                until=lambda rs: any(json.loads(r.value).get("user_id") == user_id for r in rs),
            )
            assert any(json.loads(r.value)["email"] == email for r in published)
        finally:
            broker.stop()
    finally:
        await conn.close()


async def _ready(process: ServiceProcess) -> Any:
    answer = await get(process, "/readyz")
    return answer[1] if answer and answer[0] == 200 else None


async def _empty(conn: asyncpg.Connection, user_id: str) -> bool:
    return bool(await conn.fetchval("SELECT count(*) = 0 FROM schedule.outbox WHERE key = $1", user_id))
