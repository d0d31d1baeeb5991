"""Benchmark `platform.outbox_roundtrip`: state change committed with its event -> relay -> Kafka -> consumer
inbox commit, on the real local broker and PostgreSQL (KAFKA_BOOTSTRAP, DATABASE_URL).

Prints one JSON line per figure:
- latency at a fixed offered rate (`rate_per_s`, `p50_ms`, `p99_ms`, `n`), measured from the producing
  transaction's commit to the consuming transaction's commit;
- `max_per_s`: a burst of messages committed as fast as one writer can, until all are consumed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid
from typing import ClassVar, Literal

import asyncpg
from aiokafka import AIOKafkaProducer

from shared.db import create_pool, transaction
from shared.inbox import claim
from shared.kafka import ensure_topics, make_broker, subscriber_options
from shared.logs import configure_logging
from shared.messages import Message
from shared.migrations import migrate, migrations_for
from shared.outbox import OutboxRelay, enqueue
from shared.settings import ServiceSettings
from shared.topics import Topic


class Tick(Message):
    entity_field: ClassVar[str] = "tick_id"
    type: Literal["Tick"] = "Tick"
    tick_id: uuid.UUID
    sent_ns: int


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def main(rate: int, seconds: float, burst: int) -> None:
    configure_logging("bench", "WARNING")
    database_url = os.environ["DATABASE_URL"]
    bootstrap = os.environ["KAFKA_BOOTSTRAP"]
    run = uuid.uuid4().hex[:8]
    schema = f"bench_{run}"
    topic = Topic(f"bench.ticks.{run}.v1", "bench", (Tick,), partitions=3)
    await migrate(database_url, schema, migrations_for("shared-only"))
    await ensure_topics(bootstrap, [topic])
    pool = await create_pool(database_url, schema, max_size=8)
    await pool.execute("CREATE TABLE received (tick_id uuid PRIMARY KEY, latency_ms double precision)")

    settings = ServiceSettings(service_name="bench", kafka_bootstrap=bootstrap, kafka_session_timeout_ms=6000)
    broker = make_broker(settings)
    done = asyncio.Event()
    expected = {"n": 0}
    received = {"n": 0}

    @broker.subscriber(topic.name, **subscriber_options(settings, f"bench-{run}"))
    async def on_tick(tick: Tick) -> None:
        async with transaction(pool) as conn:
            if await claim(conn, "bench", tick.event_id):
                latency_ms = (time.time_ns() - tick.sent_ns) / 1e6
                await conn.execute("INSERT INTO received VALUES ($1, $2)", tick.tick_id, latency_ms)
        received["n"] += 1
        if received["n"] >= expected["n"]:
            done.set()

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=2)
    await producer.start()
    relay = OutboxRelay(pool, producer, schema)
    relay_task = asyncio.create_task(relay.run())
    await broker.start()

    async def commit_one(conn: asyncpg.Connection) -> None:
        async with conn.transaction():
            # sent_ns is stamped just before commit; the commit itself is inside the measured span
            await enqueue(conn, Tick(tick_id=uuid.uuid4(), sent_ns=time.time_ns()), topic=topic)

    async def wait_all(total: int, limit_s: float) -> None:
        expected["n"] = total
        if received["n"] < total:
            done.clear()
            await asyncio.wait_for(done.wait(), limit_s)

    # warm-up: group joined, connections open
    async with pool.acquire() as conn:
        await commit_one(conn)
    await wait_all(1, 60)

    # fixed offered rate
    n = int(rate * seconds)
    async with pool.acquire() as conn:
        started = time.perf_counter()
        for i in range(n):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await commit_one(conn)
    await wait_all(1 + n, 120)
    rows = await pool.fetch("SELECT latency_ms FROM received")
    latencies = [r["latency_ms"] for r in rows][-n:]
    print(
        json.dumps(
            {
                "bench": "platform.outbox_roundtrip",
                "rate_per_s": rate,
                "p50_ms": round(statistics.median(latencies), 2),
                "p99_ms": round(percentile(latencies, 0.99), 2),
                "n": n,
            }
        ),
        flush=True,
    )

    # maximum sustained throughput: a burst committed by 4 writers, timed until the last is consumed
    before = received["n"]
    t0 = time.perf_counter()

    async def writer(count: int) -> None:
        async with pool.acquire() as conn:
            for _ in range(count):
                await commit_one(conn)

    await asyncio.gather(*(writer(burst // 4) for _ in range(4)))
    await wait_all(before + 4 * (burst // 4), 300)
    elapsed = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "bench": "platform.outbox_roundtrip",
                "max_per_s": round(4 * (burst // 4) / elapsed, 1),
                "n": 4 * (burst // 4),
                "seconds": round(elapsed, 2),
            }
        ),
        flush=True,
    )

    relay.stop()
    await relay_task
    await broker.stop()
    await producer.stop()
    await pool.execute(f'DROP SCHEMA "{schema}" CASCADE')
    await pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--burst", type=int, default=4000)
    args = parser.parse_args()
    asyncio.run(main(args.rate, args.seconds, args.burst))
