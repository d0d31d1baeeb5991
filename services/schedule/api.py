"""HTTP routes of the schedule service: parse, call the use case, respond."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal
from uuid import UUID

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, NaiveDatetime

from services.schedule import service, store
from services.schedule.domain import EMAIL_PATTERN, LANGUAGE_PATTERN, Team, User
from services.schedule.domain.policies import Policy, SupportHours
from services.schedule.domain.shifts import WEEKDAYS, Cover, Schedule, Segment, Window, gaps_of, shifts_of
from shared.http import Api, Page, json_response, parse_param, principal, read_json, read_query
from shared.messages import E164, PolicyRule, Role, Source, WeeklyWindow, utcnow
from shared.runtime import POOL

Email = Annotated[str, Field(max_length=320, pattern=EMAIL_PATTERN, examples=["ada@example.com"])]
Language = Annotated[str, Field(pattern=LANGUAGE_PATTERN, examples=["en", "de-DE"])]

api = Api("schedule", "1.0.0", "Directory and on-call schedules: the source of truth for who is on call.")


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    email: Email
    phone: E164 | None = None
    time_zone: str = Field(examples=["Europe/Berlin"])
    language: Language = "en"
    role: Role = "responder"


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=200)
    email: Email | None = None
    phone: E164 | None = None
    time_zone: str | None = None
    language: Language | None = None
    role: Role | None = None
    active: bool | None = None


class UserOut(BaseModel):
    id: UUID
    name: str
    email: str
    phone: str | None
    time_zone: str
    language: str
    role: Role
    active: bool
    version: int

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls.model_validate(user, from_attributes=True)


class TeamCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    member_ids: list[UUID] = Field(default_factory=list)


class TeamMembers(BaseModel):
    model_config = ConfigDict(extra="forbid")
    member_ids: list[UUID]


class TeamOut(BaseModel):
    id: UUID
    name: str
    member_ids: list[UUID]
    version: int

    @classmethod
    def of(cls, team: Team) -> TeamOut:
        return cls(id=team.id, name=team.name, member_ids=list(team.member_ids), version=team.version)


@api.route(
    "POST",
    "/v1/users",
    summary="Create a user",
    body=UserCreate,
    response=UserOut,
    status=201,
    roles=("admin",),
    conflicts=True,
)
async def create_user(request: web.Request) -> web.Response:
    principal(request).require("admin")
    body = await read_json(request, UserCreate)
    user = await service.create_user(request.app[POOL], body.model_dump())
    return json_response(UserOut.of(user), status=201)


@api.route("GET", "/v1/users", summary="List users", response=list[UserOut], query=Page)
async def list_users(request: web.Request) -> web.Response:
    page = read_query(request, Page)
    users = await store.list_users(request.app[POOL], limit=page.limit, offset=page.offset)
    return json_response([UserOut.of(u) for u in users])


@api.route("GET", "/v1/users/{user_id}", summary="Get a user", response=UserOut, path_types={"user_id": UUID})
async def get_user(request: web.Request) -> web.Response:
    user = await service.get_user(request.app[POOL], parse_param(request, "user_id", UUID))
    return json_response(UserOut.of(user))


@api.route(
    "PATCH",
    "/v1/users/{user_id}",
    summary="Edit a user",
    body=UserUpdate,
    response=UserOut,
    roles=("admin", "responder"),
    path_types={"user_id": UUID},
    conflicts=True,
)
async def edit_user(request: web.Request) -> web.Response:
    """A responder edits only their own profile fields; role and active are for admins."""
    actor = principal(request)
    actor.require_writer()
    user_id = parse_param(request, "user_id", UUID)
    body = await read_json(request, UserUpdate)
    user = await service.edit_user(request.app[POOL], actor, user_id, body.model_dump(exclude_unset=True))
    return json_response(UserOut.of(user))


@api.route(
    "POST",
    "/v1/teams",
    summary="Create a team",
    body=TeamCreate,
    response=TeamOut,
    status=201,
    roles=("admin",),
    conflicts=True,
)
async def create_team(request: web.Request) -> web.Response:
    principal(request).require("admin")
    body = await read_json(request, TeamCreate)
    team = await service.create_team(request.app[POOL], body.name, body.member_ids)
    return json_response(TeamOut.of(team), status=201)


@api.route("GET", "/v1/teams", summary="List teams", response=list[TeamOut])
async def list_teams(request: web.Request) -> web.Response:
    return json_response([TeamOut.of(t) for t in await store.list_teams(request.app[POOL])])


@api.route("GET", "/v1/teams/{team_id}", summary="Get a team", response=TeamOut, path_types={"team_id": UUID})
async def get_team(request: web.Request) -> web.Response:
    team = await service.get_team(request.app[POOL], parse_param(request, "team_id", UUID))
    return json_response(TeamOut.of(team))


@api.route(
    "PUT",
    "/v1/teams/{team_id}/members",
    summary="Replace a team's members",
    body=TeamMembers,
    response=TeamOut,
    roles=("admin",),
    path_types={"team_id": UUID},
)
async def set_team_members(request: web.Request) -> web.Response:
    principal(request).require("admin")
    team_id = parse_param(request, "team_id", UUID)
    body = await read_json(request, TeamMembers)
    team = await service.set_team_members(request.app[POOL], team_id, body.member_ids)
    return json_response(TeamOut.of(team))


# --- schedules ------------------------------------------------------------------------------------------------


class LayerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, max_length=200)
    users: list[UUID] = Field(min_length=1, max_length=200, description="The rotation, in order.")
    length: int = Field(ge=1, le=8784, description="How many `unit`s one turn lasts.")
    unit: Literal["hours", "days", "weeks"]
    handoff: NaiveDatetime = Field(
        description="Local date-time (schedule zone, no offset) when the first user's first turn starts.",
        examples=["2026-01-05T09:00:00"],
    )
    restrictions: list[WeeklyWindow] = Field(
        default_factory=list, max_length=50, description="If any, the layer is on call only inside these windows."
    )
    start: AwareDatetime | None = Field(default=None, description="The layer applies from here (default: handoff).")
    end: AwareDatetime | None = Field(default=None, description="The layer applies until here (default: forever).")


class StaticShiftIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: UUID
    start: AwareDatetime
    end: AwareDatetime


class ScheduleIn(BaseModel):
    """A recurring schedule has `layers` (a later layer wins where it has someone); a static one has `shifts`."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    time_zone: str = Field(examples=["Europe/Berlin"])
    kind: Literal["recurring", "static"] = "recurring"
    team_id: UUID | None = None
    layers: list[LayerIn] = Field(default_factory=list, max_length=20)
    shifts: list[StaticShiftIn] = Field(default_factory=list, max_length=5000)


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def windows_out(windows: tuple[Window, ...]) -> list[WeeklyWindow]:
    grouped: dict[tuple[int, int], list[str]] = {}
    for w in windows:
        grouped.setdefault((w.start.hour * 60 + w.start.minute, w.minutes), []).append(WEEKDAYS[w.weekday])
    return [
        WeeklyWindow(days=days, start=_clock(start), end="24:00" if start + n == 1440 else _clock((start + n) % 1440))  # type: ignore[arg-type]
        for (start, n), days in grouped.items()
    ]


class ScheduleOut(ScheduleIn):
    id: UUID
    version: int

    @classmethod
    def of(cls, s: Schedule) -> ScheduleOut:
        return cls(
            id=s.id, version=s.version, name=s.name, time_zone=s.time_zone, kind=s.kind, team_id=s.team_id,
            layers=[
                LayerIn(name=layer.name, users=list(layer.users), length=layer.length, unit=layer.unit,
                        handoff=layer.handoff, restrictions=windows_out(layer.restrictions), start=layer.start,
                        end=layer.end)
                for layer in s.layers
            ],
            shifts=[StaticShiftIn(user_id=x.user_id, start=x.start, end=x.end) for x in s.shifts],
        )


class Span(BaseModel):
    model_config = ConfigDict(extra="forbid")
    from_: AwareDatetime = Field(alias="from", description="Start, inclusive (ISO 8601 with offset).")
    to: AwareDatetime = Field(description="End, exclusive; at most 400 days after `from`.")


class At(BaseModel):
    model_config = ConfigDict(extra="forbid")
    at: AwareDatetime | None = Field(default=None, description="The instant to ask about; default now.")


class ShiftOut(BaseModel):
    """A piece of the final timeline; `source` says where it comes from and `ref` is the override id or the
    coverage request id. `user_id` null with source `gap` means nobody is on call."""

    start: datetime
    end: datetime
    user_id: UUID | None
    source: Source
    layer: int | None = None
    ref: UUID | None = None

    @classmethod
    def of(cls, s: Segment) -> ShiftOut:
        return cls(start=s.start, end=s.end, user_id=s.user_id, source=s.source, layer=s.layer, ref=s.ref)


class UserShiftOut(ShiftOut):
    schedule_id: UUID
    schedule_name: str


class OnCallOut(BaseModel):
    schedule_id: UUID
    at: datetime
    user_id: UUID | None
    shift: ShiftOut


class OverrideIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: UUID
    start: AwareDatetime
    end: AwareDatetime


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


def _span(request: web.Request) -> tuple[datetime, datetime]:
    span = read_query(request, Span)
    return span.from_, span.to


async def _schedule_timeline(request: web.Request) -> list[Segment]:
    schedule_id = parse_param(request, "schedule_id", UUID)
    start, end = _span(request)
    _, segments = await service.schedule_timeline(request.app[POOL], schedule_id, start, end)
    return segments


@api.route(
    "POST", "/v1/schedules", summary="Create a schedule", body=ScheduleIn, response=ScheduleOut, status=201,
    roles=("admin",), conflicts=True,
)
async def create_schedule(request: web.Request) -> web.Response:
    principal(request).require("admin")
    body = await read_json(request, ScheduleIn)
    schedule = await service.create_schedule(request.app[POOL], body.model_dump(mode="json"), utcnow())
    return json_response(ScheduleOut.of(schedule), status=201)


@api.route("GET", "/v1/schedules", summary="List schedules", response=list[ScheduleOut], query=Page)
async def list_schedules(request: web.Request) -> web.Response:
    page = read_query(request, Page)
    rows = await store.list_schedules(request.app[POOL], limit=page.limit, offset=page.offset)
    return json_response([ScheduleOut.of(service.schedule_of(r)) for r in rows])


@api.route(
    "GET", "/v1/schedules/{schedule_id}", summary="Get a schedule", response=ScheduleOut,
    path_types={"schedule_id": UUID},
)
async def get_schedule(request: web.Request) -> web.Response:
    schedule = await service.get_schedule(request.app[POOL], parse_param(request, "schedule_id", UUID))
    return json_response(ScheduleOut.of(schedule))


@api.route(
    "PUT", "/v1/schedules/{schedule_id}", summary="Replace a schedule", body=ScheduleIn, response=ScheduleOut,
    roles=("admin",), path_types={"schedule_id": UUID}, conflicts=True,
)
async def replace_schedule(request: web.Request) -> web.Response:
    principal(request).require("admin")
    schedule_id = parse_param(request, "schedule_id", UUID)
    body = await read_json(request, ScheduleIn)
    schedule = await service.replace_schedule(request.app[POOL], schedule_id, body.model_dump(mode="json"), utcnow())
    return json_response(ScheduleOut.of(schedule))


@api.route(
    "GET", "/v1/schedules/{schedule_id}/shifts", summary="Final shifts of a schedule in [from, to)",
    response=list[ShiftOut], query=Span, path_types={"schedule_id": UUID},
)
async def schedule_shifts(request: web.Request) -> web.Response:
    """Layers or static shifts with overrides and coverage on top; gaps are left out (see /gaps)."""
    segments = await _schedule_timeline(request)
    return json_response([ShiftOut.of(s) for s in shifts_of(segments)])


@api.route(
    "GET", "/v1/schedules/{schedule_id}/gaps", summary="Where nobody is on call in [from, to)",
    response=list[ShiftOut], query=Span, path_types={"schedule_id": UUID},
)
async def schedule_gaps(request: web.Request) -> web.Response:
    segments = await _schedule_timeline(request)
    return json_response([ShiftOut.of(s) for s in gaps_of(segments)])


@api.route(
    "GET", "/v1/schedules/{schedule_id}/oncall", summary="Who is on call on a schedule at an instant",
    response=OnCallOut, query=At, path_types={"schedule_id": UUID},
)
async def schedule_on_call(request: web.Request) -> web.Response:
    schedule_id = parse_param(request, "schedule_id", UUID)
    at = read_query(request, At).at or utcnow()
    segment = await service.on_call(request.app[POOL], schedule_id, at)
    return json_response(OnCallOut(schedule_id=schedule_id, at=at, user_id=segment.user_id, shift=ShiftOut.of(segment)))


@api.route(
    "GET", "/v1/users/{user_id}/shifts", summary="A user's final shifts across all schedules in [from, to)",
    response=list[UserShiftOut], query=Span, path_types={"user_id": UUID},
)
async def user_shifts(request: web.Request) -> web.Response:
    """"My shifts": what the coverage request screen lists for the chosen period."""
    start, end = _span(request)
    found = await service.user_shifts(request.app[POOL], parse_param(request, "user_id", UUID), start, end)
    return json_response(
        [UserShiftOut(**ShiftOut.of(s).model_dump(), schedule_id=sch.id, schedule_name=sch.name) for sch, s in found]
    )


@api.route(
    "POST", "/v1/schedules/{schedule_id}/overrides", summary="Add an override", body=OverrideIn,
    response=OverrideOut, status=201, roles=("admin", "responder"), path_types={"schedule_id": UUID},
)
async def add_override(request: web.Request) -> web.Response:
    """An admin may put anyone on call; a responder only themself. The override wins over every layer."""
    actor = principal(request)
    actor.require_writer()
    schedule_id = parse_param(request, "schedule_id", UUID)
    body = await read_json(request, OverrideIn)
    cover = await service.add_override(
        request.app[POOL], actor, schedule_id, body.user_id, body.start, body.end, utcnow()
    )
    return json_response(OverrideOut.of(cover), status=201)


@api.route(
    "GET", "/v1/schedules/{schedule_id}/overrides", summary="Overrides and accepted coverage in [from, to)",
    response=list[OverrideOut], query=Span, path_types={"schedule_id": UUID},
)
async def list_overrides(request: web.Request) -> web.Response:
    start, end = _span(request)
    covers = await service.list_covers(request.app[POOL], parse_param(request, "schedule_id", UUID), start, end)
    return json_response([OverrideOut.of(c) for c in covers])


@api.route(
    "DELETE", "/v1/schedules/{schedule_id}/overrides/{override_id}", summary="Remove an override", status=204,
    roles=("admin", "responder"), path_types={"schedule_id": UUID, "override_id": UUID}, conflicts=True,
)
async def remove_override(request: web.Request) -> web.Response:
    """Only the override's creator or an admin may remove it; the schedule underneath shows again."""
    actor = principal(request)
    actor.require_writer()
    schedule_id = parse_param(request, "schedule_id", UUID)
    override_id = parse_param(request, "override_id", UUID)
    await service.remove_override(request.app[POOL], actor, schedule_id, override_id, utcnow())
    return web.Response(status=204)


# --- escalation policies ----------------------------------------------------------------------------------------


class PolicyIn(BaseModel):
    """Rules run in order: each pages its users and whoever is on call on its schedules (one of several
    responders, picked by the caller), then escalates after `timeout_minutes`; the list runs `repeat` more times."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    repeat: int = Field(default=0, ge=0, le=10)
    rules: list[PolicyRule] = Field(min_length=1, max_length=20)


class PolicyOut(PolicyIn):
    id: UUID
    version: int

    @classmethod
    def of(cls, policy: Policy) -> PolicyOut:
        snapshot = service.policy_snapshot(policy)
        return cls(id=policy.id, version=policy.version, name=policy.name, repeat=policy.repeat, rules=snapshot.rules)


class StepOut(BaseModel):
    rule: int
    timeout_minutes: int
    responders: list[UUID]


class PolicyOnCallOut(BaseModel):
    policy_id: UUID
    at: datetime
    steps: list[StepOut]


@api.route(
    "POST", "/v1/policies", summary="Create an escalation policy", body=PolicyIn, response=PolicyOut, status=201,
    roles=("admin",), conflicts=True,
)
async def create_policy(request: web.Request) -> web.Response:
    principal(request).require("admin")
    body = await read_json(request, PolicyIn)
    policy = await service.create_policy(request.app[POOL], body.model_dump(mode="json"))
    return json_response(PolicyOut.of(policy), status=201)


@api.route("GET", "/v1/policies", summary="List escalation policies", response=list[PolicyOut], query=Page)
async def list_policies(request: web.Request) -> web.Response:
    page = read_query(request, Page)
    rows = await store.list_policies(request.app[POOL], limit=page.limit, offset=page.offset)
    return json_response([PolicyOut.of(service.policy_of(r)) for r in rows])


@api.route(
    "GET", "/v1/policies/{policy_id}", summary="Get an escalation policy", response=PolicyOut,
    path_types={"policy_id": UUID},
)
async def get_policy(request: web.Request) -> web.Response:
    policy = await service.get_policy(request.app[POOL], parse_param(request, "policy_id", UUID))
    return json_response(PolicyOut.of(policy))


@api.route(
    "PUT", "/v1/policies/{policy_id}", summary="Replace an escalation policy", body=PolicyIn, response=PolicyOut,
    roles=("admin",), path_types={"policy_id": UUID}, conflicts=True,
)
async def replace_policy(request: web.Request) -> web.Response:
    principal(request).require("admin")
    policy_id = parse_param(request, "policy_id", UUID)
    body = await read_json(request, PolicyIn)
    policy = await service.replace_policy(request.app[POOL], policy_id, body.model_dump(mode="json"))
    return json_response(PolicyOut.of(policy))


@api.route(
    "GET", "/v1/policies/{policy_id}/oncall", summary="Who each rule of a policy pages at an instant",
    response=PolicyOnCallOut, query=At, path_types={"policy_id": UUID},
)
async def policy_on_call(request: web.Request) -> web.Response:
    policy_id = parse_param(request, "policy_id", UUID)
    at = read_query(request, At).at or utcnow()
    _, steps = await service.policy_on_call(request.app[POOL], policy_id, at)
    out = [StepOut(rule=s.rule, timeout_minutes=s.timeout_minutes, responders=list(s.responders)) for s in steps]
    return json_response(PolicyOnCallOut(policy_id=policy_id, at=at, steps=out))


# --- support hours ----------------------------------------------------------------------------------------------


class SupportHoursIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    time_zone: str = Field(examples=["Europe/Berlin"])
    windows: list[WeeklyWindow] = Field(min_length=1, max_length=50)
    holidays: list[date] = Field(default_factory=list, max_length=400, description="Local dates with no support.")


class SupportHoursOut(SupportHoursIn):
    id: UUID
    version: int

    @classmethod
    def of(cls, hours: SupportHours) -> SupportHoursOut:
        return cls(id=hours.id, version=hours.version, name=hours.name, time_zone=hours.time_zone,
                   windows=windows_out(hours.windows), holidays=list(hours.holidays))


class InsideOut(BaseModel):
    support_hours_id: UUID
    at: datetime
    inside: bool


@api.route(
    "POST", "/v1/support-hours", summary="Define support hours", body=SupportHoursIn, response=SupportHoursOut,
    status=201, roles=("admin",), conflicts=True,
)
async def create_support_hours(request: web.Request) -> web.Response:
    principal(request).require("admin")
    body = await read_json(request, SupportHoursIn)
    hours = await service.create_support_hours(request.app[POOL], body.model_dump(mode="json"))
    return json_response(SupportHoursOut.of(hours), status=201)


@api.route("GET", "/v1/support-hours", summary="List support hours", response=list[SupportHoursOut], query=Page)
async def list_support_hours(request: web.Request) -> web.Response:
    page = read_query(request, Page)
    rows = await store.list_support_hours(request.app[POOL], limit=page.limit, offset=page.offset)
    return json_response([SupportHoursOut.of(service.support_hours_of(r)) for r in rows])


@api.route(
    "GET", "/v1/support-hours/{support_hours_id}", summary="Get support hours", response=SupportHoursOut,
    path_types={"support_hours_id": UUID},
)
async def get_support_hours(request: web.Request) -> web.Response:
    hours = await service.get_support_hours(request.app[POOL], parse_param(request, "support_hours_id", UUID))
    return json_response(SupportHoursOut.of(hours))


@api.route(
    "PUT", "/v1/support-hours/{support_hours_id}", summary="Replace support hours", body=SupportHoursIn,
    response=SupportHoursOut, roles=("admin",), path_types={"support_hours_id": UUID}, conflicts=True,
)
async def replace_support_hours(request: web.Request) -> web.Response:
    principal(request).require("admin")
    hours_id = parse_param(request, "support_hours_id", UUID)
    body = await read_json(request, SupportHoursIn)
    hours = await service.replace_support_hours(request.app[POOL], hours_id, body.model_dump(mode="json"))
    return json_response(SupportHoursOut.of(hours))


@api.route(
    "GET", "/v1/support-hours/{support_hours_id}/inside", summary="Whether an instant is inside support hours",
    response=InsideOut, query=At, path_types={"support_hours_id": UUID},
)
async def inside_support_hours(request: web.Request) -> web.Response:
    hours_id = parse_param(request, "support_hours_id", UUID)
    at = read_query(request, At).at or utcnow()
    hours = await service.get_support_hours(request.app[POOL], hours_id)
    return json_response(InsideOut(support_hours_id=hours_id, at=at, inside=hours.inside(at)))


# --- calendar feeds ---------------------------------------------------------------------------------------------


class CalendarOut(BaseModel):
    """Feed URLs (relative to this service's public address) a calendar app can subscribe to. Anyone with
    the token can read them; issuing a new token revokes the old one."""

    token: str
    my_shifts: str
    schedule_feed_template: str


ICS = "text/calendar"


@api.route(
    "POST", "/v1/users/{user_id}/calendar-token", summary="Issue (or replace) a user's calendar feed token",
    response=CalendarOut, status=201, roles=("admin", "responder"), path_types={"user_id": UUID},
)
async def issue_calendar_token(request: web.Request) -> web.Response:
    actor = principal(request)
    token = await service.issue_calendar_token(request.app[POOL], actor, parse_param(request, "user_id", UUID))
    out = CalendarOut(
        token=token, my_shifts=f"/ical/{token}/my-shifts.ics",
        schedule_feed_template=f"/ical/{token}/schedules/{{schedule_id}}.ics",
    )
    return json_response(out, status=201)


@api.route("GET", "/ical/{token}/my-shifts.ics", summary="iCalendar feed of the token owner's shifts")
async def my_shifts_feed(request: web.Request) -> web.Response:
    """Final shifts of the token's user across all schedules, 15 days back to 180 days ahead."""
    body = await service.calendar_feed(request.app[POOL], request.match_info["token"], None, utcnow())
    return web.Response(body=body, content_type=ICS, charset="utf-8")


@api.route(
    "GET", "/ical/{token}/schedules/{schedule_id}.ics", summary="iCalendar feed of a schedule's shifts",
    path_types={"schedule_id": UUID},
)
async def schedule_feed(request: web.Request) -> web.Response:
    """Final shifts of one schedule, 15 days back to 180 days ahead."""
    schedule_id = parse_param(request, "schedule_id", UUID)
    body = await service.calendar_feed(request.app[POOL], request.match_info["token"], schedule_id, utcnow())
    return web.Response(body=body, content_type=ICS, charset="utf-8")
