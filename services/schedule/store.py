"""SQL of the schedule service: one function per query, domain objects in and out.

Stored definitions (a schedule's layers and shifts, support hours' windows) are a versioned serialisation of
the domain objects (`_dump_*` / `_load_*`), read back without the API's validation: tightening an API rule
never makes a stored row unreadable. A list skips (and logs) a row it still cannot read rather than failing
for everyone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime, time
from typing import Any, TypeAlias, TypeVar
from uuid import UUID

import asyncpg

from services.schedule.domain import Team, User
from services.schedule.domain.policies import Policy, Rule, SupportHours
from services.schedule.domain.shifts import WEEKDAYS, Cover, Layer, Schedule, StaticShift, Window
from shared.logs import get_logger
from shared.messages import CoverageApplied, CoverageRejected, CoverageReverted

log = get_logger(__name__)
T = TypeVar("T")
Db: TypeAlias = asyncpg.Connection | asyncpg.Pool
DEFINITION_VERSION = 2


def _readable(rows: Iterable[asyncpg.Record], load: Callable[[asyncpg.Record], T]) -> list[T]:
    loaded = []
    for row in rows:
        try:
            loaded.append(load(row))
        except Exception as exc:  # one unreadable row must not fail the whole list
            log.error("stored row cannot be read; left out", id=str(row["id"]), error=repr(exc))
    return loaded


# --- stored forms --------------------------------------------------------------------------------------------


def _dump_windows(windows: Iterable[Window]) -> list[list[Any]]:
    return [[w.weekday, w.start.strftime("%H:%M"), w.minutes] for w in windows]


def _load_windows(raw: Any) -> tuple[Window, ...]:
    """Version 2: [weekday, "HH:MM", minutes]. Version 1 stored the API's {days, start, end}: read leniently,
    so rows saved before the rules tightened (duplicate days, start = end) still load."""
    windows: dict[Window, None] = {}
    for item in raw or ():
        if isinstance(item, list):
            weekday, start, minutes = item
            windows[Window(int(weekday), time.fromisoformat(start), int(minutes))] = None
            continue
        begin = _minutes(item["start"])
        finish = _minutes(item["end"])
        minutes = (finish - begin) % 1440 or 1440
        for day in item["days"]:
            if day in WEEKDAYS:
                windows[Window(WEEKDAYS.index(day), time(begin // 60, begin % 60), minutes)] = None
    return tuple(windows)


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _instant(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _dump_definition(schedule: Schedule) -> dict[str, Any]:
    return {
        "v": DEFINITION_VERSION,
        "layers": [
            {
                "name": layer.name, "users": [str(u) for u in layer.users], "length": layer.length,
                "unit": layer.unit, "handoff": layer.handoff.isoformat(),
                "restrictions": _dump_windows(layer.restrictions), "start": _iso(layer.start), "end": _iso(layer.end),
            }
            for layer in schedule.layers
        ],
        "shifts": [{"user_id": str(s.user_id), "start": _iso(s.start), "end": _iso(s.end)} for s in schedule.shifts],
    }


def _load_schedule(row: asyncpg.Record) -> Schedule:
    definition = row["definition"]
    layers = tuple(
        Layer(
            users=tuple(UUID(str(u)) for u in spec["users"]),
            length=int(spec["length"]),
            unit=spec["unit"],
            handoff=datetime.fromisoformat(spec["handoff"]),
            restrictions=_load_windows(spec.get("restrictions")),
            start=_instant(spec.get("start")),
            end=_instant(spec.get("end")),
            name=spec.get("name") or f"Layer {i + 1}",
        )
        for i, spec in enumerate(definition.get("layers") or ())
    )
    shifts = tuple(
        sorted(
            (
                StaticShift(
                    UUID(str(s["user_id"])), datetime.fromisoformat(s["start"]), datetime.fromisoformat(s["end"])
                )
                for s in definition.get("shifts") or ()
            ),
            key=lambda s: s.start,
        )
    )
    return Schedule(
        row["id"], row["name"], row["time_zone"], row["kind"], layers, shifts, row["version"], row["team_id"]
    )


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


async def get_user(conn: Db, user_id: UUID, *, lock: bool = False) -> User | None:
    row = await conn.fetchrow(
        f"SELECT {_USER_COLUMNS} FROM users WHERE id = $1" + (" FOR UPDATE" if lock else ""), user_id
    )
    return _user(row) if row else None


async def list_users(pool: asyncpg.Pool, *, limit: int, offset: int) -> list[User]:
    rows = await pool.fetch(f"SELECT {_USER_COLUMNS} FROM users ORDER BY name, id LIMIT $1 OFFSET $2", limit, offset)
    return [_user(r) for r in rows]


async def is_deactivated(conn: Db, user_id: UUID) -> bool:
    """Whether the directory knows this user and they are deactivated (unknown ids are not: see docs)."""
    return bool(await conn.fetchval("SELECT NOT active FROM users WHERE id = $1", user_id))


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


async def get_team(conn: Db, team_id: UUID, *, lock: bool = False) -> Team | None:
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


async def lock_schedules(conn: asyncpg.Connection, ids: Iterable[UUID]) -> list[Schedule]:
    """Lock schedule rows in id order (one order everywhere, so two writers never deadlock)."""
    rows = await conn.fetch(
        "SELECT * FROM schedules WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE", sorted(set(ids))
    )
    # readable ones only: one unreadable row must not stop the rolling job for every schedule in its batch
    return _readable(rows, _load_schedule)


async def insert_schedule(conn: asyncpg.Connection, s: Schedule) -> None:
    await conn.execute(
        """INSERT INTO schedules (id, version, name, time_zone, kind, team_id, definition)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        s.id, s.version, s.name, s.time_zone, s.kind, s.team_id, _dump_definition(s),
    )
    await _replace_schedule_members(conn, s.id, s.user_ids())


async def update_schedule(conn: asyncpg.Connection, s: Schedule) -> None:
    await conn.execute(
        """UPDATE schedules SET version = $2, name = $3, time_zone = $4, kind = $5, team_id = $6, definition = $7,
                  updated_at = now() WHERE id = $1""",
        s.id, s.version, s.name, s.time_zone, s.kind, s.team_id, _dump_definition(s),
    )
    await _replace_schedule_members(conn, s.id, s.user_ids())


async def _replace_schedule_members(conn: asyncpg.Connection, schedule_id: UUID, members: set[UUID]) -> None:
    await conn.execute("DELETE FROM schedule_members WHERE schedule_id = $1", schedule_id)
    await conn.executemany(
        "INSERT INTO schedule_members (schedule_id, user_id) VALUES ($1, $2)", [(schedule_id, u) for u in members]
    )


async def get_schedule(conn: Db, schedule_id: UUID) -> Schedule | None:
    row = await conn.fetchrow("SELECT * FROM schedules WHERE id = $1", schedule_id)
    return _load_schedule(row) if row else None


async def list_schedules(pool: Db, *, limit: int, offset: int) -> list[Schedule]:
    rows = await pool.fetch("SELECT * FROM schedules ORDER BY name, id LIMIT $1 OFFSET $2", limit, offset)
    return _readable(rows, _load_schedule)


async def existing_schedule_ids(conn: asyncpg.Connection, ids: Iterable[UUID]) -> set[UUID]:
    rows = await conn.fetch("SELECT id FROM schedules WHERE id = ANY($1::uuid[])", list(ids))
    return {r["id"] for r in rows}


async def schedules_of_user(conn: Db, user_id: UUID, start: datetime, end: datetime) -> list[Schedule]:
    """Schedules the user can be on call on in [start, end): a rotation/static member, or covering there."""
    rows = await conn.fetch(
        """SELECT * FROM schedules WHERE id IN (
               SELECT schedule_id FROM schedule_members WHERE user_id = $1
               UNION SELECT schedule_id FROM covers WHERE user_id = $1 AND ends_at > $2 AND starts_at < $3)
           ORDER BY name, id""",
        user_id, start, end,
    )
    return _readable(rows, _load_schedule)


async def schedules_to_refresh(conn: asyncpg.Connection, before: datetime, limit: int) -> list[UUID]:
    """Schedules whose published timeline ends before `before`, locked for this worker (others skip them)."""
    rows = await conn.fetch(
        """SELECT id FROM schedules WHERE timeline_until IS NULL OR timeline_until < $1
           ORDER BY timeline_until NULLS FIRST LIMIT $2 FOR UPDATE SKIP LOCKED""",
        before, limit,
    )
    return [r["id"] for r in rows]


async def mark_timeline_published(conn: asyncpg.Connection, schedule_id: UUID, until: datetime) -> int:
    version: int = await conn.fetchval(
        """UPDATE schedules SET timeline_version = timeline_version + 1, timeline_until = $2 WHERE id = $1
           RETURNING timeline_version""",
        schedule_id, until,
    )
    return version


_COVER_COLUMNS = "id, seq, user_id, starts_at, ends_at, source, coverage_request_id, created_by"


def _cover(row: asyncpg.Record) -> Cover:
    return Cover(
        id=row["id"], user_id=row["user_id"], start=row["starts_at"], end=row["ends_at"], source=row["source"],
        seq=row["seq"], coverage_request_id=row["coverage_request_id"], created_by=row["created_by"],
    )


async def covers_between(conn: Db, schedule_id: UUID, start: datetime, end: datetime) -> list[Cover]:
    rows = await conn.fetch(
        f"""SELECT {_COVER_COLUMNS} FROM covers WHERE schedule_id = $1 AND ends_at > $2 AND starts_at < $3
            ORDER BY seq""",
        schedule_id, start, end,
    )
    return [_cover(r) for r in rows]


async def insert_cover(conn: asyncpg.Connection, schedule_id: UUID, cover: Cover) -> Cover:
    seq = await conn.fetchval(
        """INSERT INTO covers (id, schedule_id, user_id, starts_at, ends_at, source, coverage_request_id, created_by)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING seq""",
        cover.id, schedule_id, cover.user_id, cover.start, cover.end, cover.source, cover.coverage_request_id,
        cover.created_by,
    )
    return replace(cover, seq=seq)


async def get_cover(conn: asyncpg.Connection, schedule_id: UUID, cover_id: UUID) -> Cover | None:
    row = await conn.fetchrow(
        f"SELECT {_COVER_COLUMNS} FROM covers WHERE schedule_id = $1 AND id = $2", schedule_id, cover_id
    )
    return _cover(row) if row else None


async def delete_cover(conn: asyncpg.Connection, cover_id: UUID) -> None:
    await conn.execute("DELETE FROM covers WHERE id = $1", cover_id)


async def schedules_of_coverage(conn: asyncpg.Connection, request_id: UUID) -> list[UUID]:
    rows = await conn.fetch("SELECT DISTINCT schedule_id FROM covers WHERE coverage_request_id = $1", request_id)
    return [r["schedule_id"] for r in rows]


async def delete_coverage(conn: asyncpg.Connection, request_id: UUID) -> int:
    """Remove what a coverage request placed; how many shifts that was."""
    status: str = await conn.execute("DELETE FROM covers WHERE coverage_request_id = $1", request_id)
    return int(status.split()[-1])


Outcome = CoverageApplied | CoverageRejected | CoverageReverted
_OUTCOMES: dict[str, type[Outcome]] = {
    "applied": CoverageApplied, "rejected": CoverageRejected, "reverted": CoverageReverted,
}


async def get_coverage_outcome(conn: asyncpg.Connection, request_id: UUID) -> Outcome | None:
    """The answer schedule gave a coverage request, locked for this transaction."""
    row = await conn.fetchrow(
        "SELECT status, answer FROM coverage_outcomes WHERE request_id = $1 FOR UPDATE", request_id
    )
    return _OUTCOMES[row["status"]].model_validate(row["answer"]) if row else None


async def save_coverage_outcome(conn: asyncpg.Connection, answer: Outcome) -> None:
    status = next(name for name, kind in _OUTCOMES.items() if isinstance(answer, kind))
    await conn.execute(
        """INSERT INTO coverage_outcomes (request_id, status, answer) VALUES ($1, $2, $3)
           ON CONFLICT (request_id) DO UPDATE SET status = $2, answer = $3, updated_at = now()""",
        answer.request_id, status, answer.model_dump(mode="json"),
    )


def _dump_rules(policy: Policy) -> list[dict[str, Any]]:
    return [
        {"timeout_minutes": r.timeout_minutes, "user_ids": [str(u) for u in r.user_ids],
         "schedule_ids": [str(s) for s in r.schedule_ids]}
        for r in policy.rules
    ]


def _load_policy(row: asyncpg.Record) -> Policy:
    rules = tuple(
        Rule(
            int(r["timeout_minutes"]),
            tuple(UUID(str(u)) for u in r.get("user_ids") or ()),
            tuple(UUID(str(s)) for s in r.get("schedule_ids") or ()),
        )
        for r in row["rules"]
    )
    return Policy(row["id"], row["name"], rules, row["repeat"], row["version"])


async def insert_policy(conn: asyncpg.Connection, p: Policy) -> None:
    await conn.execute(
        "INSERT INTO policies (id, version, name, repeat, rules) VALUES ($1, $2, $3, $4, $5)",
        p.id, p.version, p.name, p.repeat, _dump_rules(p),
    )


async def update_policy(conn: asyncpg.Connection, p: Policy) -> None:
    await conn.execute(
        "UPDATE policies SET version = $2, name = $3, repeat = $4, rules = $5, updated_at = now() WHERE id = $1",
        p.id, p.version, p.name, p.repeat, _dump_rules(p),
    )


async def get_policy(conn: Db, policy_id: UUID, *, lock: bool = False) -> Policy | None:
    row = await conn.fetchrow("SELECT * FROM policies WHERE id = $1" + (" FOR UPDATE" if lock else ""), policy_id)
    return _load_policy(row) if row else None


async def list_policies(pool: Db, *, limit: int, offset: int) -> list[Policy]:
    rows = await pool.fetch("SELECT * FROM policies ORDER BY name, id LIMIT $1 OFFSET $2", limit, offset)
    return _readable(rows, _load_policy)


def _load_support_hours(row: asyncpg.Record) -> SupportHours:
    return SupportHours(
        row["id"], row["name"], row["time_zone"], _load_windows(row["windows"]), tuple(sorted(set(row["holidays"]))),
        row["version"],
    )


async def insert_support_hours(conn: asyncpg.Connection, h: SupportHours) -> None:
    await conn.execute(
        "INSERT INTO support_hours (id, version, name, time_zone, windows, holidays) VALUES ($1, $2, $3, $4, $5, $6)",
        h.id, h.version, h.name, h.time_zone, _dump_windows(h.windows), list(h.holidays),
    )


async def update_support_hours(conn: asyncpg.Connection, h: SupportHours) -> None:
    await conn.execute(
        """UPDATE support_hours SET version = $2, name = $3, time_zone = $4, windows = $5, holidays = $6,
                  updated_at = now() WHERE id = $1""",
        h.id, h.version, h.name, h.time_zone, _dump_windows(h.windows), list(h.holidays),
    )


async def get_support_hours(conn: Db, support_hours_id: UUID, *, lock: bool = False) -> SupportHours | None:
    row = await conn.fetchrow(
        "SELECT * FROM support_hours WHERE id = $1" + (" FOR UPDATE" if lock else ""), support_hours_id
    )
    return _load_support_hours(row) if row else None


async def list_support_hours(pool: Db, *, limit: int, offset: int) -> list[SupportHours]:
    rows = await pool.fetch("SELECT * FROM support_hours ORDER BY name, id LIMIT $1 OFFSET $2", limit, offset)
    return _readable(rows, _load_support_hours)


async def user_names(conn: Db, ids: Iterable[UUID]) -> dict[UUID, str]:
    rows = await conn.fetch("SELECT id, name FROM users WHERE id = ANY($1::uuid[])", list(set(ids)))
    return {r["id"]: r["name"] for r in rows}


def _token_hash(token: str) -> str:
    # only a hash is stored: a copy of the database does not hand out working feed URLs
    return hashlib.sha256(token.encode()).hexdigest()


async def set_calendar_token(conn: Db, user_id: UUID, token: str) -> None:
    await conn.execute(
        """INSERT INTO calendar_tokens (token, user_id) VALUES ($1, $2)
           ON CONFLICT (user_id) DO UPDATE SET token = $1, created_at = now()""",
        _token_hash(token), user_id,
    )


async def user_of_calendar_token(pool: Db, token: str) -> UUID | None:
    """The active user whose feed token this is; a deactivated user's feeds stop answering."""
    user_id: UUID | None = await pool.fetchval(
        "SELECT t.user_id FROM calendar_tokens t JOIN users u ON u.id = t.user_id WHERE t.token = $1 AND u.active",
        _token_hash(token),
    )
    return user_id


async def revoke_calendar_token(conn: asyncpg.Connection, user_id: UUID) -> None:
    await conn.execute("DELETE FROM calendar_tokens WHERE user_id = $1", user_id)


async def feed_entries(conn: asyncpg.Connection, feed: str) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT entry FROM feed_entries WHERE feed = $1 FOR UPDATE", feed)
    return [r["entry"] for r in rows]


async def replace_feed_entries(conn: asyncpg.Connection, feed: str, entries: dict[str, dict[str, Any]]) -> None:
    await conn.execute("DELETE FROM feed_entries WHERE feed = $1", feed)
    await conn.executemany(
        "INSERT INTO feed_entries (feed, uid, entry) VALUES ($1, $2, $3)",
        [(feed, uid, entry) for uid, entry in entries.items()],
    )


async def active_user_ids(conn: asyncpg.Connection, ids: Iterable[UUID]) -> set[UUID]:
    """Those of `ids` that are active users, share-locked so a deactivation waits for this transaction."""
    rows = await conn.fetch(
        "SELECT id FROM users WHERE id = ANY($1::uuid[]) AND active ORDER BY id FOR SHARE", list(set(ids))
    )
    return {r["id"] for r in rows}


async def commitments_of_user(conn: asyncpg.Connection, user_id: UUID, now: datetime) -> list[str]:
    """What still counts on a user: schedules they rotate in, future overrides or coverage, policies naming them."""
    rows = await conn.fetch(
        """SELECT 'schedule ' || s.name AS what FROM schedule_members m JOIN schedules s ON s.id = m.schedule_id
           WHERE m.user_id = $1
           UNION SELECT 'overrides on schedule ' || s.name
           FROM covers c JOIN schedules s ON s.id = c.schedule_id WHERE c.user_id = $1 AND c.ends_at > $2
           UNION SELECT 'policy ' || p.name FROM policies p, jsonb_array_elements(p.rules) r
           WHERE r -> 'user_ids' ? $1::text
           ORDER BY what""",
        user_id, now,
    )
    return [r["what"] for r in rows]
