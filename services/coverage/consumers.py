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

    # Snapshot topics come in batches (one transaction each): a replay from the start, or a schedule service
    # republishing every timeline, is thousands of records.
    @svc.subscriber(TIMELINES, batch=True)
    async def on_timeline(timelines: list[ScheduleTimeline]) -> None:
        """Keep the newest timeline of each schedule; pending requests it contradicts become obsolete."""
        await workflow.on_timelines(svc.pool, timelines, utcnow())

    @svc.subscriber(USERS, batch=True)
    async def on_user(snapshots: list[UserSnapshot]) -> None:
        """Who exists and is active (who may be asked; whose token still works)."""
        await workflow.on_users(svc.pool, snapshots, utcnow())

    @svc.subscriber(TEAMS, batch=True)
    async def on_team(snapshots: list[TeamSnapshot]) -> None:
        """Who shares a team (who may be asked)."""
        await workflow.on_teams(svc.pool, snapshots)

    @svc.timer("coverage.expire")
    async def expire(conn: asyncpg.Connection, timer: Timer) -> None:
        await workflow.expire(conn, timer, utcnow())

    @svc.timer("coverage.remind")
    async def remind(conn: asyncpg.Connection, timer: Timer) -> None:
        await workflow.remind(conn, timer, utcnow())

    @svc.timer("coverage.resend")
    async def resend(conn: asyncpg.Connection, timer: Timer) -> None:
        await workflow.resend(conn, timer, utcnow())
