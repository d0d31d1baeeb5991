"""The simulator's own API for tests and the terminal: scripted parties, the account's numbers, incoming calls,
what the parties do live, and each call's and conversation's transcript. Plus the old fake's `/_fake/...`
endpoints, which the notifier's tests and `make phone` use."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tools.fakes.twilio.rest import (
    E164,
    PROGRAMMABLE_FAILURES,
    SIM,
    STATE,
    add_number,
    apply_number_form,
    refusal_of_number,
)
from tools.fakes.twilio.state import Call, Party, PhoneNumber, Step, TwilioState, iso_ms, new_sid, wait_event
from tools.fakes.twilio.webhooks import WEBHOOK_TIMEOUT_S

MAX_WAIT_S = 300.0


# --------------------------------------------------------------------------------------------------- views


def call_view(state: TwilioState, call: Call, *, events: bool = True) -> dict[str, Any]:
    """A call leg for tests: who, status, what it was connected with, and its transcript."""
    view: dict[str, Any] = {
        "sid": call.sid,
        "direction": call.direction,
        "from": call.from_,
        "to": call.to,
        "party": call.far_end,
        "role": call.role,
        "created": iso_ms(call.created),
        "status": call.status,
        "parent_call_sid": call.parent_sid,
        "bridged_with": list(call.bridged_with),
        "connected": bool(call.bridged_with),
        "duration": call.duration_s,
        "hung_up_by": call.hung_up_by,
        "recordings": [state.recordings[sid].resource() for sid in call.recording_sids if sid in state.recordings],
        "ended": call.finished,
        "conversation": [c.sid for c in state.conversation(call.sid)],
    }
    if events:
        origin = call.events[0].mono if call.events else 0.0
        view["events"] = [e.to_json(origin, state.time_scale) for e in call.events]
    return view


def conversation_view(state: TwilioState, sid: str) -> dict[str, Any]:
    """Every leg connected with `sid`, and all their events in the order they happened."""
    calls = state.conversation(sid)
    merged = sorted((e for c in calls for e in c.events), key=lambda e: e.mono)
    origin = merged[0].mono if merged else 0.0
    return {
        "sid": sid,
        "calls": [call_view(state, c, events=False) for c in calls],
        "ended": all(c.finished for c in calls),
        "events": [e.to_json(origin, state.time_scale) for e in merged],
    }


def timeline_view(state: TwilioState, after: int = 0, since: Call | None = None) -> dict[str, Any]:
    """Events of all legs (those created since `since`) after number `after`, the legs' roles, and whether all
    those legs have ended."""
    calls = [c for c in state.calls.values() if since is None or c.created >= since.created]
    events = state.timeline(after, since)
    origin = since.events[0].mono if since is not None and since.events else (events[0].mono if events else 0.0)
    return {
        "events": [e.to_json(origin, state.time_scale) for e in events],
        "calls": {c.sid: {"party": c.far_end, "role": c.role, "status": c.status} for c in calls},
        "ended": all(c.finished for c in calls),
        "last": events[-1].seq if events else after,
    }


# ------------------------------------------------------------------------------------------------- helpers


async def json_body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except json.JSONDecodeError as exc:
        raise web.HTTPBadRequest(text=f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object")
    return body


def the_call(request: web.Request) -> Call:
    call = request.app[STATE].calls.get(request.match_info["sid"])
    if call is None:
        raise web.HTTPNotFound(text="no such call")
    return call


def wait_seconds(request: web.Request, default: float) -> float:
    try:
        return min(float(request.query.get("wait", request.query.get("timeout", default))), MAX_WAIT_S)
    except ValueError:
        raise web.HTTPBadRequest(text="wait must be a number of seconds") from None


def party_from(raw: Any) -> Party:
    try:
        return Party.from_json(raw)
    except (ValueError, TypeError) as exc:
        raise web.HTTPBadRequest(text=f"bad party: {exc}") from None


def number_form(body: dict[str, Any]) -> dict[str, str]:
    """The test API's snake_case number fields as the REST API's form fields."""
    names = {
        "voice_url": "VoiceUrl",
        "voice_method": "VoiceMethod",
        "voice_fallback_url": "VoiceFallbackUrl",
        "voice_fallback_method": "VoiceFallbackMethod",
        "status_callback": "StatusCallback",
        "status_callback_method": "StatusCallbackMethod",
        "friendly_name": "FriendlyName",
    }
    unknown = set(body) - set(names)
    if unknown:
        raise web.HTTPBadRequest(text=f"unknown number fields: {', '.join(sorted(unknown))}")
    return {names[key]: "" if value is None else str(value) for key, value in body.items()}


def configure_number(state: TwilioState, phone_number: str, form: dict[str, str]) -> PhoneNumber:
    """Create or update the account's number (or, for "default", the configuration of every other number)."""
    if phone_number == "default":
        if state.default_number is None:
            state.default_number = PhoneNumber(new_sid("PN"), state.account_sid, "default")
        apply_number_form(state.default_number, form)
        return state.default_number
    existing = next((n for n in state.numbers.values() if n.phone_number == phone_number), None)
    if existing is None:
        return add_number(state, phone_number, form)
    apply_number_form(existing, form)
    return existing


# ---------------------------------------------------------------------------------------------- /_sim/...


async def info(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response(
        {
            "account_sid": state.account_sid,
            "time_scale": state.time_scale,
            "base_url": state.base_url,
            "numbers": [n.resource() for n in state.numbers.values()],
            "default_number": state.default_number.resource() if state.default_number else None,
            "parties": {number: party.to_json() for number, party in state.parties.items()},
            "queues": {name: [m.call.sid for m in q.members] for name, q in state.queues.items()},
        }
    )


async def put_party(request: web.Request) -> web.Response:
    """`PUT /_sim/parties/{number}` with a party: how the person at that number behaves from now on."""
    number = request.match_info["number"]
    if not E164.match(number):
        raise web.HTTPBadRequest(text=f"not an E.164 number: {number}")
    party = party_from(await json_body(request))
    request.app[STATE].parties[number] = party
    return web.json_response({"number": number, "party": party.to_json()})


async def delete_party(request: web.Request) -> web.Response:
    request.app[STATE].parties.pop(request.match_info["number"], None)
    return web.Response(status=204)


async def list_parties(request: web.Request) -> web.Response:
    parties = request.app[STATE].parties
    return web.json_response({number: party.to_json() for number, party in parties.items()})


async def put_number(request: web.Request) -> web.Response:
    """`PUT /_sim/numbers/{number}` (or `/_sim/numbers/default`) with voice_url, voice_method, status_callback,
    status_callback_method, voice_fallback_url, friendly_name."""
    phone_number = request.match_info["number"]
    if phone_number != "default" and not E164.match(phone_number):
        raise web.HTTPBadRequest(text=f"not an E.164 number: {phone_number}")
    form = number_form(await json_body(request))
    refusal = refusal_of_number(form)
    if refusal is not None:
        return refusal
    return web.json_response(configure_number(request.app[STATE], phone_number, form).resource())


async def list_numbers(request: web.Request) -> web.Response:
    state = request.app[STATE]
    numbers = [n.resource() for n in state.numbers.values()]
    default = state.default_number.resource() if state.default_number else None
    return web.json_response({"numbers": numbers, "default": default})


async def incoming(request: web.Request) -> web.Response:
    """`POST /_sim/incoming {"from", "to", "caller": party}`: a call from `from` to the account's number `to`."""
    body = await json_body(request)
    from_, to = str(body.get("from", "")), str(body.get("to", ""))
    for name, number in (("from", from_), ("to", to)):
        if not E164.match(number):
            raise web.HTTPBadRequest(text=f"{name} must be an E.164 number, not {number!r}")
    caller = party_from(body["caller"]) if body.get("caller") is not None else None
    call = request.app[SIM].incoming(from_, to, caller)
    if call is None:
        raise web.HTTPNotFound(
            text=f"{to} is not a number of this account: add it (POST .../IncomingPhoneNumbers.json or "
            f"PUT /_sim/numbers/{to}) or set a default (PUT /_sim/numbers/default)"
        )
    return web.json_response(call_view(request.app[STATE], call), status=201)


async def list_sim_calls(request: web.Request) -> web.Response:
    """`GET /_sim/calls?to=&from=`: the legs (oldest first) with their transcripts."""
    state = request.app[STATE]
    calls = sorted(state.find_calls(request.query.get("to"), request.query.get("from")), key=lambda c: c.created)
    return web.json_response({"calls": [call_view(state, c) for c in calls]})


async def get_call(request: web.Request) -> web.Response:
    """`GET /_sim/calls/{sid}[?wait=S]`: one leg; with `wait`, once it has ended (or S seconds passed)."""
    call = the_call(request)
    if "wait" in request.query:
        await wait_event(call.ended, wait_seconds(request, 10.0))
    return web.json_response(call_view(request.app[STATE], call))


async def get_conversation(request: web.Request) -> web.Response:
    """`GET /_sim/conversations/{sid}[?wait=S]`: the leg and every leg connected with it, with one merged
    transcript; with `wait`, once all have ended (or S seconds passed)."""
    state = request.app[STATE]
    call = the_call(request)
    if "wait" in request.query:
        deadline = asyncio.get_running_loop().time() + wait_seconds(request, 10.0)
        while not all(c.finished for c in state.conversation(call.sid)):
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            pending = next(c for c in state.conversation(call.sid) if not c.finished)
            await wait_event(pending.ended, remaining)
    return web.json_response(conversation_view(state, call.sid))


async def get_events(request: web.Request) -> web.Response:
    """`GET /_sim/events?after=N&since_call=SID`: what happened on every leg, in order (of the legs created since
    that call's, when given), after event number N."""
    state = request.app[STATE]
    since = state.calls.get(request.query.get("since_call", ""))
    if "since_call" in request.query and since is None:
        raise web.HTTPNotFound(text="no such call")
    try:
        after = int(request.query.get("after", "0"))
    except ValueError:
        raise web.HTTPBadRequest(text="after must be an event number") from None
    return web.json_response(timeline_view(state, after, since))


async def party_press(request: web.Request) -> web.Response:
    """`POST /_sim/calls/{sid}/press {"digits"}`: the party presses keys now (taken by the current or next Gather)."""
    return await _party_input(request, "digits", Step.press)


async def party_say(request: web.Request) -> web.Response:
    """`POST /_sim/calls/{sid}/say {"text"}`: the party says something now."""
    return await _party_input(request, "text", Step.say)


async def _party_input(request: web.Request, field: str, step: Callable[[str], Step]) -> web.Response:
    """The party's input `field` (JSON body or query) given to their call now."""
    call = the_call(request)
    value = str((await json_body(request)).get(field, request.query.get(field, "")))
    if not value:
        raise web.HTTPBadRequest(text=f"{field} are required" if field == "digits" else f"{field} is required")
    call.give_input(step(value))
    call.manual_answer.set()
    return web.json_response(call_view(request.app[STATE], call, events=False))


async def party_hang_up(request: web.Request) -> web.Response:
    """`POST /_sim/calls/{sid}/hangup`: the party hangs up (a leg still ringing is declined: busy)."""
    call = the_call(request)
    await request.app[SIM].complete(call, "busy", WEBHOOK_TIMEOUT_S)
    return web.json_response(call_view(request.app[STATE], call, events=False))


async def reset(request: web.Request) -> web.Response:
    """`POST /_sim/reset`: hang up everything and forget calls, parties, queues, recordings (numbers stay)."""
    state, sim = request.app[STATE], request.app[SIM]
    for call in list(state.calls.values()):
        if call.status == "in-progress":
            sim.party_hangs_up(call)
        elif not call.finished:
            sim.hang_up_by_api(call, "canceled")
    await asyncio.gather(*(wait_event(c.ended, WEBHOOK_TIMEOUT_S) for c in state.calls.values()))
    state.reset()
    return web.Response(status=204)


# ------------------------------------------------------------------------------- /_fake/... (the old fake)


async def fake_list_calls(request: web.Request) -> web.Response:
    """What the phones rang with: `GET /_fake/calls?to=`."""
    calls = request.app[STATE].calls_to(request.query.get("to"))
    return web.json_response({"calls": [call.recorded() for call in calls]})


async def fake_press(request: web.Request) -> web.Response:
    """`POST /_fake/calls/{sid}/press?digits=1`: the callee picks up and presses keys at the Gather; answers with
    what the Gather's action webhook answered."""
    call = the_call(request)
    digits = request.query.get("digits", "1")
    pressed = await request.app[SIM].press(call, digits, WEBHOOK_TIMEOUT_S * 2)
    if pressed is None:
        raise web.HTTPConflict(text="the call ended without a <Gather> taking the keys")
    return web.json_response(pressed)


async def fake_complete(request: web.Request) -> web.Response:
    """`POST /_fake/calls/{sid}/complete?status=completed`: the call ends; its StatusCallback is told."""
    call = the_call(request)
    await request.app[SIM].complete(call, request.query.get("status", "completed"), WEBHOOK_TIMEOUT_S * 2)
    return web.json_response({"sid": call.sid, "status": call.status, "webhook": call.final_callback})


async def fake_program(request: web.Request) -> web.Response:
    """`POST /_fake/program {"to", "status", "times", "delay_s"}` (status 429, 500, 503 or null: slow success)."""
    spec = await json_body(request)
    status = spec.get("status")
    if status is not None and status not in PROGRAMMABLE_FAILURES:
        raise web.HTTPBadRequest(text=f"status must be one of {sorted(PROGRAMMABLE_FAILURES)} or null")
    request.app[STATE].program(spec["to"], status, times=spec.get("times", 1), delay_s=spec.get("delay_s", 0.0))
    return web.json_response({"programmed": spec["to"]})


def add_routes(app: web.Application) -> None:
    router = app.router
    router.add_get("/_sim", info)
    router.add_get("/_sim/parties", list_parties)
    router.add_put("/_sim/parties/{number}", put_party)
    router.add_delete("/_sim/parties/{number}", delete_party)
    router.add_get("/_sim/numbers", list_numbers)
    router.add_put("/_sim/numbers/{number}", put_number)
    router.add_post("/_sim/incoming", incoming)
    router.add_get("/_sim/calls", list_sim_calls)
    router.add_get("/_sim/calls/{sid}", get_call)
    router.add_post("/_sim/calls/{sid}/press", party_press)
    router.add_post("/_sim/calls/{sid}/say", party_say)
    router.add_post("/_sim/calls/{sid}/hangup", party_hang_up)
    router.add_get("/_sim/conversations/{sid}", get_conversation)
    router.add_get("/_sim/events", get_events)
    router.add_post("/_sim/reset", reset)
    router.add_get("/_fake/calls", fake_list_calls)
    router.add_post("/_fake/calls/{sid}/press", fake_press)
    router.add_post("/_fake/calls/{sid}/complete", fake_complete)
    router.add_post("/_fake/program", fake_program)
