"""PostgreSQL pools: one per service, confined to the service's own schema."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from shared.logs import get_logger

log = get_logger(__name__)


async def _init_connection(conn: asyncpg.Connection) -> None:
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(kind, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """What a connection goes through on its way back to the pool, after asyncpg rolled back any transaction
    left open: nothing more. asyncpg's default runs `pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL` there, a round trip on every release (3 % of notifier's CPU at 100 commands/s, and as many
    statements for PostgreSQL as the work itself for small transactions). Nothing here leaves session state on
    a pooled connection: advisory locks are transaction-scoped (the outbox relay's), cursors live inside
    transactions, settings come from `server_settings`, and the two LISTENing users (`Listener`,
    `Announcements`) UNLISTEN before they release theirs."""


async def create_pool(database_url: str, schema: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """A pool whose connections see only `schema` (and pg_catalog) on their search path."""
    pool = await asyncpg.create_pool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        server_settings={"search_path": schema, "application_name": schema},
        init=_init_connection,
        reset=_keep_session,
    )
    assert pool is not None
    return pool


@asynccontextmanager
async def transaction(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """One connection, one transaction: the unit of work of every use case."""
    async with pool.acquire() as conn, conn.transaction():
        yield conn


# The database cannot be reached right now (down, restarting, refusing connections, or the pool closed): the
# caller should retry later, and nothing was changed.
# Connection errors only, never OSError at large: a file error is a bug, not an outage.
DATABASE_UNAVAILABLE: tuple[type[BaseException], ...] = (
    ConnectionError,
    socket.gaierror,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
)


class Listener:
    """LISTEN on `channel` on a pooled connection of its own, setting `wake` on every NOTIFY and when the
    connection dies. `ensure()` (called each pass of the owner's loop) listens again on a fresh connection
    after the old one died: notifications never reach a new connection by themselves, so without this a
    PostgreSQL restart would leave the owner polling only."""

    def __init__(self, pool: asyncpg.Pool, channel: str, wake: asyncio.Event, who: str) -> None:
        self._pool, self.channel, self._wake, self._who = pool, channel, wake, who
        self._conn: asyncpg.Connection | None = None

    @property
    def listening(self) -> bool:
        if self._conn is None:
            return False
        try:
            return not self._conn.is_closed()
        except asyncpg.InterfaceError:  # the pool took the dead connection back already
            return False

    async def ensure(self) -> None:
        if self.listening:
            return
        await self.close()
        try:
            conn = await self._pool.acquire()
        except Exception as exc:
            log.warning(f"{self._who} cannot LISTEN; polling until it can", error=repr(exc))
            return
        try:
            conn.add_termination_listener(self._wake_up)
            await conn.add_listener(self.channel, self._wake_up)
        except Exception as exc:
            log.warning(f"{self._who} cannot LISTEN; polling until it can", error=repr(exc))
            with contextlib.suppress(Exception):
                await self._pool.release(conn)
            return
        self._conn = conn
        log.info(f"{self._who} listening", channel=self.channel)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(Exception):  # a dead or reclaimed connection refuses all of this
            conn.remove_termination_listener(self._wake_up)
            await conn.remove_listener(self.channel, self._wake_up)
        with contextlib.suppress(Exception):
            await self._pool.release(conn)

    def _wake_up(self, *_: object) -> None:
        self._wake.set()


class Announcements:
    """In-process waiters woken by `NOTIFY <channel>, '<key>'` (e.g. "request 42 changed"), sent by any
    replica in the transaction that made the change, so a waiter learns of it on commit without polling.

    A pooled connection LISTENs while anyone waits, and goes back to the pool when nobody does (so the pool
    can close). A NOTIFY can be missed while no connection listens (it died), so waiters still look again
    now and then.
    """

    def __init__(self, pool: asyncpg.Pool, channel: str) -> None:
        self.pool, self._channel = pool, channel
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._watching = 0
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def watch(self, key: str) -> AsyncIterator[asyncio.Event]:
        """An event set whenever `key` is announced while the block runs (clear it to wait again). Whatever
        is announced after `watch` returns is seen."""
        event = asyncio.Event()
        self._waiters.setdefault(key, set()).add(event)
        self._watching += 1
        try:
            await self._listen()
            yield event
        finally:
            self._watching -= 1
            waiters = self._waiters.get(key)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[key]
            if not self._watching:
                await self._unlisten()

    async def _listen(self) -> None:
        async with self._lock:
            if self._conn is not None and not self._conn.is_closed():
                return
            self._conn = None
            try:
                conn = await self.pool.acquire()
            except Exception as exc:  # waiters fall back to looking again on their timeout
                log.warning("cannot LISTEN for announcements", channel=self._channel, error=repr(exc))
                return
            try:
                await conn.add_listener(self._channel, self._announced)
            except Exception as exc:
                log.warning("cannot LISTEN for announcements", channel=self._channel, error=repr(exc))
                with contextlib.suppress(Exception):
                    await self.pool.release(conn)
                return
            self._conn = conn

    async def _unlisten(self) -> None:
        async with self._lock:
            if self._watching:
                return
            conn, self._conn = self._conn, None
            if conn is None:
                return
            with contextlib.suppress(Exception):
                await conn.remove_listener(self._channel, self._announced)
            with contextlib.suppress(Exception):
                await self.pool.release(conn)

    def _announced(self, _conn: object, _pid: int, _channel: str, key: str) -> None:
        for event in self._waiters.get(key, ()):
            event.set()
