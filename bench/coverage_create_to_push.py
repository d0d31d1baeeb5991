"""Benchmark `coverage.create_to_push`: from a coverage request's POST to its push command on Kafka, under a
fixed offered load, on the real local broker and PostgreSQL (KAFKA_BOOTSTRAP, DATABASE_URL).

schedule and coverage run as their own processes (notifier is not needed: the benchmark reads
notifier.commands.v1 itself, with no consumer group, from the end offsets taken before the load). Seeded
through schedule's API: `--pairs` requester/recipient pairs, each in its own team with its own daily rotation
[requester, recipient] in UTC; the load starts once coverage's projection lists every requester's shifts.

Then `--rate` create requests per second for `--seconds`, open loop (sent on a timer, never waiting for
earlier answers), each asking one pair's recipient to take one distinct future shift of the requester.
Measured per request: from just before the POST is sent to the moment its `created` SendNotification for the
recipient is read from notifier.commands.v1. Printed as one JSON line:
`rate_per_s` (the offered rate achieved), `p50_ms`, `p99_ms`, `n` (requests answered 201), `errors`
(non-201 answers), `lost` (201s whose notification had not arrived 30 s after the last answer), the HTTP
answer's latency (`http_p50_ms`, `http_p99_ms`), `send_lag_p99_ms` (how late this client fired requests:
large means the client, not the service, was starved), and `stages_ms` (p50/p99/max), where the time goes,
from the records' CreateTime (set when coverage's outbox relay hands the row to its producer):
`post_to_relay_send` (HTTP, commit, relay wake-up and read), `http_answer_to_relay_send` (the relay's lag
behind the committed answer; negative when it sent before the client read the answer), `relay_send_to_read`
(producer linger, broker, this reader's fetch, which waits at most 5 ms). `--dump` writes each request's time
stamps. Exit status 1 if any request failed or any notification was lost. Target: p99 < 50 ms.
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

from shared.topics import NOTIFICATION_COMMANDS

NAME = "coverage.create_to_push"
TARGET_P99_MS = 50


@dataclass
class Sent:
    pair: Pair
    started: float
    answered: float = 0.0
    status: int = 0
    request_id: str = ""


def dump(path: str, jobs: list[Sent], watch: Watch) -> None:
    """Each request's time stamps as a JSON line, for looking closer at where the time went."""
    with open(path, "w") as out:
        for j in jobs:
            seen = watch.notes.get((j.request_id, "created", j.pair.recipient))
            row = {"id": j.request_id, "started": j.started, "answered": j.answered, "status": j.status}
            print(json.dumps(row | {"seen": vars(seen) if seen else None}), file=out)


async def main(args: argparse.Namespace) -> int:
    n = int(args.rate * args.seconds)
    t0 = time.monotonic()
    async with running_services("schedule", "coverage") as procs:
        progress(t0, "schedule and coverage ready")
        schedule_url, coverage_url = procs["schedule"].base_url, procs["coverage"].base_url
        connector = aiohttp.TCPConnector(limit=1000)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as http:
            pairs = await seed_pairs(http, schedule_url, args.pairs)
            progress(t0, f"seeded {len(pairs)} pairs")
            await wait_for_projection(http, coverage_url, pairs)
            progress(t0, "coverage knows them")
            per_pair = min(len(p.shifts) for p in pairs)
            if per_pair * len(pairs) < n:
                raise RuntimeError(f"{len(pairs)} pairs x {per_pair} shifts cannot take {n} requests: raise --pairs")
            # Request i goes to pair i % P and takes that pair's next shift: consecutive requests of one pair
            # are P/rate seconds apart, and no shift is asked for twice.
            jobs = [Sent(pairs[i % len(pairs)], 0.0) for i in range(n)]
            shifts = [pairs[i % len(pairs)].shifts[i // len(pairs)] for i in range(n)]
            watch = Watch(os.environ["KAFKA_BOOTSTRAP"], [NOTIFICATION_COMMANDS])
            await watch.start()
            try:
                await asyncio.sleep(1.0)  # let the warm-up's notifications go by

                async def fire(i: int) -> None:
                    job = jobs[i]
                    job.started = time.time()
                    try:
                        async with http.post(
                            f"{coverage_url}/v1/coverage-requests",
                            json=job.pair.body(shifts[i]),
                            headers=job.pair.requester_auth,
                        ) as resp:
                            answer = await resp.json(content_type=None)
                            job.status = resp.status
                    except (aiohttp.ClientError, TimeoutError) as exc:
                        job.answered = time.time()
                        print(f"request {i}: {exc!r}", file=sys.stderr)
                        return
                    job.answered = time.time()
                    if resp.status == 201:
                        job.request_id = answer["id"]
                    elif sum(1 for j in jobs if j.status not in (0, 201)) <= 5:
                        print(f"request {i}: {resp.status} {answer}", file=sys.stderr)

                progress(t0, f"offering {n} creates at {args.rate:g}/s")
                load = await open_loop(args.rate, n, fire)
                progress(t0, "all answered")
                created = [j for j in jobs if j.status == 201]

                def key(j: Sent) -> tuple[str, str, str]:
                    return (j.request_id, "created", j.pair.recipient)

                await watch.wait(lambda: all(key(j) in watch.notes for j in created), 30.0)
            finally:
                await watch.stop()
    arrived = [(j, watch.notes[key(j)]) for j in created if key(j) in watch.notes]
    latencies = [seen.read_at - j.started for j, seen in arrived]
    http_latencies = [j.answered - j.started for j in jobs if j.answered]
    errors = n - len(created)
    lost = len(created) - len(arrived)
    figure = {
        "bench": NAME,
        "rate_per_s": load.rate_per_s,
        "p50_ms": round(percentile(latencies, 0.5) * 1000, 1) if latencies else None,
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 1) if latencies else None,
        "max_ms": round(max(latencies) * 1000, 1) if latencies else None,
        "n": len(created),
        "errors": errors,
        "lost": lost,
        "http_p50_ms": round(percentile(http_latencies, 0.5) * 1000, 1) if http_latencies else None,
        "http_p99_ms": round(percentile(http_latencies, 0.99) * 1000, 1) if http_latencies else None,
        "target_p99_ms": TARGET_P99_MS,
        "pairs": len(pairs),
        "send_lag_p99_ms": round(load.lag_p99_s * 1000, 1),
        "stages_ms": {
            "post_to_relay_send": spread([seen.created_at - j.started for j, seen in arrived]),
            "http_answer_to_relay_send": spread([seen.created_at - j.answered for j, seen in arrived]),
            "relay_send_to_read": spread([seen.read_at - seen.created_at for _, seen in arrived]),
        },
    }
    print(json.dumps(figure), flush=True)
    if args.dump:
        dump(args.dump, jobs, watch)
    if errors or lost or not latencies:
        print(f"error: {errors} requests failed, {lost} notifications lost", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=200.0, help="create requests offered per second")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--pairs", type=int, default=200, help="requester/recipient pairs (each ~30 shifts)")
    parser.add_argument("--dump", help="write each request's time stamps (JSON lines) to this file")
    sys.exit(asyncio.run(main(parser.parse_args())))
