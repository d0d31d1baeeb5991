"""What every change of a request does besides storing it: tell people, ask schedule, arm and disarm the
request's deadlines. One function, so no path (API, consumer, timer) can forget a part."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from uuid import UUID

import asyncpg

from services.coverage import store
from services.coverage.domain import FINAL, CoverageRequest, Notice, notices
from shared import timers
from shared.db import transaction
from shared.errors import found
from shared.logs import get_logger
from shared.messages import CoverageRequestAccepted, SendNotification, ShiftRef
from shared.outbox import enqueue, enqueue_all

log = get_logger(__name__)

EXPIRE = "coverage.expire"
REMIND = "coverage.remind"
RESEND = "coverage.resend"
# How long an acceptance waits for schedule's answer before it is sent again; doubling up to the cap.
RESEND_AFTER = timedelta(seconds=5)
RESEND_CAP = timedelta(seconds=60)


async def record(
    conn: asyncpg.Connection, before: CoverageRequest | None, after: CoverageRequest, now: datetime
) -> None:
    """Store the move from `before` (None: a new request) to `after` with everything it causes."""
    key = str(after.id)
    if before is None:
        await store.insert_request(conn, after)
        await timers.schedule(conn, EXPIRE, key, after.first_shift_start)
        if after.remind_at is not None:
            await timers.schedule(conn, REMIND, key, after.remind_at)
    else:
        await store.save_request(conn, before, after)
    moved = before is None or before.status != after.status
    if moved and after.status == "accepting":
        await timers.cancel_kinds(conn, key, EXPIRE, REMIND)
        await ask_schedule(conn, after, now, attempt=0)
    elif moved and after.status in FINAL:
        await timers.cancel_kinds(conn, key, EXPIRE, REMIND, RESEND)
    await tell(conn, after, notices(before, after, await store.people(conn, _mentioned(after))))


async def ask_schedule(conn: asyncpg.Connection, r: CoverageRequest, now: datetime, attempt: int) -> None:
    """(Re-)send the acceptance to schedule and arm the deadline for its answer."""
    await enqueue(
        conn,
        CoverageRequestAccepted(
            request_id=r.id,
            requester_id=r.requester_id,
            covering_user_id=r.taker,
            shifts=[ShiftRef(schedule_id=s.schedule_id, start=s.start, end=s.end) for s in r.chosen()],
        ),
    )
    wait = min(RESEND_AFTER * (2**attempt), RESEND_CAP)
    await timers.schedule(conn, RESEND, str(r.id), now + wait, {"attempt": attempt + 1})


async def tell(conn: asyncpg.Connection, r: CoverageRequest, told: list[Notice]) -> None:
    """One notification command per notice, keyed so that a user is never told the same thing twice."""
    if not told:
        return
    badges = await store.badges(conn, [n.user_id for n in told])
    await enqueue_all(
        conn,
        [
            SendNotification(
                user_id=n.user_id,
                idempotency_key=f"coverage-request:{r.id}:{n.what}:{n.user_id}",
                title=n.title,
                body=n.body[:2000],
                urgency="low",
                data={
                    "kind": "coverage_request",
                    "request_id": str(r.id),
                    "status": r.status,
                    "badge": str(badges.get(n.user_id, 0)),
                },
            )
            for n in told
        ],
    )


def _mentioned(r: CoverageRequest) -> set[UUID]:
    return {r.requester_id, *r.recipient_ids}


async def locked(conn: asyncpg.Connection, request_id: UUID) -> CoverageRequest | None:
    """The request, locked for the rest of the transaction with its timers: timers first, because the runner
    firing one holds it first and the request second (see shared.timers.hold)."""
    await timers.hold(conn, str(request_id))
    return await store.get_request(conn, request_id, lock=True)


Step = Callable[[CoverageRequest], CoverageRequest]


async def change(pool: asyncpg.Pool, request_id: UUID, step: Step, now: datetime) -> tuple[CoverageRequest, bool]:
    """Apply `step` to the request under its lock; (the request after, whether it changed)."""
    async with transaction(pool) as conn:
        return await change_in(conn, request_id, step, now)


async def change_in(
    conn: asyncpg.Connection, request_id: UUID, step: Step, now: datetime
) -> tuple[CoverageRequest, bool]:
    before = found(await locked(conn, request_id), f"coverage request {request_id}")
    after = step(before)
    if after is before:
        return before, False
    await record(conn, before, after, now)
    log.info("coverage request moved", request_id=str(request_id), status=after.status, was=before.status)
    return after, True
