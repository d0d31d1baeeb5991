"""Benchmark `platform.outbox_roundtrip`: a state change committed together with its event -> outbox relay
-> Kafka -> consumer whose effect commits together with its inbox row, on the real local broker and
PostgreSQL (KAFKA_BOOTSTRAP, DATABASE_URL).

Prints one JSON line per figure:
- latency at a fixed offered rate, from just before the producing transaction commits to the consuming
  transaction's commit (`rate_per_s`, `p50_ms`, `p99_ms`, `n`); in the same run and at the same rate, the
  peer: the same consumer guard fed by a plain Kafka producer with no outbox and no inbox
  (`peer_p50_ms`, `peer_p99_ms`), i.e. what the delivery guarantees cost;
- `max_per_s`: a burst committed by four writers, timed until the last message's effect committed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
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

NAME = "platform.outbox_roundtrip"


class Tick(Message):
    entity_field: ClassVar[str] = "tick_id"
    type: Literal["Tick"] = "Tick"
    tick_id: uuid.UUID
    sent_ns: int


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Sink:
    """Counts arrivals and their latencies; lets the driver wait for the n-th."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def record(self, sent_ns: int) -> None:
        self.latencies.append((time.time_ns() - sent_ns) / 1e6)
        for n, fut in self._waiters:
            if len(self.latencies) >= n and not fut.done():
                fut.set_result(None)

    async def wait_for(self, n: int, limit_s: float) -> None:
        if len(self.latencies) >= n:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((n, fut))
        await asyncio.wait_for(fut, limit_s)


async def offered_load(send: Callable[[], Awaitable[None]], sink: Sink, rate: int, n: int) -> list[float]:
    """Send `n` messages at `rate` per second; the latencies of exactly those messages."""
    start_index = len(sink.latencies)
    started = time.perf_counter()
    for i in range(n):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await send()
    await sink.wait_for(start_index + n, 120)
    return sink.latencies[start_index : start_index + n]


async def main(rate: int, seconds: float, burst: int) -> None:
    configure_logging("bench", "WARNING")
    database_url = os.environ["DATABASE_URL"]
    bootstrap = os.environ["KAFKA_BOOTSTRAP"]
    run = uuid.uuid4().hex[:8]
    schema = f"bench_{run}"
    ours_topic = Topic(f"bench.ticks.{run}.v1", "bench", (Tick,), partitions=3)
    peer_topic = Topic(f"bench.direct.{run}.v1", "bench", (Tick,), partitions=3)
    await migrate(database_url, schema, migrations_for("shared-only"))
    await ensure_topics(bootstrap, [ours_topic, peer_topic])
    pool = await create_pool(database_url, schema, max_size=8)
    await pool.execute("CREATE TABLE effects (tick_id uuid PRIMARY KEY)")

    settings = ServiceSettings(service_name="bench", kafka_bootstrap=bootstrap, kafka_session_timeout_ms=6000)
    broker = make_broker(settings)
    ours, peer = Sink(), Sink()

    @broker.subscriber(ours_topic.name, **subscriber_options(settings, f"bench-{run}"))
    async def with_inbox(tick: Tick) -> None:
        async with transaction(pool) as conn:
            if await claim(conn, "bench", tick.event_id):
                await conn.execute("INSERT INTO effects VALUES ($1)", tick.tick_id)
        ours.record(tick.sent_ns)

    @broker.subscriber(peer_topic.name, **subscriber_options(settings, f"bench-direct-{run}"))
    async def without_inbox(tick: Tick) -> None:
        peer.record(tick.sent_ns)

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=2)
    await producer.start()
    relay = OutboxRelay(pool, producer, schema)
    relay_task = asyncio.create_task(relay.run())
    await broker.start()

    async def through_outbox(conn: asyncpg.Connection) -> None:
        async with conn.transaction():
            await enqueue(conn, Tick(tick_id=uuid.uuid4(), sent_ns=time.time_ns()), topic=ours_topic)

    async def direct() -> None:
        tick = Tick(tick_id=uuid.uuid4(), sent_ns=time.time_ns())
        await producer.send_and_wait(peer_topic.name, tick.model_dump_json().encode(), key=tick.key.encode())

    async with pool.acquire() as conn:
        # warm-up: groups joined, connections open
        await offered_load(lambda: through_outbox(conn), ours, rate, 20)
        await offered_load(direct, peer, rate, 20)
        n = int(rate * seconds)
        latencies = await offered_load(lambda: through_outbox(conn), ours, rate, n)
        peer_latencies = await offered_load(direct, peer, rate, n)
    figure = {
        "bench": NAME,
        "rate_per_s": rate,
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "n": n,
        "peer": "direct publish, no outbox, no inbox",
        "peer_p50_ms": round(statistics.median(peer_latencies), 2),
        "peer_p99_ms": round(percentile(peer_latencies, 0.99), 2),
    }
    print(json.dumps(figure), flush=True)

    writers, each = 4, burst // 4
    before = len(ours.latencies)
    t0 = time.perf_counter()

    async def writer() -> None:
        async with pool.acquire() as conn:
            for _ in range(each):
                await through_outbox(conn)

    await asyncio.gather(*(writer() for _ in range(writers)))
    await ours.wait_for(before + writers * each, 300)
    elapsed = time.perf_counter() - t0
    effects = await pool.fetchval("SELECT count(*) FROM effects")
    print(
        json.dumps(
            {
                "bench": NAME,
                "max_per_s": round(writers * each / elapsed, 1),
                "n": writers * each,
                "seconds": round(elapsed, 2),
                "effects_once": effects == len(ours.latencies),
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
