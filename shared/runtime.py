"""A service's process: pool, broker, outbox relay, web app, and an orderly stop on SIGTERM.

Shutdown order matters for "never lose a page": stop taking HTTP (in-flight requests finish), stop the
consumers (an unfinished message is not committed and will be redelivered), publish what the outbox still
holds, then close the producer and the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any, Union

import asyncpg
from aiohttp import web
from aiokafka import AIOKafkaProducer
from faststream.kafka import KafkaBroker

from shared import inbox
from shared.auth import TokenVerifier
from shared.db import create_pool
from shared.http import READINESS, Api, build_app
from shared.kafka import ensure_topics, make_broker, subscriber_options
from shared.logs import configure_logging, get_logger
from shared.outbox import OutboxRelay
from shared.settings import ServiceSettings
from shared.topics import Topic

log = get_logger(__name__)

POOL = web.AppKey("pool", asyncpg.Pool)


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
                schema=topic.messages[0] if len(topic.messages) == 1 else Union[topic.messages],  # noqa: UP007
                description=f"Published by {settings.service_name} through its outbox, keyed by entity id.",
            )
        self._pool: asyncpg.Pool | None = None
        self._producer: AIOKafkaProducer | None = None
        self._relay: OutboxRelay | None = None
        self._relay_task: asyncio.Task[None] | None = None
        self._housekeeping_task: asyncio.Task[None] | None = None
        self._jobs: list[tuple[str, float, Callable[[], Awaitable[object]]]] = []
        self._job_tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None
        self._stopping = False
        self.port: int | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("service not started")
        return self._pool

    def subscriber(self, topic: Topic, *, group: str | None = None) -> Callable[[Callable[..., Any]], Any]:
        """Register a handler for `topic` in its own consumer group, `<service>.<topic>` unless `group` is given.

        A group per subscription: consumers of different topics sharing one group would rebalance each other
        every time one of them joins.
        """
        sub: Callable[[Callable[..., Any]], Any] = self.broker.subscriber(
            topic.name, **subscriber_options(self.settings, group or f"{self.settings.service_name}.{topic.name}")
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

    async def _repeat(self, name: str, seconds: float, job: Callable[[], Awaitable[object]]) -> None:
        while True:
            try:
                await job()
            except Exception as exc:  # the next round tries again
                log.warning("periodic job failed", job=name, error=repr(exc))
            await asyncio.sleep(seconds)

    async def start(self) -> None:
        s = self.settings
        self._pool = await create_pool(s.database_url, s.service_name, min_size=s.db_pool_min, max_size=s.db_pool_max)
        await ensure_topics(s.kafka_bootstrap, self.topics)
        self._producer = AIOKafkaProducer(
            bootstrap_servers=s.kafka_bootstrap,
            client_id=f"{s.service_name}-outbox",
            acks="all",
            enable_idempotence=False,
            linger_ms=2,
        )
        await self._producer.start()
        self._relay = OutboxRelay(
            self._pool,
            self._producer,
            s.service_name,
            batch_size=s.outbox_batch_size,
            poll_interval_s=s.outbox_poll_interval_s,
        )
        self._relay_task = asyncio.create_task(self._relay.run(), name="outbox-relay")
        self._housekeeping_task = asyncio.create_task(self._housekeeping(), name="housekeeping")
        self._job_tasks = [asyncio.create_task(self._repeat(*job), name=job[0]) for job in self._jobs]
        await self.broker.start()  # subscribers join their groups here
        app = build_app(self.api, TokenVerifier(s))
        app[POOL] = self._pool
        app[READINESS].extend([("database", self._database_ready, True), ("broker", self._broker_ready, False)])
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=s.shutdown_grace_s / 2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, s.http_host, s.http_port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        log.info("service started", http=f"http://{s.http_host}:{self.port}")

    async def stop(self) -> None:
        """Drain and close everything in the order that loses nothing."""
        self._stopping = True
        if self._runner is not None:
            await self._runner.cleanup()
        with contextlib.suppress(Exception):
            await self.broker.stop()
        for task in [*self._job_tasks, *([self._housekeeping_task] if self._housekeeping_task else [])]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._relay is not None and self._relay_task is not None:
            self._relay.stop()
            with contextlib.suppress(Exception):
                await self._relay_task
            try:
                sent = await self._relay.flush(timeout_s=self.settings.shutdown_grace_s / 2)
                log.info("outbox flushed on shutdown", published=sent)
            except Exception as exc:
                log.warning("outbox not fully flushed; rows stay for the next start", error=repr(exc))
        if self._producer is not None:
            await self._producer.stop()
        if self._pool is not None:
            await self._pool.close()
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

    async def _broker_ready(self) -> None:
        if not await self.broker.ping(timeout=2.0):
            raise ConnectionError("Kafka broker unreachable")

    async def serve_forever(self) -> None:
        """Start, wait for SIGTERM or SIGINT, stop."""
        configure_logging(self.settings.service_name, self.settings.log_level, self.settings.log_format)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        await stop.wait()
        log.info("stop requested")
        await self.stop()

    def run(self) -> None:
        asyncio.run(self.serve_forever())
