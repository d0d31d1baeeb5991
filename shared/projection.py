"""Local projections of another service's snapshots.

A snapshot carries the entity's whole state and a version; the projection keeps the newest version it
has seen, so a replay from the start of the topic, a redelivery or an out-of-order older snapshot never
moves it backwards.

`project_once` applies one snapshot in a transaction of its own; `project_batch` applies a consumed batch in
one transaction: one inbox statement for every event, then only the newest snapshot of each entity, in one
statement per table (`upsert_snapshots`). The outcome is the one applying them one by one would leave.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import asyncpg
from pydantic_core import to_json

from shared.db import transaction
from shared.inbox import claim, claim_many
from shared.logs import get_logger
from shared.messages import Message, ScheduleTimeline


class Snapshot(Protocol):
    @property
    def key(self) -> str: ...

    @property
    def version(self) -> int: ...


S = TypeVar("S", bound=Message)
V = TypeVar("V", bound=Snapshot)
log = get_logger(__name__)


async def project_once(
    pool: asyncpg.Pool, consumer: str, snapshot: S, upsert: Callable[[asyncpg.Connection, S], Awaitable[bool]]
) -> bool:
    """Apply `snapshot` with `upsert` unless `consumer` already handled this event; True if it changed."""
    async with transaction(pool) as conn:
        if not await claim(conn, consumer, snapshot.event_id):
            return False
        changed = await upsert(conn, snapshot)
    log.info("snapshot projected", consumer=consumer, type=snapshot.type, key=snapshot.key, changed=changed)
    return changed


async def project_batch(
    pool: asyncpg.Pool,
    consumer: str,
    snapshots: Sequence[S],
    upsert_many: Callable[[asyncpg.Connection, list[S]], Awaitable[Sequence[Any]]],
) -> int:
    """Apply a batch of snapshots in one transaction: those `consumer` has not handled yet, and of those only
    the newest of each entity (`newest`), with `upsert_many`, which returns the keys it changed; returns how
    many entities changed."""
    async with transaction(pool) as conn:
        fresh = await fresh_events(conn, consumer, snapshots)
        changed = await upsert_many(conn, newest(fresh)) if fresh else []  # type: ignore[type-var]
    log.info(
        "snapshots projected", consumer=consumer, received=len(snapshots), new=len(fresh), changed=len(changed),
        keys=[str(k) for k in changed],
    )
    return len(changed)


async def fresh_events(conn: asyncpg.Connection, consumer: str, messages: Sequence[S]) -> list[S]:
    """The messages of a batch `consumer` has not handled yet, each once, in their order; claims them in the
    inbox (inside the caller's transaction, which applies their effects)."""
    claimed = await claim_many(conn, consumer, [m.event_id for m in messages])
    return [m for m, new in zip(messages, claimed, strict=True) if new]


def newest(snapshots: Iterable[V]) -> list[V]:
    """The newest snapshot of each entity (the first of equal versions, as applying them in order keeps it),
    in the order of the entities' first appearance."""
    kept: dict[str, V] = {}
    for snapshot in snapshots:
        held = kept.get(snapshot.key)
        if held is None or snapshot.version > held.version:
            kept[snapshot.key] = snapshot
    return list(kept.values())


async def upsert_snapshot(
    conn: asyncpg.Connection, table: str, key_column: str, version: int, row: Mapping[str, Any]
) -> bool:
    """Insert or replace `row` in `table` unless a newer or equal version is stored; True if it changed."""
    columns = [key_column, "version", *(c for c in row if c not in (key_column, "version"))]
    values = {**row, "version": version}
    placeholders = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c != key_column)
    changed = await conn.fetchval(
        f"""INSERT INTO {table} ({", ".join(columns)}) VALUES ({placeholders})
            ON CONFLICT ({key_column}) DO UPDATE SET {updates} WHERE {table}.version < EXCLUDED.version
            RETURNING true""",
        *(values[c] for c in columns),
    )
    return bool(changed)


async def upsert_snapshots(
    conn: asyncpg.Connection, table: str, key_column: str, rows: Sequence[tuple[int, Mapping[str, Any]]]
) -> list[Hashable]:
    """`upsert_snapshot` for many rows (version, row) of distinct keys, all with the same columns, in one
    statement; returns the keys whose row changed.

    The rows travel as one JSON document read back with the table's own row type (`jsonb_populate_recordset`),
    so every column type works, arrays included (which `unnest` would flatten). Rows are written in key order:
    concurrent batches lock them in the same order and cannot deadlock.
    """
    if not rows:
        return []
    first = rows[0][1]
    columns = [key_column, "version", *(c for c in first if c not in (key_column, "version"))]
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c != key_column)
    listed = ", ".join(columns)
    document = to_json([{**row, "version": version} for version, row in rows]).decode()
    changed = await conn.fetch(
        f"""INSERT INTO {table} ({listed})
            SELECT {listed} FROM jsonb_populate_recordset(NULL::{table}, $1::text::jsonb) ORDER BY {key_column}
            ON CONFLICT ({key_column}) DO UPDATE SET {updates} WHERE {table}.version < EXCLUDED.version
            RETURNING {key_column}""",
        document,
    )
    return [r[key_column] for r in changed]


# ------------------------------------------------------------------------------------- published timelines
# A service that keeps schedule's published timelines in PostgreSQL has the tables `timelines` (one row per
# schedule: version, name, zone, horizon) and `timeline_shifts` (schedule_id, starts_at, ends_at, user_id,
# source; gaps left out) in its schema, created by its own migration (coverage's and callrouter's 0001/0002).


def _timeline_row(timeline: ScheduleTimeline) -> dict[str, object]:
    return {
        "schedule_id": timeline.schedule_id,
        "name": timeline.name,
        "time_zone": timeline.time_zone,
        "horizon_start": timeline.horizon_start,
        "horizon_end": timeline.horizon_end,
    }




async def replace_timelines(conn: asyncpg.Connection, timelines: Sequence[ScheduleTimeline]) -> list[ScheduleTimeline]:
    """Keep each of these timelines (distinct schedules) unless the same or a newer version is held, one statement
    per table; those that replaced the held one, in the order given."""
    changed = set(
        await upsert_snapshots(conn, "timelines", "schedule_id", [(t.version, _timeline_row(t)) for t in timelines])
    )
    replaced = [t for t in timelines if t.schedule_id in changed]
    if replaced:
        await conn.execute(
            "DELETE FROM timeline_shifts WHERE schedule_id = ANY($1::uuid[])", [t.schedule_id for t in replaced]
        )
        await conn.copy_records_to_table(
            "timeline_shifts",
            records=[
                (t.schedule_id, s.start, s.end, s.user_id, s.source)
                for t in replaced
                for s in t.segments
                if s.user_id is not None
            ],
            columns=["schedule_id", "starts_at", "ends_at", "user_id", "source"],
        )
    return replaced
