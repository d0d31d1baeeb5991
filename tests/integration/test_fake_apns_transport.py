"""The APNs fake's own HTTP/2 server (h2 on asyncio, over TLS), from the wire: what the provider tests cannot show
through httpx. An HTTP/1.1 client gets APNs' 505; streams are answered independently, past httpx's 100 at once;
flow control holds an answer back until the client opens its window; a push received in full is accepted though
its connection is lost; a client that resets a stream or sends garbage breaks nothing for the next one; and
stopping the fake closes the connections it holds, at once.

A bare h2 client (`BareH2`) is used here because httpx never resets a stream halfway through a request, keeps a
connection to 100 streams and always opens its flow-control windows. It is also what checks that the fake still
serves after a bad client, so these tests do not depend on the notifier's APNs provider."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import secrets
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import jwt
import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RemoteSettingsChanged,
    ResponseReceived,
    StreamEnded,
)
from h2.settings import SettingCodes, Settings

from tools.fakes.apns import MAX_CONCURRENT_STREAMS, FakeApns, ProviderKey

TOPIC = "com.example.oncall"
PAYLOAD = json.dumps({"aps": {"alert": {"title": "Payments API is down", "body": "Accept by 14:05"}}}).encode()
# Every wait on the fake is bounded, so a regression fails the test instead of hanging it.
PATIENCE_S = 10


@pytest.fixture(scope="module")
async def fake() -> AsyncIterator[FakeApns]:
    async with FakeApns.running(topics=frozenset({TOPIC})) as running:
        yield running


def address(fake: FakeApns) -> tuple[str, int]:
    url = urlsplit(fake.url)
    assert url.hostname is not None and url.port is not None
    return url.hostname, url.port


def tls(fake: FakeApns, alpn: list[str] | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=fake.ca_path)
    if alpn is not None:
        context.set_alpn_protocols(alpn)
    return context


def device_token() -> str:
    return secrets.token_hex(32)


@functools.cache
def provider_token(key: ProviderKey) -> str:
    """One token per key, as a provider reuses it (the fake verifies each new one: 200 would slow a test)."""
    return jwt.encode({"iss": key.team_id, "iat": int(time.time())}, key.private_key_pem, algorithm="ES256",
                      headers={"kid": key.key_id})


def push_headers(fake: FakeApns, token: str) -> list[tuple[str, str]]:
    """A push request's header fields as APNs wants them, with a provider token the fake accepts."""
    host, port = address(fake)
    return [
        (":method", "POST"), (":scheme", "https"), (":authority", f"{host}:{port}"), (":path", f"/3/device/{token}"),
        ("authorization", f"bearer {provider_token(fake.credentials)}"), ("apns-id", str(uuid.uuid4())),
        ("apns-topic", TOPIC), ("apns-push-type", "alert"), ("apns-priority", "10"),
    ]


@dataclass
class StreamAnswer:
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)
    ended: bool = False


class BareH2:
    """An HTTP/2 client on h2 that does only what it is told: it opens as many streams as the server allows, can
    stop halfway through a request, and opens its receive windows only when told to."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: H2Connection) -> None:
        self.reader, self.writer, self.conn = reader, writer, conn
        self.answers: dict[int, StreamAnswer] = {}
        self.finished: list[int] = []  # stream ids in the order their answers ended
        self.settings_received = False
        self.terminated: ConnectionTerminated | None = None
        self.closed = False
        self.arrived = asyncio.Event()

    @classmethod
    @contextlib.asynccontextmanager
    async def connected(cls, fake: FakeApns, *, initial_window: int | None = None) -> AsyncIterator[BareH2]:
        """A connection whose server settings have arrived; `initial_window`: the client's stream windows."""
        reader, writer = await asyncio.open_connection(*address(fake), ssl=tls(fake, ["h2"]))
        conn = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
        if initial_window is not None:
            # Given before the connection starts, the window goes out in the first SETTINGS frame.
            conn.local_settings = Settings(
                client=True, initial_values={SettingCodes.INITIAL_WINDOW_SIZE: initial_window}
            )
        conn.initiate_connection()
        client = cls(reader, writer, conn)
        client.flush()
        reading = asyncio.create_task(client.read())
        try:
            await client.until(lambda: client.settings_received)
            yield client
        finally:
            reading.cancel()
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()

    async def read(self) -> None:
        try:
            await self.read_until_closed()
        except (ConnectionError, ssl.SSLError):
            pass  # the fake dropped the connection: what some tests want
        finally:
            self.closed = True
            self.arrived.set()

    async def read_until_closed(self) -> None:
        while data := await self.reader.read(65536):
            for event in self.conn.receive_data(data):
                answer = self.answers.get(getattr(event, "stream_id", 0))
                if isinstance(event, RemoteSettingsChanged):
                    self.settings_received = True
                elif isinstance(event, ResponseReceived) and answer is not None:
                    answer.headers = {str(name): str(value) for name, value in event.headers}
                    answer.status = int(answer.headers[":status"])
                elif isinstance(event, DataReceived) and answer is not None:
                    answer.body += event.data
                elif isinstance(event, StreamEnded) and answer is not None:
                    answer.ended = True
                    self.finished.append(event.stream_id)
                elif isinstance(event, ConnectionTerminated):
                    self.terminated = event
            self.flush()
            self.arrived.set()

    def flush(self) -> None:
        self.writer.write(self.conn.data_to_send())

    async def until(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(PATIENCE_S):
            while not condition():
                self.arrived.clear()
                await self.arrived.wait()

    def request(self, headers: list[tuple[str, str]], body: bytes = PAYLOAD, *, complete: bool = True) -> int:
        """Send a request (only its headers and the first half of the body when not `complete`); its stream id."""
        stream_id = self.conn.get_next_available_stream_id()
        self.answers[stream_id] = StreamAnswer()
        self.conn.send_headers(stream_id, headers)
        if complete:
            self.conn.send_data(stream_id, body, end_stream=True)
        else:
            self.conn.send_data(stream_id, body[: len(body) // 2])
        self.flush()
        return stream_id

    async def send_body(self, stream_id: int, body: bytes) -> None:
        """Send `body` on an open stream as flow control allows, waiting for the server to open its windows."""
        while body:
            await self.until(lambda: self.conn.local_flow_control_window(stream_id) > 0)
            size = min(len(body), self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size)
            self.conn.send_data(stream_id, body[:size], end_stream=size == len(body))
            self.flush()
            body = body[size:]


@pytest.mark.parametrize("alpn", [["http/1.1"], None], ids=["alpn-http1.1", "no-alpn"])
async def test_an_http1_client_is_told_that_apns_speaks_http2_only(fake: FakeApns, alpn: list[str] | None) -> None:
    """Whether the client offers only http/1.1 by ALPN or no ALPN at all, it gets HTTP/1.1 505 HTTP2Required and
    the connection closes; the answer is recorded like any other."""
    token = device_token()
    host, port = address(fake)
    reader, writer = await asyncio.open_connection(host, port, ssl=tls(fake, alpn))
    writer.write(f"POST /3/device/{token} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
                 f"content-length: {len(PAYLOAD)}\r\n\r\n".encode() + PAYLOAD)
    async with asyncio.timeout(PATIENCE_S):
        response = await reader.read()  # to the end: the fake closes the connection
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()

    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    assert status_line == "HTTP/1.1 505 HTTP Version Not Supported"
    assert json.loads(body) == {"reason": "HTTP2Required"}
    assert int(headers["content-length"]) == len(body)
    assert [(a.status, a.reason) for a in fake.attempts_at(token)] == [(505, "HTTP2Required")]
    assert fake.pushes_to(token) == []


async def test_a_slow_answer_holds_back_none_of_200_streams_on_its_connection(fake: FakeApns) -> None:
    """More streams at once than httpx would open; the slow one, sent first, is answered last."""
    slow, others = device_token(), [device_token() for _ in range(199)]
    fake.program(slow, delay_s=1)

    async with BareH2.connected(fake) as client:
        assert client.conn.remote_settings.max_concurrent_streams == MAX_CONCURRENT_STREAMS
        slow_stream = client.request(push_headers(fake, slow))
        other_streams = [client.request(push_headers(fake, token)) for token in others]
        await client.until(lambda: len(client.finished) == 200)

    assert {client.answers[stream].status for stream in [slow_stream, *other_streams]} == {200}
    assert client.finished[-1] == slow_stream
    assert len({p.peer for token in [slow, *others] for p in fake.pushes_to(token)}) == 1
    [slow_push] = fake.pushes_to(slow)
    assert all(p.received_at < slow_push.received_at for token in others for p in fake.pushes_to(token))


async def test_an_answer_waits_for_the_client_to_open_its_flow_control_window(fake: FakeApns) -> None:
    """A client with no receive window gets the headers alone; a WINDOW_UPDATE of 5 bytes lets exactly 5 through,
    and a new initial window size in SETTINGS the rest."""
    token = device_token()
    fake.program(token, bad=True)  # 400 with a JSON body

    async with BareH2.connected(fake, initial_window=0) as client:
        stream = client.request(push_headers(fake, token))
        answer = client.answers[stream]
        await client.until(lambda: answer.status is not None)
        assert (answer.status, bytes(answer.body), answer.ended) == (400, b"", False)

        client.conn.increment_flow_control_window(5, stream)
        client.flush()
        await client.until(lambda: len(answer.body) >= 5)
        assert (len(answer.body), answer.ended) == (5, False)

        client.conn.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 65535})
        client.flush()
        await client.until(lambda: answer.ended)

    assert answer.headers["content-type"] == "application/json"
    assert json.loads(answer.body) == {"reason": "BadDeviceToken"}


async def test_a_body_beyond_the_flow_control_windows_gets_in_and_is_refused_as_too_large(fake: FakeApns) -> None:
    """The fake gives the windows back as it reads (else this client would wait for ever), and answers 413
    however far beyond the limit the body goes."""
    token = device_token()
    too_large = json.dumps({"aps": {"alert": "x" * 200_000}}).encode()  # three times HTTP/2's initial windows

    async with BareH2.connected(fake) as client:
        stream = client.request(push_headers(fake, token), b"", complete=False)
        await client.send_body(stream, too_large)
        await client.until(lambda: client.answers[stream].ended)

    assert client.answers[stream].status == 413
    assert json.loads(client.answers[stream].body) == {"reason": "PayloadTooLarge"}


async def test_streams_reset_halfway_or_while_answered_leave_the_connection_working(fake: FakeApns) -> None:
    """A stream cancelled before its body ended is forgotten; one cancelled while its answer is delayed is never
    answered nor recorded; the next push on the same connection is accepted."""
    halfway, delayed, after = device_token(), device_token(), device_token()
    fake.program(delayed, delay_s=0.2)

    async with BareH2.connected(fake) as client:
        for token, complete in ((halfway, False), (delayed, True)):
            stream = client.request(push_headers(fake, token), complete=complete)
            client.conn.reset_stream(stream, ErrorCodes.CANCEL)
            client.flush()
        next_stream = client.request(push_headers(fake, after))
        await client.until(lambda: client.answers[next_stream].ended)
        # The delayed answer would have been recorded after 0.2 s: this loop runs the fake's timers too.
        await asyncio.sleep(0.4)

    assert client.answers[next_stream].status == 200
    assert fake.attempts_at(halfway) == [] and fake.attempts_at(delayed) == []
    assert [p.token for p in fake.pushes_to(after)] == [after]


async def test_a_push_received_in_full_is_accepted_though_its_client_is_gone(fake: FakeApns) -> None:
    """APNs has the push once the request is in, whatever becomes of the connection: a provider killed while
    waiting for the answer never learns, but the phone gets it (tests/e2e/test_notifier_delivery.py relies on
    this). Unlike a stream reset, a lost connection does not cancel the answer."""
    token, quick = device_token(), device_token()
    fake.program(token, delay_s=0.2)

    async with BareH2.connected(fake) as client:
        client.request(push_headers(fake, token))
        # Answered means read by the fake, and so was the delayed request before it on the connection.
        answered = client.request(push_headers(fake, quick))
        await client.until(lambda: client.answers[answered].ended)
        client.writer.transport.abort()
    await asyncio.sleep(0.4)  # the fake's 0.2 s timer, started earlier on this same loop, fires first

    [received] = fake.pushes_to(token)
    assert received.peer == fake.pushes_to(quick)[0].peer  # the connection that was lost
    assert [a.status for a in fake.attempts_at(token)] == [200]


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"GET / HTTP/1.1\r\n\r\n" + secrets.token_bytes(64), id="not-an-http2-preface"),
        # A DATA frame on stream 0, which HTTP/2 forbids (a connection error).
        pytest.param(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x04\x00\x00\x00\x00\x00\x00oops",
                     id="a-forbidden-frame"),
    ],
)
async def test_garbage_after_the_handshake_gets_a_goaway_and_breaks_nothing(fake: FakeApns, garbage: bytes) -> None:
    reader, writer = await asyncio.open_connection(*address(fake), ssl=tls(fake, ["h2"]))
    writer.write(garbage)
    async with asyncio.timeout(PATIENCE_S):
        received = await reader.read()  # to the end: the fake closes the connection
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()

    reading = H2Connection(H2Configuration(client_side=True))
    reading.initiate_connection()
    [terminated] = [e for e in reading.receive_data(received) if isinstance(e, ConnectionTerminated)]
    assert terminated.error_code == ErrorCodes.PROTOCOL_ERROR
    await assert_a_push_is_accepted(fake)


async def test_garbage_instead_of_a_tls_handshake_breaks_nothing(fake: FakeApns) -> None:
    reader, writer = await asyncio.open_connection(*address(fake))
    writer.write(b"POST /3/device/abc HTTP/1.1\r\n\r\n" + secrets.token_bytes(256))
    async with asyncio.timeout(PATIENCE_S):
        with contextlib.suppress(ConnectionError):
            await reader.read()
    writer.close()

    await assert_a_push_is_accepted(fake)


async def test_stopping_closes_open_connections_with_a_goaway_without_waiting_for_them() -> None:
    """A client that never closes its side of TLS (an idle httpx connection, which reads nothing, does not)
    must not hold the fake up: Python's TLS shutdown alone would wait 30 s for it. One stream is still waiting
    for its delayed answer, which is cancelled."""
    token = device_token()
    async with contextlib.AsyncExitStack() as clients:
        async with asyncio.timeout(PATIENCE_S), FakeApns.running() as fake:
            client = await clients.enter_async_context(BareH2.connected(fake))
            fake.program(token, delay_s=30)
            pending = client.request(push_headers(fake, token))
            # Answered means read by the fake, and so was the delayed request before it on the connection.
            answered = client.request(push_headers(fake, device_token()))
            await client.until(lambda: client.answers[answered].ended)
        await client.until(lambda: client.closed)

    assert client.terminated is not None and client.terminated.error_code == ErrorCodes.NO_ERROR
    assert not client.answers[pending].ended
    assert fake.attempts_at(token) == []


async def assert_a_push_is_accepted(fake: FakeApns) -> None:
    """On a new connection, as a provider would reconnect."""
    token = device_token()
    async with BareH2.connected(fake) as client:
        stream = client.request(push_headers(fake, token))
        await client.until(lambda: client.answers[stream].ended)
    assert client.answers[stream].status == 200
    assert [p.token for p in fake.pushes_to(token)] == [token]
