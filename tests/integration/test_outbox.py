"""The outbox publishes exactly what committed, in order, and keeps rows while the broker is away."""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from shared.db import create_pool
from shared.kafka import ensure_topics
from shared.messages import UserSnapshot
from shared.migrations import migrate, migrations_for
from shared.outbox import OutboxRelay, enqueue
from shared.testing import eventually, read_topic
from shared.topics import USERS
from tests.conftest import Infra


def snapshot(user_id: uuid.UUID, version: int) -> UserSnapshot:
    return UserSnapshot(
        user_id=user_id,
        version=version,
        name=f"v{version}",
        email="a@b.io",
        time_zone="UTC",
        language="en",
        role="responder",
        active=True,
    )


@pytest.fixture
async def pool(infra: Infra) -> AsyncIterator[asyncpg.Pool]:
    schema = f"o_{uuid.uuid4().hex[:8]}"
    await migrate(infra.database_url, schema, migrations_for("shared-only"))
    await ensure_topics(infra.kafka_bootstrap, [USERS])
    pool = await create_pool(infra.database_url, schema)
    yield pool
    await pool.close()


@pytest.fixture
async def producer(infra: Infra) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, acks="all", enable_idempotence=False)
    await producer.start()
    yield producer
    await producer.stop()


async def test_committed_rows_are_published_in_order_and_rolled_back_ones_never(
    infra: Infra, pool: asyncpg.Pool, producer: AIOKafkaProducer
) -> None:
    user_id = uuid.uuid4()
    async with pool.acquire() as conn:
        for version in (1, 2, 3):
            async with conn.transaction():
                await enqueue(conn, snapshot(user_id, version), headers={"correlation_id": "c-1"})
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await enqueue(conn, snapshot(user_id, 99))
                raise RuntimeError("the use case failed after staging its event")

    relay = OutboxRelay(pool, producer, pool_schema(pool), batch_size=2)
    task = asyncio.create_task(relay.run())
    try:
        mine = await read_topic(
            infra.kafka_bootstrap,
            USERS.name,
            until=lambda rs: len([r for r in rs if r.key == str(user_id).encode()]) >= 3,
        )
        await eventually(lambda: pool.fetchval("SELECT count(*) = 0 FROM outbox"), what="outbox drained")
    finally:
        relay.stop()
        await task
    ours = [r for r in mine if r.key == str(user_id).encode()]
    assert [json.loads(r.value)["version"] for r in ours] == [1, 2, 3]
    assert len({r.partition for r in ours}) == 1
    headers = dict(ours[0].headers)
    assert headers["type"] == b"UserSnapshot" and headers["correlation_id"] == b"c-1"


async def test_rows_wait_while_the_broker_is_unreachable(infra: Infra, pool: asyncpg.Pool) -> None:
    user_id = uuid.uuid4()
    async with pool.acquire() as conn, conn.transaction():
        await enqueue(conn, snapshot(user_id, 1))

    class Unreachable:
        async def send(self, *args: object, **kwargs: object) -> "asyncio.Future[None]":
            raise ConnectionError("broker down")

    relay = OutboxRelay(pool, Unreachable(), pool_schema(pool), max_backoff_s=0.2)  # type: ignore[arg-type]
    task = asyncio.create_task(relay.run())
    await asyncio.sleep(1.0)
    relay.stop()
    await task
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 1


async def test_one_relay_at_a_time_per_schema(pool: asyncpg.Pool, producer: AIOKafkaProducer) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await enqueue(conn, snapshot(uuid.uuid4(), 1))
    async with pool.acquire() as holder, holder.transaction():
        await holder.execute("SELECT pg_advisory_xact_lock(hashtext('outbox:' || $1))", pool_schema(pool))
        assert await OutboxRelay(pool, producer, pool_schema(pool)).publish_batch() == 0
    assert await OutboxRelay(pool, producer, pool_schema(pool)).publish_batch() == 1


def pool_schema(pool: asyncpg.Pool) -> str:
    return str(pool._connect_kwargs["server_settings"]["search_path"])


async def test_a_message_the_broker_refuses_for_good_is_parked_not_blocking(
    infra: Infra, pool: asyncpg.Pool, producer: AIOKafkaProducer
) -> None:
    user_id = uuid.uuid4()
    huge = snapshot(user_id, 2).model_copy(update={"name": "x" * 1_200_000})  # over the 1 MiB request limit
    async with pool.acquire() as conn:
        for message in (snapshot(user_id, 1), huge, snapshot(user_id, 3)):
            async with conn.transaction():
                await enqueue(conn, message)
    relay = OutboxRelay(pool, producer, pool_schema(pool))
    assert await relay.publish_batch() == 3
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 0
    parked = await pool.fetchrow("SELECT key, error, length(payload) AS size FROM outbox_parked")
    assert parked["key"] == str(user_id) and "TooLarge" in parked["error"] and parked["size"] > 1_200_000
    records = await read_topic(
        infra.kafka_bootstrap,
        USERS.name,
        until=lambda rs: len([r for r in rs if r.key == str(user_id).encode()]) >= 2,
    )
    assert [json.loads(r.value)["version"] for r in records if r.key == str(user_id).encode()] == [1, 3]


class _Recorder:
    """A producer that acknowledges at once and remembers what it was given."""

    def __init__(self) -> None:
        self.keys: list[bytes] = []

    async def send(self, topic: str, value: bytes, key: bytes, headers: object) -> "asyncio.Future[None]":
        self.keys.append(key)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def test_the_relay_listens_again_after_postgresql_restarts(infra: Infra) -> None:
    """With a poll far longer than the test, only a NOTIFY can wake the relay: after a restart of PostgreSQL it
    must LISTEN on a new connection, or a row enqueued afterwards waits for the next poll."""
    from tools import infra as local

    pg = await asyncio.to_thread(local.start_postgres, infra.run_dir / f"pg-{uuid.uuid4().hex[:8]}", fast=True)
    pool: asyncpg.Pool | None = None
    try:
        schema = "relay"
        await migrate(pg.url, schema, migrations_for("shared-only"))
        pool = await create_pool(pg.url, schema)
        producer = _Recorder()
        relay = OutboxRelay(pool, producer, schema, poll_interval_s=300, max_backoff_s=0.5)
        task = asyncio.create_task(relay.run())

        async def listening() -> bool:
            conn = await asyncpg.connect(pg.url)
            try:
                query = "SELECT count(*) FROM pg_stat_activity WHERE query = $1 AND pid <> pg_backend_pid()"
                return bool(await conn.fetchval(query, f'LISTEN "{schema}_outbox"'))
            finally:
                await conn.close()

        async def publish_one() -> None:
            user_id = uuid.uuid4()
            assert pool is not None
            async with pool.acquire() as conn, conn.transaction():
                await enqueue(conn, snapshot(user_id, 1))
            await eventually(
                lambda: asyncio.sleep(0, result=str(user_id).encode() in producer.keys),
                timeout_s=20,
                what="the NOTIFY wakes the relay (its poll is 300 s away)",
            )

        await eventually(listening, timeout_s=10, what="the relay listens")
        await publish_one()

        await asyncio.to_thread(pg.stop)
        pg = await asyncio.to_thread(local.start_postgres, pg.run_dir, pg.port, fast=True)
        await eventually(listening, timeout_s=20, what="the relay listens again after the restart")
        await publish_one()
        relay.stop()
        await asyncio.wait_for(task, 10)
    finally:
        if pool is not None:
            pool.terminate()
        await asyncio.to_thread(pg.stop, delete_data=True)
