"""Test infrastructure: a real Kafka-protocol broker and a real PostgreSQL, started here unless given.

`KAFKA_BOOTSTRAP` and `DATABASE_URL` point the suite at external ones. Otherwise, by `TEST_INFRA`:
- `local` (default): Tansu and a throwaway PostgreSQL cluster from the local binaries (tools.infra);
- `containers`: Apache Kafka and PostgreSQL in the images docker-compose.yml runs, via testcontainers.
Either starts on free ports for the session and stops afterwards. Nothing is ever skipped for want of them:
if they cannot start, or TEST_INFRA=containers finds no Docker engine, the run fails.

Tier markers are given here, from the fixtures a test uses, so they cannot drift: `integration` on every
test that uses `infra` (directly or through `db`, `stack`, `processes`, `isolated_infra`...), `e2e` on every
test that starts services as processes, `api` on tests/api. A test under tests/unit that uses `infra` stops
the run at collection.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import cast

import asyncpg
import pytest

from shared.auth import issue_dev_token
from shared.services import SERVICE_NAMES
from shared.settings import ServiceSettings
from tools import infra as local
from tools.procs import ServiceProcess, apply_migrations, start_service

# Short sessions make Tansu's group joins (about half the session timeout) quick.
SESSION_TIMEOUT_MS = "6000"
JWT_SECRET = ServiceSettings().jwt_secret.get_secret_value()
BACKEND = pytest.StashKey[local.InfraBackend]()
# Fixtures that start service processes: a test using one is end-to-end.
PROCESS_FIXTURES = frozenset({"stack", "processes", "platform"})


def pytest_configure(config: pytest.Config) -> None:
    try:
        config.stash[BACKEND] = local.select_test_infra()
    except local.InfraError as exc:
        raise pytest.UsageError(str(exc)) from exc


def in_tier(path: Path, tier: str) -> bool:
    """Whether `path` lies under tests/<tier>/."""
    return any(parent == "tests" and child == tier for parent, child in pairwise(path.parts))


def tier_markers(path: Path, fixturenames: Iterable[str]) -> list[str]:
    """The tier markers a test at `path` using `fixturenames` (their closure) gets."""
    names = set(fixturenames)
    markers = ["integration"] if "infra" in names else []
    if names & PROCESS_FIXTURES:
        markers.append("e2e")
    if in_tier(path, "api"):
        markers.append("api")
    return markers


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    misplaced = []
    for item in items:
        fixturenames = getattr(item, "fixturenames", ())
        for marker in tier_markers(item.path, fixturenames):
            item.add_marker(marker)
        if in_tier(item.path, "unit") and "infra" in fixturenames:
            misplaced.append(item.nodeid)
    if misplaced:
        raise pytest.UsageError(
            "tests/unit is pure and fast, but these use the broker/database fixture `infra` (directly or through "
            "another fixture); move them to tests/api, tests/integration or tests/e2e:\n  " + "\n  ".join(misplaced)
        )


@dataclass
class Infra:
    database_url: str
    kafka_bootstrap: str
    run_dir: Path
    backend: local.InfraBackend = "local"

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


@contextlib.contextmanager
def session_infra(run_dir: Path, backend: local.InfraBackend) -> Iterator[Infra]:
    """Broker and database for a test session: the environment's if given, else started on `backend`."""
    stops: list[Callable[[], None]] = []
    database_url = os.environ.get("DATABASE_URL")
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP")
    try:
        if not database_url:
            if backend == "containers":
                pg_container = local.start_postgres_container()
                stops.append(pg_container.stop)
                database_url = pg_container.url
            else:
                pg = local.start_postgres(run_dir / "pg", fast=True)
                stops.append(pg.stop)
                database_url = pg.url
        if not bootstrap:
            if backend == "containers":
                kafka = local.start_kafka_container()
                stops.append(kafka.remove)
                bootstrap = kafka.bootstrap
            else:
                broker = local.start_tansu(run_dir / "tansu")
                stops.append(broker.stop)
                bootstrap = broker.bootstrap
        apply_migrations(database_url)
        yield Infra(database_url, bootstrap, run_dir, backend)
    finally:
        for stop in reversed(stops):
            stop()


@pytest.fixture(scope="session")
def infra(run_dir: Path, request: pytest.FixtureRequest) -> Iterator[Infra]:
    with session_infra(run_dir, request.config.stash[BACKEND]) as started:
        yield started


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
        services = {name: procs.start(name, wait=False) for name in SERVICE_NAMES}
        for proc in services.values():
            proc.wait_ready(timeout=90)
        yield Stack(services)
    finally:
        procs.stop_all()


def token(user_id: str | uuid.UUID, role: str = "admin") -> dict[str, str]:
    return {"Authorization": "Bearer " + issue_dev_token(JWT_SECRET, str(user_id), role)}  # type: ignore[arg-type]


@dataclass
class IsolatedInfra(Infra):
    broker: local.Broker | local.KafkaInContainer | None = None


async def _create_database(admin_url: str, name: str) -> str:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return admin_url.rsplit("/", 1)[0] + "/" + name


@contextlib.asynccontextmanager
async def own_infra(infra: Infra, kind: local.BrokerKind = "tansu") -> AsyncIterator[IsolatedInfra]:
    """A database (migrated) and a broker nobody else uses: Tansu, or noida whose data survives
    `broker.stop()` + `broker.start()`. Under TEST_INFRA=containers the broker is an Apache Kafka container:
    Kafka keeps its log across a container stop/start, which is all that noida is asked for here."""
    if kind not in local.BROKER_KINDS:
        raise ValueError(f"broker {kind!r}: one of {', '.join(local.BROKER_KINDS)}")
    name = f"t_{uuid.uuid4().hex[:10]}"
    database_url = await _create_database(infra.database_url, name)
    apply_migrations(database_url)
    broker_dir = infra.run_dir / name
    broker: local.Broker | local.KafkaInContainer
    if infra.backend == "containers":
        broker = local.start_kafka_container()
        dispose = broker.remove
    else:
        broker = local.start_broker(kind, broker_dir)
        dispose = broker.stop
    try:
        yield IsolatedInfra(database_url, broker.bootstrap, broker_dir, infra.backend, broker)
    finally:
        dispose()


@pytest.fixture
async def isolated_infra(infra: Infra, request: pytest.FixtureRequest) -> AsyncIterator[IsolatedInfra]:
    """A database and a broker of this test's own (`own_infra`); `@pytest.mark.broker("noida")` picks noida."""
    marker = request.node.get_closest_marker("broker")
    async with own_infra(infra, cast(local.BrokerKind, marker.args[0] if marker else "tansu")) as own:
        yield own
