"""A heavy read must not stall the event loop: resolution runs in worker processes (shared.cpu), so the
liveness probe and every other request keep being served while a long window of a large schedule resolves.

Asserted as a proportion, not a time budget: the longest pause of the loop during the read must be a small
part of the read itself. With resolution on the loop, the pause is nearly the whole read. The figure the
issue asks for (/healthz p99 under load) is measured by bench/schedule_probe_under_load.py.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.api.conftest import Client, call, new_schedule, new_users, unique_name

pytestmark = pytest.mark.api


async def test_a_400_day_read_of_a_large_schedule_leaves_the_event_loop_free(client: Client) -> None:
    users = await new_users(client, 60)
    layers = [
        {
            "users": users[i::3] or users,
            "length": 1,
            "unit": "hours",
            "handoff": f"2026-01-0{1 + i % 7}T0{i % 10}:00:00",
        }
        for i in range(20)
    ]
    schedule = await new_schedule(
        client, {"name": unique_name("Heavy"), "time_zone": "Europe/Berlin", "layers": layers}
    )
    path = f"/v1/schedules/{schedule['id']}/shifts"
    span = {"from": "2026-02-01T00:00:00Z", "to": "2027-03-01T00:00:00Z"}

    longest_pause = 0.0
    reading = True

    async def ticker() -> None:
        nonlocal longest_pause
        last = time.perf_counter()
        while reading:
            await asyncio.sleep(0.002)
            now = time.perf_counter()
            longest_pause = max(longest_pause, now - last)
            last = now

    ticking = asyncio.create_task(ticker())
    started = time.perf_counter()
    status, shifts = await call(client, "GET", path, params=span)
    took = time.perf_counter() - started
    reading = False
    await ticking

    assert status == 200 and len(shifts) > 9000, status
    assert longest_pause < took / 4, f"the loop stalled {longest_pause:.3f}s of a {took:.3f}s read"
