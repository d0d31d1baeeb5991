"""The seeds' scenarios across all four services, as their users meet them: the mobile API through the gateway
(Caddy) with each person's JWT, calls from the telephony simulator posting signed webhooks to the gateway, and
what each phone received from the APNs, FCM and Twilio fakes. Every service runs as its own OS process on a
broker and database of this module's own (tools.stack), wired as `make up` wires them.

The scenarios themselves (tools.scenarios) check each step and raise `Failed`; the tests here add what each
person sees at the end, and the cases the demo leaves out (declined, cancelled, expired, obsolete, schedule down).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from tests.conftest import Infra
from tests.e2e.platform_helpers import own_platform
from tools import scenarios
from tools.scenarios import Api, Cast, at, iso
from tools.stack import QUICK_MINUTE_S, Platform

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def platform(infra: Infra) -> AsyncIterator[Platform]:
    async with own_platform(infra) as (started, _):
        yield started


@pytest.fixture
async def api(platform: Platform) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as http:
        yield Api(platform.doors, http)


@pytest.fixture
async def cast(api: Api) -> Cast:
    return await Cast.create(api, lambda _: None, QUICK_MINUTE_S)


def caller() -> str:
    return scenarios.phone_number()


async def test_coverage_accepted_then_a_call_routed_by_digit_and_by_voice(cast: Cast, api: Api) -> None:
    """Scenarios 1 and 4: the coverage really changes who the hotline dials first."""
    covered = await scenarios.coverage_accepted(cast, lead_s=8)
    ben_pushes = await api.pushes(cast.ben)
    assert [p.data["status"] for p in scenarios.about(ben_pushes, "request_id", covered.request_id)] == [
        "pending", "accepted"
    ]
    assert scenarios.duplicates(await api.pushes(cast.ada)) == [] and scenarios.duplicates(ben_pushes) == []
    # cancelling after acceptance is refused, and changes nothing
    status, body = await api.call("POST", f"/v1/coverage-requests/{covered.request_id}/cancel", cast.ada, json={})
    assert status == 409 and body["state"] == "accepted", body

    await scenarios.ben_on_call(cast, covered)
    by_digit = await scenarios.call_routed(cast, "digit", caller())
    by_voice = await scenarios.call_routed(cast, "voice", caller())
    for alert in (by_digit, by_voice):
        assert (alert["status"], alert["acknowledged_by"]) == ("acknowledged", cast.cleo.id)
        story = [(e["what"], e["user_id"]) for e in alert["timeline"] if e["user_id"]]
        dialed = [u for what, u in story if what == "dialed"]
        assert dialed == [cast.ben.id, cast.cleo.id] and ("accepted", cast.cleo.id) in story, alert["timeline"]


async def test_nobody_answers_voicemail_escalates_until_acknowledged_in_the_app(cast: Cast, api: Api) -> None:
    """Scenario 5."""
    alert = await scenarios.nobody_answers(cast, caller())
    assert alert["acknowledged_by"] == cast.cleo.id and alert["acknowledged_at"]
    paged = [e.get("user_id") for e in alert["timeline"] if e["what"] == "paged"]
    assert paged == [cast.ada.id, cast.cleo.id], alert["timeline"]  # Ada is on call in a new cast
    for person in cast.people:
        assert scenarios.duplicates(await api.pushes(person)) == []


async def shifts_ahead(cast: Cast, days: int) -> list[dict[str, Any]]:
    start = datetime.now(UTC) + timedelta(days=days)
    return await cast.ada_shifts(start, start + timedelta(days=2))


async def test_declined_cancelled_and_expired_requests_tell_the_right_people_and_change_nothing(
    cast: Cast, api: Api
) -> None:
    """Scenario 2."""
    ada, ben = cast.ada, cast.ben
    # declined: Ada is told, Ben's own decision is confirmed to him
    (first, *_) = await shifts_ahead(cast, 3)
    declined = await cast.ask([first], "Can you?")
    await cast.told(ben, declined["id"], "pending")
    await api.ok("POST", f"/v1/coverage-requests/{declined['id']}/decline", ben, json={"reason": "away"})
    await cast.reaches(declined["id"], "declined")
    await cast.told(ada, declined["id"], "declined")
    # cancelled: Ben is told; Ada's own cancel is not pushed back to her
    (second, *_) = await shifts_ahead(cast, 7)
    cancelled = await cast.ask([second])
    await cast.told(ben, cancelled["id"], "pending")
    await api.ok("POST", f"/v1/coverage-requests/{cancelled['id']}/cancel", ada, json={})
    await cast.reaches(cancelled["id"], "cancelled")
    await cast.told(ben, cancelled["id"], "cancelled")
    # expired: nobody answered before the first shift began; Ada is told, Ben's badge no longer counts it
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=6)
    (piece, *_) = await cast.ada_shifts(soon, soon + timedelta(hours=1))
    expiring = await cast.ask([piece], remind_minutes_before=0)
    await cast.told(ben, expiring["id"], "pending")
    await cast.reaches(expiring["id"], "expired")
    await cast.told(ada, expiring["id"], "expired")
    assert [p.data["status"] for p in scenarios.about(await api.pushes(ben), "request_id", expiring["id"])] == [
        "pending"
    ]

    for shift in (first, second, piece):
        assert await cast.on_call(at(shift["start"]) + timedelta(minutes=1)) == "Ada"
    assert await cast.badge(ben) == 0
    assert {r: await cast.listed_as(ada, "sent", r) for r in (declined["id"], cancelled["id"], expiring["id"])} == {
        declined["id"]: "declined", cancelled["id"]: "cancelled", expiring["id"]: "expired"
    }
    for person in cast.people:
        assert scenarios.duplicates(await api.pushes(person)) == []


async def test_an_admin_override_makes_a_pending_request_obsolete(cast: Cast, api: Api) -> None:
    """Scenario 3: the override bypasses the workflow; both are told; the override decides who is on call."""
    (shift, *_) = await shifts_ahead(cast, 3)
    request = await cast.ask([shift])
    await cast.told(cast.ben, request["id"], "pending")
    await api.ok("POST", f"/v1/schedules/{cast.schedule_id}/overrides", None, json={
        "user_id": cast.cleo.id, "start": shift["start"], "end": shift["end"]}, idempotent=False)
    obsolete = await cast.reaches(request["id"], "obsolete")
    assert obsolete["reason"], obsolete
    await cast.told(cast.ada, request["id"], "obsolete")
    await cast.told(cast.ben, request["id"], "obsolete")
    await cast.expect_on_call(at(shift["start"]) + timedelta(minutes=1), "Cleo")


async def test_with_schedule_down_calls_still_route_and_an_acceptance_completes_when_it_returns(
    platform: Platform, cast: Cast, api: Api
) -> None:
    """Scenario 6: callrouter dials from the timeline schedule published; coverage waits for schedule."""
    (shift, *_) = await shifts_ahead(cast, 3)
    request = await cast.ask([shift])
    await cast.told(cast.ben, request["id"], "pending")
    await asyncio.to_thread(platform.stop_service, "schedule")
    try:
        alert = await scenarios.call_routed_to_on_call(cast, "Ada", caller())
        assert alert["acknowledged_by"] == cast.ada.id
        status, body = await api.call("POST", f"/v1/coverage-requests/{request['id']}/accept", cast.ben, json={},
                                      idempotent=True)
        assert status == 202 and body["status"] == "accepting", body
        await asyncio.sleep(2)
        assert (await cast.request(request["id"]))["status"] == "accepting"
    finally:
        await platform.restart("schedule")
    await cast.reaches(request["id"], "accepted")
    await cast.told(cast.ada, request["id"], "accepted")
    await cast.expect_on_call(at(shift["start"]) + timedelta(minutes=1), "Ben")
    assert iso(at(shift["start"]))


@dataclass
class Killer:
    """A checkpoint that SIGKILLs the services `plan` names for the step just done and starts them again in the
    background: the scenario goes on meanwhile, through the gateway, as users would."""

    platform: Platform
    plan: dict[str, tuple[str, ...]]
    restarts: list[asyncio.Task[Any]] = field(default_factory=list)

    async def __call__(self, step: str) -> None:
        for name in self.plan.get(step, ()):
            self.platform.kill(name)
            self.restarts.append(asyncio.create_task(self.platform.restart(name)))

    async def done(self) -> None:
        await asyncio.gather(*self.restarts)


async def test_each_service_sigkilled_in_the_middle_of_scenarios_1_and_5_loses_and_doubles_nothing(
    platform: Platform, cast: Cast, api: Api
) -> None:
    """Scenario 7: coverage and notifier die right after the request, schedule and callrouter right after the
    acceptance; callrouter and notifier right after the voicemail, schedule and coverage after the voice page.
    Each is SIGKILLed (nothing flushed, nothing committed in flight) and started again on its port."""
    killer = Killer(platform, {"requested": ("coverage", "notifier"), "accepted": ("schedule", "callrouter")})
    covered = await scenarios.coverage_accepted(cast, lead_s=30, checkpoint=killer)
    await killer.done()
    await scenarios.ben_on_call(cast, covered)  # whom the escalation pages must not change halfway
    killer = Killer(platform, {"voicemail": ("callrouter", "notifier"), "voice": ("schedule", "coverage")})
    alert = await scenarios.nobody_answers(cast, caller(), checkpoint=killer, strict=False)
    await killer.done()
    assert alert["acknowledged_by"] == cast.cleo.id
    assert (await cast.request(covered.request_id))["status"] == "accepted"
    for person in cast.people:
        shown = await api.pushes(person)
        assert scenarios.duplicates(shown) == [], (person.name, shown)


async def test_the_broker_restarted_in_the_middle_of_scenarios_1_and_5_loses_and_doubles_nothing(infra: Infra) -> None:
    """Scenario 7, the broker: noida (its log survives a restart) is stopped and started again right after the
    coverage request and right after the voicemail, while all four services keep running."""
    async with own_platform(infra, "platform-noida", "noida") as (started, own), aiohttp.ClientSession() as http:
        assert own.broker is not None
        broker = own.broker

        async def restart_broker(step: str) -> None:
            if step in ("requested", "voicemail"):
                await asyncio.to_thread(broker.restart)

        api = Api(started.doors, http)
        cast = await Cast.create(api, lambda _: None, QUICK_MINUTE_S)
        covered = await scenarios.coverage_accepted(cast, lead_s=30, checkpoint=restart_broker)
        await scenarios.ben_on_call(cast, covered)
        alert = await scenarios.nobody_answers(cast, caller(), checkpoint=restart_broker, strict=False)
        assert alert["acknowledged_by"] == cast.cleo.id
        assert (await cast.request(covered.request_id))["status"] == "accepted"
        for person in cast.people:
            assert scenarios.duplicates(await api.pushes(person)) == [], person.name
