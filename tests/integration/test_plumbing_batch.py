"""Batch subscribers on the real broker: thousands of records, duplicates among them, a poison record and a
message that always fails in the middle; a database failure and a consumer stopped mid-batch. Every event
takes effect exactly once, in order per key, and only the two bad records are parked."""

import asyncio
import contextlib
import json
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import ClassVar, Literal

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from faststream.kafka import KafkaBroker

from shared.db import create_pool, transaction
from shared.kafka import ConsumerPolicy, batch_options, batch_subscriber, ensure_topics, make_broker
from shared.messages import Message
from shared.migrations import migrate, migrations_for
from shared.projection import fresh_events
from shared.settings import ServiceSettings
from shared.testing import eventually, read_topic
from shared.topics import Topic
from tests.conftest import SESSION_TIMEOUT_MS, Infra

CONSUMER = "test.ticks"


class Tick(Message):
    entity_field: ClassVar[str] = "thing_id"
    type: Literal["Tick"] = "Tick"
    thing_id: uuid.UUID
    seq: int
    text: str = ""


@pytest.fixture
async def pool(infra: Infra) -> AsyncIterator[asyncpg.Pool]:
    schema = f"b_{uuid.uuid4().hex[:8]}"
    await migrate(infra.database_url, schema, migrations_for("shared-only"))
    pool = await create_pool(infra.database_url, schema, max_size=4)
    # No unique constraint: an effect applied twice must show, not fail.
    await pool.execute("CREATE TABLE effects (applied bigserial, event_id uuid, thing text, seq int)")
    yield pool
    await pool.close()


@pytest.fixture
def topic() -> Topic:
    return Topic(f"test.ticks.{uuid.uuid4().hex[:8]}.v1", "test", (Tick,), partitions=3)


Handler = Callable[[list[Tick]], Awaitable[None]]


@pytest.fixture
async def consume(infra: Infra, topic: Topic) -> AsyncIterator[Callable[[Handler], Awaitable[KafkaBroker]]]:
    brokers: list[KafkaBroker] = []
    settings = ServiceSettings(
        service_name="test", kafka_bootstrap=infra.kafka_bootstrap, kafka_session_timeout_ms=int(SESSION_TIMEOUT_MS)
    )
    await ensure_topics(infra.kafka_bootstrap, [topic])

    async def start(handler: Handler) -> KafkaBroker:
        broker = make_broker(settings, ConsumerPolicy(max_attempts=3, first_backoff_s=0.05, max_backoff_s=0.2))
        batch_subscriber(broker, topic.name, Tick, **batch_options(settings, f"g-{topic.name}", 500))(handler)
        await broker.start()
        brokers.append(broker)
        return broker

    yield start
    for broker in brokers:
        with contextlib.suppress(Exception):
            await broker.stop()


async def apply(pool: asyncpg.Pool, ticks: list[Tick]) -> list[Tick]:
    """The effect under test: claim the batch's events and record each new one, in one transaction."""
    async with transaction(pool) as conn:
        fresh = await insert_effects(conn, ticks)
    return fresh


async def insert_effects(conn: asyncpg.Connection, ticks: list[Tick]) -> list[Tick]:
    fresh = await fresh_events(conn, CONSUMER, ticks)
    await conn.execute(
        """INSERT INTO effects (event_id, thing, seq)
           SELECT e, t, s FROM unnest($1::uuid[], $2::text[], $3::int[]) WITH ORDINALITY AS x(e, t, s, n)
           ORDER BY n""",
        [t.event_id for t in fresh],
        [t.key for t in fresh],
        [t.seq for t in fresh],
    )
    return fresh


def stream(things: int, per_thing: int) -> list[Tick]:
    """`per_thing` ticks for each of `things` keys, interleaved, each key's in sequence order."""
    keys = [uuid.uuid4() for _ in range(things)]
    return [Tick(thing_id=k, seq=s) for s in range(per_thing) for k in keys]


async def publish(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    """As fast as a producer goes; one producer keeps each partition's records in the order given."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=5)
    await producer.start()
    try:
        sent = [await producer.send(topic, value, key=key) for key, value in records]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


def record(tick: Tick) -> tuple[bytes, bytes]:
    return tick.key.encode(), tick.model_dump_json().encode()


async def effects(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT event_id, thing, seq FROM effects ORDER BY applied")


def assert_in_order_per_key(rows: list[asyncpg.Record]) -> None:
    last: dict[str, int] = {}
    for row in rows:
        assert row["seq"] > last.get(row["thing"], -1), f"{row['thing']}: {row['seq']} after {last[row['thing']]}"
        last[row["thing"]] = row["seq"]


async def test_a_batch_takes_effect_once_in_key_order_and_parks_only_its_bad_records(
    infra: Infra, topic: Topic, pool: asyncpg.Pool, consume: Callable[[Handler], Awaitable[KafkaBroker]]
) -> None:
    ticks = stream(things=60, per_thing=50)  # 3,000 events
    doomed = ticks[1500].model_copy(update={"text": "explode"})  # fails whatever happens: parked alone
    ticks[1500] = doomed
    records = [record(t) for t in ticks]
    rng = random.Random(7)
    # Redeliveries: some events a second time, each after its original (a producer retrying, a relay re-sending).
    for i in sorted(rng.sample(range(len(ticks) - 1), 300), reverse=True):
        records.insert(rng.randint(i + 1, min(len(records), i + 40)), record(ticks[i]))
    poison = (doomed.key.encode(), b'{"type": "Tick", "seq": "not a number"')
    records.insert(len(records) // 2 - 7, poison)
    await publish(infra.kafka_bootstrap, topic.name, records)

    sizes: list[int] = []
    alone: list[int] = []

    async def handler(ticks: list[Tick]) -> None:
        (sizes if len(ticks) > 1 else alone).append(len(ticks))
        if any(t.text == "explode" for t in ticks):
            raise RuntimeError(f"cannot handle tick {doomed.seq} of {doomed.key}")
        await apply(pool, ticks)

    await consume(handler)
    expected = {t.event_id for t in ticks} - {doomed.event_id}
    await eventually(
        lambda: pool.fetchval("SELECT count(*) >= $1 FROM effects", len(expected)), timeout_s=90, what="all effects"
    )
    parked = await read_topic(infra.kafka_bootstrap, topic.dlq, until=lambda rs: len(rs) >= 2)
    await asyncio.sleep(1.0)  # anything doubled would land by now
    rows = await effects(pool)
    assert len(rows) == len(expected) and {r["event_id"] for r in rows} == expected
    assert_in_order_per_key(rows)
    assert max(sizes) > 100, f"batches of {max(sizes)} at most: not batching"
    assert sorted(r.value for r in parked) == sorted([poison[1], record(doomed)[1]])
    errors = {r.value: dict(r.headers)["dlq-error"].decode() for r in parked}
    assert errors[poison[1]].startswith("ValidationError")
    assert errors[record(doomed)[1]] == f"RuntimeError: cannot handle tick {doomed.seq} of {doomed.key}"
    assert all(dict(r.headers)["dlq-source-topic"] == topic.name.encode() for r in parked)
    assert json.loads(record(doomed)[1])["text"] == "explode"


async def test_a_database_failure_mid_batch_is_retried_without_loss_or_double(
    infra: Infra, topic: Topic, pool: asyncpg.Pool, consume: Callable[[Handler], Awaitable[KafkaBroker]]
) -> None:
    ticks = stream(things=30, per_thing=40)
    await publish(infra.kafka_bootstrap, topic.name, [record(t) for t in ticks])
    killed = {"left": 3}

    async def handler(ticks: list[Tick]) -> None:
        async with transaction(pool) as conn:
            await insert_effects(conn, ticks)
            if killed["left"] and len(ticks) > 1:
                killed["left"] -= 1
                # The server ends this session with the batch's writes uncommitted: a real outage, as seen
                # by the client (a dropped connection), not an exception the test raises itself.
                await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")

    await consume(handler)
    await eventually(
        lambda: pool.fetchval("SELECT count(*) >= $1 FROM effects", len(ticks)), timeout_s=90, what="all effects"
    )
    await asyncio.sleep(1.0)
    rows = await effects(pool)
    assert killed["left"] == 0
    assert len(rows) == len(ticks) and {r["event_id"] for r in rows} == {t.event_id for t in ticks}
    assert_in_order_per_key(rows)
    with pytest.raises(AssertionError):
        await read_topic(infra.kafka_bootstrap, topic.dlq, until=lambda rs: len(rs) >= 1, timeout_s=2)


@pytest.mark.parametrize("stops", ["after its commit", "inside its transaction"])
async def test_a_consumer_stopped_mid_batch_neither_loses_nor_doubles(
    infra: Infra,
    topic: Topic,
    pool: asyncpg.Pool,
    consume: Callable[[Handler], Awaitable[KafkaBroker]],
    stops: str,
) -> None:
    """The first consumer stops holding a batch whose offsets it never committed: its effects either committed
    (then the inbox absorbs the redelivery) or rolled back (then the next member applies them)."""
    ticks = stream(things=30, per_thing=40)
    await publish(infra.kafka_bootstrap, topic.name, [record(t) for t in ticks])
    holding = asyncio.Event()

    async def stuck(ticks: list[Tick]) -> None:
        async with transaction(pool) as conn:
            await insert_effects(conn, ticks)
            if stops == "inside its transaction":
                holding.set()
                await asyncio.sleep(3600)
        holding.set()
        await asyncio.sleep(3600)

    first = await consume(stuck)
    await asyncio.wait_for(holding.wait(), 60)
    committed_before = await pool.fetchval("SELECT count(*) FROM effects")
    await first.stop()
    redelivered: list[int] = []

    async def healthy(ticks: list[Tick]) -> None:
        fresh = await apply(pool, ticks)
        redelivered.append(len(ticks) - len(fresh))

    await consume(healthy)
    await eventually(
        lambda: pool.fetchval("SELECT count(*) >= $1 FROM effects", len(ticks)), timeout_s=90, what="all effects"
    )
    await asyncio.sleep(1.0)
    rows = await effects(pool)
    assert len(rows) == len(ticks) and {r["event_id"] for r in rows} == {t.event_id for t in ticks}
    assert_in_order_per_key(rows)
    if stops == "after its commit":
        assert committed_before > 0 and sum(redelivered) >= committed_before, "the committed batch came again"
    else:
        assert committed_before == 0
