"""The consumer inbox: a consumed event has its effect exactly once."""

from __future__ import annotations

from collections.abc import Sequence
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


async def claim_many(conn: asyncpg.Connection, consumer: str, event_ids: Sequence[UUID]) -> list[bool]:
    """`claim` for a batch in one statement: for each of `event_ids`, in order, True if this is its first
    occurrence in the batch and `consumer` had not handled it before.

    Call it inside the transaction that applies the batch's effects, as `claim`. The ids are inserted in sorted
    order, so two transactions claiming overlapping batches lock them in the same order and cannot deadlock.
    """
    unique = sorted(set(event_ids))
    rows = await conn.fetch(
        """INSERT INTO inbox (consumer, event_id) SELECT $1, e FROM unnest($2::uuid[]) AS e ORDER BY e
           ON CONFLICT DO NOTHING RETURNING event_id""",
        consumer,
        unique,
    )
    new = {r["event_id"] for r in rows}
    fresh = []
    for event_id in event_ids:
        fresh.append(event_id in new)
        new.discard(event_id)
    return fresh


async def purge(conn: asyncpg.Connection | asyncpg.Pool, older_than: timedelta) -> int:
    """Forget events handled longer ago than `older_than`; returns how many.

    Keep it longer than the topics' retention: an event replayed after its inbox row is gone would apply
    again (snapshots are still safe, being version-guarded; commands carry idempotency keys).
    """
    status = await conn.execute("DELETE FROM inbox WHERE processed_at < now() - $1::interval", older_than)
    return int(status.split()[-1])
