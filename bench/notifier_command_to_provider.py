"""Benchmark `notifier.command_to_provider`: from a SendNotification command handed to Kafka to its push arriving
at the provider, under a fixed offered load, on the real local broker and PostgreSQL (KAFKA_BOOTSTRAP,
DATABASE_URL) and the APNs and FCM fakes.

The fakes run as processes through their CLIs and notifier as a process pointed at them, with the settings
devstack gives it (bench/_notifier_setup.py). Users each register one device through `POST /v1/devices`
(alternately iOS and Android), enough that none gets more than 4 commands: notifier's flood control delays a
user's 6th low-urgency push within a minute, which would be measured as latency.

Then `--rate` commands per second for `--seconds`, open loop (a plain producer, sent on a timer, never
waiting for earlier ones), urgency low (one push step, at once), unique idempotency keys, keyed by user id.
Measured per command: from just before the produce call (time.time()) to the moment the fake accepted its
push (the fake's time.time() in its `received_at`; one machine, one clock). The run waits until every push
was sent (notifier's tables) or nothing moved for `--idle-timeout` seconds; commands without a push then are
`lost`. If the rate was not sustained (pushes delivered more slowly than offered), the same is run again at
`--low-rate` for `--low-seconds`, once the first run has drained, and printed as a second line.

Each line: `rate_per_s` (the offered rate achieved), `p50_ms`, `p99_ms`, `n` (commands whose push arrived),
`lost`, `duplicates` (pushes beyond the first with the same collapse id), `delivered_per_s` (n / (last
arrival - first send)), `sustained` (delivered_per_s >= 90% of the offered rate), `send_lag_p99_ms` (how late
this client fired: large means the client was starved), and `stages_ms` (p50/p99/max) from notifier's
tables: `send_to_accepted` (producer, broker, notifier's fetch and the start of its accepting transaction:
`deliveries.created_at`), `accepted_to_fired` (that transaction's commit, the timer runner's wake-up and
queue: the first `delivery_attempts.at`, the start of the timer transaction), `fired_to_provider` (the timer
transaction's reads and the provider's request until the fake accepted it). Exit status 1 if any command was
lost or pushed twice. Target: 1,000 commands/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

import aiohttp
import asyncpg
from _coverage_setup import open_loop, percentile, progress, spread
from _notifier_setup import (
    Commands,
    CpuMeter,
    Progress,
    Stack,
    User,
    arrivals,
    duplicates,
    infra_pids,
    register_devices,
    running_stack,
    user_for,
)

NAME = "notifier.command_to_provider"
PER_USER = 4  # commands per user in the whole run, below flood control's 5 low-urgency pushes a minute


async def run_at(
    rate: float,
    seconds: float,
    users: list[User],
    first_user: int,
    stack: Stack,
    http: aiohttp.ClientSession,
    pool: asyncpg.Pool,
    args: argparse.Namespace,
    t0: float,
) -> dict[str, Any]:
    """One open-loop run at `rate`; its figure. Command i goes to user first_user + i (round-robin)."""
    n = int(rate * seconds)
    commands = Commands(os.environ["KAFKA_BOOTSTRAP"])
    await commands.start()
    sent: dict[str, float] = {}
    try:
        tracker = Progress(pool, commands.prefix)
        meter = CpuMeter({**{name: proc.pid for name, proc in stack.processes.items()}, **await infra_pids(pool)})
        meter.start()

        async def fire(i: int) -> None:
            sent[commands.key(i)] = time.time()
            await commands.send(i, user_for(users, first_user + i))

        load = await open_loop(rate, n, fire)
        await commands.flush()
        progress(t0, f"{n} commands offered at {load.rate_per_s}/s")
        counts = await tracker.wait_sent(n, args.timeout, args.idle_timeout)
        cpu = meter.stop()
        progress(t0, f"notifier: {counts}")
        found = await arrivals(http, stack, commands.prefix)
        stages = await tracker.stage_times()
    finally:
        await commands.stop()

    latencies = [pushes[0].received_at - sent[key] for key, pushes in found.items()]
    to_accepted, to_fired, to_provider = [], [], []
    for key, (created, attempted) in stages.items():
        to_accepted.append(created - sent[key])
        if attempted is not None:
            to_fired.append(attempted - created)
            if key in found:
                to_provider.append(found[key][0].received_at - attempted)
    first_send = min(sent.values())
    last_arrival = max((pushes[0].received_at for pushes in found.values()), default=first_send)
    delivered = round(len(found) / (last_arrival - first_send), 1) if last_arrival > first_send else 0.0
    return {
        "bench": NAME,
        "rate_per_s": load.rate_per_s,
        "p50_ms": round(percentile(latencies, 0.5) * 1000, 1) if latencies else None,
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 1) if latencies else None,
        "n": len(found),
        "lost": n - len(found),
        "duplicates": duplicates(found),
        "offered_per_s": rate,
        "delivered_per_s": delivered,
        "sustained": delivered >= 0.9 * load.rate_per_s,
        "max_ms": round(max(latencies) * 1000, 1) if latencies else None,
        "send_lag_p99_ms": round(load.lag_p99_s * 1000, 1),
        "stages_ms": {
            "send_to_accepted": spread(to_accepted),
            "accepted_to_fired": spread(to_fired),
            "fired_to_provider": spread(to_provider),
        },
        "cpu": cpu,
    }


async def main(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    total = int(args.rate * args.seconds) + int(args.low_rate * args.low_seconds)
    pool = await asyncpg.create_pool(os.environ["DATABASE_URL"], min_size=1, max_size=2)
    figures = []
    try:
        async with running_stack() as stack, aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
            progress(t0, "fakes and notifier ready")
            users = await register_devices(http, stack.notifier.base_url, -(-total // PER_USER))
            progress(t0, f"{len(users)} devices registered")
            figures.append(await run_at(args.rate, args.seconds, users, 0, stack, http, pool, args, t0))
            print(json.dumps(figures[-1]), flush=True)
            if not figures[-1]["sustained"] and args.low_rate > 0:
                first_user = int(args.rate * args.seconds)
                figures.append(
                    await run_at(args.low_rate, args.low_seconds, users, first_user, stack, http, pool, args, t0)
                )
                print(json.dumps(figures[-1]), flush=True)
    finally:
        await pool.close()
    lost, dupes = sum(f["lost"] for f in figures), sum(f["duplicates"] for f in figures)
    if lost or dupes:
        print(f"error: {lost} commands lost, {dupes} duplicate pushes", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=1000.0, help="commands offered per second")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--low-rate", type=float, default=100.0, help="the second run's rate (0: none)")
    parser.add_argument("--low-seconds", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds at most for every push to arrive")
    parser.add_argument("--idle-timeout", type=float, default=15.0, help="give up after this long without progress")
    sys.exit(asyncio.run(main(parser.parse_args())))
