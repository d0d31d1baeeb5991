"""Kafka plumbing: broker factory, topic creation, and the guard every consumer runs behind.

The guard gives each subscriber these delivery rules: a message that cannot be parsed goes to `<topic>.dlq`
at once; one whose handler keeps failing is retried with backoff and then parked there too; a transient
outage (database or broker unreachable) is retried until it heals, without committing the offset, so
nothing is skipped. Offsets are committed only after the handler returned (or the message was parked), and
a failure to park rewinds to the message (`NACK_ON_ERROR`).

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
import json
import struct
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

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
from prometheus_client import Counter
from pydantic import ValidationError

from shared.logs import CORRELATION_ID, get_logger
from shared.settings import ServiceSettings
from shared.topics import Topic, dead_letter_topic

log = get_logger(__name__)

CONSUMED = Counter("consumer_messages_total", "Messages handled by consumers", ["topic", "outcome"])

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
        failures = 0
        backoff = self._policy.first_backoff_s
        while True:
            try:
                result = await call_next(msg)
            except POISON as exc:
                return await self._dead_letter(record, exc, "unparseable")
            except TRANSIENT as exc:
                log.warning("transient failure; retrying", error=repr(exc), backoff_s=backoff)
                CONSUMED.labels(record.topic, "retried").inc()
            except Exception as exc:
                failures += 1
                if failures >= self._policy.max_attempts:
                    return await self._dead_letter(record, exc, "failing")
                log.warning("handler failed; retrying", error=repr(exc), attempt=failures, backoff_s=backoff)
                CONSUMED.labels(record.topic, "retried").inc()
            else:
                CONSUMED.labels(record.topic, "ok").inc()
                return result
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._policy.max_backoff_s)

    async def _dead_letter(self, record: Any, exc: BaseException, why: str) -> None:
        log.error("message parked in dead-letter topic", reason=why, error=repr(exc))
        await self._park(record, exc)
        CONSUMED.labels(record.topic, "dead_lettered").inc()


def _log_context(record: Any) -> Any:
    headers = dict(text_headers(record.headers))
    return structlog.contextvars.bound_contextvars(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        event_id=headers.get("event_id"),
        **{CORRELATION_ID: headers.get(CORRELATION_ID) or headers.get("event_id")},
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
    headers = tuple((k, v.encode()) for k, v in text_headers(record.headers))
    return await parse(dataclasses.replace(record, headers=headers))


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
