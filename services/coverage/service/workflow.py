"""The request's life after its people act: schedule's answers, new timelines, users leaving, deadlines.

Each handler runs in one transaction with the inbox claim (consumers) or the timer's removal (timers), so a
redelivered message or a timer fired twice has one effect and one set of notifications.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

import asyncpg

from services.coverage import store
from services.coverage.domain import CoverageRequest, lost_shifts, reminders
from services.coverage.service.lifecycle import ask_schedule, change_in, locked, tell
from shared.db import transaction
from shared.inbox import claim
from shared.logs import get_logger
from shared.messages import (
    CoverageApplied,
    CoverageRejected,
    CoverageReverted,
    ScheduleTimeline,
    TeamSnapshot,
    UserSnapshot,
)
from shared.projection import fresh_events, newest, project_batch, replace_timelines
from shared.timers import Timer

log = get_logger(__name__)

OUTCOMES_CONSUMER = "coverage.outcomes"
TIMELINES_CONSUMER = "coverage.timelines"
USERS_CONSUMER = "coverage.users"
TEAMS_CONSUMER = "coverage.teams"


async def on_outcome(
    pool: asyncpg.Pool, answer: CoverageApplied | CoverageRejected | CoverageReverted, now: datetime
) -> None:
    """schedule's answer to an acceptance: applied → accepted; rejected → obsolete with schedule's reasons.
    An answer to a request no longer waiting for one (a re-sent acceptance answered twice) changes nothing."""
    async with transaction(pool) as conn:
        if not await claim(conn, OUTCOMES_CONSUMER, answer.event_id):
            return
        if await store.status_of(conn, answer.request_id) is None:
            log.warning("answer for an unknown coverage request", request_id=str(answer.request_id), type=answer.type)
            return

        def step(r: CoverageRequest) -> CoverageRequest:
            if r.status != "accepting" or isinstance(answer, CoverageReverted):
                return r
            if isinstance(answer, CoverageApplied):
                return r.confirm(now)
            why = "; ".join(f"{p.start.isoformat()} to {p.end.isoformat()}: {p.reason}" for p in answer.problems)
            return r.obsolete(f"schedule could not apply it: {why}", now)

        await change_in(conn, answer.request_id, step, now)




async def on_timelines(pool: asyncpg.Pool, timelines: Sequence[ScheduleTimeline], now: datetime) -> None:
    """A consumed batch of timelines, in one transaction: the newest timeline of each schedule replaces the held
    one (one statement per table); a pending request whose shifts it no longer gives to the requester (a
    rotation edit, an admin override, other coverage) becomes obsolete, and both sides are told why."""
    async with transaction(pool) as conn:
        fresh = await fresh_events(conn, TIMELINES_CONSUMER, timelines)
        for timeline in await replace_timelines(conn, newest(fresh)):
            await _check_pending_on(conn, timeline, now)


async def _check_pending_on(conn: asyncpg.Connection, timeline: ScheduleTimeline, now: datetime) -> None:
    for request_id in await store.pending_on(conn, timeline.schedule_id):
        request = await locked(conn, request_id)
        if request is None or request.status != "pending":
            continue
        mine = [s for s in request.shifts if s.schedule_id == timeline.schedule_id]
        pieces = await store.pieces(conn, timeline.schedule_id, min(s.start for s in mine), max(s.end for s in mine))
        lost = lost_shifts(request, timeline.schedule_id, pieces, timeline.horizon_end)
        if lost:
            await _make_obsolete(conn, request_id, f"the schedule changed: {'; '.join(lost)}", now)


async def _make_obsolete(conn: asyncpg.Connection, request_id: UUID, reason: str, now: datetime) -> None:
    await change_in(conn, request_id, lambda r: r.obsolete(reason, now) if r.status == "pending" else r, now)




async def on_users(pool: asyncpg.Pool, snapshots: Sequence[UserSnapshot], now: datetime) -> None:
    """A consumed batch of user snapshots, in one transaction: the newest of each user is kept (one statement);
    a deactivated requester's pending requests, and those left with no active recipient who could still
    answer, become obsolete."""
    async with transaction(pool) as conn:
        fresh = newest(await fresh_events(conn, USERS_CONSUMER, snapshots))
        changed = set(await store.upsert_users(conn, fresh))
        for snapshot in fresh:
            if snapshot.user_id in changed and not snapshot.active:
                await _check_pending_of_deactivated(conn, snapshot.user_id, now)


async def _check_pending_of_deactivated(conn: asyncpg.Connection, user_id: UUID, now: datetime) -> None:
    for request_id in await store.pending_of_user(conn, user_id):
        request = await locked(conn, request_id)
        if request is None or request.status != "pending":
            continue
        if request.requester_id == user_id:
            reason = "the requester was deactivated"
        elif not await store.active_users(conn, request.undecided):
            reason = "no recipient who could still answer is active"
        else:
            continue
        await _make_obsolete(conn, request_id, reason, now)




async def on_teams(pool: asyncpg.Pool, snapshots: Sequence[TeamSnapshot]) -> int:
    """A consumed batch of team snapshots, in one transaction (who shares a team); how many teams changed."""
    return await project_batch(pool, TEAMS_CONSUMER, snapshots, store.upsert_teams)


async def is_deactivated(pool: asyncpg.Pool, user_id: UUID) -> bool:
    """Whether schedule's user snapshots say this user is deactivated; their tokens then stop working (401)."""
    return await store.is_deactivated(pool, user_id)


# --- deadlines (durable timers) -------------------------------------------------------------------------------


async def expire(conn: asyncpg.Connection, timer: Timer, now: datetime) -> None:
    """The first shift starts: a request nobody accepted expires, and the requester is told."""
    await change_in(conn, UUID(timer.key), lambda r: r.expire(now) if r.status == "pending" else r, now)


async def remind(conn: asyncpg.Connection, timer: Timer, now: datetime) -> None:
    """Some time before the first shift: remind recipients who have not answered, warn the requester."""
    request = await store.get_request(conn, UUID(timer.key), lock=True)
    if request is None or request.status != "pending":
        return
    await tell(
        conn, request, reminders(request, await store.people(conn, {request.requester_id, *request.recipient_ids}))
    )


async def resend(conn: asyncpg.Connection, timer: Timer, now: datetime) -> None:
    """No answer from schedule yet: send the acceptance again (schedule answers a repeat with its stored
    answer), and wait longer next time."""
    request = await store.get_request(conn, UUID(timer.key), lock=True)
    if request is None or request.status != "accepting":
        return
    attempt = int(timer.payload.get("attempt", 1))
    log.warning("no answer from schedule yet; sending the acceptance again", request_id=timer.key, attempt=attempt)
    await ask_schedule(conn, request, now, attempt)
