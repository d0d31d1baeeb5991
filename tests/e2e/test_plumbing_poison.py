"""Raw records with hostile headers against the running notifier: valid payloads take effect, poison is parked,
and the partition keeps moving."""

import json
import uuid

import asyncpg
import pytest

from shared.messages import SendNotification
from shared.testing import RawHeaders, eventually, produce_raw, read_topic
from shared.topics import NOTIFICATION_COMMANDS
from tests.conftest import IsolatedInfra, Processes

pytestmark = pytest.mark.e2e


def command(user_id: uuid.UUID, headers: RawHeaders) -> tuple[SendNotification, tuple[bytes, bytes, RawHeaders]]:
    m = SendNotification(user_id=user_id, idempotency_key=f"poison:{uuid.uuid4()}", title="t", body="")
    base: RawHeaders = [("type", b"SendNotification"), ("event_id", str(m.event_id).encode())]
    return m, (m.key.encode(), m.model_dump_json().encode(), [*base, *headers])


async def test_hostile_headers_neither_jam_the_partition_nor_lose_a_command(
    isolated_infra: IsolatedInfra, processes: Processes
) -> None:
    processes.start("notifier", infra=isolated_infra)
    user = uuid.uuid4()  # one key: every record lands on the same partition, in this order
    poison, poison_record = command(user, [(b"\xc3\x28bad-key", b"x")])
    null_value, null_record = command(user, [("trace", None)])
    latin1, latin1_record = command(user, [("correlation_id", b"caf\xe9")])
    plain, plain_record = command(user, [])
    await produce_raw(
        isolated_infra.kafka_bootstrap,
        NOTIFICATION_COMMANDS.name,
        [poison_record, null_record, latin1_record, plain_record],
    )

    async def delivered() -> list[str]:
        conn = await asyncpg.connect(isolated_infra.database_url)
        try:
            rows = await conn.fetch("SELECT idempotency_key FROM notifier.deliveries WHERE user_id = $1", user)
        finally:
            await conn.close()
        return sorted(r["idempotency_key"] for r in rows)

    expected = sorted([null_value.idempotency_key, latin1.idempotency_key, plain.idempotency_key])
    await eventually(
        lambda: _equal(delivered(), expected), timeout_s=60, what="every valid command delivered past the poison"
    )
    parked = await read_topic(isolated_infra.kafka_bootstrap, NOTIFICATION_COMMANDS.dlq, until=lambda rs: len(rs) >= 1)
    assert [r.value for r in parked] == [poison_record[1]]
    assert b"not UTF-8" in dict(parked[0].headers)["dlq-error"]
    assert poison.idempotency_key not in await delivered()


async def _equal(probe: "object", expected: list[str]) -> bool:
    return await probe == expected  # type: ignore[misc]


async def test_malformed_withdrawals_are_parked_and_the_commands_behind_them_take_effect(
    isolated_infra: IsolatedInfra, processes: Processes
) -> None:
    """The commands topic carries two messages told apart by `type`: a withdrawal that breaks its schema, or a
    type nobody knows, is parked with its error; the valid ones behind it on the partition take effect."""
    processes.start("notifier", infra=isolated_infra)
    user = uuid.uuid4()
    good, good_record = command(user, [])
    key = str(user).encode()
    withdraw = {"type": "WithdrawNotifications", "event_id": str(uuid.uuid4()), "user_id": str(user),
                "occurred_at": "2026-11-24T00:00:00Z", "key_prefix": "poison:", "reason": ""}
    hostile = [
        withdraw | {"key_prefix": ""},  # too short
        withdraw | {"reason": "x" * 5000},  # too long
        withdraw | {"user_id": None},
        withdraw | {"occurred_at": "0000-00-00T00:00:00Z"},
        withdraw | {"key_prefix": {"nested": [[[["deep"]]]]}},
        withdraw | {"type": "DeleteEverything"},
    ]
    records = [(key, json.dumps(h).encode(), [("type", str(h["type"]).encode())]) for h in hostile]
    await produce_raw(isolated_infra.kafka_bootstrap, NOTIFICATION_COMMANDS.name, [*records, good_record])

    async def delivered() -> bool:
        conn = await asyncpg.connect(isolated_infra.database_url)
        try:
            return bool(await conn.fetchval(
                "SELECT count(*) FROM notifier.deliveries WHERE idempotency_key = $1", good.idempotency_key
            ))
        finally:
            await conn.close()

    await eventually(delivered, timeout_s=60, what="the valid command behind the malformed withdrawals delivered")
    parked = await read_topic(
        isolated_infra.kafka_bootstrap, NOTIFICATION_COMMANDS.dlq, until=lambda rs: len(rs) >= len(hostile)
    )
    assert [r.value for r in parked] == [value for _, value, _ in records]
    assert all(dict(r.headers).get("dlq-error") for r in parked)
