"""SQL of the coverage service: one function per query, domain objects in and out."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from datetime import datetime
from typing import Literal, TypeAlias
from uuid import UUID

import asyncpg

from services.coverage.domain import CoverageRequest, People, Piece, Recipient, Shift, Status, Transition
from shared.logs import get_logger
from shared.messages import TeamSnapshot, UserSnapshot
from shared.projection import upsert_snapshots

log = get_logger(__name__)
Db: TypeAlias = asyncpg.Connection | asyncpg.Pool
Box = Literal["sent", "received", "all"]


# --- projections of schedule's snapshots ---------------------------------------------------------------------


def _user_row(user: UserSnapshot) -> dict[str, object]:
    return {
        "user_id": user.user_id,
        "name": user.name,
        "role": user.role,
        "active": user.active,
        "time_zone": user.time_zone,
        "language": user.language,
    }


async def upsert_users(conn: asyncpg.Connection, users: Sequence[UserSnapshot]) -> list[Hashable]:
    """Keep the newest snapshot of each of these users (distinct ids) in one statement; the ids that changed."""
    return await upsert_snapshots(conn, "users", "user_id", [(u.version, _user_row(u)) for u in users])


def _team_row(team: TeamSnapshot) -> dict[str, object]:
    return {"team_id": team.team_id, "name": team.name, "member_ids": team.member_ids}


async def upsert_teams(conn: asyncpg.Connection, teams: Sequence[TeamSnapshot]) -> list[Hashable]:
    """Keep the newest snapshot of each of these teams (distinct ids) in one statement; the ids that changed."""
    return await upsert_snapshots(conn, "teams", "team_id", [(t.version, _team_row(t)) for t in teams])


async def is_deactivated(db: Db, user_id: UUID) -> bool:
    """Whether the projection holds this user as deactivated (unknown users are not)."""
    return bool(await db.fetchval("SELECT NOT active FROM users WHERE user_id = $1", user_id))


async def active_users(db: Db, user_ids: Iterable[UUID]) -> set[UUID]:
    rows = await db.fetch("SELECT user_id FROM users WHERE user_id = ANY($1::uuid[]) AND active", list(user_ids))
    return {r["user_id"] for r in rows}


async def candidates(db: Db, user_id: UUID, asked: Iterable[UUID]) -> dict[UUID, tuple[bool, bool]]:
    """For each of `asked` that the projection knows: (active, shares a team with `user_id`)."""
    rows = await db.fetch(
        """SELECT u.user_id, u.active,
                  EXISTS (SELECT 1 FROM teams WHERE member_ids @> ARRAY[$1::uuid, u.user_id]) AS mate
           FROM users u WHERE u.user_id = ANY($2::uuid[])""",
        user_id,
        list(asked),
    )
    return {r["user_id"]: (r["active"], r["mate"]) for r in rows}


async def people(db: Db, user_ids: Iterable[UUID]) -> People:
    rows = await db.fetch("SELECT user_id, name, time_zone FROM users WHERE user_id = ANY($1::uuid[])", list(user_ids))
    return People({r["user_id"]: r["name"] for r in rows}, {r["user_id"]: r["time_zone"] for r in rows})


async def lock_timelines(conn: asyncpg.Connection, schedule_ids: Iterable[UUID]) -> dict[UUID, datetime]:
    """Lock the timeline rows of these schedules (in one order, so two requests never deadlock) and return
    each one's horizon end; a schedule with no published timeline is absent."""
    rows = await conn.fetch(
        """SELECT schedule_id, horizon_end FROM timelines WHERE schedule_id = ANY($1::uuid[])
           ORDER BY schedule_id FOR UPDATE""",
        sorted(set(schedule_ids)),
    )
    return {r["schedule_id"]: r["horizon_end"] for r in rows}


async def pieces(db: Db, schedule_id: UUID, start: datetime, end: datetime) -> list[Piece]:
    """The on-call pieces of the held timeline of `schedule_id` overlapping [start, end), in order."""
    rows = await db.fetch(
        """SELECT starts_at, ends_at, user_id FROM timeline_shifts
           WHERE schedule_id = $1 AND starts_at < $3 AND ends_at > $2 ORDER BY starts_at""",
        schedule_id,
        start,
        end,
    )
    return [Piece(schedule_id, r["starts_at"], r["ends_at"], r["user_id"]) for r in rows]


async def shifts_of(db: Db, user_id: UUID, start: datetime, end: datetime) -> list[Piece]:
    """`user_id`'s on-call pieces on every held timeline overlapping [start, end), by start."""
    rows = await db.fetch(
        """SELECT schedule_id, starts_at, ends_at, user_id FROM timeline_shifts
           WHERE user_id = $1 AND ends_at > $2 AND starts_at < $3 ORDER BY starts_at, schedule_id""",
        user_id,
        start,
        end,
    )
    return [Piece(r["schedule_id"], r["starts_at"], r["ends_at"], r["user_id"]) for r in rows]


async def schedule_names(db: Db, schedule_ids: Iterable[UUID]) -> dict[UUID, str]:
    rows = await db.fetch(
        "SELECT schedule_id, name FROM timelines WHERE schedule_id = ANY($1::uuid[])", list(schedule_ids)
    )
    return {r["schedule_id"]: r["name"] for r in rows}


async def pieces_of_each(db: Db, spans: Sequence[tuple[UUID, datetime, datetime]]) -> list[list[Piece]]:
    """For each (schedule, start, end): the on-call pieces of that schedule's timeline overlapping it, in order."""
    rows = await db.fetch(
        """SELECT s.n, t.schedule_id, t.starts_at, t.ends_at, t.user_id
           FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[]) WITH ORDINALITY AS s(sid, st, en, n)
           JOIN timeline_shifts t ON t.schedule_id = s.sid AND t.starts_at < s.en AND t.ends_at > s.st
           ORDER BY s.n, t.starts_at""",
        [x[0] for x in spans],
        [x[1] for x in spans],
        [x[2] for x in spans],
    )
    found: list[list[Piece]] = [[] for _ in spans]
    for r in rows:
        found[r["n"] - 1].append(Piece(r["schedule_id"], r["starts_at"], r["ends_at"], r["user_id"]))
    return found


async def claims_of_each(db: Db, spans: Sequence[tuple[UUID, datetime, datetime]]) -> list[UUID | None]:
    """For each (schedule, start, end): an open request claiming time of that schedule overlapping it, if any."""
    rows = await db.fetch(
        """SELECT DISTINCT ON (s.n) s.n, c.request_id
           FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[]) WITH ORDINALITY AS s(sid, st, en, n)
           JOIN request_shifts c ON c.open AND c.schedule_id = s.sid AND c.starts_at < s.en AND c.ends_at > s.st
           ORDER BY s.n, c.request_id""",
        [x[0] for x in spans],
        [x[1] for x in spans],
        [x[2] for x in spans],
    )
    found: list[UUID | None] = [None for _ in spans]
    for r in rows:
        found[r["n"] - 1] = r["request_id"]
    return found


async def open_claims_of(
    db: Db, requester_id: UUID, start: datetime, end: datetime
) -> dict[tuple[UUID, datetime, datetime], UUID]:
    rows = await db.fetch(
        """SELECT s.schedule_id, s.starts_at, s.ends_at, s.request_id FROM request_shifts s
           JOIN requests r ON r.id = s.request_id
           WHERE s.open AND r.requester_id = $1 AND s.starts_at < $3 AND s.ends_at > $2""",
        requester_id,
        start,
        end,
    )
    return {(r["schedule_id"], r["starts_at"], r["ends_at"]): r["request_id"] for r in rows}


async def pending_on(conn: asyncpg.Connection, schedule_id: UUID) -> list[UUID]:
    """Pending requests with a claim on `schedule_id`."""
    rows = await conn.fetch(
        """SELECT DISTINCT s.request_id FROM request_shifts s JOIN requests r ON r.id = s.request_id
           WHERE s.open AND s.schedule_id = $1 AND r.status = 'pending'""",
        schedule_id,
    )
    return [r["request_id"] for r in rows]


async def pending_of_user(conn: asyncpg.Connection, user_id: UUID) -> list[UUID]:
    """Pending requests `user_id` sent or may still answer."""
    rows = await conn.fetch(
        """SELECT id FROM requests WHERE requester_id = $1 AND status = 'pending'
           UNION SELECT x.request_id FROM request_recipients x JOIN requests r ON r.id = x.request_id
           WHERE x.user_id = $1 AND x.decision IS NULL AND r.status = 'pending'""",
        user_id,
    )
    return [r["id"] for r in rows]


# --- requests -------------------------------------------------------------------------------------------------


async def insert_request(conn: asyncpg.Connection, r: CoverageRequest) -> None:
    """The request with its recipients, shifts and first history step, in one round trip."""
    await conn.execute(
        """WITH request AS (
               INSERT INTO requests (id, requester_id, period_start, period_end, message, status, covering_user_id,
                                     reason, remind_at, created_at, updated_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)),
           recipients AS (
               INSERT INTO request_recipients (request_id, user_id, position, decision, decided_at, created_at)
               SELECT $1, u, n - 1, NULL, NULL, $10 FROM unnest($12::uuid[]) WITH ORDINALITY AS x(u, n)),
           shifts AS (
               INSERT INTO request_shifts (request_id, position, schedule_id, starts_at, ends_at, covered, open)
               SELECT $1, n - 1, sid, st, en, NULL, true
               FROM unnest($13::uuid[], $14::timestamptz[], $15::timestamptz[]) WITH ORDINALITY AS x(sid, st, en, n))
           """
        + _HISTORY_INSERT.format(first="$16", at="$17", actor="$18", status="$19", reason="$20"),
        r.id,
        r.requester_id,
        r.period_start,
        r.period_end,
        r.message,
        r.status,
        r.covering_user_id,
        r.reason,
        r.remind_at,
        r.created_at,
        r.updated_at,
        list(r.recipient_ids),
        [s.schedule_id for s in r.shifts],
        [s.start for s in r.shifts],
        [s.end for s in r.shifts],
        *_history_args(r, 0),
    )


# Appends the history steps of request $1 given as four arrays, numbered from {first}.
_HISTORY_INSERT = """
INSERT INTO request_history (request_id, position, at, actor_id, status, reason)
SELECT $1, {first}::int + n - 1, at, actor, status, reason
FROM unnest({at}::timestamptz[], {actor}::uuid[], {status}::text[], {reason}::text[]) WITH ORDINALITY
     AS h(at, actor, status, reason, n)"""


def _history_args(r: CoverageRequest, since: int) -> tuple[object, ...]:
    steps = r.history[since:]
    return (
        since,
        [t.at for t in steps],
        [t.actor_id for t in steps],
        [t.status for t in steps],
        [t.reason for t in steps],
    )


def _holds(r: CoverageRequest, s: Shift) -> bool:
    """Whether `s` stays claimed: all shifts of a pending request, the chosen ones of an accepting one."""
    return r.status == "pending" or (r.status == "accepting" and bool(s.covered))


async def save_request(conn: asyncpg.Connection, before: CoverageRequest, after: CoverageRequest) -> None:
    """Write what changed from `before` (as loaded) to `after`, in one round trip. A change of status is
    announced on `<schema>_requests` (delivered on commit) to whoever waits for it."""
    decided = [x for x, y in zip(after.recipients, before.recipients, strict=True) if x != y]
    await conn.execute(
        """WITH request AS (
               UPDATE requests SET status = $2, covering_user_id = $3, reason = $4, updated_at = $5 WHERE id = $1),
           recipients AS (
               UPDATE request_recipients x SET decision = d.decision, decided_at = d.at
               FROM unnest($6::uuid[], $7::text[], $8::timestamptz[]) AS d(u, decision, at)
               WHERE x.request_id = $1 AND x.user_id = d.u),
           shifts AS (
               UPDATE request_shifts s SET covered = c.covered, open = c.open
               FROM unnest($9::boolean[], $10::boolean[]) WITH ORDINALITY AS c(covered, open, n)
               WHERE s.request_id = $1 AND s.position = c.n - 1),
           history AS ("""
        + _HISTORY_INSERT.format(first="$11", at="$12", actor="$13", status="$14", reason="$15")
        + """)
           SELECT pg_notify(current_schema() || '_requests', $1::text) WHERE $16""",
        after.id,
        after.status,
        after.covering_user_id,
        after.reason,
        after.updated_at,
        [x.user_id for x in decided],
        [x.decision for x in decided],
        [x.decided_at for x in decided],
        [s.covered for s in after.shifts],
        [_holds(after, s) for s in after.shifts],
        *_history_args(after, len(before.history)),
        after.status != before.status,
    )


_SELECT = """
SELECT r.*,
  ARRAY(SELECT (x.user_id, x.decision, x.decided_at) FROM request_recipients x
        WHERE x.request_id = r.id ORDER BY x.position) AS recipients,
  ARRAY(SELECT (s.schedule_id, s.starts_at, s.ends_at, s.covered) FROM request_shifts s
        WHERE s.request_id = r.id ORDER BY s.position) AS shifts,
  ARRAY(SELECT (h.at, h.actor_id, h.status, h.reason) FROM request_history h
        WHERE h.request_id = r.id ORDER BY h.position) AS history
FROM requests r
"""


def _load(row: asyncpg.Record) -> CoverageRequest:
    return CoverageRequest(
        id=row["id"],
        requester_id=row["requester_id"],
        recipients=tuple(Recipient(*x) for x in row["recipients"]),
        period_start=row["period_start"],
        period_end=row["period_end"],
        shifts=tuple(Shift(*s) for s in row["shifts"]),
        message=row["message"],
        status=row["status"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        remind_at=row["remind_at"],
        covering_user_id=row["covering_user_id"],
        reason=row["reason"],
        history=tuple(Transition(*h) for h in row["history"]),
    )


async def get_request(db: Db, request_id: UUID, *, lock: bool = False) -> CoverageRequest | None:
    """The request, locked for the rest of the transaction when `lock` (every transition takes this lock, so
    two transitions of one request never interleave)."""
    if lock:
        # Lock first, then read the children: the row lock makes the later reads see the winner's commit.
        if not await db.fetchval("SELECT true FROM requests WHERE id = $1 FOR UPDATE", request_id):
            return None
    row = await db.fetchrow(_SELECT + "WHERE r.id = $1", request_id)
    return _load(row) if row is not None else None


async def status_of(db: Db, request_id: UUID) -> Status | None:
    return await db.fetchval("SELECT status FROM requests WHERE id = $1", request_id)  # type: ignore[no-any-return]


async def list_requests(
    db: Db, box: Box, user_id: UUID, statuses: Sequence[Status], before: tuple[datetime, UUID] | None, limit: int
) -> list[CoverageRequest]:
    """Newest first: requests `user_id` sent, received, or (`all`) every request; only `statuses` if given,
    only those older than the cursor `before` if given."""
    created, last_id = before if before else (None, None)
    if box == "received":
        ids_sql = """SELECT x.request_id AS id, x.created_at
                     FROM request_recipients x JOIN requests r ON r.id = x.request_id
                     WHERE x.user_id = $1 AND (cardinality($2::text[]) = 0 OR r.status = ANY($2::text[]))
                       AND ($3::timestamptz IS NULL OR (x.created_at, x.request_id) < ($3, $4))
                     ORDER BY x.created_at DESC, x.request_id DESC LIMIT $5"""
    else:
        who = "r.requester_id = $1" if box == "sent" else "$1::uuid IS NOT NULL"
        ids_sql = f"""SELECT r.id, r.created_at FROM requests r
                      WHERE {who} AND (cardinality($2::text[]) = 0 OR r.status = ANY($2::text[]))
                        AND ($3::timestamptz IS NULL OR (r.created_at, r.id) < ($3, $4))
                      ORDER BY r.created_at DESC, r.id DESC LIMIT $5"""
    rows = await db.fetch(
        f"WITH page AS ({ids_sql}) "
        + _SELECT
        + "JOIN page ON page.id = r.id ORDER BY page.created_at DESC, page.id DESC",
        user_id,
        list(statuses),
        created,
        last_id,
        limit,
    )
    return [_load(r) for r in rows]


async def badges(db: Db, user_ids: Iterable[UUID]) -> dict[UUID, int]:
    """`badge` of each of `user_ids`, in one round trip."""
    rows = await db.fetch(
        """SELECT u, (SELECT count(*) FROM request_recipients x JOIN requests r ON r.id = x.request_id
                      WHERE x.user_id = u AND x.decision IS NULL AND r.status = 'pending') AS n
           FROM unnest($1::uuid[]) AS u""",
        list(set(user_ids)),
    )
    return {r["u"]: r["n"] for r in rows}


async def badge(db: Db, user_id: UUID) -> int:
    """Pending requests addressed to `user_id` that they have not answered."""
    return await db.fetchval(  # type: ignore[no-any-return]
        """SELECT count(*) FROM request_recipients x JOIN requests r ON r.id = x.request_id
           WHERE x.user_id = $1 AND x.decision IS NULL AND r.status = 'pending'""",
        user_id,
    )
