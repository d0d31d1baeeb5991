"""Durable timers on the real PostgreSQL: fired once across replicas, with their effect, surviving restarts."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from structlog.testing import capture_logs

from shared import timers
from shared.db import create_pool
from shared.messages import UserSnapshot
from shared.migrations import migrate, migrations_for
from shared.outbox import enqueue
from shared.runtime import Service
from shared.settings import ServiceSettings
from shared.testing import eventually
from shared.timers import Timer, TimerRunner
from tests.conftest import Infra

T = datetime(2026, 11, 22, 10, tzinfo=UTC)
EFFECTS = "CREATE TABLE effects (key text NOT NULL, attempts int NOT NULL, at timestamptz NOT NULL DEFAULT now())"


@pytest.fixture
async def schema(infra: Infra) -> str:
    name = f"tm_{uuid.uuid4().hex[:8]}"
    await migrate(infra.database_url, name, migrations_for("shared-only"))
    conn = await asyncpg.connect(infra.database_url, server_settings={"search_path": name})
    try:
        await conn.execute(EFFECTS)  # no unique key: a second effect of one timer shows as a second row
    finally:
        await conn.close()
    return name


@pytest.fixture
async def pool(infra: Infra, schema: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(infra.database_url, schema)
    yield pool
    await pool.close()


async def record(conn: asyncpg.Connection, timer: Timer) -> None:
    await conn.execute("INSERT INTO effects (key, attempts) VALUES ($1, $2)", timer.key, timer.attempts)


async def arm(
    pool: asyncpg.Pool, kind: str, key: str, due_at: datetime, payload: dict[str, object] | None = None
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await timers.schedule(conn, kind, key, due_at, payload)


async def effects(pool: asyncpg.Pool) -> list[str]:
    return [r["key"] for r in await pool.fetch("SELECT key FROM effects ORDER BY key")]


def runner(pool: asyncpg.Pool, **handlers: timers.Handler) -> TimerRunner:
    schema = str(pool._connect_kwargs["server_settings"]["search_path"])
    return TimerRunner(pool, schema, handlers, first_backoff_s=1.0)


async def test_a_timer_fires_once_at_its_due_time_with_its_effect_and_outbox_row(pool: asyncpg.Pool) -> None:
    user_id = uuid.uuid4()

    async def expire(conn: asyncpg.Connection, timer: Timer) -> None:
        await record(conn, timer)
        snapshot = UserSnapshot(
            user_id=user_id, version=1, name=timer.payload["name"], email="a@b.io", time_zone="UTC",
            language="en", role="responder", active=True,
        )  # fmt: skip
        await enqueue(conn, snapshot)

    await arm(pool, "expire", "r-1", T, {"name": "Ada"})
    fire = runner(pool, expire=expire)
    assert await fire.fire_due(T - timedelta(milliseconds=1)) == 0
    assert await effects(pool) == [] and await pool.fetchval("SELECT count(*) FROM outbox") == 0
    assert await fire.fire_due(T) == 1
    assert await effects(pool) == ["r-1"]
    outbox = await pool.fetch("SELECT key, payload FROM outbox")
    assert [r["key"] for r in outbox] == [str(user_id)] and b'"Ada"' in outbox[0]["payload"]
    assert await pool.fetchval("SELECT count(*) FROM timers") == 0
    assert await fire.fire_due(T + timedelta(days=1)) == 0
    assert await effects(pool) == ["r-1"]


async def test_a_moved_clock_fires_only_what_is_due_in_due_order(pool: asyncpg.Pool) -> None:
    for minutes in (3, 1, 2):
        await arm(pool, "remind", f"m{minutes}", T + timedelta(minutes=minutes))
    order: list[str] = []

    async def remind(conn: asyncpg.Connection, timer: Timer) -> None:
        order.append(timer.key)

    fire = runner(pool, remind=remind)
    assert await fire.fire_due(T + timedelta(minutes=2)) == 2
    assert order == ["m1", "m2"]
    assert [r["key"] for r in await pool.fetch("SELECT key FROM timers")] == ["m3"]


async def test_two_replicas_racing_over_200_due_timers_fire_each_exactly_once(infra: Infra, schema: str) -> None:
    pools = [await create_pool(infra.database_url, schema, max_size=4) for _ in range(2)]
    try:
        async with pools[0].acquire() as conn, conn.transaction():
            for i in range(200):
                await timers.schedule(conn, "step", f"k{i:03}", T - timedelta(seconds=i % 7))
        fired_by: list[int] = [0, 0]

        def replica(n: int) -> TimerRunner:
            async def step(conn: asyncpg.Connection, timer: Timer) -> None:
                await record(conn, timer)
                fired_by[n] += 1
                await asyncio.sleep(0.001)  # a handler takes time: the other replica claims meanwhile

            return TimerRunner(pools[n], schema, {"step": step}, concurrency=3)

        counts = await asyncio.gather(replica(0).fire_due(T), replica(1).fire_due(T))
        assert sum(counts) == 200
        assert all(fired_by), f"both replicas took part: {fired_by}"
        rows = await pools[0].fetch("SELECT key, count(*) AS n FROM effects GROUP BY key")
        assert len(rows) == 200 and {r["n"] for r in rows} == {1}
        assert await pools[0].fetchval("SELECT count(*) FROM timers") == 0
    finally:
        for p in pools:
            await p.close()


async def test_scheduling_the_same_key_again_moves_it_and_it_fires_once(pool: asyncpg.Pool) -> None:
    seen: list[object] = []

    async def deadline(conn: asyncpg.Connection, timer: Timer) -> None:
        seen.append(timer.payload["round"])
        await record(conn, timer)

    await arm(pool, "deadline", "c-1", T + timedelta(minutes=1), {"round": 1})
    await arm(pool, "deadline", "c-1", T + timedelta(minutes=5), {"round": 2})
    fire = runner(pool, deadline=deadline)
    assert await fire.fire_due(T + timedelta(minutes=2)) == 0
    assert await fire.fire_due(T + timedelta(minutes=5)) == 1
    assert await fire.fire_due(T + timedelta(days=1)) == 0
    assert seen == [2] and await effects(pool) == ["c-1"]


async def test_a_handler_may_rearm_its_own_key_and_a_pass_still_ends(pool: asyncpg.Pool) -> None:
    async def tick(conn: asyncpg.Connection, timer: Timer) -> None:
        await record(conn, timer)
        await timers.schedule(
            conn, "tick", timer.key, timer.due_at + timedelta(minutes=timer.payload["every"]), timer.payload
        )

    await arm(pool, "tick", "t", T, {"every": 0})  # re-armed for the very instant it fired
    fire = runner(pool, tick=tick)
    assert await asyncio.wait_for(fire.fire_due(T), 10) == 1
    assert await asyncio.wait_for(fire.fire_due(T), 10) == 1
    await arm(pool, "tick", "t", T + timedelta(minutes=1), {"every": 10})
    assert await fire.fire_due(T + timedelta(minutes=1)) == 1
    assert await fire.fire_due(T + timedelta(minutes=10)) == 0
    assert await fire.fire_due(T + timedelta(minutes=11)) == 1
    assert await effects(pool) == ["t"] * 4


async def test_a_cancelled_timer_never_fires(pool: asyncpg.Pool) -> None:
    await arm(pool, "expire", "gone", T)
    await arm(pool, "expire", "kept", T)
    async with pool.acquire() as conn, conn.transaction():
        assert await timers.cancel(conn, "expire", "gone") is True
        assert await timers.cancel(conn, "expire", "gone") is False
        assert await timers.cancel(conn, "other-kind", "kept") is False
    assert await runner(pool, expire=record).fire_due(T) == 1
    assert await effects(pool) == ["kept"]


async def test_a_failing_handler_is_rolled_back_retried_with_backoff_then_fires_once(pool: asyncpg.Pool) -> None:
    async def flaky(conn: asyncpg.Connection, timer: Timer) -> None:
        await record(conn, timer)  # written before the failure: must not survive it
        if timer.attempts < 2:
            raise RuntimeError(f"vendor said no ({timer.attempts})")

    await arm(pool, "flaky", "f", T)
    fire = runner(pool, flaky=flaky)

    async def state() -> asyncpg.Record:
        return await pool.fetchrow("SELECT attempts, last_error, due_at FROM timers")

    assert await fire.fire_due(T) == 0
    first = await state()
    assert (first["attempts"], first["due_at"]) == (1, T + timedelta(seconds=1))
    assert "vendor said no (0)" in first["last_error"]
    assert await effects(pool) == []
    assert await fire.fire_due(T + timedelta(seconds=1)) == 0
    assert tuple(await state())[::2] == (2, T + timedelta(seconds=3))  # 1 s, then 2 s
    assert await fire.fire_due(T + timedelta(seconds=2)) == 0  # not due yet
    assert await fire.fire_due(T + timedelta(seconds=3)) == 1
    assert [tuple(r) for r in await pool.fetch("SELECT key, attempts FROM effects")] == [("f", 2)]
    assert await pool.fetchval("SELECT count(*) FROM timers") == 0


async def test_a_handler_that_always_fails_ends_parked_with_its_error(pool: asyncpg.Pool) -> None:
    async def broken(conn: asyncpg.Connection, timer: Timer) -> None:
        await record(conn, timer)
        raise ValueError("bad payload")

    await arm(pool, "broken", "b", T, {"x": 1})
    fire = TimerRunner(
        pool, str(pool._connect_kwargs["server_settings"]["search_path"]), {"broken": broken}, max_attempts=3
    )
    for hours in range(4):
        assert await fire.fire_due(T + timedelta(hours=hours)) == 0
    assert await pool.fetchval("SELECT count(*) FROM timers") == 0
    parked = await pool.fetchrow("SELECT kind, key, payload, attempts, last_error, due_at FROM timers_parked")
    assert (parked["kind"], parked["key"], parked["payload"], parked["attempts"]) == ("broken", "b", {"x": 1}, 3)
    assert parked["last_error"] == "ValueError: bad payload"
    assert parked["due_at"] == T + timedelta(hours=1, seconds=2)  # as it was last retried
    assert await effects(pool) == []


@pytest.mark.parametrize(
    "error",
    [asyncpg.exceptions.DeadlockDetectedError("deadlock detected"), ConnectionResetError("connection reset")],
    ids=["deadlock", "connection-reset"],
)
async def test_a_transient_failure_is_retried_without_counting_as_an_attempt(
    pool: asyncpg.Pool, error: Exception
) -> None:
    async def unlucky(conn: asyncpg.Connection, timer: Timer) -> None:
        await record(conn, timer)
        raise error

    await arm(pool, "d", "d", T)
    fire = TimerRunner(
        pool, str(pool._connect_kwargs["server_settings"]["search_path"]), {"d": unlucky}, max_attempts=1
    )
    for seconds in range(3):
        assert await fire.fire_due(T + timedelta(seconds=seconds)) == 0
    row = await pool.fetchrow("SELECT attempts, last_error, due_at FROM timers")
    assert row["attempts"] == 0 and type(error).__name__ in row["last_error"]
    assert row["due_at"] == T + timedelta(seconds=3)  # retried a second after each try
    assert await pool.fetchval("SELECT count(*) FROM timers_parked") == 0 and await effects(pool) == []


async def test_a_bug_that_looks_like_io_is_not_transient_and_gets_parked(pool: asyncpg.Pool) -> None:
    async def misconfigured(conn: asyncpg.Connection, timer: Timer) -> None:
        raise FileNotFoundError("/etc/template.txt")

    await arm(pool, "m", "m", T)
    fire = TimerRunner(
        pool, str(pool._connect_kwargs["server_settings"]["search_path"]), {"m": misconfigured}, max_attempts=1
    )
    assert await fire.fire_due(T) == 0
    assert await pool.fetchval("SELECT count(*) FROM timers") == 0
    assert "FileNotFoundError" in await pool.fetchval("SELECT last_error FROM timers_parked")


async def test_a_crash_before_commit_leaves_no_effect_and_the_timer_due(pool: asyncpg.Pool) -> None:
    async def dies(conn: asyncpg.Connection, timer: Timer) -> None:
        await record(conn, timer)
        await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")  # the process is gone mid-handler

    await arm(pool, "k", "c", T)
    with pytest.raises(Exception):  # noqa: B017 - whichever way the dead connection reports itself
        await runner(pool, k=dies).fire_due(T)
    assert await effects(pool) == []
    assert tuple(await pool.fetchrow("SELECT key, attempts FROM timers")) == ("c", 0)
    assert await runner(pool, k=record).fire_due(T) == 1
    assert await effects(pool) == ["c"]


async def test_a_kind_without_a_handler_is_left_for_another_version_with_one_warning(pool: asyncpg.Pool) -> None:
    await arm(pool, "future-kind", "x", T)
    await arm(pool, "known", "y", T)
    fire = runner(pool, known=record)
    with capture_logs() as logs:
        assert await fire.fire_due(T) == 1
        await arm(pool, "future-kind", "z", T)
        fire._next_unhandled_check = 0  # the check runs once a minute; do not wait for it
        assert await fire.fire_due(T) == 0
    warnings = [e for e in logs if e.get("kind") == "future-kind"]
    assert len(warnings) == 1 and warnings[0]["log_level"] == "warning"
    assert sorted(r["key"] for r in await pool.fetch("SELECT key FROM timers WHERE attempts = 0")) == ["x", "z"]
    assert await effects(pool) == ["y"]


async def listening(pool: asyncpg.Pool, channel: str) -> int | None:
    """The backend pid LISTENing on `channel`, if any."""
    return await pool.fetchval(
        "SELECT pid FROM pg_stat_activity WHERE query = $1 AND pid <> pg_backend_pid() LIMIT 1", f'LISTEN "{channel}"'
    )


async def test_the_runner_wakes_on_notify_and_fires_at_the_due_time_long_before_its_poll(
    pool: asyncpg.Pool, schema: str
) -> None:
    """With a poll of 60 s, only the NOTIFY and the sleep until the due time can fire a timer armed 0.2 s ahead
    within the 20 s the test waits; after its listening connection is killed the runner must LISTEN again."""
    fire = TimerRunner(pool, schema, {"soon": record}, poll_interval_s=60)
    task = asyncio.create_task(fire.run())
    try:
        first_pid = await eventually(lambda: listening(pool, f"{schema}_timers"), timeout_s=10, what="LISTEN")
        for key in ("a", "b"):
            due = await pool.fetchval("SELECT clock_timestamp() + interval '0.2 seconds'")
            await arm(pool, "soon", key, due)
            fired_at = await eventually(
                lambda key=key: pool.fetchval("SELECT at FROM effects WHERE key = $1", key),  # type: ignore[misc]
                timeout_s=20,
                what=f"timer {key} fired (the poll is 60 s away)",
            )
            assert fired_at >= due, "fired before it was due"
            if key == "a":
                await pool.execute("SELECT pg_terminate_backend($1)", first_pid)

                async def relistened() -> bool:
                    pid = await listening(pool, f"{schema}_timers")
                    return pid is not None and pid != first_pid

                await eventually(relistened, timeout_s=20, what="LISTEN again on a new connection")
        assert not task.done()
    finally:
        fire.stop()
        await asyncio.wait_for(task, 10)


async def test_timers_survive_a_runner_restart(infra: Infra, schema: str) -> None:
    first = await create_pool(infra.database_url, schema)
    moved = T + timedelta(hours=1)
    clock_at: Callable[[datetime], Callable[[], datetime]] = lambda at: lambda: at  # noqa: E731
    old = TimerRunner(first, schema, {"later": record}, poll_interval_s=0.05, clock=clock_at(T))
    task = asyncio.create_task(old.run())
    await arm(first, "later", "a", moved)
    await arm(first, "later", "b", moved + timedelta(minutes=1))
    await asyncio.sleep(0.3)  # several polls: nothing is due on the old clock
    old.stop()
    await asyncio.wait_for(task, 10)
    await first.close()

    second = await create_pool(infra.database_url, schema)
    try:
        assert await second.fetchval("SELECT count(*) FROM timers") == 2
        assert await effects(second) == []
        new = TimerRunner(
            second, schema, {"later": record}, poll_interval_s=0.05, clock=clock_at(moved + timedelta(hours=1))
        )
        task = asyncio.create_task(new.run())
        try:
            await eventually(lambda: _equals(effects(second), ["a", "b"]), timeout_s=10, what="both fired")
        finally:
            new.stop()
            await asyncio.wait_for(task, 10)
        assert await second.fetchval("SELECT count(*) FROM timers") == 0
    finally:
        await second.close()


async def _equals(value: Awaitable[object], expected: object) -> bool:
    return await value == expected


async def test_schedule_refuses_naive_times(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        with pytest.raises(ValueError, match="timezone-aware"):
            await timers.schedule(conn, "k", "x", datetime(2026, 1, 1))
    assert await pool.fetchval("SELECT count(*) FROM timers") == 0


async def test_a_service_runs_the_timers_it_registers_and_stops_them(infra: Infra, schema: str) -> None:
    from shared.http import Api

    settings = ServiceSettings(
        service_name=schema, database_url=infra.database_url, kafka_bootstrap=infra.kafka_bootstrap, http_port=0,
        timer_poll_interval_s=60, shutdown_grace_s=4,
    )  # fmt: skip
    svc = Service(settings, Api("t", "1"))

    @svc.timer("ping")
    async def ping(conn: asyncpg.Connection, timer: Timer) -> None:
        await record(conn, timer)

    with pytest.raises(ValueError, match="already"):
        svc.timer("ping")(ping)
    await svc.start()
    try:
        await arm(svc.pool, "ping", "p", datetime.now(UTC))
        await eventually(lambda: _equals(effects(svc.pool), ["p"]), timeout_s=20, what="the service fired its timer")
    finally:
        await svc.stop()
    assert svc._timers_task is not None and svc._timers_task.done()
