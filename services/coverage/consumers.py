"""Kafka subscribers of the coverage service: parse, then hand to the use case."""

from __future__ import annotations

import asyncpg

from services.coverage.service import workflow
from shared.messages import (
    CoverageApplied,
    CoverageRejected,
    CoverageReverted,
    ScheduleTimeline,
    TeamSnapshot,
    UserSnapshot,
    utcnow,
)
from shared.runtime import Service
from shared.timers import Timer
from shared.topics import COVERAGE_OUTCOMES, TEAMS, TIMELINES, USERS


def register(svc: Service) -> None:
    @svc.subscriber(COVERAGE_OUTCOMES)
    async def on_outcome(answer: CoverageApplied | CoverageRejected | CoverageReverted) -> None:
        """schedule's answer to an acceptance: the request ends accepted, or obsolete with schedule's reasons."""
        await workflow.on_outcome(svc.pool, answer, utcnow())

    @svc.subscriber(TIMELINES)
    async def on_timeline(timeline: ScheduleTimeline) -> None:
        """Keep the newest timeline of each schedule; pending requests it contradicts become obsolete."""
        await workflow.on_timeline(svc.pool, timeline, utcnow())

    @svc.subscriber(USERS)
    async def on_user(snapshot: UserSnapshot) -> None:
        """Who exists and is active (who may be asked; whose token still works)."""
        await workflow.on_user(svc.pool, snapshot, utcnow())

    @svc.subscriber(TEAMS)
    async def on_team(snapshot: TeamSnapshot) -> None:
        """Who shares a team (who may be asked)."""
        await workflow.on_team(svc.pool, snapshot)

    @svc.timer("coverage.expire")
    async def expire(conn: asyncpg.Connection, timer: Timer) -> None:
        await workflow.expire(conn, timer, utcnow())

    @svc.timer("coverage.remind")
    async def remind(conn: asyncpg.Connection, timer: Timer) -> None:
        await workflow.remind(conn, timer, utcnow())

    @svc.timer("coverage.resend")
    async def resend(conn: asyncpg.Connection, timer: Timer) -> None:
        await workflow.resend(conn, timer, utcnow())
