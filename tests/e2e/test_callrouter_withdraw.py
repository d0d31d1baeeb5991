"""callrouter and notifier as OS processes on one broker and database, with minutes shortened (DELAY_MINUTE_S):
nobody takes a call, its alert pages responder A, then B by the policy's second rule; B acknowledges the alert in
the app, and A's page, whose voice call was due minutes later, is withdrawn: nobody is called for it."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

import shared.db
from services.notifier.service import deliveries
from shared.messages import UserSnapshot
from shared.testing import eventually
from tests.api.callrouter_world import World
from tests.conftest import IsolatedInfra, Processes, token
from tools.fakes.twilio import FakeTwilio, Party, Step
from tools.infra import free_port
from tools.procs import ServiceProcess, start_service

pytestmark = pytest.mark.e2e
CALLER = "+4917700000003"
NOTIFIER_NUMBER = "+15005550006"
MINUTE_S = 5  # a policy rule's 1-minute timeout lasts 5 s; the default call step, 2 minutes after a push, 10 s
TIME_SCALE = 0.2  # simulated seconds of the telephony simulator: a 5 s ring timeout rings for 1 s
ADMIN = token(uuid.uuid4(), "admin")


def start(processes: Processes, infra: IsolatedInfra, name: str, sim: FakeTwilio, **extra: str) -> ServiceProcess:
    port = free_port()
    env = infra.env(
        TWILIO_ACCOUNT_SID=sim.account_sid,
        TWILIO_AUTH_TOKEN=sim.auth_token,
        TWILIO_API_URL=sim.url,
        PUBLIC_WEBHOOK_URL=f"http://127.0.0.1:{port}",
        DELAY_MINUTE_S=str(MINUTE_S),
        TIMER_POLL_INTERVAL_S="0.2",
        OUTBOX_POLL_INTERVAL_S="0.2",
        **extra,
    )
    log = infra.run_dir / "logs" / f"{name}-{uuid.uuid4().hex[:8]}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    proc = start_service(name, env=env, port=port, log_path=log)
    processes.started.append(proc)
    return proc


async def page_of(notifier: ServiceProcess, user: uuid.UUID, status: str | None = None) -> dict[str, Any]:
    """The user's page of a call-routing alert, in notifier's history (once it has `status`, if given)."""

    async def probe() -> dict[str, Any] | None:
        async with aiohttp.ClientSession() as http, http.get(
            f"{notifier.base_url}/v1/notifications", params={"user_id": str(user)}, headers=ADMIN
        ) as resp:
            assert resp.status == 200, await resp.text()
            pages = [d for d in await resp.json() if d["idempotency_key"].startswith("call-alert:")]
        return next((d for d in pages if status is None or d["status"] == status), None)

    return await eventually(probe, timeout_s=60, interval_s=0.2, what=f"{user}'s page ({status or 'any'})")


async def test_acknowledging_an_alert_stops_the_call_another_responders_page_would_make(
    processes: Processes, isolated_infra: IsolatedInfra
) -> None:
    async with FakeTwilio.running(time_scale=TIME_SCALE) as sim:
        callrouter = start(processes, isolated_infra, "callrouter", sim, RING_TIMEOUT_S="5")
        notifier = start(processes, isolated_infra, "notifier", sim, TWILIO_FROM_NUMBER=NOTIFIER_NUMBER)
        await asyncio.gather(*(asyncio.to_thread(p.wait_ready, 90) for p in (callrouter, notifier)))

        routing = await shared.db.create_pool(isolated_infra.database_url, "callrouter")
        notifying = await shared.db.create_pool(isolated_infra.database_url, "notifier")
        try:
            world = await World.build(routing, n_users=2, rules=[[0], [1]], timeout_minutes=1)
            for user in world.users:  # as schedule's user snapshots would have told notifier
                await deliveries.apply_user_snapshot(notifying, UserSnapshot(
                    user_id=user, version=1, name="Responder", email=f"{user.hex}@example.com",
                    phone=world.phones_of[user], time_zone="Europe/Berlin", language="en", role="responder",
                    active=True,
                ))
        finally:
            await routing.close()
            await notifying.close()
        a, b = world.users
        body = world.number_body(voicemail=False)
        async with aiohttp.ClientSession() as http, http.post(
            f"{callrouter.base_url}/v1/routing-numbers", json=body, headers=ADMIN
        ) as resp:
            assert resp.status == 201, await resp.text()
        sim.configure_number(
            body["number"],
            f"{callrouter.base_url}/webhooks/twilio/calls/incoming",
            status_callback=f"{callrouter.base_url}/webhooks/twilio/calls/status",
        )
        for user in world.users:
            sim.script(world.phones_of[user], Party(answer="no-answer"))

        call = sim.incoming_call(CALLER, body["number"], Party(steps=(Step.press("1"),)))
        await sim.wait_ended(call.sid, within_s=60)  # nobody took it: "No one is available", and the alert escalates
        paged_a = await page_of(notifier, a)
        await page_of(notifier, b)  # the second rule, one shortened minute later
        alert_id = paged_a["data"]["alert_id"]
        async with aiohttp.ClientSession() as http, http.post(
            f"{callrouter.base_url}/v1/call-alerts/{alert_id}/acknowledge", headers=token(b, "responder")
        ) as resp:
            assert resp.status == 200, await resp.text()

        withdrawn = await page_of(notifier, a, "withdrawn")
        assert withdrawn["withdrawn_reason"] == "the alert was acknowledged"
        await page_of(notifier, b, "withdrawn")  # the acknowledger's own page too
        call_due = datetime.fromisoformat(paged_a["created_at"]) + timedelta(seconds=2 * MINUTE_S)
        await asyncio.sleep(max(0.0, (call_due - datetime.now(UTC)).total_seconds()) + 3.0)
        assert sim.find_calls(from_=NOTIFIER_NUMBER) == [], "notifier called someone for a settled alert"
        assert (await page_of(notifier, a))["status"] == "withdrawn"
