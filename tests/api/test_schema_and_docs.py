"""Defect 8: what the API answers and accepts is what its OpenAPI document and docs say.

- answers validate against the schema served at /openapi.json (formats included: `handoff` is whatever the
  document declares it to be);
- numbers are not instants or dates (`at=0.5`, `holidays: [0]` are 422, not Unix times);
- a JSON body sent as another media type is 415;
- instants are answered in UTC;
- a weekly window whose start equals its end lasts 24 hours.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import jsonschema_rs
import pytest

from tests.api.conftest import ADMIN, Client, assert_422, call, daily, new_schedule, new_users, unique_name

pytestmark = pytest.mark.api

WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


async def response_validator(client: Client, method: str, path: str, status: int) -> Any:
    """A validator (formats checked) for the answer the live OpenAPI document declares for this operation."""
    code, document = await call(client, "GET", "/openapi.json")
    assert code == 200, document
    schema = document["paths"][path][method.lower()]["responses"][str(status)]["content"]["application/json"]
    root = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema["schema"],
        "components": document["components"],
    }
    return jsonschema_rs.validator_for(root, validate_formats=True)


def violations(validator: Any, instance: Any) -> list[str]:
    return [f"{list(e.instance_path)}: {e.message}" for e in validator.iter_errors(instance)]


async def test_schedule_answers_match_the_served_schema(client: Client) -> None:
    users = await new_users(client, 2)
    office = [{"days": WEEKDAYS[:5], "start": "09:00", "end": "17:00"}]
    body = daily(users, restrictions=office, start="2026-03-03T00:00:00Z", end="2027-01-01T00:00:00Z")
    status, created = await call(client, "POST", "/v1/schedules", json=body)
    assert status == 201, created
    assert violations(await response_validator(client, "POST", "/v1/schedules", 201), created) == []

    status, got = await call(client, "GET", f"/v1/schedules/{created['id']}")
    assert status == 200, got
    one = await response_validator(client, "GET", "/v1/schedules/{schedule_id}", 200)
    assert violations(one, got) == [], got["layers"][0]


async def test_schedule_list_matches_the_served_schema(client: Client) -> None:
    users = await new_users(client, 1)
    await new_schedule(client, daily(users))
    status, listed = await call(client, "GET", "/v1/schedules", params={"limit": "500"})
    assert status == 200, listed
    errors = violations(await response_validator(client, "GET", "/v1/schedules", 200), listed)
    assert errors == [], errors[:5]


# --- numbers are not instants ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def targets(client: Client) -> dict[str, str]:
    users = await new_users(client, 1)
    schedule = await new_schedule(client, daily(users))
    status, policy = await call(
        client,
        "POST",
        "/v1/policies",
        json={"name": unique_name("P"), "rules": [{"timeout_minutes": 5, "schedule_ids": [schedule["id"]]}]},
    )
    assert status == 201, policy
    status, hours = await call(client, "POST", "/v1/support-hours", json=support_hours([]))
    assert status == 201, hours
    return {
        "schedule": f"/v1/schedules/{schedule['id']}/oncall",
        "policy": f"/v1/policies/{policy['id']}/oncall",
        "hours": f"/v1/support-hours/{hours['id']}/inside",
    }


def support_hours(holidays: list[Any], **window: Any) -> dict[str, Any]:
    spec = {"days": WEEKDAYS[:5], "start": "09:00", "end": "17:00"} | window
    return {"name": unique_name("H"), "time_zone": "Europe/Berlin", "windows": [spec], "holidays": holidays}


@pytest.mark.parametrize("at", ["0.5", "1772452800", "0"])
@pytest.mark.parametrize("route", ["schedule", "policy", "hours"])
async def test_a_number_is_not_an_at(client: Client, targets: dict[str, str], route: str, at: str) -> None:
    status, body = await call(client, "GET", targets[route], params={"at": at})
    assert_422(status, body, "at")


@pytest.mark.parametrize("holiday", [0, 1772452800, 0.5])
async def test_a_number_is_not_a_holiday(client: Client, holiday: float) -> None:
    status, body = await call(client, "POST", "/v1/support-hours", json=support_hours([holiday]))
    assert_422(status, body, "holidays")


async def test_a_date_is_a_holiday(client: Client) -> None:
    status, body = await call(client, "POST", "/v1/support-hours", json=support_hours(["2026-12-25"]))
    assert (status, body.get("holidays")) == (201, ["2026-12-25"]), body


# --- media types ------------------------------------------------------------------------------------------------


def user_body() -> dict[str, Any]:
    return {"name": "Media", "email": f"{uuid.uuid4().hex}@example.com", "time_zone": "Europe/Berlin"}


@pytest.mark.parametrize("media_type", ["text/plain", "application/x-www-form-urlencoded"])
@pytest.mark.parametrize("route", ["/v1/users", "/v1/schedules", "/v1/support-hours"])
async def test_json_sent_as_another_media_type_is_415(client: Client, route: str, media_type: str) -> None:
    users = await new_users(client, 1)
    bodies = {"/v1/users": user_body(), "/v1/schedules": daily(users), "/v1/support-hours": support_hours([])}
    status, answer = await call(
        client, "POST", route, data=json.dumps(bodies[route]).encode(), headers=ADMIN | {"Content-Type": media_type}
    )
    assert status == 415, (status, answer)


# --- instants are answered in UTC ---------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["schedule", "policy", "hours"])
async def test_at_is_echoed_in_utc(client: Client, targets: dict[str, str], route: str) -> None:
    status, body = await call(client, "GET", targets[route], params={"at": "2026-03-08T09:00:00+05:00"})
    assert status == 200, body
    assert body["at"] in ("2026-03-08T04:00:00Z", "2026-03-08T04:00:00+00:00"), body


# --- a window from a time to the same time is a whole day ------------------------------------------------------


async def test_a_restriction_from_a_time_to_itself_lasts_24_hours(client: Client) -> None:
    users = await new_users(client, 2)
    every_day = [{"days": WEEKDAYS, "start": "09:00", "end": "09:00"}]
    status, schedule = await call(client, "POST", "/v1/schedules", json=daily(users, restrictions=every_day))
    assert status == 201, schedule
    span = {"from": "2026-03-03T00:00:00Z", "to": "2026-03-17T00:00:00Z"}
    status, gaps = await call(client, "GET", f"/v1/schedules/{schedule['id']}/gaps", params=span)
    assert (status, gaps) == (200, []), gaps


async def test_support_hours_from_a_time_to_itself_last_24_hours(client: Client) -> None:
    status, hours = await call(
        client, "POST", "/v1/support-hours", json=support_hours([], days=["mon"], start="09:00", end="09:00")
    )
    assert status == 201, hours
    inside = f"/v1/support-hours/{hours['id']}/inside"
    # Monday 2026-03-02 09:00 Berlin (08:00Z) to Tuesday 09:00 Berlin (08:00Z)
    for at, expected in [
        ("2026-03-02T07:59:00Z", False),
        ("2026-03-02T08:00:00Z", True),
        ("2026-03-03T07:59:00Z", True),
        ("2026-03-03T08:00:00Z", False),
    ]:
        status, body = await call(client, "GET", inside, params={"at": at})
        assert (status, body.get("inside")) == (200, expected), (at, body)
