"""`python -m services.schedule.republish` stages a snapshot of everything schedule owns, so a broker that
lost its topics can be refilled and every projection rebuilt."""

from __future__ import annotations

import json

import asyncpg

from services.schedule.republish import republish
from tests.api.conftest import Client, call, daily, new_schedule, new_users


async def test_republish_stages_every_snapshot(client: Client, pool: asyncpg.Pool) -> None:
    users = await new_users(client, 2)
    schedule = await new_schedule(client, daily(users))
    status, team = await call(client, "POST", "/v1/teams", json={"name": f"T-{schedule['id']}", "member_ids": users})
    assert status == 201, team
    since = await pool.fetchval("SELECT coalesce(max(id), 0) FROM outbox")
    counts = await republish(pool)
    rows = await pool.fetch("SELECT topic, payload FROM outbox WHERE id > $1", since)
    staged = [(r["topic"], json.loads(bytes(r["payload"]))) for r in rows]
    users_staged = {m["user_id"] for t, m in staged if t == "schedule.users.v1"}
    assert set(users) <= users_staged and counts["users"] == len(users_staged)
    assert team["id"] in {m["team_id"] for t, m in staged if t == "schedule.teams.v1"}
    timelines = [m for t, m in staged if t == "schedule.timelines.v1" and m["schedule_id"] == schedule["id"]]
    assert len(timelines) == 1 and {s["user_id"] for s in timelines[0]["segments"]} == set(users)
    assert counts["timelines"] == len([1 for t, _ in staged if t == "schedule.timelines.v1"])
