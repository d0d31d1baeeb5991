"""Failure drills: a consumer SIGKILLed mid-stream, a broker restart, a SIGTERM with work in the outbox."""

import asyncio
import os
import signal
import uuid
from typing import Any

import aiohttp
import asyncpg
import pytest

from shared.messages import SendNotification, UserSnapshot
from shared.testing import eventually, produce, read_topic
from shared.topics import NOTIFICATION_COMMANDS, USERS
from tests.conftest import IsolatedInfra, Processes, token

pytestmark = pytest.mark.e2e
ADMIN = token(uuid.uuid4(), "admin")


def commands(n: int) -> list[tuple[bytes, bytes]]:
    users = [uuid.uuid4() for _ in range(24)]  # spread over every partition
    out = []
    for i in range(n):
        m = SendNotification(
            user_id=users[i % len(users)], idempotency_key=f"drill:{uuid.uuid4()}", title=f"#{i}", body=""
        )
        out.append((m.key.encode(), m.model_dump_json().encode()))
    return out


async def deliveries(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM notifier.deliveries"))
    finally:
        await conn.close()


async def test_a_consumer_killed_mid_stream_loses_nothing(isolated_infra: IsolatedInfra, processes: Processes) -> None:
    total = 3000
    first = processes.start("notifier", infra=isolated_infra)
    second = processes.start("notifier", infra=isolated_infra)
    batch = commands(total)

    async def feed() -> None:
        for i in range(0, total, 100):
            await produce(isolated_infra.kafka_bootstrap, NOTIFICATION_COMMANDS.name, batch[i : i + 100])

    feeding = asyncio.create_task(feed())
    await eventually(lambda: deliveries(isolated_infra.database_url), interval_s=0.02, what="consumption started")
    first.kill()
    handled_at_kill = await deliveries(isolated_infra.database_url)
    await feeding
    assert handled_at_kill < total, "the drill must kill the consumer mid-stream"

    processes.start("notifier", infra=isolated_infra)  # the killed one comes back
    await eventually(lambda: _at_least(isolated_infra, total), timeout_s=120, what=f"all {total} commands delivered")
    await asyncio.sleep(2)  # anything redelivered after the takeover must not add a row
    assert await deliveries(isolated_infra.database_url) == total
    assert second.alive


async def _at_least(infra: IsolatedInfra, n: int) -> bool:
    return await deliveries(infra.database_url) >= n


@pytest.mark.broker("noida")
async def test_a_broker_restart_loses_nothing_committed_to_the_outbox(
    isolated_infra: IsolatedInfra, processes: Processes
) -> None:
    schedule = processes.start("schedule", infra=isolated_infra)
    processes.start("notifier", infra=isolated_infra)
    assert isolated_infra.broker is not None

    async def create(n: int) -> list[str]:
        ids = []
        async with aiohttp.ClientSession() as http:
            for _ in range(n):
                body = {"name": "R", "email": f"{uuid.uuid4().hex}@example.com", "time_zone": "Europe/Berlin"}
                async with http.post(f"{schedule.base_url}/v1/users", json=body, headers=ADMIN) as resp:
                    assert resp.status == 201, await resp.text()
                    ids.append((await resp.json())["id"])
        return ids

    async def projected(ids: list[str]) -> bool:
        conn = await asyncpg.connect(isolated_infra.database_url)
        try:
            n = await conn.fetchval("SELECT count(*) FROM notifier.recipients WHERE user_id = ANY($1::uuid[])", ids)
        finally:
            await conn.close()
        return bool(n == len(ids))

    before = await create(5)
    await eventually(lambda: projected(before), timeout_s=60, what="users projected before the restart")

    isolated_infra.broker.stop()
    during = await create(5)  # accepted while the broker is down: they wait in the outbox
    isolated_infra.broker.start()

    await eventually(lambda: projected(before + during), timeout_s=120, what="users projected after the restart")
    records = await read_topic(isolated_infra.kafka_bootstrap, USERS.name, until=lambda rs: len(rs) >= 10)
    keys = [r.key.decode() for r in records]
    assert sorted(set(keys)) == sorted(before + during)


async def test_sigterm_flushes_the_outbox_and_exits_cleanly(
    isolated_infra: IsolatedInfra, processes: Processes
) -> None:
    schedule = processes.start("schedule", infra=isolated_infra, OUTBOX_POLL_INTERVAL_S="30")
    async with aiohttp.ClientSession() as http:
        bodies = [{"name": f"S{i}", "email": f"{uuid.uuid4().hex}@example.com", "time_zone": "UTC"} for i in range(20)]
        results: list[Any] = await asyncio.gather(
            *(http.post(f"{schedule.base_url}/v1/users", json=b, headers=ADMIN) for b in bodies)
        )
        assert all(r.status == 201 for r in results)
    conn = await asyncpg.connect(isolated_infra.database_url)
    try:
        await eventually(
            lambda: outbox_rows(conn, 0), timeout_s=30, what="the writes' NOTIFY wakes the relay, which publishes them"
        )
        # Rows the relay has not been woken for (no NOTIFY, next poll in 30 s): only the shutdown flush sends them.
        late = [snapshot(i) for i in range(5)]
        await conn.executemany(
            "INSERT INTO schedule.outbox (topic, key, payload) VALUES ($1, $2, $3)",
            [(USERS.name, m.key, m.model_dump_json().encode()) for m in late],
        )
        os.kill(schedule.pid, signal.SIGTERM)
        await eventually(lambda: asyncio.sleep(0, result=not schedule.alive), timeout_s=30, what="exit after SIGTERM")
        assert schedule.returncode == 0
        assert await conn.fetchval("SELECT count(*) FROM schedule.outbox") == 0
        assert await conn.fetchval("SELECT count(*) FROM schedule.users") == 20
    finally:
        await conn.close()
    records = await read_topic(isolated_infra.kafka_bootstrap, USERS.name, until=lambda rs: len(rs) >= 25)
    assert {r.key.decode() for r in records} >= {m.key for m in late}
    assert len({r.key for r in records}) == 25


async def outbox_rows(conn: asyncpg.Connection, expected: int) -> bool:
    return bool(await conn.fetchval("SELECT count(*) FROM schedule.outbox") == expected)


def snapshot(i: int) -> UserSnapshot:
    return UserSnapshot(
        user_id=uuid.uuid4(),
        version=1,
        name=f"Late {i}",
        email=f"late{i}@example.com",
        time_zone="UTC",
        language="en",
        role="responder",
        active=True,
    )
