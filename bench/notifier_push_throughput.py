"""Benchmark `notifier.push_throughput`: how many pushes per second one notifier process gets to the providers,
on the real local broker and PostgreSQL (KAFKA_BOOTSTRAP, DATABASE_URL) and the APNs and FCM fakes.

The fakes run as processes through their CLIs, notifier as a process pointed at them with the settings
devstack gives it (bench/_notifier_setup.py). `--users` users each register one device through notifier's
API (`POST /v1/devices`, alternately iOS and Android). Once notifier is ready (its consumers joined), `--n`
`SendNotification` commands (urgency low: one push step, at once; unique idempotency keys; keyed by user id,
round-robin over the users, at most 4 per user: notifier's flood control delays a user's 6th low-urgency push
within a minute) are produced as fast as a plain producer can, i.e. *while* notifier consumes:
the producer outruns it within a second, so notifier works through a backlog. The run ends when every
command's push was sent (notifier's tables, polled) or nothing moved for `--idle-timeout` seconds; then the
fakes' inspection endpoints are read once.

Printed as one JSON line:
- `per_s`: pushes that arrived at the fakes (first per command) / (last arrival - first produce call);
  `steady_per_s` the same between the first and the last arrival; `n` commands whose push arrived;
- `duplicates`: pushes beyond the first with the same collapse id at the same fake; `lost`: commands with no
  push by the end;
- `produce_s`: how long producing all of them took (the offered burst);
- `stages`: when notifier accepted the commands (`deliveries.created_at`, the accepting transaction's start)
  and when it fired their push steps (first `delivery_attempts.at`, the timer transaction's start), each as a
  rate over its own span: `accepted_per_s` is the consumer's pace, `fired_per_s` the timer runner's;
  `lag_ms` p50/p99/max from acceptance to the step firing (the timer backlog);
- `cpu`: CPU seconds of notifier, each fake and this benchmark over the window, and how busy the machine was.
Exit status 1 if any command was lost or pushed twice. Target: >= 5,000 pushes/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import asyncpg
from _coverage_setup import progress, spread
from _notifier_setup import (
    Commands,
    CpuMeter,
    Progress,
    arrivals,
    duplicates,
    infra_pids,
    register_devices,
    running_stack,
    user_for,
)

NAME = "notifier.push_throughput"
TARGET_PER_S = 5000
# notifier's flood control lets at most 5 low-urgency pushes a minute reach one user and delays the rest; the
# run lasts well under a minute, so each user gets at most this many commands.
PER_USER = 4


def start_profiler(output: str, pid: int) -> subprocess.Popen[bytes]:
    """py-spy (`pip install py-spy`, not a project dependency) sampling notifier into `output` (collapsed
    stacks, one "frame;frame;... count" per line, for flamegraph.pl or speedscope). It pauses notifier for each
    sample, so a profiled run's figures are a little lower."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return subprocess.Popen(
        [py_spy, "record", "--pid", str(pid), "--rate", "100", "--format", "raw", "--output", output],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )


def stop_profiler(profiler: subprocess.Popen[bytes], output: str) -> None:
    profiler.send_signal(signal.SIGINT)
    try:
        profiler.wait(timeout=30)
    except subprocess.TimeoutExpired:
        profiler.kill()
        profiler.wait()
    print(f"# notifier profile in {output}", file=sys.stderr)


def rate(times: list[float]) -> float | None:
    if len(times) < 2 or max(times) <= min(times):
        return None
    return round((len(times) - 1) / (max(times) - min(times)), 1)


async def main(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    args.users = args.users or -(-args.n // PER_USER)
    pool = await asyncpg.create_pool(os.environ["DATABASE_URL"], min_size=1, max_size=2)
    commands = Commands(os.environ["KAFKA_BOOTSTRAP"])
    try:
        async with (
            running_stack(replicas=args.replicas) as stack,
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http,
        ):
            progress(t0, "fakes and notifier ready")
            users = await register_devices(http, stack.notifier.base_url, args.users)
            progress(t0, f"{len(users)} devices registered")
            await commands.start()
            tracker = Progress(pool, commands.prefix)
            meter = CpuMeter({**{name: proc.pid for name, proc in stack.processes.items()}, **await infra_pids(pool)})
            profiler = start_profiler(args.profile, stack.notifier.pid) if args.profile else None
            meter.start()
            first_send = time.time()
            for i in range(args.n):
                await commands.send(i, user_for(users, i))
            await commands.flush()
            produced = time.time()
            progress(t0, f"{args.n} commands produced in {produced - first_send:.2f}s")
            counts = await tracker.wait_sent(args.n, args.timeout, args.idle_timeout)
            cpu = meter.stop()
            if profiler is not None:
                stop_profiler(profiler, args.profile)
            progress(t0, f"notifier: {counts}")
            found = await arrivals(http, stack, commands.prefix)
            stages = await tracker.stage_times()
    finally:
        await commands.stop()
        await pool.close()

    firsts = [pushes[0].received_at for pushes in found.values()]
    lost = args.n - len(found)
    dupes = duplicates(found)
    accepted = [created for created, _ in stages.values()]
    fired = [attempted for _, attempted in stages.values() if attempted is not None]
    lags = [attempted - created for created, attempted in stages.values() if attempted is not None]
    last = max(firsts) if firsts else first_send
    figure = {
        "bench": NAME,
        "per_s": round(len(firsts) / (last - first_send), 1) if firsts and last > first_send else 0.0,
        "steady_per_s": rate(firsts),
        "n": len(found),
        "duplicates": dupes,
        "lost": lost,
        "commands": args.n,
        "users": args.users,
        "replicas": args.replicas,
        "mode": "produced while notifier consumes (burst; the producer outruns notifier)",
        "produce_s": round(produced - first_send, 2),
        "stages": {
            "accepted_per_s": rate(accepted),
            "fired_per_s": rate(fired),
            "lag_ms": spread(lags),
        },
        "notifier": counts,
        "cpu": cpu,
        "target_per_s": TARGET_PER_S,
    }
    print(json.dumps(figure), flush=True)
    if lost or dupes:
        print(f"error: {lost} commands lost, {dupes} duplicate pushes", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=5000, help="commands")
    parser.add_argument("--users", type=int, help="users, one device each (default: n / 4, see flood control)")
    parser.add_argument("--timeout", type=float, default=80.0, help="seconds at most for every push to arrive")
    parser.add_argument("--idle-timeout", type=float, default=15.0, help="give up after this long without progress")
    parser.add_argument("--replicas", type=int, default=1, help="notifier processes (one group, 6 partitions)")
    parser.add_argument("--profile", help="sample notifier with py-spy during the window into this file")
    sys.exit(asyncio.run(main(parser.parse_args())))
