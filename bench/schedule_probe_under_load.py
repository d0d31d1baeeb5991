"""Benchmark `schedule.probe_under_load`: /healthz latency while heavy reads run, on the real PostgreSQL.

The schedule service runs as its own process (DATABASE_URL, KAFKA_BOOTSTRAP). One large schedule (20 hourly
layers, 200 users each) is created; then `--readers` clients each ask for its 400-day final shifts over and
over, while a probe asks /healthz every 20 ms. Printed as one JSON line: the probe's p50/p99/max with
resolution in worker processes (the service as shipped, CPU_WORKERS=2), and the same run's peer: the same
service with resolution on the event loop (CPU_WORKERS=0), which is what the liveness probe used to see.
Target: /healthz p99 < 100 ms under ten concurrent heavy reads.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

from shared.auth import issue_dev_token
from shared.settings import DEV_JWT_SECRET
from tools.infra import free_port
from tools.procs import start_service

NAME = "schedule.probe_under_load"
ADMIN = {"Authorization": "Bearer " + issue_dev_token(DEV_JWT_SECRET, uuid.uuid4(), "admin", ttl_s=3600)}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def large_schedule(http: aiohttp.ClientSession, base: str, users: int, layers: int) -> str:
    ids = []
    for i in range(users):
        body = {"name": f"Load {i}", "email": f"{uuid.uuid4().hex}@example.com", "time_zone": "Europe/Berlin"}
        async with http.post(f"{base}/v1/users", json=body, headers=ADMIN) as resp:
            ids.append((await resp.json())["id"])
    spec = [
        {"users": ids, "length": 1, "unit": "hours", "handoff": f"2026-01-01T{i % 24:02d}:00:00"} for i in range(layers)
    ]
    body = {"name": f"Load {uuid.uuid4().hex[:8]}", "time_zone": "Europe/Berlin", "layers": spec}
    async with http.post(f"{base}/v1/schedules", json=body, headers=ADMIN) as resp:
        assert resp.status == 201, await resp.text()
        return str((await resp.json())["id"])


async def probe_under_load(base: str, schedule_id: str, readers: int, seconds: float) -> tuple[list[float], int]:
    """/healthz latencies (ms) every 20 ms while `readers` heavy reads run back to back; and how many reads."""
    done = 0
    stop = time.monotonic() + seconds
    span = {"from": "2026-02-01T00:00:00Z", "to": "2027-03-01T00:00:00Z"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:

        async def reader() -> None:
            nonlocal done
            while time.monotonic() < stop:
                async with http.get(f"{base}/v1/schedules/{schedule_id}/shifts", params=span, headers=ADMIN) as r:
                    await r.read()
                    assert r.status == 200, r.status
                done += 1

        async def probe() -> list[float]:
            latencies = []
            await asyncio.sleep(0.5)  # let the readers start
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                async with http.get(f"{base}/healthz") as r:
                    await r.read()
                latencies.append((time.perf_counter() - t0) * 1000)
                await asyncio.sleep(0.02)
            return latencies

        results = await asyncio.gather(probe(), *(reader() for _ in range(readers)))
    return results[0], done


async def measure(workers: int, env: dict[str, str], logs: Path, args: argparse.Namespace) -> dict[str, float]:
    proc = start_service(
        "schedule", env=env | {"CPU_WORKERS": str(workers)}, port=free_port(), log_path=logs / f"schedule-{workers}.log"
    )
    try:
        await asyncio.to_thread(proc.wait_ready, 90)
        async with aiohttp.ClientSession() as http:
            schedule_id = await large_schedule(http, proc.base_url, args.users, args.layers)
        latencies, reads = await probe_under_load(proc.base_url, schedule_id, args.readers, args.seconds)
    finally:
        proc.terminate()
    return {
        "p50_ms": round(percentile(latencies, 0.5), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "max_ms": round(max(latencies), 1),
        "probes": len(latencies),
        "reads": reads,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--readers", type=int, default=10)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--layers", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    env = {"DATABASE_URL": os.environ["DATABASE_URL"], "KAFKA_BOOTSTRAP": os.environ["KAFKA_BOOTSTRAP"]}
    with tempfile.TemporaryDirectory() as logs:
        ours = await measure(2, env, Path(logs), args)
        peer = await measure(0, env, Path(logs), args)
    print(
        json.dumps(
            {
                "bench": NAME,
                "readers": args.readers,
                "layers": args.layers,
                "users": args.users,
                **ours,
                "peer": "resolution on the event loop",
                **{f"peer_{k}": v for k, v in peer.items()},
                "target_p99_ms": 100,
                "ratio_p99": round(peer["p99_ms"] / max(ours["p99_ms"], 0.1), 1),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    asyncio.run(main())
