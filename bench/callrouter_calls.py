"""Benchmarks `callrouter.digit_to_dial` and `callrouter.webhook`: callrouter as its own process on the real
local broker and PostgreSQL (KAFKA_BOOTSTRAP, DATABASE_URL), dialing through the telephony simulator
(tools.fakes.twilio, served in this process). Responders are unscripted in the simulator, so a dialed leg stays
queued and posts nothing back: the benchmark itself sends each webhook a real call would.

Every call has a routing number, a policy and a responder of its own (staged in callrouter's projections as
schedule would have published them), so the leg the simulator receives is known to be that call's.

- `callrouter.digit_to_dial`: the caller's digit (the signed menu-choice webhook) sent -> the first responder's
  leg requested from the provider (the simulator receives `Calls.create`). `--calls` calls at `--rate` per
  second, open loop: `p50_ms`, `p99_ms`, `n`, `lost` (no leg within 10 s). Target p99 < 100 ms.
- `callrouter.webhook`: webhook response time at `--webhook-rate` per second for `--seconds`, open loop, over
  the mix a call sends: incoming, menu choice, the queue's wait URL, the leg's ringing status, the responder
  answering, pressing a key (bridged), the caller's completed status: `rate_per_s` (achieved), `p50_ms`,
  `p99_ms`, `n`, `errors` (non-200 answers or legs never requested). Target p99 < 20 ms.

JSON lines on stdout (DESIGN §8); progress on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
from _coverage_setup import percentile, progress, running_services
from twilio.request_validator import RequestValidator

import shared.db
from services.callrouter import store
from shared.auth import issue_dev_token
from shared.db import transaction
from shared.messages import PolicyRule, PolicySnapshot, UserSnapshot
from shared.settings import ServiceSettings
from tools.fakes.twilio import Call, FakeTwilio

DIGIT = "callrouter.digit_to_dial"
WEBHOOK = "callrouter.webhook"
CALLER = "+4917700000009"
WEBHOOKS_PER_CALL = 7
STEP_GAP_S = 0.2


@dataclass(frozen=True)
class Target:
    """A routing number whose one option dials one responder."""

    number: str
    responder_phone: str
    policy_id: uuid.UUID


class Line:
    """Signed webhooks to callrouter, as the provider sends them."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str, auth_token: str) -> None:
        self.http, self.base_url, self.validator = http, base_url, RequestValidator(auth_token)

    async def hook(self, path: str, params: dict[str, str]) -> tuple[int, str, float]:
        """(status, body, seconds it took)."""
        url = self.base_url + path
        headers = {"X-Twilio-Signature": self.validator.compute_signature(url, params)}
        started = time.perf_counter()
        async with self.http.post(url, data=params, headers=headers) as resp:
            body = await resp.text()
        return resp.status, body, time.perf_counter() - started

    def path(self, url: str) -> str:
        return url.removeprefix(self.base_url)


async def stage(database_url: str, n: int) -> list[Target]:
    pool = await shared.db.create_pool(database_url, "callrouter")
    targets = [
        Target(f"+4930{random.randrange(10**9, 10**10)}", f"+4915{random.randrange(10**9, 10**10)}", uuid.uuid4())
        for _ in range(n)
    ]
    try:
        users = [uuid.uuid4() for _ in targets]
        async with transaction(pool) as conn:
            await store.upsert_responders(
                conn,
                [
                    UserSnapshot(
                        user_id=user,
                        version=1,
                        name=f"Bench {i}",
                        email=f"{user.hex}@bench.test",
                        phone=t.responder_phone,
                        time_zone="Europe/Berlin",
                        language="en-US",
                        role="responder",
                        active=True,
                    )
                    for i, (user, t) in enumerate(zip(users, targets, strict=True))
                ],
            )
            await store.upsert_policies(
                conn,
                [
                    PolicySnapshot(
                        policy_id=t.policy_id,
                        version=1,
                        name=f"Bench {i}",
                        repeat=0,
                        rules=[PolicyRule(timeout_minutes=5, user_ids=[user])],
                    )
                    for i, (user, t) in enumerate(zip(users, targets, strict=True))
                ],
            )
    finally:
        await pool.close()
    return targets


async def route(http: aiohttp.ClientSession, base_url: str, targets: list[Target]) -> None:
    secret = ServiceSettings().jwt_secret.get_secret_value()
    admin = {"Authorization": "Bearer " + issue_dev_token(secret, uuid.uuid4(), "admin")}
    gate = asyncio.Semaphore(16)

    async def one(t: Target) -> None:
        body = {
            "number": t.number,
            "name": "Bench line",
            "options": [{"digit": "1", "name": "Ops", "policy_id": str(t.policy_id)}],
        }
        async with gate, http.post(f"{base_url}/v1/routing-numbers", json=body, headers=admin) as resp:
            if resp.status != 201:
                raise RuntimeError(f"routing number: {resp.status} {await resp.text()}")

    await asyncio.gather(*(one(t) for t in targets))


async def open_loop(rate: float, n: int, fire: Callable[[int], Awaitable[None]]) -> None:
    """Start fire(i) at `rate` per second without waiting for the earlier ones."""
    tasks, started = [], time.perf_counter()
    for i in range(n):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(fire(i)))
    await asyncio.gather(*tasks)


async def served_within(http: aiohttp.ClientSession, base_url: str) -> dict[str, float]:
    """From callrouter's own latency histogram (its /metrics): the share of webhooks it served within each
    bucket bound, measured inside the service, without this process's own delays."""
    async with http.get(f"{base_url}/metrics") as resp:
        text = await resp.text()
    by_bound: dict[str, float] = {}
    total = 0.0
    for line in text.splitlines():
        if line.startswith("http_request_seconds_bucket") and 'route="/webhooks/twilio' in line:
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            count = float(line.rsplit(" ", 1)[1])
            by_bound[bound] = by_bound.get(bound, 0.0) + count
            if bound == "+Inf":
                total += count
    return {f"<={b}s": round(100 * c / total, 1) for b, c in by_bound.items() if b in ("0.01", "0.025", "0.05")}


def action_of(twiml: str) -> str:
    start = twiml.index('action="') + len('action="')
    return twiml[start : twiml.index('"', start)]


def ms(values: list[float], q: float) -> float | None:
    return round(percentile(values, q) * 1000, 1) if values else None


class Legs:
    """The legs the simulator was asked to place, by the number dialed: one watcher scans new calls every few
    milliseconds (a poll per waiting call would load this process more than callrouter)."""

    def __init__(self, sim: FakeTwilio) -> None:
        self.sim = sim
        self.seen = 0
        self.waiting: dict[str, asyncio.Future[Call]] = {}
        self.placed: dict[str, Call] = {}
        self.task = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            calls = list(self.sim.state.calls.values())
            for call in calls[self.seen :]:
                self.placed.setdefault(call.to, call)
                waiter = self.waiting.get(call.to)
                if waiter is not None and not waiter.done():
                    waiter.set_result(call)
            self.seen = len(calls)
            await asyncio.sleep(0.002)

    async def to(self, phone: str) -> Call | None:
        """The first leg placed to `phone` (every call of the benchmark dials a number of its own)."""
        if phone in self.placed:
            return self.placed[phone]
        self.waiting[phone] = asyncio.get_running_loop().create_future()
        try:
            return await asyncio.wait_for(self.waiting[phone], timeout=10)
        except TimeoutError:
            return None
        finally:
            del self.waiting[phone]

    def stop(self) -> None:
        self.task.cancel()


async def digit_to_dial(line: Line, legs: Legs, targets: list[Target], rate: float) -> dict[str, object]:
    latencies: list[float] = []
    lost = 0

    async def one(i: int) -> None:
        nonlocal lost
        t, sid = targets[i], f"CA{uuid.uuid4().hex}"
        _, menu, _ = await line.hook(
            "/webhooks/twilio/calls/incoming", {"CallSid": sid, "From": CALLER, "To": t.number}
        )
        sent = time.time()
        await line.hook(line.path(action_of(menu)), {"CallSid": sid, "Digits": "1"})
        leg = await legs.to(t.responder_phone)
        if leg is None:
            lost += 1
        else:
            latencies.append(leg.created.timestamp() - sent)

    await open_loop(rate, len(targets), one)
    return {
        "bench": DIGIT,
        "rate_per_s": rate,
        "p50_ms": ms(latencies, 0.5),
        "p99_ms": ms(latencies, 0.99),
        "n": len(latencies),
        "lost": lost,
        "target_p99_ms": 100,
    }


async def webhooks(line: Line, legs: Legs, targets: list[Target], rate: float, seconds: float) -> dict[str, object]:
    """Calls walked through their webhooks (one every STEP_GAP_S), started at rate / WEBHOOKS_PER_CALL a second,
    so that together they send `rate` webhooks a second."""
    gap = STEP_GAP_S
    timings: list[float] = []
    by_step: dict[str, list[float]] = {}
    errors = 0

    async def step(path: str, params: dict[str, str]) -> str:
        nonlocal errors
        status, body, took = await line.hook(path, params)
        timings.append(took)
        by_step.setdefault(path.rsplit("/", 1)[-1], []).append(took)
        errors += status != 200
        await asyncio.sleep(gap)
        return body

    async def one(i: int) -> None:
        nonlocal errors
        t, sid = targets[i], f"CA{uuid.uuid4().hex}"
        menu = await step("/webhooks/twilio/calls/incoming", {"CallSid": sid, "From": CALLER, "To": t.number})
        held = await step(line.path(action_of(menu)), {"CallSid": sid, "Digits": "1"})
        wait_url = held[held.index('waitUrl="') + 9 :]
        await step(line.path(wait_url[: wait_url.index('"')]), {"CallSid": sid, "QueuePosition": "1"})
        leg = await legs.to(t.responder_phone)
        if leg is None or leg.url is None:
            errors += 1
            return
        leg_path = line.path(leg.url).rsplit("/", 1)[0]
        await step(f"{leg_path}/status", {"CallSid": leg.sid, "CallStatus": "ringing"})
        await step(f"{leg_path}/answer", {"CallSid": leg.sid, "CallStatus": "in-progress"})
        await step(f"{leg_path}/input", {"CallSid": leg.sid, "Digits": "1"})
        await step("/webhooks/twilio/calls/status", {"CallSid": sid, "CallStatus": "completed"})

    started = time.perf_counter()
    await open_loop(len(targets) / seconds, len(targets), one)
    achieved = len(timings) / (time.perf_counter() - started)
    return {
        "bench": WEBHOOK,
        "rate_per_s": round(achieved, 1),
        "offered_per_s": rate,
        "p50_ms": ms(timings, 0.5),
        "p99_ms": ms(timings, 0.99),
        "n": len(timings),
        "errors": errors,
        "target_p99_ms": 20,
        "p99_ms_by_webhook": {k: ms(v, 0.99) for k, v in sorted(by_step.items())},
    }


async def main(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    webhook_calls = max(1, round(args.webhook_rate * args.seconds / WEBHOOKS_PER_CALL))
    targets = await stage(os.environ["DATABASE_URL"], args.calls + webhook_calls)
    progress(t0, f"{len(targets)} responders and policies staged")
    async with FakeTwilio.running(time_scale=1.0) as sim:

        def telephony(port: int) -> dict[str, str]:
            return {
                "TWILIO_ACCOUNT_SID": sim.account_sid,
                "TWILIO_AUTH_TOKEN": sim.auth_token,
                "TWILIO_API_URL": sim.url,
                "PUBLIC_WEBHOOK_URL": f"http://127.0.0.1:{port}",
                "LOG_LEVEL": "WARNING",
            }

        async with (
            running_services("callrouter", extra={"callrouter": telephony}) as procs,
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000)) as http,
        ):
            base_url = procs["callrouter"].base_url
            await route(http, base_url, targets)
            progress(t0, "callrouter ready, routing numbers created")
            line = Line(http, base_url, sim.auth_token)
            legs = Legs(sim)
            print(json.dumps(await digit_to_dial(line, legs, targets[: args.calls], args.rate)), flush=True)
            progress(t0, "digit_to_dial done")
            result = await webhooks(line, legs, targets[args.calls :], args.webhook_rate, args.seconds)
            result["served_within_pct"] = await served_within(http, base_url)  # both phases' webhooks
            legs.stop()
            print(json.dumps(result), flush=True)
            progress(t0, "webhook done")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300, help="calls for digit_to_dial")
    parser.add_argument("--rate", type=float, default=20.0, help="digit_to_dial calls per second")
    parser.add_argument("--webhook-rate", type=float, default=300.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    sys.exit(asyncio.run(main(parser.parse_args())))
