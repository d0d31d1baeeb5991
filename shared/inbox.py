"""The consumer inbox: a consumed event has its effect exactly once."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import asyncpg


async def claim(conn: asyncpg.Connection, consumer: str, event_id: UUID) -> bool:
    """Record that `consumer` handles `event_id`; False if it already did.

    Call it inside the transaction that applies the effect: a rollback releases the claim, a commit makes
    every redelivery a no-op.
    """
    inserted = await conn.fetchval(
        "INSERT INTO inbox (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true",
        consumer,
        event_id,
    )
    return bool(inserted)


async def purge(conn: asyncpg.Connection | asyncpg.Pool, older_than: timedelta) -> int:
    """Forget events handled longer ago than `older_than`; returns how many.

    Keep it longer than the topics' retention: an event replayed after its inbox row is gone would apply
    again (snapshots are still safe, being version-guarded; commands carry idempotency keys).
    """
    status = await conn.execute("DELETE FROM inbox WHERE processed_at < now() - $1::interval", older_than)
    return int(status.split()[-1])
