"""Benchmark `coverage.accept_to_notified`: from a recipient's accept POST until both people are told, across
coverage -> Kafka -> schedule (applies the coverage, answers CoverageApplied) -> Kafka -> coverage -> outbox
-> Kafka, on the real local broker and PostgreSQL (KAFKA_BOOTSTRAP, DATABASE_URL).

schedule and coverage run as their own processes (notifier is not needed: the benchmark reads
notifier.commands.v1, coverage.requests.v1 and schedule.coverage.v1 itself, with no consumer group, from the
end offsets taken before the accepts). Seeded as in coverage_create_to_push: `--pairs` requester/recipient
pairs with their own team and daily rotation. Then `--requests` pending requests of one shift each are
created (untimed, a few at a time, until their `created` notifications are out), and accepted by their
recipient at `--rate` per second, open loop.

Measured per request: from just before the accept POST to the moment both `accepted` SendNotifications (to
the requester and to the covering user) have been read. Printed as one JSON line: `rate_per_s` (the offered
rate achieved), `p50_ms`, `p99_ms`, `n` (accepts answered 200 or 202), `lost` (of those, not both told 30 s
after the last answer), `http_p50_ms`/`http_p99_ms`, `http_200`/`http_202` (accept waits up to 1.5 s for
schedule's answer, then says 202), `errors` (other answers), `rejected` (schedule refused: should be 0), and
`stages_ms`, where the time goes, from the records' CreateTime (set when a service's outbox relay hands the
row to its producer): `post_to_accepted_sent` (coverage: HTTP, commit, relay), `schedule`
(CoverageRequestAccepted sent -> CoverageApplied sent: broker, schedule's fetch, apply, commit, relay),
`coverage_answer` (CoverageApplied sent -> the later notification sent: broker, coverage's fetch, commit,
relay), `notified_send_to_read` (broker and this reader's fetch, which waits at most 5 ms). `--dump` writes
each request's time stamps. Exit status 1 if any accept failed, was rejected or left someone untold.
Target: p99 < 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass

import aiohttp
from _coverage_setup import (
    Pair,
    Watch,
    open_loop,
    percentile,
    progress,
    running_services,
    seed_pairs,
    spread,
    wait_for_projection,
)

from shared.topics import COVERAGE_OUTCOMES, COVERAGE_REQUESTS, NOTIFICATION_COMMANDS

NAME = "coverage.accept_to_notified"
TARGET_P99_MS = 50


@dataclass
class Pending:
    pair: Pair
    request_id: str
    started: float = 0.0
    answered: float = 0.0
    status: int = 0

    def told(self) -> tuple[tuple[str, str, str], tuple[str, str, str]]:
        """The keys of the two `accepted` notifications: to the requester and to the covering recipient."""
        return (self.request_id, "accepted", self.pair.requester), (self.request_id, "accepted", self.pair.recipient)


async def create_pending(
    http: aiohttp.ClientSession, coverage_url: str, pairs: list[Pair], n: int, concurrency: int = 8
) -> list[Pending]:
    """`n` pending one-shift requests, spread over the pairs (request i: pair i % P, its next shift)."""
    if min(len(p.shifts) for p in pairs) * len(pairs) < n:
        raise RuntimeError(f"{len(pairs)} pairs cannot take {n} requests: raise --pairs")
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> Pending:
        pair = pairs[i % len(pairs)]
        async with gate, http.post(
            f"{coverage_url}/v1/coverage-requests",
            json=pair.body(pair.shifts[i // len(pairs)]),
            headers=pair.requester_auth,
        ) as resp:
            answer = await resp.json()
            if resp.status != 201:
                raise RuntimeError(f"create: {resp.status} {answer}")
            return Pending(pair, answer["id"])

    return list(await asyncio.gather(*(one(i) for i in range(n))))


def dump(path: str, jobs: list[Pending], watch: Watch) -> None:
    """Each request's time stamps as a JSON line, for looking closer at where the time went."""
    with open(path, "w") as out:
        for j in jobs:
            seen = {k[1]: vars(v) for k, v in watch.events.items() if k[0] == j.request_id}
            for k in j.told():
                if k in watch.notes:
                    seen[f"accepted:{'requester' if k[2] == j.pair.requester else 'recipient'}"] = vars(watch.notes[k])
            row = {"id": j.request_id, "started": j.started, "answered": j.answered, "status": j.status, "seen": seen}
            print(json.dumps(row), file=out)


async def main(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    watch = Watch(os.environ["KAFKA_BOOTSTRAP"], [NOTIFICATION_COMMANDS, COVERAGE_REQUESTS, COVERAGE_OUTCOMES])
    async with running_services("schedule", "coverage") as procs:
        progress(t0, "schedule and coverage ready")
        schedule_url, coverage_url = procs["schedule"].base_url, procs["coverage"].base_url
        connector = aiohttp.TCPConnector(limit=1000)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as http:
            pairs = await seed_pairs(http, schedule_url, args.pairs)
            progress(t0, f"seeded {len(pairs)} pairs")
            await wait_for_projection(http, coverage_url, pairs)
            progress(t0, "coverage knows them")
            await watch.start()
            try:
                jobs = await create_pending(http, coverage_url, pairs, args.requests)
                if not await watch.wait(
                    lambda: all((j.request_id, "created", j.pair.recipient) in watch.notes for j in jobs), 60.0
                ):
                    raise RuntimeError("the pending requests' notifications did not all arrive")
                await asyncio.sleep(1.0)
                progress(t0, f"{len(jobs)} pending; accepting at {args.rate:g}/s")

                async def fire(i: int) -> None:
                    job = jobs[i]
                    job.started = time.time()
                    try:
                        async with http.post(
                            f"{coverage_url}/v1/coverage-requests/{job.request_id}/accept",
                            json={},
                            headers=job.pair.recipient_auth,
                        ) as resp:
                            answer = await resp.json(content_type=None)
                            job.status = resp.status
                    except (aiohttp.ClientError, TimeoutError) as exc:
                        job.answered = time.time()
                        print(f"accept {i}: {exc!r}", file=sys.stderr)
                        return
                    job.answered = time.time()
                    if resp.status not in (200, 202) and sum(1 for j in jobs if j.status not in (0, 200, 202)) <= 5:
                        print(f"accept {i}: {resp.status} {answer}", file=sys.stderr)

                load = await open_loop(args.rate, len(jobs), fire)
                progress(t0, "all answered")
                taken = [j for j in jobs if j.status in (200, 202)]
                await watch.wait(lambda: all(k in watch.notes for j in taken for k in j.told()), 30.0)
            finally:
                await watch.stop()

    told = [j for j in taken if all(k in watch.notes for k in j.told())]
    latencies = [max(watch.notes[k].read_at for k in j.told()) - j.started for j in told]
    http_latencies = [j.answered - j.started for j in jobs if j.answered]
    events = watch.events
    sent_to_schedule = [j for j in told if (j.request_id, "CoverageRequestAccepted") in events]
    applied = [j for j in sent_to_schedule if (j.request_id, "CoverageApplied") in events]
    rejected = sum(1 for j in jobs if (j.request_id, "CoverageRejected") in events)

    def notified_sent(j: Pending) -> float:
        return max(watch.notes[k].created_at for k in j.told())

    errors = len(jobs) - len(taken)
    lost = len(taken) - len(told)
    figure = {
        "bench": NAME,
        "rate_per_s": load.rate_per_s,
        "p50_ms": round(percentile(latencies, 0.5) * 1000, 1) if latencies else None,
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 1) if latencies else None,
        "max_ms": round(max(latencies) * 1000, 1) if latencies else None,
        "n": len(taken),
        "lost": lost,
        "http_p50_ms": round(percentile(http_latencies, 0.5) * 1000, 1) if http_latencies else None,
        "http_p99_ms": round(percentile(http_latencies, 0.99) * 1000, 1) if http_latencies else None,
        "http_200": sum(1 for j in jobs if j.status == 200),
        "http_202": sum(1 for j in jobs if j.status == 202),
        "errors": errors,
        "rejected": rejected,
        "target_p99_ms": TARGET_P99_MS,
        "pairs": len(pairs),
        "send_lag_p99_ms": round(load.lag_p99_s * 1000, 1),
        "stages_ms": {
            "post_to_accepted_sent": spread(
                [events[(j.request_id, "CoverageRequestAccepted")].created_at - j.started for j in sent_to_schedule]
            ),
            "schedule": spread(
                [
                    events[(j.request_id, "CoverageApplied")].created_at
                    - events[(j.request_id, "CoverageRequestAccepted")].created_at
                    for j in applied
                ]
            ),
            "coverage_answer": spread(
                [notified_sent(j) - events[(j.request_id, "CoverageApplied")].created_at for j in applied]
            ),
            "notified_send_to_read": spread(
                [max(watch.notes[k].read_at for k in j.told()) - notified_sent(j) for j in told]
            ),
        },
    }
    print(json.dumps(figure), flush=True)
    if args.dump:
        dump(args.dump, jobs, watch)
    if errors or lost or rejected or not latencies:
        print(f"error: {errors} accepts failed, {lost} not notified, {rejected} rejected", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=50.0, help="accepts offered per second")
    parser.add_argument("--requests", type=int, default=500, help="pending requests created, then accepted")
    parser.add_argument("--pairs", type=int, default=200, help="requester/recipient pairs (each ~30 shifts)")
    parser.add_argument("--dump", help="write each request's time stamps (JSON lines) to this file")
    sys.exit(asyncio.run(main(parser.parse_args())))
