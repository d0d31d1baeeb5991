"""Durable timers fired in batches on the real PostgreSQL: many due timers of a kind in one handler call and
one transaction, each once across replicas; a failing batch falls back to one by one, so only the bad timer is
retried and parked; kinds with a one-at-a-time handler keep working beside them."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from shared import timers
from shared.db import create_pool
from shared.migrations import migrate, migrations_for
from shared.timers import Timer, TimerRunner
from tests.conftest import Infra

T = datetime(2026, 11, 22, 10, tzinfo=UTC)


@pytest.fixture
async def schema(infra: Infra) -> str:
    name = f"tb_{uuid.uuid4().hex[:8]}"
    await migrate(infra.database_url, name, migrations_for("shared-only"))
    conn = await asyncpg.connect(infra.database_url, server_settings={"search_path": name})
    try:  # no unique key: a second effect of one timer shows as a second row
        await conn.execute("CREATE TABLE effects (key text NOT NULL, txid bigint NOT NULL DEFAULT txid_current())")
    finally:
        await conn.close()
    return name


@pytest.fixture
async def pool(infra: Infra, schema: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(infra.database_url, schema, max_size=6)
    yield pool
    await pool.close()


async def arm(pool: asyncpg.Pool, kind: str, keys: list[str], due: datetime = T) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await timers.schedule_many(conn, [(kind, key, due, {"key": key}) for key in keys])


async def record(conn: asyncpg.Connection, batch: list[Timer]) -> None:
    await conn.execute("INSERT INTO effects (key) SELECT unnest($1::text[])", [t.key for t in batch])


async def test_due_timers_of_a_kind_fire_in_batches_one_transaction_each(pool: asyncpg.Pool, schema: str) -> None:
    await arm(pool, "push", [f"p{i:03}" for i in range(250)])
    await arm(pool, "push", ["later"], T + timedelta(hours=1))
    await arm(pool, "expire", ["e1", "e2"])
    calls: list[list[str]] = []
    singles: list[str] = []

    async def push(conn: asyncpg.Connection, batch: list[Timer]) -> None:
        calls.append([t.key for t in batch])
        await record(conn, batch)

    async def expire(conn: asyncpg.Connection, timer: Timer) -> None:
        singles.append(timer.key)

    fire = TimerRunner(pool, schema, {"expire": expire}, batch_handlers={"push": push}, batch_size=100)
    assert await fire.fire_due(T) == 252
    assert sorted(len(c) for c in calls) == [50, 100, 100]
    assert [k for c in calls for k in c] == [f"p{i:03}" for i in range(250)], "due order, once each"
    assert sorted(singles) == ["e1", "e2"]
    per_transaction = await pool.fetch("SELECT count(*) AS n FROM effects GROUP BY txid ORDER BY n")
    assert [r["n"] for r in per_transaction] == [50, 100, 100]
    assert [r["key"] for r in await pool.fetch("SELECT key FROM timers")] == ["later"]


async def test_a_failing_batch_falls_back_to_one_by_one_and_only_the_bad_timer_is_parked(
    pool: asyncpg.Pool, schema: str
) -> None:
    await arm(pool, "push", [f"p{i}" for i in range(20)])

    async def push(conn: asyncpg.Connection, batch: list[Timer]) -> None:
        await record(conn, batch)  # rolled back with the batch when it fails
        if any(t.key == "p7" for t in batch):
            raise ValueError("p7 is broken")

    fire = TimerRunner(pool, schema, {}, batch_handlers={"push": push}, max_attempts=2, first_backoff_s=60)
    assert await fire.fire_due(T) == 19
    keys = [r["key"] for r in await pool.fetch("SELECT key FROM effects ORDER BY key")]
    assert keys == sorted(f"p{i}" for i in range(20) if i != 7)
    retried = await pool.fetchrow("SELECT key, attempts, last_error FROM timers")
    assert (retried["key"], retried["attempts"], retried["last_error"]) == ("p7", 1, "ValueError: p7 is broken")
    assert await fire.fire_due(T + timedelta(hours=1)) == 0
    parked = await pool.fetchrow("SELECT key, attempts, last_error FROM timers_parked")
    assert (parked["key"], parked["attempts"]) == ("p7", 2)
    assert await pool.fetchval("SELECT count(*) FROM timers") == 0


async def test_two_replicas_firing_batches_fire_each_timer_exactly_once(infra: Infra, schema: str) -> None:
    pools = [await create_pool(infra.database_url, schema, max_size=4) for _ in range(2)]
    try:
        await arm(pools[0], "push", [f"k{i:04}" for i in range(1000)])
        fired_by = [0, 0]

        def replica(n: int) -> TimerRunner:
            async def push(conn: asyncpg.Connection, batch: list[Timer]) -> None:
                await record(conn, batch)
                fired_by[n] += len(batch)
                await asyncio.sleep(0.01)  # a batch takes time: the other replica claims meanwhile

            return TimerRunner(pools[n], schema, {}, batch_handlers={"push": push}, concurrency=3, batch_size=50)

        counts = await asyncio.gather(replica(0).fire_due(T), replica(1).fire_due(T))
        assert sum(counts) == 1000 and all(fired_by), fired_by
        rows = await pools[0].fetch("SELECT key, count(*) AS n FROM effects GROUP BY key")
        assert len(rows) == 1000 and {r["n"] for r in rows} == {1}
    finally:
        for p in pools:
            await p.close()


async def test_a_database_failure_mid_batch_leaves_every_timer_due(pool: asyncpg.Pool, schema: str) -> None:
    await arm(pool, "push", [f"p{i}" for i in range(30)])
    killed = {"left": 1}

    async def push(conn: asyncpg.Connection, batch: list[Timer]) -> None:
        await record(conn, batch)
        if killed["left"]:
            killed["left"] -= 1
            await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")

    fire = TimerRunner(pool, schema, {}, batch_handlers={"push": push})
    with pytest.raises((asyncpg.PostgresConnectionError, asyncpg.InterfaceError, ConnectionError)):
        await fire.fire_due(T)
    assert await pool.fetchval("SELECT count(*) FROM effects") == 0
    assert await pool.fetchval("SELECT count(*) FROM timers WHERE attempts = 0") == 30
    assert await fire.fire_due(T) == 30
    assert await pool.fetchval("SELECT count(DISTINCT key) = count(*) AND count(*) = 30 FROM effects")


async def test_workers_are_added_only_while_claims_come_back_full(
    pool: asyncpg.Pool, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pass for a few due timers claims once more to find none left, whatever the concurrency; a backlog of
    full batches brings in the other workers."""
    claims = 0
    claim = TimerRunner._fire_one

    async def counted(self: TimerRunner, now: datetime | None, last_id: int) -> tuple[int, bool] | None:
        nonlocal claims
        claims += 1
        return await claim(self, now, last_id)

    monkeypatch.setattr(TimerRunner, "_fire_one", counted)
    running = most = 0

    async def push(conn: asyncpg.Connection, batch: list[Timer]) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.05)  # a provider's answer: other workers claim meanwhile
        await record(conn, batch)
        running -= 1

    fire = TimerRunner(pool, schema, {}, batch_handlers={"push": push}, concurrency=4, batch_size=10)
    await arm(pool, "push", ["a", "b", "c"])
    assert await fire.fire_due(T) == 3
    assert claims == 2  # the batch of 3, then the claim that finds nothing

    await arm(pool, "push", [f"p{i:03}" for i in range(200)])
    assert await fire.fire_due(T) == 200
    assert most == 4
    rows = await pool.fetch("SELECT key, count(*) AS n FROM effects GROUP BY key")
    assert len(rows) == 203 and {r["n"] for r in rows} == {1}
