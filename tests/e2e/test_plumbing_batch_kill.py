"""notifier consumes its commands in batches; SIGKILLed while it works through a backlog, then restarted, it has
accepted every command exactly once: no batch lost with the process, none applied twice after it."""

import asyncio
import uuid

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from shared.messages import SendNotification
from shared.testing import eventually
from shared.topics import NOTIFICATION_COMMANDS
from tests.conftest import IsolatedInfra, Processes

pytestmark = pytest.mark.e2e

N = 6000


async def test_notifier_sigkilled_mid_backlog_accepts_every_command_once(
    isolated_infra: IsolatedInfra, processes: Processes
) -> None:
    notifier = processes.start("notifier", infra=isolated_infra)
    users = [uuid.uuid4() for _ in range(300)]
    commands = [
        SendNotification(user_id=users[i % len(users)], idempotency_key=f"kill:{i}", title="t", body=str(i),
                         urgency="low")
        for i in range(N)
    ]
    conn = await asyncpg.connect(isolated_infra.database_url)
    producer = AIOKafkaProducer(bootstrap_servers=isolated_infra.kafka_bootstrap, acks="all",
                                enable_idempotence=False, linger_ms=5)
    await producer.start()
    try:
        sent = [
            await producer.send(NOTIFICATION_COMMANDS.name, c.model_dump_json().encode(), key=c.key.encode(),
                                headers=[("type", b"SendNotification"), ("event_id", str(c.event_id).encode())])
            for c in commands
        ]
        await asyncio.gather(*sent)

        async def accepted() -> int:
            return int(await conn.fetchval("SELECT count(*) FROM notifier.deliveries"))

        at_kill = await eventually(accepted, interval_s=0.02, timeout_s=60, what="notifier accepting the backlog")
        notifier.kill()
        assert at_kill < N, "the whole backlog was taken before the kill; nothing was tested"
        processes.start("notifier", infra=isolated_infra)

        async def all_accepted() -> bool:
            return await accepted() >= N

        await eventually(all_accepted, timeout_s=90, what="every command accepted")
        await asyncio.sleep(1.0)
        rows = await conn.fetch("SELECT idempotency_key, command_event_id FROM notifier.deliveries")
        assert len(rows) == N
        assert {r["idempotency_key"]: r["command_event_id"] for r in rows} == {
            c.idempotency_key: c.event_id for c in commands
        }
        claims = await conn.fetchval("SELECT count(*) FROM notifier.inbox WHERE consumer = 'notifier.commands'")
        assert claims == N
    finally:
        await producer.stop()
        await conn.close()
