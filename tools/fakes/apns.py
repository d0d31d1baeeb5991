"""A local fake of Apple's APNs provider API: HTTP/2 over TLS, token (JWT) authentication, Apple's answers.

It serves `POST /3/device/{token}` the way Apple documents it ("Sending notification requests to APNs",
"Handling notification responses from APNs"): the `authorization: bearer <JWT>` provider token (ES256, `kid`
= key id, `iss` = team id, `iat` younger than an hour), the `apns-*` headers, a JSON payload with an `aps`
dictionary of at most 4096 bytes (5120 for VoIP), and answers `200` with an `apns-id` header or an error
status with `{"reason": ...}` (plus `timestamp` on 410). The server is the fake's own, small and cheap on CPU:
asyncio's TLS and the h2 protocol library (`ApnsServer`), one task per stream so a slow answer holds back no
other, flow control respected, connections kept open until the fake stops (as APNs keeps them for hours). The
certificate is issued at start by a throwaway CA (trustme) whose PEM is at `ca_path`, for clients to trust.

Per device token, a test or a person programs how the fake answers (`program`): unregistered (410), bad
(400 BadDeviceToken), registered for another app (400 DeviceTokenNotForTopic), throttled (429, with an
optional `retry-after` that Apple does not document), failing with 500/503 N times, or slow. Every accepted
push is recorded as "what the phone received"; every answer as an attempt. A second, plain HTTP/1.1 port
serves the same to people and other processes:

    GET    /_fake                      where the fake is and the provider credentials it accepts
    GET    /_fake/pushes[?token=T]     accepted pushes, oldest first
    DELETE /_fake/pushes               forget pushes and attempts
    GET    /_fake/attempts[?token=T]   every answer given: token, status, reason
    POST   /_fake/tokens/{token}       program a token (JSON body: the fields of `TokenBehaviour`)
    DELETE /_fake/tokens/{token}       back to normal

Not emulated: certificate-based provider auth, `TooManyProviderTokenUpdates`, Apple's `MAX_CONCURRENT_STREAMS`
ramp-up (the fake advertises 1000 streams from the start), `apns-unique-id`, delivery to a device (a push is
"received" when accepted, expired or not), and checks of `aps` beyond it being a dictionary. Two answers are
the fake's own, as Apple documents none: a payload that is not a JSON object with an `aps` dictionary gets
400 `BadPayload`, and an HTTP/1.1 request gets 505 `HTTP2Required` (APNs speaks HTTP/2 only).

In tests: `async with FakeApns.running() as fake:` (`fake.url`, `fake.ca_path`, `fake.credentials`, ...).
For `make up`: `python -m tools.fakes.apns --port P --admin-port Q --cert-dir D`, which keeps its CA and
signing key in D across restarts and writes D/fake-apns.json saying where everything is.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import re
import signal
import socket
import ssl
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import jwt
import trustme
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from h2.config import H2Configuration
from h2.connection import ConnectionState, H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RemoteSettingsChanged,
    RequestReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes, Settings

MAX_PAYLOAD_BYTES = 4096
MAX_VOIP_PAYLOAD_BYTES = 5120
MAX_COLLAPSE_ID_BYTES = 64
PROVIDER_TOKEN_MAX_AGE_S = 3600
# Apple's clocks tolerate some skew; a token "issued" further in the future than this is refused.
PROVIDER_TOKEN_MAX_SKEW_S = 60
MAX_CONCURRENT_STREAMS = 1000
# Header names and values stay bytes: the fake decodes them itself (`header_text`), never failing on bad UTF-8.
H2_CONFIG = H2Configuration(client_side=False, header_encoding=None)
# Of a request body, this much is kept: more is refused as too large whatever the rest says.
MAX_KEPT_BODY_BYTES = 2 * MAX_VOIP_PAYLOAD_BYTES
# An HTTP/1.x request head longer than this closes the connection unanswered.
MAX_HTTP1_HEAD_BYTES = 65536
LISTEN_BACKLOG = 1024
PUSH_TYPES = frozenset(
    {"alert", "background", "location", "voip", "complication", "fileprovider", "mdm", "liveactivity", "pushtotalk"}
)
PRIORITIES = frozenset({"1", "5", "10"})
SINGLE_HEADERS = ("authorization", "apns-id", "apns-topic", "apns-push-type", "apns-priority", "apns-expiration",
                  "apns-collapse-id")
DEVICE_PATH = re.compile(r"^/3/device/(?P<token>[^/]*)$")
HEX_TOKEN = re.compile(r"^(?:[0-9a-fA-F]{2})+$")
CANONICAL_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# The names the certificate is valid for: local addresses, and Apple's hosts for a client pointed here by name.
CERT_NAMES = ("localhost", "127.0.0.1", "::1", "api.push.apple.com", "api.sandbox.push.apple.com",
              "api.development.push.apple.com")

logger = logging.getLogger(__name__)


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class TokenBehaviour:
    """How the fake answers pushes to one device token. Counters count down with each answer they give."""

    gone: bool = False  # 410 Unregistered, with the time it was marked
    gone_reason: str = "Unregistered"  # or "ExpiredToken"
    gone_since_ms: int = field(default_factory=now_ms)
    bad: bool = False  # 400 BadDeviceToken
    topic: str | None = None  # the app the token belongs to; another apns-topic gets 400 DeviceTokenNotForTopic
    throttled: int = 0  # this many 429 TooManyRequests
    retry_after_s: int | None = None  # a retry-after header on 429/503; Apple sends none
    failures: int = 0  # this many 500/503 before answering normally
    failure_status: int = 500  # 500 InternalServerError or 503 ServiceUnavailable
    delay_s: float = 0.0  # wait this long before any answer

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> TokenBehaviour:
        """A behaviour from the admin API's JSON body; unknown fields are an error, not silently ignored."""
        known = {f.name for f in fields(cls)}
        unknown = set(body) - known
        if unknown:
            raise ValueError(f"unknown fields: {sorted(unknown)}")
        behaviour = cls(**body)
        if behaviour.failure_status not in (500, 503):
            raise ValueError("failure_status must be 500 or 503")
        return behaviour


@dataclass(frozen=True)
class ReceivedPush:
    """One accepted push, as the device would get it."""

    token: str
    apns_id: str
    headers: Mapping[str, str]  # every request header but `authorization`
    payload: Mapping[str, Any]
    received_at: float  # Unix time
    http_version: str
    peer: str  # the client's address and port: one value per connection

    @property
    def aps(self) -> Mapping[str, Any]:
        aps: Mapping[str, Any] = self.payload["aps"]
        return aps

    @property
    def collapse_id(self) -> str | None:
        return self.headers.get("apns-collapse-id")

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "headers": dict(self.headers), "payload": dict(self.payload)}


@dataclass(frozen=True)
class Attempt:
    """One answer the fake gave."""

    token: str
    status: int
    reason: str | None
    at: float


@dataclass(frozen=True)
class ProviderKey:
    """A provider authentication token signing key as Apple's developer portal hands it out (the .p8 file)."""

    key_id: str
    team_id: str
    private_key_pem: str

    @classmethod
    def generate(cls, key_id: str = "FAKEKEY001", team_id: str = "FAKETEAM01") -> ProviderKey:
        """A new EC P-256 key in PKCS#8 PEM, the .p8 format."""
        private = ec.generate_private_key(ec.SECP256R1())
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return cls(key_id, team_id, pem.decode())

    def public_key(self) -> ec.EllipticCurvePublicKey:
        private = serialization.load_pem_private_key(self.private_key_pem.encode(), password=None)
        if not isinstance(private, ec.EllipticCurvePrivateKey):
            raise ValueError("an APNs signing key is an EC P-256 key")
        return private.public_key()


@dataclass(frozen=True)
class Answer:
    status: int
    reason: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timestamp_ms: int | None = None

    def body(self) -> bytes:
        if self.reason is None:
            return b""
        document: dict[str, Any] = {"reason": self.reason}
        if self.timestamp_ms is not None:
            document["timestamp"] = self.timestamp_ms
        return json.dumps(document).encode()


@dataclass(frozen=True)
class ApnsRequest:
    method: str
    path: str
    headers: Mapping[str, str]
    duplicated: frozenset[str]
    body: bytes
    http_version: str
    peer: str


class ProviderTokens:
    """Checks provider tokens against the registered signing keys, as APNs does for token-based connections."""

    def __init__(self) -> None:
        self._keys: dict[str, tuple[str, ec.EllipticCurvePublicKey]] = {}
        self._verified: dict[str, int] = {}  # token -> iat; skips re-verifying a signature per push

    def register(self, key: ProviderKey) -> None:
        self._keys[key.key_id] = (key.team_id, key.public_key())

    def refusal(self, authorization: str | None, now: float) -> str | None:
        """Apple's reason for refusing this `authorization` header, or None when the token is good."""
        if not authorization:
            return "MissingProviderToken"
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer":
            return "InvalidProviderToken"
        if not token:
            return "MissingProviderToken"
        iat = self._verified.get(token)
        if iat is None:
            iat = self._verify(token)
            if iat is None:
                return "InvalidProviderToken"
            if len(self._verified) > 10_000:
                self._verified.clear()
            self._verified[token] = iat
        if iat > now + PROVIDER_TOKEN_MAX_SKEW_S:
            return "InvalidProviderToken"
        if now - iat > PROVIDER_TOKEN_MAX_AGE_S:
            return "ExpiredProviderToken"
        return None

    def _verify(self, token: str) -> int | None:
        try:
            header = jwt.get_unverified_header(token)
            team_id, public_key = self._keys[header.get("kid", "")]
            claims = jwt.decode(
                token, public_key, algorithms=["ES256"],
                options={"require": ["iss", "iat"], "verify_iat": False, "verify_exp": False},
            )
        except (jwt.InvalidTokenError, KeyError):
            return None
        iat = claims["iat"]
        if header.get("alg") != "ES256" or claims["iss"] != team_id or not isinstance(iat, int):
            return None
        return iat


class ApnsEmulator:
    """What APNs answers to one request, given the registered keys and the programmed tokens; records pushes."""

    def __init__(self, topics: frozenset[str] | None = None) -> None:
        self.tokens = ProviderTokens()
        self.topics = topics  # the bundle ids the team may push to; None: any
        self.behaviours: dict[str, TokenBehaviour] = {}
        self.pushes: list[ReceivedPush] = []
        self.attempts: list[Attempt] = []

    async def answer(self, request: ApnsRequest) -> Answer:
        """Validate, apply the token's programmed behaviour, record, and answer as Apple would."""
        match = DEVICE_PATH.match(request.path)
        token = match["token"] if match else ""
        apns_id = request.headers.get("apns-id") or str(uuid.uuid4())
        answer = self._refusal(request, match is not None, token)
        if answer is None:
            behaviour = self.behaviours.get(token)
            if behaviour is not None and behaviour.delay_s > 0:
                await asyncio.sleep(behaviour.delay_s)
            answer = self._programmed(request, token, behaviour)
        if answer is None:
            self.pushes.append(
                ReceivedPush(
                    token=token,
                    apns_id=apns_id,
                    headers={k: v for k, v in request.headers.items() if k != "authorization"},
                    payload=json.loads(request.body),
                    received_at=time.time(),
                    http_version=request.http_version,
                    peer=request.peer,
                )
            )
            answer = Answer(200)
        self.attempts.append(Attempt(token, answer.status, answer.reason, time.time()))
        return Answer(answer.status, answer.reason, {**answer.headers, "apns-id": apns_id}, answer.timestamp_ms)

    def _refusal(self, request: ApnsRequest, on_device_path: bool, token: str) -> Answer | None:
        headers = request.headers
        if request.http_version != "2":
            return Answer(505, "HTTP2Required")
        if not on_device_path:
            return Answer(404, "BadPath")
        if request.method != "POST":
            return Answer(405, "MethodNotAllowed")
        if request.duplicated:
            return Answer(400, "DuplicateHeaders")
        provider_token_refusal = self.tokens.refusal(headers.get("authorization"), time.time())
        if provider_token_refusal is not None:
            return Answer(403, provider_token_refusal)
        if not token:
            return Answer(400, "MissingDeviceToken")
        if "apns-id" in headers and not CANONICAL_UUID.match(headers["apns-id"]):
            return Answer(400, "BadMessageId")
        topic = headers.get("apns-topic")
        if not topic:
            return Answer(400, "MissingTopic")
        if self.topics is not None and topic.removesuffix(".voip") not in self.topics:
            return Answer(400, "TopicDisallowed")
        push_type = headers.get("apns-push-type", "alert")
        if push_type not in PUSH_TYPES:
            return Answer(400, "InvalidPushType")
        if headers.get("apns-priority", "10") not in PRIORITIES:
            return Answer(400, "BadPriority")
        if not headers.get("apns-expiration", "0").isdigit():
            return Answer(400, "BadExpirationDate")
        if len(headers.get("apns-collapse-id", "").encode()) > MAX_COLLAPSE_ID_BYTES:
            return Answer(400, "BadCollapseId")
        if not request.body:
            return Answer(400, "PayloadEmpty")
        limit = MAX_VOIP_PAYLOAD_BYTES if push_type == "voip" else MAX_PAYLOAD_BYTES
        if len(request.body) > limit:
            return Answer(413, "PayloadTooLarge")
        if not payload_has_aps(request.body):
            return Answer(400, "BadPayload")
        if not HEX_TOKEN.match(token):
            return Answer(400, "BadDeviceToken")
        return None

    def _programmed(self, request: ApnsRequest, token: str, behaviour: TokenBehaviour | None) -> Answer | None:
        if behaviour is None:
            return None
        if behaviour.bad:
            return Answer(400, "BadDeviceToken")
        if behaviour.topic is not None and request.headers.get("apns-topic") != behaviour.topic:
            return Answer(400, "DeviceTokenNotForTopic")
        if behaviour.gone:
            return Answer(410, behaviour.gone_reason, timestamp_ms=behaviour.gone_since_ms)
        retry_after = {} if behaviour.retry_after_s is None else {"retry-after": str(behaviour.retry_after_s)}
        if behaviour.throttled > 0:
            behaviour.throttled -= 1
            return Answer(429, "TooManyRequests", retry_after)
        if behaviour.failures > 0:
            behaviour.failures -= 1
            if behaviour.failure_status == 503:
                return Answer(503, "ServiceUnavailable", retry_after)
            return Answer(500, "InternalServerError")
        return None


def payload_has_aps(body: bytes) -> bool:
    try:
        payload = json.loads(body)
    except ValueError:
        return False
    return isinstance(payload, dict) and isinstance(payload.get("aps"), dict)


def header_text(raw: bytes) -> str:
    """A header field as text: UTF-8 (so byte limits such as the collapse id's count what the client sent), or
    byte for byte when it is not UTF-8."""
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def request_path(target: str) -> str:
    """The path of a request target, percent-decoded, without its query."""
    return unquote(target.partition("?")[0])


def add_header(headers: dict[str, str], duplicated: set[str], name: str, value: str) -> None:
    if name in headers and name in SINGLE_HEADERS:
        duplicated.add(name)
    headers[name] = value


def h2_request(header_fields: Iterable[tuple[bytes, bytes]], body: bytes, peer: str) -> ApnsRequest:
    """The request a stream's header fields and body make. `:authority` becomes `host`, the header HTTP/1.1
    carries it in (recorded pushes have always shown it so)."""
    method = path = ""
    headers: dict[str, str] = {}
    duplicated: set[str] = set()
    for raw_name, raw_value in header_fields:
        value = header_text(raw_value)
        if raw_name == b":method":
            method = value
        elif raw_name == b":path":
            path = request_path(value)
        elif raw_name == b":authority":
            headers.setdefault("host", value)
        elif not raw_name.startswith(b":"):
            add_header(headers, duplicated, header_text(raw_name).lower(), value)
    return ApnsRequest(method, path, headers, frozenset(duplicated), body, "2", peer)


def http1_request(head: bytes, peer: str) -> ApnsRequest:
    """The request an HTTP/1.x request head makes (its body is not read: the answer is 505 whatever it is)."""
    request_line, *lines = head.decode("latin-1").split("\r\n")
    method, _, rest = request_line.partition(" ")
    target, _, version = rest.partition(" ")
    headers: dict[str, str] = {}
    duplicated: set[str] = set()
    for line in lines:
        name, colon, value = line.partition(":")
        if colon:
            add_header(headers, duplicated, name.strip().lower(), value.strip())
    return ApnsRequest(method, request_path(target), headers, frozenset(duplicated), b"",
                       version.removeprefix("HTTP/") or "1.1", peer)


def tls_context(tls: TlsFiles) -> ssl.SSLContext:
    """The server side of TLS: the fake's certificate, and ALPN offering h2 first. http/1.1 is offered too, so
    that an HTTP/1.1 client gets APNs' 505 rather than a failed handshake."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.cert_path, tls.key_path)
    context.set_alpn_protocols(["h2", "http/1.1"])
    return context


@dataclass
class IncomingStream:
    """A request whose headers arrived and whose body is still coming."""

    header_fields: list[tuple[bytes, bytes]]
    body: bytearray = field(default_factory=bytearray)


class ApnsConnection(asyncio.Protocol):
    """One client connection. With ALPN `h2`: HTTP/2 (h2's state machine, fed whatever arrives), each request
    answered by the emulator in a task of its own so a slow answer holds back no other stream. Otherwise one
    HTTP/1.x request, answered 505 HTTP2Required, and the connection closed.

    A request received in full is answered even when its connection is lost meanwhile: APNs has it, and the
    phone gets the push though the provider never learns (tests/e2e/test_notifier_delivery.py stages that).
    Only a stream the client resets, or the fake stopping, cancels an answer.

    What h2 has to send is written once per loop iteration (`schedule_flush`): one TLS write carries the window
    updates and every answer that came out of one read, rather than one write per frame."""

    def __init__(self, server: ApnsServer) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.peer = "?:0"
        self.h2: H2Connection | None = None
        self.head = bytearray()  # HTTP/1.x: the request head so far
        self.streams: dict[int, IncomingStream] = {}
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.window_waiters: dict[int, asyncio.Future[None]] = {}
        self.flush_scheduled = False
        self.lost: asyncio.Future[None] = self.loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername") or ("?", 0)
        self.peer = f"{peer[0]}:{peer[1]}"
        self.server.connections.add(self)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2":
            self.h2 = H2Connection(H2_CONFIG)
            # Given before the connection starts, the limit goes out in the first SETTINGS frame and applies at once.
            self.h2.local_settings = Settings(client=False, initial_values={
                SettingCodes.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS,
                SettingCodes.MAX_HEADER_LIST_SIZE: H2Connection.DEFAULT_MAX_HEADER_LIST_SIZE,
            })
            self.h2.initiate_connection()
            self.flush()

    def data_received(self, data: bytes) -> None:
        if self.h2 is not None:
            self.receive_h2(self.h2, data)
        else:
            self.receive_http1(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.streams.clear()
        self.window_opened(0)  # an answer waiting to send its body gives up; the emulator has recorded it
        if not self.lost.done():
            self.lost.set_result(None)

    # HTTP/2

    def receive_h2(self, h2: H2Connection, data: bytes) -> None:
        try:
            events = h2.receive_data(data)
        except ProtocolError as error:
            # h2 has usually queued a GOAWAY already; not for a bad preface, which fails before any frame.
            if h2.state_machine.state is not ConnectionState.CLOSED:
                h2.close_connection(error.error_code)
            self.close()
            return
        for event in events:
            if isinstance(event, RequestReceived):
                self.streams[event.stream_id] = IncomingStream(list(event.headers))
            elif isinstance(event, DataReceived):
                stream = self.streams.get(event.stream_id)
                if stream is not None and len(stream.body) <= MAX_KEPT_BODY_BYTES:
                    stream.body += event.data
                h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, StreamEnded):
                ended = self.streams.pop(event.stream_id, None)
                if ended is not None:
                    request = h2_request(ended.header_fields, bytes(ended.body), self.peer)
                    self.tasks[event.stream_id] = self.server.spawn(self.respond(event.stream_id, request))
            elif isinstance(event, StreamReset):
                self.streams.pop(event.stream_id, None)
                task = self.tasks.pop(event.stream_id, None)
                if task is not None:
                    task.cancel()
            elif isinstance(event, WindowUpdated):
                self.window_opened(event.stream_id)
            elif isinstance(event, RemoteSettingsChanged):
                self.window_opened(0)  # a new initial window size changes every stream's window
            elif isinstance(event, ConnectionTerminated):
                self.close()
                return
        self.schedule_flush()

    async def respond(self, stream_id: int, request: ApnsRequest) -> None:
        try:
            answer = await self.server.answer(request)
            await self.send_answer(stream_id, answer)
        except ProtocolError:
            pass  # the stream was reset or the connection closed meanwhile: nobody is left to answer
        finally:
            self.tasks.pop(stream_id, None)
            self.window_waiters.pop(stream_id, None)

    def sending(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    async def send_answer(self, stream_id: int, answer: Answer) -> None:
        h2 = self.h2
        if h2 is None or not self.sending():
            return
        body = answer.body()
        header_fields = [(b":status", str(answer.status).encode())]
        header_fields += [(name.encode(), value.encode()) for name, value in answer.headers.items()]
        if body:
            header_fields.append((b"content-type", b"application/json"))
        h2.send_headers(stream_id, header_fields, end_stream=not body)
        sent = 0
        while sent < len(body) and self.sending():
            window = h2.local_flow_control_window(stream_id)
            if window <= 0:
                self.schedule_flush()
                waiter = self.window_waiters[stream_id] = self.loop.create_future()
                await waiter
                continue
            chunk = body[sent:sent + min(window, h2.max_outbound_frame_size)]
            sent += len(chunk)
            h2.send_data(stream_id, chunk, end_stream=sent == len(body))
        self.schedule_flush()

    def window_opened(self, stream_id: int) -> None:
        """Wake the answers waiting for flow control: on `stream_id`, or all of them for the connection (0)."""
        waiters = list(self.window_waiters.values()) if stream_id == 0 else [self.window_waiters.get(stream_id)]
        for waiter in waiters:
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def schedule_flush(self) -> None:
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self.flush_scheduled = False
        if self.h2 is not None and self.transport is not None and self.sending():
            data = self.h2.data_to_send()
            if data:
                self.transport.write(data)

    def close(self) -> None:
        """Send what h2 has queued (a GOAWAY, when closing on purpose or on a protocol error) and close."""
        self.flush()
        if self.transport is not None:
            self.transport.close()

    def go_away(self) -> None:
        """The server stops: GOAWAY (HTTP/2) and close."""
        if self.h2 is not None and self.h2.state_machine.state is not ConnectionState.CLOSED:
            self.h2.close_connection()
        self.close()

    # HTTP/1.x

    def receive_http1(self, data: bytes) -> None:
        if self.tasks:
            return  # answering already; the connection closes after the answer
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            if len(self.head) > MAX_HTTP1_HEAD_BYTES and self.transport is not None:
                self.transport.close()
            return
        request = http1_request(bytes(self.head[:end]), self.peer)
        self.tasks[0] = self.server.spawn(self.respond_http1(request))

    async def respond_http1(self, request: ApnsRequest) -> None:
        answer = await self.server.answer(request)
        body = answer.body()
        lines = [f"HTTP/1.1 {answer.status} {HTTPStatus(answer.status).phrase}"]
        lines += [f"{name}: {value}" for name, value in answer.headers.items()]
        if body:
            lines.append("content-type: application/json")
        lines += [f"content-length: {len(body)}", "connection: close"]
        if self.transport is not None and self.sending():
            self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
            self.transport.close()


class ApnsServer:
    """The APNs endpoint: TLS and HTTP/2 on asyncio and h2, every request answered by the emulator."""

    def __init__(self, emulator: ApnsEmulator) -> None:
        self.emulator = emulator
        self.connections: set[ApnsConnection] = set()
        self.answering: set[asyncio.Task[None]] = set()  # of every connection, lost ones' included
        self._server: asyncio.Server | None = None

    async def start(self, sock: socket.socket, context: ssl.SSLContext) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: ApnsConnection(self), sock=sock, ssl=context,
                                                backlog=LISTEN_BACKLOG)

    def spawn(self, answering: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(answering)
        self.answering.add(task)
        task.add_done_callback(self.answering.discard)
        return task

    async def answer(self, request: ApnsRequest) -> Answer:
        try:
            return await self.emulator.answer(request)
        except Exception:
            # A bug in the fake: the client sees what a server in trouble answers, the log says why.
            logger.exception("the APNs fake failed to answer %s %s", request.method, request.path)
            return Answer(500, "InternalServerError")

    async def stop(self, grace_s: float = 0.25) -> None:
        """Stop accepting, cancel the answers under way, send every connection a GOAWAY and close it; after
        `grace_s`, drop what is left (a TLS close waits for the client's close_notify, which an idle HTTP/2
        client never reads to send)."""
        if self._server is not None:
            self._server.close()
        for task in self.answering:
            task.cancel()
        connections = list(self.connections)
        for connection in connections:
            connection.go_away()
        if connections:
            await asyncio.wait([connection.lost for connection in connections], timeout=grace_s)
        for connection in connections:
            if not connection.lost.done() and connection.transport is not None:
                connection.transport.abort()
        if self._server is not None:
            # Python 3.12+ waits here for connections still in their TLS handshake; do not wait for them long.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace_s):
                    await self._server.wait_closed()


ADMIN_STATE: web.AppKey[FakeApns] = web.AppKey("admin_state")


def admin_app(fake: FakeApns) -> web.Application:
    """The inspection and programming API on plain HTTP/1.1 (see the module docstring)."""
    app = web.Application()
    app[ADMIN_STATE] = fake
    app.router.add_get("/_fake", admin_info)
    app.router.add_get("/_fake/pushes", admin_pushes)
    app.router.add_delete("/_fake/pushes", admin_clear)
    app.router.add_get("/_fake/attempts", admin_attempts)
    app.router.add_post("/_fake/tokens/{token}", admin_program)
    app.router.add_delete("/_fake/tokens/{token}", admin_forget)
    return app


async def admin_info(request: web.Request) -> web.Response:
    return web.json_response(request.app[ADMIN_STATE].description())


async def admin_pushes(request: web.Request) -> web.Response:
    fake = request.app[ADMIN_STATE]
    token = request.query.get("token")
    return web.json_response({"pushes": [push.to_json() for push in fake.pushes_to(token)]})


async def admin_attempts(request: web.Request) -> web.Response:
    fake = request.app[ADMIN_STATE]
    token = request.query.get("token")
    attempts = [asdict(a) for a in fake.emulator.attempts if token is None or a.token == token]
    return web.json_response({"attempts": attempts})


async def admin_clear(request: web.Request) -> web.Response:
    request.app[ADMIN_STATE].clear()
    return web.Response(status=204)


async def admin_program(request: web.Request) -> web.Response:
    try:
        body = await request.json() if request.can_read_body else {}
        if not isinstance(body, dict):
            raise ValueError("the body is a JSON object of TokenBehaviour fields")
        behaviour = TokenBehaviour.from_json(body)
    except (ValueError, TypeError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    request.app[ADMIN_STATE].emulator.behaviours[request.match_info["token"]] = behaviour
    return web.json_response(asdict(behaviour))


async def admin_forget(request: web.Request) -> web.Response:
    request.app[ADMIN_STATE].emulator.behaviours.pop(request.match_info["token"], None)
    return web.Response(status=204)


@dataclass(frozen=True)
class TlsFiles:
    ca_path: Path
    cert_path: Path
    key_path: Path

    @classmethod
    def in_dir(cls, directory: Path) -> TlsFiles:
        """The CA and server certificate in `directory`, issued now unless an earlier run left them there."""
        files = cls(directory / "ca.pem", directory / "server-cert.pem", directory / "server-key.pem")
        if not all(path.exists() for path in (files.ca_path, files.cert_path, files.key_path)):
            directory.mkdir(parents=True, exist_ok=True)
            ca = trustme.CA(organization_name="oncall fake APNs")
            cert = ca.issue_cert(*CERT_NAMES)
            ca.cert_pem.write_to_path(str(files.ca_path))
            files.cert_path.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
            cert.private_key_pem.write_to_path(str(files.key_path))
        return files


def provider_key_in_dir(directory: Path) -> ProviderKey:
    """The signing key kept in `directory` (AuthKey_<key id>.p8 plus the team id), made on first use."""
    meta = directory / "provider-key.json"
    if meta.exists():
        ids = json.loads(meta.read_text())
        pem = (directory / f"AuthKey_{ids['key_id']}.p8").read_text()
        return ProviderKey(ids["key_id"], ids["team_id"], pem)
    key = ProviderKey.generate()
    (directory / f"AuthKey_{key.key_id}.p8").write_text(key.private_key_pem)
    meta.write_text(json.dumps({"key_id": key.key_id, "team_id": key.team_id}))
    return key


def listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(LISTEN_BACKLOG)
    sock.setblocking(False)
    return sock


class FakeApns:
    """A running fake: the APNs endpoint at `url` (trust `ca_path`), the admin API at `admin_url`, the signing
    key it accepts as `credentials`; `program` tokens and read `pushes`."""

    def __init__(self, emulator: ApnsEmulator, credentials: ProviderKey, tls: TlsFiles, url: str,
                 admin_url: str) -> None:
        self.emulator = emulator
        self.credentials = credentials
        self.tls = tls
        self.url = url
        self.admin_url = admin_url

    @property
    def ca_path(self) -> str:
        return str(self.tls.ca_path)

    @property
    def pushes(self) -> list[ReceivedPush]:
        return self.emulator.pushes

    @property
    def attempts(self) -> list[Attempt]:
        return self.emulator.attempts

    def pushes_to(self, token: str | None) -> list[ReceivedPush]:
        """Accepted pushes to `token` (all when None), oldest first."""
        return [push for push in self.emulator.pushes if token is None or push.token == token]

    def attempts_at(self, token: str) -> list[Attempt]:
        """Every answer given to pushes for `token`, oldest first."""
        return [attempt for attempt in self.emulator.attempts if attempt.token == token]

    def program(self, token: str, **behaviour: Any) -> TokenBehaviour:
        """Make the fake answer pushes to `token` as `behaviour` (the fields of `TokenBehaviour`) says."""
        programmed = TokenBehaviour.from_json(behaviour)
        self.emulator.behaviours[token] = programmed
        return programmed

    def register_key(self, key: ProviderKey) -> None:
        """Accept provider tokens signed with another key too."""
        self.emulator.tokens.register(key)

    def clear(self) -> None:
        """Forget recorded pushes and attempts (programmed tokens stay)."""
        self.emulator.pushes.clear()
        self.emulator.attempts.clear()

    def description(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "admin_url": self.admin_url,
            "ca_path": self.ca_path,
            "key_id": self.credentials.key_id,
            "team_id": self.credentials.team_id,
            "topics": None if self.emulator.topics is None else sorted(self.emulator.topics),
        }

    @classmethod
    @contextlib.asynccontextmanager
    async def running(
        cls,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        admin_port: int = 0,
        cert_dir: Path | None = None,
        credentials: ProviderKey | None = None,
        topics: frozenset[str] | None = None,
    ) -> AsyncIterator[FakeApns]:
        """Serve the fake on `port` (TLS, HTTP/2) and `admin_port` (HTTP/1.1) until the block ends; 0 picks free
        ports. The CA and certificate go to `cert_dir` (kept from an earlier run), else to a temporary one."""
        with contextlib.ExitStack() as files:
            directory = cert_dir or Path(files.enter_context(tempfile.TemporaryDirectory(prefix="fake-apns-")))
            tls = TlsFiles.in_dir(directory)
            emulator = ApnsEmulator(topics)
            credentials = credentials or ProviderKey.generate()
            emulator.tokens.register(credentials)

            apns_socket = listening_socket(host, port)
            admin_socket = listening_socket(host, admin_port)
            url_host = f"[{host}]" if ":" in host else host
            fake = cls(
                emulator, credentials, tls,
                url=f"https://{url_host}:{apns_socket.getsockname()[1]}",
                admin_url=f"http://{url_host}:{admin_socket.getsockname()[1]}",
            )

            runner = web.AppRunner(admin_app(fake), access_log=None)
            await runner.setup()
            await web.SockSite(runner, admin_socket).start()
            server = ApnsServer(emulator)
            try:
                await server.start(apns_socket, tls_context(tls))
                yield fake
            finally:
                await server.stop()
                await runner.cleanup()


async def run_cli(args: argparse.Namespace) -> None:
    cert_dir = Path(args.cert_dir)
    topics = frozenset(args.topic) if args.topic else None
    async with FakeApns.running(host=args.host, port=args.port, admin_port=args.admin_port, cert_dir=cert_dir,
                                credentials=provider_key_in_dir(cert_dir), topics=topics) as fake:
        description = {**fake.description(), "key_path": str(cert_dir / f"AuthKey_{fake.credentials.key_id}.p8")}
        (cert_dir / "fake-apns.json").write_text(json.dumps(description, indent=2))
        print(json.dumps(description), flush=True)
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stopped.set)
        await stopped.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="A local fake of Apple's APNs provider API (HTTP/2 over TLS).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2197, help="the APNs endpoint (TLS, HTTP/2)")
    parser.add_argument("--admin-port", type=int, default=2198, help="the inspection API (plain HTTP/1.1)")
    parser.add_argument("--cert-dir", required=True, help="where the CA, certificate and signing key are kept")
    parser.add_argument("--topic", action="append", help="a bundle id the team may push to (default: any)")
    args = parser.parse_args()
    Path(args.cert_dir).mkdir(parents=True, exist_ok=True)
    asyncio.run(run_cli(args))


if __name__ == "__main__":
    main()
