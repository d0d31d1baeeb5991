"""notifier's batched use cases on the real PostgreSQL: a batch of commands or user snapshots leaves exactly what
handling them one by one, in order, would leave."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from services.notifier import store
from services.notifier.domain import Preferences, Step
from services.notifier.service import deliveries
from shared.db import create_pool
from shared.messages import SendNotification, UserSnapshot
from shared.timers import Timer, TimerRunner
from tests.conftest import Infra, _create_database
from tests.integration.test_notifier_delivery import PHONE, Rig, rig  # noqa: F401  (a fixture)
from tools.procs import apply_migrations


@pytest.fixture
async def pool(infra: Infra) -> AsyncIterator[asyncpg.Pool]:
    url = await _create_database(infra.database_url, f"nb_{uuid.uuid4().hex[:10]}")
    apply_migrations(url)
    pool = await create_pool(url, "notifier")
    yield pool
    await pool.close()


def command(user_id: uuid.UUID, **kw: Any) -> SendNotification:
    return SendNotification(user_id=user_id, idempotency_key=f"k:{uuid.uuid4()}", title="t", body="b", **kw)


async def outcome(pool: asyncpg.Pool) -> dict[str, Any]:
    """What the commands left, independent of generated ids: per idempotency key its delivery, its timers
    and its queued events; the inbox."""
    rows = await pool.fetch(
        "SELECT id, idempotency_key, user_id, urgency, steps, command_event_id FROM deliveries ORDER BY idempotency_key"
    )
    by_id = {r["id"]: r["idempotency_key"] for r in rows}
    timers = await pool.fetch("SELECT kind, key, due_at, payload::text AS payload FROM timers ORDER BY kind, key")
    queued = [json.loads(bytes(r["payload"])) for r in await pool.fetch("SELECT payload FROM outbox ORDER BY id")]
    return {
        "deliveries": [
            (r["idempotency_key"], r["user_id"], r["urgency"], r["steps"], r["command_event_id"]) for r in rows
        ],
        "timers": sorted(
            (t["kind"], by_id[uuid.UUID(t["key"].split(":")[0])], t["key"].partition(":")[2], t["due_at"],
             json.loads(t["payload"]))
            for t in timers
        ),
        "queued": [(m["type"], m["idempotency_key"]) for m in queued],
        "inbox": sorted(r["event_id"] for r in await pool.fetch("SELECT event_id FROM inbox")),
    }


async def test_a_batch_of_commands_leaves_what_one_by_one_would(infra: Infra, pool: asyncpg.Pool) -> None:
    picky, plain = uuid.uuid4(), uuid.uuid4()
    async with pool.acquire() as conn:
        await store.save_preferences(
            conn, picky, Preferences(high=(Step("push", timedelta(0)), Step("voice", timedelta(seconds=30))),
                                     low=(Step("push", timedelta(0)),), version=1),
        )
    told = command(plain)
    await deliveries.accept_notification(pool, told)  # already told before the batch
    page = command(picky, urgency="critical", acknowledgeable=True)
    low = command(plain, urgency="low")
    batch = [
        page,
        low,
        page,  # redelivered in the same batch
        command(plain, urgency="low").model_copy(update={"idempotency_key": low.idempotency_key}),  # same thing
        told.model_copy(update={"event_id": uuid.uuid4()}),  # told before, under a new event
        command(picky, urgency="high", acknowledgeable=False),
        told,  # redelivered from before
    ]
    accepted = await deliveries.handle_commands(pool, batch, timedelta(seconds=10))
    assert [d.idempotency_key for d in accepted] == [page.idempotency_key, low.idempotency_key,
                                                     batch[5].idempotency_key]
    batched = await outcome(pool)

    async with pool.acquire() as conn:
        await conn.execute("TRUNCATE deliveries, timers, outbox, inbox CASCADE")
    await deliveries.accept_notification(pool, told)
    for c in batch:
        await deliveries.accept_notification(pool, c, timedelta(seconds=10))
    assert batched == await outcome(pool)

    timers = {(kind, rest) for kind, key, rest, _, _ in batched["timers"] if key == page.idempotency_key}
    assert timers == {(deliveries.STEP, "0"), (deliveries.STEP, "1"), (deliveries.PROOF, "")}
    assert [key for _, key in batched["queued"]] == [told.idempotency_key, page.idempotency_key,
                                                     low.idempotency_key, batch[5].idempotency_key]
    assert await deliveries.handle_commands(pool, batch) == []


def snapshot(user_id: uuid.UUID, version: int, name: str, active: bool = True) -> UserSnapshot:
    return UserSnapshot(user_id=user_id, version=version, name=name, email=f"{name}@example.com",
                        time_zone="Europe/Berlin", language="de", role="responder", active=active)


async def test_a_batch_of_user_snapshots_keeps_the_newest_of_each(pool: asyncpg.Pool) -> None:
    ada, bob, cy = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await deliveries.apply_user_snapshot(pool, snapshot(cy, 5, "cy-5"))
    batch = [
        snapshot(ada, 1, "ada-1"),
        snapshot(ada, 3, "ada-3", active=False),
        snapshot(bob, 2, "bob-2"),
        snapshot(ada, 2, "ada-2"),  # older than one already in the batch
        snapshot(bob, 2, "bob-2-again"),  # the same version again: the first stays
        snapshot(cy, 4, "cy-4"),  # older than what is held
    ]
    assert await deliveries.apply_user_snapshots(pool, batch) == 2
    rows = await pool.fetch("SELECT user_id, version, name, active FROM recipients")
    assert {r["user_id"]: (r["version"], r["name"], r["active"]) for r in rows} == {
        ada: (3, "ada-3", False), bob: (2, "bob-2", True), cy: (5, "cy-5", True)
    }
    assert await deliveries.apply_user_snapshots(pool, batch) == 0  # redelivered
    assert await deliveries.is_deactivated(pool, ada)


@pytest.fixture
def batch_rig(rig: Rig) -> Rig:  # noqa: F811
    """The delivery rig of tests/integration/test_notifier_delivery.py, its steps fired in batches as
    notifier's process fires them."""

    async def steps(conn: asyncpg.Connection, due: list[Timer]) -> None:
        fired.append(len(due))
        now = await conn.fetchval("SELECT now()") + rig.clock["ahead"]
        await deliveries.fire_steps(conn, due, rig.channels, now)

    async def proof(conn: asyncpg.Connection, timer: Timer) -> None:
        await deliveries.check_proof(conn, timer, await conn.fetchval("SELECT now()") + rig.clock["ahead"])

    fired: list[int] = []
    rig.runner = TimerRunner(rig.pool, "notifier", {deliveries.PROOF: proof}, batch_handlers={deliveries.STEP: steps})
    rig.batches = fired  # type: ignore[attr-defined]
    return rig


async def test_a_batch_of_steps_reaches_each_device_once_and_keeps_each_rule(batch_rig: Rig) -> None:
    r = batch_rig
    flooded, ios, _ = await r.person()
    lows = [await r.page(flooded, urgency="low", acknowledgeable=False) for _ in range(7)]
    paged, paged_ios, paged_android = await r.person()
    page = await r.page(paged)
    broken, broken_ios, broken_android = await r.person()
    r.apns.program(broken_ios, gone=True)
    r.fcm.program(broken_android, "QUOTA_EXCEEDED", times=1, retry_after_s=1)
    retried = await r.page(broken, acknowledgeable=False, urgency="low")

    assert await r.fire() == 9  # every due push step, in one batch
    assert r.batches == [9]  # type: ignore[attr-defined]
    assert len(r.apns.pushes_to(ios)) == 5, "the flood limit counts the pushes of the batch itself"
    assert len(r.apns.pushes_to(paged_ios)) == 1 and len(r.fcm.received(paged_android)) == 1
    assert [d.platform for d in await store.devices_of(r.pool, broken)] == ["android"]
    statuses = {d.id: d.status for d in await store.list_deliveries(r.pool, flooded, limit=10, offset=0)}
    assert sorted(statuses.values()) == ["planned", "planned", "sent", "sent", "sent", "sent", "sent"]
    assert (await store.get_delivery(r.pool, page.id)).status == "sent"  # type: ignore[union-attr]
    assert (await store.get_delivery(r.pool, retried.id)).status == "planned"  # type: ignore[union-attr]
    attempted = await r.staged("NotificationAttempted")
    assert len(attempted) == 5 * 2 + 2 + 2  # the flooded user's 5 on two phones, the page's 2, gone + retry

    assert await r.fire(timedelta(seconds=5)) == 1  # the throttled device's retry
    assert len(r.fcm.received(broken_android)) == 1
    assert (await store.get_delivery(r.pool, retried.id)).status == "sent"  # type: ignore[union-attr]
    await r.fire(timedelta(seconds=61))  # room again: the 2 delayed ones as one summary; the page's call falls due
    pushes = r.apns.pushes_to(ios)
    assert {p.headers["apns-collapse-id"] for p in pushes} == {
        *(str(d.id) for d in lows[:5]), f"summary:{lows[5].id}"
    } and len(pushes) == 6
    assert {d.status for d in await store.list_deliveries(r.pool, flooded, limit=10, offset=0)} == {"sent"}
    assert len(r.twilio.calls_to(PHONE)) == 0  # the call is at 2 minutes
    await r.fire(timedelta(minutes=3))
    assert len(r.twilio.calls_to(PHONE)) == 1
