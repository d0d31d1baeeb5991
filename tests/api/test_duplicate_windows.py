"""Defect 1: weekly windows listed twice (days adding up to more than 7 for one start/end).

They are either normalised (saved once; the answer shows one window holding each day once) or refused with
422 naming the field. Either way no POST, PUT, GET or list answers 500, and no stored row, however odd, makes
a list fail.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest

from tests.api.conftest import Client, all_pages, call, daily, names, new_schedule, new_users, unique_name

pytestmark = pytest.mark.api

WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
OFFICE = {"days": WEEKDAYS[:5], "start": "09:00", "end": "17:00"}
CASES = [
    pytest.param([OFFICE, OFFICE], set(WEEKDAYS[:5]), id="same-window-twice"),
    pytest.param(
        [{"days": WEEKDAYS, "start": "09:00", "end": "17:00"}, OFFICE | {"days": ["mon", "tue"]}],
        set(WEEKDAYS),
        id="nine-days-one-window",
    ),
]


def assert_one_window(windows: list[dict[str, Any]], days: set[str]) -> None:
    assert len(windows) == 1, windows
    (window,) = windows
    assert (window["start"], window["end"]) == ("09:00", "17:00"), window
    assert sorted(window["days"], key=WEEKDAYS.index) == sorted(days, key=WEEKDAYS.index), window


async def assert_lists_answer(client: Client) -> None:
    await all_pages(client, "/v1/schedules")
    await all_pages(client, "/v1/support-hours")


@pytest.mark.parametrize(("windows", "days"), CASES)
async def test_layer_restrictions_listed_twice(
    client: Client, forget: list[str], windows: list[dict[str, Any]], days: set[str]
) -> None:
    users = await new_users(client, 2)
    body = daily(users, restrictions=windows)
    forget.append(str(body["name"]))
    status, answer = await call(client, "POST", "/v1/schedules", json=body)
    assert status in (201, 422), (status, answer)
    if status == 422:
        assert names(answer, "layers.0.restrictions"), answer
    else:
        assert_one_window(answer["layers"][0]["restrictions"], days)
        status, got = await call(client, "GET", f"/v1/schedules/{answer['id']}")
        assert status == 200, got
        assert_one_window(got["layers"][0]["restrictions"], days)
        span = {"from": "2026-03-02T00:00:00Z", "to": "2026-03-16T00:00:00Z"}
        status, shifts = await call(client, "GET", f"/v1/schedules/{answer['id']}/shifts", params=span)
        assert status == 200, shifts
    await assert_lists_answer(client)


@pytest.mark.parametrize(("windows", "days"), CASES)
async def test_replacing_a_schedule_with_restrictions_listed_twice(
    client: Client, forget: list[str], windows: list[dict[str, Any]], days: set[str]
) -> None:
    users = await new_users(client, 2)
    schedule = await new_schedule(client, daily(users))
    forget.append(schedule["name"])
    body = daily(users, restrictions=windows) | {"name": schedule["name"]}
    status, answer = await call(client, "PUT", f"/v1/schedules/{schedule['id']}", json=body)
    assert status in (200, 422), (status, answer)
    if status == 422:
        assert names(answer, "layers.0.restrictions"), answer
    else:
        assert_one_window(answer["layers"][0]["restrictions"], days)
    status, got = await call(client, "GET", f"/v1/schedules/{schedule['id']}")
    assert status == 200, got
    await assert_lists_answer(client)


@pytest.mark.parametrize(("windows", "days"), CASES)
async def test_support_hours_windows_listed_twice(
    client: Client, forget: list[str], windows: list[dict[str, Any]], days: set[str]
) -> None:
    body = {"name": unique_name("H"), "time_zone": "Europe/Berlin", "windows": windows}
    forget.append(str(body["name"]))
    status, answer = await call(client, "POST", "/v1/support-hours", json=body)
    assert status in (201, 422), (status, answer)
    if status == 422:
        assert names(answer, "windows"), answer
    else:
        assert_one_window(answer["windows"], days)
        status, got = await call(client, "GET", f"/v1/support-hours/{answer['id']}")
        assert status == 200, got
        assert_one_window(got["windows"], days)
        at = {"at": "2026-03-02T10:00:00Z"}
        status, inside = await call(client, "GET", f"/v1/support-hours/{answer['id']}/inside", params=at)
        assert (status, inside["inside"]) == (200, True), inside
    await assert_lists_answer(client)


# --- rows written straight into the database ------------------------------------------------------------------

SOMEONE = str(uuid.uuid4())


def layer(**changes: Any) -> dict[str, Any]:
    return {"users": [SOMEONE], "length": 1, "unit": "days", "handoff": "2026-03-02T09:00:00"} | changes


ODD_SCHEDULES = [
    pytest.param("Europe/Berlin", {"layers": [layer(restrictions=[OFFICE, OFFICE])], "shifts": []}, id="windows-twice"),
    pytest.param("Europe/Berlin", {"layers": [layer(length=0)], "shifts": []}, id="length-zero"),
    pytest.param("Europe/Berlin", {"layers": [layer(users=[])], "shifts": []}, id="no-users"),
    pytest.param("Europe/Berlin", {"layers": [layer(handoff="9999-12-31T23:00:00")], "shifts": []}, id="year-9999"),
    pytest.param("Europe/Berlin", {"layers": [layer(handoff="next tuesday")], "shifts": []}, id="handoff-garbage"),
    pytest.param(
        "Europe/Berlin",
        {"layers": [layer(restrictions=[{"days": ["mon"], "start": "25:00", "end": "09:00"}])], "shifts": []},
        id="clock-25h",
    ),
    pytest.param("Mars/Olympus_Mons", {"layers": [layer()], "shifts": []}, id="unknown-zone"),
    pytest.param("Europe/Berlin", {"layers": [], "shifts": []}, id="recurring-without-layers"),
    pytest.param("Europe/Berlin", {}, id="empty-definition"),
]


@pytest.mark.parametrize(("zone", "definition"), ODD_SCHEDULES)
async def test_no_stored_schedule_makes_the_list_fail(
    client: Client, pool: asyncpg.Pool, forget: list[str], zone: str, definition: dict[str, Any]
) -> None:
    name = unique_name("odd-schedule")
    forget.append(name)
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO schedules (id, name, time_zone, kind, definition) VALUES ($1, $2, $3, 'recurring', $4)",
            uuid.uuid4(),
            name,
            zone,
            definition,
        )
    await assert_lists_answer(client)


ODD_SUPPORT_HOURS = [
    pytest.param("Europe/Berlin", [OFFICE, OFFICE], id="windows-twice"),
    pytest.param("Europe/Berlin", [{"days": ["mon"], "start": "25:00", "end": "09:00"}], id="clock-25h"),
    pytest.param("Europe/Berlin", [{"days": ["someday"], "start": "09:00", "end": "17:00"}], id="unknown-day"),
    pytest.param("Europe/Berlin", [], id="no-windows"),
    pytest.param("Europe/Berlin", {"not": "a list"}, id="not-a-list"),
    pytest.param("Mars/Olympus_Mons", [OFFICE], id="unknown-zone"),
]


@pytest.mark.parametrize(("zone", "windows"), ODD_SUPPORT_HOURS)
async def test_no_stored_support_hours_make_the_list_fail(
    client: Client, pool: asyncpg.Pool, forget: list[str], zone: str, windows: Any
) -> None:
    name = unique_name("odd-hours")
    forget.append(name)
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO support_hours (id, name, time_zone, windows) VALUES ($1, $2, $3, $4)",
            uuid.uuid4(),
            name,
            zone,
            windows,
        )
    await assert_lists_answer(client)
