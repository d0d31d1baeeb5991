"""notifier's delivery pipeline on the real PostgreSQL and the local fakes of APNs (HTTP/2, TLS), FCM and
Twilio: a command becomes steps on durable timers; pushes reach the phones with the intent's collapse id;
a voice call follows when nobody acknowledged; a key pressed in the call or a tap in the app stops it."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from services.notifier import store
from services.notifier.providers.apns import ApnsCredentials, ApnsProvider
from services.notifier.providers.fcm import FcmProvider
from services.notifier.providers.twilio_voice import TwilioVoice
from services.notifier.service import deliveries, devices
from shared.auth import Principal
from shared.db import create_pool
from shared.messages import SendNotification, UserSnapshot, WithdrawNotifications, utcnow
from shared.testing import eventually
from shared.timers import TimerRunner
from shared.webhooks import TWILIO_WEBHOOK, TwilioWebhook
from tests.api.conftest import notifier_app
from tests.conftest import Infra, _create_database, token
from tools.fakes.apns import FakeApns
from tools.fakes.fcm import FakeFcm
from tools.fakes.twilio import FakeTwilio
from tools.procs import apply_migrations

PHONE = "+4915112345678"
TOPIC = "com.example.oncall"


@dataclass
class Rig:
    pool: asyncpg.Pool
    apns: FakeApns
    fcm: FakeFcm
    twilio: FakeTwilio
    channels: deliveries.Channels
    runner: TimerRunner
    clock: dict[str, timedelta]
    crash_next: bool = False  # the next batch of steps dies after the providers answered, before its commit

    async def person(self) -> tuple[uuid.UUID, str, str]:
        """A user with an iPhone (critical alerts allowed), an Android phone and a phone number."""
        user_id = uuid.uuid4()
        await deliveries.apply_user_snapshot(
            self.pool,
            UserSnapshot(
                user_id=user_id,
                version=1,
                name="Rita",
                email=f"{user_id}@example.com",
                phone=PHONE,
                time_zone="Europe/Berlin",
                language="de",
                role="responder",
                active=True,
            ),
        )
        me = Principal(user_id, "responder")
        ios = uuid.uuid4().hex * 2
        android = "fcm-" + uuid.uuid4().hex
        await devices.register(self.pool, me, "ios", ios, "1.0", True, utcnow())
        await devices.register(self.pool, me, "android", android, "1.0", False, utcnow())
        return user_id, ios, android

    async def page(self, user_id: uuid.UUID, **kw: Any) -> deliveries.Delivery:
        command = SendNotification(
            user_id=user_id,
            idempotency_key=f"test:{uuid.uuid4()}",
            title="Disk full",
            body="db-1 at 99%",
            urgency="high",
            acknowledgeable=True,
            kind="alert",
        ).model_copy(update=kw)
        delivery = await deliveries.accept_notification(self.pool, command)
        assert delivery is not None
        return delivery

    async def fire(self, after: timedelta = timedelta(0)) -> int:
        """Fire what is due `after` from now, the handlers seeing that time as now too."""
        self.clock["ahead"] = after
        now = await self.pool.fetchval("SELECT now()")
        return await self.runner.fire_due(now + after)

    async def staged(self, type_: str) -> list[dict[str, Any]]:
        rows = await self.pool.fetch("SELECT payload FROM outbox ORDER BY id")
        return [m for m in (json.loads(bytes(r["payload"])) for r in rows) if m["type"] == type_]


class Died(Exception):
    pass


@pytest.fixture
async def rig(infra: Infra) -> AsyncIterator[Rig]:
    url = await _create_database(infra.database_url, f"n_{uuid.uuid4().hex[:10]}")
    apply_migrations(url)
    pool = await create_pool(url, "notifier")
    async with FakeApns.running() as apns, FakeFcm.running() as fcm, FakeTwilio.running() as twilio:
        credentials = ApnsCredentials(
            apns.credentials.key_id, apns.credentials.team_id, apns.credentials.private_key_pem, TOPIC
        )
        voice = TwilioVoice(twilio.account_sid, twilio.auth_token, base_url=twilio.url, timeout_s=5.0)
        app = notifier_app(pool, url)
        server = TestServer(app)
        async with TestClient(server) as client:
            public = str(client.make_url("/")).rstrip("/")
            app[TWILIO_WEBHOOK] = TwilioWebhook(twilio.auth_token, public)
            channels = deliveries.Channels(
                push={
                    "ios": ApnsProvider(credentials, base_url=apns.url, ca_path=apns.ca_path, timeout_s=5.0),
                    "android": FcmProvider(fcm.service_account_path, base_url=fcm.url),
                },
                voice=voice,
                from_number="+15005550006",
                webhook_url=public,
                first_retry_s=1.0,
                pool=lambda: pool,
            )

            clock = {"ahead": timedelta(0)}  # the test moves time forward for the runner and the handlers alike

            async def steps(conn: asyncpg.Connection, due: list[Any]) -> None:  # in batches, as notifier runs them
                now = await conn.fetchval("SELECT now()") + clock["ahead"]
                await deliveries.fire_steps(conn, due, rig.channels, now)
                if rig.crash_next:
                    rig.crash_next = False
                    raise Died("notifier died before the step's transaction committed")

            async def proof(conn: asyncpg.Connection, timer: Any) -> None:
                await deliveries.check_proof(conn, timer, await conn.fetchval("SELECT now()") + clock["ahead"])

            runner = TimerRunner(pool, "notifier", {deliveries.PROOF: proof}, batch_handlers={deliveries.STEP: steps})
            rig = Rig(pool, apns, fcm, twilio, channels, runner, clock)
            try:
                yield rig
            finally:
                for provider in channels.push.values():
                    await provider.close()
                await voice.close()
    await pool.close()


async def test_a_page_pushes_at_once_then_calls_and_a_key_pressed_stops_it(rig: Rig) -> None:
    user_id, ios, android = await rig.person()
    delivery = await rig.page(user_id)
    assert await rig.fire() == 1  # the push step; the call waits for its 2 minutes
    [apple] = rig.apns.pushes_to(ios)
    assert apple.headers["apns-collapse-id"] == str(delivery.id)
    assert apple.payload["aps"]["alert"] == {"title": "Disk full", "body": "db-1 at 99%"}
    assert apple.payload["aps"]["interruption-level"] == "time-sensitive"
    [google] = rig.fcm.received(android)
    android_part = google["message"]["android"]
    assert android_part["collapse_key"] == str(delivery.id) and android_part["priority"] == "high"
    assert not rig.twilio.calls_to(PHONE)
    assert (await store.get_delivery(rig.pool, delivery.id)).status == "sent"  # type: ignore[union-attr]

    assert await rig.fire(timedelta(minutes=3)) == 1  # nobody acknowledged: the call
    [call] = rig.twilio.calls_to(PHONE)
    pressed = await rig.twilio.press(call.sid, "1")
    assert pressed["webhook"]["status"] == 200, pressed
    done = await store.get_delivery(rig.pool, delivery.id)
    assert done is not None and (done.status, done.acknowledged_via) == ("acknowledged", "voice")
    [acked] = await rig.staged("NotificationAcknowledged")
    assert acked["idempotency_key"] == delivery.idempotency_key and acked["via"] == "voice"


async def test_acknowledged_in_the_app_no_call_follows(rig: Rig) -> None:
    user_id, _, _ = await rig.person()
    delivery = await rig.page(user_id)
    await rig.fire()
    me = Principal(user_id, "responder")
    await deliveries.acknowledge(rig.pool, me, delivery.id, "app", utcnow())
    await deliveries.acknowledge(rig.pool, me, delivery.id, "app", utcnow())  # again: nothing more
    assert await rig.fire(timedelta(minutes=3)) == 0
    assert not rig.twilio.calls_to(PHONE)
    assert len(await rig.staged("NotificationAcknowledged")) == 1
    with pytest.raises(deliveries.NotFound):
        await deliveries.acknowledge(rig.pool, Principal(uuid.uuid4(), "responder"), delivery.id, "app", utcnow())


async def test_an_acknowledgement_does_not_wait_for_a_push_in_flight_and_nothing_follows_it(rig: Rig) -> None:
    """APNs takes 3 s to answer, and then refuses for now (429): while the step waits, the app's acknowledgement
    commits at once; afterwards the refused push is not retried and the call step stays cancelled."""
    user_id, ios, android = await rig.person()
    rig.apns.program(ios, delay_s=3.0, throttled=1)
    delivery = await rig.page(user_id)
    firing = asyncio.create_task(rig.fire())
    await eventually(lambda: _true(rig.fcm.received(android)), timeout_s=10, what="the Android push")
    assert not firing.done()  # the iPhone's push is still in flight

    started = time.monotonic()
    acked = await deliveries.acknowledge(rig.pool, Principal(user_id, "responder"), delivery.id, "app", utcnow())
    waited = time.monotonic() - started
    assert not firing.done(), f"the acknowledgement waited {waited:.1f} s for the step"
    assert acked.status == "acknowledged"

    assert await firing == 1
    done = await store.get_delivery(rig.pool, delivery.id)
    assert done is not None and (done.status, done.acknowledged_via) == ("acknowledged", "app")
    assert await rig.pool.fetchval("SELECT count(*) FROM timers WHERE key LIKE $1", f"{delivery.id}%") == 0
    assert await rig.fire(timedelta(minutes=5)) == 0
    assert not rig.twilio.calls_to(PHONE)
    assert [a.status for a in rig.apns.attempts_at(ios)] == [429]
    assert [m["type"] for m in await rig.staged("NotificationAcknowledged")] == ["NotificationAcknowledged"]


async def _true(value: object) -> bool:
    return bool(value)


async def test_the_badge_a_sender_gives_reaches_the_app_icon(rig: Rig) -> None:
    user_id, ios, android = await rig.person()
    await rig.page(user_id, urgency="low", data={"request_id": "r-1", "badge": "1"})
    await rig.page(user_id, urgency="low", data={"badge": "one"})  # not a number: the icon is left as it is
    await rig.fire()
    [counted] = [p for p in rig.apns.pushes_to(ios) if p.payload.get("request_id") == "r-1"]
    [left] = [p for p in rig.apns.pushes_to(ios) if p is not counted]
    assert counted.aps["badge"] == 1 and "badge" not in left.aps
    counts = [m["message"]["android"]["notification"].get("notification_count") for m in rig.fcm.received(android)]
    assert sorted(counts, key=str) == [1, None]


async def test_a_call_placed_just_before_a_crash_is_taken_not_placed_again(rig: Rig) -> None:
    """Twilio placed the call, then notifier died before the step recorded it: the step fires again, finds the
    call intent it left, and takes the call Twilio has instead of calling the user a second time."""
    user_id, _, _ = await rig.person()
    delivery = await rig.page(user_id)
    await rig.fire()  # the push
    rig.crash_next = True
    assert await rig.fire(timedelta(minutes=3)) == 0  # the call placed; the step's transaction rolled back
    [call] = rig.twilio.calls_to(PHONE)
    assert await rig.pool.fetchval("SELECT count(*) FROM call_intents WHERE delivery_id = $1", delivery.id) == 1

    assert await rig.fire(timedelta(minutes=3, seconds=30)) == 1  # the step again, after its backoff
    assert len(rig.twilio.calls_to(PHONE)) == 1, "the user was called twice"
    voice = await rig.pool.fetch(
        "SELECT result, provider_id FROM delivery_attempts WHERE delivery_id = $1 AND channel = 'voice'", delivery.id
    )
    assert [(r["result"], r["provider_id"]) for r in voice] == [("sent", call.sid)]
    assert await rig.pool.fetchval("SELECT count(*) FROM call_intents WHERE delivery_id = $1", delivery.id) == 0
    pressed = await rig.twilio.press(call.sid, "1")  # the call taken over still acknowledges the page
    assert pressed["webhook"]["status"] == 200, pressed
    done = await store.get_delivery(rig.pool, delivery.id)
    assert done is not None and done.acknowledged_via == "voice"


async def test_critical_pages_break_through_where_the_phone_allows_it(rig: Rig) -> None:
    user_id, ios, android = await rig.person()
    await rig.page(user_id, urgency="critical")
    await rig.fire()
    [apple] = rig.apns.pushes_to(ios)
    assert apple.payload["aps"]["interruption-level"] == "critical"
    assert apple.payload["aps"]["sound"]["critical"] == 1
    # the Android phone did not enable the DND-bypassing channel: a high-priority push, not a critical one
    [google] = rig.fcm.received(android)
    assert google["message"]["android"]["notification"].get("channel_id") != "critical_alerts"


async def test_a_gone_device_is_forgotten_and_a_throttled_one_retried(rig: Rig) -> None:
    user_id, ios, android = await rig.person()
    rig.apns.program(ios, gone=True)
    rig.fcm.program(android, "QUOTA_EXCEEDED", times=1, retry_after_s=1)
    delivery = await rig.page(user_id, acknowledgeable=False, urgency="low")
    await rig.fire()
    assert [d.platform for d in await store.devices_of(rig.pool, user_id)] == ["android"]
    assert rig.fcm.received(android) == []
    assert await rig.fire(timedelta(seconds=5)) == 1  # the retry, for the throttled device only
    assert len(rig.fcm.received(android)) == 1
    attempts = await rig.pool.fetch(
        "SELECT result FROM delivery_attempts WHERE delivery_id = $1 ORDER BY id", delivery.id
    )
    assert sorted(r["result"] for r in attempts) == ["gone", "retry", "sent"]


async def test_the_same_intent_twice_is_one_delivery(rig: Rig) -> None:
    user_id, ios, _ = await rig.person()
    command = SendNotification(user_id=user_id, idempotency_key=f"once:{uuid.uuid4()}", title="t", body="b")
    assert await deliveries.accept_notification(rig.pool, command) is not None
    assert await deliveries.accept_notification(rig.pool, command) is None  # redelivered
    assert await deliveries.accept_notification(rig.pool, command.model_copy(update={"event_id": uuid.uuid4()})) is None
    await rig.fire()
    assert len(rig.apns.pushes_to(ios)) == 1


async def test_a_shortened_minute_brings_the_later_steps_forward(rig: Rig) -> None:
    """DELAY_MINUTE_S=3: the default call step, 2 minutes after the page, is due 6 s after it."""
    user_id, _, _ = await rig.person()
    command = SendNotification(user_id=user_id, idempotency_key=f"test:{uuid.uuid4()}", title="t", body="b",
                               acknowledgeable=True)
    delivery = await deliveries.accept_notification(rig.pool, command, minute=timedelta(seconds=3))
    assert delivery is not None
    due = dict(await rig.pool.fetch("SELECT key, due_at FROM timers WHERE key LIKE $1", f"{delivery.id}:%"))
    sent = command.occurred_at
    assert due == {f"{delivery.id}:0": sent, f"{delivery.id}:1": sent + timedelta(seconds=6)}


async def test_an_unconfirmed_critical_push_calls_at_once_not_at_the_next_step(rig: Rig) -> None:
    user_id, _, _ = await rig.person()
    delivery = await rig.page(user_id, urgency="critical")
    await rig.fire()  # the pushes
    assert not rig.twilio.calls_to(PHONE)
    await rig.fire(timedelta(seconds=31))  # no phone confirmed receipt: the call step is moved to now...
    await rig.fire(timedelta(seconds=31))  # ... and runs, long before its 2 minutes
    [call] = rig.twilio.calls_to(PHONE)
    assert await rig.fire(timedelta(minutes=3)) == 0  # and it is not made a second time at 2 minutes
    assert len(rig.twilio.calls_to(PHONE)) == 1
    done = await store.get_delivery(rig.pool, delivery.id)
    assert done is not None and done.steps == 2 and call.sid


async def test_a_confirmed_critical_push_waits_for_the_next_step(rig: Rig) -> None:
    user_id, _, _ = await rig.person()
    delivery = await rig.page(user_id, urgency="critical")
    await rig.fire()
    me = Principal(user_id, "responder")
    assert (await store.get_delivery(rig.pool, delivery.id)).status == "sent"  # type: ignore[union-attr]
    received = await deliveries.confirm_received(rig.pool, me, delivery.id, utcnow())
    assert received.status == "delivered" and received.received_at is not None
    await rig.fire(timedelta(seconds=31))
    await rig.fire(timedelta(seconds=31))
    assert not rig.twilio.calls_to(PHONE)
    await rig.fire(timedelta(minutes=3))  # unacknowledged, the call still comes at its step
    assert len(rig.twilio.calls_to(PHONE)) == 1
    assert (await store.get_delivery(rig.pool, delivery.id)).status == "delivered"  # type: ignore[union-attr]
    await deliveries.acknowledge(rig.pool, me, delivery.id, "app", utcnow())
    again = await deliveries.confirm_received(rig.pool, me, delivery.id, utcnow())
    assert (again.status, again.received_at) == ("acknowledged", received.received_at)


async def test_unread_until_read_or_acknowledged(rig: Rig) -> None:
    user_id, _, _ = await rig.person()
    me = Principal(user_id, "responder")
    first, second = await rig.page(user_id), await rig.page(user_id)
    assert await deliveries.unread_count(rig.pool, me, user_id) == 2
    await deliveries.mark_read(rig.pool, me, first.id, utcnow())
    await deliveries.acknowledge(rig.pool, me, second.id, "app", utcnow())
    assert await deliveries.unread_count(rig.pool, me, user_id) == 0
    with pytest.raises(deliveries.NotFound):
        await deliveries.mark_read(rig.pool, Principal(uuid.uuid4(), "responder"), first.id, utcnow())


async def test_a_flood_of_low_urgency_notifications_is_summarized_not_dropped_and_pages_pass(rig: Rig) -> None:
    user_id, ios, android = await rig.person()
    low = [await rig.page(user_id, urgency="low", acknowledgeable=False, title=f"Reminder {i}") for i in range(8)]
    await rig.fire()
    assert len(rig.apns.pushes_to(ios)) == 5  # the flood limit: 5 a minute
    await rig.page(user_id, urgency="critical")
    await rig.fire()
    assert len(rig.apns.pushes_to(ios)) == 6  # a page is never held back
    assert await rig.fire(timedelta(seconds=20)) == 0  # the other 3 wait for room

    await rig.fire(timedelta(seconds=61))  # room: the 3 held back go as one push
    pushes = rig.apns.pushes_to(ios)
    assert len(pushes) == 7 and len({p.headers["apns-collapse-id"] for p in pushes}) == 7
    summary = pushes[-1]
    held = low[5:]
    assert summary.headers["apns-collapse-id"] == f"summary:{held[0].id}"
    assert summary.aps["alert"] == {"title": "3 neue Benachrichtigungen",  # the user's language
                                    "body": "Reminder 5; Reminder 6; Reminder 7"}
    assert summary.payload["summary_of"] == ",".join(str(d.id) for d in held)
    assert summary.payload["kind"] == "summary" and summary.payload["delivery_id"] == str(held[0].id)
    [google] = [m for m in rig.fcm.received(android) if m["message"]["data"].get("kind") == "summary"]
    assert google["message"]["android"]["collapse_key"] == f"summary:{held[0].id}"
    for delivery in held:
        done = await store.get_delivery(rig.pool, delivery.id)
        assert done is not None and done.status == "sent"
    attempts = await rig.pool.fetch(
        "SELECT delivery_id, result FROM delivery_attempts WHERE delivery_id = ANY($1::uuid[])", [d.id for d in held]
    )
    assert sorted((r["delivery_id"], r["result"]) for r in attempts) == sorted(
        (d.id, "sent") for d in held for _ in ("ios", "android")
    )


async def test_a_push_refused_for_now_on_its_last_attempt_ends_failed(rig: Rig) -> None:
    rig.channels = dataclasses.replace(rig.channels, max_attempts=2)
    user_id, ios, android = await rig.person()
    rig.apns.program(ios, failures=5, failure_status=503)
    rig.fcm.program(android, "UNAVAILABLE", times=5)
    delivery = await rig.page(user_id, urgency="low", acknowledgeable=False)
    await rig.fire()
    assert (await store.get_delivery(rig.pool, delivery.id)).status == "planned"  # type: ignore[union-attr]
    await rig.fire(timedelta(minutes=2))  # the second and last attempt, refused again
    assert (await store.get_delivery(rig.pool, delivery.id)).status == "failed"  # type: ignore[union-attr]
    assert await rig.fire(timedelta(minutes=10)) == 0


async def test_a_forged_or_unsigned_key_press_is_refused_and_changes_nothing(rig: Rig) -> None:
    user_id, _, _ = await rig.person()
    delivery = await rig.page(user_id)
    url = f"{rig.channels.webhook_url}/webhooks/twilio/voice/{delivery.id}"
    form = {"CallSid": "CA" + "0" * 32, "AccountSid": rig.twilio.account_sid, "Digits": "1"}
    forged = {"X-Twilio-Signature": "c2lnbmVkIGJ5IHNvbWVvbmUgZWxzZQ=="}
    async with aiohttp.ClientSession() as http:
        for headers, body in [(forged, form), ({}, form), (forged, json.dumps(form))]:
            async with http.post(url, data=body, headers=headers) as answer:
                assert answer.status == 403, await answer.text()
    done = await store.get_delivery(rig.pool, delivery.id)
    assert done is not None and done.acknowledged_at is None


# ------------------------------------------------------------------------------------------------ withdrawn
def withdrawal(user_id: uuid.UUID, key_prefix: str) -> WithdrawNotifications:
    return WithdrawNotifications(user_id=user_id, key_prefix=key_prefix, reason="acknowledged by someone else")


async def _pending_steps(rig: Rig, *pages: deliveries.Delivery) -> dict[uuid.UUID, int]:
    rows = await rig.pool.fetch(
        "SELECT split_part(key, ':', 1)::uuid AS d, count(*) AS n FROM timers WHERE kind = $1 GROUP BY 1",
        deliveries.STEP,
    )
    counts = {r["d"]: r["n"] for r in rows}
    return {p.id: counts.get(p.id, 0) for p in pages}


async def test_a_withdrawn_page_calls_nobody_and_others_keep_going(rig: Rig) -> None:
    """A push at once, a call after 2 minutes: withdrawn after the push, no call follows and the delivery is
    `withdrawn`. The same user's page of another alert, and another user's page of this one, keep going."""
    user_id, ios, _ = await rig.person()
    other_user, _, _ = await rig.person()
    page = await rig.page(user_id, idempotency_key=f"call-alert:A:0:0:{user_id}")
    other_alert = await rig.page(user_id, idempotency_key=f"call-alert:B:0:0:{user_id}")
    other_users = await rig.page(other_user, idempotency_key=f"call-alert:A:0:0:{other_user}")
    assert await rig.fire() == 3  # the pushes
    assert len(rig.apns.pushes_to(ios)) == 2

    command = withdrawal(user_id, "call-alert:A:")
    assert await deliveries.handle_commands(rig.pool, [command]) == []
    done = await store.get_delivery(rig.pool, page.id)
    assert done is not None and done.status == "withdrawn"
    assert (done.withdrawn_at, done.withdrawn_reason) == (command.occurred_at, "acknowledged by someone else")
    assert await _pending_steps(rig, page, other_alert, other_users) == {page.id: 0, other_alert.id: 1,
                                                                          other_users.id: 1}

    assert await rig.fire(timedelta(minutes=3)) == 2  # the other two calls, not this one
    called = await rig.pool.fetch("SELECT delivery_id FROM delivery_attempts WHERE channel = 'voice'")
    assert sorted(r["delivery_id"] for r in called) == sorted([other_alert.id, other_users.id])
    assert len(rig.apns.pushes_to(ios)) == 2  # the push already sent stays; nothing more is pushed
    for untouched in (other_alert, other_users):
        assert (await store.get_delivery(rig.pool, untouched.id)).status == "sent"  # type: ignore[union-attr]
    assert await rig.staged("NotificationAcknowledged") == []


async def test_a_withdrawal_is_handled_once_and_in_its_batchs_order(rig: Rig) -> None:
    """Redelivered, a withdrawal has no second effect (the inbox), even on a page of the same alert sent after
    it; in one batch, a page before the withdrawal is withdrawn, one after it is not."""
    user_id, _, _ = await rig.person()
    key = f"call-alert:C:%s:0:{user_id}"

    def send(round_: int) -> SendNotification:
        return SendNotification(user_id=user_id, idempotency_key=key % round_, title="Missed call", body="b",
                                acknowledgeable=True)

    command = withdrawal(user_id, "call-alert:C:")
    before, after = await deliveries.handle_commands(rig.pool, [send(0), command, send(1)])
    assert (await store.get_delivery(rig.pool, before.id)).status == "withdrawn"  # type: ignore[union-attr]
    assert (await store.get_delivery(rig.pool, after.id)).status == "planned"  # type: ignore[union-attr]
    assert await deliveries.handle_commands(rig.pool, [command]) == []  # redelivered
    assert (await store.get_delivery(rig.pool, after.id)).status == "planned"  # type: ignore[union-attr]
    assert await _pending_steps(rig, before, after) == {before.id: 0, after.id: 2}

    later = withdrawal(user_id, "call-alert:C:")  # a second one: only what still runs
    await deliveries.handle_commands(rig.pool, [later])
    first = await store.get_delivery(rig.pool, before.id)
    assert first is not None and first.withdrawn_at == command.occurred_at
    assert (await store.get_delivery(rig.pool, after.id)).withdrawn_at == later.occurred_at  # type: ignore[union-attr]


async def test_a_step_in_flight_when_a_withdrawal_commits_rearms_nothing(rig: Rig) -> None:
    """APNs takes 3 s to answer, then refuses for now (429): the withdrawal commits while the push is in flight;
    afterwards the refused push is not retried, the call step stays cancelled and the status stays
    `withdrawn`."""
    user_id, ios, android = await rig.person()
    rig.apns.program(ios, delay_s=3.0, throttled=1)
    page = await rig.page(user_id, idempotency_key=f"call-alert:D:0:0:{user_id}")
    firing = asyncio.create_task(rig.fire())
    await eventually(lambda: _true(rig.fcm.received(android)), timeout_s=10, what="the Android push")
    assert not firing.done()

    await deliveries.handle_commands(rig.pool, [withdrawal(user_id, "call-alert:D:")])
    assert not firing.done(), "the withdrawal waited for the step"
    assert await firing == 1
    done = await store.get_delivery(rig.pool, page.id)
    assert done is not None and done.status == "withdrawn"
    assert await rig.pool.fetchval("SELECT count(*) FROM timers WHERE key LIKE $1", f"{page.id}%") == 0
    assert await rig.fire(timedelta(minutes=5)) == 0
    assert not rig.twilio.calls_to(PHONE)
    assert [a.status for a in rig.apns.attempts_at(ios)] == [429]


async def test_a_withdrawn_page_shows_in_the_history_and_can_still_be_acknowledged(rig: Rig) -> None:
    """The responder taps "acknowledge" on the push that stayed on the phone: recorded and told to the sender
    (who ignores it), not an error."""
    user_id, _, _ = await rig.person()
    page = await rig.page(user_id, idempotency_key=f"call-alert:E:0:0:{user_id}")
    await rig.fire()
    await deliveries.handle_commands(rig.pool, [withdrawal(user_id, "call-alert:E:")])
    me = token(user_id, "responder")
    async with aiohttp.ClientSession(rig.channels.webhook_url) as http:
        async with http.get("/v1/notifications", headers=me) as answer:
            [shown] = await answer.json()
        assert (shown["id"], shown["status"]) == (str(page.id), "withdrawn")
        assert shown["withdrawn_reason"] == "acknowledged by someone else" and shown["withdrawn_at"]
        async with http.post(f"/v1/notifications/{page.id}/ack", headers=me) as answer:
            assert answer.status == 200, await answer.text()
            acked = await answer.json()
    assert acked["status"] == "acknowledged" and acked["acknowledged_via"] == "app"
    [told] = await rig.staged("NotificationAcknowledged")
    assert told["idempotency_key"] == page.idempotency_key
    assert await rig.fire(timedelta(minutes=5)) == 0
