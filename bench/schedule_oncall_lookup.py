"""Benchmark `schedule.oncall_lookup`: "who is on call on schedule S at T" from the published timelines.

What callrouter and coverage do when a call or a request comes in: look the answer up in a local projection
of `schedule.timelines.v1`, with no network hop to schedule. Here, on the real broker (KAFKA_BOOTSTRAP) and
PostgreSQL (DATABASE_URL), for each size (10,000 schedules by default; ONCALL_LOOKUP_SIZES=10000,100000 or
`--sizes` adds 100,000, which takes about 6 minutes and, for the peer, 7 GB of memory; each size runs in a
process of its own):
- the timelines (62-day horizon; weekly, daily, business-hours and 12-hour rotations, with gaps) are
  published to a topic of this run's own, configured like the real one, as the schedule service writes them
  (checked: a sample round-trips through `ScheduleTimeline` byte for byte); before them, first versions of a
  tenth of the schedules, after them, stale redeliveries of those, which every projection must ignore;
- `cold_start_s`: an empty replica catches up: a plain aiokafka consumer reads the topic from the beginning
  in `getmany` batches into the compact `TimelineIndex` (`apply_json`) until it reaches the end offsets that
  existed when it started; the same for the peer, `PydanticTimelineIndex` (the structure before issue 13,
  kept below: one pydantic `ScheduleTimeline` per schedule plus tuples of datetimes), in the same run;
- memory: `index_mb` / `bytes_per_segment` are measured with tracemalloc (bytes Python allocated for the
  structure and still holds after a build from the same messages; `memory: "tracemalloc"`); the peer's
  likewise up to `--peer-trace-limit` schedules (its allocations are too many to trace beyond that).
  `index_rss_mb` / `peer_rss_mb` are the growth of the process's RSS across each cold start (after
  gc.collect and malloc_trim), what an operator sees; the index's cold start comes first in its process;
- lookups (random schedule, random instant in the horizon) timed one by one with perf_counter_ns on both
  structures (`p50_ms`, `p99_ms`);
- `correct`: both structures agree on a sample of the timed lookups plus boundary cases (segment starts,
  just before segment ends, horizon edges, unknown schedules), with a scan of the received timelines and,
  for sampled schedules, with the timelines as generated; the stale ones were ignored;
- a second line (`schedule.oncall_lookup.postgres`): the PostgreSQL-backed projection as a peer, a table
  (schedule_id, starts_at, ends_at, user_id, source) with its btree primary key on (schedule_id, starts_at)
  and one query per lookup over asyncpg: `peer_load_s` (the topic consumed from the start into the table,
  decoded with json.loads, one transaction per fetched batch: version-guarded upsert, delete, COPY),
  lookup `peer_p50_ms` / `peer_p99_ms`, `peer_table_mb`, and `correct` (its answers equal the index's).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import dataclasses
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import time
import tracemalloc
import uuid
from bisect import bisect_right
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, cast

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.kafka import ensure_topics
from shared.messages import ScheduleTimeline, TimelineSegment
from shared.timelines import TimelineIndex, from_micros, to_micros
from shared.topics import TIMELINES

NAME = "schedule.oncall_lookup"
SEED = 62
HOUR = 3_600_000_000
DAY = 24 * HOUR
HORIZON_START = datetime(2026, 3, 1, tzinfo=UTC)
HORIZON = timedelta(days=62)
HORIZON_END = HORIZON_START + HORIZON
H0, H1 = to_micros(HORIZON_START), to_micros(HORIZON_END)
ZONES = ("Europe/Berlin", "America/New_York", "Asia/Kolkata", "UTC", "Australia/Sydney")
USER_POOL = 3000
OCCURRED_AT = "2026-02-28T12:00:00Z"

Row = tuple[int, int, uuid.UUID | None]  # [start, end) in microseconds, who (None: a gap)
Answer = tuple[datetime, datetime, uuid.UUID | None, str] | None


class PydanticTimelineIndex:
    """The peer: the TimelineIndex before issue 13, which held each schedule's pydantic ScheduleTimeline and
    tuples of its segment bounds as datetimes."""

    @dataclass(frozen=True)
    class _Indexed:
        timeline: ScheduleTimeline
        horizon_start: datetime
        horizon_end: datetime
        starts: tuple[datetime, ...]
        ends: tuple[datetime, ...]

    def __init__(self) -> None:
        self._by_schedule: dict[uuid.UUID, PydanticTimelineIndex._Indexed] = {}

    def __len__(self) -> int:
        return len(self._by_schedule)

    def apply(self, timeline: ScheduleTimeline) -> bool:
        held = self._by_schedule.get(timeline.schedule_id)
        if held is not None and held.timeline.version >= timeline.version:
            return False
        self._by_schedule[timeline.schedule_id] = self._Indexed(
            timeline,
            timeline.horizon_start.astimezone(UTC),
            timeline.horizon_end.astimezone(UTC),
            tuple(s.start.astimezone(UTC) for s in timeline.segments),
            tuple(s.end.astimezone(UTC) for s in timeline.segments),
        )
        return True

    def get(self, schedule_id: uuid.UUID) -> ScheduleTimeline | None:
        held = self._by_schedule.get(schedule_id)
        return held.timeline if held is not None else None

    def at(self, schedule_id: uuid.UUID, instant: datetime) -> TimelineSegment | None:
        if instant.tzinfo is None:
            raise ValueError("instant needs a UTC offset")
        held = self._by_schedule.get(schedule_id)
        if held is None:
            return None
        instant = instant.astimezone(UTC)
        if not held.horizon_start <= instant < held.horizon_end:
            return None
        i = bisect_right(held.starts, instant) - 1
        if i < 0 or instant >= held.ends[i]:
            return None
        return held.timeline.segments[i]


# ------------------------------------------------------------------------------------------- workload


def rotation(rng: random.Random) -> list[tuple[int, int, bool]]:
    """One schedule's on-call pieces over the horizon as (start, end, staffed), before users are assigned."""
    kind = rng.choices(["weekly", "daily", "business", "follow-the-sun"], weights=[40, 30, 20, 10])[0]
    offset = rng.randrange(24) * HOUR
    if kind == "business":
        pieces = []
        day = H0 - DAY
        while day < H1:
            if from_micros(day).weekday() < 5:
                pieces.append((day + offset, day + offset + 8 * HOUR, True))
            day += DAY
        return pieces
    step = {"weekly": 7 * DAY, "daily": DAY, "follow-the-sun": 12 * HOUR}[kind]
    at = H0 - step + offset + (rng.randrange(7) * DAY if kind == "weekly" else 0)
    pieces = []
    while at < H1:
        pieces.append((at, at + step, rng.random() > 0.05))  # now and then nobody is scheduled
        at += step
    return pieces


def a_timeline(rng: random.Random, pool: list[uuid.UUID]) -> list[Row]:
    """A contiguous final timeline over the horizon: gaps are segments with nobody; neighbours differ."""
    users = rng.sample(pool, rng.randrange(3, 9))
    rows: list[Row] = []
    cursor = H0

    def add(start: int, end: int, user: uuid.UUID | None) -> None:
        nonlocal cursor
        start, end = max(start, cursor), min(end, H1)
        if start >= end:
            return
        if start > cursor:
            add(cursor, start, None)
        if rows and rows[-1][2] == user:
            rows[-1] = (rows[-1][0], end, user)
        else:
            rows.append((start, end, user))
        cursor = end

    for k, (start, end, staffed) in enumerate(rotation(rng)):
        add(start, end, users[k % len(users)] if staffed else None)
    add(cursor, H1, None)
    return rows


@cache
def iso(micros: int) -> str:
    return from_micros(micros).isoformat().replace("+00:00", "Z")


def encode(schedule_id: uuid.UUID, version: int, rows: list[Row], rng: random.Random, source: str = "") -> bytes:
    """The message as the schedule service publishes it (`ScheduleTimeline.model_dump_json()`), written
    directly: building 100,000 pydantic timelines would take longer than the benchmark itself."""
    segments = ",".join(
        f'{{"start":"{iso(a)}","end":"{iso(b)}",'
        f'"user_id":{"null" if u is None else f"{chr(34)}{u}{chr(34)}"},'
        f'"source":"{source or ("gap" if u is None else "layer")}","ref":null}}'
        for a, b, u in rows
    )
    return (
        f'{{"event_id":"{uuid.UUID(int=rng.getrandbits(128), version=4)}","occurred_at":"{OCCURRED_AT}",'
        f'"type":"ScheduleTimeline","schema_version":1,"schedule_id":"{schedule_id}","version":{version},'
        f'"name":"schedule {schedule_id.hex[:6]}","time_zone":"{rng.choice(ZONES)}",'
        f'"horizon_start":"{iso(H0)}","horizon_end":"{iso(H1)}","segments":[{segments}]}}'
    ).encode()


@dataclass
class Workload:
    ids: list[uuid.UUID]
    messages: list[tuple[bytes, bytes]]  # (key, value) in publishing order
    stale: int
    segments: int
    sampled: dict[uuid.UUID, list[Row]]  # the timelines as generated, for a sample of the schedules


def workload(rng: random.Random, schedules: int) -> Workload:
    pool = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(USER_POOL)]
    ids = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(schedules)]
    sample = set(rng.sample(ids, min(200, schedules)))
    replaced = rng.sample(ids, schedules // 10)
    old = [(str(sid).encode(), encode(sid, 1, [(H0, H1, rng.choice(pool))], rng, "override")) for sid in replaced]
    current = []
    sampled = {}
    segments = 0
    for sid in ids:
        rows = a_timeline(rng, pool)
        segments += len(rows)
        if sid in sample:
            sampled[sid] = rows
        current.append((str(sid).encode(), encode(sid, 2, rows, rng)))
    for _, value in rng.sample(current, min(50, len(current))) + old[:5]:
        if ScheduleTimeline.model_validate_json(value).model_dump_json().encode() != value:
            raise AssertionError("the hand-written message differs from what the schedule service publishes")
    return Workload(ids, [*old, *current, *old], len(old), segments, sampled)


# ------------------------------------------------------------------------------------------- broker


async def publish(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> float:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=5, max_batch_size=1 << 20
    )
    await producer.start()
    try:
        t0 = time.perf_counter()
        for i in range(0, len(messages), 500):
            sent = [await producer.send(topic, value, key=key) for key, value in messages[i : i + 500]]
            await asyncio.gather(*sent)
        return time.perf_counter() - t0
    finally:
        await producer.stop()


async def cold_start(
    bootstrap: str, topic: str, take: Callable[[list[bytes]], Awaitable[int]], limit_s: float
) -> tuple[float, int, int]:
    """An empty replica catching up: read `topic` from the beginning in getmany batches, handing each batch's
    values to `take` (which returns how many it ignored), until the end offsets that existed at the start are
    reached. Returns (seconds from start to caught up, records read, records ignored)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 << 20,
        fetch_max_bytes=32 << 20,
    )
    t0 = time.perf_counter()
    await consumer.start()
    read = ignored = 0
    try:
        await consumer.topics()
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        behind = {tp for tp in partitions if end[tp] > 0}
        while behind:
            if time.perf_counter() - t0 > limit_s:
                raise TimeoutError(f"read {read} records in {limit_s} s without catching up")
            batches = await consumer.getmany(timeout_ms=1000, max_records=2000)
            values = [record.value or b"" for records in batches.values() for record in records]
            read += len(values)
            ignored += await take(values)
            behind = {tp for tp in behind if await consumer.position(tp) < end[tp]}
        return time.perf_counter() - t0, read, ignored
    finally:
        await consumer.stop()


def into(apply: Callable[[bytes], bool]) -> Callable[[list[bytes]], Awaitable[int]]:
    async def take(values: list[bytes]) -> int:
        return sum(not apply(value) for value in values)

    return take


async def drop_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        await admin.start()
        await admin.delete_topics([topic, f"{topic}.dlq"])
    except Exception:  # best effort: a memory-only local broker forgets it anyway
        pass
    finally:
        await admin.close()


# ------------------------------------------------------------------------------------------- memory

_libc = ctypes.CDLL("libc.so.6")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def settled_rss() -> int:
    """Resident bytes after collecting garbage and giving free heap pages back to the system."""
    gc.collect()
    _libc.malloc_trim(0)
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE


def traced(build: Callable[[], object]) -> int:
    """Bytes that `build()` allocated and its result still holds, by tracemalloc."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    built = build()
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del built
    return held


def fill(index: TimelineIndex, values: list[bytes]) -> TimelineIndex:
    for value in values:
        index.apply_json(value)
    return index


def fill_peer(peer: PydanticTimelineIndex, values: list[bytes]) -> PydanticTimelineIndex:
    for value in values:
        peer.apply(ScheduleTimeline.model_validate_json(value))
    return peer


# ------------------------------------------------------------------------------------------- PostgreSQL

SCHEMA = """
CREATE SCHEMA {s};
CREATE TABLE {s}.timelines (
    schedule_id   uuid PRIMARY KEY,
    version       integer     NOT NULL,
    horizon_start timestamptz NOT NULL,
    horizon_end   timestamptz NOT NULL
);
CREATE TABLE {s}.timeline_segments (
    schedule_id uuid        NOT NULL,
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL,
    user_id     uuid,
    source      text        NOT NULL,
    PRIMARY KEY (schedule_id, starts_at)
);
"""

UPSERT = """
INSERT INTO {s}.timelines (schedule_id, version, horizon_start, horizon_end)
SELECT * FROM unnest($1::uuid[], $2::integer[], $3::timestamptz[], $4::timestamptz[])
ON CONFLICT (schedule_id) DO UPDATE
   SET version = EXCLUDED.version, horizon_start = EXCLUDED.horizon_start, horizon_end = EXCLUDED.horizon_end
 WHERE timelines.version < EXCLUDED.version
RETURNING schedule_id
"""

LOOKUP = """
SELECT s.starts_at, s.ends_at, s.user_id, s.source
  FROM {s}.timelines t
 CROSS JOIN LATERAL (
       SELECT starts_at, ends_at, user_id, source FROM {s}.timeline_segments
        WHERE schedule_id = t.schedule_id AND starts_at <= $2
        ORDER BY starts_at DESC LIMIT 1) s
 WHERE t.schedule_id = $1 AND t.horizon_start <= $2 AND $2 < t.horizon_end AND $2 < s.ends_at
"""


@cache
def instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


def postgres_loader(conn: asyncpg.Connection, schema: str) -> Callable[[list[bytes]], Awaitable[int]]:
    """A projection consumer's batch: newest version per schedule of the batch, then one transaction that
    upserts the version-guarded timeline rows and replaces the segments of those it kept (COPY)."""

    async def take(values: list[bytes]) -> int:
        newest: dict[uuid.UUID, dict[str, Any]] = {}
        for value in values:
            message = json.loads(value)
            sid = uuid.UUID(message["schedule_id"])
            held = newest.get(sid)
            if held is None or held["version"] < message["version"]:
                newest[sid] = message
        if not newest:
            return len(values)
        async with conn.transaction():
            kept = {
                row[0]
                for row in await conn.fetch(
                    UPSERT.format(s=schema),
                    list(newest),
                    [m["version"] for m in newest.values()],
                    [instant(m["horizon_start"]) for m in newest.values()],
                    [instant(m["horizon_end"]) for m in newest.values()],
                )
            }
            if kept:
                await conn.execute(
                    f"DELETE FROM {schema}.timeline_segments WHERE schedule_id = ANY($1::uuid[])", list(kept)
                )
                await conn.copy_records_to_table(
                    "timeline_segments",
                    schema_name=schema,
                    records=[
                        (
                            sid,
                            instant(s["start"]),
                            instant(s["end"]),
                            s["user_id"] and uuid.UUID(s["user_id"]),
                            s["source"],
                        )
                        for sid in kept
                        for s in newest[sid]["segments"]
                    ],
                )
        return len(values) - len(kept)

    return take


# ------------------------------------------------------------------------------------------- lookups


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def answer(segment: Any) -> Answer:
    return None if segment is None else (segment.start, segment.end, segment.user_id, segment.source)


def scan(timeline: ScheduleTimeline | None, at: datetime) -> Answer:
    if timeline is None:
        return None
    return next((answer(s) for s in timeline.segments if s.start <= at < s.end), None)


def generated(rows: list[Row], at: datetime) -> Answer:
    micros = to_micros(at)
    if not H0 <= micros < H1:
        return None
    return next(
        ((from_micros(a), from_micros(b), u, "gap" if u is None else "layer") for a, b, u in rows if a <= micros < b),
        None,
    )


def timed(lookup: Callable[[uuid.UUID, datetime], object], queries: list[tuple[uuid.UUID, datetime]]) -> list[int]:
    for sid, at in queries[:2000]:  # warm-up
        lookup(sid, at)
    clock = time.perf_counter_ns
    latencies = []
    for sid, at in queries:
        t0 = clock()
        lookup(sid, at)
        latencies.append(clock() - t0)
    return latencies


def ms(nanoseconds: float) -> float:
    return round(nanoseconds / 1e6, 5)


def mb(size: float) -> float:
    return round(size / 2**20, 1)


# ------------------------------------------------------------------------------------------- one size


async def run(size: int, args: argparse.Namespace) -> None:
    bootstrap, database = os.environ["KAFKA_BOOTSTRAP"], os.environ["DATABASE_URL"]
    rng = random.Random(SEED + size)
    work = workload(rng, size)
    values = [value for _, value in work.messages]
    run_id = uuid.uuid4().hex[:8]
    topic = dataclasses.replace(TIMELINES, name=f"bench.timelines.{run_id}.v1", owner="bench")
    schema = f"bench_oncall_{run_id}"
    limit = args.limit_s

    await ensure_topics(bootstrap, [topic])
    conn = await asyncpg.connect(database)
    try:
        publish_s = await publish(bootstrap, topic.name, work.messages)

        rss0 = settled_rss()
        index = TimelineIndex()
        cold_start_s, read, ignored = await cold_start(bootstrap, topic.name, into(index.apply_json), limit)
        index_rss = settled_rss() - rss0

        rss0 = settled_rss()
        peer = PydanticTimelineIndex()
        peer_cold_start_s, peer_read, peer_ignored = await cold_start(
            bootstrap, topic.name, into(lambda v: peer.apply(ScheduleTimeline.model_validate_json(v))), limit * 20
        )
        peer_rss = settled_rss() - rss0

        await conn.execute(SCHEMA.format(s=schema))
        pg_load_s, pg_read, _ = await cold_start(bootstrap, topic.name, postgres_loader(conn, schema), limit * 20)
        await conn.execute(f"ANALYZE {schema}.timelines; ANALYZE {schema}.timeline_segments")
    finally:
        await drop_topic(bootstrap, topic.name)

    try:
        index_bytes = traced(lambda: fill(TimelineIndex(), values))
        peer_bytes = (
            traced(lambda: fill_peer(PydanticTimelineIndex(), values)) if size <= args.peer_trace_limit else None
        )

        span = H1 - H0
        queries = [(rng.choice(work.ids), from_micros(H0 + rng.randrange(span))) for _ in range(args.lookups)]
        latencies = timed(index.at, queries)
        peer_latencies = timed(peer.at, queries)

        edges: list[tuple[uuid.UUID, datetime]] = []
        for sid in rng.sample(work.ids, min(200, size)):
            segments = cast(ScheduleTimeline, peer.get(sid)).segments
            for segment in rng.sample(segments, min(3, len(segments))):
                edges += [(sid, segment.start), (sid, segment.end - timedelta(microseconds=1)), (sid, segment.end)]
            edges += [(sid, HORIZON_START - timedelta(microseconds=1)), (sid, HORIZON_START), (sid, HORIZON_END)]
            edges.append((uuid.uuid4(), HORIZON_START + timedelta(days=1)))
        sample = rng.sample(queries, min(args.checks, len(queries))) + edges
        agrees = all(answer(index.at(s, t)) == answer(peer.at(s, t)) == scan(peer.get(s), t) for s, t in sample)
        as_generated = all(
            answer(index.at(sid, t)) == generated(rows, t)
            for sid, rows in work.sampled.items()
            for t in [*(from_micros(a + d) for a, _, _ in rows for d in (-1, 0, 1)), HORIZON_END]
        )
        counts = (
            len(index) == len(peer) == size
            and index.segments == work.segments
            and read == peer_read == pg_read == len(values)
            and ignored == peer_ignored == work.stale
        )

        lookup = await conn.prepare(LOOKUP.format(s=schema))

        async def pg_at(sid: uuid.UUID, at: datetime) -> Answer:
            row = await lookup.fetchrow(sid, at)
            return None if row is None else (row[0], row[1], row[2], row[3])

        pg_queries = queries[: args.pg_lookups]
        for sid, at in pg_queries[:500]:
            await pg_at(sid, at)
        pg_latencies = []
        pg_agrees = True
        for sid, at in pg_queries:
            t0 = time.perf_counter_ns()
            found = await pg_at(sid, at)
            pg_latencies.append(time.perf_counter_ns() - t0)
            pg_agrees &= found == answer(index.at(sid, at))
        for sid, at in edges:
            pg_agrees &= await pg_at(sid, at) == answer(index.at(sid, at))
        pg_rows = await conn.fetchval(f"SELECT count(*) FROM {schema}.timeline_segments")
        pg_timelines = tuple(await conn.fetchrow(f"SELECT count(*), min(version) FROM {schema}.timelines"))
        pg_table = await conn.fetchval(
            f"SELECT pg_total_relation_size('{schema}.timelines')"
            f" + pg_total_relation_size('{schema}.timeline_segments')"
        )
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()

    correct = agrees and as_generated and counts
    p50, p99 = statistics.median(latencies), percentile(latencies, 0.99)
    print(
        json.dumps(
            {
                "bench": NAME,
                "schedules": len(index),
                "segments": index.segments,
                "index_mb": mb(index_bytes),
                "bytes_per_segment": round(index_bytes / index.segments, 1),
                "memory": "tracemalloc",
                "index_rss_mb": mb(index_rss),
                "cold_start_s": round(cold_start_s, 2),
                "p50_ms": ms(p50),
                "p99_ms": ms(p99),
                "correct": correct,
                "peer": "PydanticTimelineIndex (pydantic timelines, before issue 13)",
                "peer_index_mb": None if peer_bytes is None else mb(peer_bytes),
                "peer_bytes_per_segment": None if peer_bytes is None else round(peer_bytes / index.segments, 1),
                "peer_rss_mb": mb(peer_rss),
                "peer_cold_start_s": round(peer_cold_start_s, 2),
                "peer_p50_ms": ms(statistics.median(peer_latencies)),
                "peer_p99_ms": ms(percentile(peer_latencies, 0.99)),
                "memory_ratio": None if peer_bytes is None else round(peer_bytes / index_bytes, 1),
                "rss_ratio": round(peer_rss / max(index_rss, 1), 1),
                "cold_start_ratio": round(peer_cold_start_s / cold_start_s, 1),
                "lookups": len(latencies),
                "checked": len(sample),
                "messages": len(values),
                "stale_ignored": ignored,
                "users": len(index.users),
                "json_kb_per_timeline": round(sum(map(len, values)) / len(values) / 1024, 1),
                "horizon_days": HORIZON.days,
                "publish_s": round(publish_s, 2),
            }
        ),
        flush=True,
    )
    print(
        json.dumps(
            {
                "bench": f"{NAME}.postgres",
                "schedules": len(index),
                "segments": index.segments,
                "p50_ms": ms(p50),
                "p99_ms": ms(p99),
                "peer": "PostgreSQL projection: btree (schedule_id, starts_at), one query per lookup over asyncpg",
                "peer_p50_ms": ms(statistics.median(pg_latencies)),
                "peer_p99_ms": ms(percentile(pg_latencies, 0.99)),
                "ratio": round(statistics.median(pg_latencies) / p50, 1),
                "peer_load_s": round(pg_load_s, 2),
                "peer_table_mb": mb(pg_table),
                "cold_start_s": round(cold_start_s, 2),
                "index_mb": mb(index_bytes),
                "lookups": len(pg_latencies),
                "correct": pg_agrees and pg_rows == index.segments and pg_timelines == (size, 2),
            }
        ),
        flush=True,
    )


def main(args: argparse.Namespace) -> None:
    """One size in this process; several sizes each in a process of its own, so that memory freed by one size
    cannot be reused by the next and hide its RSS growth."""
    if len(args.sizes) == 1:
        asyncio.run(run(args.sizes[0], args))
        return
    for size in args.sizes:
        options = [f"--{name.replace('_', '-')}={value}" for name, value in vars(args).items() if name != "sizes"]
        subprocess.run([sys.executable, __file__, f"--sizes={size}", *options], check=True)


def sizes(text: str) -> list[int]:
    return [int(part.replace("_", "")) for part in text.split(",") if part.strip()]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=sizes, default=sizes(os.environ.get("ONCALL_LOOKUP_SIZES", "10000")))
    parser.add_argument("--lookups", type=int, default=200_000)
    parser.add_argument("--pg-lookups", type=int, default=5_000)
    parser.add_argument("--checks", type=int, default=5_000)
    parser.add_argument("--peer-trace-limit", type=int, default=20_000, help="trace the peer's memory up to here")
    parser.add_argument("--limit-s", type=float, default=60.0, help="longest cold start of the index")
    main(parser.parse_args())
