"""notifier's HTTP/2 client (`services.notifier.providers.http2`) against a scripted HTTP/2 server over real TLS.

The server below is the test's own, on the `h2` state machine, so each test can make it do what a provider
may do: limit concurrent streams, hold an answer, reset a stream, send GOAWAY, drop the connection, or refuse
HTTP/2 in ALPN. No broker or database needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import trustme
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import DataReceived, RequestReceived, StreamEnded, StreamReset
from h2.exceptions import H2Error
from h2.settings import SettingCodes, Settings
from hyperframe.frame import GoAwayFrame

from services.notifier.providers.http2 import Http2Connection, Http2Error


@dataclass
class Scripted:
    """What the server does and saw. Paths: /echo answers 200 with the body; /hold keeps the stream open until
    `release` (or for ever); /refuse resets it with REFUSED_STREAM, /fail with INTERNAL_ERROR; /goaway sends
    GOAWAY naming the stream before it as the last processed one."""

    max_streams: int = 100
    alpn: tuple[str, ...] = ("h2",)
    concurrent: int = 0
    most_concurrent: int = 0
    resets_seen: list[tuple[int, int]] = field(default_factory=list)
    protocols: list[ServerSide] = field(default_factory=list)


class ServerSide(asyncio.Protocol):
    def __init__(self, script: Scripted) -> None:
        self.script = script
        self.h2 = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        self.transport: asyncio.Transport | None = None
        self.requests: dict[int, tuple[str, bytearray]] = {}
        self.held: list[int] = []
        script.protocols.append(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        # In the preface's SETTINGS, as a real server announces its limit (not in a later SETTINGS frame).
        self.h2.local_settings = Settings(
            client=False, initial_values={SettingCodes.MAX_CONCURRENT_STREAMS: self.script.max_streams}
        )
        self.h2.initiate_connection()
        self.flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except H2Error:
            assert self.transport is not None
            self.transport.close()
            return
        for event in events:
            if isinstance(event, RequestReceived):
                path = dict(event.headers)[":path"]  # type: ignore[arg-type]
                self.requests[event.stream_id] = (path, bytearray())
                self.script.concurrent += 1
                self.script.most_concurrent = max(self.script.most_concurrent, self.script.concurrent)
            elif isinstance(event, DataReceived):
                self.requests[event.stream_id][1].extend(event.data)
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, StreamEnded):
                self.on_request(event.stream_id)
            elif isinstance(event, StreamReset):
                self.script.resets_seen.append((event.stream_id, event.error_code))
                if self.requests.pop(event.stream_id, None) is not None:
                    self.script.concurrent -= 1
        self.flush()

    def on_request(self, stream_id: int) -> None:
        path, _ = self.requests[stream_id]
        if path == "/echo":
            asyncio.get_running_loop().create_task(self.answer(stream_id))
        elif path == "/hold":
            self.held.append(stream_id)
        elif path in ("/refuse", "/fail"):
            self.requests.pop(stream_id)
            self.script.concurrent -= 1
            code = ErrorCodes.REFUSED_STREAM if path == "/refuse" else ErrorCodes.INTERNAL_ERROR
            self.h2.reset_stream(stream_id, code)
        elif path == "/goaway":
            # Written past h2's state machine, which takes no stream event after its own GOAWAY.
            assert self.transport is not None
            self.flush()
            self.transport.write(GoAwayFrame(0, last_stream_id=stream_id - 2).serialize())

    async def answer(self, stream_id: int) -> None:
        """200 with the request's body, sent within the flow-control windows."""
        _, body = self.requests[stream_id]
        self.h2.send_headers(stream_id, [(":status", "200"), ("x-length", str(len(body)))], end_stream=not body)
        view = memoryview(bytes(body))
        while view:
            window = min(self.h2.local_flow_control_window(stream_id), self.h2.max_outbound_frame_size)
            if window <= 0:
                self.flush()
                await asyncio.sleep(0.005)
                continue
            chunk, view = view[:window], view[window:]
            self.h2.send_data(stream_id, chunk.tobytes(), end_stream=not view)
        self.flush()
        self.requests.pop(stream_id)
        self.script.concurrent -= 1

    def release(self) -> None:
        held, self.held = self.held, []
        for stream_id in held:
            asyncio.get_running_loop().create_task(self.answer(stream_id))

    def flush(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(self.h2.data_to_send())


@dataclass
class Running:
    script: Scripted
    port: int
    client_tls: ssl.SSLContext

    async def connect(self) -> Http2Connection:
        return await Http2Connection.open("127.0.0.1", self.port, self.client_tls)

    @property
    def server(self) -> ServerSide:
        return self.script.protocols[-1]


@contextlib.asynccontextmanager
async def serving(script: Scripted) -> AsyncIterator[Running]:
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_tls)
    server_tls.set_alpn_protocols(list(script.alpn))
    client_tls = ssl.create_default_context()
    ca.configure_trust(client_tls)
    client_tls.set_alpn_protocols(["h2"])
    server = await asyncio.get_running_loop().create_server(
        lambda: ServerSide(script), "127.0.0.1", 0, ssl=server_tls
    )
    try:
        yield Running(script, server.sockets[0].getsockname()[1], client_tls)
    finally:
        server.close()
        for protocol in script.protocols:
            if protocol.transport is not None:
                protocol.transport.close()


def get(path: str) -> list[tuple[str, str]]:
    return [(":method", "POST"), (":scheme", "https"), (":authority", "127.0.0.1"), (":path", path)]


async def test_concurrent_requests_stay_within_the_servers_stream_limit() -> None:
    async with serving(Scripted(max_streams=3)) as running:
        client = await running.connect()
        answers = await asyncio.gather(*(client.request(get("/echo"), f"request {i}".encode()) for i in range(40)))
        client.close()

    assert [a.body for a in answers] == [f"request {i}".encode() for i in range(40)]
    assert {a.status for a in answers} == {200}
    assert running.script.most_concurrent == 3


async def test_bodies_larger_than_the_flow_control_windows_go_both_ways() -> None:
    body = bytes(range(256)) * 1200  # 300 KiB: well over the 64 KiB initial windows
    async with serving(Scripted()) as running:
        client = await running.connect()
        answer = await client.request(get("/echo"), body)
        client.close()

    assert answer.headers["x-length"] == str(len(body))
    assert answer.body == body


async def test_a_caller_that_gives_up_resets_only_its_own_stream() -> None:
    async with serving(Scripted()) as running:
        client = await running.connect()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await client.request(get("/hold"))
        after = await client.request(get("/echo"), b"still here")
        await asyncio.sleep(0.05)
        client.close()

    assert after.body == b"still here"
    assert running.script.resets_seen == [(1, ErrorCodes.CANCEL)]
    assert client.open_streams == 0


async def test_a_stream_the_server_resets_fails_alone_and_says_whether_it_was_processed() -> None:
    async with serving(Scripted()) as running:
        client = await running.connect()
        with pytest.raises(Http2Error) as refused:
            await client.request(get("/refuse"))
        with pytest.raises(Http2Error) as failed:
            await client.request(get("/fail"))
        after = await client.request(get("/echo"), b"ok")
        client.close()

    assert refused.value.processed is False
    assert failed.value.processed is True
    assert after.status == 200


async def test_goaway_fails_every_stream_saying_which_the_server_took_and_refuses_new_ones() -> None:
    async with serving(Scripted()) as running:
        client = await running.connect()
        first = asyncio.create_task(client.request(get("/hold"), b"first"))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(client.request(get("/goaway"), b"second"))
        async with asyncio.timeout(5):
            with pytest.raises(Http2Error) as taken:
                await first
            with pytest.raises(Http2Error) as unprocessed:
                await second
        with pytest.raises(Http2Error) as refused:
            await client.request(get("/echo"))
        await asyncio.sleep(0.05)

    assert taken.value.processed is True
    assert unprocessed.value.processed is False
    assert refused.value.processed is False
    assert client.usable is False
    assert running.server.transport is not None and running.server.transport.is_closing()


async def test_a_lost_connection_fails_the_requests_in_flight() -> None:
    async with serving(Scripted()) as running:
        client = await running.connect()
        pending = [asyncio.create_task(client.request(get("/hold"))) for _ in range(3)]
        await asyncio.sleep(0.05)
        assert running.server.transport is not None
        running.server.transport.abort()
        outcomes = await asyncio.gather(*pending, return_exceptions=True)

    assert all(isinstance(outcome, Http2Error) for outcome in outcomes)
    assert client.usable is False
    with pytest.raises(Http2Error):
        await client.request(get("/echo"))


async def test_a_server_without_http2_in_alpn_is_refused() -> None:
    async with serving(Scripted(alpn=("http/1.1",))) as running:
        with pytest.raises(Http2Error, match="did not agree to HTTP/2"):
            await running.connect()
