"""Publish the current state of every call-routing alert again (CallAlertChanged on callrouter.alerts.v1).

    python -m services.callrouter.republish      (DATABASE_URL from the environment, like the service)

For a broker that lost its topics or a topic deleted by mistake; the compacted topic normally keeps the newest
state of every alert, so nothing else needs this. Staged in callrouter's outbox and published by the running
service's relay, with each alert's current version: safe at any time, a consumer already holding that version
changes nothing.
"""

from __future__ import annotations

import asyncio
import sys

import asyncpg

from services.callrouter import store
from services.callrouter.service.alerts import changed_event
from services.callrouter.settings import Settings
from shared.db import create_pool, transaction
from shared.outbox import enqueue_all

PAGE = 200


async def republish(pool: asyncpg.Pool) -> int:
    """Stage every alert's current state, a page per transaction, oldest first; returns how many."""
    count, after = 0, None
    while True:
        async with transaction(pool) as conn:
            page = await store.alerts_after(conn, after, PAGE)
            if not page:
                return count
            await enqueue_all(conn, [changed_event(a, await store.called_number(conn, a.call_id)) for a in page])
        count += len(page)
        after = (page[-1].created_at, page[-1].id)


async def _main() -> int:
    settings = Settings()
    pool = await create_pool(settings.database_url, settings.service_name)
    try:
        count = await republish(pool)
    finally:
        await pool.close()
    print(f"staged for publication: {count} alerts")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(_main()))
