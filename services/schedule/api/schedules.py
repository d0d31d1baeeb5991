"""Routes: schedules, their final shifts and gaps, who is on call, and a user's shifts across schedules."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from services.schedule.api import api
from services.schedule.api.directory import Name, TimeZone
from services.schedule.api.models import ShiftOut, weekly, window_specs
from services.schedule.domain.shifts import MAX_ROTATION_HOURS, Schedule, Segment, gaps_of, shifts_of
from services.schedule.service import schedules
from services.schedule.service.commands import DefineSchedule, LayerSpec, ShiftSpec
from shared.auth import ADMINS, ANYONE
from shared.http import At, Call, Instant, LocalDateTime, LocalDateTimeOut, Page, Rendered, Span, render
from shared.messages import WeeklyWindow, utcnow
from shared.runtime import POOL


class LayerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, max_length=200)
    users: list[UUID] = Field(min_length=1, max_length=200, description="The rotation, in order.")
    length: int = Field(
        ge=1, le=MAX_ROTATION_HOURS,
        description="How many `unit`s one turn lasts; a turn lasts at most 366 days (8784 hours, 366 days, 52 weeks).",
    )
    unit: Literal["hours", "days", "weeks"]
    handoff: LocalDateTime = Field(
        description="Local date-time (schedule zone, no offset) of a handoff: turn 0 of `users[0]` starts here, "
        "and turns are counted from it in both directions."
    )
    restrictions: list[WeeklyWindow] = Field(
        default_factory=list, max_length=50, description="If any, the layer is on call only inside these windows."
    )
    start: Instant | None = Field(
        default=None, description="The layer is on call from here (default: its handoff); turns before the handoff "
        "are filled in by counting back from it."
    )
    end: Instant | None = Field(default=None, description="The layer is on call until here (default: forever).")

    def spec(self) -> LayerSpec:
        return LayerSpec(tuple(self.users), self.length, self.unit, self.handoff, window_specs(self.restrictions),
                         self.start, self.end, self.name)


class StaticShiftIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: UUID
    start: Instant
    end: Instant


class ScheduleIn(BaseModel):
    """A recurring schedule has `layers` (a later layer wins where it has someone); a static one has `shifts`."""

    model_config = ConfigDict(extra="forbid")
    name: Name
    time_zone: TimeZone
    kind: Literal["recurring", "static"] = "recurring"
    team_id: UUID | None = None
    layers: list[LayerIn] = Field(default_factory=list, max_length=20)
    shifts: list[StaticShiftIn] = Field(default_factory=list, max_length=5000)

    def command(self) -> DefineSchedule:
        return DefineSchedule(
            self.name, self.time_zone, self.kind, self.team_id, tuple(layer.spec() for layer in self.layers),
            tuple(ShiftSpec(s.user_id, s.start, s.end) for s in self.shifts),
        )


class LayerOut(BaseModel):
    name: str
    users: list[UUID]
    length: int
    unit: Literal["hours", "days", "weeks"]
    handoff: LocalDateTimeOut
    restrictions: list[WeeklyWindow]
    start: datetime | None
    end: datetime | None


class StaticShiftOut(BaseModel):
    user_id: UUID
    start: datetime
    end: datetime


class ScheduleOut(BaseModel):
    id: UUID
    version: int
    name: str
    time_zone: str
    kind: Literal["recurring", "static"]
    team_id: UUID | None
    layers: list[LayerOut]
    shifts: list[StaticShiftOut]

    @classmethod
    def of(cls, s: Schedule) -> ScheduleOut:
        return cls(
            id=s.id, version=s.version, name=s.name, time_zone=s.time_zone, kind=s.kind, team_id=s.team_id,
            layers=[
                LayerOut(name=layer.name, users=list(layer.users), length=layer.length, unit=layer.unit,
                         handoff=layer.handoff, restrictions=weekly(layer.restrictions), start=layer.start,
                         end=layer.end)
                for layer in s.layers
            ],
            shifts=[StaticShiftOut(user_id=x.user_id, start=x.start, end=x.end) for x in s.shifts],
        )


class UserShiftOut(ShiftOut):
    schedule_id: UUID
    schedule_name: str


class OnCallOut(BaseModel):
    schedule_id: UUID
    at: datetime
    user_id: UUID | None
    shift: ShiftOut


SCHEDULE = {"schedule_id": UUID}
SHIFTS = list[ShiftOut]


@api.route("POST", "/v1/schedules", summary="Create a schedule", roles=ADMINS, body=ScheduleIn, response=ScheduleOut,
           status=201, conflicts=True)
async def create_schedule(call: Call[ScheduleIn, None]) -> ScheduleOut:
    return ScheduleOut.of(await schedules.create_schedule(call.app[POOL], call.body.command(), utcnow()))


@api.route("GET", "/v1/schedules", summary="List schedules", roles=ANYONE, query=Page, response=list[ScheduleOut])
async def list_schedules(call: Call[None, Page]) -> list[ScheduleOut]:
    found = await schedules.list_schedules(call.app[POOL], call.query.limit, call.query.offset)
    return [ScheduleOut.of(s) for s in found]


@api.route("GET", "/v1/schedules/{schedule_id}", summary="Get a schedule", roles=ANYONE, path_types=SCHEDULE,
           response=ScheduleOut)
async def get_schedule(call: Call[None, None]) -> ScheduleOut:
    return ScheduleOut.of(await schedules.get_schedule(call.app[POOL], call.path["schedule_id"]))


@api.route("PUT", "/v1/schedules/{schedule_id}", summary="Replace a schedule", roles=ADMINS, path_types=SCHEDULE,
           body=ScheduleIn, response=ScheduleOut, conflicts=True)
async def replace_schedule(call: Call[ScheduleIn, None]) -> ScheduleOut:
    schedule = await schedules.replace_schedule(call.app[POOL], call.path["schedule_id"], call.body.command(), utcnow())
    return ScheduleOut.of(schedule)


@api.route("GET", "/v1/schedules/{schedule_id}/shifts", summary="Final shifts of a schedule in [from, to)",
           roles=ANYONE, path_types=SCHEDULE, query=Span, response=SHIFTS)
async def schedule_shifts(call: Call[None, Span]) -> Rendered:
    """Layers or static shifts with overrides and coverage on top; gaps are left out (see /gaps)."""
    return await _timeline(call, _render_shifts)


@api.route("GET", "/v1/schedules/{schedule_id}/gaps", summary="Where nobody is on call in [from, to)",
           roles=ANYONE, path_types=SCHEDULE, query=Span, response=SHIFTS)
async def schedule_gaps(call: Call[None, Span]) -> Rendered:
    return await _timeline(call, _render_gaps)


# A 400-day window of a large schedule is thousands of shifts: the answer is built in the worker process
# that resolves it (these run there), so the event loop only sends bytes.
def _render_shifts(segments: list[Segment]) -> Rendered:
    return render(SHIFTS, [ShiftOut.of(s) for s in shifts_of(segments)])


def _render_gaps(segments: list[Segment]) -> Rendered:
    return render(SHIFTS, [ShiftOut.of(s) for s in gaps_of(segments)])


async def _timeline(call: Call[None, Span], then: Callable[[list[Segment]], Rendered]) -> Rendered:
    span = call.query
    return await schedules.schedule_timeline(call.app[POOL], call.path["schedule_id"], span.from_, span.to, then)


@api.route("GET", "/v1/schedules/{schedule_id}/oncall", summary="Who is on call on a schedule at an instant",
           roles=ANYONE, path_types=SCHEDULE, query=At, response=OnCallOut)
async def schedule_on_call(call: Call[None, At]) -> OnCallOut:
    """The whole shift (or gap) holding `at`, cut 32 days either side of it; `at` is answered in UTC."""
    at = call.query.at or utcnow()
    segment = await schedules.on_call(call.app[POOL], call.path["schedule_id"], at)
    return OnCallOut(schedule_id=call.path["schedule_id"], at=at, user_id=segment.user_id, shift=ShiftOut.of(segment))


@api.route("GET", "/v1/users/{user_id}/shifts", summary="A user's final shifts across all schedules in [from, to)",
           roles=ANYONE, path_types={"user_id": UUID}, query=Span, response=list[UserShiftOut])
async def user_shifts(call: Call[None, Span]) -> list[UserShiftOut]:
    """"My shifts": what the coverage request screen lists for the chosen period."""
    found = await schedules.user_shifts(call.app[POOL], call.path["user_id"], call.query.from_, call.query.to)
    return [
        UserShiftOut(**ShiftOut.of(s).model_dump(), schedule_id=sch.id, schedule_name=sch.name) for sch, s in found
    ]
