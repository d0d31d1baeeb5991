"""Records with headers no well-behaved producer writes: each is handled or parked, and the partition moves on.

A header key that is not UTF-8 used to stop aiokafka from reading the partition at all (every group, every
restart); a null or non-UTF-8 header value used to make faststream's parser fail, after which the record was
skipped without effect. Run on both local brokers, since they store and return headers themselves.
"""

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from faststream.kafka import KafkaBroker

from shared.kafka import ConsumerPolicy, ensure_topics, make_broker, subscriber_options
from shared.settings import ServiceSettings
from shared.testing import RawHeaders, eventually, produce_raw, read_topic
from shared.topics import Topic
from tests.conftest import SESSION_TIMEOUT_MS, Infra
from tests.integration.test_consumers import Ping
from tools import infra as local


@pytest.fixture(params=["tansu", "noida"])
def bootstrap(request: pytest.FixtureRequest, infra: Infra) -> Iterator[str]:
    if request.param == "tansu":
        yield infra.kafka_bootstrap
        return
    broker = local.start_broker("noida", infra.run_dir / f"noida-{uuid.uuid4().hex[:8]}")
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def topic() -> Topic:
    return Topic(f"test.headers.{uuid.uuid4().hex[:8]}.v1", "test", (Ping,), partitions=1)


@pytest.fixture
async def consume(bootstrap: str, topic: Topic) -> AsyncIterator[Callable[[list[str]], Awaitable[KafkaBroker]]]:
    brokers: list[KafkaBroker] = []
    settings = ServiceSettings(
        service_name="test", kafka_bootstrap=bootstrap, kafka_session_timeout_ms=int(SESSION_TIMEOUT_MS)
    )
    await ensure_topics(bootstrap, [topic])

    async def start(seen: list[str]) -> KafkaBroker:
        broker = make_broker(settings, ConsumerPolicy(max_attempts=2, first_backoff_s=0.05, max_backoff_s=0.1))

        @broker.subscriber(topic.name, **subscriber_options(settings, f"g-{topic.name}"))
        async def handler(p: Ping) -> None:
            seen.append(p.text)

        await broker.start()
        brokers.append(broker)
        return broker

    yield start
    for broker in brokers:
        await broker.stop()


def ping(text: str, headers: RawHeaders = ()) -> tuple[bytes, bytes, RawHeaders]:
    message = Ping(thing_id=uuid.uuid4(), text=text)
    base: RawHeaders = [("type", b"Ping"), ("event_id", str(message.event_id).encode())]
    return b"same-key", message.model_dump_json().encode(), [*base, *headers]


async def test_a_header_key_that_is_not_utf8_is_parked_and_the_partition_moves_on(
    bootstrap: str, topic: Topic, consume: Callable[[list[str]], Awaitable[KafkaBroker]]
) -> None:
    seen: list[str] = []
    await consume(seen)
    poison = ping("bad key", [(b"\xff\xfe-key", b"v")])
    await produce_raw(bootstrap, topic.name, [ping("before"), poison, ping("after")])
    await eventually(lambda: asyncio.sleep(0, result=seen == ["before", "after"]), what=f"both handled (saw {seen})")
    parked = await read_topic(bootstrap, topic.dlq, until=lambda rs: len(rs) >= 1)
    assert [r.value for r in parked] == [poison[1]]
    headers = dict(parked[0].headers)
    assert b"header key" in headers["dlq-error"] and b"\\xff\\xfe-key" in headers["dlq-error"]
    assert headers["dlq-source-topic"] == topic.name.encode()
    assert headers["dlq-source-offset"] == b"1"


async def test_null_and_non_utf8_header_values_are_handled_not_lost(
    bootstrap: str, topic: Topic, consume: Callable[[list[str]], Awaitable[KafkaBroker]]
) -> None:
    seen: list[str] = []
    await consume(seen)
    await produce_raw(
        bootstrap,
        topic.name,
        [
            ping("null value", [("trace", None)]),
            ping("latin-1 value", [("correlation_id", b"caf\xe9")]),
            ping("after"),
        ],
    )
    await eventually(
        lambda: asyncio.sleep(0, result=seen == ["null value", "latin-1 value", "after"]),
        what=f"all three handled (saw {seen})",
    )
    with pytest.raises(AssertionError):
        await read_topic(bootstrap, topic.dlq, until=lambda rs: len(rs) >= 1, timeout_s=1)
