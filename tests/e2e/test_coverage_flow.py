"""The coverage workflow across schedule and coverage, both running as OS processes on the real broker and
PostgreSQL: what the requester (a), the colleague asked (b) and an admin each see, and what was sent to
notifier on their behalf."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from shared.testing import eventually, produce
from shared.topics import COVERAGE_OUTCOMES
from tests.conftest import Infra, IsolatedInfra, Processes, Stack
from tests.e2e.coverage_helpers import (
    ADMIN,
    Urls,
    World,
    at,
    day,
    key,
    middle,
    notices,
    notices_with,
    topic_now,
)
from tests.e2e.http import call
from tools.procs import ServiceProcess

pytestmark = pytest.mark.e2e


def spans(shifts: list[dict[str, object]]) -> list[tuple[datetime, datetime]]:
    return [(at(str(s["start"])), at(str(s["end"]))) for s in shifts]


def days(base: datetime, *offsets: int) -> list[tuple[datetime, datetime]]:
    return [(base + timedelta(days=d), base + timedelta(days=d + 1)) for d in offsets]


async def world_with_rotation(svc: Stack | Urls, handoff: datetime) -> World:
    w = World(svc)
    await w.people()
    await w.rotation(handoff)
    return w


def count(told: list[tuple[str, str, str]], what: str) -> Counter[str]:
    return Counter(user for user, k, _ in told if k.split(":")[2] == what)


async def test_a_request_accepted_moves_the_shifts_through_kafka(stack: Stack, infra: Infra) -> None:
    base = day(2)
    w = await world_with_rotation(stack, base)
    a, b = w.users["a"], w.users["b"]
    period = (base, base + timedelta(days=6))
    mine = await w.shifts_in_coverage("a", *period, n=3)
    assert spans(mine) == days(base, 0, 2, 4)  # a holds every other day from the handoff
    assert [s["open_request_id"] for s in mine] == [None, None, None]
    asked, kept = mine[:2], mine[2]

    created = await w.ask(asked, period)
    rid = created["id"]
    assert (created["status"], created["requester_id"]) == ("pending", a)
    assert [r["user_id"] for r in created["recipients"]] == [b]
    assert at(created["expires_at"]) == base
    told = await notices_with(infra.kafka_bootstrap, rid, key(rid, "created", b))
    assert told == [(b, key(rid, "created", b), "pending")]  # b alone is asked, once
    assert (await w.badge("b"), await w.badge("a")) == (1, 0)
    _, claimed = await w.coverable("a", *period)
    assert [s["open_request_id"] for s in claimed] == [rid, rid, None]

    status, answer = await w.accept(rid)
    assert (status, answer["status"]) in {(200, "accepted"), (202, "accepting")}, answer
    done = await w.reaches(rid, "accepted")
    assert done["covering_user_id"] == b
    assert [s["covered"] for s in done["shifts"]] == [True, True]
    assert [s["status"] for s in done["history"]] == ["pending", "accepting", "accepted"]

    # schedule now answers b inside each covered shift, from the coverage it applied, and a outside them
    for shift in asked:
        now = await w.on_call(middle(shift))
        assert (now["user_id"], now["shift"]["source"], now["shift"]["ref"]) == (b, "coverage", rid), now
        assert (at(now["shift"]["start"]), at(now["shift"]["end"])) == spans([shift])[0]
    assert (await w.on_call(middle(kept)))["user_id"] == a
    assert (await w.on_call(base + timedelta(days=1, hours=12)))["user_id"] == b  # b's own turn, untouched

    told = await notices_with(infra.kafka_bootstrap, rid, key(rid, "accepted", a), key(rid, "accepted", b))
    assert count(told, "accepted") == Counter({a: 1, b: 1})
    assert {(u, s) for u, k, s in told if ":accepted:" in k} == {(a, "accepted"), (b, "accepted")}
    assert [(r["id"], r["status"]) for r in await w.box("a", "sent")] == [(rid, "accepted")]
    assert [(r["id"], r["status"]) for r in await w.box("b", "received")] == [(rid, "accepted")]
    assert await w.box("b", "sent") == [] and await w.box("a", "received") == []
    assert await w.badge("b") == 0

    # the timeline schedule published with the coverage reaches coverage: the shifts are b's there too
    await w.shifts_in_coverage("a", *period, n=1)
    assert spans((await w.coverable("a", *period))[1]) == spans([kept])
    _, theirs = await w.coverable("b", *period)
    assert all(any(s <= start and end <= e for s, e in spans(theirs)) for start, end in spans(asked)), theirs


async def test_an_admin_override_makes_a_pending_request_obsolete(stack: Stack, infra: Infra) -> None:
    base = day(2)
    w = await world_with_rotation(stack, base)
    a, b, c = w.users["a"], w.users["b"], w.users["c"]
    period = (base, base + timedelta(days=6))
    mine = await w.shifts_in_coverage("a", *period, n=3)
    created = await w.ask(mine[:2], period)
    rid = created["id"]
    await notices_with(infra.kafka_bootstrap, rid, key(rid, "created", b))
    assert await w.badge("b") == 1

    taken = mine[1]
    override = {"user_id": c, "start": taken["start"], "end": taken["end"]}
    status, body = await call(
        "POST", stack.url("schedule", f"/v1/schedules/{w.schedule_id}/overrides"), json=override, headers=ADMIN
    )
    assert status == 201, body
    assert (await w.on_call(middle(taken)))["user_id"] == c

    gone = await w.reaches(rid, "obsolete")
    assert gone["reason"].startswith("the schedule changed"), gone["reason"]
    assert at(taken["start"]).isoformat() in gone["reason"] and f"user {c} is on call" in gone["reason"]
    assert [s["status"] for s in gone["history"]] == ["pending", "obsolete"]
    assert gone["history"][-1]["actor_id"] is None
    told = await notices_with(infra.kafka_bootstrap, rid, key(rid, "obsolete", a), key(rid, "obsolete", b))
    assert count(told, "obsolete") == Counter({a: 1, b: 1})
    assert c not in {u for u, _, _ in told}
    assert await w.badge("b") == 0
    status, problem = await w.accept(rid)
    assert status == 409 and problem["state"] == "obsolete", problem
    # nothing was handed over: a still holds her first shift, and it is free to be asked for again
    assert (await w.on_call(middle(mine[0])))["user_id"] == a
    freed = await w.shifts_in_coverage("a", *period, n=2)
    assert spans(freed) == spans([mine[0], mine[2]]) and freed[0]["open_request_id"] is None


async def _processes_and_a_request(
    processes: Processes, infra: IsolatedInfra
) -> tuple[ServiceProcess, ServiceProcess, Urls, World, list[dict[str, Any]], str]:
    """schedule and coverage as processes, a rotation, and `a` asking `b` to cover two of her shifts."""
    schedule = processes.start("schedule", infra=infra, wait=False)
    coverage = processes.start("coverage", infra=infra, wait=False)
    schedule.wait_ready(timeout=90)
    coverage.wait_ready(timeout=90)
    urls = Urls({"schedule": schedule.base_url, "coverage": coverage.base_url})
    base = day(2)
    w = await world_with_rotation(urls, base)
    period = (base, base + timedelta(days=4))
    mine = await w.shifts_in_coverage("a", *period, n=2)
    return schedule, coverage, urls, w, mine, (await w.ask(mine, period))["id"]


async def test_accepting_while_schedule_is_down_completes_once_it_is_back(
    processes: Processes, isolated_infra: IsolatedInfra
) -> None:
    schedule, _coverage, urls, w, mine, rid = await _processes_and_a_request(processes, isolated_infra)
    a, b = w.users["a"], w.users["b"]

    schedule.terminate()
    status, answer = await w.accept(rid)
    assert (status, answer["status"]) == (202, "accepting"), answer
    assert answer["covering_user_id"] == b
    until = time.monotonic() + 4
    while time.monotonic() < until:
        assert (await w.request(rid))["status"] == "accepting"
        await asyncio.sleep(0.5)
    assert [(r["id"], r["status"]) for r in await w.box("a", "sent")] == [(rid, "accepting")]
    assert [(r["id"], r["status"]) for r in await w.box("b", "received")] == [(rid, "accepting")]
    assert await w.badge("b") == 0  # b has answered

    restarted = processes.start("schedule", infra=isolated_infra)
    urls.bases["schedule"] = restarted.base_url
    done = await w.reaches(rid, "accepted", timeout_s=60)
    assert [s["status"] for s in done["history"]] == ["pending", "accepting", "accepted"]
    for shift in mine:
        now = await w.on_call(middle(shift))
        assert (now["user_id"], now["shift"]["source"], now["shift"]["ref"]) == (b, "coverage", rid), now
    told = await notices_with(isolated_infra.kafka_bootstrap, rid, key(rid, "accepted", a), key(rid, "accepted", b))
    assert count(told, "accepted") == Counter({a: 1, b: 1})


async def test_a_redelivered_or_resent_answer_from_schedule_changes_nothing(
    stack: Stack, infra: Infra, db: asyncpg.Pool
) -> None:
    base = day(2)
    w = await world_with_rotation(stack, base)
    a, b = w.users["a"], w.users["b"]
    period = (base, base + timedelta(days=4))
    mine = await w.shifts_in_coverage("a", *period, n=2)
    rid = (await w.ask(mine, period))["id"]
    await w.accept(rid)
    before = await w.reaches(rid, "accepted")
    await notices_with(infra.kafka_bootstrap, rid, key(rid, "accepted", a), key(rid, "accepted", b))

    answers = [r for r in await topic_now(infra.kafka_bootstrap, COVERAGE_OUTCOMES.name) if r.key == rid.encode()]
    applied = [r for r in answers if json.loads(r.value)["type"] == "CoverageApplied"]
    assert applied, answers
    original = applied[0]
    headers = [(k, v) for k, v in original.headers if k != "event_id"]
    resent = json.loads(original.value) | {"event_id": str(uuid.uuid4())}
    await produce(
        infra.kafka_bootstrap, COVERAGE_OUTCOMES.name, [(original.key, original.value)], list(original.headers)
    )
    await produce(
        infra.kafka_bootstrap,
        COVERAGE_OUTCOMES.name,
        [(original.key, json.dumps(resent).encode())],
        [*headers, ("event_id", resent["event_id"].encode())],
    )
    # Both copies share the request's partition: once coverage has taken the second, it has seen the first.
    await eventually(
        lambda: db.fetchval(
            "SELECT true FROM coverage.inbox WHERE consumer = 'coverage.outcomes' AND event_id = $1",
            uuid.UUID(resent["event_id"]),
        ),
        what="coverage consumed the re-sent answer",
    )
    await asyncio.sleep(2)  # room for any second notification to be relayed

    after = await w.request(rid)
    assert after == before
    assert [s["status"] for s in after["history"]].count("accepted") == 1
    told = await notices(infra.kafka_bootstrap, rid)
    assert count(told, "accepted") == Counter({a: 1, b: 1})
    assert count(told, "created") == Counter({b: 1})


async def test_a_request_nobody_answers_expires_when_the_shift_starts(stack: Stack, infra: Infra) -> None:
    w = World(stack)
    await w.people()
    handoff = (datetime.now(UTC) + timedelta(seconds=20)).replace(microsecond=0)
    await w.rotation(handoff)  # the rotation starts at its handoff with a's turn
    a, b = w.users["a"], w.users["b"]
    period = (handoff, handoff + timedelta(days=1))
    mine = await w.shifts_in_coverage("a", *period, n=1)
    assert spans(mine) == [period]
    created = await w.ask(mine, period, remind_minutes_before=0)
    rid = created["id"]
    assert created["remind_at"] is None and at(created["expires_at"]) == handoff
    assert datetime.now(UTC) < handoff, "setup took too long for the shift to lie ahead"
    assert (await w.request(rid))["status"] == "pending"

    expired = await w.reaches(rid, "expired", timeout_s=60)
    assert expired["reason"] == "nobody accepted before the first shift started"
    assert at(expired["history"][-1]["at"]) >= handoff  # not before the shift started
    assert expired["history"][-1]["actor_id"] is None
    told = await notices_with(infra.kafka_bootstrap, rid, key(rid, "expired", a))
    assert sorted(k for _, k, _ in told) == sorted([key(rid, "created", b), key(rid, "expired", a)])
    assert await w.badge("b") == 0
    assert [(r["id"], r["status"]) for r in await w.box("b", "received")] == [(rid, "expired")]
    assert (await w.on_call(handoff + timedelta(hours=1)))["user_id"] == a  # the shift stayed a's


async def test_coverage_killed_after_a_request_and_in_the_middle_of_an_accept_loses_and_doubles_nothing(
    processes: Processes, isolated_infra: IsolatedInfra
) -> None:
    """SIGKILL right after a request is created (its notification may still be in the outbox), and again 50 ms
    into an acceptance (the HTTP call may or may not have committed): after each restart the requester and the
    colleague see one request, accepted once, and every notification of it is sent (a relay killed between
    publishing and deleting may send one twice, with the same idempotency key: notifier keeps one)."""
    _schedule, coverage, urls, w, mine, rid = await _processes_and_a_request(processes, isolated_infra)
    a, b = w.users["a"], w.users["b"]

    coverage.kill()
    coverage = processes.start("coverage", infra=isolated_infra)
    urls.bases["coverage"] = coverage.base_url
    assert (await w.request(rid))["status"] == "pending"
    await notices_with(isolated_infra.kafka_bootstrap, rid, key(rid, "created", b))

    accepting = asyncio.create_task(w.accept(rid))
    await asyncio.sleep(0.05)
    coverage.kill()
    answered = await asyncio.gather(accepting, return_exceptions=True)
    coverage = processes.start("coverage", infra=isolated_infra)
    urls.bases["coverage"] = coverage.base_url
    if (await w.request(rid))["status"] == "pending":  # the kill came before the acceptance committed
        status, answer = await w.accept(rid)
        assert status in (200, 202), (answered, answer)

    done = await w.reaches(rid, "accepted", timeout_s=60)
    assert [s["status"] for s in done["history"]] == ["pending", "accepting", "accepted"]
    assert [(r["id"], r["status"]) for r in await w.box("a", "sent")] == [(rid, "accepted")]
    for shift in mine:
        now = await w.on_call(middle(shift))
        assert (now["user_id"], now["shift"]["ref"]) == (b, rid), now
    expected = {key(rid, "created", b), key(rid, "accepted", a), key(rid, "accepted", b)}
    told = await notices_with(isolated_infra.kafka_bootstrap, rid, *expected)
    assert {k for _, k, _ in told} == expected
