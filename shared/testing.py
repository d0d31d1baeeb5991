"""Helpers for tests that run against the real broker and database."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from unittest import mock

import aiokafka.producer.message_accumulator
import aiokafka.producer.producer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]], *, timeout_s: float = 30.0, interval_s: float = 0.1, what: str = "condition"
) -> T:
    """Poll `probe` until it returns something truthy; fail with `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval_s)
    raise AssertionError(f"{what} not reached within {timeout_s}s (last value: {last!r})")


async def read_topic(
    bootstrap: str,
    topic: str,
    *,
    until: Callable[[list[ConsumerRecord[bytes, bytes]]], bool],
    timeout_s: float = 30.0,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of `topic` from the beginning, read until `until(records)` holds."""
    # No consumer group: a reader needs every partition and no join, which on Tansu costs seconds.
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        deadline = time.monotonic() + timeout_s
        while not until(records):
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: condition not met within {timeout_s}s; read {len(records)} records")
            batch = await consumer.getmany(timeout_ms=500)
            for part in batch.values():
                records.extend(part)
    finally:
        await consumer.stop()
    return records


async def produce(bootstrap: str, topic: str, items: list[tuple[bytes, bytes]], headers: Any = None) -> None:
    """Write raw (key, value) records to `topic`, as any other producer on the network could."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)
    await producer.start()
    try:
        for key, value in items:
            await producer.send_and_wait(topic, value, key=key, headers=headers or [])
    finally:
        await producer.stop()


RawHeaders = Sequence[tuple[bytes | str, bytes | None]]


class _RawHeaderKey(str):
    """A header key whose wire bytes are given as they are, valid UTF-8 or not."""

    raw: bytes

    def __new__(cls, raw: bytes) -> _RawHeaderKey:
        key = super().__new__(cls, raw.decode(errors="replace"))
        key.raw = raw
        return key

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return self.raw


async def produce_raw(bootstrap: str, topic: str, items: Sequence[tuple[bytes, bytes | None, RawHeaders]]) -> None:
    """Write records whose header keys and values are arbitrary bytes (or null values), as a foreign or buggy
    producer could; aiokafka's own producer only writes UTF-8 keys, so its pure-Python batch builder is used
    with keys that encode to the given bytes."""
    builder = _DefaultRecordBatchBuilderPy
    with (
        mock.patch.object(aiokafka.producer.producer, "DefaultRecordBatchBuilder", builder),
        mock.patch.object(aiokafka.producer.message_accumulator, "DefaultRecordBatchBuilder", builder),
    ):
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)
        await producer.start()
        try:
            for key, value, headers in items:
                wire = [(_RawHeaderKey(k) if isinstance(k, bytes) else k, v) for k, v in headers]
                await producer.send_and_wait(topic, value, key=key, headers=wire)
        finally:
            await producer.stop()
