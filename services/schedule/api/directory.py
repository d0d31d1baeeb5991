"""Routes: users and teams."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator
from pydantic.json_schema import SkipJsonSchema

from services.schedule.api import api
from services.schedule.domain import EMAIL_PATTERN, LANGUAGE_PATTERN, Team, User
from services.schedule.service import directory
from services.schedule.service.commands import DefineTeam, EditUser, NewUser
from shared.auth import ADMINS, ANYONE, WRITERS
from shared.http import Call, Page
from shared.messages import E164, Role
from shared.runtime import POOL

Email = Annotated[str, Field(max_length=320, pattern=EMAIL_PATTERN, examples=["ada@example.com"])]
Language = Annotated[str, Field(pattern=LANGUAGE_PATTERN, examples=["en", "de-DE"])]
Name = Annotated[str, Field(min_length=1, max_length=200)]
TimeZone = Annotated[str, Field(min_length=1, max_length=64, examples=["Europe/Berlin"])]


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    email: Email
    phone: E164 | None = None
    time_zone: TimeZone
    language: Language = "en"
    role: Role = "responder"


class UserUpdate(BaseModel):
    """Only the fields sent change. `phone: null` removes the phone; no other field may be null."""

    model_config = ConfigDict(extra="forbid")
    # Optional but not nullable: left out means "unchanged"; the published schema shows no null.
    name: Name | SkipJsonSchema[None] = None
    email: Email | SkipJsonSchema[None] = None
    phone: E164 | None = None
    time_zone: TimeZone | SkipJsonSchema[None] = None
    language: Language | SkipJsonSchema[None] = None
    role: Role | SkipJsonSchema[None] = None
    active: StrictBool | SkipJsonSchema[None] = None

    @field_validator("name", "email", "time_zone", "language", "role", "active", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("may be left out, but not null")
        return value


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
    name: Name
    member_ids: list[UUID] = Field(default_factory=list, max_length=1000)


class TeamMembers(BaseModel):
    model_config = ConfigDict(extra="forbid")
    member_ids: list[UUID] = Field(max_length=1000)


class TeamOut(BaseModel):
    id: UUID
    name: str
    member_ids: list[UUID]
    version: int

    @classmethod
    def of(cls, team: Team) -> TeamOut:
        return cls(id=team.id, name=team.name, member_ids=list(team.member_ids), version=team.version)


USER = {"user_id": UUID}
TEAM = {"team_id": UUID}


@api.route("POST", "/v1/users", summary="Create a user", roles=ADMINS, body=UserCreate, response=UserOut, status=201,
           conflicts=True)
async def create_user(call: Call[UserCreate, None]) -> UserOut:
    b = call.body
    cmd = NewUser(b.name, b.email, b.time_zone, b.phone, b.language, b.role)
    return UserOut.of(await directory.create_user(call.app[POOL], cmd))


@api.route("GET", "/v1/users", summary="List users", roles=ANYONE, query=Page, response=list[UserOut])
async def list_users(call: Call[None, Page]) -> list[UserOut]:
    return [UserOut.of(u) for u in await directory.list_users(call.app[POOL], call.query.limit, call.query.offset)]


@api.route("GET", "/v1/users/{user_id}", summary="Get a user", roles=ANYONE, path_types=USER, response=UserOut)
async def get_user(call: Call[None, None]) -> UserOut:
    return UserOut.of(await directory.get_user(call.app[POOL], call.path["user_id"]))


@api.route("PATCH", "/v1/users/{user_id}", summary="Edit a user", roles=WRITERS, path_types=USER, body=UserUpdate,
           response=UserOut, conflicts=True)
async def edit_user(call: Call[UserUpdate, None]) -> UserOut:
    """A responder edits only their own profile fields; role and active are for admins."""
    cmd = EditUser(call.path["user_id"], call.body.model_dump(exclude_unset=True))
    return UserOut.of(await directory.edit_user(call.app[POOL], call.actor, cmd))


@api.route("POST", "/v1/teams", summary="Create a team", roles=ADMINS, body=TeamCreate, response=TeamOut, status=201,
           conflicts=True)
async def create_team(call: Call[TeamCreate, None]) -> TeamOut:
    cmd = DefineTeam(call.body.name, tuple(call.body.member_ids))
    return TeamOut.of(await directory.create_team(call.app[POOL], cmd))


@api.route("GET", "/v1/teams", summary="List teams", roles=ANYONE, response=list[TeamOut])
async def list_teams(call: Call[None, None]) -> list[TeamOut]:
    return [TeamOut.of(t) for t in await directory.list_teams(call.app[POOL])]


@api.route("GET", "/v1/teams/{team_id}", summary="Get a team", roles=ANYONE, path_types=TEAM, response=TeamOut)
async def get_team(call: Call[None, None]) -> TeamOut:
    return TeamOut.of(await directory.get_team(call.app[POOL], call.path["team_id"]))


@api.route("PUT", "/v1/teams/{team_id}/members", summary="Replace a team's members", roles=ADMINS, path_types=TEAM,
           body=TeamMembers, response=TeamOut)
async def set_team_members(call: Call[TeamMembers, None]) -> TeamOut:
    team = await directory.set_team_members(call.app[POOL], call.path["team_id"], tuple(call.body.member_ids))
    return TeamOut.of(team)
