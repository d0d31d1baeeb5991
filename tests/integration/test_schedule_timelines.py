"""schedule's use cases on the real PostgreSQL: timelines staged with the change, the rolling horizon job."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from services.schedule.service import covers, directory, feeds, policies, schedules
from services.schedule.service.commands import (
    AddOverride,
    DefinePolicy,
    DefineSchedule,
    EditUser,
    LayerSpec,
    NewUser,
    RuleSpec,
)
from shared.auth import Principal
from shared.db import create_pool
from shared.errors import Conflict, InvalidInput, NotFound
from shared.messages import CoverageRejected, CoverageRequestAccepted, ScheduleTimeline, ShiftRef
from shared.migrations import migrate, migrations_for
from shared.topics import TIMELINES
from tests.conftest import Infra

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 22, 10, tzinfo=UTC)


@pytest.fixture
async def pool(infra: Infra) -> AsyncIterator[asyncpg.Pool]:
    schema = f"s_{uuid.uuid4().hex[:8]}"
    await migrate(infra.database_url, schema, migrations_for("schedule"))
    pool = await create_pool(infra.database_url, schema)
    yield pool
    await pool.close()


async def people(pool: asyncpg.Pool, n: int) -> list[str]:
    users = [
        await directory.create_user(pool, NewUser(f"P{i}", f"{uuid.uuid4().hex}@example.com", "UTC"))
        for i in range(n)
    ]
    return [str(u.id) for u in users]


def weekly(name: str, users: list[str]) -> DefineSchedule:
    layer = LayerSpec(tuple(uuid.UUID(u) for u in users), 1, "weeks", datetime(2026, 11, 2, 9))
    return DefineSchedule(name, "Europe/Berlin", "recurring", layers=(layer,))


ADMIN = Principal(user_id=uuid.uuid4(), role="admin")


async def timelines(pool: asyncpg.Pool) -> list[ScheduleTimeline]:
    rows = await pool.fetch("SELECT payload FROM outbox WHERE topic = $1 ORDER BY id", TIMELINES.name)
    return [ScheduleTimeline.model_validate_json(r["payload"]) for r in rows]


async def test_the_rolling_job_extends_each_short_horizon_once_even_on_two_replicas(pool: asyncpg.Pool) -> None:
    users = await people(pool, 2)
    created = [await schedules.create_schedule(pool, weekly(f"S{i}", users), NOW) for i in range(5)]
    first = await timelines(pool)
    assert [t.version for t in first] == [1] * 5
    assert all(t.horizon_end - NOW >= timedelta(days=60) for t in first)

    assert await schedules.refresh_timelines(pool, NOW + timedelta(hours=12)) == 0  # the horizon is still long

    later = NOW + timedelta(days=2)
    counts = await asyncio.gather(*(schedules.refresh_timelines(pool, later, batch=2) for _ in range(2)))
    assert sum(counts) == 5  # every schedule once, whichever replica took it
    rolled = (await timelines(pool))[5:]
    assert sorted(t.schedule_id for t in rolled) == sorted(s.id for s in created)
    assert all(t.version == 2 and t.horizon_end == first[0].horizon_end + timedelta(days=2) for t in rolled)
    assert await schedules.refresh_timelines(pool, later) == 0


async def test_a_rejected_change_stages_no_event(pool: asyncpg.Pool) -> None:
    users = await people(pool, 1)
    schedule = await schedules.create_schedule(pool, weekly("Solo", users), NOW)
    with pytest.raises(InvalidInput) as bad:
        bad_user = AddOverride(schedule.id, uuid.uuid4(), NOW, NOW + timedelta(hours=1))
        await covers.add_override(pool, ADMIN, bad_user, NOW)
    assert bad.value.field == "user_id"
    assert len(await timelines(pool)) == 1
    assert await pool.fetchval("SELECT count(*) FROM covers") == 0


async def test_coverage_is_checked_against_the_final_schedule_at_acceptance(pool: asyncpg.Pool) -> None:
    a, b = await people(pool, 2)
    schedule = await schedules.create_schedule(pool, weekly("Pair", [a, b]), NOW)
    turn = ShiftRef(
        schedule_id=schedule.id, start=datetime(2026, 11, 30, 8, tzinfo=UTC), end=datetime(2026, 12, 7, 8, tzinfo=UTC)
    )
    own = CoverageRequestAccepted(
        request_id=uuid.uuid4(), requester_id=uuid.UUID(a), covering_user_id=uuid.UUID(a), shifts=[turn]
    )
    answer = await covers.apply_coverage(pool, own, NOW)
    assert isinstance(answer, CoverageRejected) and "cannot cover their own" in answer.problems[0].reason

    # an admin override placed on part of the turn before acceptance: the turn is no longer all a's
    override = AddOverride(schedule.id, uuid.UUID(b), turn.start + timedelta(hours=3), turn.start + timedelta(hours=4))
    await covers.add_override(pool, ADMIN, override, NOW)
    late = CoverageRequestAccepted(
        request_id=uuid.uuid4(), requester_id=uuid.UUID(a), covering_user_id=uuid.UUID(b), shifts=[turn]
    )
    answer = await covers.apply_coverage(pool, late, NOW)
    assert isinstance(answer, CoverageRejected)
    assert answer.problems[0].reason.startswith(f"user {b} is on call from 2026-11-30T11:00:00+00:00")
    assert await pool.fetchval("SELECT count(*) FROM covers WHERE source = 'coverage'") == 0


async def test_calendar_tokens_are_stored_only_as_hashes(pool: asyncpg.Pool) -> None:
    (a,) = await people(pool, 1)
    me = Principal(user_id=uuid.UUID(a), role="responder")
    token = await feeds.issue_calendar_token(pool, me, uuid.UUID(a))
    assert await pool.fetchval("SELECT count(*) FROM calendar_tokens WHERE token = $1", token) == 0
    feed = await feeds.calendar_feed(pool, token, None, NOW)
    assert feed.startswith(b"BEGIN:VCALENDAR")
    again = await feeds.issue_calendar_token(pool, me, uuid.UUID(a))
    with pytest.raises(NotFound):
        await feeds.calendar_feed(pool, token, None, NOW)  # the old token stopped working
    assert (await feeds.calendar_feed(pool, again, None, NOW)).startswith(b"BEGIN:VCALENDAR")


async def test_a_user_still_on_call_cannot_be_deactivated_and_a_deactivated_one_cannot_be_scheduled(
    pool: asyncpg.Pool,
) -> None:
    a, b = await people(pool, 2)
    schedule = await schedules.create_schedule(pool, weekly("Rota", [a, b]), NOW)
    await policies.create_policy(pool, DefinePolicy("Esc", (RuleSpec(5, (uuid.UUID(b),)),)))
    with pytest.raises(Conflict) as refused:
        await directory.edit_user(pool, ADMIN, EditUser(uuid.UUID(b), {"active": False}))
    assert "schedule Rota" in str(refused.value) and "policy Esc" in str(refused.value)

    await schedules.replace_schedule(pool, schedule.id, weekly("Rota", [a]), NOW)
    with pytest.raises(Conflict) as still:
        await directory.edit_user(pool, ADMIN, EditUser(uuid.UUID(b), {"active": False}))
    assert "schedule Rota" not in str(still.value) and "policy Esc" in str(still.value)

    (c,) = await people(pool, 1)
    assert not (await directory.edit_user(pool, ADMIN, EditUser(uuid.UUID(c), {"active": False}))).active
    with pytest.raises(InvalidInput) as bad:
        await schedules.create_schedule(pool, weekly("Ghost", [a, c]), NOW)
    assert bad.value.field == "layers.0.users"
