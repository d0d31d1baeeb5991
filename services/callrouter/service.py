"""Use cases of the callrouter service."""

from __future__ import annotations

import asyncpg

from services.callrouter import store
from shared.db import transaction
from shared.inbox import claim
from shared.messages import UserSnapshot

USERS_CONSUMER = "callrouter.users"


async def apply_user_snapshot(pool: asyncpg.Pool, snapshot: UserSnapshot) -> bool:
    """Keep the dialable responders in step with schedule's users; True if it changed."""
    async with transaction(pool) as conn:
        if not await claim(conn, USERS_CONSUMER, snapshot.event_id):
            return False
        return await store.upsert_responder(conn, snapshot)
