"""Users and teams: the directory every other service projects."""

from __future__ import annotations

from uuid import UUID, uuid4

import asyncpg

from services.schedule import domain, store
from services.schedule.domain import Team, User
from services.schedule.service import unique
from services.schedule.service.commands import DefineTeam, EditUser, NewUser
from shared.auth import Forbidden, Principal
from shared.db import transaction
from shared.errors import Conflict, found
from shared.messages import TeamSnapshot, UserSnapshot, utcnow
from shared.outbox import enqueue


def user_snapshot(user: User) -> UserSnapshot:
    return UserSnapshot(
        user_id=user.id, version=user.version, name=user.name, email=user.email, phone=user.phone,
        time_zone=user.time_zone, language=user.language, role=user.role,  # type: ignore[arg-type]
        active=user.active,
    )


def team_snapshot(team: Team) -> TeamSnapshot:
    return TeamSnapshot(team_id=team.id, version=team.version, name=team.name, member_ids=list(team.member_ids))


async def is_deactivated(pool: asyncpg.Pool, user_id: UUID) -> bool:
    """Whether the directory holds this user as deactivated; their tokens then stop working (401)."""
    return await store.is_deactivated(pool, user_id)


async def create_user(pool: asyncpg.Pool, cmd: NewUser) -> User:
    """Add a user to the directory and publish their snapshot."""
    user = domain.new_user(uuid4(), cmd.name, cmd.email, cmd.phone, cmd.time_zone, cmd.language, cmd.role)
    async with transaction(pool) as conn:
        with unique(f"a user with e-mail {user.email} exists"):
            await store.insert_user(conn, user)
        await enqueue(conn, user_snapshot(user))
    return user


async def edit_user(pool: asyncpg.Pool, actor: Principal, cmd: EditUser) -> User:
    """Change a user's profile; a user edits only their own profile fields, an admin anything. Deactivating
    a user also revokes their calendar feed token."""
    actor.require_self_or_admin(cmd.user_id)
    async with transaction(pool) as conn:
        current = found(await store.get_user(conn, cmd.user_id, lock=True), f"user {cmd.user_id}")
        try:
            edited = domain.edit_user(current, dict(cmd.changes), by_admin=actor.is_admin)
        except PermissionError as exc:
            raise Forbidden(str(exc)) from exc
        if edited == current:
            return current
        if current.active and not edited.active:
            # a deactivated user must never be the one paged: they leave schedules and policies first
            commitments = await store.commitments_of_user(conn, cmd.user_id, utcnow())
            if commitments:
                raise Conflict(f"the user is still on call somewhere; remove them first from: {'; '.join(commitments)}")
            await store.revoke_calendar_token(conn, cmd.user_id)
        with unique(f"a user with e-mail {edited.email} exists"):
            await store.update_user(conn, edited)
        await enqueue(conn, user_snapshot(edited))
    return edited


async def get_user(pool: asyncpg.Pool | asyncpg.Connection, user_id: UUID) -> User:
    return found(await store.get_user(pool, user_id), f"user {user_id}")


async def list_users(pool: asyncpg.Pool, limit: int, offset: int) -> list[User]:
    return await store.list_users(pool, limit=limit, offset=offset)


async def create_team(pool: asyncpg.Pool, cmd: DefineTeam) -> Team:
    """Create a team of existing users and publish its snapshot."""
    async with transaction(pool) as conn:
        known = await store.existing_user_ids(conn, cmd.member_ids)
        team = domain.new_team(uuid4(), cmd.name, list(cmd.member_ids), known)
        with unique(f"a team named {team.name} exists"):
            await store.insert_team(conn, team)
        await enqueue(conn, team_snapshot(team))
    return team


async def set_team_members(pool: asyncpg.Pool, team_id: UUID, member_ids: tuple[UUID, ...]) -> Team:
    """Replace a team's members (in order) and publish its snapshot."""
    async with transaction(pool) as conn:
        team = found(await store.get_team(conn, team_id, lock=True), f"team {team_id}")
        changed = domain.change_members(team, list(member_ids), await store.existing_user_ids(conn, member_ids))
        await store.update_team(conn, changed)
        await enqueue(conn, team_snapshot(changed))
    return changed


async def get_team(pool: asyncpg.Pool, team_id: UUID) -> Team:
    return found(await store.get_team(pool, team_id), f"team {team_id}")


async def list_teams(pool: asyncpg.Pool) -> list[Team]:
    return await store.list_teams(pool)
