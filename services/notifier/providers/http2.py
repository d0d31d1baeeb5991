"""A small HTTP/2 client connection over TLS, on the `h2` state machine and an asyncio protocol.

Why not httpx (the APNs provider's first client): at thousands of pushes per second its layers (httpcore's
connection pool, anyio locks and cancel scopes, URL parsing, per-request sniffio lookups) cost about 1 ms of
CPU per request, 45 % of the notifier's CPU in `notifier.push_throughput`. A push needs none of that: one
long-lived connection to one origin, many concurrent streams, small bodies. This module is only that:

- `Http2Connection.open(host, port, ssl_context)` connects, insists on ALPN `h2` (never a silent HTTP/1.1),
  sends the connection preface and waits for the server's (its SETTINGS, so its stream limit holds from the
  first request);
- `request(headers, body)` opens a stream, waits while the server's `MAX_CONCURRENT_STREAMS` are all busy,
  sends the body within the flow-control windows, and returns the whole `Response`;
- a caller that gives up (a timeout cancels the awaiting task) resets its stream (`CANCEL`), and only its own;
- GOAWAY: every stream on the connection fails with `Http2Error`, `processed=False` for those the server
  says it never took (ids above its last stream id); h2 accepts no frame after a GOAWAY, so even the streams
  it took cannot finish. The connection closes and `usable` turns false (the owner opens another);
- a lost connection fails every stream on it with `Http2Error`.

It never retries, redirects, decompresses or pools: what to do about an error is the caller's decision.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from dataclasses import dataclass, field

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RemoteSettingsChanged,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import H2Error
from h2.settings import SettingCodes

# Until the server's SETTINGS arrive, as many streams as RFC 9113 recommends a server to allow at least.
INITIAL_STREAM_LIMIT = 100


class Http2Error(Exception):
    """The request failed below HTTP: the connection was lost or refused, the server reset the stream or sent
    GOAWAY. `processed` is False when the server says it never acted on the request (safe to send again)."""

    def __init__(self, message: str, *, processed: bool = True) -> None:
        super().__init__(message)
        self.processed = processed


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    body: bytes


@dataclass
class _Stream:
    answer: asyncio.Future[Response]
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)


class Http2Connection(asyncio.Protocol):
    """One client connection (see the module docstring). Create it with `open`."""

    def __init__(self) -> None:
        self._h2 = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
        self._transport: asyncio.Transport | None = None
        self._streams: dict[int, _Stream] = {}
        self._limit = INITIAL_STREAM_LIMIT
        self._slot_waiters: deque[asyncio.Future[None]] = deque()
        self._window_waiters: list[asyncio.Future[None]] = []
        self._closed: Http2Error | None = None
        self._goaway = False
        self._flush_pending = False
        self._preface: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @classmethod
    async def open(cls, host: str, port: int, ssl_context: ssl.SSLContext, *, server_hostname: str | None = None,
                   ) -> Http2Connection:
        """Connect to `host:port` over TLS with ALPN h2. `ssl_context` should offer only "h2"; an answer without it
        is refused (`Http2Error`)."""
        loop = asyncio.get_running_loop()
        transport, connection = await loop.create_connection(
            cls, host, port, ssl=ssl_context, server_hostname=server_hostname or host
        )
        tls = transport.get_extra_info("ssl_object")
        if tls is None or tls.selected_alpn_protocol() != "h2":
            transport.close()
            raise Http2Error(f"{host}:{port} did not agree to HTTP/2 (ALPN)", processed=False)
        try:
            await connection._preface  # the server's SETTINGS: its stream limit holds from the first request
        except BaseException:
            connection.close()
            raise
        return connection

    @property
    def usable(self) -> bool:
        """Whether new requests may go on this connection (open, and no GOAWAY received)."""
        return self._closed is None and not self._goaway

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._h2.initiate_connection()
        self._flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self._h2.receive_data(data)
        except H2Error as exc:
            self._fail(Http2Error(f"HTTP/2 protocol error from the server: {exc!r}"))
            return
        for event in events:
            if isinstance(event, ResponseReceived):
                stream = self._streams.get(event.stream_id)
                if stream is not None:
                    stream.headers = {name: value for name, value in event.headers}  # type: ignore[misc]
                    stream.status = int(stream.headers.pop(":status", "0"))
            elif isinstance(event, DataReceived):
                self._h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                stream = self._streams.get(event.stream_id)
                if stream is not None:
                    stream.body += event.data
            elif isinstance(event, StreamEnded):
                stream = self._streams.pop(event.stream_id, None)
                if stream is not None:
                    if not stream.answer.done():
                        stream.answer.set_result(Response(stream.status, stream.headers, bytes(stream.body)))
                    self._free_slot()
            elif isinstance(event, StreamReset):
                stream = self._streams.pop(event.stream_id, None)
                if stream is not None:
                    processed = event.error_code != ErrorCodes.REFUSED_STREAM
                    if not stream.answer.done():
                        stream.answer.set_exception(
                            Http2Error(f"the server reset the stream ({event.error_code!r})", processed=processed)
                        )
                    self._free_slot()
            elif isinstance(event, RemoteSettingsChanged):
                if not self._preface.done():
                    self._preface.set_result(None)
                changed = event.changed_settings.get(SettingCodes.MAX_CONCURRENT_STREAMS)
                if changed is not None:
                    self._limit = changed.new_value
                    self._free_slot()
                self._wake_window_waiters()
            elif isinstance(event, WindowUpdated):
                self._wake_window_waiters()
            elif isinstance(event, ConnectionTerminated):
                self._on_goaway(event)
        self._flush_soon()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(Http2Error(f"connection lost: {exc!r}" if exc else "connection closed"))

    # requests

    async def request(self, headers: list[tuple[str, str]], body: bytes = b"") -> Response:
        """Send one request (`headers` with the pseudo-headers first) and wait for its whole answer. Cancelling the
        awaiting task resets the stream."""
        await self._slot()
        try:
            stream_id = self._h2.get_next_available_stream_id()
            stream = _Stream(asyncio.get_running_loop().create_future())
            self._streams[stream_id] = stream
            self._h2.send_headers(stream_id, headers, end_stream=not body)
        except H2Error as exc:  # e.g. stream ids exhausted: this connection is done
            self._goaway = True
            self._free_slot()
            raise Http2Error(f"cannot open a stream: {exc!r}", processed=False) from exc
        try:
            if body:
                await self._send_body(stream_id, body)
            self._flush_soon()
            return await stream.answer
        except asyncio.CancelledError:
            self._abandon(stream_id)
            raise
        except Http2Error:
            if stream.answer.done() and not stream.answer.cancelled():
                stream.answer.exception()  # the error raised is this one or the connection's: retrieved
            raise

    def close(self) -> None:
        """Close the connection; requests in flight fail with `Http2Error`."""
        if self._transport is not None and self._closed is None:
            try:
                self._h2.close_connection()
                self._flush()
            except H2Error:
                pass
            self._transport.close()
        self._fail(Http2Error("connection closed by the client"))

    # internals

    async def _slot(self) -> None:
        while True:
            if self._closed is not None:
                raise self._closed
            if self._goaway:
                raise Http2Error("the server is closing this connection (GOAWAY)", processed=False)
            if len(self._streams) < self._limit and not self._slot_waiters:
                return
            waiter = asyncio.get_running_loop().create_future()
            self._slot_waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter in self._slot_waiters:
                    self._slot_waiters.remove(waiter)
                elif not waiter.cancelled():
                    self._free_slot()  # it was handed a slot it will not use: pass it on
                raise
            if len(self._streams) < self._limit:
                return

    def _free_slot(self) -> None:
        while self._slot_waiters and len(self._streams) < self._limit:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _send_body(self, stream_id: int, body: bytes) -> None:
        view = memoryview(body)
        while view:
            if self._closed is not None:
                raise self._closed
            window = min(self._h2.local_flow_control_window(stream_id), self._h2.max_outbound_frame_size)
            if window <= 0:
                self._flush()
                waiter = asyncio.get_running_loop().create_future()
                self._window_waiters.append(waiter)
                await waiter
                continue
            chunk, view = view[:window], view[window:]
            self._h2.send_data(stream_id, chunk.tobytes(), end_stream=not view)

    def _wake_window_waiters(self) -> None:
        waiters, self._window_waiters = self._window_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _abandon(self, stream_id: int) -> None:
        if self._streams.pop(stream_id, None) is None:
            return
        if self._closed is None:
            try:
                self._h2.reset_stream(stream_id, ErrorCodes.CANCEL)
            except H2Error:
                pass  # already closed on the server's side
            self._flush()
        self._free_slot()

    def _on_goaway(self, event: ConnectionTerminated) -> None:
        """h2 takes no frame after a GOAWAY (its connection state is CLOSED), so the streams the server did take
        cannot finish here either: they fail as possibly processed, the others as not processed."""
        self._goaway = True
        last = event.last_stream_id if event.last_stream_id is not None else 0
        for stream_id in sorted(self._streams):
            stream = self._streams.pop(stream_id)
            if not stream.answer.done():
                stream.answer.set_exception(Http2Error(
                    f"GOAWAY ({event.error_code!r}) {'after' if stream_id <= last else 'before'} the server took it",
                    processed=stream_id <= last,
                ))
        self._fail(Http2Error(f"the server closed the connection (GOAWAY, {event.error_code!r})", processed=False))

    def _fail(self, error: Http2Error) -> None:
        if self._closed is None:
            self._closed = error
        if not self._preface.done():
            self._preface.set_exception(error)
            self._preface.exception()  # retrieved here: `open` raises it when it is still waiting
        streams, self._streams = self._streams, {}
        for stream in streams.values():
            if not stream.answer.done():
                stream.answer.set_exception(error)
        for waiter in [*self._slot_waiters, *self._window_waiters]:
            if not waiter.done():
                waiter.set_result(None)  # they see `_closed` and raise it
        self._slot_waiters.clear()
        self._window_waiters.clear()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def _flush_soon(self) -> None:
        """Write what h2 has to send once the callbacks of this loop iteration ran: the frames of many requests go
        out in one TLS write (a write per request cost 12 % of notifier's CPU at 1,000 pushes/s)."""
        if not self._flush_pending:
            self._flush_pending = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        data = self._h2.data_to_send()
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)
