"""Local projections of another service's snapshots.

A snapshot carries the entity's whole state and a version; the projection keeps the newest version it
has seen, so a replay from the start of the topic, a redelivery or an out-of-order older snapshot never
moves it backwards.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg


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
