"""Defect 5: a deeply nested JSON body is bad input (400 or 422), never 500, and the service keeps serving."""

from __future__ import annotations

import pytest

from tests.api.conftest import ADMIN, Client, call

pytestmark = pytest.mark.api

DEPTH = 100_000
BODIES = [
    pytest.param("[" * DEPTH, id="arrays"),
    pytest.param('{"a":' * DEPTH, id="objects"),
    pytest.param("[" * DEPTH + "]" * DEPTH, id="arrays-closed"),
]
ROUTES = ["/v1/users", "/v1/schedules", "/v1/policies"]


@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize("route", ROUTES)
async def test_deep_nesting_is_refused(client: Client, route: str, body: str) -> None:
    status, answer = await call(
        client, "POST", route, data=body.encode(), headers={"Content-Type": "application/json"} | ADMIN
    )
    assert status in (400, 422), (status, answer)
    assert isinstance(answer, dict) and answer.get("status") == status, answer
    status, health = await call(client, "GET", "/healthz")
    assert status == 200, health
