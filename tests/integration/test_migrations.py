import asyncio
import uuid
from pathlib import Path

import asyncpg
import pytest

from shared.migrations import Migration, MigrationError, migrate, migrations_for
from tests.conftest import Infra


def files(tmp_path: Path, **sql: str) -> list[Migration]:
    for name, text in sql.items():
        (tmp_path / f"{name}.sql").write_text(text)
    return [Migration("t", p.stem, p) for p in sorted(tmp_path.glob("*.sql"))]


async def test_applies_in_order_once_and_refuses_edited_history(infra: Infra, tmp_path: Path) -> None:
    schema = f"m_{uuid.uuid4().hex[:8]}"
    migrations = files(
        tmp_path,
        **{"0001_a": "CREATE TABLE a (id int PRIMARY KEY);", "0002_b": "INSERT INTO a VALUES (1), (2);"},
    )
    assert await migrate(infra.database_url, schema, migrations) == [f"{schema}:t/0001_a", f"{schema}:t/0002_b"]
    assert await migrate(infra.database_url, schema, migrations) == []
    conn = await asyncpg.connect(infra.database_url)
    try:
        assert await conn.fetchval(f"SELECT count(*) FROM {schema}.a") == 2
    finally:
        await conn.close()
    (tmp_path / "0002_b.sql").write_text("INSERT INTO a VALUES (3);")
    with pytest.raises(MigrationError, match="changed"):
        await migrate(infra.database_url, schema, migrations)


async def test_a_failing_file_rolls_back_alone(infra: Infra, tmp_path: Path) -> None:
    schema = f"m_{uuid.uuid4().hex[:8]}"
    migrations = files(
        tmp_path, **{"0001_ok": "CREATE TABLE ok (id int);", "0002_bad": "CREATE TABLE bad (id int); SELECT 1/0;"}
    )
    with pytest.raises(asyncpg.DivisionByZeroError):
        await migrate(infra.database_url, schema, migrations)
    conn = await asyncpg.connect(infra.database_url)
    try:
        tables = {
            r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname=$1", schema)
        }
        assert tables == {"ok", "schema_migrations"}
    finally:
        await conn.close()


async def test_concurrent_runs_apply_each_file_once(infra: Infra, tmp_path: Path) -> None:
    schema = f"m_{uuid.uuid4().hex[:8]}"
    migrations = files(tmp_path, **{"0001_a": "CREATE TABLE a (id int);"})
    results = await asyncio.gather(*(migrate(infra.database_url, schema, migrations) for _ in range(4)))
    assert sorted(len(r) for r in results) == [0, 0, 0, 1]


def test_every_service_schema_gets_the_outbox_and_inbox_first() -> None:
    for service in ("schedule", "coverage", "callrouter", "notifier"):
        assert migrations_for(service)[0].path.name == "0001_outbox_inbox.sql"
