"""Keeping callrouter's copies of schedule's published data, so a call is routed while schedule is down.

Each consumed batch is one transaction: the events not handled yet, the newest snapshot of each entity, one
statement per table (a replay from the start of a topic is thousands of records)."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from services.callrouter import store
from shared.messages import PolicySnapshot, ScheduleTimeline, SupportHoursSnapshot, UserSnapshot
from shared.projection import project_batch, replace_timelines


async def apply_users(pool: asyncpg.Pool, snapshots: Sequence[UserSnapshot]) -> int:
    """Who can be dialed (active, with a phone) and in which language."""
    return await project_batch(pool, "callrouter.users", snapshots, store.upsert_responders)


async def apply_policies(pool: asyncpg.Pool, snapshots: Sequence[PolicySnapshot]) -> int:
    return await project_batch(pool, "callrouter.policies", snapshots, store.upsert_policies)


async def apply_support_hours(pool: asyncpg.Pool, snapshots: Sequence[SupportHoursSnapshot]) -> int:
    return await project_batch(pool, "callrouter.support-hours", snapshots, store.upsert_support_hours)


async def apply_timelines(pool: asyncpg.Pool, timelines: Sequence[ScheduleTimeline]) -> int:
    return await project_batch(pool, "callrouter.timelines", timelines, replace_timelines)
