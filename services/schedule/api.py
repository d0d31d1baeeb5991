"""HTTP routes of the schedule service: parse, call the use case, respond."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from services.schedule import service, store
from services.schedule.domain import EMAIL_PATTERN, LANGUAGE_PATTERN, Team, User
from shared.http import Api, Page, json_response, parse_param, principal, read_json, read_query
from shared.messages import E164, Role
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
