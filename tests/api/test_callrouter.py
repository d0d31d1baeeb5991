"""callrouter in-process: routing numbers (admin API, validation), the call flow webhook by webhook (menu,
dialing one after another, accept by key or voice, decline, voicemail, hang-up, support hours), and call-routing
alerts (escalation by the policy's rules until acknowledged, visibility, callback)."""

from __future__ import annotations

import dataclasses
import json
import uuid
import xml.etree.ElementTree as ElementTree
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

import shared.db
from services.callrouter.republish import republish
from services.callrouter.service import alerts
from services.callrouter.service.kinds import DIAL, ESCALATE, LEG_DEADLINE
from shared.messages import WeeklyWindow
from shared.timers import TimerRunner
from tests.api.callrouter_world import (
    PUBLIC_URL,
    RecordingPhones,
    World,
    callrouter_app,
    new_desk,
    random_number,
    runner,
    webhook,
)
from tests.api.conftest import ADMIN, Client, assert_422, call
from tests.conftest import token

BASE = f"{PUBLIC_URL}/webhooks/twilio"


@pytest.fixture(scope="session")
async def callrouter_pool(api_database: str) -> AsyncIterator[asyncpg.Pool]:
    created = await shared.db.create_pool(api_database, "callrouter")
    yield created
    await created.close()


@dataclass
class Rig:
    client: Client
    pool: asyncpg.Pool
    phones: RecordingPhones
    timers: TimerRunner

    async def fire(self) -> int:
        return await self.timers.fire_due()

    async def hook(self, url: str, **params: str) -> ElementTree.Element:
        status, body = await webhook(self.client, url, params)
        assert status == 200, body
        return ElementTree.fromstring(body)


@pytest.fixture
async def rig(callrouter_pool: asyncpg.Pool, api_database: str) -> AsyncIterator[Rig]:
    phones = RecordingPhones()
    desk = new_desk(phones, pool=callrouter_pool)
    async with TestClient(TestServer(callrouter_app(callrouter_pool, api_database, desk))) as client:
        yield Rig(client, callrouter_pool, phones, runner(callrouter_pool, desk))


async def routing_number(rig: Rig, world: World, **extra: Any) -> dict[str, Any]:
    status, body = await call(rig.client, "POST", "/v1/routing-numbers", json=world.number_body(**extra))
    assert status == 201, body
    return body  # type: ignore[no-any-return]


def said(twiml: ElementTree.Element) -> str:
    return " ".join((e.text or "") for e in twiml.iter("Say"))


def action(twiml: ElementTree.Element, verb: str) -> str:
    found = twiml.find(f".//{verb}")
    assert found is not None, ElementTree.tostring(twiml)
    return found.attrib["action"]


async def ring(rig: Rig, number: dict[str, Any], caller: str = "+4917700000001") -> tuple[str, ElementTree.Element]:
    sid = "CA" + uuid.uuid4().hex
    twiml = await rig.hook(
        f"{BASE}/calls/incoming",
        CallSid=sid,
        From=caller,
        To=number["number"],
        CallStatus="ringing",
        Direction="inbound",
    )
    return sid, twiml


async def choose(rig: Rig, number: dict[str, Any], **choice: str) -> tuple[str, ElementTree.Element]:
    sid, menu = await ring(rig, number)
    return sid, await rig.hook(action(menu, "Gather"), CallSid=sid, **choice)


# ------------------------------------------------------------------------------------------ routing numbers
async def test_routing_number_round_trip_and_roles(rig: Rig, callrouter_pool: asyncpg.Pool) -> None:
    world = await World.build(callrouter_pool)
    created = await routing_number(rig, world, greeting="Welcome to ACME support.")
    status, got = await call(rig.client, "GET", f"/v1/routing-numbers/{created['id']}")
    assert status == 200 and got == created
    body = world.number_body(number=created["number"], name="Renamed", version=created["version"])
    status, replaced = await call(rig.client, "PUT", f"/v1/routing-numbers/{created['id']}", json=body)
    assert status == 200 and replaced["name"] == "Renamed" and replaced["version"] == created["version"] + 1
    status, stale = await call(rig.client, "PUT", f"/v1/routing-numbers/{created['id']}", json=body)
    assert status == 409 and stale["version"] == replaced["version"]
    for role in ("responder", "observer"):
        status, _ = await call(rig.client, "GET", "/v1/routing-numbers", headers=token(uuid.uuid4(), role))
        assert status == 403
        status, _ = await call(
            rig.client, "POST", "/v1/routing-numbers", json=world.number_body(), headers=token(uuid.uuid4(), role)
        )
        assert status == 403
    status, _ = await call(rig.client, "DELETE", f"/v1/routing-numbers/{created['id']}")
    assert status == 204
    status, _ = await call(rig.client, "GET", f"/v1/routing-numbers/{created['id']}")
    assert status == 404


async def test_a_phone_number_routes_once(rig: Rig, callrouter_pool: asyncpg.Pool) -> None:
    world = await World.build(callrouter_pool)
    first = await routing_number(rig, world)
    status, body = await call(rig.client, "POST", "/v1/routing-numbers", json=world.number_body(number=first["number"]))
    assert status == 409 and body["number_id"] == first["id"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"number": "030 1234"}, "number"),
        ({"language": "xx-XX"}, "language"),
        ({"name": ""}, "name"),
        ({"options": []}, "options"),
        ({"options": [{"digit": "12", "name": "A", "policy_id": str(uuid.uuid4())}]}, "options.0.digit"),
        ({"options": [{"digit": "1", "name": "A", "policy_id": str(uuid.uuid4())}]}, "options.0.policy_id"),
        ({"only_greeting": True}, "greeting"),
        ({"support_hours_id": str(uuid.uuid4())}, "support_hours_id"),
        ({"outside_hours": "options"}, "outside_hours"),
        ({"voicemail_only": True, "voicemail": False}, "voicemail"),
        ({"hold_music_url": "ftp://x"}, "hold_music_url"),
        ({"greeting": "x" * 1001}, "greeting"),
    ],
)
async def test_bad_routing_numbers_name_the_field(
    rig: Rig, callrouter_pool: asyncpg.Pool, change: dict[str, Any], field: str
) -> None:
    world = await World.build(callrouter_pool)
    status, body = await call(rig.client, "POST", "/v1/routing-numbers", json=world.number_body(**change))
    assert_422(status, body, field)


async def test_options_clash_by_digit_or_keyword(rig: Rig, callrouter_pool: asyncpg.Pool) -> None:
    world = await World.build(callrouter_pool)
    pid = str(world.policy_id)
    same_digit = [{"digit": "1", "name": "A", "policy_id": pid}, {"digit": "1", "name": "B", "policy_id": pid}]
    status, body = await call(rig.client, "POST", "/v1/routing-numbers", json=world.number_body(options=same_digit))
    assert_422(status, body, "options.1.digit")
    same_word = [
        {"digit": "1", "name": "A", "policy_id": pid, "keywords": ["Billing"]},
        {"digit": "2", "name": "B", "policy_id": pid, "keywords": ["billing!"]},
    ]
    status, body = await call(rig.client, "POST", "/v1/routing-numbers", json=world.number_body(options=same_word))
    assert_422(status, body, "options.1.keywords.0")


# --------------------------------------------------------------------------------------------- the call
async def test_menu_is_built_from_the_options_in_the_numbers_language(rig: Rig, callrouter_pool: asyncpg.Pool) -> None:
    world = await World.build(callrouter_pool)
    pid = str(world.policy_id)
    number = await routing_number(
        rig,
        world,
        language="de-DE",
        options=[
            {"digit": "1", "name": "Störungen", "policy_id": pid},
            {"digit": "2", "name": "Vertrieb", "policy_id": pid},
        ],
    )
    _, menu = await ring(rig, number)
    gather = menu.find("Gather")
    assert gather is not None and gather.attrib["input"] == "dtmf speech" and gather.attrib["language"] == "de-DE"
    assert said(menu) == (
        "Willkommen bei Emergency Hotline. Für Störungen drücken Sie die 1. Für Vertrieb drücken Sie die 2."
    )


async def test_only_the_custom_greeting_is_read_when_asked(rig: Rig, callrouter_pool: asyncpg.Pool) -> None:
    world = await World.build(callrouter_pool)
    number = await routing_number(rig, world, greeting="ACME. Press 1 for anything.", only_greeting=True)
    _, menu = await ring(rig, number)
    assert said(menu) == "ACME. Press 1 for anything."


async def test_first_declines_second_accepts_by_key(rig: Rig, callrouter_pool: asyncpg.Pool) -> None:
    world = await World.build(callrouter_pool, rules=[[0], [1]])
    number = await routing_number(rig, world)
    sid, held = await choose(rig, number, Digits="1")
    assert held.find("Enqueue") is not None
    assert await rig.fire() == 1
    ((first, _),) = rig.phones.dialed
    assert first.to == world.phones_of[world.users[0]] and first.from_ == number["number"]
    prompt = await rig.hook(first.answer_url, CallStatus="in-progress")
    assert said(prompt).startswith("This is Emergency Hotline. You have a caller on hold. Press any key")
    declined = await rig.hook(action(prompt, "Gather"), Digits="")  # silence is a decline
    assert declined.find("Hangup") is not None
    assert await rig.fire() == 1
    second = rig.phones.dialed[1][0]
    assert second.to == world.phones_of[world.users[1]]
    prompt = await rig.hook(second.answer_url, CallStatus="in-progress")
    bridged = await rig.hook(action(prompt, "Gather"), Digits="5")
    queue = bridged.find("Dial/Queue")
    assert queue is not None and queue.text == held.find("Enqueue").text  # type: ignore[union-attr]
    # the late status callbacks of both legs change nothing: nobody else is dialed
    await rig.hook(first.status_url, CallStatus="completed", CallSid=rig.phones.dialed[0][1])
    await rig.hook(second.status_url, CallStatus="completed", CallSid=rig.phones.dialed[1][1])
    assert await rig.fire() == 0 and len(rig.phones.dialed) == 2
    status, page = await call(rig.client, "GET", "/v1/call-alerts", params={"status": "acknowledged"})
    alert = next(
        a for a in page["items"] if a["caller"] == "+4917700000001" and a["acknowledged_by"] == str(world.users[1])
    )
    status, detail = await call(rig.client, "GET", f"/v1/call-alerts/{alert['id']}")
    assert status == 200
    whats = [e["what"] for e in detail["timeline"]]
    assert whats[:4] == ["incoming", "option", "routing", "dialed"] and "declined" in whats and "accepted" in whats
    assert detail["connected_user_id"] == str(world.users[1]) and sid
    assert await _withdrawals(rig.pool, alert["id"]) == []  # accepted on the call: nobody was paged


async def test_accept_by_saying_continue_and_pick_by_voice(rig: Rig, callrouter_pool: asyncpg.Pool) -> None:
    world = await World.build(callrouter_pool)
    number = await routing_number(rig, world)
    _, held = await choose(rig, number, SpeechResult="Hi, we have an OUTAGE", Confidence="0.9")
    assert held.find("Enqueue") is not None
    await rig.fire()
    leg = rig.phones.dialed[0][0]
    prompt = await rig.hook(leg.answer_url, CallStatus="in-progress")
    assert (await rig.hook(action(prompt, "Gather"), SpeechResult="Continue.")).find("Dial/Queue") is not None


async def test_an_unknown_choice_repeats_the_menu_then_says_goodbye(rig: Rig, callrouter_pool: asyncpg.Pool) -> None:
    world = await World.build(callrouter_pool)
    number = await routing_number(rig, world)
    sid, menu = await ring(rig, number)
    for _ in range(2):
        menu = await rig.hook(action(menu, "Gather"), CallSid=sid, Digits="9")
        assert said(menu).startswith("Sorry, that was not a valid choice.") and menu.find("Gather") is not None
    bye = await rig.hook(action(menu, "Gather"), CallSid=sid, SpeechResult="pizza")
    assert bye.find("Gather") is None and bye.find("Hangup") is not None
    assert rig.phones.dialed == []


async def test_escalation_timeouts_are_ignored_and_everyone_is_tried_once(
    rig: Rig, callrouter_pool: asyncpg.Pool
) -> None:
    world = await World.build(callrouter_pool, n_users=3, rules=[[0], [1, 0]], on_call=2, timeout_minutes=30)
    number = await routing_number(rig, world)
    await choose(rig, number, Digits="1")
    for outcome in ("busy", "no-answer", "failed"):
        await rig.fire()  # dialed at once, whatever the rule's timeout
        leg, sid = rig.phones.dialed[-1]
        await rig.hook(leg.status_url, CallStatus=outcome, CallSid=sid)
    assert [d.to for d, _ in rig.phones.dialed] == [world.phones_of[u] for u in world.users]
    assert await rig.fire() == 1  # nobody left: the waiting caller is taken to voicemail
    ((caller_sid, url),) = rig.phones.redirected
    voicemail = await rig.hook(url, CallSid=caller_sid)
    assert voicemail.find("Record") is not None and "leave a message" in said(voicemail)


async def test_several_on_one_rule_are_dialed_in_random_order(callrouter_pool: asyncpg.Pool, api_database: str) -> None:
    world = await World.build(callrouter_pool, n_users=3, rules=[[0, 1, 2]])
    firsts: Counter[uuid.UUID] = Counter()
    phones = RecordingPhones()
    desk = new_desk(phones, seed=11)
    async with TestClient(TestServer(callrouter_app(callrouter_pool, api_database, desk))) as client:
        rig = Rig(client, callrouter_pool, phones, runner(callrouter_pool, desk))
        number = await routing_number(rig, world)
        for _ in range(60):
            await choose(rig, number, Digits="1")
            await rig.fire()
        by_phone = {p: u for u, p in world.phones_of.items()}
        firsts.update(by_phone[d.to] for d, _ in phones.dialed)
    # 60 calls over 3 people: each is first about 20 times; fewer than 8 would be a 1-in-10,000 fluke
    assert set(firsts) == set(world.users) and min(firsts.values()) >= 8, firsts


async def test_nested_schedule_dials_whoever_is_on_call_now(rig: Rig, callrouter_pool: asyncpg.Pool) -> None:
    world = await World.build(callrouter_pool, n_users=3, rules=[], on_call=2)
    number = await routing_number(rig, world)
    await choose(rig, number, Digits="1")
    await rig.fire()
    assert [d.to for d, _ in rig.phones.dialed] == [world.phones_of[world.users[2]]]


async def test_caller_hanging_up_cancels_the_ringing_leg_and_dials_nobody_else(
    rig: Rig, callrouter_pool: asyncpg.Pool
) -> None:
    world = await World.build(callrouter_pool, n_users=2, rules=[[0], [1]])
    number = await routing_number(rig, world)
    sid, held = await choose(rig, number, Digits="1")
    await rig.fire()
    leg, leg_sid = rig.phones.dialed[0]
    await rig.hook(leg.status_url, CallStatus="ringing", CallSid=leg_sid)
    await rig.hook(action(held, "Enqueue"), CallSid=sid, QueueResult="hangup")
    await rig.hook(f"{BASE}/calls/status", CallSid=sid, CallStatus="completed")  # both, as Twilio sends both
    await rig.fire()
    assert rig.phones.hung_up == [leg_sid]
    await rig.hook(leg.status_url, CallStatus="canceled", CallSid=leg_sid)
    late = await rig.hook(leg.answer_url, CallStatus="in-progress")
    assert "no longer waiting" in said(late)
    await rig.fire()
    assert len(rig.phones.dialed) == 1


async def test_nobody_accepts_voicemail_escalates_rule_by_rule_until_acknowledged(
    rig: Rig, callrouter_pool: asyncpg.Pool
) -> None:
    world = await World.build(callrouter_pool, n_users=2, rules=[[0], [1]], timeout_minutes=5)
    number, sid = await _nobody_takes_the_call(rig, world, "no-answer")
    voicemail = await rig.hook(rig.phones.redirected[0][1], CallSid=sid)
    thanks = await rig.hook(
        action(voicemail, "Record"),
        CallSid=sid,
        RecordingUrl="https://api.twilio.test/rec/RE1",
        RecordingDuration="14",
        RecordingSid="RE1",
    )
    assert "message has been recorded" in said(thanks)
    await rig.fire()
    alert = await _alert_of_call(rig, sid)
    assert alert["voicemail_url"] == "https://api.twilio.test/rec/RE1" and alert["escalating"]
    paged = await _paged(rig.pool, alert["id"])
    assert paged == [str(world.users[0])]
    # the next rule is due after the first rule's timeout, not before
    due = await rig.pool.fetchval(
        "SELECT due_at FROM callrouter.timers WHERE kind = $1 AND key = $2", ESCALATE, alert["id"]
    )
    assert timedelta(minutes=4) < due - datetime.now(UTC) <= timedelta(minutes=5)
    await rig.pool.execute("UPDATE callrouter.timers SET due_at = now() WHERE key = $1", alert["id"])
    await rig.fire()
    assert await _paged(rig.pool, alert["id"]) == [str(world.users[0]), str(world.users[1])]
    status, acked = await call(
        rig.client, "POST", f"/v1/call-alerts/{alert['id']}/acknowledge", headers=token(world.users[1], "responder")
    )
    assert status == 200 and acked["status"] == "acknowledged" and not acked["escalating"]
    assert await rig.pool.fetchval("SELECT count(*) FROM callrouter.timers WHERE key = $1", alert["id"]) == 0
    published = await _alert_events(rig.pool, alert["id"])
    assert [p["version"] for p in published] == list(range(1, len(published) + 1))
    assert published[0]["status"] == "open" and published[0]["routing_number"] == number["number"]
    assert any(p["voicemail_url"] for p in published)
    assert published[-1]["status"] == "acknowledged" and published[-1]["acknowledged_by"] == str(world.users[1])


async def test_without_voicemail_the_caller_is_told_and_the_alert_escalates(
    rig: Rig, callrouter_pool: asyncpg.Pool
) -> None:
    world = await World.build(callrouter_pool, n_users=1, rules=[[0]])
    number = await routing_number(rig, world, voicemail=False)
    sid, _ = await choose(rig, number, Digits="1")
    await rig.fire()
    leg, leg_sid = rig.phones.dialed[0]
    await rig.hook(leg.status_url, CallStatus="busy", CallSid=leg_sid)
    await rig.fire()
    told = await rig.hook(rig.phones.redirected[0][1], CallSid=sid)
    assert "No one is available" in said(told) and told.find("Hangup") is not None
    alert = await _alert_of_call(rig, sid)
    assert await _paged(rig.pool, alert["id"]) == [str(world.users[0])]


async def test_voicemail_only_and_outside_support_hours(rig: Rig, callrouter_pool: asyncpg.Pool) -> None:
    world = await World.build(callrouter_pool)
    only = await routing_number(rig, world, voicemail_only=True)
    _, twiml = await ring(rig, only)
    assert twiml.find("Record") is not None and twiml.find("Gather") is None
    now = datetime.now(UTC).astimezone()
    never = await world.support_hours([WeeklyWindow(days=["mon"], start="00:00", end="00:01")])
    closed = await routing_number(rig, world, support_hours_id=str(never))
    _, twiml = await ring(rig, closed)
    assert twiml.find("Record") is not None
    always = await world.support_hours(
        [WeeklyWindow(days=["mon", "tue", "wed", "thu", "fri", "sat", "sun"], start="00:00", end="00:00")]
    )
    open_ = await routing_number(rig, world, support_hours_id=str(always))
    _, twiml = await ring(rig, open_)
    assert twiml.find("Gather") is not None
    pid = str(world.policy_id)
    other = await routing_number(
        rig,
        world,
        support_hours_id=str(never),
        outside_hours="options",
        outside_options=[
            {"digit": "7", "name": "Night desk", "policy_id": pid},
        ],
    )
    _, twiml = await ring(rig, other)
    assert "Night desk, press 7" in said(twiml) and now


async def test_unknown_and_garbage_webhooks_get_safe_twiml(rig: Rig, callrouter_pool: asyncpg.Pool) -> None:
    twiml = await rig.hook(f"{BASE}/calls/incoming", CallSid="CAunknown", From="x", To=random_number())
    assert "not in service" in said(twiml) and twiml.find("Hangup") is not None
    for path in (
        f"/calls/{uuid.uuid4()}/choice",
        "/calls/not-a-uuid/choice",
        f"/calls/legs/{uuid.uuid4()}/answer",
        f"/calls/legs/{uuid.uuid4()}/input",
        f"/calls/{uuid.uuid4()}/recorded",
    ):
        twiml = await rig.hook(
            BASE + path,
            CallSid="CA1",
            Digits="\x00\xff" * 40,
            SpeechResult="💥" * 1000,
            RecordingUrl="javascript:alert(1)",
            RecordingDuration="-5",
        )
        assert twiml.tag == "Response"
    await rig.hook(f"{BASE}/calls/status", CallSid="CAnever", CallStatus="completed")
    await rig.hook(f"{BASE}/calls/legs/{uuid.uuid4()}/status", CallSid="CAnever", CallStatus="completed")


async def test_a_forged_or_unsigned_webhook_is_refused(rig: Rig, callrouter_pool: asyncpg.Pool) -> None:
    world = await World.build(callrouter_pool)
    number = await routing_number(rig, world)
    params = {"CallSid": "CA" + uuid.uuid4().hex, "From": "+4917700000001", "To": number["number"]}
    status, _ = await webhook(rig.client, f"{BASE}/calls/incoming", params, signed=False)
    assert status == 403
    async with rig.client.post(
        "/webhooks/twilio/calls/incoming", data=params, headers={"X-Twilio-Signature": "Zm9yZ2Vk"}
    ) as resp:
        assert resp.status == 403
    async with rig.client.post("/webhooks/twilio/calls/incoming", json=params) as resp:
        assert resp.status == 403
    assert await rig.pool.fetchval("SELECT count(*) FROM callrouter.calls WHERE call_sid = $1", params["CallSid"]) == 0


async def test_duplicate_webhooks_change_nothing(rig: Rig, callrouter_pool: asyncpg.Pool) -> None:
    world = await World.build(callrouter_pool, n_users=2, rules=[[0], [1]])
    number = await routing_number(rig, world)
    sid, menu = await ring(rig, number)
    again = await rig.hook(f"{BASE}/calls/incoming", CallSid=sid, From="+4917700000001", To=number["number"])
    assert ElementTree.tostring(again) == ElementTree.tostring(menu)
    held = await rig.hook(action(menu, "Gather"), CallSid=sid, Digits="1")
    held_again = await rig.hook(action(menu, "Gather"), CallSid=sid, Digits="1")
    assert ElementTree.tostring(held) == ElementTree.tostring(held_again)
    await rig.fire()
    leg, leg_sid = rig.phones.dialed[0]
    for _ in range(2):
        await rig.hook(leg.status_url, CallStatus="busy", CallSid=leg_sid)
    await rig.fire()
    assert len(rig.phones.dialed) == 2
    assert (
        await rig.pool.fetchval(
            "SELECT count(*) FROM callrouter.alerts a JOIN callrouter.calls c USING (call_id) WHERE c.call_sid = $1",
            sid,
        )
        == 1
    )


# ------------------------------------------------------------------------------------------------ alerts
async def test_alerts_are_seen_by_their_policys_people_and_admins(rig: Rig, callrouter_pool: asyncpg.Pool) -> None:
    world = await World.build(callrouter_pool, n_users=2, rules=[[0]], on_call=1)
    number = await routing_number(rig, world, voicemail_only=True)
    sid, _ = await ring(rig, number)
    alert = await _alert_of_call(rig, sid)
    for member in world.users:
        status, _ = await call(rig.client, "GET", f"/v1/call-alerts/{alert['id']}", headers=token(member, "responder"))
        assert status == 200
    stranger = token(uuid.uuid4(), "responder")
    status, _ = await call(rig.client, "GET", f"/v1/call-alerts/{alert['id']}", headers=stranger)
    assert status == 404
    status, _ = await call(rig.client, "POST", f"/v1/call-alerts/{alert['id']}/acknowledge", headers=stranger)
    assert status == 404
    status, page = await call(rig.client, "GET", "/v1/call-alerts", headers=stranger)
    assert status == 200 and all(a["id"] != alert["id"] for a in page["items"])
    status, _ = await call(
        rig.client, "POST", f"/v1/call-alerts/{alert['id']}/acknowledge", headers=token(world.users[0], "observer")
    )
    assert status == 403
    status, resolved = await call(
        rig.client, "POST", f"/v1/call-alerts/{alert['id']}/resolve", headers=token(world.users[0], "responder")
    )
    assert status == 200 and resolved["status"] == "resolved"
    status, body = await call(rig.client, "POST", f"/v1/call-alerts/{alert['id']}/acknowledge")
    assert status == 409 and body["state"] == "resolved"


async def test_alert_list_pages_and_filters(rig: Rig, callrouter_pool: asyncpg.Pool) -> None:
    world = await World.build(callrouter_pool)
    number = await routing_number(rig, world, voicemail_only=True)
    for _ in range(5):
        await ring(rig, number)
    viewer = token(world.users[0], "responder")
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2", "status": "open"} | ({"cursor": cursor} if cursor else {})
        status, page = await call(rig.client, "GET", "/v1/call-alerts", params=params, headers=viewer)
        assert status == 200
        seen += [a["id"] for a in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) >= 5
    status, body = await call(rig.client, "GET", "/v1/call-alerts", params={"cursor": "garbage"})
    assert_422(status, body, "cursor")
    status, body = await call(rig.client, "GET", "/v1/call-alerts", params={"status": "open,bogus"})
    assert_422(status, body, "status")


async def test_callback_bridge_after_an_acknowledged_voicemail(rig: Rig, callrouter_pool: asyncpg.Pool) -> None:
    world = await World.build(callrouter_pool)
    number = await routing_number(rig, world, voicemail_only=True)
    sid, voicemail = await ring(rig, number)
    await rig.hook(
        action(voicemail, "Record"), CallSid=sid, RecordingUrl="https://api.twilio.test/rec/RE2", RecordingDuration="9"
    )
    alert = await _alert_of_call(rig, sid)
    me = token(world.users[0], "responder")
    status, body = await call(rig.client, "POST", f"/v1/call-alerts/{alert['id']}/callback", headers=me)
    assert status == 409 and body["state"] == "open"  # not acknowledged yet
    await call(rig.client, "POST", f"/v1/call-alerts/{alert['id']}/acknowledge", headers=me)
    status, _ = await call(rig.client, "POST", f"/v1/call-alerts/{alert['id']}/callback", headers=me)
    assert status == 202
    status, _ = await call(rig.client, "POST", f"/v1/call-alerts/{alert['id']}/callback", headers=me)
    assert status == 409  # one at a time
    await rig.fire()
    leg, leg_sid = rig.phones.dialed[-1]
    assert leg.to == world.phones_of[world.users[0]] and leg.from_ == number["number"]
    bridge = await rig.hook(leg.answer_url, CallStatus="in-progress", CallSid=leg_sid)
    dialed = bridge.find("Dial/Number")
    assert dialed is not None and dialed.text == "+4917700000001"
    assert bridge.find("Dial").attrib["callerId"] == number["number"]  # type: ignore[union-attr]
    await rig.hook(action(bridge, "Dial"), DialCallStatus="completed", DialCallDuration="42")
    await rig.hook(leg.status_url, CallStatus="completed", CallSid=leg_sid)
    status, detail = await call(rig.client, "GET", f"/v1/call-alerts/{alert['id']}", headers=me)
    whats = [e["what"] for e in detail["timeline"]]
    expected = ["callback requested", "dialed", "callback answered", "callback ended", "completed"]
    assert whats[-5:] == expected, whats


async def _alert_of_call(rig: Rig, call_sid: str) -> dict[str, Any]:
    alert_id = await rig.pool.fetchval(
        "SELECT a.alert_id FROM callrouter.alerts a JOIN callrouter.calls c USING (call_id) WHERE c.call_sid = $1",
        call_sid,
    )
    assert alert_id is not None
    status, alert = await call(rig.client, "GET", f"/v1/call-alerts/{alert_id}", headers=ADMIN)
    assert status == 200
    return alert  # type: ignore[no-any-return]


async def _withdrawals(pool: asyncpg.Pool, alert_id: str) -> list[tuple[str, str, str]]:
    """The WithdrawNotifications of the alert's pages staged in the outbox, in order: (user, reason, the
    transaction that staged it)."""
    rows = await pool.fetch(
        "SELECT convert_from(payload, 'UTF8') AS p, xmin::text AS tx FROM callrouter.outbox "
        "WHERE topic = 'notifier.commands.v1' ORDER BY id"
    )
    staged = [(json.loads(r["p"]), r["tx"]) for r in rows]
    return [
        (m["user_id"], m["reason"], tx)
        for m, tx in staged
        if m["type"] == "WithdrawNotifications" and m["key_prefix"] == f"call-alert:{alert_id}:"
    ]


async def _changed_in(pool: asyncpg.Pool, alert_id: str, status: str) -> str:
    """The transaction that staged the alert's change to `status`."""
    tx: str = await pool.fetchval(
        "SELECT xmin::text FROM callrouter.outbox WHERE topic = 'callrouter.alerts.v1' AND key = $1 "
        "AND convert_from(payload, 'UTF8')::jsonb ->> 'status' = $2",
        alert_id,
        status,
    )
    return tx


async def _nobody_takes_the_call(rig: Rig, world: World, ended: str, **number: Any) -> tuple[dict[str, Any], str]:
    """A new routing number to `world`'s policy of two rules, and a call to it whose two responders' legs end
    `ended`: the routing number and the call's sid."""
    routed = await routing_number(rig, world, **number)
    sid, _ = await choose(rig, routed, Digits="1")
    for _ in range(2):
        await rig.fire()
        leg, leg_sid = rig.phones.dialed[-1]
        await rig.hook(leg.status_url, CallStatus=ended, CallSid=leg_sid)
    await rig.fire()
    return routed, sid


async def _escalated(rig: Rig, callrouter_pool: asyncpg.Pool, n_users: int = 2) -> tuple[World, dict[str, Any]]:
    """An alert of a call nobody took (no voicemail), whose escalation paged user 0 by the policy's first rule;
    user 1 is on the second rule, any other user on none."""
    world = await World.build(callrouter_pool, n_users=n_users, rules=[[0], [1]])
    _, sid = await _nobody_takes_the_call(rig, world, "busy", voicemail=False)
    return world, await _alert_of_call(rig, sid)


async def _escalated_to_both(rig: Rig, callrouter_pool: asyncpg.Pool) -> tuple[World, str]:
    """An alert whose escalation paged user 0 (rule 1), then user 1 (rule 2); user 2 is on no rule."""
    world, alert = await _escalated(rig, callrouter_pool, n_users=3)
    await rig.pool.execute("UPDATE callrouter.timers SET due_at = now() WHERE key = $1", alert["id"])
    await rig.fire()
    assert await _paged(rig.pool, alert["id"]) == [str(world.users[0]), str(world.users[1])]
    assert await _withdrawals(rig.pool, alert["id"]) == []
    return world, alert["id"]


async def test_acknowledging_an_alert_withdraws_the_pages_of_everyone_paged_once(
    rig: Rig, callrouter_pool: asyncpg.Pool
) -> None:
    """User 1 acknowledges in the app: user 0's page (whose call would follow in minutes) and user 1's own are
    withdrawn, in the transaction of the acknowledgement. Acknowledging again, or resolving the acknowledged
    alert, withdraws nothing more."""
    world, alert_id = await _escalated_to_both(rig, callrouter_pool)
    status, _ = await call(
        rig.client, "POST", f"/v1/call-alerts/{alert_id}/acknowledge", headers=token(world.users[1], "responder")
    )
    assert status == 200
    acknowledged = await _changed_in(rig.pool, alert_id, "acknowledged")
    assert await _withdrawals(rig.pool, alert_id) == [
        (str(world.users[0]), "the alert was acknowledged", acknowledged),
        (str(world.users[1]), "the alert was acknowledged", acknowledged),
    ]
    status, _ = await call(
        rig.client, "POST", f"/v1/call-alerts/{alert_id}/acknowledge", headers=token(world.users[0], "responder")
    )
    assert status == 200
    await alerts.acknowledge_from_page(rig.pool, uuid.UUID(alert_id), world.users[0], datetime.now(UTC), "voice")
    status, _ = await call(rig.client, "POST", f"/v1/call-alerts/{alert_id}/resolve")
    assert status == 200
    assert len(await _withdrawals(rig.pool, alert_id)) == 2


async def test_resolving_an_open_alert_withdraws_its_pages_once(rig: Rig, callrouter_pool: asyncpg.Pool) -> None:
    world, alert_id = await _escalated_to_both(rig, callrouter_pool)
    status, _ = await call(
        rig.client, "POST", f"/v1/call-alerts/{alert_id}/resolve", headers=token(world.users[2], "responder")
    )
    assert status == 404  # on no rule and never reached: not theirs to see, and nothing changed
    assert await _withdrawals(rig.pool, alert_id) == []
    for _ in range(2):
        status, _ = await call(rig.client, "POST", f"/v1/call-alerts/{alert_id}/resolve")
        assert status == 200
    resolved = await _changed_in(rig.pool, alert_id, "resolved")
    assert await _withdrawals(rig.pool, alert_id) == [
        (str(world.users[0]), "the alert was resolved", resolved),
        (str(world.users[1]), "the alert was resolved", resolved),
    ]


async def test_an_alert_acknowledged_before_anyone_was_paged_withdraws_nothing(
    rig: Rig, callrouter_pool: asyncpg.Pool
) -> None:
    world = await World.build(callrouter_pool)
    number = await routing_number(rig, world, voicemail_only=True)
    sid, _ = await ring(rig, number)
    alert = await _alert_of_call(rig, sid)
    status, _ = await call(rig.client, "POST", f"/v1/call-alerts/{alert['id']}/acknowledge",
                           headers=token(world.users[0], "responder"))
    assert status == 200
    assert await _withdrawals(rig.pool, alert["id"]) == []
    rows = await rig.pool.fetch("SELECT convert_from(payload, 'UTF8') AS p FROM callrouter.outbox")
    assert not [r for r in rows if alert["id"] in r["p"] and "WithdrawNotifications" in r["p"]]


async def _alert_events(pool: asyncpg.Pool, alert_id: str) -> list[dict[str, Any]]:
    """The alert's CallAlertChanged events staged in the outbox, in order."""
    rows = await pool.fetch(
        "SELECT convert_from(payload, 'UTF8') AS p FROM callrouter.outbox WHERE topic = 'callrouter.alerts.v1' "
        "AND key = $1 ORDER BY id",
        alert_id,
    )
    return [json.loads(r["p"]) for r in rows]


async def _paged(pool: asyncpg.Pool, alert_id: str) -> list[str]:
    """Who the alert's escalation paged so far (SendNotification commands in the outbox, in order)."""
    rows = await pool.fetch("SELECT convert_from(payload, 'UTF8') AS p FROM callrouter.outbox ORDER BY id")
    commands = [json.loads(r["p"]) for r in rows]
    return [c["user_id"] for c in commands if c.get("data", {}).get("alert_id") == alert_id]


async def _chose_option_1(rig: Rig, pool: asyncpg.Pool) -> World:
    """Two responders, one per rule, and a caller who pressed 1: the first responder's dial timer is due."""
    world = await World.build(pool, n_users=2, rules=[[0], [1]])
    await choose(rig, await routing_number(rig, world), Digits="1")
    return world


async def test_a_leg_whose_end_never_arrives_counts_as_unanswered(rig: Rig, callrouter_pool: asyncpg.Pool) -> None:
    world = await _chose_option_1(rig, callrouter_pool)
    await rig.fire()
    ((first, first_sid),) = rig.phones.dialed
    # its no-answer callback is lost (this service was down): the deadline moves the caller on
    due = await rig.pool.fetchval(
        "SELECT due_at FROM callrouter.timers WHERE kind = $1 AND key = $2",
        LEG_DEADLINE,
        str(await _current_leg(rig.pool, first_sid)),
    )
    assert due - datetime.now(UTC) > timedelta(seconds=60)
    leg_id = str(await _current_leg(rig.pool, first_sid))
    await rig.pool.execute(
        "UPDATE callrouter.timers SET due_at = now() WHERE kind = $1 AND key = $2", LEG_DEADLINE, leg_id
    )
    await rig.fire()
    await rig.fire()
    assert rig.phones.hung_up == [first_sid]
    assert [d.to for d, _ in rig.phones.dialed] == [world.phones_of[u] for u in world.users]
    late = await rig.hook(first.answer_url, CallStatus="in-progress")
    assert "no longer waiting" in said(late)


class Died(Exception):
    """The process died: the dial timer's transaction is rolled back (the runner records a failure instead)."""


async def _redial_now(pool: asyncpg.Pool) -> None:
    await pool.execute("UPDATE callrouter.timers SET due_at = now() WHERE kind = $1", DIAL)


async def test_a_leg_placed_just_before_a_crash_is_adopted_not_rung_again(
    rig: Rig, callrouter_pool: asyncpg.Pool
) -> None:
    world = await _chose_option_1(rig, callrouter_pool)
    rig.phones.die_after_dial = Died()
    assert await rig.fire() == 0  # the provider placed the leg; its transaction never committed
    ((first, placed_sid),) = rig.phones.dialed
    assert await _current_leg(rig.pool, placed_sid) is None

    await _redial_now(rig.pool)
    assert await rig.fire() == 1  # the timer again: the call the provider has is the leg's
    assert len(rig.phones.dialed) == 1, "the responder was rung twice"
    leg_id = await _current_leg(rig.pool, placed_sid)
    assert leg_id is not None
    assert await rig.pool.fetchval("SELECT state FROM callrouter.legs WHERE leg_id = $1", leg_id) == "ringing"
    assert await rig.pool.fetchval("SELECT count(*) FROM callrouter.dial_intents WHERE leg_id = $1", leg_id) == 0
    detail = await rig.pool.fetchval(
        "SELECT detail FROM callrouter.call_events WHERE what = 'dialed' AND user_id = $1 ORDER BY at DESC LIMIT 1",
        world.users[0],
    )
    assert "placed before a restart" in detail
    prompt = await rig.hook(first.answer_url, CallStatus="in-progress", CallSid=placed_sid)
    assert "You have a caller on hold" in said(prompt)


async def test_a_leg_the_provider_never_placed_before_a_crash_is_dialed_once_after_it(
    rig: Rig, callrouter_pool: asyncpg.Pool
) -> None:
    world = await _chose_option_1(rig, callrouter_pool)
    leg_id = await rig.pool.fetchval("SELECT key::uuid FROM callrouter.timers WHERE kind = $1", DIAL)
    # the intent was committed, then the process died before the provider took the request
    await rig.pool.execute("INSERT INTO callrouter.dial_intents (leg_id, at) VALUES ($1, now())", leg_id)
    assert await rig.fire() == 1
    ((first, sid),) = rig.phones.dialed
    assert first.to == world.phones_of[world.users[0]]
    assert await _current_leg(rig.pool, sid) == leg_id
    assert await rig.pool.fetchval("SELECT count(*) FROM callrouter.dial_intents WHERE leg_id = $1", leg_id) == 0


async def _current_leg(pool: asyncpg.Pool, call_sid: str) -> uuid.UUID | None:
    leg_id: uuid.UUID | None = await pool.fetchval("SELECT leg_id FROM callrouter.legs WHERE call_sid = $1", call_sid)
    return leg_id


async def test_acknowledging_the_page_on_the_phone_stops_the_escalation(
    rig: Rig, callrouter_pool: asyncpg.Pool
) -> None:
    """notifier's NotificationAcknowledged for one of the alert's pages (found by its idempotency key)."""
    world, alert = await _escalated(rig, callrouter_pool)
    rows = await rig.pool.fetch(
        "SELECT convert_from(payload, 'UTF8') AS p FROM callrouter.outbox WHERE topic = 'notifier.commands.v1'"
    )
    (page,) = [json.loads(r["p"]) for r in rows if alert["id"] in r["p"]]
    assert alerts.alert_of_key(page["idempotency_key"]) == uuid.UUID(alert["id"])
    assert alerts.alert_of_key("coverage-request:1234:created:x") is None
    await alerts.acknowledge_from_page(rig.pool, uuid.UUID(alert["id"]), world.users[0], datetime.now(UTC), "voice")
    await alerts.acknowledge_from_page(rig.pool, uuid.UUID(alert["id"]), world.users[1], datetime.now(UTC), "app")
    status, done = await call(rig.client, "GET", f"/v1/call-alerts/{alert['id']}")
    assert status == 200 and done["status"] == "acknowledged" and done["acknowledged_by"] == str(world.users[0])
    assert not done["escalating"]
    assert await rig.pool.fetchval("SELECT count(*) FROM callrouter.timers WHERE key = $1", alert["id"]) == 0
    # the acknowledger's own pages of the alert: none of an earlier round runs on
    acknowledged = await _changed_in(rig.pool, alert["id"], "acknowledged")
    assert await _withdrawals(rig.pool, alert["id"]) == [
        (str(world.users[0]), "the alert was acknowledged", acknowledged)
    ]


async def test_republishing_stages_every_alerts_current_state(rig: Rig, callrouter_pool: asyncpg.Pool) -> None:
    world = await World.build(callrouter_pool)
    number = await routing_number(rig, world, voicemail_only=True)
    sids = [(await ring(rig, number))[0] for _ in range(3)]
    ids = [(await _alert_of_call(rig, sid))["id"] for sid in sids]
    before = {i: len(await _alert_events(rig.pool, i)) for i in ids}
    staged = await republish(rig.pool)
    assert staged >= 3
    for alert_id in ids:
        events = await _alert_events(rig.pool, alert_id)
        assert len(events) == before[alert_id] + 1
        assert events[-1]["version"] == events[-2]["version"] and events[-1]["status"] == "open"


async def test_a_call_before_the_on_call_data_caught_up_is_not_routed_but_heard(
    callrouter_pool: asyncpg.Pool, api_database: str
) -> None:
    """A replica still reading schedule's published data dials nobody: voicemail (or the nobody-available
    message), and the alert escalates once its timer fires."""
    world = await World.build(callrouter_pool, n_users=1, rules=[[0]])
    phones = RecordingPhones()

    async def behind() -> bool:
        return False

    desk = dataclasses.replace(new_desk(phones), caught_up=behind)
    async with TestClient(TestServer(callrouter_app(callrouter_pool, api_database, desk))) as client:
        rig = Rig(client, callrouter_pool, phones, runner(callrouter_pool, desk))
        number = await routing_number(rig, world)
        sid, twiml = await ring(rig, number)
        assert twiml.find("Gather") is None and twiml.find("Record") is not None
        await rig.fire()
        assert phones.dialed == []
        alert = await _alert_of_call(rig, sid)
        assert alert["status"] == "open" and alert["timeline"][1]["what"] == "not routed"
        quiet = await routing_number(rig, world, voicemail=False)
        sid, twiml = await ring(rig, quiet)
        assert "No one is available" in said(twiml) and twiml.find("Hangup") is not None
        await rig.fire()
        assert await _paged(rig.pool, (await _alert_of_call(rig, sid))["id"]) == [str(world.users[0])]
