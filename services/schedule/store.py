"""SQL of the schedule service: one function per query."""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

import asyncpg

from services.schedule.domain import Team, User

_USER_COLUMNS = "id, name, email, phone, time_zone, language, role, active, version"


def _user(row: asyncpg.Record) -> User:
    return User(**dict(row))


async def insert_user(conn: asyncpg.Connection, user: User) -> None:
    await conn.execute(
        f"INSERT INTO users ({_USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        user.id, user.name, user.email, user.phone, user.time_zone, user.language, user.role, user.active,
        user.version,
    )


async def update_user(conn: asyncpg.Connection, user: User) -> None:
    await conn.execute(
        """UPDATE users SET name = $2, email = $3, phone = $4, time_zone = $5, language = $6, role = $7,
                  active = $8, version = $9, updated_at = now() WHERE id = $1""",
        user.id, user.name, user.email, user.phone, user.time_zone, user.language, user.role, user.active,
        user.version,
    )


async def get_user(conn: asyncpg.Connection | asyncpg.Pool, user_id: UUID, *, lock: bool = False) -> User | None:
    row = await conn.fetchrow(
        f"SELECT {_USER_COLUMNS} FROM users WHERE id = $1" + (" FOR UPDATE" if lock else ""), user_id
    )
    return _user(row) if row else None


async def list_users(pool: asyncpg.Pool, *, limit: int, offset: int) -> list[User]:
    rows = await pool.fetch(f"SELECT {_USER_COLUMNS} FROM users ORDER BY name, id LIMIT $1 OFFSET $2", limit, offset)
    return [_user(r) for r in rows]


async def existing_user_ids(conn: asyncpg.Connection, ids: Iterable[UUID]) -> set[UUID]:
    rows = await conn.fetch("SELECT id FROM users WHERE id = ANY($1::uuid[])", list(ids))
    return {r["id"] for r in rows}


async def insert_team(conn: asyncpg.Connection, team: Team) -> None:
    await conn.execute("INSERT INTO teams (id, name, version) VALUES ($1, $2, $3)", team.id, team.name, team.version)
    await _replace_members(conn, team)


async def update_team(conn: asyncpg.Connection, team: Team) -> None:
    await conn.execute(
        "UPDATE teams SET name = $2, version = $3, updated_at = now() WHERE id = $1", team.id, team.name, team.version
    )
    await _replace_members(conn, team)


async def _replace_members(conn: asyncpg.Connection, team: Team) -> None:
    await conn.execute("DELETE FROM team_members WHERE team_id = $1", team.id)
    await conn.executemany(
        "INSERT INTO team_members (team_id, user_id, position) VALUES ($1, $2, $3)",
        [(team.id, user_id, i) for i, user_id in enumerate(team.member_ids)],
    )


async def get_team(conn: asyncpg.Connection | asyncpg.Pool, team_id: UUID, *, lock: bool = False) -> Team | None:
    row = await conn.fetchrow(
        "SELECT id, name, version FROM teams WHERE id = $1" + (" FOR UPDATE" if lock else ""), team_id
    )
    if row is None:
        return None
    members = await conn.fetch("SELECT user_id FROM team_members WHERE team_id = $1 ORDER BY position", team_id)
    member_ids = tuple(m["user_id"] for m in members)
    return Team(id=row["id"], name=row["name"], version=row["version"], member_ids=member_ids)


async def list_teams(pool: asyncpg.Pool) -> list[Team]:
    rows = await pool.fetch(
        """SELECT t.id, t.name, t.version,
                  coalesce(array_agg(m.user_id ORDER BY m.position) FILTER (WHERE m.user_id IS NOT NULL),
                           '{}') AS members
           FROM teams t LEFT JOIN team_members m ON m.team_id = t.id GROUP BY t.id ORDER BY t.name"""
    )
    return [Team(id=r["id"], name=r["name"], version=r["version"], member_ids=tuple(r["members"])) for r in rows]
