"""coverage's batched snapshot projections on the real PostgreSQL: a batch of timelines, users or teams leaves
what handling them one by one would, including the pending requests it makes obsolete."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from services.coverage.service import workflow
from shared.db import create_pool
from shared.messages import ScheduleTimeline, TeamSnapshot, TimelineSegment, UserSnapshot, utcnow
from tests.api.conftest import Client, call, coverage_app
from tests.api.coverage_world import DAY, World, midnight, period, shift
from tests.conftest import Infra, _create_database
from tools.procs import apply_migrations


@pytest.fixture
async def world(infra: Infra) -> AsyncIterator[tuple[World, Client]]:
    url = await _create_database(infra.database_url, f"cb_{uuid.uuid4().hex[:10]}")
    apply_migrations(url)
    pool = await create_pool(url, "coverage")
    async with TestClient(TestServer(coverage_app(pool, url))) as client:
        w = World(pool)
        amy, ben, cat = await w.user("amy"), await w.user("ben"), await w.user("cat")
        await w.team(amy, ben, cat)
        yield w, client
    await pool.close()


async def request(client: Client, w: World, schedule_id: uuid.UUID, day: int, by: str, to: str) -> str:
    payload = {"recipient_ids": [str(w.users[to])], **period(day, day), "shifts": [shift(schedule_id, day)]}
    status, created = await call(client, "POST", "/v1/coverage-requests", json=payload, headers=w.headers(by))
    assert status == 201, created
    return str(created["id"])


async def status_of(client: Client, w: World, request_id: str, by: str = "amy") -> dict[str, Any]:
    status, body = await call(client, "GET", f"/v1/coverage-requests/{request_id}", headers=w.headers(by))
    assert status == 200, body
    return dict(body)


async def shifts(pool: asyncpg.Pool) -> list[tuple[Any, ...]]:
    rows = await pool.fetch("SELECT schedule_id, starts_at, ends_at, user_id, source FROM timeline_shifts")
    return sorted(tuple(r) for r in rows)


def timeline(schedule_id: uuid.UUID, holders: list[uuid.UUID | None], version: int, days: int = 62) -> ScheduleTimeline:
    """As World.timeline builds it (day i held by holders[i % len]), without publishing it."""
    start = midnight() - DAY
    segments = [
        TimelineSegment(start=start + i * DAY, end=start + (i + 1) * DAY, user_id=holders[i % len(holders)],
                        source="layer" if holders[i % len(holders)] else "gap")
        for i in range(days + 1)
    ]
    return ScheduleTimeline(schedule_id=schedule_id, version=version, name="Primary", time_zone="UTC",
                            horizon_start=start, horizon_end=start + (days + 1) * DAY, segments=segments)


async def test_a_batch_of_timelines_keeps_the_newest_and_obsoletes_what_it_contradicts(
    world: tuple[World, Client],
) -> None:
    w, client = world
    amy, ben, cat = (w.users[n] for n in ("amy", "ben", "cat"))
    first, second = uuid.uuid4(), uuid.uuid4()
    published = [await w.timeline(first, [ben, amy]), await w.timeline(second, [amy, ben])]
    kept = await request(client, w, first, 2, "amy", "ben")  # amy holds day 2 of `first`
    lost = await request(client, w, second, 3, "amy", "ben")  # and day 3 of `second`

    # The batch: `first` v2 (amy keeps day 2), `second` v2 (cat takes amy's days), `first` v2 again, and
    # `second` v1 again, late.
    batch = [timeline(first, [ben, amy], 2), timeline(second, [cat, ben], 2), published[1]]
    await workflow.on_timelines(w.pool, [batch[0], batch[1], batch[0], batch[2]], utcnow())

    versions = {r["schedule_id"]: r["version"] for r in await w.pool.fetch("SELECT * FROM timelines")}
    assert versions == {first: 2, second: 2}
    assert (await status_of(client, w, kept))["status"] == "pending"
    gone = await status_of(client, w, lost)
    assert gone["status"] == "obsolete" and "the schedule changed" in gone["reason"]
    expected = sorted(
        (t.schedule_id, s.start, s.end, s.user_id, s.source) for t in batch[:2] for s in t.segments if s.user_id
    )
    assert await shifts(w.pool) == expected
    await workflow.on_timelines(w.pool, batch, utcnow())  # redelivered: nothing changes
    assert await shifts(w.pool) == expected


def user(w: World, name: str, version: int, active: bool) -> UserSnapshot:
    return UserSnapshot(user_id=w.users[name], version=version, name=name, email=f"{name}@example.com",
                        time_zone="Europe/Berlin", language="en", role="responder", active=active)


async def test_a_batch_of_users_and_teams_applies_the_newest_and_obsoletes_a_deactivated_requester(
    world: tuple[World, Client],
) -> None:
    w, client = world
    amy, ben = w.users["amy"], w.users["ben"]
    schedule_id = uuid.uuid4()
    await w.timeline(schedule_id, [ben, amy])
    pending = await request(client, w, schedule_id, 2, "amy", "ben")
    dan = uuid.uuid4()
    w.users["dan"] = dan
    batch = [
        user(w, "amy", 5, active=False),
        user(w, "dan", 1, active=True),
        user(w, "amy", 4, active=True),  # older, after: amy stays deactivated
        user(w, "ben", 1, active=False),  # older than ben's v1 already held: ignored (equal version)
    ]
    await workflow.on_users(w.pool, batch, utcnow())
    rows = {r["user_id"]: (r["version"], r["active"]) for r in await w.pool.fetch("SELECT * FROM users")}
    assert rows[amy] == (5, False) and rows[dan] == (1, True) and rows[ben] == (1, True)
    done = await status_of(client, w, pending, by="ben")
    assert done["status"] == "obsolete" and "deactivated" in done["reason"]

    team = uuid.uuid4()
    teams = [
        TeamSnapshot(team_id=team, version=2, name="two", member_ids=[ben, dan]),
        TeamSnapshot(team_id=team, version=1, name="one", member_ids=[ben]),
    ]
    assert await workflow.on_teams(w.pool, teams) == 1
    assert await workflow.on_teams(w.pool, teams) == 0
    row = await w.pool.fetchrow("SELECT version, name, member_ids FROM teams WHERE team_id = $1", team)
    assert (row["version"], row["name"], row["member_ids"]) == (2, "two", [ben, dan])
