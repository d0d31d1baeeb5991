"""Use cases of the callrouter service."""

from __future__ import annotations

import asyncpg

from services.callrouter import store
from shared.messages import UserSnapshot
from shared.projection import project_once

USERS_CONSUMER = "callrouter.users"


async def apply_user_snapshot(pool: asyncpg.Pool, snapshot: UserSnapshot) -> bool:
    """Keep the dialable responders in step with schedule's users; True if it changed."""
    return await project_once(pool, USERS_CONSUMER, snapshot, store.upsert_responder)

