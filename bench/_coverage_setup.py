"""Shared set-up of the coverage benchmarks (a helper, not a benchmark: bench_runner skips `_*.py`).

- `running_services`: schedule and coverage as OS processes on free ports against DATABASE_URL and
  KAFKA_BOOTSTRAP, their logs in a temporary directory (kept, and named on stderr, if the benchmark fails or
  BENCH_KEEP_LOGS is set); always terminated at the end.
- `seed_pairs`: through schedule's API, many requester/recipient pairs: two users in their own team, and
  their own schedule (UTC) with a daily rotation [requester, recipient], so each requester holds every other
  day of the published 62-day horizon.
- `wait_for_projection`: polls coverage's GET /v1/coverage-requests/shifts as each requester until coverage's
  projection lists their shifts, then creates one (untimed) warm-up request per pair, retried until coverage
  knows the users and the team too.
- `Watch`: reads topics with a plain consumer (no group, every partition, from the end offsets taken when it
  starts) and time-stamps each record as it is read, keyed by the request it is about.
- `open_loop`: fires a coroutine at a fixed rate without waiting for the previous one.

Every time stamp is wall-clock (time.time()), so that it can be compared with the Kafka records' CreateTime,
which the services' producers set when the outbox relay hands them the row.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.auth import issue_dev_token
from shared.kafka import ensure_topics
from shared.settings import DEV_JWT_SECRET
from shared.topics import Topic
from tools.infra import free_port
from tools.procs import ServiceProcess, start_service, tail

JWT_SECRET = os.environ.get("JWT_SECRET", DEV_JWT_SECRET)
# Short sessions make group joins on Tansu quick (as tests/conftest.py does).
SESSION_TIMEOUT_MS = "6000"
# A shift is only offered if it starts this much later than now: not started during the run, and its
# reminder (60 min before) does not fire during the run either.
MARGIN = timedelta(hours=3)
HORIZON = timedelta(days=62)


def bearer(user_id: str | uuid.UUID, role: str = "responder") -> dict[str, str]:
    return {"Authorization": "Bearer " + issue_dev_token(JWT_SECRET, str(user_id), role, ttl_s=3600)}  # type: ignore[arg-type]


ADMIN = bearer(uuid.uuid4(), "admin")


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def spread(values: Sequence[float]) -> dict[str, float | None]:
    """p50/p99/max in ms of values in seconds (None when there are none)."""
    if not values:
        return {"p50": None, "p99": None, "max": None}
    return {
        "p50": round(percentile(values, 0.5) * 1000, 1),
        "p99": round(percentile(values, 0.99) * 1000, 1),
        "max": round(max(values) * 1000, 1),
    }


def progress(started: float, what: str) -> None:
    """A line on stderr: how long the run has taken so far (stdout carries only the figures)."""
    print(f"# {time.monotonic() - started:6.1f}s {what}", file=sys.stderr, flush=True)


def env() -> dict[str, str]:
    return {
        "DATABASE_URL": os.environ["DATABASE_URL"],
        "KAFKA_BOOTSTRAP": os.environ["KAFKA_BOOTSTRAP"],
        "KAFKA_SESSION_TIMEOUT_MS": SESSION_TIMEOUT_MS,
        "JWT_SECRET": JWT_SECRET,
    }


@contextlib.asynccontextmanager
async def running_services(
    *names: str, extra: dict[str, Callable[[int], dict[str, str]]] | None = None
) -> AsyncIterator[dict[str, ServiceProcess]]:
    """The services started, ready, and terminated at the end however the benchmark ends; `extra[name](port)`
    adds settings to a service that depend on its port (e.g. the public URL its webhooks are signed for)."""
    logs = Path(tempfile.mkdtemp(prefix="oncall-bench-coverage-"))
    procs: dict[str, ServiceProcess] = {}
    ok = False
    try:
        for name in names:
            port = free_port()
            own = (extra or {}).get(name, lambda _: {})(port)
            procs[name] = start_service(name, env=env() | own, port=port, log_path=logs / f"{name}.log")
        await asyncio.gather(*(asyncio.to_thread(p.wait_ready, 90) for p in procs.values()))
        yield procs
        ok = all(p.alive for p in procs.values())
    finally:
        for proc in reversed(procs.values()):
            died = not proc.alive
            await asyncio.to_thread(proc.terminate)
            if died:
                ok = False
                print(f"{proc.name} died during the benchmark:\n{tail(proc.log_path)}", file=sys.stderr)
        if ok and not os.environ.get("BENCH_KEEP_LOGS"):
            shutil.rmtree(logs, ignore_errors=True)
        else:
            print(f"service logs kept in {logs}", file=sys.stderr)


def midnight(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass
class Pair:
    """A requester, the recipient they ask, their schedule, and the requester's shifts still to hand over."""

    requester: str
    recipient: str
    schedule_id: str
    shifts: list[dict[str, str]] = field(default_factory=list)

    @property
    def requester_auth(self) -> dict[str, str]:
        return bearer(self.requester)

    @property
    def recipient_auth(self) -> dict[str, str]:
        return bearer(self.recipient)

    def body(self, shift: dict[str, str]) -> dict[str, Any]:
        """A request asking the recipient to take exactly this one shift."""
        return {"recipient_ids": [self.recipient], "start": shift["start"], "end": shift["end"], "shifts": [shift]}


async def _post(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> dict[str, Any]:
    async with http.post(url, json=body, headers=ADMIN) as resp:
        answer = await resp.json()
        if resp.status != 201:
            raise RuntimeError(f"POST {url}: {resp.status} {answer}")
        return answer  # type: ignore[no-any-return]


async def seed_pairs(http: aiohttp.ClientSession, schedule_url: str, count: int, concurrency: int = 16) -> list[Pair]:
    """`count` pairs, each with its own team and daily-rotation schedule, created through schedule's API."""
    run = uuid.uuid4().hex[:8]
    handoff = (midnight(datetime.now(UTC)) - timedelta(days=28)).strftime("%Y-%m-%dT%H:%M:%S")
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> Pair:
        async with gate:
            ids = []
            for role in ("requester", "recipient"):
                body = {"name": f"Bench {role} {i}", "email": f"{run}-{i}-{role}@example.com", "time_zone": "UTC"}
                ids.append((await _post(http, f"{schedule_url}/v1/users", body))["id"])
            team = await _post(http, f"{schedule_url}/v1/teams", {"name": f"Bench {run} {i}", "member_ids": ids})
            schedule = await _post(
                http,
                f"{schedule_url}/v1/schedules",
                {
                    "name": f"Bench {run} {i}",
                    "time_zone": "UTC",
                    "team_id": team["id"],
                    "layers": [{"users": ids, "length": 1, "unit": "days", "handoff": handoff}],
                },
            )
            return Pair(ids[0], ids[1], schedule["id"])

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def wait_for_projection(
    http: aiohttp.ClientSession, coverage_url: str, pairs: list[Pair], timeout_s: float = 120.0
) -> None:
    """Until coverage lists each requester's shifts (kept in `pair.shifts`, soonest first, those starting
    within MARGIN left out) and has accepted one warm-up request per pair (which takes the latest shift)."""
    deadline = time.monotonic() + timeout_s
    gate = asyncio.Semaphore(16)

    async def ready(pair: Pair) -> None:
        async with gate:
            now = datetime.now(UTC)
            span = {"from": now.isoformat(), "to": (now + HORIZON).isoformat()}
            while True:
                async with http.get(
                    f"{coverage_url}/v1/coverage-requests/shifts", params=span, headers=pair.requester_auth
                ) as resp:
                    listed = await resp.json()
                    if resp.status != 200:
                        raise RuntimeError(f"GET my shifts: {resp.status} {listed}")
                soon = now + MARGIN
                pair.shifts = [
                    {"schedule_id": s["schedule_id"], "start": s["start"], "end": s["end"]}
                    for s in listed
                    if s["schedule_id"] == pair.schedule_id
                    and s["open_request_id"] is None
                    and datetime.fromisoformat(s["start"]) > soon
                ]
                if len(pair.shifts) >= 2:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"coverage never listed the shifts of {pair.requester}")
                await asyncio.sleep(0.2)
            warm_up = pair.shifts.pop()
            while True:
                async with http.post(
                    f"{coverage_url}/v1/coverage-requests", json=pair.body(warm_up), headers=pair.requester_auth
                ) as resp:
                    answer = await resp.json()
                    if resp.status == 201:
                        return
                # 422 while coverage does not know the recipient or the team yet
                if resp.status != 422 or time.monotonic() > deadline:
                    raise RuntimeError(f"warm-up request: {resp.status} {answer}")
                await asyncio.sleep(0.2)

    await asyncio.gather(*(ready(p) for p in pairs))


@dataclass(frozen=True)
class Seen:
    """One record as the watcher read it: when (wall clock, s), and its CreateTime (s)."""

    read_at: float
    created_at: float
    type: str


class Watch:
    """Reads `topics` from the end offsets taken in `start()` and keeps, per request id, every record about it:
    `notes[(request_id, what, user_id)]` for SendNotification (from its idempotency key
    `coverage-request:<id>:<what>:<user>`), `events[(request_id, type)]` for the rest (the first of each)."""

    def __init__(self, bootstrap: str, topics: Sequence[Topic], fetch_max_wait_ms: int = 5) -> None:
        self._bootstrap = bootstrap
        self._topics = list(topics)
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self.notes: dict[tuple[str, str, str], Seen] = {}
        self.events: dict[tuple[str, str], Seen] = {}
        self.records = 0

    async def start(self) -> None:
        await ensure_topics(self._bootstrap, self._topics)
        # No group: every partition, no join (which on Tansu costs seconds).
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap, group_id=None, fetch_max_wait_ms=self._fetch_max_wait_ms
        )
        await consumer.start()
        self._consumer = consumer
        parts = [TopicPartition(t.name, p) for t in self._topics for p in range(t.partitions)]
        consumer.assign(parts)
        ends = await consumer.end_offsets(parts)
        for part in parts:
            consumer.seek(part, ends[part])
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._consumer is not None
        while True:
            batch = await self._consumer.getmany(timeout_ms=200)
            read_at = time.time()
            for records in batch.values():
                for record in records:
                    self.records += 1
                    self._keep(record.value or b"", read_at, record.timestamp / 1000)

    def _keep(self, value: bytes, read_at: float, created_at: float) -> None:
        try:
            payload = json.loads(value)
        except ValueError:
            return
        kind = payload.get("type", "")
        seen = Seen(read_at, created_at, kind)
        if kind == "SendNotification":
            prefix, request_id, rest = [*str(payload.get("idempotency_key", "")).split(":", 2), "", ""][:3]
            if prefix == "coverage-request" and ":" in rest:
                what, user_id = rest.rsplit(":", 1)
                self.notes.setdefault((request_id, what, user_id), seen)
        elif "request_id" in payload:
            self.events.setdefault((str(payload["request_id"]), kind), seen)

    async def wait(self, done: Callable[[], bool], timeout_s: float) -> bool:
        """Until `done()` holds (True) or `timeout_s` passed (False)."""
        deadline = time.monotonic() + timeout_s
        while not done():
            if self._task is not None and self._task.done():
                self._task.result()  # the reader failed: say why
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()


@dataclass(frozen=True)
class Load:
    """How an open-loop run went: the offered rate achieved, and how late the timer fired requests (s)."""

    rate_per_s: float
    lag_p99_s: float
    lag_max_s: float


async def open_loop(rate: float, n: int, fire: Callable[[int], Awaitable[None]]) -> Load:
    """Start `fire(i)` for i in 0..n-1 at `rate` per second, each on its own task (not waiting for the
    previous one); returns when all have finished."""
    tasks = []
    lags = []
    started = time.perf_counter()
    last = started
    for i in range(n):
        due = started + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        last = time.perf_counter()
        lags.append(max(0.0, last - due))
        tasks.append(asyncio.create_task(fire(i)))
    await asyncio.gather(*tasks)
    achieved = (n - 1) / (last - started) if n > 1 and last > started else float(n)
    return Load(round(achieved, 1), percentile(lags, 0.99), max(lags))
