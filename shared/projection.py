"""Local projections of another service's snapshots.

A snapshot carries the entity's whole state and a version; the projection keeps the newest version it
has seen, so a replay from the start of the topic, a redelivery or an out-of-order older snapshot never
moves it backwards.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import asyncpg

from shared.db import transaction
from shared.inbox import claim
from shared.logs import get_logger
from shared.messages import Message

S = TypeVar("S", bound=Message)
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
