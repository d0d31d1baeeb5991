"""SQL of the notifier service."""

from __future__ import annotations

import json
from collections.abc import Collection, Hashable, Sequence
from datetime import datetime, timedelta
from typing import TypeAlias
from uuid import UUID

import asyncpg

from services.notifier.domain import Delivery, Device, Preferences, Step
from services.notifier.providers import Outcome
from shared.logs import get_logger
from shared.messages import UserSnapshot
from shared.projection import upsert_snapshot, upsert_snapshots

log = get_logger(__name__)
Db: TypeAlias = asyncpg.Connection | asyncpg.Pool


def _recipient(user: UserSnapshot) -> dict[str, object]:
    return {"user_id": user.user_id, "name": user.name, "email": user.email, "phone": user.phone,
            "time_zone": user.time_zone, "language": user.language, "active": user.active}


async def upsert_recipient(conn: asyncpg.Connection, user: UserSnapshot) -> bool:
    return await upsert_snapshot(conn, "recipients", "user_id", user.version, _recipient(user))


async def upsert_recipients(conn: asyncpg.Connection, users: Sequence[UserSnapshot]) -> list[Hashable]:
    """`upsert_recipient` for users of distinct ids in one statement; the ids that changed."""
    return await upsert_snapshots(conn, "recipients", "user_id", [(u.version, _recipient(u)) for u in users])


async def get_recipient(pool: asyncpg.Pool, user_id: UUID) -> asyncpg.Record | None:
    return await pool.fetchrow("SELECT * FROM recipients WHERE user_id = $1", user_id)


async def recipients_of(db: Db, user_ids: Collection[UUID]) -> dict[UUID, asyncpg.Record]:
    rows = await db.fetch("SELECT * FROM recipients WHERE user_id = ANY($1::uuid[])", list(user_ids))
    return {r["user_id"]: r for r in rows}


async def is_deactivated(pool: asyncpg.Pool, user_id: UUID) -> bool:
    """Whether the projection holds this user as deactivated (unknown users are not)."""
    return bool(await pool.fetchval("SELECT NOT active FROM recipients WHERE user_id = $1", user_id))


_DELIVERY_COLUMNS = """id, user_id, idempotency_key, title, body, urgency, data, status, kind, acknowledgeable, steps,
                        acknowledged_at, acknowledged_via, created_at, received_at, read_at, withdrawn_at,
                        withdrawn_reason"""


def _delivery(row: asyncpg.Record) -> Delivery:
    return Delivery(**dict(row))


async def insert_delivery(conn: asyncpg.Connection, d: Delivery, command_event_id: UUID) -> bool:
    """False when a delivery with the same idempotency key exists."""
    inserted = await conn.fetchval(
        """INSERT INTO deliveries (id, user_id, idempotency_key, title, body, urgency, data, status, command_event_id,
                                  kind, acknowledgeable, steps)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
           ON CONFLICT (idempotency_key) DO NOTHING RETURNING true""",
        d.id, d.user_id, d.idempotency_key, d.title, d.body, d.urgency, d.data, d.status, command_event_id,
        d.kind, d.acknowledgeable, d.steps,
    )
    return bool(inserted)


async def insert_deliveries(conn: asyncpg.Connection, planned: Sequence[tuple[Delivery, UUID]]) -> set[UUID]:
    """`insert_delivery` for many (delivery, command event id) of distinct idempotency keys in one statement;
    the ids of those inserted (the others' keys exist already)."""
    rows = await conn.fetch(
        """INSERT INTO deliveries (id, user_id, idempotency_key, title, body, urgency, data, status, command_event_id,
                                  kind, acknowledgeable, steps)
           SELECT i, u, k, t, b, g, d::jsonb, s, e, n, a, c
           FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                       $8::text[], $9::uuid[], $10::text[], $11::bool[], $12::int[])
                AS x(i, u, k, t, b, g, d, s, e, n, a, c)
           ORDER BY k
           ON CONFLICT (idempotency_key) DO NOTHING RETURNING id""",
        [d.id for d, _ in planned], [d.user_id for d, _ in planned], [d.idempotency_key for d, _ in planned],
        [d.title for d, _ in planned], [d.body for d, _ in planned], [d.urgency for d, _ in planned],
        [json.dumps(d.data) for d, _ in planned], [d.status for d, _ in planned], [e for _, e in planned],
        [d.kind for d, _ in planned], [d.acknowledgeable for d, _ in planned], [d.steps for d, _ in planned],
    )
    return {r["id"] for r in rows}


async def get_delivery(db: Db, delivery_id: UUID, *, lock: bool = False) -> Delivery | None:
    row = await db.fetchrow(
        f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE id = $1" + (" FOR UPDATE" if lock else ""), delivery_id
    )
    return _delivery(row) if row is not None else None


async def get_deliveries(conn: asyncpg.Connection, delivery_ids: Collection[UUID], *, lock: bool = False
                         ) -> dict[UUID, Delivery]:
    """`get_delivery` of many in one query (locked in id order, as concurrent batches then lock them)."""
    rows = await conn.fetch(
        f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE id = ANY($1::uuid[]) ORDER BY id"
        + (" FOR UPDATE" if lock else ""),
        list(delivery_ids),
    )
    return {r["id"]: _delivery(r) for r in rows}


async def set_status(conn: asyncpg.Connection, delivery_id: UUID, status: str) -> None:
    await conn.execute("UPDATE deliveries SET status = $2 WHERE id = $1", delivery_id, status)


async def set_statuses(conn: asyncpg.Connection, statuses: dict[UUID, str]) -> None:
    """`set_status` for many deliveries in one statement."""
    if statuses:
        await conn.execute(
            """UPDATE deliveries SET status = x.s FROM unnest($1::uuid[], $2::text[]) AS x(i, s)
               WHERE deliveries.id = x.i""",
            list(statuses), list(statuses.values()),
        )


async def acknowledge(conn: asyncpg.Connection, delivery_id: UUID, via: str, at: datetime) -> None:
    await conn.execute(
        """UPDATE deliveries SET status = 'acknowledged', acknowledged_at = $3, acknowledged_via = $2
           WHERE id = $1""",
        delivery_id, via, at,
    )


async def running_deliveries(conn: asyncpg.Connection, user_id: UUID, key_prefix: str) -> list[Delivery]:
    """The user's deliveries whose idempotency key starts with `key_prefix`, neither acknowledged nor withdrawn."""
    rows = await conn.fetch(
        f"""SELECT {_DELIVERY_COLUMNS} FROM deliveries
            WHERE user_id = $1 AND starts_with(idempotency_key, $2) AND acknowledged_at IS NULL
                  AND withdrawn_at IS NULL""",
        user_id, key_prefix,
    )
    return [_delivery(r) for r in rows]


async def withdraw(conn: asyncpg.Connection, delivery_ids: Collection[UUID], at: datetime, reason: str) -> None:
    if delivery_ids:
        await conn.execute(
            """UPDATE deliveries SET status = 'withdrawn', withdrawn_at = $2, withdrawn_reason = $3
               WHERE id = ANY($1::uuid[])""",
            list(delivery_ids), at, reason,
        )


async def mark(conn: asyncpg.Connection, delivery_id: UUID, column: str, at: datetime) -> Delivery:
    """Set `received_at` or `read_at` once (the first time counts); the delivery as it is then. A receipt makes
    a delivery neither acknowledged nor withdrawn `delivered`."""
    if column not in ("received_at", "read_at"):
        raise ValueError(column)
    delivered = ", status = CASE WHEN status IN ('acknowledged', 'withdrawn') THEN status ELSE 'delivered' END"
    row = await conn.fetchrow(
        f"""UPDATE deliveries SET {column} = coalesce({column}, $2){delivered if column == "received_at" else ""}
            WHERE id = $1 RETURNING {_DELIVERY_COLUMNS}""",
        delivery_id, at,
    )
    return _delivery(row)


async def add_step(conn: asyncpg.Connection, delivery_id: UUID) -> int:
    """One more step for the delivery; returns its index."""
    return await conn.fetchval(  # type: ignore[no-any-return]
        "UPDATE deliveries SET steps = steps + 1 WHERE id = $1 RETURNING steps - 1", delivery_id
    )


async def low_pushes_since(db: Db, user_id: UUID, since: datetime) -> list[datetime]:
    """When each low-urgency delivery of the user first reached a phone since `since`, oldest first."""
    rows = await db.fetch(
        """SELECT min(a.at) AS at FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id
           WHERE d.user_id = $1 AND d.urgency = 'low' AND a.channel = 'push' AND a.result = 'sent' AND a.at >= $2
           GROUP BY a.delivery_id ORDER BY 1""",
        user_id, since,
    )
    return [r["at"] for r in rows]


async def low_pushes_since_each(db: Db, user_ids: Collection[UUID], since: datetime) -> dict[UUID, list[datetime]]:
    """`low_pushes_since` of many users in one query (users with none are left out)."""
    rows = await db.fetch(
        """SELECT d.user_id, min(a.at) AS at FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id
           WHERE d.user_id = ANY($1::uuid[]) AND d.urgency = 'low' AND a.channel = 'push' AND a.result = 'sent'
                 AND a.at >= $2
           GROUP BY d.user_id, a.delivery_id ORDER BY 2""",
        list(user_ids), since,
    )
    found: dict[UUID, list[datetime]] = {}
    for r in rows:
        found.setdefault(r["user_id"], []).append(r["at"])
    return found


async def unread(db: Db, user_id: UUID) -> int:
    return await db.fetchval(  # type: ignore[no-any-return]
        "SELECT count(*) FROM deliveries WHERE user_id = $1 AND read_at IS NULL AND acknowledged_at IS NULL",
        user_id,
    )


async def record_attempt(
    conn: asyncpg.Connection, delivery_id: UUID, step: int, attempt: int, channel: str, target: str, outcome: Outcome
) -> None:
    await conn.execute(
        """INSERT INTO delivery_attempts (delivery_id, step, attempt, channel, target, result, provider_id, error)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
        delivery_id, step, attempt, channel, target, outcome.result, outcome.provider_id,
        (outcome.error or "")[:2000] or None,
    )


Attempt: TypeAlias = tuple[UUID, int, int, str, str, Outcome]  # delivery, step, attempt, channel, target, outcome


async def record_attempts(conn: asyncpg.Connection, attempts: Sequence[Attempt]) -> None:
    """`record_attempt` for many, in one statement, in the order given."""
    if not attempts:
        return
    await conn.execute(
        """INSERT INTO delivery_attempts (delivery_id, step, attempt, channel, target, result, provider_id, error)
           SELECT d, s, a, c, t, r, p, e
           FROM unnest($1::uuid[], $2::int[], $3::int[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
                WITH ORDINALITY AS x(d, s, a, c, t, r, p, e, n)
           ORDER BY n""",
        [a[0] for a in attempts], [a[1] for a in attempts], [a[2] for a in attempts], [a[3] for a in attempts],
        [a[4] for a in attempts], [a[5].result for a in attempts], [a[5].provider_id for a in attempts],
        [(a[5].error or "")[:2000] or None for a in attempts],
    )


async def call_intents(
    conn: asyncpg.Connection, steps: Collection[tuple[UUID, int]]
) -> dict[tuple[UUID, int], datetime]:
    """When earlier attempts at these voice steps began, for those that never recorded how they went."""
    rows = await conn.fetch(
        """SELECT c.delivery_id, c.step, c.at FROM call_intents c
           JOIN unnest($1::uuid[], $2::int[]) AS x(d, s) ON (c.delivery_id, c.step) = (x.d, x.s)""",
        [d for d, _ in steps], [s for _, s in steps],
    )
    return {(r["delivery_id"], r["step"]): r["at"] for r in rows}


async def note_call_intents(pool: asyncpg.Pool, steps: Collection[tuple[UUID, int]], at: datetime) -> None:
    """Committed on its own, before the provider is asked (see migration 0006)."""
    await pool.execute(
        """INSERT INTO call_intents (delivery_id, step, at)
           SELECT d, s, $3 FROM unnest($1::uuid[], $2::int[]) AS x(d, s)
           ON CONFLICT (delivery_id, step) DO UPDATE SET at = EXCLUDED.at""",
        [d for d, _ in steps], [s for _, s in steps], at,
    )


async def forget_call_intents(conn: asyncpg.Connection, steps: Collection[tuple[UUID, int]]) -> None:
    if steps:
        await conn.execute(
            """DELETE FROM call_intents c USING unnest($1::uuid[], $2::int[]) AS x(d, s)
               WHERE (c.delivery_id, c.step) = (x.d, x.s)""",
            [d for d, _ in steps], [s for _, s in steps],
        )


async def calls_to(conn: asyncpg.Connection, phone: str, since: datetime) -> set[str]:
    """The provider ids of calls recorded to `phone` since then (somebody's already)."""
    rows = await conn.fetch(
        """SELECT provider_id FROM delivery_attempts
           WHERE channel = 'voice' AND target = $1 AND at >= $2 AND provider_id IS NOT NULL""",
        phone, since,
    )
    return {r["provider_id"] for r in rows}


async def list_deliveries(pool: asyncpg.Pool, user_id: UUID, *, limit: int, offset: int) -> list[Delivery]:
    rows = await pool.fetch(
        f"""SELECT {_DELIVERY_COLUMNS} FROM deliveries
            WHERE user_id = $1 ORDER BY created_at DESC, id LIMIT $2 OFFSET $3""",
        user_id, limit, offset,
    )
    return [_delivery(r) for r in rows]


# --- devices ----------------------------------------------------------------------------------------------------


def _device(row: asyncpg.Record) -> Device:
    return Device(
        row["id"], row["user_id"], row["platform"], row["token"], row["app_version"], row["critical_allowed"],
        row["created_at"], row["updated_at"],
    )


async def upsert_device(conn: asyncpg.Connection, device: Device) -> Device:
    """Register `device`; a token already known (on this platform) moves to this user with its new details
    and keeps its id."""
    row = await conn.fetchrow(
        """INSERT INTO devices (id, user_id, platform, token, app_version, critical_allowed, created_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
           ON CONFLICT (platform, token) DO UPDATE SET user_id = EXCLUDED.user_id,
               app_version = EXCLUDED.app_version, critical_allowed = EXCLUDED.critical_allowed,
               updated_at = EXCLUDED.updated_at
           RETURNING *""",
        device.id, device.user_id, device.platform, device.token, device.app_version, device.critical_allowed,
        device.updated_at,
    )
    return _device(row)


async def get_device(db: Db, device_id: UUID, *, lock: bool = False) -> Device | None:
    row = await db.fetchrow("SELECT * FROM devices WHERE id = $1" + (" FOR UPDATE" if lock else ""), device_id)
    return _device(row) if row is not None else None


async def update_device(conn: asyncpg.Connection, device: Device) -> Device:
    row = await conn.fetchrow(
        """UPDATE devices SET token = $2, app_version = $3, critical_allowed = $4, updated_at = $5 WHERE id = $1
           RETURNING *""",
        device.id, device.token, device.app_version, device.critical_allowed, device.updated_at,
    )
    return _device(row)


async def delete_device(db: Db, device_id: UUID) -> None:
    await db.execute("DELETE FROM devices WHERE id = $1", device_id)


async def delete_devices(db: Db, device_ids: Collection[UUID]) -> None:
    if device_ids:
        await db.execute("DELETE FROM devices WHERE id = ANY($1::uuid[])", list(device_ids))


async def delete_token(conn: asyncpg.Connection, platform: str, token: str, *, keep: UUID) -> None:
    """Forget the device holding `token` on `platform`, unless it is `keep`."""
    await conn.execute("DELETE FROM devices WHERE platform = $1 AND token = $2 AND id <> $3", platform, token, keep)


async def devices_of(db: Db, user_id: UUID) -> list[Device]:
    rows = await db.fetch("SELECT * FROM devices WHERE user_id = $1 ORDER BY created_at, id", user_id)
    return [_device(r) for r in rows]


async def devices_of_each(db: Db, user_ids: Collection[UUID]) -> dict[UUID, list[Device]]:
    """`devices_of` of many users in one query (users without a device are left out)."""
    rows = await db.fetch(
        "SELECT * FROM devices WHERE user_id = ANY($1::uuid[]) ORDER BY created_at, id", list(user_ids)
    )
    found: dict[UUID, list[Device]] = {}
    for r in rows:
        found.setdefault(r["user_id"], []).append(_device(r))
    return found


# --- preferences --------------------------------------------------------------------------------------------------

PREFERENCES_FORMAT = 1


def _dump_steps(steps: tuple[Step, ...]) -> list[dict[str, object]]:
    return [{"channel": s.channel, "after_s": int(s.after.total_seconds())} for s in steps]


def _load_steps(raw: list[dict[str, object]]) -> tuple[Step, ...]:
    return tuple(Step(s["channel"], timedelta(seconds=int(s["after_s"]))) for s in raw)  # type: ignore[arg-type,call-overload]


async def get_preferences(db: Db, user_id: UUID, *, lock: bool = False) -> Preferences | None:
    """The user's stored preferences, or None when they never set any (then the defaults apply). A stored
    definition that cannot be read is logged and treated as absent, so a user is never left unreachable."""
    row = await db.fetchrow(
        "SELECT version, definition FROM preferences WHERE user_id = $1" + (" FOR UPDATE" if lock else ""), user_id
    )
    return None if row is None else _preferences(user_id, row)


async def preferences_of(db: Db, user_ids: Collection[UUID]) -> dict[UUID, Preferences]:
    """`get_preferences` of many users in one query: those with stored, readable preferences."""
    rows = await db.fetch(
        "SELECT user_id, version, definition FROM preferences WHERE user_id = ANY($1::uuid[])", list(user_ids)
    )
    loaded = {r["user_id"]: _preferences(r["user_id"], r) for r in rows}
    return {user_id: prefs for user_id, prefs in loaded.items() if prefs is not None}


def _preferences(user_id: UUID, row: asyncpg.Record) -> Preferences | None:
    try:
        d = row["definition"]
        return Preferences(_load_steps(d["high"]), _load_steps(d["low"]), row["version"])
    except (KeyError, TypeError, ValueError) as exc:
        log.error("stored preferences cannot be read; defaults apply", user_id=str(user_id), error=repr(exc))
        return None


async def save_preferences(conn: asyncpg.Connection, user_id: UUID, prefs: Preferences) -> None:
    definition = {"v": PREFERENCES_FORMAT, "high": _dump_steps(prefs.high), "low": _dump_steps(prefs.low)}
    await conn.execute(
        """INSERT INTO preferences (user_id, version, definition, updated_at) VALUES ($1, $2, $3, now())
           ON CONFLICT (user_id) DO UPDATE SET version = EXCLUDED.version, definition = EXCLUDED.definition,
               updated_at = now()""",
        user_id, prefs.version, definition,
    )
