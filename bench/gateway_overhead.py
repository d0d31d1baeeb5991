"""Benchmark `gateway.overhead`: what the gateway hop adds to a request.

schedule runs as a process on the real PostgreSQL (DATABASE_URL) and broker (KAFKA_BOOTSTRAP); Caddy runs
with the config `make up` uses (tools/gateway/caddy.py, from the routing table) in front of it. The same
authenticated `GET /v1/users` goes straight to schedule and through the gateway's API origin, alternating
one by one on kept-alive connections so both see the same machine load, after a warm-up. Printed:
`direct_p50_ms`, `gateway_p50_ms`, `p99_ms` (through the gateway) and `direct_p99_ms`, the added median
`added_p50_ms`, and `same_answer` (both paths return the same body).

    python bench/gateway_overhead.py [--requests N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.auth import issue_dev_token
from shared.services import SERVICE_NAMES
from shared.settings import DEV_JWT_SECRET
from tools.gateway import caddy
from tools.gateway.table import OriginName, load
from tools.infra import free_port
from tools.procs import OsProcess, spawn, start_service

JWT_SECRET = os.environ.get("JWT_SECRET", DEV_JWT_SECRET)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _timed(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> tuple[float, bytes]:
    started = time.perf_counter()
    async with session.get(url, headers=headers) as response:
        body = await response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {url}: {response.status} {body[:200]!r}")
    return (time.perf_counter() - started) * 1000, body


async def measure(direct: str, gateway: str, requests: int, warmup: int) -> dict[str, object]:
    headers = {"Authorization": "Bearer " + issue_dev_token(JWT_SECRET, str(uuid.uuid4()), "admin", ttl_s=3600)}
    path = "/v1/users"
    direct_ms: list[float] = []
    gateway_ms: list[float] = []
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as straight, aiohttp.ClientSession() as through:
        for _ in range(warmup):
            await _timed(straight, direct + path, headers)
            await _timed(through, gateway + path, headers)
        _, straight_body = await _timed(straight, direct + path, headers)
        _, through_body = await _timed(through, gateway + path, headers)
        for i in range(requests):
            # alternate which goes first, so neither always follows the other's cache warm-up
            order = ((straight, direct, direct_ms), (through, gateway, gateway_ms))
            for session, base, sink in order if i % 2 == 0 else order[::-1]:
                sink.append((await _timed(session, base + path, headers))[0])
    direct_p50 = statistics.median(direct_ms)
    gateway_p50 = statistics.median(gateway_ms)
    return {
        "bench": "gateway.overhead",
        "request": f"GET {path}",
        "direct_p50_ms": round(direct_p50, 3),
        "gateway_p50_ms": round(gateway_p50, 3),
        "p99_ms": round(_percentile(gateway_ms, 0.99), 3),
        "direct_p99_ms": round(_percentile(direct_ms, 0.99), 3),
        "added_p50_ms": round(gateway_p50 - direct_p50, 3),
        "n": requests,
        "same_answer": straight_body == through_body,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args(argv)
    env = {key: os.environ[key] for key in ("DATABASE_URL", "KAFKA_BOOTSTRAP") if key in os.environ}
    if len(env) < 2:
        print("DATABASE_URL and KAFKA_BOOTSTRAP must be set (make bench sets them)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="oncall-gateway-bench-") as tmp:
        root = Path(tmp)
        service = start_service("schedule", env={**env, "LOG_LEVEL": "WARNING", "JWT_SECRET": JWT_SECRET},
                                port=free_port(), log_path=root / "schedule.log")
        proxy: OsProcess | None = None
        try:
            service.wait_ready(timeout=60)
            upstream = f"127.0.0.1:{service.port}"
            upstreams = {name: upstream for name in SERVICE_NAMES}  # only schedule's routes are used
            ports: dict[OriginName, int] = {"api": free_port(), "webhooks": free_port()}
            config = caddy.write_config(root / "gateway", load(), upstreams, ports, root / "logs")
            proxy = spawn(caddy.argv(config), log_path=root / "caddy.log", env=caddy.caddy_env(root / "gateway"))
            caddy.wait_serving(config, proxy)
            result = asyncio.run(measure(service.base_url, config.api_url, args.requests, args.warmup))
        finally:
            if proxy is not None:
                proxy.terminate(timeout=10)
            service.terminate()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
