"""Routes: overrides (and the coverage placed like them) on a schedule."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from services.schedule.api import api
from services.schedule.domain.shifts import Cover
from services.schedule.service import covers
from services.schedule.service.commands import AddOverride
from shared.auth import ANYONE, WRITERS
from shared.http import Call, Instant, Span
from shared.messages import utcnow
from shared.runtime import POOL


class OverrideIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: UUID
    start: Instant
    end: Instant


class OverrideOut(BaseModel):
    id: UUID
    user_id: UUID
    start: datetime
    end: datetime
    source: Literal["override", "coverage"]
    coverage_request_id: UUID | None
    created_by: UUID | None

    @classmethod
    def of(cls, c: Cover) -> OverrideOut:
        return cls(id=c.id, user_id=c.user_id, start=c.start, end=c.end, source=c.source,
                   coverage_request_id=c.coverage_request_id, created_by=c.created_by)


SCHEDULE = {"schedule_id": UUID}


@api.route("POST", "/v1/schedules/{schedule_id}/overrides", summary="Add an override", roles=WRITERS,
           path_types=SCHEDULE, body=OverrideIn, response=OverrideOut, status=201)
async def add_override(call: Call[OverrideIn, None]) -> OverrideOut:
    """An admin may put anyone on call; a responder only themself. The override wins over every layer."""
    b = call.body
    cmd = AddOverride(call.path["schedule_id"], b.user_id, b.start, b.end)
    return OverrideOut.of(await covers.add_override(call.app[POOL], call.actor, cmd, utcnow()))


@api.route("GET", "/v1/schedules/{schedule_id}/overrides", summary="Overrides and accepted coverage in [from, to)",
           roles=ANYONE, path_types=SCHEDULE, query=Span, response=list[OverrideOut])
async def list_overrides(call: Call[None, Span]) -> list[OverrideOut]:
    found = await covers.list_covers(call.app[POOL], call.path["schedule_id"], call.query.from_, call.query.to)
    return [OverrideOut.of(c) for c in found]


@api.route("DELETE", "/v1/schedules/{schedule_id}/overrides/{override_id}", summary="Remove an override",
           roles=WRITERS, path_types={"schedule_id": UUID, "override_id": UUID}, status=204, conflicts=True)
async def remove_override(call: Call[None, None]) -> None:
    """Only the override's creator or an admin may remove it; the schedule underneath shows again."""
    await covers.remove_override(
        call.app[POOL], call.actor, call.path["schedule_id"], call.path["override_id"], utcnow()
    )
