"""Overrides, and coverage applied from accepted coverage requests: both are "covers" above the layers."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID, uuid4

import asyncpg

from services.schedule import store
from services.schedule.domain.shifts import Cover, ShiftClaim, claim_problem
from services.schedule.service.commands import AddOverride
from services.schedule.service.schedules import check_span, get_schedule, locked_schedule, publish_timeline, timeline
from shared.auth import Principal
from shared.db import transaction
from shared.errors import Conflict, InvalidInput, found
from shared.inbox import claim
from shared.messages import (
    CoverageApplied,
    CoverageRejected,
    CoverageRequestAccepted,
    CoverageRequestRevoked,
    CoverageReverted,
    Message,
    ShiftProblem,
    utcnow,
)
from shared.outbox import enqueue

COVERAGE_CONSUMER = "schedule.coverage"


async def add_override(pool: asyncpg.Pool, actor: Principal, cmd: AddOverride, now: datetime) -> Cover:
    """Put `cmd.user_id` on call over the schedule for [start, end). A responder may only put themself there."""
    actor.require_self_or_admin(cmd.user_id)
    check_span(cmd.start, cmd.end, "end")
    async with transaction(pool) as conn:
        schedule = await locked_schedule(conn, cmd.schedule_id)
        user = await store.get_user(conn, cmd.user_id)
        if user is None:
            raise InvalidInput("user_id", f"unknown user id: {cmd.user_id}")
        if not user.active:
            raise InvalidInput("user_id", "the user is deactivated")
        cover = Cover(uuid4(), cmd.user_id, cmd.start, cmd.end, "override", 0, created_by=actor.user_id)
        cover = await store.insert_cover(conn, schedule.id, cover)
        await publish_timeline(conn, schedule, now)
    return cover


async def remove_override(
    pool: asyncpg.Pool, actor: Principal, schedule_id: UUID, override_id: UUID, now: datetime
) -> None:
    """Remove an override; only its creator or an admin may. Coverage is removed by revoking its request."""
    async with transaction(pool) as conn:
        schedule = await locked_schedule(conn, schedule_id)
        cover = found(await store.get_cover(conn, schedule_id, override_id), f"override {override_id}")
        if cover.source == "coverage":
            raise Conflict("this shift was taken by coverage request; revoke the request instead")
        if cover.created_by is not None:
            actor.require_self_or_admin(cover.created_by)
        else:
            actor.require("admin")
        await store.delete_cover(conn, override_id)
        await publish_timeline(conn, schedule, now)


async def list_covers(pool: asyncpg.Pool, schedule_id: UUID, start: datetime, end: datetime) -> list[Cover]:
    check_span(start, end)
    await get_schedule(pool, schedule_id)
    return await store.covers_between(pool, schedule_id, start, end)


async def _answer(conn: asyncpg.Connection, answer: store.Outcome) -> None:
    await store.save_coverage_outcome(conn, answer)
    await enqueue(conn, answer)


async def _answer_again(conn: asyncpg.Connection, previous: store.Outcome) -> None:
    """A re-sent request gets the answer it got before (a new event), and nothing else happens."""
    await enqueue(conn, previous.model_copy(update={"event_id": uuid4(), "occurred_at": utcnow()}))


async def apply_coverage(pool: asyncpg.Pool, event: CoverageRequestAccepted, now: datetime) -> Message | None:
    """Move every requested shift to the covering user if each still belongs to the requester in the final
    schedule right now; otherwise move none and say why, per shift. Returns the answer staged, if any."""
    async with transaction(pool) as conn:
        if not await claim(conn, COVERAGE_CONSUMER, event.event_id):
            return None
        stored = await store.get_coverage_outcome(conn, event.request_id)
        if stored is not None:
            await _answer_again(conn, stored)
            return None
        schedules = {s.id: s for s in await store.lock_schedules(conn, {s.schedule_id for s in event.shifts})}
        covering = await store.get_user(conn, event.covering_user_id)
        problems: list[ShiftProblem] = []
        for ref in event.shifts:
            reason = None
            if ref.end <= ref.start:
                reason = "the shift ends before it starts"
            elif ref.schedule_id not in schedules:
                reason = "the schedule does not exist"
            elif covering is None or not covering.active:
                reason = "the covering user does not exist or is deactivated"
            elif event.covering_user_id == event.requester_id:
                reason = "the requester cannot cover their own shift"
            else:
                segments = await timeline(conn, schedules[ref.schedule_id], ref.start, ref.end)
                reason = claim_problem(segments, ShiftClaim(ref.schedule_id, ref.start, ref.end), event.requester_id)
            if reason:
                problems.append(ShiftProblem(**ref.model_dump(), reason=reason))
        if problems:
            rejected = CoverageRejected(request_id=event.request_id, problems=problems)
            await _answer(conn, rejected)
            return rejected
        for ref in event.shifts:
            cover = Cover(uuid4(), event.covering_user_id, ref.start, ref.end, "coverage", 0, event.request_id)
            await store.insert_cover(conn, ref.schedule_id, cover)
        for schedule in schedules.values():
            await publish_timeline(conn, schedule, now)
        applied = CoverageApplied(
            request_id=event.request_id, covering_user_id=event.covering_user_id, shifts=event.shifts
        )
        await _answer(conn, applied)
        return applied


async def revoke_coverage(pool: asyncpg.Pool, event: CoverageRequestRevoked, now: datetime) -> Message | None:
    """Remove what an applied coverage request placed and answer CoverageReverted. A request never applied is
    recorded as reverted too, so an acceptance re-sent later cannot apply it."""
    async with transaction(pool) as conn:
        if not await claim(conn, COVERAGE_CONSUMER, event.event_id):
            return None
        stored = await store.get_coverage_outcome(conn, event.request_id)
        if isinstance(stored, CoverageReverted):
            await _answer_again(conn, stored)
            return None
        affected = await store.lock_schedules(conn, await store.schedules_of_coverage(conn, event.request_id))
        removed = await store.delete_coverage(conn, event.request_id)
        for schedule in affected:
            await publish_timeline(conn, schedule, now)
        reverted = CoverageReverted(request_id=event.request_id, removed_shifts=removed)
        await _answer(conn, reverted)
        return reverted
