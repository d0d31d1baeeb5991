"""The schedule service as a process: schedules, overrides, coverage over Kafka, policies, support hours, feeds."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import icalendar
import pytest

from shared.messages import CoverageRequestAccepted, CoverageRequestRevoked, ScheduleTimeline, ShiftRef
from shared.testing import produce, read_topic
from shared.topics import COVERAGE_OUTCOMES, COVERAGE_REQUESTS, POLICIES, SUPPORT_HOURS, TIMELINES
from tests.conftest import Infra, Stack, token
from tests.e2e.http import call

pytestmark = pytest.mark.e2e
ADMIN = token(uuid.uuid4(), "admin")
MONDAY = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday; New York springs forward on Sunday 2026-03-08


async def users(stack: Stack, n: int) -> list[str]:
    ids = []
    for i in range(n):
        body = {"name": f"U{i}", "email": f"{uuid.uuid4().hex}@example.com", "time_zone": "America/New_York"}
        status, user = await call("POST", stack.url("schedule", "/v1/users"), json=body, headers=ADMIN)
        assert status == 201, user
        ids.append(user["id"])
    return ids


def daily(people: list[str], **extra: Any) -> dict[str, Any]:
    layer = {"users": people, "length": 1, "unit": "days", "handoff": "2026-03-02T09:00:00"} | extra
    return {"name": f"S-{uuid.uuid4().hex[:8]}", "time_zone": "America/New_York", "layers": [layer]}


async def new_schedule(stack: Stack, body: dict[str, Any]) -> dict[str, Any]:
    status, schedule = await call("POST", stack.url("schedule", "/v1/schedules"), json=body, headers=ADMIN)
    assert status == 201, schedule
    return schedule  # type: ignore[no-any-return]


async def shifts(stack: Stack, schedule_id: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    params = {"from": start.isoformat(), "to": end.isoformat()}
    status, body = await call(
        "GET", stack.url("schedule", f"/v1/schedules/{schedule_id}/shifts"), params=params, headers=ADMIN
    )
    assert status == 200, body
    return body  # type: ignore[no-any-return]


def hours(*pieces: dict[str, Any]) -> list[tuple[str, str, str | None, str]]:
    return [(p["start"], p["end"], p["user_id"], p["source"]) for p in pieces]


async def test_overrides_win_and_removing_one_restores_the_schedule(stack: Stack, infra: Infra) -> None:
    a, b, c = await users(stack, 3)
    schedule = await new_schedule(stack, daily([a, b]))
    start, end = MONDAY, MONDAY + timedelta(days=10)
    before = await shifts(stack, schedule["id"], start, end)
    assert [s["user_id"] for s in before[:3]] == [a, b, a]
    assert before[0]["start"] == "2026-03-02T14:00:00Z"  # the layer starts at its first handoff, 09:00 EST
    saturday = next(s for s in before if s["start"].startswith("2026-03-07"))
    # 09:00 EST Saturday to 09:00 EDT Sunday: 23 hours of real time over the spring-forward night
    assert (saturday["start"], saturday["end"]) == ("2026-03-07T14:00:00Z", "2026-03-08T13:00:00Z")

    url = stack.url("schedule", f"/v1/schedules/{schedule['id']}/overrides")
    window = {"start": "2026-03-03T15:00:00Z", "end": "2026-03-03T17:00:00Z"}
    status, body = await call("POST", url, json={"user_id": c} | window, headers=token(a, "responder"))
    assert status == 403, body  # a responder cannot put someone else on call
    status, override = await call("POST", url, json={"user_id": c} | window, headers=token(c, "responder"))
    assert status == 201, override

    during = await shifts(stack, schedule["id"], start, end)
    assert hours(*during[0:4]) == [
        ("2026-03-02T14:00:00Z", "2026-03-03T14:00:00Z", a, "layer"),
        ("2026-03-03T14:00:00Z", "2026-03-03T15:00:00Z", b, "layer"),
        ("2026-03-03T15:00:00Z", "2026-03-03T17:00:00Z", c, "override"),
        ("2026-03-03T17:00:00Z", "2026-03-04T14:00:00Z", b, "layer"),
    ]
    assert during[2]["ref"] == override["id"]

    removal = stack.url("schedule", f"/v1/schedules/{schedule['id']}/overrides/{override['id']}")
    assert (await call("DELETE", removal, headers=token(a, "responder")))[0] == 403  # not the creator
    assert (await call("DELETE", removal, headers=token(c, "responder")))[0] == 204
    assert await shifts(stack, schedule["id"], start, end) == before


async def test_every_change_republishes_the_timeline(stack: Stack, infra: Infra) -> None:
    a, b = await users(stack, 2)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    schedule = await new_schedule(stack, daily([a, b], handoff=today.strftime("%Y-%m-%dT09:00:00")))
    window = {"start": (today + timedelta(days=2)).isoformat(), "end": (today + timedelta(days=3)).isoformat()}
    url = stack.url("schedule", f"/v1/schedules/{schedule['id']}/overrides")
    status, override = await call("POST", url, json={"user_id": b} | window, headers=ADMIN)
    assert status == 201, override
    assert (await call("DELETE", f"{url}/{override['id']}", headers=ADMIN))[0] == 204

    key = schedule["id"].encode()
    records = await read_topic(
        infra.kafka_bootstrap, TIMELINES.name, until=lambda rs: sum(r.key == key for r in rs) >= 3
    )
    timelines = [ScheduleTimeline.model_validate_json(r.value) for r in records if r.key == key]
    assert [t.version for t in timelines] == [1, 2, 3]
    assert timelines[0].segments == timelines[2].segments != timelines[1].segments
    assert [s.source for s in timelines[1].segments].count("override") == 1
    first = timelines[0]
    assert first.horizon_start <= datetime.now(UTC) and first.horizon_end - datetime.now(UTC) >= timedelta(days=60)
    assert first.segments[0].start == first.horizon_start and first.segments[-1].end == first.horizon_end
    assert all(x.end == y.start for x, y in zip(first.segments, first.segments[1:], strict=False))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"time_zone": "Mars/Olympus"}, "time_zone"),
        (
            {"layers": [{"users": ["A"], "length": 0, "unit": "days", "handoff": "2026-03-02T09:00:00"}]},
            "layers.0.length",
        ),
        (
            {"layers": [{"users": ["A"], "length": -2, "unit": "days", "handoff": "2026-03-02T09:00:00"}]},
            "layers.0.length",
        ),
        ({"layers": [{"users": [], "length": 1, "unit": "days", "handoff": "2026-03-02T09:00:00"}]}, "layers.0.users"),
        (
            {"layers": [{"users": ["X"], "length": 1, "unit": "days", "handoff": "2026-03-02T09:00:00"}]},
            "layers.0.users",
        ),
        (
            {
                "layers": [
                    {
                        "users": ["A"],
                        "length": 1,
                        "unit": "days",
                        "handoff": "2026-03-02T09:00:00",
                        "restrictions": [{"days": ["mon"], "start": "25:00", "end": "17:00"}],
                    }
                ]
            },
            "layers.0.restrictions.0.start",
        ),
        (
            {
                "layers": [
                    {
                        "users": ["A"],
                        "length": 1,
                        "unit": "days",
                        "handoff": "2026-03-02T09:00:00",
                        "restrictions": [{"days": ["mon"], "start": "09:00", "end": "24:01"}],
                    }
                ]
            },
            "layers.0.restrictions.0.end",
        ),
        (
            {
                "kind": "static",
                "layers": [],
                "shifts": [
                    {"user_id": "A", "start": "2026-03-02T00:00:00Z", "end": "2026-03-03T00:00:00Z"},
                    {"user_id": "A", "start": "2026-03-02T12:00:00Z", "end": "2026-03-04T00:00:00Z"},
                ],
            },
            "shifts.1",
        ),
    ],
)
async def test_bad_schedules_get_422_naming_the_field(stack: Stack, change: dict[str, Any], field: str) -> None:
    (a,) = await users(stack, 1)
    body = json.loads(json.dumps(daily([a]) | change).replace('"A"', f'"{a}"').replace('"X"', f'"{uuid.uuid4()}"'))
    status, problem = await call("POST", stack.url("schedule", "/v1/schedules"), json=body, headers=ADMIN)
    assert status == 422, problem
    assert field in [e["field"] for e in problem["errors"]], problem


async def test_override_ending_before_it_starts_is_422(stack: Stack) -> None:
    (a,) = await users(stack, 1)
    schedule = await new_schedule(stack, daily([a]))
    bad = {"user_id": a, "start": "2026-03-03T17:00:00Z", "end": "2026-03-03T17:00:00Z"}
    status, problem = await call(
        "POST", stack.url("schedule", f"/v1/schedules/{schedule['id']}/overrides"), json=bad, headers=ADMIN
    )
    assert status == 422 and [e["field"] for e in problem["errors"]] == ["end"], problem


async def outcome(infra: Infra, request_id: uuid.UUID, n: int = 1) -> list[dict[str, Any]]:
    key = str(request_id).encode()
    records = await read_topic(
        infra.kafka_bootstrap, COVERAGE_OUTCOMES.name, until=lambda rs: sum(r.key == key for r in rs) >= n
    )
    return [json.loads(r.value) for r in records if r.key == key]


async def test_coverage_applies_all_shifts_or_none_once_and_reverts(stack: Stack, infra: Infra) -> None:
    a, b, helper = await users(stack, 3)
    schedule = await new_schedule(stack, daily([a, b]))
    sid = uuid.UUID(schedule["id"])
    before = await shifts(stack, schedule["id"], MONDAY, MONDAY + timedelta(days=6))
    mine = [s for s in before if s["user_id"] == a][:2]
    theirs = next(s for s in before if s["user_id"] == b)
    refs = [ShiftRef(schedule_id=sid, start=s["start"], end=s["end"]) for s in mine]

    # one shift that is not the requester's: nothing is applied, and the answer says which shift and why
    refused = CoverageRequestAccepted(
        request_id=uuid.uuid4(),
        requester_id=uuid.UUID(a),
        covering_user_id=uuid.UUID(helper),
        shifts=[*refs, ShiftRef(schedule_id=sid, start=theirs["start"], end=theirs["end"])],
    )
    await produce(
        infra.kafka_bootstrap, COVERAGE_REQUESTS.name, [(refused.key.encode(), refused.model_dump_json().encode())]
    )
    (rejected,) = await outcome(infra, refused.request_id)
    assert rejected["type"] == "CoverageRejected"
    assert [p["start"] for p in rejected["problems"]] == [theirs["start"]]
    assert "not the requester" in rejected["problems"][0]["reason"]
    assert await shifts(stack, schedule["id"], MONDAY, MONDAY + timedelta(days=6)) == before

    accepted = CoverageRequestAccepted(
        request_id=uuid.uuid4(), requester_id=uuid.UUID(a), covering_user_id=uuid.UUID(helper), shifts=refs
    )
    raw = (accepted.key.encode(), accepted.model_dump_json().encode())
    resent = accepted.model_copy(update={"event_id": uuid.uuid4()})
    # delivered twice as is, then re-sent by coverage with a new event id: one effect, answered twice
    await produce(
        infra.kafka_bootstrap,
        COVERAGE_REQUESTS.name,
        [raw, raw, (resent.key.encode(), resent.model_dump_json().encode())],
    )
    answers = await outcome(infra, accepted.request_id, n=2)
    assert [x["type"] for x in answers] == ["CoverageApplied", "CoverageApplied"]
    after = await shifts(stack, schedule["id"], MONDAY, MONDAY + timedelta(days=6))
    covered = [s for s in after if s["source"] == "coverage"]
    assert [(s["start"], s["end"], s["user_id"], s["ref"]) for s in covered] == [
        (s["start"], s["end"], helper, str(accepted.request_id)) for s in mine
    ]
    status, listed = await call(
        "GET",
        stack.url("schedule", f"/v1/schedules/{sid}/overrides"),
        params={"from": MONDAY.isoformat(), "to": (MONDAY + timedelta(days=6)).isoformat()},
        headers=ADMIN,
    )
    assert status == 200 and len(listed) == 2, listed  # the duplicate delivery placed nothing twice

    revoked = CoverageRequestRevoked(request_id=accepted.request_id, reason="plans changed")
    await produce(
        infra.kafka_bootstrap, COVERAGE_REQUESTS.name, [(revoked.key.encode(), revoked.model_dump_json().encode())]
    )
    answers = await outcome(infra, accepted.request_id, n=3)
    assert answers[-1]["type"] == "CoverageReverted" and answers[-1]["removed_shifts"] == 2
    assert await shifts(stack, schedule["id"], MONDAY, MONDAY + timedelta(days=6)) == before


async def test_my_shifts_policies_and_support_hours(stack: Stack, infra: Infra) -> None:
    a, b, boss = await users(stack, 3)
    first = await new_schedule(stack, daily([a, b]))
    weekdays = {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:00"}
    second = await new_schedule(
        stack, daily([b], length=1, unit="weeks", restrictions=[weekdays], handoff="2026-03-02T00:00:00")
    )
    status, mine = await call(
        "GET",
        stack.url("schedule", f"/v1/users/{b}/shifts"),
        params={"from": "2026-03-02T00:00:00Z", "to": "2026-03-04T00:00:00Z"},
        headers=token(b, "responder"),
    )
    assert status == 200, mine
    assert sorted((s["start"], s["end"], s["schedule_id"]) for s in mine) == [
        ("2026-03-02T14:00:00Z", "2026-03-02T22:00:00Z", second["id"]),  # weekdays 09-17 EST
        ("2026-03-03T14:00:00Z", "2026-03-03T22:00:00Z", second["id"]),
        ("2026-03-03T14:00:00Z", "2026-03-04T00:00:00Z", first["id"]),  # b's daily turn, cut at `to`
    ]
    assert [s["start"] for s in mine] == sorted(s["start"] for s in mine)
    status, now = await call(
        "GET",
        stack.url("schedule", f"/v1/schedules/{first['id']}/oncall"),
        params={"at": "2026-03-03T15:00:00Z"},
        headers=ADMIN,
    )
    assert status == 200 and now["user_id"] == b, now
    assert (now["shift"]["start"], now["shift"]["end"]) == ("2026-03-03T14:00:00Z", "2026-03-04T14:00:00Z")

    rules = [
        {"timeout_minutes": 5, "schedule_ids": [first["id"], second["id"]]},
        {"timeout_minutes": 10, "user_ids": [boss]},
    ]
    status, policy = await call(
        "POST",
        stack.url("schedule", "/v1/policies"),
        json={"name": f"P-{uuid.uuid4().hex[:6]}", "repeat": 1, "rules": rules},
        headers=ADMIN,
    )
    assert status == 201, policy
    status, now = await call(
        "GET",
        stack.url("schedule", f"/v1/policies/{policy['id']}/oncall"),
        params={"at": "2026-03-03T15:00:00Z"},
        headers=ADMIN,
    )
    assert status == 200 and [s["responders"] for s in now["steps"]] == [[b], [boss]], now  # b twice, paged once
    status, night = await call(
        "GET",
        stack.url("schedule", f"/v1/policies/{policy['id']}/oncall"),
        params={"at": "2026-03-04T03:00:00Z"},
        headers=ADMIN,
    )
    assert [s["responders"] for s in night["steps"]] == [[b], [boss]]  # first is b's day turn; second restricted
    status, bad = await call(
        "POST",
        stack.url("schedule", "/v1/policies"),
        json={"name": "x", "rules": [{"timeout_minutes": 5, "user_ids": [str(uuid.uuid4())]}]},
        headers=ADMIN,
    )
    assert status == 422 and bad["errors"][0]["field"] == "rules.0.user_ids", bad

    body = {
        "name": f"H-{uuid.uuid4().hex[:6]}",
        "time_zone": "Europe/Berlin",
        "windows": [weekdays],
        "holidays": ["2026-12-25"],
    }
    status, support = await call("POST", stack.url("schedule", "/v1/support-hours"), json=body, headers=ADMIN)
    assert status == 201, support
    inside = stack.url("schedule", f"/v1/support-hours/{support['id']}/inside")
    for at, expected in [
        ("2026-12-24T08:30:00Z", True),  # Thursday 09:30 CET
        ("2026-12-24T16:30:00Z", False),  # 17:30 CET
        ("2026-12-25T10:00:00Z", False),  # Christmas, a holiday
        ("2026-07-03T07:30:00Z", True),  # Friday 09:30 CEST
    ]:
        status, answer = await call("GET", inside, params={"at": at}, headers=ADMIN)
        assert (status, answer["inside"]) == (200, expected), at

    for topic, key in [(POLICIES, policy["id"]), (SUPPORT_HOURS, support["id"])]:
        records = await read_topic(
            infra.kafka_bootstrap, topic.name, until=lambda rs, k=key: any(r.key == k.encode() for r in rs)
        )
        assert json.loads(next(r for r in records if r.key == key.encode()).value)["version"] == 1


async def test_calendar_feed_marks_vanished_shifts_cancelled(stack: Stack) -> None:
    a, b = await users(stack, 2)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    schedule = await new_schedule(stack, daily([a, b], handoff=today.strftime("%Y-%m-%dT09:00:00")))
    status, body = await call(
        "POST", stack.url("schedule", f"/v1/users/{b}/calendar-token"), headers=token(a, "responder")
    )
    assert status == 403, body
    status, feed = await call(
        "POST", stack.url("schedule", f"/v1/users/{a}/calendar-token"), headers=token(a, "responder")
    )
    assert status == 201, feed

    status, raw = await call("GET", stack.url("schedule", feed["my_shifts"]))
    assert status == 200
    events = icalendar.Calendar.from_ical(raw).walk("VEVENT")
    assert len(events) >= 90 and all(str(e["STATUS"]) == "CONFIRMED" for e in events)
    tomorrow = min((e for e in events if e.decoded("DTSTART") > datetime.now(UTC)), key=lambda e: e.decoded("DTSTART"))

    override = {
        "user_id": b,
        "start": tomorrow.decoded("DTSTART").isoformat(),
        "end": tomorrow.decoded("DTEND").isoformat(),
    }
    status, _ = await call(
        "POST", stack.url("schedule", f"/v1/schedules/{schedule['id']}/overrides"), json=override, headers=ADMIN
    )
    assert status == 201
    status, raw = await call("GET", stack.url("schedule", feed["my_shifts"]))
    again = {str(e["UID"]): e for e in icalendar.Calendar.from_ical(raw).walk("VEVENT")}
    gone = again[str(tomorrow["UID"])]
    assert str(gone["STATUS"]) == "CANCELLED" and int(gone["SEQUENCE"]) == int(tomorrow["SEQUENCE"]) + 1

    status, raw = await call(
        "GET", stack.url("schedule", feed["schedule_feed_template"].format(schedule_id=schedule["id"]))
    )
    assert status == 200
    users_in_feed = {str(e["SUMMARY"]) for e in icalendar.Calendar.from_ical(raw).walk("VEVENT")}
    assert users_in_feed == {f"On call: U0 ({schedule['name']})", f"On call: U1 ({schedule['name']})"}
    assert (await call("GET", stack.url("schedule", "/ical/not-a-token/my-shifts.ics")))[0] == 404
