"""Kafka plumbing: broker factory, topic creation, and the guard every consumer runs behind.

The guard gives each subscriber these delivery rules: a message that cannot be parsed goes to `<topic>.dlq`
at once; one whose handler keeps failing is retried with backoff and then parked there too; a transient
outage (database or broker unreachable) is retried until it heals, without committing the offset, so
nothing is skipped. Offsets are committed only after the handler returned (or the message was parked), and
a failure to park rewinds to the message (`NACK_ON_ERROR`).

Batch subscribers (`batch_subscriber`, DESIGN §7a) keep the same rules while paying one transaction per
batch: the handler receives the parsed messages of one fetch (up to `max_records`, each partition's in offset
order), applies their effects and inbox claims in one transaction, and the offsets are committed after it. A
record that cannot be parsed is parked on its own before the handler runs and the rest are handled; a
transient outage retries the whole batch without committing; any other failure of the batch falls back to
handling its messages one by one under the per-message rules above, so one bad message is retried and parked
alone while its neighbours take effect.

Headers are read leniently, because a record no consumer can read would otherwise stop its partition for
every consumer group, for good. aiokafka decodes header keys as strict UTF-8 while it unpacks a fetched
batch, before faststream or any middleware sees the record: one bad key made `getone()` raise on every
fetch, the consume task restart in a loop, and the partition never advance. `install_lenient_reader`
(done by `make_broker`) lets aiokafka read such a batch again with undecodable key bytes kept as surrogates;
the guard parks a record carrying one, with its raw value and the error. A null or non-UTF-8 header *value*
is no reason to lose a message: the parser hands faststream "" or the text with U+FFFD in its place, and
the payload is handled as usual. Should parsing still fail, the guard parks the record rather than let
faststream skip it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import struct
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import aiokafka.consumer.fetcher
import asyncpg
import structlog
from aiokafka import codec
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    CorruptRecordException,
    KafkaConnectionError,
    KafkaTimeoutError,
    TopicAlreadyExistsError,
)
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.record.util import decode_varint
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.middlewares import BaseMiddleware
from prometheus_client import Counter, Histogram
from pydantic import TypeAdapter, ValidationError, WrapValidator

from shared.logs import CORRELATION_ID, get_logger
from shared.settings import ServiceSettings
from shared.topics import Topic, dead_letter_topic

log = get_logger(__name__)

CONSUMED = Counter("consumer_messages_total", "Messages handled by consumers", ["topic", "outcome"])
BATCHES = Counter(
    "consumer_batches_total", "Batches handled whole, or one by one after the whole failed", ["topic", "how"]
)
BATCH_SIZE = Histogram(
    "consumer_batch_size", "Records per fetched batch", ["topic"], buckets=(1, 5, 20, 50, 100, 250, 500, 1000, 2000)
)

POISON = (ValidationError, json.JSONDecodeError, UnicodeDecodeError)


class UnreadableHeader(ValueError):
    """A record carries a header key that is not UTF-8: no Kafka client can be expected to read it."""


TRANSIENT = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.CannotConnectNowError,
    KafkaConnectionError,
    KafkaTimeoutError,
)


@dataclass(frozen=True)
class ConsumerPolicy:
    max_attempts: int = 5
    first_backoff_s: float = 0.2
    max_backoff_s: float = 10.0


Park = Callable[[Any, BaseException], Awaitable[None]]
BatchHandler = Callable[[list[Any]], Awaitable[None]]

# Each broker's policy and parking function, for the batch subscribers registered on it later.
_PLUMBING: weakref.WeakKeyDictionary[KafkaBroker, tuple[ConsumerPolicy, Park]] = weakref.WeakKeyDictionary()


def make_broker(settings: ServiceSettings, policy: ConsumerPolicy | None = None) -> KafkaBroker:
    """A faststream broker whose every subscriber runs behind the dead-letter guard."""
    install_lenient_reader()
    policy = policy or ConsumerPolicy(max_attempts=settings.consumer_max_attempts)
    holder: dict[str, KafkaBroker] = {}

    async def park(record: Any, error: BaseException) -> None:
        headers = {k: v for k, v in text_headers(record.headers) if not k.startswith("dlq-")}
        headers |= {
            "dlq-error": f"{type(error).__name__}: {error}"[:4000],
            "dlq-source-topic": record.topic,
            "dlq-source-partition": str(record.partition),
            "dlq-source-offset": str(record.offset),
            "dlq-consumer-group": settings.service_name,
        }
        await holder["broker"].publish(
            record.value or b"", dead_letter_topic(record.topic), key=record.key, headers=headers
        )

    def guard(msg: Any, /, *, context: Any) -> _Guard:
        return _Guard(msg, context=context, policy=policy, park=park)

    broker = KafkaBroker(
        settings.kafka_bootstrap,
        client_id=settings.service_name,
        middlewares=[guard],
        parser=_parse_leniently,
        acks="all",
        enable_idempotence=False,  # local brokers lack it; the inbox makes redelivery harmless
        logger=get_logger("faststream"),
    )
    holder["broker"] = broker
    _PLUMBING[broker] = (policy, park)
    return broker


def subscriber_options(settings: ServiceSettings, group: str) -> dict[str, Any]:
    """Options for `broker.subscriber(...)`: commit after the effect, start from the beginning."""
    return {
        "group_id": group,
        "ack_policy": AckPolicy.NACK_ON_ERROR,
        "auto_offset_reset": "earliest",
        "fetch_max_wait_ms": settings.kafka_fetch_max_wait_ms,
        "session_timeout_ms": settings.kafka_session_timeout_ms,
        "heartbeat_interval_ms": min(settings.kafka_heartbeat_interval_ms, settings.kafka_session_timeout_ms // 3),
    }


def batch_options(settings: ServiceSettings, group: str, max_records: int | None = None) -> dict[str, Any]:
    """`subscriber_options` for a `batch_subscriber`, with the batch size and how long a fetch waits."""
    return {
        **subscriber_options(settings, group),
        "max_records": max_records or settings.consumer_batch_max_records,
        "batch_timeout_ms": settings.consumer_batch_timeout_ms,
    }


def batch_subscriber(
    broker: KafkaBroker, topic: str, message_type: Any, **options: Any
) -> Callable[[BatchHandler], BatchHandler]:
    """Register `handler(messages: list[M])` for batches of `topic`, whose records are `message_type` (a
    message class or a union of them), with `options` from `batch_options` (plus e.g. a `listener`).

    The handler gets the parsed messages of one fetch in order (per partition by offset) and should apply them
    in one transaction (`shared.inbox.claim_many`, `shared.projection.project_batch`). It may be called again
    with the same messages (redelivery, a retried outage) and, after a failure of the whole batch, with each
    message alone. The AsyncAPI document shows the topic's records as the single-message subscriber would.
    """
    policy, park = _PLUMBING[broker]

    def register(handler: BatchHandler) -> BatchHandler:
        runner = _BatchRunner(topic, handler, TypeAdapter(message_type), policy, park)

        async def consume(messages: Any) -> None:
            await runner(messages.records)

        # What faststream documents: the handler's name, docstring and one record's schema. The records reach
        # `consume` untouched (`_decode_batch`); each is parsed on its own, so one poison record parks alone.
        consume.__annotations__ = {"messages": Annotated[message_type, WrapValidator(_pass_raw_batch)], "return": None}
        consume.__name__ = consume.__qualname__ = handler.__name__
        consume.__doc__ = handler.__doc__
        broker.subscriber(topic, batch=True, decoder=_decode_batch, **options)(consume)
        return handler

    return register


@dataclass(frozen=True)
class _RawBatch:
    """The records of one fetch as aiokafka returned them (header keys possibly undecodable)."""

    records: tuple[Any, ...]


def _pass_raw_batch(value: Any, validate: Callable[[Any], Any]) -> Any:
    return value if isinstance(value, _RawBatch) else validate(value)


async def _decode_batch(message: Any) -> _RawBatch:
    return _RawBatch(tuple(message.raw_message))


class _BatchRunner:
    def __init__(self, topic: str, handler: BatchHandler, adapter: TypeAdapter[Any], policy: ConsumerPolicy,
                 park: Park) -> None:
        self._topic = topic
        self._handler = handler
        self._adapter = adapter
        self._policy = policy
        self._park = park

    async def __call__(self, records: Sequence[Any]) -> None:
        BATCH_SIZE.labels(self._topic).observe(len(records))
        parsed = []
        for record in records:
            with _log_context(record):
                message = await self._parse(record)
            if message is not None:
                parsed.append((record, message))
        if len(parsed) > 1 and await self._whole([m for _, m in parsed], [r for r, _ in parsed]):
            return
        for record, message in parsed:
            with _log_context(record):
                await _with_retries(functools.partial(self._handler, [message]), record, self._policy, self._park)

    async def _parse(self, record: Any) -> Any:
        """The record's message, or None after parking a record that is not one."""
        if unreadable := unreadable_header_keys(record.headers):
            await _dead_letter(self._park, record, UnreadableHeader(f"header key {unreadable[0]!r} is not UTF-8"),
                               "unparseable")
            return None
        try:
            return self._adapter.validate_json(record.value or b"")
        except POISON as exc:
            await _dead_letter(self._park, record, exc, "unparseable")
            return None

    async def _whole(self, messages: list[Any], records: list[Any]) -> bool:
        """Handle the batch at once, retrying transient failures; False if the handler failed otherwise. Its log
        lines carry every message's correlation id, so a request is still traced through a batch."""
        backoff = self._policy.first_backoff_s
        ids = [_correlation_id(dict(text_headers(r.headers))) for r in records]
        with structlog.contextvars.bound_contextvars(topic=self._topic, batch=len(messages), correlation_ids=ids):
            while True:
                try:
                    await self._handler(messages)
                except TRANSIENT as exc:
                    log.warning("transient failure on a batch; retrying", error=repr(exc), backoff_s=backoff)
                    CONSUMED.labels(self._topic, "retried").inc(len(messages))
                except Exception as exc:
                    log.warning("batch failed; handling its messages one by one", error=repr(exc))
                    BATCHES.labels(self._topic, "one_by_one").inc()
                    return False
                else:
                    CONSUMED.labels(self._topic, "ok").inc(len(messages))
                    BATCHES.labels(self._topic, "whole").inc()
                    return True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._policy.max_backoff_s)


async def _with_retries(attempt: Callable[[], Awaitable[Any]], record: Any, policy: ConsumerPolicy, park: Park) -> Any:
    """The per-message rules: poison is parked at once; a failing handler is retried with backoff and parked
    after `max_attempts`; a transient outage is retried until it heals, never counted as an attempt."""
    failures = 0
    backoff = policy.first_backoff_s
    while True:
        try:
            result = await attempt()
        except POISON as exc:
            return await _dead_letter(park, record, exc, "unparseable")
        except TRANSIENT as exc:
            log.warning("transient failure; retrying", error=repr(exc), backoff_s=backoff)
            CONSUMED.labels(record.topic, "retried").inc()
        except Exception as exc:
            failures += 1
            if failures >= policy.max_attempts:
                return await _dead_letter(park, record, exc, "failing")
            log.warning("handler failed; retrying", error=repr(exc), attempt=failures, backoff_s=backoff)
            CONSUMED.labels(record.topic, "retried").inc()
        else:
            CONSUMED.labels(record.topic, "ok").inc()
            return result
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, policy.max_backoff_s)


async def _dead_letter(park: Park, record: Any, exc: BaseException, why: str) -> None:
    log.error("message parked in dead-letter topic", reason=why, error=repr(exc))
    await park(record, exc)
    CONSUMED.labels(record.topic, "dead_lettered").inc()


class _Guard(BaseMiddleware):
    def __init__(
        self,
        msg: Any,
        /,
        *,
        context: Any,
        policy: ConsumerPolicy,
        park: Callable[[Any, BaseException], Awaitable[None]],
    ) -> None:
        super().__init__(msg, context=context)
        self._policy = policy
        self._park = park
        self._scoped = False

    async def consume_scope(self, call_next: Any, msg: Any) -> Any:
        self._scoped = True
        record: Any = self.msg  # as fetched: the parser hands the handler a copy with cleaned headers
        if isinstance(record, tuple):  # a batch: its runner applies these rules to each record
            return await call_next(msg)
        with _log_context(record):
            if unreadable := unreadable_header_keys(record.headers):
                error = UnreadableHeader(f"header key {unreadable[0]!r} is not UTF-8")
                return await self._dead_letter(record, error, "unparseable")
            return await self._consume(call_next, msg, record)

    async def after_processed(
        self, exc_type: Any = None, exc_val: BaseException | None = None, exc_tb: Any = None
    ) -> bool:
        """Park a record faststream could not even parse: without this it is skipped, unacknowledged, and the
        next record's commit covers it."""
        if self._scoped or not isinstance(exc_val, Exception):
            return False
        record: Any = self.msg
        if isinstance(record, tuple):  # cannot happen (the batch parser is total); rewound and fetched again
            log.error("a batch could not be parsed; fetching it again", error=repr(exc_val))
            return False
        with _log_context(record):
            backoff = self._policy.first_backoff_s
            while True:
                try:
                    await self._dead_letter(record, exc_val, "unparseable")
                    return True
                except Exception as exc:  # the partition waits rather than lose the record
                    log.warning("cannot park an unparseable message; retrying", error=repr(exc), backoff_s=backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self._policy.max_backoff_s)

    async def _consume(self, call_next: Any, msg: Any, record: Any) -> Any:
        return await _with_retries(lambda: call_next(msg), record, self._policy, self._park)

    async def _dead_letter(self, record: Any, exc: BaseException, why: str) -> None:
        await _dead_letter(self._park, record, exc, why)


def _correlation_id(headers: dict[str, str]) -> str | None:
    return headers.get(CORRELATION_ID) or headers.get("event_id")


def _log_context(record: Any) -> Any:
    headers = dict(text_headers(record.headers))
    return structlog.contextvars.bound_contextvars(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        event_id=headers.get("event_id"),
        **{CORRELATION_ID: _correlation_id(headers)},
    )


RawHeaders = Sequence[tuple[str, bytes | None]]


def _text_key(key: str) -> str:
    return key.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def text_headers(headers: RawHeaders | None) -> list[tuple[str, str]]:
    """Headers as text, whatever a producer wrote: a null value is "", undecodable bytes become U+FFFD."""
    return [(_text_key(k), "" if v is None else v.decode("utf-8", "replace")) for k, v in headers or ()]


def unreadable_header_keys(headers: RawHeaders | None) -> list[bytes]:
    """The raw bytes of every header key that is not UTF-8 (the lenient reader keeps them as surrogates)."""
    bad = []
    for key, _ in headers or ():
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            bad.append(key.encode("utf-8", "surrogateescape"))
    return bad


async def _parse_leniently(record: Any, parse: Callable[[Any], Awaitable[Any]]) -> Any:
    if isinstance(record, tuple):  # a batch: parsed with clean headers, but its runner gets the records as fetched
        message = await parse(tuple(_with_text_headers(r) for r in record))
        message.raw_message = record
        return message
    return await parse(_with_text_headers(record))


def _with_text_headers(record: Any) -> Any:
    return dataclasses.replace(record, headers=tuple((k, v.encode()) for k, v in text_headers(record.headers)))


# ------------------------------------------------------------------------------------ lenient reading

_BATCH_HEADER = struct.Struct(">qiibIhiqqqhii")  # record batch v2, up to and including the record count
_LENGTH_FIELD = struct.Struct(">qi")  # base offset, batch length (counted from after this field)
_LOG_APPEND_TIME = 1
_DECOMPRESS: dict[int, Callable[[Any], bytes]] = {
    1: codec.gzip_decode,
    2: lambda data: codec.snappy_decode(bytes(data)),
    3: lambda data: codec.lz4_decode(bytes(data)),
    4: lambda data: codec.zstd_decode(bytes(data)),
}


@dataclass(frozen=True)
class _Record:
    offset: int
    timestamp: int
    timestamp_type: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    checksum: None = None


def _read_leniently(batch: memoryview) -> Iterator[_Record]:
    """Every record of one v2 record batch, header keys decoded with surrogateescape instead of failing."""
    (base_offset, _, _, _, _, attributes, _, first_ts, max_ts, _, _, _, count) = _BATCH_HEADER.unpack_from(batch)
    body: Any = batch[_BATCH_HEADER.size :]
    if compression := attributes & 0x07:
        body = _DECOMPRESS[compression](body)
    buffer = bytearray(body)
    timestamp_type = (attributes >> 3) & 1
    pos = 0
    for _ in range(count):
        _, pos = decode_varint(buffer, pos)  # record length
        pos += 1  # attributes, unused
        ts_delta, pos = decode_varint(buffer, pos)
        offset_delta, pos = decode_varint(buffer, pos)
        key, pos = _read_bytes(buffer, pos)
        value, pos = _read_bytes(buffer, pos)
        n_headers, pos = decode_varint(buffer, pos)
        headers: list[tuple[str, bytes | None]] = []
        for _ in range(n_headers):
            raw_key, pos = _read_bytes(buffer, pos)
            header_value, pos = _read_bytes(buffer, pos)
            headers.append(((raw_key or b"").decode("utf-8", "surrogateescape"), header_value))
        timestamp = max_ts if timestamp_type == _LOG_APPEND_TIME else first_ts + ts_delta
        yield _Record(base_offset + offset_delta, timestamp, timestamp_type, key, value, headers)


def _read_bytes(buffer: bytearray, pos: int) -> tuple[bytes | None, int]:
    length, pos = decode_varint(buffer, pos)
    if length < 0:
        return None, pos
    return bytes(buffer[pos : pos + length]), pos + length


class _LenientBatch:
    """One fetched record batch: aiokafka's fast reader, and ours from the first record it cannot decode."""

    def __init__(self, batch: Any, raw: memoryview) -> None:
        self._batch = batch
        self._raw = raw
        self._records: Iterator[Any] | None = None
        self._fallback: Iterator[_Record] | None = None
        self._last_offset = -1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._batch, name)

    def __iter__(self) -> _LenientBatch:
        self._records = iter(self._batch)
        return self

    def __next__(self) -> Any:
        if self._fallback is None:
            try:
                record = next(self._records or iter(self._batch))
            except (UnicodeDecodeError, CorruptRecordException) as exc:
                try:
                    rest = [r for r in _read_leniently(self._raw) if r.offset > self._last_offset]
                except Exception:
                    raise exc from None
                log.warning("record batch with undecodable headers; read leniently", error=repr(exc))
                self._fallback = iter(rest)
            else:
                self._last_offset = record.offset
                return record
        return next(self._fallback)


class _LenientRecords:
    """aiokafka's `MemoryRecords` over one fetch response, each v2 batch wrapped in a `_LenientBatch`."""

    def __init__(self, data: bytes) -> None:
        self._records = MemoryRecords(data)
        self._data = memoryview(data)
        self._pos = 0

    def size_in_bytes(self) -> int:
        return int(self._records.size_in_bytes())

    def has_next(self) -> bool:
        return bool(self._records.has_next())

    def next_batch(self) -> Any:
        batch = self._records.next_batch()
        if batch is None:
            return None
        start = self._pos
        _, length = _LENGTH_FIELD.unpack_from(self._data, start)
        self._pos = start + _LENGTH_FIELD.size + length
        if getattr(batch, "magic", 2) < 2:  # v0/v1 messages have no headers
            return batch
        return _LenientBatch(batch, self._data[start : self._pos])


def install_lenient_reader() -> None:
    """Make every aiokafka consumer in this process read batches through `_LenientRecords` (idempotent)."""
    aiokafka.consumer.fetcher.MemoryRecords = _LenientRecords


async def ensure_topics(bootstrap: str, topics: Iterable[Topic], *, timeout_s: float = 30.0) -> None:
    """Create each topic and its dead-letter topic if missing (idempotent, safe across replicas)."""
    wanted = []
    for topic in topics:
        config = {"cleanup.policy": "compact"} if topic.compacted else {}
        wanted.append(NewTopic(topic.name, topic.partitions, 1, topic_configs=config))
        wanted.append(NewTopic(topic.dlq, 1, 1))
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t.name not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()
