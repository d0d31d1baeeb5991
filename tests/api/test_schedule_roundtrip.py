"""Round trips: what the API answers it also accepts, unchanged.

For generated valid schedules (recurring and static), escalation policies and support hours: the POST answer
equals the GET answer, and PUTting that answer back (without the server-assigned `id` and `version`) answers
the same document with `version` one higher, which a GET then shows again.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.conftest import Client, call, daily, new_schedule, new_users

pytestmark = pytest.mark.api

WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]
YEAR = datetime(2026, 1, 1)
PROPERTY = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


@pytest.fixture(scope="module")
async def people(client: Client) -> list[str]:
    return await new_users(client, 6)


@pytest.fixture(scope="module")
async def schedule_ids(client: Client, people: list[str]) -> list[str]:
    return [(await new_schedule(client, daily(people[i : i + 2])))["id"] for i in (0, 2, 4)]


def clock(minutes: int) -> str:
    return "24:00" if minutes == 1440 else f"{minutes // 60:02d}:{minutes % 60:02d}"


@st.composite
def windows(draw: st.DrawFn, min_size: int = 0) -> list[dict[str, Any]]:
    """Weekly windows, none 24 h long; two of the same start and length never share a day (defect 1 is tested
    on its own), but they may split their days between them, which the answer may merge."""
    used: dict[tuple[int, int], set[str]] = {}
    out = []
    for _ in range(draw(st.integers(min_size, 4))):
        start = draw(st.integers(0, 95)) * 15
        end = draw(st.integers(0, 96).map(lambda q: q * 15).filter(lambda e: e % 1440 != start))  # noqa: B023
        taken = used.setdefault((start, (end - start) % 1440), set())
        days = [
            d for d in draw(st.lists(st.sampled_from(WEEKDAYS), min_size=1, max_size=7, unique=True)) if d not in taken
        ]
        if days:
            taken.update(days)
            out.append({"days": days, "start": clock(start), "end": clock(end)})
    if len(out) < min_size:
        out.append({"days": ["mon"], "start": "09:00", "end": "17:00"})
    return out


def instants(lo: datetime = YEAR, hi: datetime = datetime(2026, 12, 31)) -> st.SearchStrategy[datetime]:
    return st.datetimes(min_value=lo, max_value=hi).map(lambda d: d.replace(second=0, microsecond=0))


def utc(d: datetime) -> str:
    return d.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")


@st.composite
def layers(draw: st.DrawFn, people: list[str]) -> dict[str, Any]:
    layer: dict[str, Any] = {
        "users": draw(st.lists(st.sampled_from(people), min_size=1, max_size=4, unique=True)),
        "length": draw(st.integers(1, 14)),
        "unit": draw(st.sampled_from(["hours", "days", "weeks"])),
        "handoff": draw(instants()).isoformat(),
    }
    if draw(st.booleans()):
        layer["name"] = draw(st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=40))
    if draw(st.booleans()):
        layer["restrictions"] = draw(windows(min_size=1))
    if draw(st.booleans()):
        start = draw(instants())
        layer["start"] = utc(start)
        if draw(st.booleans()):
            layer["end"] = utc(start + timedelta(hours=draw(st.integers(1, 24 * 200))))
    elif draw(st.booleans()):
        layer["end"] = utc(draw(instants()))
    return layer


@st.composite
def recurring(draw: st.DrawFn, people: list[str]) -> dict[str, Any]:
    return {
        "time_zone": draw(st.sampled_from(ZONES)),
        "layers": draw(st.lists(layers(people), min_size=1, max_size=3)),
    }


@st.composite
def static(draw: st.DrawFn, people: list[str]) -> dict[str, Any]:
    cursor = draw(instants(hi=datetime(2026, 6, 1)))
    shifts = []
    for _ in range(draw(st.integers(1, 6))):
        cursor += timedelta(minutes=15 * draw(st.integers(0, 96)))
        end = cursor + timedelta(minutes=15 * draw(st.integers(1, 4 * 24 * 7)))
        shifts.append({"user_id": draw(st.sampled_from(people)), "start": utc(cursor), "end": utc(end)})
        cursor = end
    return {"time_zone": draw(st.sampled_from(ZONES)), "kind": "static", "shifts": draw(st.permutations(shifts))}


async def round_trip(client: Client, collection: str, body: dict[str, Any]) -> None:
    status, created = await call(client, "POST", collection, json=body)
    assert status == 201, (body, created)
    path = f"{collection}/{created['id']}"
    status, got = await call(client, "GET", path)
    assert status == 200, got
    assert got == created

    again = {k: v for k, v in got.items() if k not in ("id", "version")}
    status, replaced = await call(client, "PUT", path, json=again)
    assert status == 200, (again, replaced)
    assert replaced == got | {"version": got["version"] + 1}
    status, after = await call(client, "GET", path)
    assert (status, after) == (200, replaced)


def named(body: dict[str, Any]) -> dict[str, Any]:
    return {"name": f"RT-{uuid.uuid4().hex[:12]}"} | body


@PROPERTY
@given(data=st.data())
async def test_recurring_schedules_round_trip(client: Client, people: list[str], data: st.DataObject) -> None:
    await round_trip(client, "/v1/schedules", named(data.draw(recurring(people))))


@PROPERTY
@given(data=st.data())
async def test_static_schedules_round_trip(client: Client, people: list[str], data: st.DataObject) -> None:
    await round_trip(client, "/v1/schedules", named(data.draw(static(people))))


@st.composite
def policies(draw: st.DrawFn, people: list[str], schedule_ids: list[str]) -> dict[str, Any]:
    rules = []
    for _ in range(draw(st.integers(1, 4))):
        rules.append(
            {
                "timeout_minutes": draw(st.integers(1, 1440)),
                "user_ids": draw(st.lists(st.sampled_from(people), min_size=1, max_size=3, unique=True)),
                "schedule_ids": draw(st.lists(st.sampled_from(schedule_ids), max_size=2, unique=True)),
            }
        )
    return {"repeat": draw(st.integers(0, 10)), "rules": rules}


@PROPERTY
@given(data=st.data())
async def test_policies_round_trip(
    client: Client, people: list[str], schedule_ids: list[str], data: st.DataObject
) -> None:
    await round_trip(client, "/v1/policies", named(data.draw(policies(people, schedule_ids))))


@st.composite
def support_hours(draw: st.DrawFn) -> dict[str, Any]:
    holidays = draw(st.lists(st.dates(date(2026, 1, 1), date(2027, 12, 31)), max_size=5, unique=True))
    return {
        "time_zone": draw(st.sampled_from(ZONES)),
        "windows": draw(windows(min_size=1)),
        "holidays": [d.isoformat() for d in holidays],
    }


@PROPERTY
@given(data=st.data())
async def test_support_hours_round_trip(client: Client, data: st.DataObject) -> None:
    await round_trip(client, "/v1/support-hours", named(data.draw(support_hours())))
