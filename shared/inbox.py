"""The consumer inbox: a consumed event has its effect exactly once."""

from __future__ import annotations

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
