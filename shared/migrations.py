"""Forward-only SQL migrations.

Each service schema gets the shared plumbing (`shared/sql`) and then its own `services/<name>/migrations`.
Files are applied in name order, one transaction per file, under a PostgreSQL advisory lock so that
replicas starting together never race. An applied file whose text changed is an error, never re-run.

Run: `python -m shared.migrations --all` or `--service schedule`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from shared.topics import SERVICES

ROOT = Path(__file__).resolve().parent.parent
LOCK_ID = 0x6F6E63616C6C  # "oncall": one lock for every schema, migrations are short


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    source: str
    version: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def migrations_for(service: str) -> list[Migration]:
    """The ordered migrations of one service schema: shared plumbing first, then the service's own."""
    sources = [("shared", ROOT / "shared" / "sql"), (service, ROOT / "services" / service / "migrations")]
    found = []
    for source, folder in sources:
        for path in sorted(folder.glob("*.sql")) if folder.is_dir() else []:
            found.append(Migration(source, path.stem, path))
    return found


async def migrate(database_url: str, schema: str, migrations: list[Migration] | None = None) -> list[str]:
    """Apply what is missing in `schema` (by default a service's own migrations); returns what was applied."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", LOCK_ID)
        try:
            return await _apply(conn, schema, migrations_for(schema) if migrations is None else migrations)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_ID)
    finally:
        await conn.close()


async def _apply(conn: asyncpg.Connection, schema: str, migrations: list[Migration]) -> list[str]:
    await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    await conn.execute(f'SET search_path TO "{schema}"')
    await conn.execute(
        """CREATE TABLE IF NOT EXISTS schema_migrations (
               source text NOT NULL, version text NOT NULL, checksum text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (source, version))"""
    )
    applied = {
        (r["source"], r["version"]): r["checksum"]
        for r in await conn.fetch("SELECT source, version, checksum FROM schema_migrations")
    }
    done = []
    for m in migrations:
        known = applied.get((m.source, m.version))
        if known is not None:
            if known != m.checksum:
                raise MigrationError(f"{schema}: {m.source}/{m.version} was changed after it was applied")
            continue
        async with conn.transaction():
            await conn.execute(m.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (source, version, checksum) VALUES ($1, $2, $3)",
                m.source, m.version, m.checksum,
            )
        done.append(f"{schema}:{m.source}/{m.version}")
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.migrations", description=__doc__)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--all", action="store_true", help="every service schema")
    target.add_argument("--service", choices=SERVICES)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("DATABASE_URL is not set")
    services = SERVICES if args.all else (args.service,)

    async def run() -> None:
        for service in services:
            for name in await migrate(args.database_url, service):
                print(f"applied {name}")

    try:
        asyncio.run(run())
    except MigrationError as exc:
        print(f"migration failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
