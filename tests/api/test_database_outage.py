"""Defect 13: while PostgreSQL is unreachable the API answers 503 with Retry-After, not 500.

The app under test gets a pool aimed at a local port where nothing listens; with `min_size=0` the pool opens
no connection until a request needs one, so every request meets a database that truly is not there.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

import shared.db
from tests.api.conftest import ADMIN, Client, call, schedule_app
from tools.infra import free_port

pytestmark = pytest.mark.api


@pytest.fixture
async def offline() -> AsyncIterator[Client]:
    url = f"postgresql://oncall@127.0.0.1:{free_port()}/oncall"
    pool = await shared.db.create_pool(url, "schedule", min_size=0, max_size=2)
    try:
        async with TestClient(TestServer(schedule_app(pool, url))) as client:
            yield client
    finally:
        pool.terminate()


async def test_listing_users_without_a_database_is_503(offline: Client) -> None:
    async with offline.get("/v1/users", headers=ADMIN) as resp:
        body = await resp.text()
        assert resp.status == 503, body
        assert resp.headers.get("Retry-After", "").strip(), dict(resp.headers)


async def test_creating_a_user_without_a_database_is_503(offline: Client) -> None:
    user = {"name": "Offline", "email": f"{uuid.uuid4().hex}@example.com", "time_zone": "Europe/Berlin"}
    async with offline.post("/v1/users", json=user, headers=ADMIN) as resp:
        body = await resp.text()
        assert resp.status == 503, body
        assert resp.headers.get("Retry-After", "").strip(), dict(resp.headers)


async def test_the_service_stays_live_without_a_database(offline: Client) -> None:
    status, _ = await call(offline, "GET", "/healthz")
    assert status == 200
