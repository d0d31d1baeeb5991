"""Keeping callrouter's copies of schedule's published data, so a call is routed while schedule is down."""

from __future__ import annotations

import asyncpg

from services.callrouter import store
from shared.messages import PolicySnapshot, ScheduleTimeline, SupportHoursSnapshot, UserSnapshot
from shared.projection import project_once


async def apply_user(pool: asyncpg.Pool, snapshot: UserSnapshot) -> bool:
    """Who can be dialed (active, with a phone) and in which language."""
    return await project_once(pool, "callrouter.users", snapshot, store.upsert_responder)


async def apply_policy(pool: asyncpg.Pool, snapshot: PolicySnapshot) -> bool:
    return await project_once(pool, "callrouter.policies", snapshot, store.upsert_policy)


async def apply_support_hours(pool: asyncpg.Pool, snapshot: SupportHoursSnapshot) -> bool:
    return await project_once(pool, "callrouter.support-hours", snapshot, store.upsert_support_hours)


async def apply_timeline(pool: asyncpg.Pool, timeline: ScheduleTimeline) -> bool:
    return await project_once(pool, "callrouter.timelines", timeline, store.replace_timeline)
