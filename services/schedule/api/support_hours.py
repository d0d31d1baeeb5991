"""Routes: support hours, and whether an instant is inside them."""

from __future__ import annotations

from datetime import date, datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from services.schedule.api import api
from services.schedule.api.directory import Name, TimeZone
from services.schedule.api.models import weekly, window_specs
from services.schedule.domain.policies import SupportHours
from services.schedule.service import support_hours
from services.schedule.service.commands import DefineSupportHours
from shared.auth import ADMINS, ANYONE
from shared.http import At, Call, LocalDate, Page
from shared.messages import WeeklyWindow, utcnow
from shared.runtime import POOL


class SupportHoursIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    time_zone: TimeZone
    windows: list[WeeklyWindow] = Field(min_length=1, max_length=50)
    holidays: list[LocalDate] = Field(default_factory=list, max_length=400, description="Local dates with no support.")

    def command(self) -> DefineSupportHours:
        return DefineSupportHours(self.name, self.time_zone, window_specs(self.windows), tuple(self.holidays))


class SupportHoursOut(BaseModel):
    id: UUID
    version: int
    name: str
    time_zone: str
    windows: list[WeeklyWindow]
    holidays: list[date]

    @classmethod
    def of(cls, hours: SupportHours) -> SupportHoursOut:
        return cls(id=hours.id, version=hours.version, name=hours.name, time_zone=hours.time_zone,
                   windows=weekly(hours.windows), holidays=list(hours.holidays))


class InsideOut(BaseModel):
    support_hours_id: UUID
    at: datetime
    inside: bool


HOURS = {"support_hours_id": UUID}


@api.route("POST", "/v1/support-hours", summary="Define support hours", roles=ADMINS, body=SupportHoursIn,
           response=SupportHoursOut, status=201, conflicts=True)
async def create_support_hours(call: Call[SupportHoursIn, None]) -> SupportHoursOut:
    return SupportHoursOut.of(await support_hours.create_support_hours(call.app[POOL], call.body.command()))


@api.route("GET", "/v1/support-hours", summary="List support hours", roles=ANYONE, query=Page,
           response=list[SupportHoursOut])
async def list_support_hours(call: Call[None, Page]) -> list[SupportHoursOut]:
    found = await support_hours.list_support_hours(call.app[POOL], call.query.limit, call.query.offset)
    return [SupportHoursOut.of(h) for h in found]


@api.route("GET", "/v1/support-hours/{support_hours_id}", summary="Get support hours", roles=ANYONE,
           path_types=HOURS, response=SupportHoursOut)
async def get_support_hours(call: Call[None, None]) -> SupportHoursOut:
    return SupportHoursOut.of(await support_hours.get_support_hours(call.app[POOL], call.path["support_hours_id"]))


@api.route("PUT", "/v1/support-hours/{support_hours_id}", summary="Replace support hours", roles=ADMINS,
           path_types=HOURS, body=SupportHoursIn, response=SupportHoursOut, conflicts=True)
async def replace_support_hours(call: Call[SupportHoursIn, None]) -> SupportHoursOut:
    hours = await support_hours.replace_support_hours(call.app[POOL], call.path["support_hours_id"],
                                                      call.body.command())
    return SupportHoursOut.of(hours)


@api.route("GET", "/v1/support-hours/{support_hours_id}/inside", summary="Whether an instant is inside support hours",
           roles=ANYONE, path_types=HOURS, query=At, response=InsideOut)
async def inside_support_hours(call: Call[None, At]) -> InsideOut:
    at = call.query.at or utcnow()
    hours = await support_hours.get_support_hours(call.app[POOL], call.path["support_hours_id"])
    return InsideOut(support_hours_id=hours.id, at=at, inside=hours.inside(at))
