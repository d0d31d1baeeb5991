import uuid
from datetime import timedelta

import asyncpg

from shared.db import create_pool
from shared.inbox import claim, purge
from shared.migrations import migrate, migrations_for
from tests.conftest import Infra


async def test_claims_are_once_per_consumer_and_old_ones_are_purged(infra: Infra) -> None:
    schema = f"i_{uuid.uuid4().hex[:8]}"
    await migrate(infra.database_url, schema, migrations_for("shared-only"))
    pool: asyncpg.Pool = await create_pool(infra.database_url, schema)
    try:
        old, recent = uuid.uuid4(), uuid.uuid4()
        async with pool.acquire() as conn:
            assert await claim(conn, "a", old) and await claim(conn, "a", recent)
            assert not await claim(conn, "a", old)
            assert await claim(conn, "b", old), "another consumer handles the same event on its own"
            await conn.execute("UPDATE inbox SET processed_at = now() - interval '15 days' WHERE event_id = $1", old)
        assert await purge(pool, timedelta(days=14)) == 2
        remaining = await pool.fetch("SELECT consumer, event_id FROM inbox")
        assert [(r["consumer"], r["event_id"]) for r in remaining] == [("a", recent)]
    finally:
        await pool.close()
