"""callrouter as an OS process, SIGKILLed mid-call while a responder's phone rings, and started again on the same
port: the call carries on from PostgreSQL. The ringing leg's end, posted while nobody listened, is lost; the
leg's durable deadline counts it as unanswered, the next responder is dialed once, accepts, and is bridged with
the caller, who waited in the queue throughout."""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import pytest

import shared.db
from tests.api.callrouter_world import World
from tests.conftest import IsolatedInfra, Processes, token
from tools.fakes.twilio import FakeTwilio, Party, Step
from tools.infra import free_port
from tools.procs import ServiceProcess, start_service

pytestmark = pytest.mark.e2e
CALLER = "+4917700000002"
# Simulated seconds pass at this many real seconds: a 5 s ring timeout rings for 1 s.
TIME_SCALE = 0.2


def start_callrouter(processes: Processes, infra: IsolatedInfra, port: int, sim: FakeTwilio) -> ServiceProcess:
    env = infra.env(
        TWILIO_ACCOUNT_SID=sim.account_sid,
        TWILIO_AUTH_TOKEN=sim.auth_token,
        TWILIO_API_URL=sim.url,
        PUBLIC_WEBHOOK_URL=f"http://127.0.0.1:{port}",
        RING_TIMEOUT_S="5",
        LEG_DEADLINE_S="2",
        HOLD_MUSIC_URL="https://music.example.test/hold.mp3",
        TIMER_POLL_INTERVAL_S="0.2",
    )
    log = infra.run_dir / "logs" / f"callrouter-{uuid.uuid4().hex[:8]}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    proc = start_service("callrouter", env=env, port=port, log_path=log)
    processes.started.append(proc)
    return proc


async def test_a_call_survives_callrouter_killed_while_a_responder_rings(
    processes: Processes, isolated_infra: IsolatedInfra
) -> None:
    async with FakeTwilio.running(time_scale=TIME_SCALE) as sim:
        port = free_port()
        callrouter = start_callrouter(processes, isolated_infra, port, sim)
        await asyncio.to_thread(callrouter.wait_ready, 90)
        pool = await shared.db.create_pool(isolated_infra.database_url, "callrouter")
        try:
            world = await World.build(pool, n_users=2, rules=[[0], [1]])
        finally:
            await pool.close()
        first, second = (world.phones_of[u] for u in world.users)
        body = world.number_body()
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{callrouter.base_url}/v1/routing-numbers", json=body, headers=token(uuid.uuid4(), "admin")
            ) as resp,
        ):
            assert resp.status == 201, await resp.text()
        sim.configure_number(
            body["number"],
            f"{callrouter.base_url}/webhooks/twilio/calls/incoming",
            status_callback=f"{callrouter.base_url}/webhooks/twilio/calls/status",
        )
        sim.script(first, Party(answer="no-answer"))
        sim.script(second, Party(ring_s=1, steps=(Step.press("1"),), talk_s=3))

        call = sim.incoming_call(CALLER, body["number"], Party(steps=(Step.press("1"),)))
        await sim.wait_for_call(first, status="ringing", within_s=30)
        # the caller waits in the queue to the hold music (a waiting caller's wait URL is fetched once; a caller
        # whose wait URL nobody answers hears Twilio's application error, so run two replicas in production)
        await sim.wait_for(lambda: sim.events(call.sid, "played"), within_s=30, what="the hold music")
        callrouter.kill()  # SIGKILL while the first responder's phone rings
        await sim.wait_for(lambda: sim.calls_to(first)[0].finished, within_s=30, what="the first leg to stop ringing")
        restarted = start_callrouter(processes, isolated_infra, port, sim)
        await asyncio.to_thread(restarted.wait_ready, 90)

        answered = await sim.wait_for_call(second, within_s=60)
        await sim.wait_ended(call.sid, within_s=60)
        assert len(sim.calls_to(first)) == 1 and len(sim.calls_to(second)) == 1  # nobody dialed twice
        story = [(e["kind"], e.get("text", "")) for e in sim.timeline(since=call.sid)]
        assert call.sid in answered.bridged_with or answered.sid in call.bridged_with, "\n".join(map(str, story))
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{restarted.base_url}/v1/call-alerts", headers=token(uuid.uuid4(), "admin")) as resp,
        ):
            alerts = (await resp.json())["items"]
        (alert,) = [a for a in alerts if a["caller"] == CALLER]
        assert alert["status"] == "acknowledged" and alert["acknowledged_by"] == str(world.users[1])
