"""Helpers for tests and tools: `FakeTwilio` serves the simulator in the test's own event loop and scripts it
directly; `SimClient` drives a simulator running elsewhere (`make up`'s, a test's process) over its HTTP test API."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
from aiohttp import web

from tools.fakes.twilio.app import create_app
from tools.fakes.twilio.engine import Simulator
from tools.fakes.twilio.rest import SIM
from tools.fakes.twilio.state import Call, FailureStatus, Party, PhoneNumber, Recording, Step, TwilioState, new_sid
from tools.fakes.twilio.testapi import call_view, configure_number, conversation_view, number_form, timeline_view

T = TypeVar("T")
# Tests run the simulator 100 times faster than real time: a 20 s ring timeout passes in 0.2 s.
TEST_TIME_SCALE = 0.01


class SimTimeout(AssertionError):
    """What a test waited for did not happen in time."""


@dataclass
class FakeTwilio:
    """A running simulator: its `url` (the base URL to point the twilio client at), the credentials it accepts, its
    state to inspect, and methods to script it."""

    url: str
    state: TwilioState
    sim: Simulator

    @property
    def account_sid(self) -> str:
        return self.state.account_sid

    @property
    def auth_token(self) -> str:
        return self.state.auth_token

    @property
    def time_scale(self) -> float:
        return self.state.time_scale

    @property
    def calls(self) -> list[Call]:
        return list(self.state.calls.values())

    def calls_to(self, to: str) -> list[Call]:
        """The legs placed to one number."""
        return self.state.calls_to(to)

    def find_calls(self, to: str | None = None, from_: str | None = None) -> list[Call]:
        return sorted(self.state.find_calls(to, from_), key=lambda c: c.created)

    def call(self, sid: str) -> Call:
        return self.state.calls[sid]

    # ----------------------------------------------------------------------------------------- scripting
    def program(self, to: str, status: FailureStatus | None, *, times: int | None = 1, delay_s: float = 0.0) -> None:
        """Make the next `times` REST calls to `to` fail with `status` (None: succeed, after `delay_s`)."""
        self.state.program(to, status, times=times, delay_s=delay_s)

    def script(self, number: str, party: Party | None = None, /, **fields: Any) -> Party:
        """How the person at `number` behaves from now on: a Party, or its fields as keywords (steps as Steps or
        strings of keys)."""
        if party is None:
            steps = tuple(s if isinstance(s, Step) else Step.press(s) for s in fields.pop("steps", ()))
            party = Party(steps=steps, **fields)
        self.state.parties[number] = party
        return party

    def unscript(self, number: str) -> None:
        self.state.parties.pop(number, None)

    def configure_number(
        self,
        phone_number: str,
        voice_url: str | None,
        *,
        voice_method: str = "POST",
        status_callback: str | None = None,
        status_callback_method: str = "POST",
        voice_fallback_url: str | None = None,
    ) -> PhoneNumber:
        """Make `phone_number` a number of the account whose calls go to `voice_url` ("default": every number that
        has no configuration of its own)."""
        body = {
            "voice_url": voice_url,
            "voice_method": voice_method,
            "status_callback": status_callback,
            "status_callback_method": status_callback_method,
            "voice_fallback_url": voice_fallback_url,
        }
        return configure_number(self.state, phone_number, number_form(body))

    def incoming_call(self, from_: str, to: str, caller: Party | None = None) -> Call:
        """`from_` calls the account's number `to`, behaving as `caller` says (else as scripted for `from_`)."""
        call = self.sim.incoming(from_, to, caller)
        if call is None:
            raise LookupError(f"{to} is not a number of this account (configure_number first)")
        return call

    def press_now(self, sid: str, digits: str) -> None:
        """The party on leg `sid` presses keys now (taken by the current or next Gather; answers a ringing leg)."""
        call = self.call(sid)
        call.give_input(Step.press(digits))
        call.manual_answer.set()

    def say_now(self, sid: str, text: str) -> None:
        call = self.call(sid)
        call.give_input(Step.say(text))
        call.manual_answer.set()

    def hang_up(self, sid: str) -> None:
        """The party on leg `sid` hangs up (a leg still ringing is declined)."""
        call = self.call(sid)
        if call.status == "in-progress":
            self.sim.party_hangs_up(call)
        else:
            self.sim.hang_up_by_api(call, "canceled")

    async def press(self, sid: str, digits: str = "1") -> dict[str, Any]:
        """Make the callee of call `sid` pick up and press `digits`; returns what the Gather's action webhook
        answered (the old fake's `/_fake/calls/{sid}/press`)."""
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.url}/_fake/calls/{sid}/press", params={"digits": digits}) as answer,
        ):
            answer.raise_for_status()
            result: dict[str, Any] = await answer.json()
            return result

    # ------------------------------------------------------------------------------------------ reading
    def transcript(self, sid: str) -> dict[str, Any]:
        """One leg as `GET /_sim/calls/{sid}` shows it."""
        return call_view(self.state, self.call(sid))

    def conversation(self, sid: str) -> dict[str, Any]:
        """Every leg connected with `sid` and their merged events, as `GET /_sim/conversations/{sid}` shows it."""
        return conversation_view(self.state, sid)

    def timeline(self, since: str | None = None) -> list[dict[str, Any]]:
        """Every event of every leg in the order they happened (of the legs created since leg `since`, if given):
        what REST-created legs did that are no part of a caller's conversation until they are bridged with it."""
        return list(timeline_view(self.state, 0, self.call(since) if since else None)["events"])

    def events(self, sid: str, kind: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.transcript(sid)["events"] if kind is None or e["kind"] == kind]

    def heard(self, sid: str) -> list[str]:
        """What the party on leg `sid` heard, in order."""
        return [e["text"] for e in self.events(sid, "heard")]

    def recording(self, sid: str) -> Recording:
        return self.state.recordings[sid]

    # ------------------------------------------------------------------------------------------ waiting
    async def wait_for(self, condition: Callable[[], T | None], within_s: float = 10.0, what: str = "") -> T:
        """Poll `condition` until it returns something truthy (returned); SimTimeout after `within_s` real s."""
        deadline = asyncio.get_running_loop().time() + within_s
        while True:
            found = condition()
            if found:
                return found
            if asyncio.get_running_loop().time() >= deadline:
                raise SimTimeout(f"not within {within_s:g}s: {what or condition}")
            await asyncio.sleep(0.005)

    async def wait_for_call(self, to: str, *, status: str | None = None, within_s: float = 10.0) -> Call:
        """The newest leg to `to` (once it has `status`, if given)."""

        def newest() -> Call | None:
            legs = [c for c in self.find_calls(to=to) if status is None or c.status == status]
            return legs[-1] if legs else None

        return await self.wait_for(newest, within_s, f"a call to {to}" + (f" {status}" if status else ""))

    async def wait_ended(self, sid: str, within_s: float = 10.0) -> dict[str, Any]:
        """The conversation of `sid` once every leg in it has ended."""

        def ended() -> dict[str, Any] | None:
            view = self.conversation(sid)
            return view if view["ended"] else None

        return await self.wait_for(ended, within_s, f"the conversation of {sid} to end")

    # ------------------------------------------------------------------------------------------ serving
    @classmethod
    @contextlib.asynccontextmanager
    async def running(
        cls,
        account_sid: str | None = None,
        auth_token: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        time_scale: float = TEST_TIME_SCALE,
    ) -> AsyncIterator[FakeTwilio]:
        """Serve the simulator in this event loop on `port` (0: a free one) until the block ends; credentials are
        made up unless given; simulated time runs at `time_scale` (0.01: 100 times faster than real)."""
        state = TwilioState(account_sid or new_sid("AC"), auth_token or secrets.token_hex(16), time_scale=time_scale)
        runner = web.AppRunner(create_app(state), access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
            state.base_url = f"http://{host}:{runner.addresses[0][1]}"
            yield cls(state.base_url, state, runner.app[SIM])
        finally:
            await runner.cleanup()


class SimClient:
    """The simulator's HTTP test API, for a simulator in another process (`make up`'s, an e2e test's)."""

    def __init__(self, url: str, http: aiohttp.ClientSession) -> None:
        self.url = url.rstrip("/")
        self.http = http

    async def _json(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        async with self.http.request(method, self.url + path, json=body, params=params or None) as answer:
            if answer.status >= 400:
                raise RuntimeError(f"{method} {path}: HTTP {answer.status}: {(await answer.text()).strip()}")
            return None if answer.status == 204 else await answer.json()

    async def info(self) -> dict[str, Any]:
        return dict(await self._json("GET", "/_sim"))

    async def script(self, number: str, party: Party) -> None:
        await self._json("PUT", f"/_sim/parties/{quote(number)}", party.to_json())

    async def configure_number(self, phone_number: str, **fields: str | None) -> dict[str, Any]:
        """`fields`: voice_url, voice_method, status_callback, status_callback_method, voice_fallback_url."""
        return dict(await self._json("PUT", f"/_sim/numbers/{quote(phone_number)}", fields))

    async def incoming_call(self, from_: str, to: str, caller: Party | None = None) -> dict[str, Any]:
        body = {"from": from_, "to": to, "caller": caller.to_json() if caller else None}
        return dict(await self._json("POST", "/_sim/incoming", body))

    async def call(self, sid: str, wait: float | None = None) -> dict[str, Any]:
        return dict(await self._json("GET", f"/_sim/calls/{sid}", **({"wait": wait} if wait else {})))

    async def calls(self, to: str | None = None, from_: str | None = None) -> list[dict[str, Any]]:
        query = {k: v for k, v in (("to", to), ("from", from_)) if v}
        return list((await self._json("GET", "/_sim/calls", **query))["calls"])

    async def conversation(self, sid: str, wait: float | None = None) -> dict[str, Any]:
        return dict(await self._json("GET", f"/_sim/conversations/{sid}", **({"wait": wait} if wait else {})))

    async def events(self, after: int = 0, since_call: str | None = None) -> dict[str, Any]:
        """Events of all legs after number `after` (of the legs created since `since_call`): {"events", "calls",
        "ended", "last"}."""
        query: dict[str, Any] = {"after": after} | ({"since_call": since_call} if since_call else {})
        return dict(await self._json("GET", "/_sim/events", **query))

    async def press(self, sid: str, digits: str) -> None:
        await self._json("POST", f"/_sim/calls/{sid}/press", {"digits": digits})

    async def say(self, sid: str, text: str) -> None:
        await self._json("POST", f"/_sim/calls/{sid}/say", {"text": text})

    async def hang_up(self, sid: str) -> None:
        await self._json("POST", f"/_sim/calls/{sid}/hangup")

    async def reset(self) -> None:
        await self._json("POST", "/_sim/reset")
