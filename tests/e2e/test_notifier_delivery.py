"""notifier as an OS process on the real broker and PostgreSQL, pushing to the APNs fake run by its CLI (as
`make up` runs it, with the settings devstack gives notifier): a page reaches the phone and is acknowledged,
a SIGKILL between handing a push to APNs and recording it costs at most a resend under the same collapse id,
and malformed commands are parked in the dead-letter topic while the next one is delivered."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from shared.messages import SendNotification
from shared.testing import eventually, produce, read_topic
from shared.topics import DELIVERIES, NOTIFICATION_COMMANDS
from tests.conftest import IsolatedInfra, Processes, token
from tools import devstack
from tools.infra import free_port
from tools.procs import ServiceProcess

pytestmark = pytest.mark.e2e
ADMIN = token(uuid.uuid4(), "admin")
STARTUP_S = 60.0


class Apns:
    """The APNs fake's inspection and programming API (plain HTTP on its admin port)."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url

    async def pushes(self, device_token: str) -> list[dict[str, Any]]:
        """What the phone received: the pushes the fake accepted for this token, oldest first."""
        async with aiohttp.ClientSession() as http, http.get(
            f"{self.admin_url}/_fake/pushes", params={"token": device_token}
        ) as resp:
            assert resp.status == 200, await resp.text()
            return list((await resp.json())["pushes"])

    async def attempts(self, device_token: str) -> list[dict[str, Any]]:
        async with aiohttp.ClientSession() as http, http.get(
            f"{self.admin_url}/_fake/attempts", params={"token": device_token}
        ) as resp:
            assert resp.status == 200, await resp.text()
            return list((await resp.json())["attempts"])

    async def program(self, device_token: str, **behaviour: Any) -> None:
        async with aiohttp.ClientSession() as http, http.post(
            f"{self.admin_url}/_fake/tokens/{device_token}", json=behaviour
        ) as resp:
            assert resp.status == 200, await resp.text()

    async def normal(self, device_token: str) -> None:
        async with aiohttp.ClientSession() as http, http.delete(
            f"{self.admin_url}/_fake/tokens/{device_token}"
        ) as resp:
            assert resp.status == 204, await resp.text()


@pytest.fixture(scope="module")
def fakes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Apns, dict[str, str]]]:
    """The vendor fakes as processes (their CLIs, via devstack) and the provider settings notifier gets."""
    run_dir: Path = tmp_path_factory.mktemp("notifier-fakes")
    apns_port, admin_port = free_port(), free_port()
    while admin_port == apns_port:
        admin_port = free_port()
    ports = {"fake-apns": {"port": apns_port, "admin_port": admin_port}, "fake-fcm": {"port": free_port()},
             "fake-twilio": {"port": free_port()}}
    try:
        started = devstack.fakes_up(run_dir, ports)
        env = devstack.notifier_provider_env(started)
        yield Apns(started["fake-apns"].inspect_url), env
    finally:
        devstack.fakes_down(run_dir)


async def start_notifier(
    processes: Processes, env: dict[str, str], infra: IsolatedInfra | None = None
) -> ServiceProcess:
    """notifier as a process, waited for without blocking this event loop."""
    proc = processes.start("notifier", wait=False, infra=infra, **env)
    await asyncio.to_thread(proc.wait_ready, STARTUP_S)
    return proc


def device_token() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex  # an APNs token: 64 hex digits


async def register_iphone(notifier: ServiceProcess, user: uuid.UUID, device: str) -> dict[str, Any]:
    body = {"platform": "ios", "token": device, "app_version": "1.0", "critical_allowed": False}
    async with aiohttp.ClientSession() as http, http.post(
        f"{notifier.base_url}/v1/devices", json=body, headers=token(user, "responder")
    ) as resp:
        assert resp.status == 201, await resp.text()
        return dict(await resp.json())


def page(user: uuid.UUID, title: str = "Disk full on db-1") -> SendNotification:
    return SendNotification(
        user_id=user, idempotency_key=f"e2e-page:{uuid.uuid4()}", title=title, body="94% used",
        urgency="high", kind="alert", acknowledgeable=True,
    )


async def send(bootstrap: str, command: SendNotification) -> None:
    await produce(bootstrap, NOTIFICATION_COMMANDS.name,
                  [(str(command.user_id).encode(), command.model_dump_json().encode())])


async def history(notifier: ServiceProcess, user: uuid.UUID) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(
        f"{notifier.base_url}/v1/notifications", params={"user_id": str(user)}, headers=ADMIN
    ) as resp:
        assert resp.status == 200, await resp.text()
        return list(await resp.json())


async def delivery_of(notifier: ServiceProcess, command: SendNotification, *, status: str | None = None,
                      timeout_s: float = 30.0) -> dict[str, Any]:
    """The delivery notifier made of `command` (by its idempotency key), once it has `status` if given."""

    async def probe() -> dict[str, Any] | None:
        for d in await history(notifier, command.user_id):
            if d["idempotency_key"] == command.idempotency_key and (status is None or d["status"] == status):
                return d
        return None

    what = f"delivery of {command.idempotency_key}" + (f" with status {status}" if status else "")
    return await eventually(probe, timeout_s=timeout_s, interval_s=0.1, what=what)


async def test_a_page_reaches_the_phone_and_the_acknowledgement_is_published(
    isolated_infra: IsolatedInfra, processes: Processes, fakes: tuple[Apns, dict[str, str]]
) -> None:
    # A database and broker of its own: the session's `stack` runs a notifier of its own (no providers) in
    # the same consumer group and schema, which would take the command and fail it.
    apns, env = fakes
    infra = isolated_infra
    notifier = await start_notifier(processes, env, isolated_infra)
    user, phone = uuid.uuid4(), device_token()
    await register_iphone(notifier, user, phone)

    command = page(user)
    await send(infra.kafka_bootstrap, command)
    delivery = await delivery_of(notifier, command, status="sent")

    received = await eventually(lambda: apns.pushes(phone), timeout_s=30, what="the push on the phone")
    await asyncio.sleep(1.0)  # nothing else may follow: one step, one device, one push
    received = await apns.pushes(phone)
    assert len(received) == 1, received
    push = received[0]
    assert push["headers"]["apns-collapse-id"] == delivery["id"]
    assert push["headers"]["apns-topic"] == env["APNS_TOPIC"]
    assert push["payload"]["aps"]["alert"] == {"title": command.title, "body": command.body}
    assert push["payload"]["aps"]["interruption-level"] == "time-sensitive"
    assert push["payload"]["delivery_id"] == delivery["id"]
    assert push["payload"]["acknowledgeable"] == "true"

    async with aiohttp.ClientSession() as http, http.post(
        f"{notifier.base_url}/v1/notifications/{delivery['id']}/ack", headers=token(user, "responder")
    ) as resp:
        assert resp.status == 200, await resp.text()
        acked = await resp.json()
    assert (acked["status"], acked["acknowledged_via"]) == ("acknowledged", "app")

    def acknowledged(records: list[Any]) -> list[dict[str, Any]]:
        values = [json.loads(r.value) for r in records]
        return [v for v in values if v.get("type") == "NotificationAcknowledged" and v["delivery_id"] == delivery["id"]]

    records = await read_topic(infra.kafka_bootstrap, DELIVERIES.name, until=lambda rs: bool(acknowledged(rs)))
    [published] = acknowledged(records)
    assert published["idempotency_key"] == command.idempotency_key
    assert (published["user_id"], published["kind"], published["via"]) == (str(user), "alert", "app")

    done = await delivery_of(notifier, command)
    assert done["status"] == "acknowledged" and done["acknowledged_at"] is not None


async def step_in_flight(database_url: str, delivery_id: str) -> bool:
    """Whether a timer runner holds the delivery's first step right now: its `notifier.step` timer still exists
    but is locked (the runner claims it FOR UPDATE and calls the provider inside that transaction)."""
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            key = f"{delivery_id}:0"
            exists = await conn.fetchval(
                "SELECT count(*) FROM notifier.timers WHERE kind = 'notifier.step' AND key = $1", key)
            free = await conn.fetchval(
                "SELECT count(*) FROM (SELECT 1 FROM notifier.timers WHERE kind = 'notifier.step' AND key = $1 "
                "FOR UPDATE SKIP LOCKED) t", key)
            return bool(exists == 1 and free == 0)
    finally:
        await conn.close()


async def test_sigkill_between_handing_the_push_to_apns_and_recording_it_resends_under_the_same_collapse_id(
    isolated_infra: IsolatedInfra, processes: Processes, fakes: tuple[Apns, dict[str, str]]
) -> None:
    """The exact guarantee (docs/notifier.md): a step's timer is removed in the transaction that records what
    the provider answered, so a notifier killed after handing a push to APNs but before that commit runs the
    step again after the restart. Every step reaches every device *at least once* -- possibly more than once
    -- and every copy carries the delivery id as `apns-collapse-id`, so the phone shows one notification.
    notifier's own record holds only what committed: the killed run's attempt is rolled back.

    What is staged: APNs answers this token after 3 s; once a timer runner holds the step (its timer row is
    locked) and 1 s has passed, the request is in the fake, and notifier is SIGKILLed. The fake still accepts
    that push when its delay ends (the provider accepted it; notifier never learned), so the phone shows it;
    the restarted notifier pushes again. Observed (every run so far): the fake recorded 2 pushes for this
    delivery on two connections -- the resend from the restarted process, then the killed run's in-flight one
    accepted when its delay ended -- both under the same collapse id, and notifier recorded exactly one
    attempt (step 0, attempt 1, `sent`), from after the restart; the delivery ends `sent`.
    """
    apns, env = fakes
    notifier = await start_notifier(processes, env, isolated_infra)
    user, phone = uuid.uuid4(), device_token()
    await register_iphone(notifier, user, phone)
    await apns.program(phone, delay_s=3.0)

    command = page(user, title="Checkout latency p99 > 2s")
    await send(isolated_infra.kafka_bootstrap, command)
    delivery = await delivery_of(notifier, command)
    await eventually(lambda: step_in_flight(isolated_infra.database_url, delivery["id"]), timeout_s=30,
                     interval_s=0.05, what="a timer runner holding the push step")
    await asyncio.sleep(1.0)  # the request is at the fake, which answers at 3 s
    assert await apns.pushes(phone) == [], "the push must still be in flight when notifier dies"
    killed_at = time.monotonic()
    notifier.kill()
    assert time.monotonic() - killed_at < 2.0

    await apns.normal(phone)
    restarted = await start_notifier(processes, env, isolated_infra)
    done = await delivery_of(restarted, command, status="sent", timeout_s=30)
    assert done["id"] == delivery["id"]

    received = await eventually(lambda: apns.pushes(phone), timeout_s=30, what="the push on the phone")
    await asyncio.sleep(3.5)  # the killed run's request, if the fake holds it, has been answered by now
    received = await apns.pushes(phone)
    assert received, "the page was lost"
    assert {p["headers"]["apns-collapse-id"] for p in received} == {delivery["id"]}, received
    assert {p["payload"]["delivery_id"] for p in received} == {delivery["id"]}
    # The guarantee allows 1..n; what this drill stages is exactly one push per run of the step, each on its
    # own HTTP/2 connection: the killed run's (accepted after it died) and the restarted run's.
    assert len(received) == 2, f"one push per run of the step: {received}"
    assert len({p["peer"] for p in received}) == 2, received
    assert [a["status"] for a in await apns.attempts(phone)] == [200, 200]

    conn = await asyncpg.connect(isolated_infra.database_url)
    try:
        attempts = await conn.fetch(
            "SELECT step, attempt, channel, result FROM notifier.delivery_attempts WHERE delivery_id = $1",
            uuid.UUID(delivery["id"]),
        )
        step_timer = await conn.fetchval("SELECT count(*) FROM notifier.timers WHERE key = $1",
                                         f"{delivery['id']}:0")
    finally:
        await conn.close()
    assert [tuple(a) for a in attempts] == [(0, 1, "push", "sent")], attempts
    assert step_timer == 0, "the push step is done"


async def test_malformed_commands_are_dead_lettered_and_the_next_one_is_delivered(
    isolated_infra: IsolatedInfra, processes: Processes, fakes: tuple[Apns, dict[str, str]]
) -> None:
    apns, env = fakes
    infra = isolated_infra  # see the first test: not the session's, where the stack's notifier consumes too
    notifier = await start_notifier(processes, env, isolated_infra)
    user, phone = uuid.uuid4(), device_token()
    await register_iphone(notifier, user, phone)

    key = str(user).encode()  # one key: one partition, so the bad records come first and the good one after
    garbage = b"\x00\xff\xfe not a command " + uuid.uuid4().bytes
    invalid = page(user).model_dump(mode="json") | {"user_id": "not-a-uuid", "title": "x" * 500}
    invalid_bytes = json.dumps(invalid).encode()
    good = page(user, title="Still paging")
    await produce(infra.kafka_bootstrap, NOTIFICATION_COMMANDS.name,
                  [(key, garbage), (key, invalid_bytes), (key, good.model_dump_json().encode())])

    delivery = await delivery_of(notifier, good, status="sent", timeout_s=30)
    pushed = await eventually(lambda: apns.pushes(phone), timeout_s=30, what="the good command's push")
    assert [p["headers"]["apns-collapse-id"] for p in pushed] == [delivery["id"]]
    assert [d["idempotency_key"] for d in await history(notifier, user)] == [good.idempotency_key]

    def ours(records: list[Any]) -> list[Any]:
        return [r for r in records if r.key == key]

    parked = ours(await read_topic(infra.kafka_bootstrap, NOTIFICATION_COMMANDS.dlq,
                                   until=lambda rs: len(ours(rs)) >= 2))
    assert [r.value for r in parked] == [garbage, invalid_bytes]
    for record in parked:
        headers = dict(record.headers)
        assert headers.get("dlq-error"), headers
        assert headers["dlq-source-topic"] == NOTIFICATION_COMMANDS.name.encode()
    assert notifier.alive
