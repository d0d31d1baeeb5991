"""What a pooled connection carries back into the pool (`shared.db.create_pool`, whose release skips asyncpg's
reset query): no open transaction, and no LISTEN once `Listener` or `Announcements` are done with it. With one
connection in the pool, the next user gets the very connection the previous one released."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from shared.db import Announcements, Listener, create_pool
from tests.conftest import Infra


@pytest.fixture
async def pool(infra: Infra) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(infra.database_url, f"pr_{uuid.uuid4().hex[:8]}", min_size=1, max_size=1)
    yield pool
    await pool.close()


async def backend_and_channels(pool: asyncpg.Pool) -> tuple[int, list[str]]:
    async with pool.acquire() as conn:
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        channels = await conn.fetchval("SELECT coalesce(array_agg(c), '{}') FROM pg_listening_channels() c")
        return pid, list(channels)


async def test_a_transaction_left_open_is_rolled_back_on_release(pool: asyncpg.Pool) -> None:
    pid, _ = await backend_and_channels(pool)
    async with pool.acquire() as conn:
        await conn.execute("BEGIN")
        await conn.execute("CREATE TEMP TABLE left_open (x int) ON COMMIT DROP")
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT pg_backend_pid()") == pid
        assert await conn.fetchval("SELECT txid_current_if_assigned()") is None
        assert await conn.fetchval("SELECT to_regclass('pg_temp.left_open')") is None


async def test_a_listener_unlistens_before_its_connection_goes_back(pool: asyncpg.Pool) -> None:
    pid, _ = await backend_and_channels(pool)
    listener = Listener(pool, "pool_release_test", asyncio.Event(), "test")
    await listener.ensure()
    assert listener.listening
    await listener.close()
    assert await backend_and_channels(pool) == (pid, [])


async def test_announcements_unlisten_when_nobody_waits(pool: asyncpg.Pool) -> None:
    pid, _ = await backend_and_channels(pool)
    announcements = Announcements(pool, "pool_release_announced")
    async with announcements.watch("some-key") as event:
        assert announcements._conn is not None  # the pool's one connection, listening
        assert not event.is_set()
    assert await backend_and_channels(pool) == (pid, [])
