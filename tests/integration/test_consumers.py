"""Consumers on the real broker: poison goes to the DLQ, failures retry then park, redelivery is harmless."""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import ClassVar, Literal

import asyncpg
import pytest
from faststream.kafka import KafkaBroker

from shared.db import create_pool, transaction
from shared.inbox import claim
from shared.kafka import ConsumerPolicy, ensure_topics, make_broker, subscriber_options
from shared.messages import Message
from shared.migrations import migrate, migrations_for
from shared.settings import ServiceSettings
from shared.testing import eventually, produce, read_topic
from shared.topics import Topic
from tests.conftest import SESSION_TIMEOUT_MS, Infra


class Ping(Message):
    entity_field: ClassVar[str] = "thing_id"
    type: Literal["Ping"] = "Ping"
    thing_id: uuid.UUID
    text: str


@pytest.fixture
async def pool(infra: Infra) -> AsyncIterator[asyncpg.Pool]:
    schema = f"c_{uuid.uuid4().hex[:8]}"
    await migrate(infra.database_url, schema, migrations_for("shared-only"))
    pool = await create_pool(infra.database_url, schema)
    await pool.execute("CREATE TABLE effects (event_id uuid, text text)")
    yield pool
    await pool.close()


@pytest.fixture
def topic() -> Topic:
    return Topic(f"test.pings.{uuid.uuid4().hex[:8]}.v1", "test", (Ping,), partitions=1)


Handler = Callable[[Ping], Awaitable[None]]


@pytest.fixture
async def consume(infra: Infra, topic: Topic) -> AsyncIterator[Callable[[Handler], Awaitable[KafkaBroker]]]:
    brokers: list[KafkaBroker] = []
    settings = ServiceSettings(
        service_name="test", kafka_bootstrap=infra.kafka_bootstrap, kafka_session_timeout_ms=int(SESSION_TIMEOUT_MS)
    )
    await ensure_topics(infra.kafka_bootstrap, [topic])

    async def start(handler: Handler) -> KafkaBroker:
        broker = make_broker(settings, ConsumerPolicy(max_attempts=3, first_backoff_s=0.05, max_backoff_s=0.2))
        broker.subscriber(topic.name, **subscriber_options(settings, f"g-{topic.name}"))(handler)
        await broker.start()
        brokers.append(broker)
        return broker

    yield start
    for broker in brokers:
        await broker.stop()


def ping(text: str, event_id: uuid.UUID | None = None) -> tuple[bytes, bytes]:
    message = Ping(thing_id=uuid.uuid4(), text=text, **({"event_id": event_id} if event_id else {}))
    return message.key.encode(), message.model_dump_json().encode()


async def test_poison_is_parked_with_its_error_and_the_consumer_moves_on(
    infra: Infra, topic: Topic, pool: asyncpg.Pool, consume: Callable[[Handler], Awaitable[KafkaBroker]]
) -> None:
    seen: list[str] = []

    async def handler(p: Ping) -> None:
        seen.append(p.text)

    await consume(handler)
    await produce(
        infra.kafka_bootstrap,
        topic.name,
        [(b"k", b"{this is not json"), (b"k", b'{"type": "Ping", "text": 42}'), ping("after the poison")],
    )
    await eventually(lambda: asyncio.sleep(0, result=seen == ["after the poison"]), what="good message handled")
    parked = await read_topic(infra.kafka_bootstrap, topic.dlq, until=lambda rs: len(rs) >= 2)
    assert [r.value for r in parked] == [b"{this is not json", b'{"type": "Ping", "text": 42}']
    for record in parked:
        headers = dict(record.headers)
        assert headers["dlq-source-topic"] == topic.name.encode()
        assert b"ValidationError" in headers["dlq-error"]
    assert json.loads(parked[1].value)["text"] == 42


async def test_a_failing_handler_is_retried_then_parked(
    infra: Infra, topic: Topic, consume: Callable[[Handler], Awaitable[KafkaBroker]]
) -> None:
    attempts: dict[str, int] = {}
    done: list[str] = []

    async def handler(p: Ping) -> None:
        attempts[p.text] = attempts.get(p.text, 0) + 1
        if p.text == "always fails" or (p.text == "fails twice" and attempts[p.text] <= 2):
            raise RuntimeError(f"cannot handle {p.text}")
        done.append(p.text)

    await consume(handler)
    await produce(infra.kafka_bootstrap, topic.name, [ping("fails twice"), ping("always fails"), ping("fine")])
    await eventually(lambda: asyncio.sleep(0, result=done == ["fails twice", "fine"]), what="both handled")
    assert attempts == {"fails twice": 3, "always fails": 3, "fine": 1}
    parked = await read_topic(infra.kafka_bootstrap, topic.dlq, until=lambda rs: len(rs) >= 1)
    assert len(parked) == 1 and json.loads(parked[0].value)["text"] == "always fails"
    assert dict(parked[0].headers)["dlq-error"] == b"RuntimeError: cannot handle always fails"


async def test_transient_outages_are_retried_without_parking(
    infra: Infra, topic: Topic, consume: Callable[[Handler], Awaitable[KafkaBroker]]
) -> None:
    outages = {"left": 6}  # more than max_attempts: a database outage must not send pages to the DLQ
    done: list[str] = []

    async def handler(p: Ping) -> None:
        if outages["left"]:
            outages["left"] -= 1
            raise ConnectionRefusedError("database restarting")
        done.append(p.text)

    await consume(handler)
    await produce(infra.kafka_bootstrap, topic.name, [ping("survives the outage")])
    await eventually(lambda: asyncio.sleep(0, result=done == ["survives the outage"]), timeout_s=30, what="handled")
    with pytest.raises(AssertionError):
        await read_topic(infra.kafka_bootstrap, topic.dlq, until=lambda rs: len(rs) >= 1, timeout_s=2)


async def test_redelivered_events_have_no_second_effect(
    infra: Infra, topic: Topic, pool: asyncpg.Pool, consume: Callable[[Handler], Awaitable[KafkaBroker]]
) -> None:
    async def handler(p: Ping) -> None:
        async with transaction(pool) as conn:
            if await claim(conn, "test.effects", p.event_id):
                await conn.execute("INSERT INTO effects VALUES ($1, $2)", p.event_id, p.text)

    await consume(handler)
    first, second = uuid.uuid4(), uuid.uuid4()
    await produce(
        infra.kafka_bootstrap,
        topic.name,
        [ping("once", first), ping("once", first), ping("twice", second), ping("once", first)],
    )
    await eventually(lambda: pool.fetchval("SELECT count(*) >= 2 FROM effects"), what="effects")
    await asyncio.sleep(1.0)  # the duplicates come after; give them time to (not) apply
    rows = await pool.fetch("SELECT event_id, text FROM effects ORDER BY text")
    assert [(r["event_id"], r["text"]) for r in rows] == [(first, "once"), (second, "twice")]


async def test_offsets_are_committed_only_after_the_effect(
    infra: Infra, topic: Topic, consume: Callable[[Handler], Awaitable[KafkaBroker]]
) -> None:
    """A consumer stopped mid-handler has not committed that message: the next member gets it again."""
    started = asyncio.Event()
    handled: list[str] = []

    async def stuck(p: Ping) -> None:
        started.set()
        await asyncio.sleep(3600)

    first = await consume(stuck)
    await produce(infra.kafka_bootstrap, topic.name, [ping("in flight")])
    await asyncio.wait_for(started.wait(), 30)
    await first.stop()

    async def healthy(p: Ping) -> None:
        handled.append(p.text)

    await consume(healthy)
    await eventually(lambda: asyncio.sleep(0, result=handled == ["in flight"]), what="redelivered")


async def test_dead_letters_can_be_replayed_once_after_the_fix(
    infra: Infra, topic: Topic, consume: Callable[[Handler], Awaitable[KafkaBroker]]
) -> None:
    from tools import dlq

    fixed = asyncio.Event()
    done: list[str] = []

    async def handler(p: Ping) -> None:
        if not fixed.is_set():
            raise LookupError(f"{p.text}: the user is not known yet")
        done.append(p.text)

    await consume(handler)
    await produce(infra.kafka_bootstrap, topic.name, [ping("first"), ping("second")])
    await read_topic(infra.kafka_bootstrap, topic.dlq, until=lambda rs: len(rs) >= 2)
    shown = await dlq.read(infra.kafka_bootstrap, topic.name, group=None, limit=10)
    assert [letter.error for letter in shown] == [
        "LookupError: first: the user is not known yet",
        "LookupError: second: the user is not known yet",
    ]

    fixed.set()
    assert await dlq.replay(infra.kafka_bootstrap, topic.name, limit=10) == 2
    await eventually(lambda: asyncio.sleep(0, result=sorted(done) == ["first", "second"]), what="replayed")
    assert await dlq.replay(infra.kafka_bootstrap, topic.name, limit=10) == 0
    replayed = await read_topic(infra.kafka_bootstrap, topic.name, until=lambda rs: len(rs) >= 4)
    assert all(not k.startswith("dlq-") for r in replayed for k, _ in r.headers)
