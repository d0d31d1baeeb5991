"""A service projecting a compacted snapshot topic is ready only once it has applied what the topic held when
it started (issue 13): until then /readyz answers 503 naming the projection and how far behind it is."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, ClassVar, Literal

import aiohttp
import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from shared.db import create_pool
from shared.http import Api
from shared.kafka import ensure_topics
from shared.messages import Message
from shared.migrations import migrate, migrations_for
from shared.projection import project_batch, upsert_snapshots
from shared.runtime import Service
from shared.settings import ServiceSettings
from shared.topics import Topic
from tests.conftest import SESSION_TIMEOUT_MS, Infra

KEYS, VERSIONS = 2000, 3


class Thing(Message):
    entity_field: ClassVar[str] = "thing_id"
    type: Literal["Thing"] = "Thing"
    thing_id: uuid.UUID
    version: int


@pytest.fixture
async def schema(infra: Infra) -> AsyncIterator[str]:
    name = f"rc_{uuid.uuid4().hex[:8]}"
    await migrate(infra.database_url, name, migrations_for("shared-only"))
    pool = await create_pool(infra.database_url, name)
    await pool.execute("CREATE TABLE things (thing_id uuid PRIMARY KEY, version int NOT NULL)")
    await pool.close()
    yield name


async def publish(bootstrap: str, topic: Topic, things: list[Thing]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=5)
    await producer.start()
    try:
        sent = [await producer.send(topic.name, t.model_dump_json().encode(), key=t.key.encode()) for t in things]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def readyz(port: int) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
        return resp.status, await resp.json()


async def test_ready_only_after_the_snapshots_present_at_start_are_applied(infra: Infra, schema: str) -> None:
    topic = Topic(f"test.things.{uuid.uuid4().hex[:8]}.v1", "test", (Thing,), partitions=3, compacted=True)
    await ensure_topics(infra.kafka_bootstrap, [topic])
    keys = [uuid.uuid4() for _ in range(KEYS)]
    await publish(infra.kafka_bootstrap, topic, [Thing(thing_id=k, version=v) for v in range(1, VERSIONS + 1)
                                                 for k in keys])
    settings = ServiceSettings(
        service_name=schema, database_url=infra.database_url, kafka_bootstrap=infra.kafka_bootstrap, http_port=0,
        kafka_session_timeout_ms=int(SESSION_TIMEOUT_MS), consumer_batch_max_records=200, shutdown_grace_s=4,
    )  # fmt: skip
    svc = Service(settings, Api("t", "1"), consumes=[topic])

    async def upsert(conn: asyncpg.Connection, things: list[Thing]) -> list[Any]:
        rows = [(t.version, {"thing_id": t.thing_id}) for t in things]
        return await upsert_snapshots(conn, "things", "thing_id", rows)

    @svc.subscriber(topic, batch=True)
    async def on_things(things: list[Thing]) -> None:
        await project_batch(svc.pool, "test.things", things, upsert)
        await asyncio.sleep(0.1)  # a projection with real work to do: catching up takes a few seconds

    await svc.start()
    try:
        assert svc.port is not None
        seen: list[int] = []
        assert not await svc.projections_caught_up()  # what callrouter asks before routing a call
        deadline = time.monotonic() + 120
        while True:
            status, body = await readyz(svc.port)
            if status == 200:
                break
            assert time.monotonic() < deadline, body
            reason = body["checks"].get("projections", "")
            if "behind by" in reason:
                assert topic.name in reason, reason
                seen.append(int(reason.split("behind by ")[1].split()[0]))
            await asyncio.sleep(0.05)
        applied = await svc.pool.fetch("SELECT version, count(*) AS n FROM things GROUP BY version")
        assert {r["version"]: r["n"] for r in applied} == {VERSIONS: KEYS}, "ready before the projection caught up"
        assert seen and max(seen) > 1000, f"never reported as behind by much: {seen[:5]}"
        assert seen[-1] < max(seen), "the lag reported went down as it caught up"
        assert body["checks"]["projections"] == "ok"
        assert await svc.projections_caught_up()

        # Later snapshots are ordinary lag: the service stays ready.
        await publish(infra.kafka_bootstrap, topic, [Thing(thing_id=k, version=VERSIONS + 1) for k in keys[:500]])
        for _ in range(10):
            assert (await readyz(svc.port))[0] == 200
            await asyncio.sleep(0.1)
    finally:
        await svc.stop()
