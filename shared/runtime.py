"""A service's process: pool, broker, outbox relay, durable timers, web app, and an orderly stop on SIGTERM.

Start-up never waits for Kafka. The signal handlers come first, then the HTTP server (the pool connects
lazily), and only then, in a background task that retries with backoff, the topics, the outbox producer and
relay, and the consumers joining their groups. A broker that is down, or one that keeps a killed member in a
group so the new one waits for its assignment indefinitely (noida-db does), therefore never keeps
`/healthz` from answering or SIGTERM from stopping the process; `/readyz` says what is still missing.

Readiness: the database is required; so is Kafka until the service first connected to it (`kafka`:
"connecting: <the step it retries> (last error: ...)"), while HTTP already serves and writes wait in the
outbox for the relay, which starts with the producer and publishes them then. After that the broker is
reported only (writes wait in the outbox, webhooks must keep answering); each subscription is required to
have joined its group once, so a replica takes traffic only when it also consumes. Later rebalances do not
flip readiness: every replica rebalances at once, and taking all of them out of the load balancer for it would
be an outage.

Shutdown order matters for "never lose a page": stop taking HTTP (in-flight requests finish), stop the
consumers (an unfinished message is not committed and will be redelivered; a clean stop also leaves the
group, so the next member is assigned at once), stop the timer runner (the timer being fired commits or
rolls back and stays due), publish what the outbox still holds, then close the producer and the pool.
The timer runner starts with the HTTP server and needs only the pool: timers fire while Kafka is away, their
messages waiting in the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

import asyncpg
from aiohttp import web
from aiokafka import AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from faststream.kafka import KafkaBroker

from shared import cpu, inbox
from shared.auth import TokenVerifier
from shared.db import create_pool
from shared.http import READINESS, Api, build_app
from shared.kafka import batch_options, batch_subscriber, ensure_topics, make_broker, subscriber_options
from shared.logs import configure_logging, get_logger
from shared.outbox import OutboxRelay
from shared.settings import ServiceSettings
from shared.timers import BatchHandler, Handler, TimerRunner
from shared.topics import Topic

log = get_logger(__name__)

POOL = web.AppKey("pool", asyncpg.Pool)


class _Membership(ConsumerRebalanceListener):  # type: ignore[misc]
    """Whether one subscription's consumer has been given its assignment (possibly empty) at least once, and
    which partitions it holds now."""

    def __init__(self, group: str, topic: str, catch_up: bool) -> None:
        self.group = group
        self.topic = topic
        self.joined = asyncio.Event()
        self.assigned: frozenset[TopicPartition] = frozenset()
        self.catch_up = _CatchUp() if catch_up else None

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        pass

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        if not self.joined.is_set():
            log.info("consumer joined its group", group=self.group, partitions=len(assigned))
        self.assigned = frozenset(assigned)
        self.joined.set()


class _CatchUp:
    """Whether a projection's consumer has handled what its partitions held when it got them.

    The target of a partition is its high watermark in the first fetch response after the assignment: the
    end offset as the fetch saw it. Not ListOffsets: Tansu answers "latest" with offsets far below the records
    it serves (seen: 913 where the partition ran to 1590, and still after a minute), while its fetch responses
    carry the true end. Progress is the group's committed offset, read through the consumer's own group client
    (faststream commits after the handler returned, so committed means applied). Once every partition it holds
    has reached its target the projection counts as caught up for good: falling behind later is lag, not a
    reason to leave the load balancer.
    """

    def __init__(self) -> None:
        self.targets: dict[TopicPartition, int] = {}
        self.done = False

    async def behind(self, consumer: Any, assigned: frozenset[TopicPartition]) -> tuple[int, int]:
        """(records behind, partitions whose end is not known yet) over the partitions held now."""
        if self.done:
            return 0, 0
        unknown = 0
        for tp in assigned:
            if tp not in self.targets:
                end = consumer.highwater(tp)
                if end is None:
                    unknown += 1
                    continue
                self.targets[tp] = end
        measured = [tp for tp in assigned if tp in self.targets]
        committed = await asyncio.gather(*(consumer.committed(tp) for tp in measured))
        lag = sum(max(0, self.targets[tp] - (c or 0)) for tp, c in zip(measured, committed, strict=True))
        if not lag and not unknown:
            self.done = True
        return lag, unknown


class Service:
    """Everything one service process runs; `main.py` builds one and calls `run()`."""

    def __init__(
        self, settings: ServiceSettings, api: Api, *, publishes: Sequence[Topic] = (), consumes: Sequence[Topic] = ()
    ) -> None:
        self.settings = settings
        self.api = api
        self.topics = tuple(dict.fromkeys([*publishes, *consumes]))
        self.broker: KafkaBroker = make_broker(settings)
        for topic in publishes:
            # Messages leave through the outbox relay; this only documents them in the AsyncAPI spec.
            self.broker.publisher(
                topic.name,
                schema=topic.schema,
                description=f"Published by {settings.service_name} through its outbox, keyed by entity id.",
            )
        self._pool: asyncpg.Pool | None = None
        self._producer: AIOKafkaProducer | None = None
        self._relay: OutboxRelay | None = None
        self._relay_task: asyncio.Task[None] | None = None
        self._housekeeping_task: asyncio.Task[None] | None = None
        self._jobs: list[tuple[str, float, Callable[[], Awaitable[object]]]] = []
        self._job_tasks: list[asyncio.Task[None]] = []
        self._timer_handlers: dict[str, Handler] = {}
        self._timer_batch_handlers: dict[str, BatchHandler] = {}
        self._timers: TimerRunner | None = None
        self._timers_task: asyncio.Task[None] | None = None
        self._memberships: list[_Membership] = []
        self._context: dict[web.AppKey[Any], Any] = {}
        self._closers: list[Callable[[], Awaitable[object]]] = []
        self._connecting: asyncio.Task[None] | None = None
        self._kafka_step = "connecting"  # what `_connect_kafka` is doing; "" once it is done
        self._kafka_error: str | None = None
        self._producer_started = False
        self._runner: web.AppRunner | None = None
        self._stopping = False
        self.port: int | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("service not started")
        return self._pool

    def subscriber(
        self,
        topic: Topic,
        *,
        group: str | None = None,
        batch: bool = False,
        max_records: int | None = None,
        catch_up: bool | None = None,
    ) -> Callable[[Callable[..., Any]], Any]:
        """Register a handler for `topic` in its own consumer group, `<service>.<topic>` unless `group` is given.

        A group per subscription: consumers of different topics sharing one group would rebalance each other
        every time one of them joins.

        With `batch=True` the handler takes a list of messages, up to `max_records` (default
        `CONSUMER_BATCH_MAX_RECORDS`) of one fetch, and applies them in one transaction: see
        `shared.kafka.batch_subscriber` for the rules.

        A subscription that projects a compacted snapshot topic (`catch_up`, by default whether `topic` is
        compacted) keeps the service unready until it has handled what the topic held when it started, so a
        new replica never answers from a half-built projection (`/readyz`: "projections").
        """
        group = group or f"{self.settings.service_name}.{topic.name}"
        membership = _Membership(group, topic.name, topic.compacted if catch_up is None else catch_up)
        self._memberships.append(membership)
        if batch:
            return batch_subscriber(
                self.broker,
                topic.name,
                topic.schema,
                listener=membership,
                **batch_options(self.settings, group, max_records),
            )
        sub: Callable[[Callable[..., Any]], Any] = self.broker.subscriber(
            topic.name, listener=membership, **subscriber_options(self.settings, group)
        )
        return sub

    def every(self, seconds: float, name: str) -> Callable[[Callable[[], Awaitable[object]]], Any]:
        """Run the decorated coroutine function every `seconds` while the service runs (first run at start).

        Every replica runs its jobs, so a job must be safe to run concurrently (e.g. `FOR UPDATE SKIP LOCKED`).
        """

        def register(job: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[object]]:
            self._jobs.append((name, seconds, job))
            return job

        return register

    def timer(self, kind: str, *, batch: bool = False) -> Callable[[Any], Any]:
        """Register the handler of durable timers of `kind` (`shared.timers.schedule`): `async (conn, timer)`.

        It runs inside the transaction that removes the timer, so its writes and outbox rows commit with the
        firing; raising rolls them back and retries the timer with backoff (see shared/timers.py).

        With `batch=True` the handler is `async (conn, timers)` and gets up to `TIMER_BATCH_SIZE` due timers of
        the kind at once, in one transaction; if it raises they are fired one by one (each as a list of one).
        """

        def register(handler: Any) -> Any:
            if kind in self._timer_handlers or kind in self._timer_batch_handlers:
                raise ValueError(f"timer kind {kind!r} already has a handler")
            (self._timer_batch_handlers if batch else self._timer_handlers)[kind] = handler
            return handler

        return register

    def provide(self, key: web.AppKey[Any], value: Any) -> None:
        """Put `value` into the web app under `key`, for route handlers (e.g. a provider, a setting)."""
        self._context[key] = value

    def on_stop(self, close: Callable[[], Awaitable[object]]) -> None:
        """Call `close` when the service stops, after the consumers and timers (e.g. a provider's connections)."""
        self._closers.append(close)

    async def _repeat(self, name: str, seconds: float, job: Callable[[], Awaitable[object]]) -> None:
        while True:
            try:
                await job()
            except Exception as exc:  # the next round tries again
                log.warning("periodic job failed", job=name, error=repr(exc))
            await asyncio.sleep(seconds)

    async def start(self) -> None:
        """Open HTTP and start the background work; returns without waiting for the database or Kafka."""
        s = self.settings
        cpu.configure(s.cpu_workers)
        # No connection is opened here (min_size=0): the pool connects on first use, so a database that is
        # down shows in /readyz instead of keeping the HTTP server closed.
        self._pool = await create_pool(s.database_url, s.service_name, min_size=0, max_size=s.db_pool_max)
        app = build_app(self.api, TokenVerifier(s))
        app[POOL] = self._pool
        for key, value in self._context.items():
            app[key] = value
        app[READINESS].extend(
            [
                ("database", self._database_ready, True),
                ("kafka", self._kafka_ready, True),
                ("broker", self._broker_ready, False),
                *([("consumers", self._consumers_ready, True)] if self._memberships else []),
                *([("projections", self._projections_ready, True)] if self._catching_up() else []),
            ]
        )
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=s.shutdown_grace_s / 2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, s.http_host, s.http_port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self._housekeeping_task = asyncio.create_task(self._housekeeping(), name="housekeeping")
        self._job_tasks = [asyncio.create_task(self._repeat(*job), name=job[0]) for job in self._jobs]
        if self._timer_handlers or self._timer_batch_handlers:
            # Backs off by itself while the database is unreachable, so it never holds up start-up.
            self._timers = TimerRunner(
                self._pool,
                s.service_name,
                self._timer_handlers,
                concurrency=s.timer_concurrency,
                poll_interval_s=s.timer_poll_interval_s,
                max_attempts=s.timer_max_attempts,
                batch_handlers=self._timer_batch_handlers,
                batch_size=s.timer_batch_size,
            )
            self._timers_task = asyncio.create_task(self._timers.run(), name="timers")
        self._connecting = asyncio.create_task(self._connect_kafka(), name="kafka-start")
        log.info("service started; connecting to Kafka in the background", http=f"http://{s.http_host}:{self.port}")

    async def _connect_kafka(self) -> None:
        s = self.settings
        await self._retry("create topics", lambda: ensure_topics(s.kafka_bootstrap, self.topics))
        await self._retry("start the outbox producer", self._start_producer)
        assert self._producer is not None
        self._relay = OutboxRelay(
            self.pool,
            self._producer,
            s.service_name,
            batch_size=s.outbox_batch_size,
            poll_interval_s=s.outbox_poll_interval_s,
        )
        self._relay_task = asyncio.create_task(self._relay.run(), name="outbox-relay")
        await self._retry("start the consumers", self._start_consumers)
        self._kafka_step, self._kafka_error = "", None
        log.info("connected to Kafka")

    async def _start_producer(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            client_id=f"{self.settings.service_name}-outbox",
            acks="all",
            enable_idempotence=False,
            linger_ms=2,
        )
        try:
            await producer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise
        self._producer = producer
        self._producer_started = True

    async def _start_consumers(self) -> None:
        try:
            await self._start_broker()
        except BaseException:
            with contextlib.suppress(Exception):
                await self.broker.stop()
            raise
        log.info("consumers started")

    async def _start_broker(self) -> None:
        """faststream's `broker.start()`, but its subscribers start (join their groups) at once, not one after
        another: aiokafka's start waits for the group's assignment, about half the session timeout on Tansu, so a
        service with five subscribers took five of those to serve again after a restart. On noida a join can wait
        for ever."""
        broker = self.broker
        await broker.connect()
        await asyncio.gather(*(sub.start() for sub in broker.subscribers))
        for pub in broker.publishers:
            await pub.start()
        broker.running = True

    async def _retry(self, what: str, attempt: Callable[[], Awaitable[object]], max_backoff_s: float = 5.0) -> None:
        self._kafka_step, self._kafka_error = f"connecting: {what}", None
        backoff = 0.5
        while True:
            try:
                await attempt()
                return
            except Exception as exc:
                self._kafka_error = repr(exc)
                log.warning(f"cannot {what} yet; retrying", error=repr(exc), backoff_s=backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max_backoff_s)

    async def stop(self) -> None:
        """Drain and close everything in the order that loses nothing; safe at any stage of start-up."""
        self._stopping = True
        grace = self.settings.shutdown_grace_s
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._connecting
        if self._runner is not None:
            await self._runner.cleanup()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.broker.stop(), grace / 2)
        for task in [*self._job_tasks, *([self._housekeeping_task] if self._housekeeping_task else [])]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._timers is not None and self._timers_task is not None:
            # Before the outbox flush, so what the last fired timers enqueued is published too.
            self._timers.stop()
            try:
                await asyncio.wait_for(self._timers_task, grace / 4)
            except Exception as exc:  # on a timeout wait_for cancels it: the timer in hand rolls back, stays due
                log.warning("timer runner did not stop cleanly", error=repr(exc))
        for close in self._closers:
            try:
                await asyncio.wait_for(close(), grace / 4)
            except Exception as exc:
                log.warning("a resource did not close cleanly", error=repr(exc))
        if self._relay is not None and self._relay_task is not None:
            self._relay.stop()
            with contextlib.suppress(Exception):
                await self._relay_task
            try:
                sent = await self._relay.flush(timeout_s=grace / 2)
                log.info("outbox flushed on shutdown", published=sent)
            except Exception as exc:
                log.warning("outbox not fully flushed; rows stay for the next start", error=repr(exc))
        if self._producer is not None and self._producer_started:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._producer.stop(), grace / 4)
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.close(), grace / 4)
            except Exception:
                self._pool.terminate()
        cpu.shutdown()
        log.info("service stopped")

    async def _housekeeping(self, every_s: float = 3600.0) -> None:
        """Hourly: forget inbox rows older than the retention."""
        retention = timedelta(days=self.settings.inbox_retention_days)
        while True:
            try:
                removed = await inbox.purge(self.pool, retention)
                if removed:
                    log.info("inbox purged", removed=removed)
            except Exception as exc:  # the next hour tries again
                log.warning("inbox purge failed", error=repr(exc))
            await asyncio.sleep(every_s)

    async def _database_ready(self) -> None:
        if self._stopping:
            raise RuntimeError("shutting down")
        await self.pool.fetchval("SELECT 1")

    async def _kafka_ready(self) -> None:
        if self._kafka_step:
            why = f" (last error: {self._kafka_error})" if self._kafka_error else ""
            raise ConnectionError(self._kafka_step + why)

    async def _broker_ready(self) -> None:
        if not await self.broker.ping(timeout=2.0):
            raise ConnectionError("Kafka broker unreachable")

    async def projections_caught_up(self) -> bool:
        """Whether every projection of a compacted snapshot topic has applied what its partitions held when this
        replica got them (what `/readyz` waits for): until then the service's copies may be missing or old.
        Cheap once true (it stays true); before, it asks the broker (at most 2 s)."""
        if all(m.catch_up is not None and m.catch_up.done for m in self._catching_up()):
            return True
        try:
            await self._projections_ready()
        except Exception:  # behind, not assigned yet, or the broker did not answer: not caught up
            return False
        return True

    def _catching_up(self) -> list[_Membership]:
        return [m for m in self._memberships if m.catch_up is not None]

    async def _projections_ready(self) -> None:
        behind = []
        for m in self._catching_up():
            assert m.catch_up is not None
            if m.catch_up.done:
                continue
            consumer = self._consumer_of(m.group)
            if consumer is None or not m.joined.is_set():
                behind.append(f"{m.topic} (not assigned yet)")
                continue
            lag, unknown = await asyncio.wait_for(m.catch_up.behind(consumer, m.assigned), 2.0)
            if lag or unknown:
                pending = f", {unknown} partition(s) not fetched yet" if unknown else ""
                behind.append(f"{m.topic} behind by {lag} records{pending}")
        if behind:
            raise RuntimeError("catching up: " + "; ".join(behind))

    def _consumer_of(self, group: str) -> Any:
        for sub in self.broker.subscribers:
            if getattr(sub, "group_id", None) == group:
                return getattr(sub, "consumer", None)
        return None

    async def _consumers_ready(self) -> None:
        waiting = [m.group for m in self._memberships if not m.joined.is_set()]
        if waiting:
            raise RuntimeError(f"joining: {', '.join(waiting)}")

    async def serve_forever(self) -> None:
        """Start, wait for SIGTERM or SIGINT, stop. A signal during start-up cancels it and stops at once."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        configure_logging(self.settings.service_name, self.settings.log_level, self.settings.log_format)
        starting = asyncio.create_task(self.start(), name="start")
        stopping = asyncio.create_task(stop.wait(), name="wait-for-signal")
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done() and starting.exception() is not None:
            stopping.cancel()
            log.error("start-up failed", error=repr(starting.exception()))
            await self.stop()
            raise starting.exception()  # type: ignore[misc]
        if not stopping.done():
            await stopping
        log.info("stop requested")
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
        await self.stop()

    def run(self) -> None:
        asyncio.run(self.serve_forever())
