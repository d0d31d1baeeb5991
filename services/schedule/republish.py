"""Publish every snapshot schedule owns again: users, teams, policies, support hours and timelines.

    python -m services.schedule.republish      (DATABASE_URL from the environment, like the service)

For a broker that lost its topics (a memory-only local broker restarted, a cluster rebuilt) or a topic
deleted by mistake: consumers rebuild their projections from snapshots, and compacted topics normally keep
the newest one of every entity, so nothing else needs this. Everything is staged in schedule's outbox and
published by the running service's relay. Safe at any time: consumers keep the newest version they hold, so
a snapshot they already have changes nothing (timelines are published as a new version of the same
content).
"""

from __future__ import annotations

import asyncio
import sys

import asyncpg

from services.schedule import store
from services.schedule.service.directory import team_snapshot, user_snapshot
from services.schedule.service.policies import policy_snapshot
from services.schedule.service.schedules import publish_timeline
from services.schedule.service.support_hours import support_hours_snapshot
from services.schedule.settings import Settings
from shared.db import create_pool, transaction
from shared.messages import Message, utcnow
from shared.outbox import enqueue

PAGE = 200


async def republish(pool: asyncpg.Pool) -> dict[str, int]:
    """Stage a snapshot of every entity and a fresh timeline of every schedule; returns how many of each."""
    counts = {"users": 0, "teams": 0, "policies": 0, "support_hours": 0, "timelines": 0}

    async def stage(kind: str, messages: list[Message]) -> None:
        async with transaction(pool) as conn:
            for message in messages:
                await enqueue(conn, message)
        counts[kind] += len(messages)

    offset = 0
    while users := await store.list_users(pool, limit=PAGE, offset=offset):
        await stage("users", [user_snapshot(u) for u in users])
        offset += PAGE
    await stage("teams", [team_snapshot(t) for t in await store.list_teams(pool)])
    offset = 0
    while policies := await store.list_policies(pool, limit=PAGE, offset=offset):
        await stage("policies", [policy_snapshot(p) for p in policies])
        offset += PAGE
    offset = 0
    while hours := await store.list_support_hours(pool, limit=PAGE, offset=offset):
        await stage("support_hours", [support_hours_snapshot(h) for h in hours])
        offset += PAGE
    offset = 0
    while schedules := await store.list_schedules(pool, limit=PAGE, offset=offset):
        now = utcnow()
        async with transaction(pool) as conn:
            for schedule in await store.lock_schedules(conn, [s.id for s in schedules]):
                await publish_timeline(conn, schedule, now)
        counts["timelines"] += len(schedules)
        offset += PAGE
    return counts


async def _main() -> int:
    settings = Settings()
    pool = await create_pool(settings.database_url, settings.service_name)
    try:
        counts = await republish(pool)
    finally:
        await pool.close()
    print("staged for publication:", ", ".join(f"{n} {kind}" for kind, n in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(_main()))
