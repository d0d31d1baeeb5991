"""Use cases of the schedule service: load, apply the domain rules, store and stage events in one transaction."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import asyncpg

from services.schedule import domain, store
from services.schedule.domain import Team, User
from shared.auth import Forbidden, Principal
from shared.db import transaction
from shared.errors import Conflict, NotFound
from shared.messages import TeamSnapshot, UserSnapshot
from shared.outbox import enqueue


def user_snapshot(user: User) -> UserSnapshot:
    return UserSnapshot(
        user_id=user.id, version=user.version, name=user.name, email=user.email, phone=user.phone,
        time_zone=user.time_zone, language=user.language, role=user.role,  # type: ignore[arg-type]
        active=user.active,
    )


def team_snapshot(team: Team) -> TeamSnapshot:
    return TeamSnapshot(team_id=team.id, version=team.version, name=team.name, member_ids=list(team.member_ids))


async def create_user(pool: asyncpg.Pool, fields: dict[str, Any]) -> User:
    """Add a user to the directory and publish their snapshot."""
    user = domain.new_user(id=uuid4(), **fields)
    async with transaction(pool) as conn:
        try:
            await store.insert_user(conn, user)
        except asyncpg.UniqueViolationError as exc:
            raise Conflict(f"a user with e-mail {user.email} exists") from exc
        await enqueue(conn, user_snapshot(user))
    return user


async def edit_user(pool: asyncpg.Pool, actor: Principal, user_id: UUID, changes: dict[str, Any]) -> User:
    """Change a user's profile; a user edits only their own profile fields, an admin anything."""
    actor.require_self_or_admin(user_id)
    async with transaction(pool) as conn:
        current = await store.get_user(conn, user_id, lock=True)
        if current is None:
            raise NotFound(f"user {user_id}")
        try:
            edited = domain.edit_user(current, changes, by_admin=actor.is_admin)
        except PermissionError as exc:
            raise Forbidden(str(exc)) from exc
        if edited == current:
            return current
        try:
            await store.update_user(conn, edited)
        except asyncpg.UniqueViolationError as exc:
            raise Conflict(f"a user with e-mail {edited.email} exists") from exc
        await enqueue(conn, user_snapshot(edited))
    return edited


async def get_user(pool: asyncpg.Pool, user_id: UUID) -> User:
    user = await store.get_user(pool, user_id)
    if user is None:
        raise NotFound(f"user {user_id}")
    return user


async def create_team(pool: asyncpg.Pool, name: str, member_ids: list[UUID]) -> Team:
    """Create a team of existing users and publish its snapshot."""
    async with transaction(pool) as conn:
        team = domain.new_team(uuid4(), name, member_ids, await store.existing_user_ids(conn, member_ids))
        try:
            await store.insert_team(conn, team)
        except asyncpg.UniqueViolationError as exc:
            raise Conflict(f"a team named {team.name} exists") from exc
        await enqueue(conn, team_snapshot(team))
    return team


async def set_team_members(pool: asyncpg.Pool, team_id: UUID, member_ids: list[UUID]) -> Team:
    """Replace a team's members (in order) and publish its snapshot."""
    async with transaction(pool) as conn:
        team = await store.get_team(conn, team_id, lock=True)
        if team is None:
            raise NotFound(f"team {team_id}")
        changed = domain.change_members(team, member_ids, await store.existing_user_ids(conn, member_ids))
        await store.update_team(conn, changed)
        await enqueue(conn, team_snapshot(changed))
    return changed


async def get_team(pool: asyncpg.Pool, team_id: UUID) -> Team:
    team = await store.get_team(pool, team_id)
    if team is None:
        raise NotFound(f"team {team_id}")
    return team
