"""Hostile records on the topics callrouter consumes, against callrouter as a process on the real broker: each
poison record is parked byte for byte in its topic's dead-letter topic with the reason, and the valid records
behind it on the same partition still take effect (a user snapshot lands in the dialing projection; an
acknowledgement for an unknown page changes nothing and parks nothing)."""

from __future__ import annotations

import json
import uuid

import asyncpg
import pytest

from shared.messages import NotificationAcknowledged, UserSnapshot, utcnow
from shared.testing import RawHeaders, eventually, produce_raw, read_topic
from shared.topics import DELIVERIES, USERS
from tests.conftest import IsolatedInfra, Processes

pytestmark = pytest.mark.e2e


def user(user_id: uuid.UUID, version: int) -> UserSnapshot:
    return UserSnapshot(
        user_id=user_id, version=version, name="Poison Test", email=f"{user_id}@example.com", phone="+4915100000001",
        time_zone="Europe/Berlin", language="en", role="responder", active=True,
    )


def record(key: str, value: bytes | None, type_: str, event_id: str, *extra: tuple[bytes | str, bytes | None]
           ) -> tuple[bytes, bytes | None, RawHeaders]:
    return key.encode(), value, [("type", type_.encode()), ("event_id", event_id.encode()), *extra]


async def test_poison_on_callrouters_topics_is_parked_and_the_partition_moves_on(
    isolated_infra: IsolatedInfra, processes: Processes
) -> None:
    processes.start("callrouter", infra=isolated_infra)
    user_id = uuid.uuid4()  # one key: every user record below lands on the same partition, in this order
    valid = user(user_id, 2)
    missing_fields = json.dumps({"type": "UserSnapshot", "user_id": str(user_id), "version": 1}).encode()
    bad_phone = json.loads(user(user_id, 1).model_dump_json()) | {"active": "maybe"}
    users = [
        record(str(user_id), b"\xff\xfe not json", "UserSnapshot", str(uuid.uuid4())),
        record(str(user_id), missing_fields, "UserSnapshot", str(uuid.uuid4())),
        record(str(user_id), json.dumps(bad_phone).encode(), "UserSnapshot", str(uuid.uuid4())),
        record(str(user_id), None, "UserSnapshot", str(uuid.uuid4())),  # a tombstone: not a snapshot either
        record(str(user_id), valid.model_dump_json().encode(), "UserSnapshot", str(valid.event_id)),
    ]
    ack = NotificationAcknowledged(
        delivery_id=uuid.uuid4(), user_id=user_id, idempotency_key="call-alert:not-a-uuid:1:0:x", kind="alert",
        via="app", acknowledged_at=utcnow(),
    )
    deliveries = [
        record(str(ack.delivery_id), b"[1, 2", "NotificationAcknowledged", str(uuid.uuid4())),
        record(str(ack.delivery_id), b'{"type": "NotificationAcknowledged"}', "NotificationAcknowledged",
               str(uuid.uuid4())),
        record(str(ack.delivery_id), ack.model_dump_json().encode(), "NotificationAcknowledged", str(ack.event_id)),
    ]
    await produce_raw(isolated_infra.kafka_bootstrap, USERS.name, users)
    await produce_raw(isolated_infra.kafka_bootstrap, DELIVERIES.name, deliveries)

    async def applied() -> asyncpg.Record | None:
        conn = await asyncpg.connect(isolated_infra.database_url)
        try:
            return await conn.fetchrow("SELECT version, active FROM callrouter.responders WHERE user_id = $1", user_id)
        finally:
            await conn.close()

    row = await eventually(applied, timeout_s=60, what="the valid user snapshot behind the poison applied")
    assert row is not None and (row["version"], row["active"]) == (2, True)

    poison_users = [users[0][1], users[1][1], users[2][1], b""]  # a null value is parked as an empty one
    parked = await read_topic(
        isolated_infra.kafka_bootstrap, USERS.dlq,
        until=lambda rs: len([r for r in rs if r.key == str(user_id).encode()]) >= len(poison_users),
    )
    mine = [r for r in parked if r.key == str(user_id).encode()]
    assert [r.value for r in mine] == poison_users
    assert all(dict(r.headers).get("dlq-error") for r in mine)

    poison_acks = [deliveries[0][1], deliveries[1][1]]
    parked = await read_topic(
        isolated_infra.kafka_bootstrap, DELIVERIES.dlq,
        until=lambda rs: len([r for r in rs if r.key == str(ack.delivery_id).encode()]) >= len(poison_acks),
    )
    mine = [r for r in parked if r.key == str(ack.delivery_id).encode()]
    assert [r.value for r in mine] == poison_acks
    assert all(dict(r.headers).get("dlq-error") for r in mine)
