"""The transactional outbox and its relay.

A use case calls `enqueue` inside the transaction that changes state, so the state change and the messages
it causes commit together. The relay publishes committed rows to Kafka in id order and deletes them only
after the broker acknowledged them; a crash in between publishes a row twice, which the consumers' inbox
absorbs. One relay per schema is active at a time (a transaction-level advisory lock), which keeps the
per-key order even with several replicas of a service.

The relay is woken by NOTIFY and polls only as a fallback. A LISTEN lives on one connection: when PostgreSQL
restarts that connection dies silently for our purposes (no error, just no more wake-ups), so each pass
checks it and LISTENs again on a fresh one, and a termination callback wakes the loop to do so at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import aiokafka.errors
import asyncpg
from prometheus_client import Counter

from shared.db import Listener
from shared.logs import CORRELATION_ID, current_correlation_id, get_logger
from shared.messages import Message
from shared.topics import Topic, topic_for

log = get_logger(__name__)

# Refusals about the message itself: retrying cannot help. Everything else (timeouts, leader changes, a
# broker that is down) is retried.
PERMANENT = (
    aiokafka.errors.MessageSizeTooLargeError,
    aiokafka.errors.RecordTooLargeError,
    aiokafka.errors.InvalidTopicError,
    aiokafka.errors.CorruptRecordException,
)

PUBLISHED = Counter("outbox_published_total", "Outbox rows published to Kafka", ["topic"])
PARKED = Counter("outbox_parked_total", "Outbox rows the broker refused for good, moved to outbox_parked", ["topic"])
RELAY_ERRORS = Counter("outbox_relay_errors_total", "Failed relay batches (retried with backoff)")


async def enqueue(
    conn: asyncpg.Connection,
    message: Message,
    *,
    headers: Mapping[str, str] | None = None,
    topic: Topic | None = None,
) -> None:
    """Stage `message` for publication on its registered topic (or `topic`); sent only if the transaction commits."""
    await enqueue_all(conn, [message], headers=headers, topic=topic)


async def enqueue_all(
    conn: asyncpg.Connection,
    messages: Sequence[Message],
    *,
    headers: Mapping[str, str] | None = None,
    topic: Topic | None = None,
) -> None:
    """Stage `messages` in this order, in one round trip; see `enqueue`."""
    if not messages:
        return
    correlation_id = current_correlation_id()
    metas = []
    for message in messages:
        meta = {"type": message.type, "event_id": str(message.event_id), **(headers or {})}
        if correlation_id:
            meta.setdefault(CORRELATION_ID, correlation_id)
        metas.append(json.dumps(meta))
    # One round trip: the rows and the wake-up, which PostgreSQL delivers only on commit, so the relay never
    # wakes for a row it cannot see yet. WITH ORDINALITY keeps the ids (the publication order) as given.
    await conn.execute(
        """WITH staged AS (
               INSERT INTO outbox (topic, key, payload, headers)
               SELECT t, k, p, h::jsonb FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[])
                    WITH ORDINALITY AS m(t, k, p, h, n) ORDER BY n)
           SELECT pg_notify(current_schema() || '_outbox', '')""",
        [(topic or topic_for(m)).name for m in messages],
        [m.key for m in messages],
        [m.model_dump_json().encode() for m in messages],
        metas,
    )


class Producer(Protocol):
    async def send(
        self, topic: str, value: bytes, key: bytes, headers: list[tuple[str, bytes]]
    ) -> asyncio.Future[Any]: ...


class OutboxRelay:
    """Publishes committed outbox rows to Kafka; wakes on NOTIFY, polls as a fallback."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        producer: Producer,
        schema: str,
        *,
        batch_size: int = 500,
        poll_interval_s: float = 1.0,
        max_backoff_s: float = 5.0,
    ) -> None:
        self._pool = pool
        self._producer = producer
        self._schema = schema
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._max_backoff_s = max_backoff_s
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        self._listener = Listener(pool, f"{schema}_outbox", self._wake, "outbox relay")

    async def run(self) -> None:
        """Relay until `stop()`; transient failures back off and retry, nothing is dropped."""
        backoff = 0.1
        try:
            while not self._stopped.is_set():
                # Cleared before LISTEN and the pass, so a NOTIFY or stop() that lands during them is not lost;
                # LISTEN comes first, so a row committed after the pass began still wakes the next one.
                self._wake.clear()
                await self._listener.ensure()
                try:
                    while await self.publish_batch() == self._batch_size:
                        pass
                    backoff = 0.1
                except Exception as exc:  # broker or database down: back off, keep every row
                    RELAY_ERRORS.inc()
                    log.warning("outbox relay failed; retrying", error=repr(exc), backoff_s=backoff)
                    await self._pause(self._stopped, backoff)
                    backoff = min(backoff * 2, self._max_backoff_s)
                    continue
                # Without a listener only the poll would find new rows: try to LISTEN again soon instead.
                wait = self._poll_interval_s
                if not self._listener.listening:
                    wait = min(wait, self._max_backoff_s)
                await self._pause(self._wake, wait)
        finally:
            await self._listener.close()

    @staticmethod
    async def _pause(event: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()

    async def flush(self, timeout_s: float = 10.0) -> int:
        """Publish everything committed so far (used on shutdown); returns how many rows went out."""
        sent = 0

        async def drain() -> None:
            nonlocal sent
            while (n := await self.publish_batch()) > 0:
                sent += n

        await asyncio.wait_for(drain(), timeout_s)
        return sent

    async def publish_batch(self) -> int:
        """Publish up to one batch in id order; returns the number of rows taken out of the outbox.

        A row the broker refuses for good (too large, invalid topic) is moved to `outbox_parked` rather than
        blocking every row behind it; any other failure rolls the batch back to be retried whole.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock(hashtext('outbox:' || $1))", self._schema):
                return 0
            rows = await conn.fetch(
                "SELECT id, topic, key, payload, headers, created_at FROM outbox ORDER BY id LIMIT $1",
                self._batch_size,
            )
            if not rows:
                return 0
            # Sends are enqueued one after another so the producer keeps their order per partition.
            acks = [await self._send(r) for r in rows]
            outcomes = await asyncio.gather(*acks, return_exceptions=True)
            refused = [(r, o) for r, o in zip(rows, outcomes, strict=True) if isinstance(o, BaseException)]
            for _, error in refused:
                if not isinstance(error, PERMANENT):
                    raise error
            for row, error in refused:
                await self._park(conn, row, error)
            await conn.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", [r["id"] for r in rows])
        for r in rows:
            PUBLISHED.labels(r["topic"]).inc()
        return len(rows)

    async def _send(self, row: asyncpg.Record) -> asyncio.Future[Any]:
        try:
            return await self._producer.send(
                row["topic"],
                value=row["payload"],
                key=row["key"].encode(),
                headers=[(k, str(v).encode()) for k, v in row["headers"].items()],
            )
        except PERMANENT as exc:  # refused before it left the process (e.g. over the size limit)
            failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            return failed

    async def _park(self, conn: asyncpg.Connection, row: asyncpg.Record, error: BaseException) -> None:
        PARKED.labels(row["topic"]).inc()
        log.error(
            "outbox row refused by the broker; parked", outbox_id=row["id"], topic=row["topic"], error=repr(error)
        )
        await conn.execute(
            """INSERT INTO outbox_parked (id, topic, key, payload, headers, created_at, error)
               VALUES ($1, $2, $3, $4, $5, $6, $7)""",
            row["id"],
            row["topic"],
            row["key"],
            row["payload"],
            row["headers"],
            row["created_at"],
            repr(error),
        )

