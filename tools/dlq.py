"""Inspect and replay dead letters.

    python -m tools.dlq show TOPIC [--limit N]     list what sits in TOPIC.dlq, with the error of each
    python -m tools.dlq replay TOPIC [--limit N]   put dead letters back on TOPIC, once each

Replay is for after the cause is fixed (a bug, a missing entity). Consumers are idempotent (inbox), so a
dead letter replayed twice has one effect; the replayer still commits its own group `dlq-replay.<TOPIC>`,
so a second `replay` continues after the last one instead of starting over.
Env: KAFKA_BOOTSTRAP (default 127.0.0.1:19092).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from shared.topics import dead_letter_topic


@dataclass(frozen=True)
class DeadLetter:
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]

    @property
    def error(self) -> str:
        return self.headers.get("dlq-error", b"?").decode(errors="replace")

    @property
    def original_headers(self) -> list[tuple[str, bytes]]:
        return [(k, v) for k, v in self.headers.items() if not k.startswith("dlq-")]


def _letter(record: ConsumerRecord[bytes, bytes]) -> DeadLetter:
    return DeadLetter(record.offset, record.key, record.value or b"", dict(record.headers or ()))


async def read(bootstrap: str, topic: str, *, group: str | None, limit: int, idle_ms: int = 2000) -> list[DeadLetter]:
    """Dead letters of `topic` from the start (or from `group`'s committed position), up to `limit`."""
    consumer = AIOKafkaConsumer(
        dead_letter_topic(topic),
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,  # a short-lived member: join quickly
    )
    await consumer.start()
    letters: list[DeadLetter] = []
    try:
        while len(letters) < limit:
            batch = await consumer.getmany(timeout_ms=idle_ms, max_records=limit - len(letters))
            if not batch:
                break
            letters.extend(_letter(r) for records in batch.values() for r in records)
        if group is not None and letters:
            await consumer.commit()
    finally:
        await consumer.stop()
    return letters


async def replay(bootstrap: str, topic: str, *, limit: int) -> int:
    """Publish up to `limit` not yet replayed dead letters back to `topic`; returns how many."""
    letters = await read(bootstrap, topic, group=f"dlq-replay.{topic}", limit=limit)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)
    await producer.start()
    try:
        for letter in letters:
            await producer.send_and_wait(topic, letter.value, key=letter.key, headers=letter.original_headers)
    finally:
        await producer.stop()
    return len(letters)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.dlq", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=("show", "replay"))
    parser.add_argument("topic", help="the source topic, e.g. notifier.commands.v1")
    parser.add_argument("--limit", type=int, default=1000)
    args = parser.parse_args(argv)
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:19092")
    if args.command == "show":
        for letter in asyncio.run(read(bootstrap, args.topic, group=None, limit=args.limit)):
            key = (letter.key or b"").decode(errors="replace")
            print(f"{letter.offset}\tkey={key}\t{letter.error}\t{letter.value[:200]!r}")
    else:
        print(f"replayed {asyncio.run(replay(bootstrap, args.topic, limit=args.limit))} to {args.topic}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
