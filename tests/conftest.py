"""Test infrastructure: a real Kafka-protocol broker and a real PostgreSQL, started here unless given.

`KAFKA_BOOTSTRAP` and `DATABASE_URL` point the suite at external ones; otherwise Tansu and a throwaway
PostgreSQL cluster start on free ports for the session and stop afterwards. Nothing is ever skipped for
want of them: if they cannot start, the suite fails.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest

from shared.auth import issue_dev_token
from shared.settings import ServiceSettings
from tools import infra as local
from tools.procs import ServiceProcess, apply_migrations, start_service

# Short sessions make Tansu's group joins (about half the session timeout) quick.
SESSION_TIMEOUT_MS = "6000"
JWT_SECRET = ServiceSettings().jwt_secret.get_secret_value()


@dataclass
class Infra:
    database_url: str
    kafka_bootstrap: str
    run_dir: Path

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "DATABASE_URL": self.database_url,
            "KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "KAFKA_SESSION_TIMEOUT_MS": SESSION_TIMEOUT_MS,
            "JWT_SECRET": JWT_SECRET,
            **extra,
        }


@pytest.fixture(scope="session")
def run_dir() -> Iterator[Path]:
    # Not under /root or pytest's tmp: the postgres account must be able to enter it when we run as root.
    with tempfile.TemporaryDirectory(prefix="oncall-test-", dir="/tmp") as path:
        os.chmod(path, 0o755)
        yield Path(path)


@pytest.fixture(scope="session")
def infra(run_dir: Path) -> Iterator[Infra]:
    started: list[local.Postgres | local.Broker] = []
    database_url = os.environ.get("DATABASE_URL")
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP")
    try:
        if not database_url:
            pg = local.start_postgres(run_dir / "pg", fast=True)
            started.append(pg)
            database_url = pg.url
        if not bootstrap:
            broker = local.start_tansu(run_dir / "tansu")
            started.append(broker)
            bootstrap = broker.bootstrap
        apply_migrations(database_url)
        yield Infra(database_url, bootstrap, run_dir)
    finally:
        for component in reversed(started):
            component.stop()


@pytest.fixture(scope="session")
async def db(infra: Infra) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(infra.database_url, min_size=1, max_size=5)
    assert pool is not None
    yield pool
    await pool.close()


@dataclass
class Processes:
    """Service processes started by a test; all are stopped when it ends."""

    infra: Infra
    started: list[ServiceProcess] = field(default_factory=list)

    def start(self, name: str, *, wait: bool = True, infra: Infra | None = None, **env: str) -> ServiceProcess:
        target = infra or self.infra
        log = target.run_dir / "logs" / f"{name}-{uuid.uuid4().hex[:8]}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        proc = start_service(name, env=target.env(**env), port=local.free_port(), log_path=log)
        self.started.append(proc)
        if wait:
            proc.wait_ready(timeout=90)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            if proc.alive:
                proc.terminate(timeout=30)


@pytest.fixture
def processes(infra: Infra) -> Iterator[Processes]:
    procs = Processes(infra)
    yield procs
    procs.stop_all()


@dataclass
class Stack:
    """The four services running as OS processes against the session's broker and database."""

    services: dict[str, ServiceProcess]

    def url(self, service: str, path: str) -> str:
        return self.services[service].base_url + path


@pytest.fixture(scope="session")
def stack(infra: Infra) -> Iterator[Stack]:
    procs = Processes(infra)
    try:
        services = {name: procs.start(name, wait=False) for name in ("schedule", "coverage", "callrouter", "notifier")}
        for proc in services.values():
            proc.wait_ready(timeout=90)
        yield Stack(services)
    finally:
        procs.stop_all()


def token(user_id: str | uuid.UUID, role: str = "admin") -> dict[str, str]:
    return {"Authorization": "Bearer " + issue_dev_token(JWT_SECRET, str(user_id), role)}  # type: ignore[arg-type]


@dataclass
class IsolatedInfra(Infra):
    broker: local.Broker | None = None


async def _create_database(admin_url: str, name: str) -> str:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return admin_url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
async def isolated_infra(infra: Infra, request: pytest.FixtureRequest) -> AsyncIterator[IsolatedInfra]:
    """A database and a broker of this test's own (Tansu, or noida-db with `@pytest.mark.broker("noida")`)."""
    marker = request.node.get_closest_marker("broker")
    kind = marker.args[0] if marker else "tansu"
    name = f"t_{uuid.uuid4().hex[:10]}"
    database_url = await _create_database(infra.database_url, name)
    apply_migrations(database_url)
    broker_dir = infra.run_dir / name
    broker = local.start_broker(kind, broker_dir)
    try:
        yield IsolatedInfra(database_url, broker.bootstrap, broker_dir, broker)
    finally:
        broker.stop()
