"""Routes: Twilio's voice webhooks for the routing numbers and the responders' legs.

Every one is signed by Twilio (`X-Twilio-Signature` over the public URL and the form) and refused with 403
otherwise. Whatever a signed form holds (an unknown CallSid or id, a finished call, garbage fields), the answer
is TwiML that ends or continues the call safely, never an error page: Twilio would read "an application error
has occurred" to a caller in distress.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from uuid import UUID

from aiohttp import web
from twilio.twiml.voice_response import Dial, Enqueue, Gather, Record, VoiceResponse

from services.callrouter.api import api
from services.callrouter.service import calls
from services.callrouter.service.calls import (
    AskResponder,
    Bridge,
    CallBack,
    Desk,
    Goodbye,
    Hold,
    HoldMusic,
    Menu,
    Nothing,
    Say,
    Voicemail,
)
from shared.auth import PUBLIC
from shared.http import Call, RouteHandler
from shared.messages import utcnow
from shared.runtime import POOL
from shared.webhooks import twilio_webhook

DESK = web.AppKey("desk", Desk)
XML = "application/xml"
MENU_TIMEOUT_S = 6
RESPONDER_TIMEOUT_S = 8
_DIGITS = re.compile(r"[0-9*#]{0,32}")


def _say(to: VoiceResponse | Gather, said: Say) -> None:
    if said.audio_url:
        to.play(said.audio_url)
    else:
        to.say(said.text, language=said.language)


def twiml(answer: calls.Answer, desk: Desk) -> str:
    """The TwiML of an answer of the call flow."""
    urls = desk.urls
    response = VoiceResponse()
    match answer:
        case Menu(call_id, prompt, hints, before):
            if before is not None:
                _say(response, before)
            gather = Gather(
                input="dtmf speech",
                num_digits=1,
                action=urls.call(call_id, "choice"),
                method="POST",
                timeout=MENU_TIMEOUT_S,
                language=prompt.language,
                speech_timeout="auto",
                **({"hints": ", ".join(hints)} if hints else {}),
            )
            _say(gather, prompt)
            response.append(gather)
            response.redirect(urls.call(call_id, "menu"), method="POST")
        case Hold(call_id, prompt):
            _say(response, prompt)
            response.append(
                Enqueue(
                    f"call-{call_id}",
                    wait_url=urls.call(call_id, "hold"),
                    wait_url_method="POST",
                    action=urls.call(call_id, "left-queue"),
                    method="POST",
                )
            )
        case HoldMusic(url, prompt):
            if url:
                response.play(url, loop=0)
            else:
                _say(response, prompt)
                response.pause(length=15)
        case Voicemail(call_id, prompt, max_s, no_message):
            _say(response, prompt)
            response.append(
                Record(
                    action=urls.call(call_id, "recorded"),
                    method="POST",
                    max_length=max_s,
                    play_beep=True,
                    timeout=5,
                    finish_on_key="#",
                )
            )
            _say(response, no_message)
            response.hangup()
        case Goodbye(prompt):
            if prompt is not None:
                _say(response, prompt)
            response.hangup()
        case AskResponder(leg_id, prompt, goodbye):
            gather = Gather(
                input="dtmf speech",
                num_digits=1,
                action=urls.leg(leg_id, "input"),
                method="POST",
                timeout=RESPONDER_TIMEOUT_S,
                language=prompt.language,
                hints="continue",
                action_on_empty_result=True,
            )
            _say(gather, prompt)
            response.append(gather)
            _say(response, goodbye)
            response.hangup()
        case Bridge(call_id, prompt):
            _say(response, prompt)
            dial = Dial()
            dial.queue(f"call-{call_id}")
            response.append(dial)
        case CallBack(leg_id, prompt, caller, caller_id):
            _say(response, prompt)
            dial = Dial(caller_id=caller_id, action=urls.leg(leg_id, "callback-done"), method="POST")
            dial.number(caller)
            response.append(dial)
        case Nothing():
            pass
    return str(response)


class Form:
    """A signed webhook's fields, each bounded and cleaned, so garbage cannot reach the call flow."""

    def __init__(self, fields: dict[str, str]) -> None:
        self.fields = fields

    def text(self, name: str, limit: int = 64) -> str:
        return self.fields.get(name, "")[:limit].strip()

    @property
    def digits(self) -> str:
        raw = self.text("Digits", 32)
        return raw if _DIGITS.fullmatch(raw) else ""

    @property
    def speech(self) -> str:
        return self.text("SpeechResult", 500)

    def number(self, name: str) -> int | None:
        raw = self.text(name, 12)
        return int(raw) if raw.isdigit() else None

    def url(self, name: str) -> str:
        raw = self.text(name, 1000)
        return raw if raw.startswith(("https://", "http://")) else ""


async def _signed(call: Call[None, None]) -> tuple[Form, Desk]:
    fields = await twilio_webhook(call.request).verified_form(call.request)
    return Form(fields), call.app[DESK]


def _id(call: Call[None, None], name: str) -> UUID | None:
    try:
        return UUID(call.path[name])
    except ValueError:
        return None


def _xml(answer: calls.Answer, desk: Desk) -> web.Response:
    return web.Response(text=twiml(answer, desk), content_type=XML)


def webhook(path: str, summary: str) -> Callable[[RouteHandler], RouteHandler]:
    return api.route("POST", f"/webhooks/twilio{path}", summary=summary, roles=PUBLIC, media_type=XML, signed=True)


@webhook("/calls/incoming", "Twilio: a call to a routing number (its voice URL)")
async def incoming(call: Call[None, None]) -> web.Response:
    """The menu built from the options (or the custom greeting), or voicemail (voicemail-only, outside support
    hours). A number that is not routed hears that it is not in service."""
    form, desk = await _signed(call)
    sid = form.text("CallSid")
    if not sid:
        return _xml(Goodbye(None), desk)
    answer = await calls.incoming(call.app[POOL], desk, sid, form.text("From", 32), form.text("To", 32), utcnow())
    return _xml(answer, desk)


@webhook("/calls/status", "Twilio: a routing-number call changed status (its status callback)")
async def caller_status(call: Call[None, None]) -> web.Response:
    """The caller hanging up stops the dialing and ends a ringing responder's leg."""
    form, desk = await _signed(call)
    await calls.caller_status(call.app[POOL], form.text("CallSid"), form.text("CallStatus", 20), utcnow())
    return _xml(Nothing(), desk)


async def _on_call(call: Call[None, None], action) -> web.Response:  # type: ignore[no-untyped-def]
    form, desk = await _signed(call)
    call_id = _id(call, "call_id")
    answer = Goodbye(None) if call_id is None else await action(form, desk, call_id)
    return _xml(answer, desk)


@webhook("/calls/{call_id}/menu", "Twilio: the caller chose nothing; the menu again")
async def menu(call: Call[None, None]) -> web.Response:
    return await _on_call(call, lambda form, desk, cid: calls.menu_again(call.app[POOL], desk, cid, utcnow()))


@webhook("/calls/{call_id}/choice", "Twilio: the caller's key or words in the menu")
async def choice(call: Call[None, None]) -> web.Response:
    """A matching option opens an alert and dials its policy's responders one after another while the caller
    holds; anything else is the menu again (three times at most)."""
    return await _on_call(
        call, lambda form, desk, cid: calls.choice(call.app[POOL], desk, cid, form.digits, form.speech, utcnow())
    )


@webhook("/calls/{call_id}/hold", "Twilio: what a waiting caller hears (the queue's wait URL)")
async def hold(call: Call[None, None]) -> web.Response:
    return await _on_call(call, lambda form, desk, cid: calls.hold_music(call.app[POOL], desk, cid))


@webhook("/calls/{call_id}/left-queue", "Twilio: the caller left the queue (bridged, hung up, redirected)")
async def left_queue(call: Call[None, None]) -> web.Response:
    return await _on_call(
        call, lambda form, desk, cid: calls.left_queue(call.app[POOL], desk, cid, form.text("QueueResult"), utcnow())
    )


@webhook("/calls/{call_id}/next", "Twilio: where a caller taken off the queue goes (voicemail or goodbye)")
async def next_step(call: Call[None, None]) -> web.Response:
    return await _on_call(call, lambda form, desk, cid: calls.redirected_to(call.app[POOL], desk, cid, utcnow()))


@webhook("/calls/{call_id}/recorded", "Twilio: the caller's voicemail was recorded")
async def recorded(call: Call[None, None]) -> web.Response:
    """The recording is attached to the call's alert, which escalates by the policy's rules."""
    return await _on_call(
        call,
        lambda form, desk, cid: calls.recorded(
            call.app[POOL], desk, cid, form.url("RecordingUrl"), form.number("RecordingDuration"), utcnow()
        ),
    )


async def _on_leg(call: Call[None, None], action) -> web.Response:  # type: ignore[no-untyped-def]
    form, desk = await _signed(call)
    leg_id = _id(call, "leg_id")
    answer = Goodbye(None) if leg_id is None else await action(form, desk, leg_id)
    return _xml(answer if answer is not None else Nothing(), desk)


@webhook("/calls/legs/{leg_id}/answer", "Twilio: a dialed responder picked up")
async def responder_answered(call: Call[None, None]) -> web.Response:
    """They hear the routing number's name and accept with any key or by saying "continue"."""
    return await _on_leg(call, lambda form, desk, lid: calls.responder_answered(call.app[POOL], desk, lid, utcnow()))


@webhook("/calls/legs/{leg_id}/input", "Twilio: the responder's key or words")
async def responder_input(call: Call[None, None]) -> web.Response:
    """Any key or "continue" connects them to the caller; anything else dials the next responder at once."""
    return await _on_leg(
        call,
        lambda form, desk, lid: calls.responder_input(call.app[POOL], desk, lid, form.digits, form.speech, utcnow()),
    )


@webhook("/calls/legs/{leg_id}/status", "Twilio: a responder's leg changed status")
async def leg_status(call: Call[None, None]) -> web.Response:
    """Busy, no-answer, failed, canceled or hung up without accepting: the next responder is dialed at once."""
    return await _on_leg(
        call,
        lambda form, desk, lid: calls.leg_status(
            call.app[POOL], desk, lid, form.text("CallStatus", 20), form.text("CallSid"), utcnow()
        ),
    )


@webhook("/calls/legs/{leg_id}/callback", "Twilio: the responder asking for a callback picked up")
async def callback_answered(call: Call[None, None]) -> web.Response:
    return await _on_leg(call, lambda form, desk, lid: calls.callback_answered(call.app[POOL], lid, utcnow()))


@webhook("/calls/legs/{leg_id}/callback-done", "Twilio: the bridged caller leg of a callback ended")
async def callback_done(call: Call[None, None]) -> web.Response:
    return await _on_leg(
        call,
        lambda form, desk, lid: calls.callback_done(
            call.app[POOL], lid, form.text("DialCallStatus", 20), form.text("DialCallDuration", 12), utcnow()
        ),
    )
