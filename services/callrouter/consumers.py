"""Kafka subscribers and timers of the callrouter service: parse, then hand to the use case."""

from __future__ import annotations

from datetime import timedelta

import asyncpg

from services.callrouter.service import alerts, calls, projections
from services.callrouter.service.calls import Desk
from services.callrouter.service.kinds import DIAL, ESCALATE, HANG_UP, LEG_DEADLINE, REDIRECT
from shared.messages import (
    NotificationAcknowledged,
    NotificationAttempted,
    NotificationQueued,
    PolicySnapshot,
    ScheduleTimeline,
    SupportHoursSnapshot,
    UserSnapshot,
    utcnow,
)
from shared.runtime import Service
from shared.timers import Timer
from shared.topics import DELIVERIES, POLICIES, SUPPORT_HOURS, TIMELINES, USERS


def register(svc: Service, desk: Desk, minute: timedelta = timedelta(minutes=1)) -> None:
    """`minute`: how long a minute of a policy's escalation timeout lasts (`DELAY_MINUTE_S`)."""

    # Snapshot topics come in batches (one transaction each): a fresh replica replays them from the start.
    @svc.subscriber(USERS, batch=True)
    async def on_users(snapshots: list[UserSnapshot]) -> None:
        """Who can be dialed (active, with a phone) and in which language."""
        await projections.apply_users(svc.pool, snapshots)

    @svc.subscriber(POLICIES, batch=True)
    async def on_policies(snapshots: list[PolicySnapshot]) -> None:
        """Whom a routing option dials, and how its alerts escalate."""
        await projections.apply_policies(svc.pool, snapshots)

    @svc.subscriber(SUPPORT_HOURS, batch=True)
    async def on_support_hours(snapshots: list[SupportHoursSnapshot]) -> None:
        await projections.apply_support_hours(svc.pool, snapshots)

    @svc.subscriber(TIMELINES, batch=True)
    async def on_timelines(timelines: list[ScheduleTimeline]) -> None:
        """Who each schedule has on call, so a call is routed while schedule is down."""
        await projections.apply_timelines(svc.pool, timelines)

    @svc.subscriber(DELIVERIES)
    async def on_delivery(event: NotificationAcknowledged | NotificationAttempted | NotificationQueued) -> None:
        """A page of one of our alerts acknowledged on the phone stops the alert's escalation."""
        if not isinstance(event, NotificationAcknowledged):
            return
        alert_id = alerts.alert_of_key(event.idempotency_key)
        if alert_id is not None:
            await alerts.acknowledge_from_page(svc.pool, alert_id, event.user_id, event.acknowledged_at, event.via)

    @svc.timer(DIAL)
    async def dial(conn: asyncpg.Connection, timer: Timer) -> None:
        await calls.dial(conn, desk, timer, utcnow())

    @svc.timer(REDIRECT)
    async def redirect(conn: asyncpg.Connection, timer: Timer) -> None:
        await calls.redirect(conn, desk, timer, utcnow())

    @svc.timer(HANG_UP)
    async def hang_up(conn: asyncpg.Connection, timer: Timer) -> None:
        await calls.hang_up(conn, desk, timer, utcnow())

    @svc.timer(LEG_DEADLINE)
    async def leg_deadline(conn: asyncpg.Connection, timer: Timer) -> None:
        await calls.leg_deadline(conn, desk, timer, utcnow())

    @svc.timer(ESCALATE)
    async def escalate(conn: asyncpg.Connection, timer: Timer) -> None:
        await alerts.escalate(conn, timer, utcnow(), minute)
