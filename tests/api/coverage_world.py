"""A small world for coverage's in-process tests: users, a team and published timelines, fed to coverage
through its own consumers' use cases (the broker is the only part left out), and readers of what coverage
staged in its outbox."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from services.coverage.service import workflow
from shared.messages import (
    CoverageApplied,
    CoverageRejected,
    ScheduleTimeline,
    ShiftProblem,
    ShiftRef,
    TeamSnapshot,
    TimelineSegment,
    UserSnapshot,
    utcnow,
)
from tests.conftest import token

DAY = timedelta(days=1)


def midnight(now: datetime | None = None) -> datetime:
    return (now or utcnow()).astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass
class World:
    pool: asyncpg.Pool
    users: dict[str, UUID] = field(default_factory=dict)
    versions: dict[UUID, int] = field(default_factory=dict)

    async def user(self, name: str, *, active: bool = True, role: str = "responder") -> UUID:
        user_id = self.users.setdefault(name, uuid.uuid4())
        version = self.versions.get(user_id, 0) + 1
        self.versions[user_id] = version
        snap = UserSnapshot(
            user_id=user_id,
            version=version,
            name=name,
            email=f"{user_id}@example.com",
            time_zone="Europe/Berlin",
            language="en",
            role=role,
            active=active,
        )  # type: ignore[arg-type]
        await workflow.on_users(self.pool, [snap], utcnow())
        return user_id

    async def team(self, *members: UUID) -> UUID:
        team_id = uuid.uuid4()
        await workflow.on_teams(
            self.pool, [TeamSnapshot(team_id=team_id, version=1, name="T", member_ids=list(members))]
        )
        return team_id

    async def timeline(
        self, schedule_id: UUID, holders: list[UUID | None], *, version: int | None = None, days: int = 62
    ) -> ScheduleTimeline:
        """Publish a timeline from yesterday 00:00 UTC: day i is held by holders[i % len(holders)]."""
        start = midnight() - DAY
        version = version if version is not None else self.versions.get(schedule_id, 0) + 1
        self.versions[schedule_id] = version
        segments = [
            TimelineSegment(
                start=start + i * DAY,
                end=start + (i + 1) * DAY,
                user_id=holders[i % len(holders)],
                source="layer" if holders[i % len(holders)] else "gap",
            )
            for i in range(days + 1)
        ]
        timeline = ScheduleTimeline(
            schedule_id=schedule_id,
            version=version,
            name="Primary",
            time_zone="UTC",
            horizon_start=start,
            horizon_end=start + (days + 1) * DAY,
            segments=segments,
        )
        await workflow.on_timelines(self.pool, [timeline], utcnow())
        return timeline

    def headers(self, name: str, role: str = "responder") -> dict[str, str]:
        return token(self.users[name], role)

    async def applied(self, request_id: str, covering: UUID, shifts: list[dict[str, Any]]) -> CoverageApplied:
        answer = CoverageApplied(
            request_id=UUID(request_id), covering_user_id=covering, shifts=[ShiftRef(**s) for s in shifts]
        )
        await workflow.on_outcome(self.pool, answer, utcnow())
        return answer

    async def rejected(self, request_id: str, shift: dict[str, Any], reason: str) -> None:
        answer = CoverageRejected(request_id=UUID(request_id), problems=[ShiftProblem(**shift, reason=reason)])
        await workflow.on_outcome(self.pool, answer, utcnow())

    async def staged(self, request_id: str, type_: str | None = None) -> list[dict[str, Any]]:
        """Messages coverage staged in its outbox about `request_id` (notifications name it in `data`)."""
        rows = await self.pool.fetch("SELECT topic, payload, headers FROM outbox ORDER BY id")
        found = []
        for row in rows:
            payload = json.loads(bytes(row["payload"]))
            about = payload.get("request_id") or payload.get("data", {}).get("request_id")
            if about == request_id and (type_ is None or payload["type"] == type_):
                found.append(payload)
        return found

    async def told(self, request_id: str) -> list[tuple[str, str]]:
        """(user name, idempotency key tail) of every notification staged about `request_id`."""
        names = {v: k for k, v in self.users.items()}
        return [
            (names.get(UUID(m["user_id"]), m["user_id"]), m["idempotency_key"].split(":", 2)[2])
            for m in await self.staged(request_id, "SendNotification")
        ]


def shift(schedule_id: UUID, day: int) -> dict[str, str]:
    """Day `day` (0 = today) of a World timeline, as a request names it."""
    start = midnight() + day * DAY
    return {"schedule_id": str(schedule_id), "start": start.isoformat(), "end": (start + DAY).isoformat()}


def period(first_day: int, last_day: int) -> dict[str, str]:
    return {"start": (midnight() + first_day * DAY).isoformat(), "end": (midnight() + (last_day + 1) * DAY).isoformat()}
