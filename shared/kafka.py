"""Kafka plumbing: broker factory, topic creation, and the guard every consumer runs behind.

The guard gives each subscriber the delivery rules of DESIGN §3: a message that cannot be parsed goes to
`<topic>.dlq` at once; one whose handler keeps failing is retried with backoff and then parked there too;
a transient outage (database or broker unreachable) is retried until it heals, without committing the
offset, so nothing is skipped. Offsets are committed only after the handler returned (or the message was
parked), and a failure to park rewinds to the message (`NACK_ON_ERROR`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, TopicAlreadyExistsError
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
    policy = policy or ConsumerPolicy(max_attempts=settings.consumer_max_attempts)
    holder: dict[str, KafkaBroker] = {}

    async def park(record: Any, error: BaseException) -> None:
        headers = {k: v.decode(errors="replace") for k, v in (record.headers or ()) if not k.startswith("dlq-")}
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

    async def consume_scope(self, call_next: Any, msg: Any) -> Any:
        record = msg.raw_message
        headers = {k: v.decode(errors="replace") for k, v in (record.headers or ())}
        with structlog.contextvars.bound_contextvars(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            event_id=headers.get("event_id"),
            **{CORRELATION_ID: headers.get(CORRELATION_ID) or headers.get("event_id")},
        ):
            return await self._consume(call_next, msg, record)

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
