"""Defect 3: instants at the calendar's edges are refused with 422 naming the field, never 500.

The service documents the range of instants it accepts (roughly 1970..2200); these tests do not hard-code it:
they use the extreme years 1 and 9999, and an ordinary instant in 2026 as the control that must succeed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.api.conftest import Client, assert_422, call, daily, new_schedule, new_users, unique_name

pytestmark = pytest.mark.api

EDGE_INSTANTS = ["0001-01-01T00:00:00Z", "9999-12-15T00:00:00Z"]
EDGE_SPANS = [
    ("0001-01-01T00:00:00Z", "0001-01-31T00:00:00Z"),
    ("9999-12-01T00:00:00Z", "9999-12-31T00:00:00Z"),
]
SANE_INSTANT = "2026-03-04T12:00:00Z"
SANE_SPAN = ("2026-03-01T00:00:00Z", "2026-03-31T00:00:00Z")


@dataclass
class World:
    user: str
    schedule: str
    policy: str
    hours: str


@pytest.fixture(scope="module")
async def world(client: Client) -> World:
    (user,) = await new_users(client, 1)
    schedule = await new_schedule(client, daily([user]))
    status, policy = await call(
        client,
        "POST",
        "/v1/policies",
        json={"name": unique_name("P"), "rules": [{"timeout_minutes": 5, "schedule_ids": [schedule["id"]]}]},
    )
    assert status == 201, policy
    office = [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:00"}]
    status, hours = await call(
        client,
        "POST",
        "/v1/support-hours",
        json={"name": unique_name("H"), "time_zone": "Europe/Berlin", "windows": office},
    )
    assert status == 201, hours
    return World(user, schedule["id"], policy["id"], hours["id"])


AT_ROUTES = ["/v1/schedules/{schedule}/oncall", "/v1/policies/{policy}/oncall", "/v1/support-hours/{hours}/inside"]
SPAN_ROUTES = [
    "/v1/schedules/{schedule}/shifts",
    "/v1/schedules/{schedule}/gaps",
    "/v1/schedules/{schedule}/overrides",
    "/v1/users/{user}/shifts",
]


def fill(route: str, world: World) -> str:
    return route.format(schedule=world.schedule, policy=world.policy, hours=world.hours, user=world.user)


@pytest.mark.parametrize("route", AT_ROUTES)
async def test_an_ordinary_at_is_answered(client: Client, world: World, route: str) -> None:
    status, body = await call(client, "GET", fill(route, world), params={"at": SANE_INSTANT})
    assert status == 200, body


@pytest.mark.parametrize("at", EDGE_INSTANTS)
@pytest.mark.parametrize("route", AT_ROUTES)
async def test_an_at_out_of_range_is_422(client: Client, world: World, route: str, at: str) -> None:
    status, body = await call(client, "GET", fill(route, world), params={"at": at})
    assert_422(status, body, "at")


@pytest.mark.parametrize("route", SPAN_ROUTES)
async def test_an_ordinary_span_is_answered(client: Client, world: World, route: str) -> None:
    start, end = SANE_SPAN
    status, body = await call(client, "GET", fill(route, world), params={"from": start, "to": end})
    assert status == 200, body


@pytest.mark.parametrize("span", EDGE_SPANS, ids=["year-1", "year-9999"])
@pytest.mark.parametrize("route", SPAN_ROUTES)
async def test_a_span_out_of_range_is_422(client: Client, world: World, route: str, span: tuple[str, str]) -> None:
    start, end = span
    status, body = await call(client, "GET", fill(route, world), params={"from": start, "to": end})
    assert_422(status, body, "from", "to")


async def test_an_ordinary_override_is_accepted(client: Client, world: World) -> None:
    window = {"start": "2026-03-04T10:00:00Z", "end": "2026-03-04T12:00:00Z"}
    status, body = await call(
        client, "POST", f"/v1/schedules/{world.schedule}/overrides", json={"user_id": world.user} | window
    )
    assert status == 201, body


@pytest.mark.parametrize("span", EDGE_SPANS, ids=["year-1", "year-9999"])
async def test_an_override_out_of_range_is_422(client: Client, world: World, span: tuple[str, str]) -> None:
    start, end = span
    status, body = await call(
        client,
        "POST",
        f"/v1/schedules/{world.schedule}/overrides",
        json={"user_id": world.user, "start": start, "end": end},
    )
    assert_422(status, body, "start", "end")


def static(user: str, start: str, end: str) -> dict[str, Any]:
    return {
        "name": unique_name("static"),
        "time_zone": "UTC",
        "kind": "static",
        "shifts": [{"user_id": user, "start": start, "end": end}],
    }


EDGE_DEFINITIONS = [
    pytest.param({"handoff": "9999-12-15T09:00:00"}, "layers.0.handoff", id="handoff-9999"),
    pytest.param({"handoff": "0001-01-01T09:00:00"}, "layers.0.handoff", id="handoff-1"),
    pytest.param({"start": "9999-12-15T00:00:00Z"}, "layers.0.start", id="layer-start-9999"),
    pytest.param({"end": "9999-12-15T00:00:00Z"}, "layers.0.end", id="layer-end-9999"),
    pytest.param({"start": "0001-01-01T00:00:00Z"}, "layers.0.start", id="layer-start-1"),
]


@pytest.mark.parametrize(("layer", "field"), EDGE_DEFINITIONS)
async def test_a_layer_out_of_range_is_422(client: Client, world: World, layer: dict[str, Any], field: str) -> None:
    status, body = await call(client, "POST", "/v1/schedules", json=daily([world.user], **layer))
    assert_422(status, body, field)


async def test_an_ordinary_layer_with_start_and_end_is_accepted(client: Client, world: World) -> None:
    body = daily([world.user], start="2026-03-03T00:00:00Z", end="2026-06-01T00:00:00Z")
    await new_schedule(client, body)


async def test_an_ordinary_static_shift_is_accepted(client: Client, world: World) -> None:
    await new_schedule(client, static(world.user, "2026-03-04T09:00:00Z", "2026-03-05T09:00:00Z"))


@pytest.mark.parametrize("span", EDGE_SPANS, ids=["year-1", "year-9999"])
async def test_a_static_shift_out_of_range_is_422(client: Client, world: World, span: tuple[str, str]) -> None:
    status, body = await call(client, "POST", "/v1/schedules", json=static(world.user, *span))
    assert_422(status, body, "shifts.0")


async def test_replacing_a_schedule_with_a_handoff_out_of_range_is_422(client: Client, world: World) -> None:
    schedule = await new_schedule(client, daily([world.user]))
    body = daily([world.user], handoff="9999-12-15T09:00:00") | {"name": schedule["name"]}
    status, answer = await call(client, "PUT", f"/v1/schedules/{schedule['id']}", json=body)
    assert_422(status, answer, "layers.0.handoff")
    status, answer = await call(client, "GET", f"/v1/schedules/{schedule['id']}")
    assert status == 200, answer
