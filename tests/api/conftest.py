"""The in-process API tier: aiohttp's test client over the real schedule app and a real PostgreSQL.

No broker: the outbox simply accumulates rows. Every request is served in-process, so one takes
milliseconds and property tests can afford hundreds of them.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

import services.coverage.api
import services.notifier.api
import services.schedule.api
import shared.auth
import shared.db
import shared.http
import shared.runtime
from services.coverage.settings import Settings as CoverageSettings
from services.notifier.settings import Settings as NotifierSettings
from services.schedule.settings import Settings
from shared.settings import ServiceSettings
from tests.conftest import Infra, _create_database, token
from tools.procs import apply_migrations

ADMIN = token(uuid.uuid4(), "admin")
Client = TestClient[web.Request, web.Application]


def service_app(api: shared.http.Api, settings: ServiceSettings, pool: asyncpg.Pool) -> web.Application:
    """A service's web app over `pool`, wired as its process wires it: the one place that knows how, so a
    change of wiring is adapted here only."""
    app = shared.http.build_app(api, shared.auth.TokenVerifier(settings))
    app[shared.runtime.POOL] = pool
    return app


def schedule_app(pool: asyncpg.Pool, database_url: str) -> web.Application:
    return service_app(services.schedule.api.api, Settings(database_url=database_url), pool)


def coverage_app(pool: asyncpg.Pool, database_url: str) -> web.Application:
    return service_app(services.coverage.api.api, CoverageSettings(database_url=database_url), pool)


def notifier_app(pool: asyncpg.Pool, database_url: str) -> web.Application:
    return service_app(services.notifier.api.api, NotifierSettings(database_url=database_url), pool)


@pytest.fixture(scope="session")
async def api_database(infra: Infra) -> str:
    """A database of this tier's own: the apps here read what they staged in their outboxes, which the
    service processes of the end-to-end tests (on the session's database) would publish and delete."""
    url = await _create_database(infra.database_url, f"api_{uuid.uuid4().hex[:10]}")
    apply_migrations(url)
    return url


@pytest.fixture(scope="session")
async def notifier_pool(api_database: str) -> AsyncIterator[asyncpg.Pool]:
    created = await shared.db.create_pool(api_database, "notifier")
    yield created
    await created.close()


@pytest.fixture(scope="session")
async def notifier_client(notifier_pool: asyncpg.Pool, api_database: str) -> AsyncIterator[Client]:
    async with TestClient(TestServer(notifier_app(notifier_pool, api_database))) as test_client:
        yield test_client


@pytest.fixture(scope="session")
async def coverage_pool(api_database: str) -> AsyncIterator[asyncpg.Pool]:
    created = await shared.db.create_pool(api_database, "coverage")
    yield created
    await created.close()


@pytest.fixture(scope="session")
async def coverage_client(coverage_pool: asyncpg.Pool, api_database: str) -> AsyncIterator[Client]:
    async with TestClient(TestServer(coverage_app(coverage_pool, api_database))) as test_client:
        yield test_client


@pytest.fixture(scope="session")
async def pool(api_database: str) -> AsyncIterator[asyncpg.Pool]:
    created = await shared.db.create_pool(api_database, "schedule")
    yield created
    await created.close()


@pytest.fixture(scope="session")
async def client(pool: asyncpg.Pool, api_database: str) -> AsyncIterator[Client]:
    async with TestClient(TestServer(schedule_app(pool, api_database))) as test_client:
        yield test_client


async def call(client: Client, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    """(status, body) of one request; JSON bodies are decoded, anything else is returned as text."""
    kw.setdefault("headers", ADMIN)
    async with client.request(method, path, **kw) as resp:
        raw = await resp.read()
        if "json" in (resp.content_type or ""):
            return resp.status, await resp.json(content_type=None)
        return resp.status, raw.decode("utf-8", "replace")


def fields_of(body: Any) -> list[str]:
    if not isinstance(body, dict):
        return []
    return [str(e.get("field")) for e in body.get("errors") or [] if isinstance(e, dict)]


def names(body: Any, *wanted: str) -> bool:
    """Whether the problem's `errors[*].field` names one of `wanted` (itself, or a part or parent of it)."""
    for got in fields_of(body):
        for want in wanted:
            if got == want or got.startswith(want + ".") or got.endswith("." + want):
                return True
    return False


def assert_422(status: int, body: Any, *wanted: str) -> None:
    assert status == 422, (status, body)
    assert names(body, *wanted), f"no error names {wanted}: {body}"


async def new_users(client: Client, n: int, role: str = "responder") -> list[str]:
    ids = []
    for i in range(n):
        body = {"name": f"U{i}", "email": f"{uuid.uuid4().hex}@example.com", "time_zone": "Europe/Berlin", "role": role}
        status, user = await call(client, "POST", "/v1/users", json=body)
        assert status == 201, user
        ids.append(user["id"])
    return ids


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def daily(users: Iterable[str], **layer: Any) -> dict[str, Any]:
    spec = {"users": list(users), "length": 1, "unit": "days", "handoff": "2026-03-02T09:00:00"} | layer
    return {"name": unique_name("S"), "time_zone": "Europe/Berlin", "layers": [spec]}


async def new_schedule(client: Client, body: dict[str, Any]) -> dict[str, Any]:
    status, schedule = await call(client, "POST", "/v1/schedules", json=body)
    assert status == 201, schedule
    return schedule  # type: ignore[no-any-return]


async def all_pages(client: Client, path: str) -> list[Any]:
    """Every item of a list endpoint, asserting that each page answers 200."""
    items: list[Any] = []
    offset = 0
    while True:
        status, page = await call(client, "GET", path, params={"limit": "500", "offset": str(offset)})
        assert status == 200, (path, offset, status, page)
        items += page
        if len(page) < 500:
            return items
        offset += 500


@pytest.fixture
async def forget(pool: asyncpg.Pool) -> AsyncIterator[list[str]]:
    """Names of schedules and support hours this test may leave behind broken; they are deleted afterwards,
    so a row the current code stores but cannot read back does not break the lists of other tests."""
    doomed: list[str] = []
    yield doomed
    async with pool.acquire() as conn:
        await conn.execute("DELETE FROM schedules WHERE name = ANY($1::text[])", doomed)
        await conn.execute("DELETE FROM support_hours WHERE name = ANY($1::text[])", doomed)
