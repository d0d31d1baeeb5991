"""Escalation policies: who is paged, in which order, and who that is at a given moment."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from uuid import UUID, uuid4

import asyncpg

from services.schedule import store
from services.schedule.domain.policies import Policy, Rule, Step, new_policy, responders_at
from services.schedule.service import unique
from services.schedule.service.commands import DefinePolicy
from services.schedule.service.schedules import get_schedule, timeline
from shared.db import transaction
from shared.errors import found
from shared.messages import PolicyRule, PolicySnapshot
from shared.outbox import enqueue


def policy_snapshot(policy: Policy) -> PolicySnapshot:
    return PolicySnapshot(
        policy_id=policy.id, version=policy.version, name=policy.name, repeat=policy.repeat,
        rules=[
            PolicyRule(timeout_minutes=r.timeout_minutes, user_ids=list(r.user_ids), schedule_ids=list(r.schedule_ids))
            for r in policy.rules
        ],
    )


async def _checked_policy(conn: asyncpg.Connection, policy_id: UUID, cmd: DefinePolicy, version: int) -> Policy:
    rules = [Rule(r.timeout_minutes, r.user_ids, r.schedule_ids) for r in cmd.rules]
    users = await store.active_user_ids(conn, [u for r in rules for u in r.user_ids])
    schedules = await store.existing_schedule_ids(conn, [s for r in rules for s in r.schedule_ids])
    return replace(new_policy(policy_id, cmd.name, rules, cmd.repeat, users, schedules), version=version)


async def create_policy(pool: asyncpg.Pool, cmd: DefinePolicy) -> Policy:
    """Create an escalation policy and publish its snapshot."""
    async with transaction(pool) as conn:
        policy = await _checked_policy(conn, uuid4(), cmd, 1)
        with unique(f"a policy named {policy.name} exists"):
            await store.insert_policy(conn, policy)
        await enqueue(conn, policy_snapshot(policy))
    return policy


async def replace_policy(pool: asyncpg.Pool, policy_id: UUID, cmd: DefinePolicy) -> Policy:
    """Replace an escalation policy's name, rules and repeat count, and publish its snapshot."""
    async with transaction(pool) as conn:
        current = found(await store.get_policy(conn, policy_id, lock=True), f"policy {policy_id}")
        policy = await _checked_policy(conn, policy_id, cmd, current.version + 1)
        with unique(f"a policy named {policy.name} exists"):
            await store.update_policy(conn, policy)
        await enqueue(conn, policy_snapshot(policy))
    return policy


async def get_policy(pool: asyncpg.Pool | asyncpg.Connection, policy_id: UUID) -> Policy:
    return found(await store.get_policy(pool, policy_id), f"policy {policy_id}")


async def list_policies(pool: asyncpg.Pool, limit: int, offset: int) -> list[Policy]:
    return await store.list_policies(pool, limit=limit, offset=offset)


async def policy_on_call(pool: asyncpg.Pool, policy_id: UUID, at: datetime) -> tuple[Policy, list[Step]]:
    """Each rule of the policy with the responders it would page at `at` (schedules resolved at that moment)."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        policy = await get_policy(conn, policy_id)
        on_call_now: dict[UUID, UUID | None] = {}
        for schedule_id in {s for r in policy.rules for s in r.schedule_ids}:
            schedule = await get_schedule(conn, schedule_id)
            segment = (await timeline(conn, schedule, at, at + timedelta(microseconds=1)))[0]
            on_call_now[schedule_id] = segment.user_id
    return policy, responders_at(policy, on_call_now.__getitem__)
