"""Scenario 8, load: many coverage workflows and calls at once through the doors the other scenarios use
(tools.scenarios), each followed to its end with the guarantees of scenarios 1 and 4, and timed.

- A coverage workflow: Ada asks one person to cover one of her shifts; that person's phone shows the request;
  they accept; the request is accepted; Ada's phone and theirs show it. Timed from just before Ada's request is
  sent to the push's arrival on the recipient's phone (the APNs or FCM fake's clock; same machine).
- A call: a caller rings a cast's hotline and presses 1; Ada (on call) is dialed, answers, presses 1, is connected
  with the caller, and the call's alert is acknowledged by her; nobody else is dialed. Timed on the telephony
  simulator's own clock: the caller's key press to the moment the first responder's leg was placed.

Nothing stops at the first failure: a workflow or call that does not complete counts as `lost` (with the reason),
a notification shown twice on one phone (by collapse id) or a responder dialed twice for one call counts among
`duplicates`.

Each cast carries at most PER_CAST workflows (Ada asks Ben for two shifts and Cleo for two) and at most one call:
notifier lets 5 low-urgency pushes a minute reach one person and holds the rest for a summary, so piling the
workflows on a few people would measure that limit, not the platform.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tools import scenarios
from tools.fakes.inbox import Received
from tools.fakes.twilio.state import Party, Step
from tools.scenarios import WAIT_S, Api, Cast, Failed, Person, Say, at

PER_CAST = 4
# Casts set up at once: each is a dozen requests in a row and waits for its snapshots to reach the services.
BUILDERS = 8
# How often the phones are read (a workflow waits for its pushes on what was read last).
POLL_S = 0.25
# How long a call may take from the caller's ring to its end (the responder hangs up after TALK_S).
CALL_WITHIN_S = 60.0
TALK_S = 2.0
# After everything completed: time for a late second copy of a push to show up.
SETTLE_S = 2.0
ANSWERS_AND_ACCEPTS = Party(answer="answer", ring_s=1, steps=(Step.press("1"),), talk_s=TALK_S)
PRESSES_1 = Party(steps=(Step.press("1"),), talk_s=TALK_S)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(values: list[float], q: float) -> float | None:
    return round(percentile(values, q) * 1000, 1) if values else None


@dataclass
class Figures:
    """What a load run measured: latencies in seconds, and one line per lost flow and per duplicate."""

    workflows: int
    calls: int
    casts: int = 0
    coverage_s: list[float] = field(default_factory=list)  # request sent -> push on the recipient's phone
    dial_s: list[float] = field(default_factory=list)  # caller's key press -> first responder's leg placed
    covered: int = 0  # workflows that completed
    connected: int = 0  # calls that completed
    lost: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    setup_s: float = 0.0
    run_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "coverage_p50_ms": ms(self.coverage_s, 0.5),
            "coverage_p99_ms": ms(self.coverage_s, 0.99),
            "coverage_max_ms": round(max(self.coverage_s) * 1000, 1) if self.coverage_s else None,
            "dial_p50_ms": ms(self.dial_s, 0.5),
            "dial_p99_ms": ms(self.dial_s, 0.99),
            "dial_max_ms": round(max(self.dial_s) * 1000, 1) if self.dial_s else None,
            "lost": len(self.lost),
            "duplicates": len(self.duplicates),
            "workflows": self.workflows,
            "calls": self.calls,
            "workflows_completed": self.covered,
            "calls_completed": self.connected,
            "casts": self.casts,
            "setup_s": round(self.setup_s, 1),
            "run_s": round(self.run_s, 1),
        }


class Phones:
    """Every phone's pushes, read from the fakes by one poller: a poll per waiting workflow would load the machine
    more than the platform does."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.shown: dict[str, list[Received]] = {}

    async def watch(self) -> None:
        while True:
            self.shown = await self.api.phones()
            await asyncio.sleep(POLL_S)

    async def push(self, person: Person, request_id: str, status: str, timeout_s: float = WAIT_S) -> Received:
        """The push about the request in `status` on the person's phone; `Failed` if none within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for push in self.shown.get(person.device, []):
                if push.data.get("request_id") == request_id and push.data.get("status") == status:
                    return push
            await asyncio.sleep(POLL_S / 2)
        raise Failed(f"{person.name}'s phone shows no push about request {request_id} {status} within {timeout_s:.0f}s")


@dataclass
class Staged:
    """A cast with the shifts Ada will hand over (not started, one day each) and Ada's phone scripted to accept."""

    cast: Cast
    shifts: list[dict[str, Any]]

    def asks(self, count: int) -> list[tuple[Person, dict[str, Any]]]:
        """(recipient, shift) for `count` workflows: Ben and Cleo in turn."""
        return [((self.cast.ben, self.cast.cleo)[i % 2], self.shifts[i]) for i in range(count)]


async def stage(api: Api, count: int, say: Say) -> list[Staged]:
    gate = asyncio.Semaphore(BUILDERS)
    staged: list[Staged] = []

    async def one() -> None:
        async with gate:
            cast = await Cast.create(api, lambda _: None)
            tomorrow = datetime.now(UTC) + timedelta(days=1)
            listed = await cast.ada_shifts(tomorrow, tomorrow + timedelta(days=2 * PER_CAST + 2))
            day = timedelta(days=1)
            whole = [s for s in listed if at(s["start"]) > tomorrow and at(s["end"]) - at(s["start"]) == day]
            if len(whole) < PER_CAST:
                raise Failed(f"Ada's shifts are not the rotation's: {listed}")
            await cast.script(cast.ada, ANSWERS_AND_ACCEPTS)
            staged.append(Staged(cast, whole[:PER_CAST]))
            if len(staged) % 10 == 0:
                say(f"{len(staged)} of {count} casts set up")

    await asyncio.gather(*(one() for _ in range(count)))
    return staged


class Run:
    def __init__(self, api: Api, figures: Figures) -> None:
        self.api = api
        self.figures = figures
        self.phones = Phones(api)

    async def covered(self, cast: Cast, to: Person, shift: dict[str, Any]) -> None:
        asked = time.time()
        request = await cast.ask([shift], to=to)
        pending = await self.phones.push(to, request["id"], "pending")
        if pending.at is None:
            raise Failed(f"the push to {to.name} has no arrival time")
        self.figures.coverage_s.append(pending.at - asked)
        status, body = await self.api.call("POST", f"/v1/coverage-requests/{request['id']}/accept", to, json={},
                                           idempotent=True)
        if status not in (200, 202):
            raise Failed(f"{to.name}'s accept: HTTP {status} {body!r}")
        await self.phones.push(cast.ada, request["id"], "accepted")
        await self.phones.push(to, request["id"], "accepted")
        await cast.reaches(request["id"], "accepted")
        self.figures.covered += 1

    async def connected(self, cast: Cast, caller_number: str) -> None:
        sim = self.api.sim
        rang = datetime.now(UTC)
        call = await cast.ring(PRESSES_1, caller_number)
        caller = await sim.call(call["sid"], wait=CALL_WITHIN_S)
        legs = {p.name: await sim.calls(to=p.phone, from_=cast.hotline) for p in cast.people}
        ada = legs.pop(cast.ada.name)
        if len(ada) > 1:
            self.figures.duplicates.append(f"Ada dialed {len(ada)} times for the call from {caller_number}")
        pressed = next((e for e in caller["events"] if e["kind"] == "pressed" and e.get("taken")), None)
        if pressed is None or not ada:
            raise Failed(f"the call from {caller_number}: no key press taken or Ada never dialed: {caller['events']}")
        self.figures.dial_s.append((at(ada[0]["created"]) - at(pressed["at"])).total_seconds())
        if not any(call["sid"] in leg["bridged_with"] or leg["sid"] in caller["bridged_with"] for leg in ada):
            raise Failed(f"the call from {caller_number} was not connected with Ada: {caller['events']}")
        if others := {name: len(found) for name, found in legs.items() if found}:
            raise Failed(f"the call from {caller_number} dialed others besides Ada: {others}")
        await cast.acknowledged(caller_number, cast.ada, rang)
        self.figures.connected += 1

    async def counted(self, what: str, flow: Awaitable[None]) -> None:
        """Run one workflow or call; if it fails, count it lost with the reason instead of stopping the run."""
        try:
            await flow
        except Exception as exc:
            self.figures.lost.append(f"{what}: {type(exc).__name__}: {exc}")

    async def twice_shown(self, staged: list[Staged]) -> None:
        shown = await self.api.phones()
        for i, s in enumerate(staged):
            for person in s.cast.people:
                for collapse in scenarios.duplicates(shown.get(person.device, [])):
                    self.figures.duplicates.append(f"cast {i}: {person.name}'s phone shows {collapse} twice")


async def platform_load(api: Api, workflows: int = 200, calls: int = 50, say: Say = lambda _: None) -> Figures:
    """Scenario 8: `workflows` coverage workflows and `calls` calls, all started at once once their casts are set
    up; returns what was measured and what did not complete."""
    figures = Figures(workflows, calls)
    began = time.monotonic()
    casts = max(-(-workflows // PER_CAST), calls)
    say(f"setting up {casts} casts ({BUILDERS} at a time)")
    staged = await stage(api, casts, say)
    figures.casts, figures.setup_s = len(staged), time.monotonic() - began
    say(f"casts ready in {figures.setup_s:.1f}s; starting {workflows} coverage workflows and {calls} calls at once")
    run = Run(api, figures)
    watching = asyncio.create_task(run.phones.watch())
    started = time.monotonic()
    try:
        asks = [(s.cast, to, shift) for s in staged for to, shift in s.asks(PER_CAST)][:workflows]
        callers = [(s.cast, scenarios.phone_number()) for s in staged[:calls]]
        await asyncio.gather(
            *(run.counted(f"{c.ada.name} asks {to.name} ({c.team_id[:8]})", run.covered(c, to, shift))
              for c, to, shift in asks),
            *(run.counted(f"call from {number}", run.connected(c, number)) for c, number in callers),
        )
        figures.run_s = time.monotonic() - started
        say(f"all flows ended in {figures.run_s:.1f}s; {len(figures.lost)} lost")
        await asyncio.sleep(SETTLE_S)
        await run.twice_shown(staged)
    finally:
        watching.cancel()
    return figures
