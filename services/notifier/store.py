"""SQL of the notifier service."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from services.notifier.domain import Delivery
from shared.messages import UserSnapshot
from shared.projection import upsert_snapshot


async def upsert_recipient(conn: asyncpg.Connection, user: UserSnapshot) -> bool:
    return await upsert_snapshot(
        conn, "recipients", "user_id", user.version,
        {"user_id": user.user_id, "name": user.name, "email": user.email, "phone": user.phone,
         "time_zone": user.time_zone, "language": user.language, "active": user.active},
    )


async def get_recipient(pool: asyncpg.Pool, user_id: UUID) -> asyncpg.Record | None:
    return await pool.fetchrow("SELECT * FROM recipients WHERE user_id = $1", user_id)


async def is_deactivated(pool: asyncpg.Pool, user_id: UUID) -> bool:
    """Whether the projection holds this user as deactivated (unknown users are not)."""
    return bool(await pool.fetchval("SELECT NOT active FROM recipients WHERE user_id = $1", user_id))


async def insert_delivery(conn: asyncpg.Connection, d: Delivery, command_event_id: UUID) -> bool:
    """False when a delivery with the same idempotency key exists."""
    inserted = await conn.fetchval(
        """INSERT INTO deliveries (id, user_id, idempotency_key, title, body, urgency, data, status, command_event_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (idempotency_key) DO NOTHING RETURNING true""",
        d.id, d.user_id, d.idempotency_key, d.title, d.body, d.urgency, d.data, d.status, command_event_id,
    )
    return bool(inserted)


async def list_deliveries(pool: asyncpg.Pool, user_id: UUID, *, limit: int, offset: int) -> list[Delivery]:
    rows = await pool.fetch(
        """SELECT id, user_id, idempotency_key, title, body, urgency, data, status FROM deliveries
           WHERE user_id = $1 ORDER BY created_at DESC, id LIMIT $2 OFFSET $3""",
        user_id, limit, offset,
    )
    return [Delivery(**dict(r)) for r in rows]
