"""Coverage requests as their people use them: create, see, accept, decline, cancel, list, count."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from uuid import UUID, uuid4

import asyncpg

from services.coverage import store
from services.coverage.domain import OPEN, CoverageRequest, Piece, Shift, new_request, shift_problem
from services.coverage.service.commands import Accept, CreateRequest, Decline, ListRequests
from services.coverage.service.lifecycle import change, record
from shared.auth import Principal
from shared.db import Announcements, transaction
from shared.errors import Conflict, InvalidInput, NotFound


async def create(pool: asyncpg.Pool, actor: Principal, cmd: CreateRequest, now: datetime) -> CoverageRequest:
    """The caller asks `cmd.recipient_ids` to take `cmd.shifts`, each one of the caller's final shifts in the
    period as coverage's projection of the published timelines shows them right now."""
    shifts = tuple(Shift(s.schedule_id, s.start, s.end) for s in cmd.shifts)
    request = new_request(
        uuid4(), actor.user_id, cmd.recipient_ids, (cmd.start, cmd.end), shifts, cmd.message, now, cmd.remind_before
    )
    async with transaction(pool) as conn:
        await _check_recipients(conn, actor.user_id, cmd.recipient_ids)
        # Locking the timelines keeps a newer timeline from landing between this check and the commit unseen:
        # its consumer waits, then finds this request pending and judges it on the new timeline.
        horizons = await store.lock_timelines(conn, {s.schedule_id for s in shifts})
        spans = [s.span for s in shifts]
        for i, (s, pieces) in enumerate(zip(shifts, await store.pieces_of_each(conn, spans), strict=True)):
            problem = shift_problem(s, actor.user_id, pieces, horizons.get(s.schedule_id), (cmd.start, cmd.end))
            if problem:
                raise InvalidInput(f"shifts.{i}", problem)
        for i, other in enumerate(await store.claims_of_each(conn, spans)):
            if other is not None:
                raise Conflict(
                    f"shifts.{i} is already claimed by open coverage request {other}",
                    request_id=str(other),
                    field=f"shifts.{i}",
                )
        await record(conn, None, request, now)
    return request


async def _check_recipients(conn: asyncpg.Connection, requester: UUID, ids: tuple[UUID, ...]) -> None:
    facts = await store.candidates(conn, requester, ids)
    for i, user_id in enumerate(ids):
        field = f"recipient_ids.{i}"
        if user_id not in facts:
            raise InvalidInput(field, f"unknown user {user_id}")
        active, mate = facts[user_id]
        if not active:
            raise InvalidInput(field, f"user {user_id} is deactivated")
        if not mate:
            raise InvalidInput(field, f"user {user_id} shares no team with you")


def visible(actor: Principal, request: CoverageRequest | None, request_id: UUID) -> CoverageRequest:
    """The request if the caller may see it: its requester, a recipient or an admin. Anyone else is told it
    does not exist, as for an id nobody has."""
    if request is None or not (actor.is_admin or request.is_party(actor.user_id)):
        raise NotFound(f"coverage request {request_id}")
    return request


async def get(pool: asyncpg.Pool, actor: Principal, request_id: UUID) -> CoverageRequest:
    return visible(actor, await store.get_request(pool, request_id), request_id)


async def accept(pool: asyncpg.Pool, actor: Principal, cmd: Accept, now: datetime) -> CoverageRequest:
    """A recipient takes all the shifts, or the subset `cmd.shifts`; the request waits in `accepting` for
    schedule to apply it. Accepting again what one already accepted changes nothing."""
    chosen = [(s.schedule_id, s.start, s.end) for s in cmd.shifts] if cmd.shifts is not None else None

    def step(r: CoverageRequest) -> CoverageRequest:
        return visible(actor, r, cmd.request_id).accept(actor.user_id, chosen, now)

    return (await change(pool, cmd.request_id, step, now))[0]


async def decline(pool: asyncpg.Pool, actor: Principal, cmd: Decline, now: datetime) -> CoverageRequest:
    """A recipient says no; the request ends declined once every recipient has."""

    def step(r: CoverageRequest) -> CoverageRequest:
        return visible(actor, r, cmd.request_id).decline(actor.user_id, cmd.reason, now)

    return (await change(pool, cmd.request_id, step, now))[0]


async def cancel(pool: asyncpg.Pool, actor: Principal, request_id: UUID, now: datetime) -> CoverageRequest:
    """The requester withdraws a request nobody has accepted yet."""

    def step(r: CoverageRequest) -> CoverageRequest:
        return visible(actor, r, request_id).cancel(actor.user_id, now)

    return (await change(pool, request_id, step, now))[0]


# per pool (asyncpg pools take no weak references; a process has one pool, tests a few)
_announcements: dict[int, Announcements] = {}


async def _announcements_of(pool: asyncpg.Pool) -> Announcements:
    """The pool's one `Announcements`. Looked up again after the await: waiters that start together must not
    each make one, as each would hold a connection to LISTEN on, and with as many as the pool has, none would be
    left to read a request (every waiter, and the pool, stuck for good)."""
    changes = _announcements.get(id(pool))
    if changes is None or changes.pool is not pool:
        channel = await pool.fetchval("SELECT current_schema() || '_requests'")
        changes = _announcements.get(id(pool))
        if changes is None or changes.pool is not pool:
            changes = _announcements[id(pool)] = Announcements(pool, channel)
    return changes


async def settled(pool: asyncpg.Pool, actor: Principal, request_id: UUID, within_s: float) -> CoverageRequest | None:
    """The request once it has left `accepting` (schedule answered), waiting at most `within_s`; None if it
    has not by then. Woken by the NOTIFY its change sends on commit, from whichever replica consumed the
    answer; it looks again every quarter second in case a NOTIFY was missed."""
    changes = await _announcements_of(pool)
    deadline = time.monotonic() + within_s
    async with changes.watch(str(request_id)) as changed:
        while True:
            if await store.status_of(pool, request_id) not in OPEN:
                return await get(pool, actor, request_id)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(left, 0.25))
            changed.clear()


async def listing(pool: asyncpg.Pool, actor: Principal, q: ListRequests) -> list[CoverageRequest]:
    """The caller's sent or received requests, newest first; `all` (every request) is for admins."""
    if q.box == "all":
        actor.require("admin")
    return await store.list_requests(pool, q.box, actor.user_id, q.statuses, q.before, q.limit)


async def badge(pool: asyncpg.Pool, actor: Principal) -> int:
    """Pending requests waiting for the caller's answer."""
    return await store.badge(pool, actor.user_id)


@dataclass(frozen=True)
class MyShift:
    piece: Piece
    schedule_name: str
    claimed_by: UUID | None


async def my_shifts(pool: asyncpg.Pool, actor: Principal, start: datetime, end: datetime) -> list[MyShift]:
    """The caller's final shifts overlapping [start, end) as coverage sees them (what a request may ask to
    hand over), each with the open request that already claims it, if any."""
    if end <= start:
        raise InvalidInput("to", "must be after from")
    pieces = await store.shifts_of(pool, actor.user_id, start, end)
    names = await store.schedule_names(pool, {p.schedule_id for p in pieces})
    claims = await store.open_claims_of(pool, actor.user_id, start, end)
    clip = partial(_clip, start=start, end=end)
    return [MyShift(clip(p), names.get(p.schedule_id, ""), _claim(claims, p)) for p in pieces]


def _clip(p: Piece, start: datetime, end: datetime) -> Piece:
    return Piece(p.schedule_id, max(p.start, start), min(p.end, end), p.user_id)


def _claim(claims: dict[tuple[UUID, datetime, datetime], UUID], p: Piece) -> UUID | None:
    for (schedule_id, s, e), request_id in claims.items():
        if schedule_id == p.schedule_id and s < p.end and e > p.start:
            return request_id
    return None
