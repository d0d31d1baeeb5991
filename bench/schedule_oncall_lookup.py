"""Benchmark `schedule.oncall_lookup`: "who is on call on schedule S at T" from the published timelines.

What callrouter does when a call comes in: look the answer up in its local projection of
`schedule.timelines.v1`, with no network hop. Here, on the real broker (KAFKA_BOOTSTRAP):
- 10,000 ScheduleTimeline snapshots (62-day horizon; weekly, daily, business-hours and 12-hour rotations,
  with gaps) are published to a topic of this run's own, configured like the real one; before them,
  1,000 first versions of some schedules, and after them, stale redeliveries of those first versions;
- a plain aiokafka consumer reads the topic from the beginning into a `TimelineIndex` (`consume_s`: from
  the consumer's start to the last message applied, parsing included); the stale ones must be ignored;
- random lookups (random schedule, random instant in the horizon) are timed one by one with
  perf_counter_ns (`p50_ms`, `p99_ms`); in the same run, the same lookups on a sample by a linear scan of
  the timeline (`peer_p50_ms`, `peer_p99_ms`);
- `correct`: a sample of the timed lookups plus boundary cases (segment starts, just before segment ends,
  horizon edges, unknown schedules) agree with a brute-force scan of the timelines as generated.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import random
import statistics
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from shared.kafka import ensure_topics
from shared.messages import ScheduleTimeline, TimelineSegment
from shared.timelines import TimelineIndex
from shared.topics import TIMELINES

NAME = "schedule.oncall_lookup"
SEED = 62
HORIZON_START = datetime(2026, 3, 1, tzinfo=UTC)
HORIZON = timedelta(days=62)
HORIZON_END = HORIZON_START + HORIZON
ZONES = ("Europe/Berlin", "America/New_York", "Asia/Kolkata", "UTC", "Australia/Sydney")
USER_POOL = 3000


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def rotation(rng: random.Random) -> list[tuple[datetime, datetime, bool]]:
    """One schedule's on-call pieces over the horizon as (start, end, staffed), before users are assigned."""
    kind = rng.choices(["weekly", "daily", "business", "follow-the-sun"], weights=[40, 30, 20, 10])[0]
    offset = timedelta(hours=rng.randrange(24))
    if kind == "business":
        pieces = []
        day = HORIZON_START - timedelta(days=1)
        while day < HORIZON_END:
            if day.weekday() < 5:
                pieces.append((day + offset, day + offset + timedelta(hours=8), True))
            day += timedelta(days=1)
        return pieces
    step = {"weekly": timedelta(weeks=1), "daily": timedelta(days=1), "follow-the-sun": timedelta(hours=12)}[kind]
    first = HORIZON_START - step + offset + timedelta(days=rng.randrange(7) if kind == "weekly" else 0)
    pieces = []
    at = first
    while at < HORIZON_END:
        pieces.append((at, at + step, rng.random() > 0.05))  # now and then nobody is scheduled
        at += step
    return pieces


def a_timeline(rng: random.Random, schedule_id: uuid.UUID, version: int, pool: list[uuid.UUID]) -> ScheduleTimeline:
    users = rng.sample(pool, rng.randrange(3, 9))
    segments: list[TimelineSegment] = []
    cursor = HORIZON_START

    def add(start: datetime, end: datetime, user: uuid.UUID | None) -> None:
        nonlocal cursor
        start, end = max(start, cursor), min(end, HORIZON_END)
        if start >= end:
            return
        if start > cursor:
            add(cursor, start, None)
        if segments and segments[-1].user_id == user:
            segments[-1] = segments[-1].model_copy(update={"end": end})
        else:
            source: Literal["gap", "layer"] = "gap" if user is None else "layer"
            segments.append(TimelineSegment(start=start, end=end, user_id=user, source=source))
        cursor = end

    for k, (start, end, staffed) in enumerate(rotation(rng)):
        add(start, end, users[k % len(users)] if staffed else None)
    add(cursor, HORIZON_END, None)
    return ScheduleTimeline(
        schedule_id=schedule_id,
        version=version,
        name=f"schedule {schedule_id.hex[:6]}",
        time_zone=rng.choice(ZONES),
        horizon_start=HORIZON_START,
        horizon_end=HORIZON_END,
        segments=segments,
    )


def stale(schedule_id: uuid.UUID, user: uuid.UUID) -> ScheduleTimeline:
    segment = TimelineSegment(start=HORIZON_START, end=HORIZON_END, user_id=user, source="override")
    return ScheduleTimeline(
        schedule_id=schedule_id,
        version=1,
        name="old",
        time_zone="UTC",
        horizon_start=HORIZON_START,
        horizon_end=HORIZON_END,
        segments=[segment],
    )


def scan(timeline: ScheduleTimeline | None, instant: datetime) -> TimelineSegment | None:
    if timeline is None:
        return None
    for segment in timeline.segments:
        if segment.start <= instant < segment.end:
            return segment
    return None


async def publish(bootstrap: str, topic: str, messages: list[ScheduleTimeline]) -> float:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=5, max_batch_size=1 << 20
    )
    await producer.start()
    try:
        t0 = time.perf_counter()
        for i in range(0, len(messages), 500):
            sent = [
                await producer.send(topic, m.model_dump_json().encode(), key=m.key.encode())
                for m in messages[i : i + 500]
            ]
            await asyncio.gather(*sent)
        return time.perf_counter() - t0
    finally:
        await producer.stop()


async def consume(bootstrap: str, topic: str, expected: int, index: TimelineIndex, limit_s: float) -> tuple[float, int]:
    """Read `expected` messages from the start of `topic` into `index`: (seconds taken, snapshots ignored)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 << 20,
        fetch_max_bytes=32 << 20,
    )
    t0 = time.perf_counter()
    await consumer.start()
    seen = ignored = 0
    try:
        while seen < expected:
            if time.perf_counter() - t0 > limit_s:
                raise TimeoutError(f"consumed {seen} of {expected} messages in {limit_s} s")
            batches = await consumer.getmany(timeout_ms=1000, max_records=2000)
            for records in batches.values():
                for record in records:
                    ignored += not index.apply(ScheduleTimeline.model_validate_json(record.value or b""))
                    seen += 1
        return time.perf_counter() - t0, ignored
    finally:
        await consumer.stop()


async def drop_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        await admin.start()
        await admin.delete_topics([topic, f"{topic}.dlq"])
    except Exception:  # best effort: a memory-only local broker forgets it anyway
        pass
    finally:
        await admin.close()


async def main(schedules: int, lookups: int, peer_lookups: int, checks: int) -> None:
    bootstrap = os.environ["KAFKA_BOOTSTRAP"]
    rng = random.Random(SEED)
    run = uuid.uuid4().hex[:8]
    topic = dataclasses.replace(TIMELINES, name=f"bench.timelines.{run}.v1", owner="bench")
    pool = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(USER_POOL)]
    ids = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(schedules)]
    current = {sid: a_timeline(rng, sid, 2, pool) for sid in ids}
    replaced = rng.sample(ids, schedules // 10)
    old = [stale(sid, rng.choice(pool)) for sid in replaced]
    messages = [*old, *current.values(), *old]  # first versions, then the current ones, then stale redeliveries

    await ensure_topics(bootstrap, [topic])
    try:
        publish_s = await publish(bootstrap, topic.name, messages)
        index = TimelineIndex()
        consume_s, ignored = await consume(bootstrap, topic.name, len(messages), index, limit_s=90)
    finally:
        await drop_topic(bootstrap, topic.name)

    queries = [
        (rng.choice(ids), HORIZON_START + timedelta(microseconds=rng.randrange(HORIZON // timedelta(microseconds=1))))
        for _ in range(lookups)
    ]
    at = index.at
    for sid, instant in queries[:2000]:  # warm-up
        at(sid, instant)
    clock = time.perf_counter_ns
    latencies = []
    for sid, instant in queries:
        t0 = clock()
        at(sid, instant)
        latencies.append(clock() - t0)
    peer_latencies = []
    for sid, instant in queries[:peer_lookups]:
        timeline = index.get(sid)
        t0 = clock()
        scan(timeline, instant)
        peer_latencies.append(clock() - t0)

    edges: list[tuple[uuid.UUID, datetime]] = []
    for sid in rng.sample(ids, 200):
        segments = current[sid].segments
        for segment in rng.sample(segments, min(3, len(segments))):
            edges += [(sid, segment.start), (sid, segment.end - timedelta(microseconds=1)), (sid, segment.end)]
        edges += [(sid, HORIZON_START - timedelta(microseconds=1)), (sid, HORIZON_START), (sid, HORIZON_END)]
        edges.append((uuid.uuid4(), HORIZON_START + timedelta(days=1)))
    sample = rng.sample(queries, min(checks, len(queries))) + edges
    agrees = all(at(sid, t) == scan(current.get(sid), t) for sid, t in sample)
    correct = agrees and len(index) == schedules and ignored == len(old)

    ms = 1e6
    figure = {
        "bench": NAME,
        "schedules": len(index),
        "lookups": len(latencies),
        "p50_ms": round(statistics.median(latencies) / ms, 5),
        "p99_ms": round(percentile(latencies, 0.99) / ms, 5),
        "consume_s": round(consume_s, 2),
        "correct": correct,
        "peer": "linear scan of the timeline",
        "peer_p50_ms": round(statistics.median(peer_latencies) / ms, 5),
        "peer_p99_ms": round(percentile(peer_latencies, 0.99) / ms, 5),
        "peer_lookups": len(peer_latencies),
        "checked": len(sample),
        "messages": len(messages),
        "stale_ignored": ignored,
        "segments": sum(len(t.segments) for t in current.values()),
        "horizon_days": HORIZON.days,
        "publish_s": round(publish_s, 2),
    }
    print(json.dumps(figure), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--schedules", type=int, default=10_000)
    parser.add_argument("--lookups", type=int, default=200_000)
    parser.add_argument("--peer-lookups", type=int, default=20_000)
    parser.add_argument("--checks", type=int, default=5_000)
    args = parser.parse_args()
    asyncio.run(main(args.schedules, args.lookups, args.peer_lookups, args.checks))
