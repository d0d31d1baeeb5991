"""Whole calls: the telephony simulator (a local Twilio: REST API, signed webhooks, TwiML played by scripted
callers and responders) against callrouter's app and timers over real HTTP, the real twilio REST client, and
PostgreSQL. Each test asserts what the people on the phone heard and who was connected with whom."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

import shared.db
from services.callrouter.api.webhooks import DESK
from services.callrouter.providers.twilio_calls import TwilioCalls
from services.callrouter.service.calls import Desk, Urls
from shared.webhooks import TWILIO_WEBHOOK, TwilioWebhook
from tests.api.callrouter_world import World, callrouter_app, runner
from tests.conftest import Infra, _create_database, token
from tools.fakes.twilio import FakeTwilio, Party, Step
from tools.procs import apply_migrations

CALLER = "+4917700000001"


@dataclass
class Line:
    """callrouter serving on a real port, pointed at the simulator, with its timers running."""

    pool: asyncpg.Pool
    sim: FakeTwilio
    url: str
    http: aiohttp.ClientSession

    async def number(self, world: World, **extra: Any) -> str:
        body = world.number_body(**extra)
        async with self.http.post(
            f"{self.url}/v1/routing-numbers", json=body, headers=token(world.users[0], "admin")
        ) as r:
            assert r.status == 201, await r.text()
        self.sim.configure_number(
            body["number"],
            f"{self.url}/webhooks/twilio/calls/incoming",
            status_callback=f"{self.url}/webhooks/twilio/calls/status",
        )
        return str(body["number"])

    async def alert_of(self, call_sid: str) -> dict[str, Any]:
        async def find() -> Any:
            return await self.pool.fetchval(
                "SELECT a.alert_id FROM alerts a JOIN calls c USING (call_id) WHERE c.call_sid = $1", call_sid
            )

        alert_id = None
        for _ in range(200):
            alert_id = await find()
            if alert_id:
                break
            await asyncio.sleep(0.02)
        assert alert_id, f"no alert for {call_sid}"
        async with self.http.get(f"{self.url}/v1/call-alerts/{alert_id}", headers=token(alert_id, "admin")) as r:
            assert r.status == 200
            return dict(await r.json())


@pytest.fixture(scope="module")
async def callrouter_db(infra: Infra) -> str:
    url = await _create_database(infra.database_url, f"callrouter_{random.randrange(1 << 30):x}")
    apply_migrations(url)
    return url


@pytest.fixture
async def line(callrouter_db: str) -> AsyncIterator[Line]:
    pool = await shared.db.create_pool(callrouter_db, "callrouter")
    async with FakeTwilio.running() as sim:
        # the public URL is known only once the site listens: bind first, then build the app with it
        sock_runner: web.AppRunner | None = None
        probe = web.Application()
        sock_runner = web.AppRunner(probe)
        await sock_runner.setup()
        site = web.TCPSite(sock_runner, "127.0.0.1", 0)
        await site.start()
        port = sock_runner.addresses[0][1]
        await sock_runner.cleanup()
        url = f"http://127.0.0.1:{port}"
        telephony = TwilioCalls(sim.account_sid, sim.auth_token, base_url=sim.url)
        desk = Desk(Urls(url), telephony, ring_timeout_s=20, rng=random.Random(3))
        app = callrouter_app(pool, callrouter_db, desk)
        app[DESK] = desk
        app[TWILIO_WEBHOOK] = TwilioWebhook(sim.auth_token, url)
        app_runner = web.AppRunner(app, access_log=None)
        await app_runner.setup()
        await web.TCPSite(app_runner, "127.0.0.1", port).start()
        timers = runner(pool, desk)
        ticking = asyncio.create_task(timers.run())
        try:
            async with aiohttp.ClientSession() as http:
                yield Line(pool, sim, url, http)
        finally:
            timers.stop()
            await ticking
            await app_runner.cleanup()
            await telephony.close()
            await pool.close()


def kinds(conversation: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["kind"], e.get("text", "")) for e in conversation["events"]]


async def test_first_declines_second_presses_a_key_and_is_connected(line: Line) -> None:
    world = await World.build(line.pool, n_users=2, rules=[[0], [1]])
    number = await line.number(world)
    first, second = (world.phones_of[u] for u in world.users)
    line.sim.script(first, Party(answer="busy", ring_s=1))
    line.sim.script(second, Party(answer="answer", ring_s=1, steps=(Step.press("1"),), talk_s=5))
    call = line.sim.incoming_call(CALLER, number, Party(steps=(Step.press("1"),)))
    conversation = await line.sim.wait_ended(call.sid, within_s=15)
    heard = line.sim.heard(call.sid)
    assert heard[0] == "Welcome to Emergency Hotline. For Operations, press 1."
    assert "Please hold while we connect you with the person on call." in heard
    assert [c.status for c in line.sim.calls_to(first)] == ["busy"]
    (answered,) = line.sim.calls_to(second)
    assert any(e["kind"] == "bridged" for e in line.sim.transcript(answered.sid)["events"]), kinds(conversation)
    assert "This is Emergency Hotline. You have a caller on hold." in " ".join(line.sim.heard(answered.sid))
    alert = await line.alert_of(call.sid)
    assert alert["status"] == "acknowledged" and alert["acknowledged_by"] == str(world.users[1])
    whats = [e["what"] for e in alert["timeline"]]
    assert whats.index("busy") < whats.index("accepted")


async def test_option_by_voice_and_accept_by_saying_continue(line: Line) -> None:
    world = await World.build(line.pool, n_users=1, rules=[[0]])
    number = await line.number(world)
    responder = world.phones_of[world.users[0]]
    line.sim.script(responder, Party(ring_s=1, steps=(Step.say("continue"),), talk_s=2))
    call = line.sim.incoming_call(CALLER, number, Party(steps=(Step.say("we have an outage"),)))
    await line.sim.wait_ended(call.sid, within_s=15)
    (leg,) = line.sim.calls_to(responder)
    assert any(e["kind"] == "bridged" for e in line.sim.transcript(leg.sid)["events"])


async def test_nobody_accepts_the_voicemail_lands_on_the_alert_which_escalates(line: Line) -> None:
    world = await World.build(line.pool, n_users=2, rules=[[0], [1]])
    number = await line.number(world)
    line.sim.script(world.phones_of[world.users[0]], Party(answer="no-answer"))
    line.sim.script(world.phones_of[world.users[1]], Party(ring_s=1, steps=(Step.press(""),)))  # picks up, silent
    call = line.sim.incoming_call(CALLER, number, Party(steps=(Step.press("1"),), voicemail_s=6))
    await line.sim.wait_ended(call.sid, within_s=20)
    assert "No one is available right now. Please leave a message after the tone." in line.sim.heard(call.sid)
    alert = await line.alert_of(call.sid)
    for _ in range(200):
        alert = await line.alert_of(call.sid)
        if alert["voicemail_url"] and any(e["what"] == "paged" for e in alert["timeline"]):
            break
        await asyncio.sleep(0.05)
    assert alert["voicemail_url"] and alert["voicemail_seconds"] == 6
    async with line.http.get(
        alert["voicemail_url"] + ".wav", auth=aiohttp.BasicAuth(line.sim.account_sid, line.sim.auth_token)
    ) as media:
        assert media.status == 200 and len(await media.read()) > 0
    rows = await line.pool.fetch(
        "SELECT convert_from(payload, 'UTF8') AS p FROM outbox WHERE topic = 'notifier.commands.v1' ORDER BY id"
    )
    paged = [json.loads(r["p"])["user_id"] for r in rows if alert["id"] in r["p"]]
    assert paged == [str(world.users[0])]  # rule 1 now; rule 2 after its timeout


async def test_caller_hanging_up_cancels_the_ringing_leg_and_nobody_else_is_dialed(line: Line) -> None:
    world = await World.build(line.pool, n_users=2, rules=[[0], [1]])
    number = await line.number(world)
    first, second = (world.phones_of[u] for u in world.users)
    line.sim.script(first, Party(answer="no-answer"))  # rings until canceled
    call = line.sim.incoming_call(CALLER, number, Party(steps=(Step.press("1"),)))
    leg = await line.sim.wait_for_call(first, status="ringing", within_s=10)
    line.sim.hang_up(call.sid)
    await line.sim.wait_for(lambda: leg.status == "canceled", within_s=10, what="the ringing leg canceled")
    await asyncio.sleep(0.5)
    assert line.sim.calls_to(second) == []


async def test_without_voicemail_the_caller_hears_nobody_is_available(line: Line) -> None:
    world = await World.build(line.pool, n_users=1, rules=[[0]])
    number = await line.number(world, voicemail=False)
    line.sim.script(world.phones_of[world.users[0]], Party(answer="failed"))
    call = line.sim.incoming_call(CALLER, number, Party(steps=(Step.press("1"),)))
    await line.sim.wait_ended(call.sid, within_s=15)
    assert any("No one is available right now. Your call has been recorded" in h for h in line.sim.heard(call.sid))


async def test_callback_bridge_connects_the_acknowledger_with_the_caller(line: Line) -> None:
    world = await World.build(line.pool, n_users=1, rules=[[0]])
    number = await line.number(world, voicemail_only=True)
    call = line.sim.incoming_call(CALLER, number, Party(voicemail_s=3))
    await line.sim.wait_ended(call.sid, within_s=15)
    alert = await line.alert_of(call.sid)
    me = token(world.users[0], "responder")
    async with line.http.post(f"{line.url}/v1/call-alerts/{alert['id']}/acknowledge", headers=me) as r:
        assert r.status == 200
    line.sim.script(world.phones_of[world.users[0]], Party(ring_s=1, talk_s=3))
    line.sim.script(CALLER, Party(ring_s=1, talk_s=3))
    async with line.http.post(f"{line.url}/v1/call-alerts/{alert['id']}/callback", headers=me) as r:
        assert r.status == 202, await r.text()
    responder_leg = await line.sim.wait_for_call(world.phones_of[world.users[0]], within_s=10)
    caller_leg = await line.sim.wait_for_call(CALLER, within_s=10)
    assert responder_leg.from_ == number and caller_leg.from_ == number  # both see the routing number
    await line.sim.wait_ended(responder_leg.sid, within_s=15)
    assert caller_leg.sid in responder_leg.bridged_with or responder_leg.sid in caller_leg.bridged_with
    alert = await line.alert_of(call.sid)
    assert "callback answered" in [e["what"] for e in alert["timeline"]]
