"""Calendar feeds: a secret per user, and iCalendar documents of their shifts or of one schedule's."""

from __future__ import annotations

import secrets
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from services.schedule import store
from services.schedule.domain import ical
from services.schedule.domain.shifts import Schedule, Segment, shifts_of
from services.schedule.service.directory import get_user
from services.schedule.service.schedules import timeline
from shared.auth import Principal
from shared.db import transaction
from shared.errors import Conflict, NotFound

# Resolve this far past the feed window, so a shift running over the window's edge keeps its real times (and
# its UID) instead of being cut afresh each day as the window moves.
FEED_MARGIN = timedelta(days=31)


async def issue_calendar_token(pool: asyncpg.Pool, actor: Principal, user_id: UUID) -> str:
    """A new secret for the user's calendar feeds; the previous one stops working. A deactivated user gets none."""
    actor.require_self_or_admin(user_id)
    if not (await get_user(pool, user_id)).active:
        raise Conflict("the user is deactivated")
    token = secrets.token_urlsafe(32)
    await store.set_calendar_token(pool, user_id, token)
    return token


def _entry_json(entry: ical.FeedEntry) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        return value.isoformat() if isinstance(value, datetime) else str(value) if isinstance(value, UUID) else value

    return {k: plain(v) for k, v in asdict(entry).items()}


def _entry_of(raw: dict[str, Any]) -> ical.FeedEntry:
    return ical.FeedEntry(
        uid=raw["uid"], schedule_id=UUID(raw["schedule_id"]), schedule_name=raw["schedule_name"],
        user_id=UUID(raw["user_id"]), user_name=raw["user_name"], start=datetime.fromisoformat(raw["start"]),
        end=datetime.fromisoformat(raw["end"]), source=raw["source"],
        first_seen=datetime.fromisoformat(raw["first_seen"]),
        cancelled_at=datetime.fromisoformat(raw["cancelled_at"]) if raw["cancelled_at"] else None,
        sequence=raw["sequence"],
    )


async def calendar_feed(pool: asyncpg.Pool, token: str, schedule_id: UUID | None, now: datetime) -> bytes:
    """The iCalendar feed behind a user's token: their own shifts across schedules, or one schedule's shifts.

    Shifts that vanished since an earlier fetch stay in the feed as CANCELLED for a while, so subscribed
    calendars drop them."""
    user_id = await store.user_of_calendar_token(pool, token)
    if user_id is None:
        raise NotFound("calendar feed")
    start, end = ical.feed_window(now)
    async with transaction(pool) as conn:
        if schedule_id is None:
            schedules = await store.schedules_of_user(conn, user_id, start - FEED_MARGIN, end + FEED_MARGIN)
            feed, name = f"user:{user_id}", "On call: my shifts"
        else:
            one = await store.get_schedule(conn, schedule_id)
            if one is None:
                raise NotFound(f"schedule {schedule_id}")
            schedules = [one]
            feed, name = f"schedule:{schedule_id}", f"On call: {one.name}"
        found: list[tuple[Schedule, Segment]] = []
        for schedule in schedules:
            segments = await timeline(conn, schedule, start - FEED_MARGIN, end + FEED_MARGIN)
            found += [
                (schedule, s) for s in shifts_of(segments)
                if s.end > start and s.start < end and (schedule_id is not None or s.user_id == user_id)
            ]
        names = await store.user_names(conn, {s.user_id for _, s in found if s.user_id})
        current = [
            ical.FeedShift(sch.id, sch.name, s.user_id, names.get(s.user_id, str(s.user_id)), s.start, s.end, s.source)
            for sch, s in found
            if s.user_id is not None
        ]
        remembered = [_entry_of(raw) for raw in await store.feed_entries(conn, feed)]
        previous = sorted(remembered, key=lambda e: (e.start, e.uid))
        entries = ical.reconcile(previous, current, now, window_start=start)
        if entries != previous:  # calendar apps poll hourly; most polls change nothing
            await store.replace_feed_entries(conn, feed, {e.uid: _entry_json(e) for e in entries})
    return ical.render(entries, name=name, now=now)
