"""SQL of the callrouter service."""

from __future__ import annotations

import asyncpg

from shared.messages import UserSnapshot
from shared.projection import upsert_snapshot


async def upsert_responder(conn: asyncpg.Connection, user: UserSnapshot) -> bool:
    return await upsert_snapshot(
        conn, "responders", "user_id", user.version,
        {"user_id": user.user_id, "name": user.name, "phone": user.phone, "language": user.language,
         "active": user.active},
    )
