"""Notification preferences: how each user wants to be reached."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import asyncpg

from services.notifier import store
from services.notifier.domain import DEFAULT_PREFERENCES, Preferences, Step, checked_steps
from shared.auth import Principal
from shared.db import transaction


async def read(pool: asyncpg.Pool, actor: Principal, user_id: UUID) -> Preferences:
    """The user's preferences, the defaults if they never set any."""
    actor.require_self_or_admin(user_id)
    return await store.get_preferences(pool, user_id) or DEFAULT_PREFERENCES


async def define(
    pool: asyncpg.Pool, actor: Principal, user_id: UUID, high: Sequence[Step], low: Sequence[Step]
) -> Preferences:
    """Replace the user's steps for both urgencies."""
    actor.require_self_or_admin(user_id)
    prefs = Preferences(checked_steps(high, "high"), checked_steps(low, "low"))
    async with transaction(pool) as conn:
        held = await store.get_preferences(conn, user_id, lock=True)
        saved = Preferences(prefs.high, prefs.low, (held.version if held else 0) + 1)
        await store.save_preferences(conn, user_id, saved)
    return saved
