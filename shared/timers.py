"""Durable timers: something a service must do later, kept as a row in its own schema.

A use case calls `schedule` inside the transaction that changes state, so the deadline commits with the
change (and `cancel` when the deadline no longer applies). At most one timer is pending per (kind, key):
scheduling it again moves its due time and replaces its payload, which is how a deadline is re-armed.

`TimerRunner` fires due timers, each in a transaction of its own: it claims the earliest due row with
`FOR UPDATE SKIP LOCKED` (so replicas never take the same one), deletes it and calls the kind's handler on
the same connection inside a savepoint, then commits. The handler's writes, the outbox rows it enqueues and
the timer's removal therefore commit together: the effect happens once across replicas, and a crash before
the commit leaves the timer due for the next runner. A handler may call `schedule` for its own (kind, key)
to fire again later (the row is already deleted, so that inserts a new one).

A handler that raises is rolled back to the savepoint while the claim is kept, so its failure is recorded
atomically: attempts + 1 and an exponential backoff, and after `max_attempts` the timer moves to
`timers_parked` with its last error. A transient failure (database unreachable, deadlock, serialization
failure, connection reset) is not the handler's fault and never counts as an attempt: the timer is retried
shortly, and if the database itself is gone the pass stops and the runner backs off. A timer whose kind has
no handler here is left alone, with one warning per kind: during a rolling deploy another version of the
service may be the one that handles it.

Batches (DESIGN §7a): a kind may have a batch handler instead, `async (conn, timers)`. The runner then claims
the earliest due timer and up to `batch_size - 1` more due timers of its kind in the same statement's order
(`FOR UPDATE SKIP LOCKED`), deletes them and calls the handler once with all of them, in one transaction: a
thousand due pushes cost one commit, not a thousand. If the batch handler raises, its savepoint is rolled back
and the same timers are fired one by one in that transaction, each in a savepoint of its own, with the
failure rules above: one bad timer is retried or parked alone while its neighbours fire.

Wake-ups: `schedule` NOTIFYs `<schema>_timers` (delivered on commit); the runner LISTENs on a connection of
its own (replaced when it dies, as the outbox relay does) and otherwise sleeps until the earliest due time,
never longer than the poll interval. The clock is the database's `now()`, one clock for every replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import structlog
from prometheus_client import Counter

from shared.db import DATABASE_UNAVAILABLE, Listener
from shared.logs import get_logger

log = get_logger(__name__)

# Not the handler's fault, so never an attempt: the database is unreachable, or PostgreSQL chose this
# transaction as the victim of a conflict. Deliberately not OSError at large (as shared.db says, a file error
# is a bug) nor Kafka errors (a handler publishes through the outbox, never directly).
TRANSIENT: tuple[type[BaseException], ...] = (
    *DATABASE_UNAVAILABLE,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
)

FIRED = Counter("timers_fired_total", "Timers whose handler committed", ["kind"])
FAILED = Counter("timers_failed_total", "Timer handler runs that raised and were rolled back", ["kind"])
PARKED = Counter("timers_parked_total", "Timers that kept failing, moved to timers_parked", ["kind"])

_RELISTEN_S = 5.0  # without a LISTEN, poll at least this often so a new listener is tried soon
_UNHANDLED_CHECK_S = 60.0
_MAX_ERROR_CHARS = 4000


@dataclass(frozen=True)
class Timer:
    id: int
    kind: str
    key: str
    due_at: datetime
    payload: dict[str, Any]
    attempts: int  # failed runs so far; 0 on the first


Handler = Callable[[asyncpg.Connection, Timer], Awaitable[None]]
BatchHandler = Callable[[asyncpg.Connection, list[Timer]], Awaitable[None]]


async def schedule(
    conn: asyncpg.Connection, kind: str, key: str, due_at: datetime, payload: Mapping[str, Any] | None = None
) -> None:
    """Fire `kind`'s handler for `key` at `due_at` (aware), replacing any pending timer of that (kind, key).

    Call it inside the transaction that makes the deadline true: it takes effect only if that commits.
    """
    if due_at.tzinfo is None or due_at.utcoffset() is None:
        raise ValueError("due_at must be timezone-aware")
    if not kind or not key:
        raise ValueError("a timer needs a kind and a key")
    # The payload goes as text so this works on any connection, whatever JSON codec it has.
    await conn.execute(
        """WITH armed AS (
               INSERT INTO timers (kind, key, due_at, payload) VALUES ($1, $2, $3, $4::text::jsonb)
               ON CONFLICT (kind, key) DO UPDATE
               SET due_at = EXCLUDED.due_at, payload = EXCLUDED.payload, attempts = 0, last_error = NULL)
           SELECT pg_notify(current_schema() || '_timers', '')""",
        kind,
        key,
        due_at,
        json.dumps(dict(payload or {})),
    )


async def schedule_many(
    conn: asyncpg.Connection, timers: Sequence[tuple[str, str, datetime, Mapping[str, Any] | None]]
) -> None:
    """`schedule` for many (kind, key, due_at, payload) in one statement; of several for one (kind, key) the
    last counts, as calling `schedule` for each in turn would leave it."""
    last: dict[tuple[str, str], tuple[datetime, str]] = {}
    for kind, key, due_at, payload in timers:
        if due_at.tzinfo is None or due_at.utcoffset() is None:
            raise ValueError("due_at must be timezone-aware")
        if not kind or not key:
            raise ValueError("a timer needs a kind and a key")
        last[(kind, key)] = (due_at, json.dumps(dict(payload or {})))
    if not last:
        return
    # In (kind, key) order, so concurrent transactions re-arming the same timers lock them in one order.
    ordered = sorted(last.items())
    await conn.execute(
        """WITH armed AS (
               INSERT INTO timers (kind, key, due_at, payload)
               SELECT k, t, d, p::jsonb FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[])
                    WITH ORDINALITY AS x(k, t, d, p, n) ORDER BY n
               ON CONFLICT (kind, key) DO UPDATE
               SET due_at = EXCLUDED.due_at, payload = EXCLUDED.payload, attempts = 0, last_error = NULL)
           SELECT pg_notify(current_schema() || '_timers', '')""",
        [kind for (kind, _), _ in ordered],
        [key for (_, key), _ in ordered],
        [due for _, (due, _) in ordered],
        [payload for _, (_, payload) in ordered],
    )


async def cancel(conn: asyncpg.Connection, kind: str, key: str) -> bool:
    """Drop the pending timer of (kind, key); False if there was none (never set, fired or cancelled).

    A timer being fired at this moment is waited for: then it has fired, and this returns False.
    """
    return await cancel_kinds(conn, key, kind) == 1


async def cancel_kinds(conn: asyncpg.Connection, key: str, *kinds: str) -> int:
    """Drop the pending timers of `key` of each of `kinds` in one round trip; returns how many there were."""
    status = await conn.execute("DELETE FROM timers WHERE key = $1 AND kind = ANY($2::text[])", key, list(kinds))
    return int(status.split()[-1])


async def hold(conn: asyncpg.Connection, *keys: str) -> None:
    """Lock the pending timers of `keys` (any kind) for the rest of the transaction.

    Call it before locking the entity the timers are about, in any transaction that may cancel or re-arm them:
    a runner firing one of them holds the timer first and the entity second, so a use case taking the
    opposite order could deadlock with it. A timer held here is skipped by the runners until the commit.
    """
    await conn.execute("SELECT 1 FROM timers WHERE key = ANY($1::text[]) ORDER BY id FOR UPDATE", list(keys))


async def hold_idle(conn: asyncpg.Connection, kind: str, keys: Sequence[str]) -> list[int]:
    """Lock the pending timers of `kind` among `keys` that no runner is firing right now, for the rest of the
    transaction; their ids (for `cancel_ids`). A timer being fired is skipped, not waited for: for a use case
    that must not wait behind a handler's slow call (notifier's acknowledgement behind a push in flight), and
    whose entity the handler re-reads under lock before it re-arms anything."""
    rows = await conn.fetch(
        "SELECT id FROM timers WHERE kind = $1 AND key = ANY($2::text[]) ORDER BY id FOR UPDATE SKIP LOCKED",
        kind, list(keys),
    )
    return [r["id"] for r in rows]


async def cancel_ids(conn: asyncpg.Connection, ids: Sequence[int]) -> int:
    """Drop the timers `ids` (held by `hold_idle`); returns how many there were."""
    status = await conn.execute("DELETE FROM timers WHERE id = ANY($1::bigint[])", list(ids))
    return int(status.split()[-1])


_COLUMNS = "id, kind, key, due_at, payload::text AS payload, attempts"


def _timer(row: asyncpg.Record) -> Timer:
    return Timer(row["id"], row["kind"], row["key"], row["due_at"], json.loads(row["payload"]), row["attempts"])


async def pending(conn: asyncpg.Connection, kind: str, keys: Sequence[str]) -> list[Timer]:
    """The pending timers of `kind` among `keys`, earliest due first."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM timers WHERE kind = $1 AND key = ANY($2::text[]) ORDER BY due_at, id",
        kind, list(keys),
    )
    return [_timer(r) for r in rows]


class TimerRunner:
    """Fires the due timers of one schema whose kind it has a handler for; safe to run on every replica."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        schema: str,
        handlers: Mapping[str, Handler],
        *,
        concurrency: int = 1,
        poll_interval_s: float = 1.0,
        max_attempts: int = 5,
        first_backoff_s: float = 1.0,
        max_backoff_s: float = 300.0,
        clock: Callable[[], datetime] | None = None,
        batch_handlers: Mapping[str, BatchHandler] | None = None,
        batch_size: int = 100,
    ) -> None:
        if concurrency < 1 or max_attempts < 1 or batch_size < 1:
            raise ValueError("concurrency, max_attempts and batch_size must be at least 1")
        if overlap := set(handlers) & set(batch_handlers or {}):
            raise ValueError(f"timer kinds with two handlers: {sorted(overlap)}")
        self._pool = pool
        self._schema = schema
        self._handlers = dict(handlers)
        self._batch_handlers = dict(batch_handlers or {})
        self._batch_size = batch_size
        self._kinds = [*self._handlers, *self._batch_handlers]
        self._concurrency = concurrency
        self._poll_interval_s = poll_interval_s
        self._max_attempts = max_attempts
        self._first_backoff_s = first_backoff_s
        self._max_backoff_s = max_backoff_s
        self._clock = clock
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        self._listener = Listener(pool, f"{schema}_timers", self._wake, "timer runner")
        self._warned_kinds: set[str] = set()
        self._next_unhandled_check = 0.0

    async def run(self) -> None:
        """Fire timers as they fall due until `stop()`; database outages back off and retry, nothing is lost."""
        backoff = 0.1
        try:
            while not self._stopped.is_set():
                # Cleared before LISTEN and the pass: a NOTIFY or stop() landing during them is not lost.
                self._wake.clear()
                await self._listener.ensure()
                try:
                    _, taken = await self._pass(self._now())
                    wait = await self._seconds_to_wait(taken)
                    backoff = 0.1
                except Exception as exc:  # database down or restarting: every timer stays due
                    log.warning("timer runner failed; retrying", error=repr(exc), backoff_s=backoff)
                    await self._pause(self._stopped, backoff)
                    backoff = min(backoff * 2, _RELISTEN_S)
                    continue
                if not self._listener.listening:
                    wait = min(wait, _RELISTEN_S)
                await self._pause(self._wake, wait)
        finally:
            await self._listener.close()

    def stop(self) -> None:
        """Ask `run()` to return; the timer being fired finishes first."""
        self._stopped.set()
        self._wake.set()

    async def fire_due(self, now: datetime | None = None) -> int:
        """Fire every timer due at `now` (default: the database's now()) once; returns how many fired.

        Timers armed while the pass runs (a handler re-arming its own key for now) wait for the next pass,
        so a pass always ends. Failed ones are rescheduled or parked and are not counted.
        """
        fired, _ = await self._pass(now or self._now())
        return fired

    def _now(self) -> datetime | None:
        return self._clock() if self._clock is not None else None

    async def _pass(self, now: datetime | None) -> tuple[int, int]:
        """(fired, taken): timers whose handler committed, and every timer claimed, failed ones included."""
        if not self._kinds:
            return 0, 0
        await self._warn_unhandled(now)
        last_id = await self._pool.fetchval("SELECT coalesce(max(id), 0) FROM timers")
        fired = taken = 0

        running = 1

        async def worker(workers: asyncio.TaskGroup | None) -> None:
            nonlocal fired, taken, running
            while not self._stopped.is_set():
                outcome = await self._fire_one(now, last_id)
                if outcome is None:
                    return
                count, more_due = outcome
                taken += 1
                fired += count
                # Workers are added while claims come back full, not started all at once: a wake-up for one
                # due timer costs one empty claim, not one per worker (8 empty claim transactions per
                # NOTIFY made up most of notifier's CPU at 100 commands/s).
                if more_due and workers is not None and running < self._concurrency:
                    running += 1
                    workers.create_task(worker(workers))

        if self._concurrency == 1:
            await worker(None)
        else:
            try:
                async with asyncio.TaskGroup() as workers:
                    workers.create_task(worker(workers))
            except ExceptionGroup as failed:  # the first cause is enough; the others are the same outage
                raise failed.exceptions[0] from None
        return fired, taken

    async def _fire_one(self, now: datetime | None, last_id: int) -> tuple[int, bool] | None:
        """Claim and fire the earliest due timer, with a batch of its kind if it has a batch handler: how many
        of them fired (a failed one does not count) and whether more are likely due (a single timer, or a full
        batch), None if none was due."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"""SELECT {_COLUMNS} FROM timers
                   WHERE due_at <= coalesce($1::timestamptz, now()) AND id <= $2 AND kind = ANY($3::text[])
                   ORDER BY due_at, id LIMIT 1 FOR UPDATE SKIP LOCKED""",
                now,
                last_id,
                self._kinds,
            )
            if row is None:
                return None
            first = _timer(row)
            if first.kind not in self._batch_handlers:
                return int(await self._fire(conn, first, now)), True
            rows = await conn.fetch(
                f"""SELECT {_COLUMNS} FROM timers
                   WHERE due_at <= coalesce($1::timestamptz, now()) AND id <= $2 AND kind = $3 AND id <> $4
                   ORDER BY due_at, id LIMIT $5 FOR UPDATE SKIP LOCKED""",
                now,
                last_id,
                first.kind,
                first.id,
                self._batch_size - 1,
            )
            fired = await self._fire_batch(conn, [first, *map(_timer, rows)], now)
            return fired, len(rows) + 1 >= self._batch_size

    async def _fire(self, conn: asyncpg.Connection, timer: Timer, now: datetime | None) -> bool:
        """Fire one claimed timer in a savepoint; True if it fired, False if it failed (and that is recorded)."""
        with structlog.contextvars.bound_contextvars(timer_id=timer.id, timer_kind=timer.kind, timer_key=timer.key):
            try:
                # A savepoint: a failing handler is undone while this transaction keeps the row locked, so
                # its failure is recorded before any other replica can take the timer again.
                async with conn.transaction():
                    await conn.execute("DELETE FROM timers WHERE id = $1", timer.id)
                    if timer.kind in self._batch_handlers:
                        await self._batch_handlers[timer.kind](conn, [timer])
                    else:
                        await self._handlers[timer.kind](conn, timer)
            except Exception as exc:
                FAILED.labels(timer.kind).inc()
                await self._record_failure(conn, timer, exc, now)
                return False
        FIRED.labels(timer.kind).inc()
        return True

    async def _fire_batch(self, conn: asyncpg.Connection, batch: list[Timer], now: datetime | None) -> int:
        """Fire claimed timers of one kind with its batch handler in a savepoint; should it raise, fire them one
        by one instead. How many fired."""
        if len(batch) == 1:
            return int(await self._fire(conn, batch[0], now))
        kind = batch[0].kind
        with structlog.contextvars.bound_contextvars(timer_kind=kind, timers=len(batch)):
            try:
                async with conn.transaction():
                    await conn.execute("DELETE FROM timers WHERE id = ANY($1::bigint[])", [t.id for t in batch])
                    await self._batch_handlers[kind](conn, batch)
            except Exception as exc:
                if conn.is_closed():  # the database is gone with the batch: every timer stays due
                    raise
                log.warning("timer batch failed; firing its timers one by one", error=repr(exc))
            else:
                FIRED.labels(kind).inc(len(batch))
                return len(batch)
        fired = 0
        for timer in batch:
            fired += await self._fire(conn, timer, now)
        return fired

    async def _record_failure(
        self, conn: asyncpg.Connection, timer: Timer, error: Exception, now: datetime | None
    ) -> None:
        # On a connection that died with the handler this raises: the transaction is gone, the timer stays due
        # with its attempts unchanged, and the pass stops for the runner to back off.
        text = f"{type(error).__name__}: {error}"[:_MAX_ERROR_CHARS]
        if isinstance(error, TRANSIENT):
            log.warning("timer handler hit a transient failure; retrying", error=repr(error))
            await self._postpone(conn, timer, self._first_backoff_s, timer.attempts, text, now)
            return
        attempts = timer.attempts + 1
        if attempts >= self._max_attempts:
            PARKED.labels(timer.kind).inc()
            log.error("timer kept failing; parked", attempts=attempts, error=repr(error))
            await conn.execute(
                """WITH parked AS (DELETE FROM timers WHERE id = $1 RETURNING *)
                   INSERT INTO timers_parked (id, kind, key, due_at, payload, attempts, last_error, created_at)
                   SELECT id, kind, key, due_at, payload, $2, $3, created_at FROM parked""",
                timer.id,
                attempts,
                text,
            )
            return
        backoff = min(self._first_backoff_s * 2 ** (attempts - 1), self._max_backoff_s)
        log.warning("timer handler failed; retrying", attempt=attempts, backoff_s=backoff, error=repr(error))
        await self._postpone(conn, timer, backoff, attempts, text, now)

    @staticmethod
    async def _postpone(
        conn: asyncpg.Connection, timer: Timer, seconds: float, attempts: int, error: str, now: datetime | None
    ) -> None:
        await conn.execute(
            """UPDATE timers
               SET attempts = $2, last_error = $3, due_at = coalesce($4::timestamptz, now()) + $5::interval
               WHERE id = $1""",
            timer.id,
            attempts,
            error,
            now,
            timedelta(seconds=seconds),
        )

    async def _seconds_to_wait(self, taken: int) -> float:
        if self._clock is None:
            until = await self._pool.fetchval(
                "SELECT extract(epoch FROM min(due_at) - now()) FROM timers WHERE kind = ANY($1::text[])", self._kinds
            )
        else:
            earliest = await self._pool.fetchval(
                "SELECT min(due_at) FROM timers WHERE kind = ANY($1::text[])", self._kinds
            )
            until = None if earliest is None else (earliest - self._clock()).total_seconds()
        if until is None:
            return self._poll_interval_s
        if float(until) <= 0:
            # Still due after a pass that took nothing: another replica holds it (or it was armed during the
            # pass, and its NOTIFY wakes us). Look again at the poll rather than spin.
            return 0.0 if taken else self._poll_interval_s
        return min(float(until), self._poll_interval_s)

    async def _warn_unhandled(self, now: datetime | None) -> None:
        if time.monotonic() < self._next_unhandled_check:
            return
        self._next_unhandled_check = time.monotonic() + _UNHANDLED_CHECK_S
        rows = await self._pool.fetch(
            """SELECT kind, count(*) AS due FROM timers
               WHERE due_at <= coalesce($1::timestamptz, now()) AND kind <> ALL($2::text[]) GROUP BY kind""",
            now,
            self._kinds,
        )
        for row in rows:
            if row["kind"] not in self._warned_kinds:
                self._warned_kinds.add(row["kind"])
                log.warning(
                    "due timers of a kind this service has no handler for; left for a version that has one",
                    kind=row["kind"],
                    due=row["due"],
                )

    @staticmethod
    async def _pause(event: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)

