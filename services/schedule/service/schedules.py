"""Schedules and their final timelines: define, resolve, publish, and roll the published horizon forward."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar
from uuid import UUID, uuid4

import asyncpg

from services.schedule import domain, store
from services.schedule.domain.shifts import (
    Cover,
    Horizon,
    Schedule,
    Segment,
    StaticShift,
    Window,
    check_range,
    check_static_shifts,
    new_layer,
    on_call_at,
    parse_windows,
    resolve,
)
from services.schedule.service import unique
from services.schedule.service.commands import DefineSchedule, WindowSpec
from shared import cpu
from shared.db import transaction
from shared.errors import InvalidInput, NotFound, found
from shared.messages import ScheduleTimeline, TimelineSegment
from shared.outbox import enqueue

T = TypeVar("T")
HORIZON = Horizon()
MAX_QUERY_SPAN = timedelta(days=400)
# "who is on call at T" answers with the whole shift around T, looked for this far on either side
ON_CALL_REACH = timedelta(days=32)


def windows_of(specs: tuple[WindowSpec, ...], field_name: str) -> tuple[Window, ...]:
    return parse_windows([(w.days, w.start, w.end) for w in specs], field_name)


def build_schedule(schedule_id: UUID, cmd: DefineSchedule, version: int = 1) -> Schedule:
    """The domain schedule a definition describes; InvalidInput names the first field that breaks a rule."""
    if not cmd.name.strip():
        raise InvalidInput("name", "name must not be empty")
    zone = domain.check_time_zone(cmd.time_zone)
    layers = tuple(
        new_layer(
            spec.users, spec.length, spec.unit, spec.handoff,
            windows_of(spec.restrictions, f"layers.{i}.restrictions"), spec.start, spec.end,
            name=spec.name or f"Layer {i + 1}", field_name=f"layers.{i}",
        )
        for i, spec in enumerate(cmd.layers)
    )
    shifts = check_static_shifts([StaticShift(s.user_id, s.start, s.end) for s in cmd.shifts])
    if cmd.kind == "recurring" and (not layers or shifts):
        raise InvalidInput("layers", "a recurring schedule has one or more layers and no static shifts")
    if cmd.kind == "static" and layers:
        raise InvalidInput("layers", "a static schedule has shifts, not layers")
    return Schedule(schedule_id, cmd.name.strip(), zone, cmd.kind, layers, shifts, version, cmd.team_id)  # type: ignore[arg-type]


async def _check_references(conn: asyncpg.Connection, schedule: Schedule) -> None:
    known = await store.active_user_ids(conn, schedule.user_ids())
    for i, layer in enumerate(schedule.layers):
        unknown = [str(u) for u in layer.users if u not in known]
        if unknown:
            raise InvalidInput(f"layers.{i}.users", f"unknown or deactivated user ids: {', '.join(unknown)}")
    for i, shift in enumerate(schedule.shifts):
        if shift.user_id not in known:
            raise InvalidInput(f"shifts.{i}.user_id", f"unknown or deactivated user id: {shift.user_id}")
    if schedule.team_id is not None and await store.get_team(conn, schedule.team_id) is None:
        raise InvalidInput("team_id", f"unknown team id: {schedule.team_id}")


async def create_schedule(pool: asyncpg.Pool, cmd: DefineSchedule, now: datetime) -> Schedule:
    """Create a recurring or static schedule and publish its first timeline."""
    schedule = build_schedule(uuid4(), cmd)
    async with transaction(pool) as conn:
        await _check_references(conn, schedule)
        with unique(f"a schedule named {schedule.name} exists"):
            await store.insert_schedule(conn, schedule)
        await publish_timeline(conn, schedule, now)
    return schedule


async def replace_schedule(pool: asyncpg.Pool, schedule_id: UUID, cmd: DefineSchedule, now: datetime) -> Schedule:
    """Replace a schedule's definition (layers or shifts, zone, name) and republish its timeline."""
    async with transaction(pool) as conn:
        current = await locked_schedule(conn, schedule_id)
        schedule = build_schedule(schedule_id, cmd, current.version + 1)
        await _check_references(conn, schedule)
        with unique(f"a schedule named {schedule.name} exists"):
            await store.update_schedule(conn, schedule)
        await publish_timeline(conn, schedule, now)
    return schedule


async def locked_schedule(conn: asyncpg.Connection, schedule_id: UUID) -> Schedule:
    found = await store.lock_schedules(conn, [schedule_id])
    if not found:
        raise NotFound(f"schedule {schedule_id}")
    return found[0]


async def get_schedule(pool: asyncpg.Pool | asyncpg.Connection, schedule_id: UUID) -> Schedule:
    return found(await store.get_schedule(pool, schedule_id), f"schedule {schedule_id}")


async def list_schedules(pool: asyncpg.Pool, limit: int, offset: int) -> list[Schedule]:
    return await store.list_schedules(pool, limit=limit, offset=offset)


def check_span(start: datetime, end: datetime, end_field: str = "to") -> None:
    check_range(start, end, end_field)
    if end - start > MAX_QUERY_SPAN:
        raise InvalidInput(end_field, f"at most {MAX_QUERY_SPAN.days} days after the start")


def _segments(segments: list[Segment]) -> list[Segment]:
    return segments


def _resolved(
    then: Callable[[list[Segment]], T], schedule: Schedule, covers: list[Cover], start: datetime, end: datetime
) -> T:
    return then(resolve(schedule, covers, start, end))


async def timeline(
    conn: asyncpg.Pool | asyncpg.Connection, schedule: Schedule, start: datetime, end: datetime
) -> list[Segment]:
    """The final timeline of [start, end): layers or static shifts, then overrides and coverage, gaps explicit.

    Resolution runs in a worker process (shared.cpu): a long window of a large schedule is CPU work that,
    on the event loop, would hold up every other request and the liveness probe."""
    return await _timeline_then(conn, schedule, start, end, _segments)


async def _timeline_then(
    conn: asyncpg.Pool | asyncpg.Connection, schedule: Schedule, start: datetime, end: datetime,
    then: Callable[[list[Segment]], T],
) -> T:
    covers = await store.covers_between(conn, schedule.id, start, end)
    return await cpu.run(_resolved, then, schedule, covers, start, end)


async def schedule_timeline(
    pool: asyncpg.Pool, schedule_id: UUID, start: datetime, end: datetime,
    then: Callable[[list[Segment]], T] = _segments,  # type: ignore[assignment]
) -> T:
    """`then(final timeline of [start, end))`. `then` (a module-level function) runs in the worker process
    too, so a caller that turns many segments into an answer does that off the event loop as well."""
    check_span(start, end)
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        schedule = await get_schedule(conn, schedule_id)
        return await _timeline_then(conn, schedule, start, end, then)


async def on_call(pool: asyncpg.Pool, schedule_id: UUID, at: datetime) -> Segment:
    """The shift (or gap) holding `at`; one longer than ON_CALL_REACH on either side is cut there."""
    segments: list[Segment] = await schedule_timeline(pool, schedule_id, at - ON_CALL_REACH, at + ON_CALL_REACH)
    found = on_call_at(segments, at)
    assert found is not None  # the timeline is contiguous over the window, which holds `at`
    return found


async def user_shifts(
    pool: asyncpg.Pool, user_id: UUID, start: datetime, end: datetime
) -> list[tuple[Schedule, Segment]]:
    """Every final shift of one user across all schedules in [start, end), by start time."""
    check_span(start, end)
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        if await store.get_user(conn, user_id) is None:
            raise NotFound(f"user {user_id}")
        found = []
        for schedule in await store.schedules_of_user(conn, user_id, start, end):
            found += [(schedule, s) for s in await timeline(conn, schedule, start, end) if s.user_id == user_id]
    return sorted(found, key=lambda pair: (pair[1].start, pair[0].name))


async def publish_timeline(conn: asyncpg.Connection, schedule: Schedule, now: datetime) -> ScheduleTimeline:
    """Stage the schedule's timeline for the rolling horizon; call it holding the schedule's row lock."""
    start, end = HORIZON.window(now)
    segments = await timeline(conn, schedule, start, end)
    version = await store.mark_timeline_published(conn, schedule.id, end)
    message = ScheduleTimeline(
        schedule_id=schedule.id, version=version, name=schedule.name, time_zone=schedule.time_zone,
        horizon_start=start, horizon_end=end,
        segments=[
            TimelineSegment(start=s.start, end=s.end, user_id=s.user_id, source=s.source, ref=s.ref) for s in segments
        ],
    )
    await enqueue(conn, message)
    return message


async def refresh_timelines(pool: asyncpg.Pool, now: datetime, batch: int = 50) -> int:
    """The rolling job: republish every timeline whose horizon is running short; safe on many replicas at once."""
    published = 0
    while True:
        async with transaction(pool) as conn:
            due = await store.schedules_to_refresh(conn, HORIZON.refresh_before(now), batch)
            for schedule in await store.lock_schedules(conn, due):
                await publish_timeline(conn, schedule, now)
        published += len(due)
        if len(due) < batch:
            return published
