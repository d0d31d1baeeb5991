"""The part of Twilio's REST API (2010-04-01) the twilio package's client uses for voice: Calls (create, fetch,
list, update), Recordings (fetch, list, media) and IncomingPhoneNumbers (create, fetch, list, update, delete).
Form-encoded bodies, HTTP basic auth with the account SID and auth token, Twilio's JSON errors."""

from __future__ import annotations

import asyncio
import io
import re
import wave
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from shared.messages import E164_PATTERN
from tools.fakes.twilio.engine import AppError, Simulator, parse_twiml
from tools.fakes.twilio.state import (
    API_VERSION,
    ENDED,
    PhoneNumber,
    TwilioState,
    new_sid,
    utcnow,
)

MAX_TWIML_CHARS = 4000
MAX_RING_TIMEOUT_S = 600
E164 = re.compile(E164_PATTERN)
EVENTS = frozenset({"initiated", "ringing", "answered", "completed"})
METHODS = frozenset({"GET", "POST"})
# HTTP status -> (Twilio error code, message) of the refusals a destination can be programmed with.
PROGRAMMABLE_FAILURES: dict[int, tuple[int, str]] = {
    429: (20429, "Too Many Requests"),
    500: (20500, "Internal Server Error"),
    503: (20503, "Service Unavailable"),
}

STATE = web.AppKey("state", TwilioState)
SIM = web.AppKey("sim", Simulator)
ACCOUNT = f"/{API_VERSION}/Accounts/{{account_sid}}"


def twilio_error(status: int, code: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    """An error in the format of Twilio's REST API."""
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return web.json_response(body, status=status, headers=headers)


def not_found(request: web.Request) -> web.Response:
    return twilio_error(404, 20404, f"The requested resource {request.path} was not found")


def is_absolute_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


@web.middleware
async def basic_auth(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every REST resource but recording media needs the account's SID and auth token (basic auth)."""
    if not request.path.startswith(f"/{API_VERSION}/") or is_media(request):
        return await call_next(handler, request)
    state = request.app[STATE]
    try:
        credentials = aiohttp.BasicAuth.decode(request.headers.get("Authorization", ""))
        valid = credentials.login == state.account_sid and credentials.password == state.auth_token
    except ValueError:
        valid = False
    if not valid:
        return twilio_error(401, 20003, "Authenticate", {"WWW-Authenticate": 'Basic realm="Twilio API"'})
    if request.match_info.get("account_sid") != state.account_sid:
        return not_found(request)
    return await call_next(handler, request)


async def call_next(handler: Any, request: web.Request) -> web.StreamResponse:
    response: web.StreamResponse = await handler(request)
    return response


def is_media(request: web.Request) -> bool:
    return request.method == "GET" and "/Recordings/" in request.path and not request.path.endswith(".json")


async def form_of(request: web.Request) -> tuple[dict[str, str], list[str]]:
    """The posted form (last value of each field) and every StatusCallbackEvent value given."""
    posted = await request.post()
    form = {name: str(value) for name, value in posted.items()}
    events = [e for value in posted.getall("StatusCallbackEvent", []) for e in str(value).replace(",", " ").split()]
    return form, events


def page(request: web.Request, key: str, items: list[dict[str, Any]]) -> web.Response:
    uri = request.path_qs
    return web.json_response(
        {
            key: items,
            "start": 0,
            "end": max(len(items) - 1, 0),
            "page": 0,
            "page_size": max(len(items), 50),
            "first_page_uri": uri,
            "next_page_uri": None,
            "previous_page_uri": None,
            "uri": uri,
        }
    )


# -------------------------------------------------------------------------------------------------- Calls


def refusal_of_twiml(twiml: str) -> web.Response | None:
    if len(twiml) > MAX_TWIML_CHARS:
        return twilio_error(400, 21200, f"Twiml exceeds the maximum length of {MAX_TWIML_CHARS} characters")
    try:
        parse_twiml(twiml)
    except AppError as exc:
        return twilio_error(400, 12100, str(exc))
    return None


def refusal_of_call(form: Mapping[str, str], events: list[str]) -> web.Response | None:
    """Twilio's 400 for call parameters it would refuse, or None."""
    to, from_ = form.get("To"), form.get("From")
    if not to:
        return twilio_error(400, 21201, "No 'To' number is specified")
    if not E164.match(to):
        return twilio_error(400, 21211, f"Invalid 'To' Phone Number: {to}")
    if not from_:
        return twilio_error(400, 21213, "No 'From' number is specified")
    if not E164.match(from_):
        return twilio_error(400, 21212, f"Invalid 'From' Phone Number: {from_}")
    twiml, url = form.get("Twiml"), form.get("Url")
    if not twiml and not url and not form.get("ApplicationSid"):
        return twilio_error(400, 21205, "Url parameter is required.")
    if url and not is_absolute_url(url):
        return twilio_error(400, 21205, f"Url is not a valid URL: {url}")
    for name in ("StatusCallback", "FallbackUrl"):
        if form.get(name) and not is_absolute_url(form[name]):
            return twilio_error(400, 21609, f"Invalid {name}: {form[name]}")
    for name in ("Method", "StatusCallbackMethod", "FallbackMethod"):
        if form.get(name) and form[name].upper() not in METHODS:
            return twilio_error(400, 21609, f"Invalid {name}: {form[name]}")
    unknown = sorted(set(events) - EVENTS)
    if unknown:
        return twilio_error(400, 21626, f"Invalid StatusCallbackEvent: {', '.join(unknown)}")
    timeout = form.get("Timeout")
    if timeout is not None and (not timeout.isdigit() or not 1 <= int(timeout) <= MAX_RING_TIMEOUT_S):
        return twilio_error(400, 21210, f"Timeout must be a whole number of seconds from 1 to {MAX_RING_TIMEOUT_S}")
    if twiml:
        return refusal_of_twiml(twiml)
    return None


async def create_call(request: web.Request) -> web.Response:
    """`POST .../Calls.json`: place a call to `To`; it rings the party scripted for that number."""
    state, sim = request.app[STATE], request.app[SIM]
    form, events = await form_of(request)
    refusal = refusal_of_call(form, events)
    if refusal is not None:
        return refusal
    programmed = state.take_programmed(form["To"])
    if programmed is not None:
        await asyncio.sleep(programmed.delay_s)
        if programmed.status is not None:
            code, message = PROGRAMMABLE_FAILURES[programmed.status]
            headers = {"Retry-After": "1"} if programmed.status == 429 else None
            return twilio_error(programmed.status, code, message, headers)
    call = sim.new_call(
        direction="outbound-api",
        to=form["To"],
        from_=form["From"],
        twiml=form.get("Twiml") or None,
        url=form.get("Url") or None,
        method=form.get("Method", "POST").upper(),
        fallback_url=form.get("FallbackUrl") or None,
        fallback_method=form.get("FallbackMethod", "POST").upper(),
        status_callback=form.get("StatusCallback") or None,
        status_callback_method=form.get("StatusCallbackMethod", "POST").upper(),
        status_callback_events=frozenset(events or ["completed"]),
        timeout_s=float(form.get("Timeout", "60")),
        party=state.parties.get(form["To"]),
    )
    sim.place(call)
    return web.json_response(call.resource(), status=201)


async def list_calls(request: web.Request) -> web.Response:
    query = request.query
    calls = [
        call.resource()
        for call in sorted(request.app[STATE].calls.values(), key=lambda c: c.created, reverse=True)
        if all(
            query.get(name) in (None, value)
            for name, value in (
                ("To", call.to), ("From", call.from_), ("Status", call.status), ("ParentCallSid", call.parent_sid)
            )
        )
    ]
    return page(request, "calls", calls)


async def fetch_call(request: web.Request) -> web.Response:
    call = request.app[STATE].calls.get(request.match_info["sid"])
    if call is None:
        return not_found(request)
    return web.json_response(call.resource())


async def update_call(request: web.Request) -> web.Response:
    """`POST .../Calls/{Sid}.json`: `Status=canceled` ends a queued or ringing call, `Status=completed` hangs up an
    answered one; `Url` or `Twiml` redirects a live call to new TwiML."""
    state, sim = request.app[STATE], request.app[SIM]
    call = state.calls.get(request.match_info["sid"])
    if call is None:
        return not_found(request)
    form, _ = await form_of(request)
    status, url, twiml = form.get("Status"), form.get("Url"), form.get("Twiml")
    if status is not None and status not in ("canceled", "completed"):
        return twilio_error(400, 21218, f"Invalid Status: {status}; canceled or completed")
    if url is not None and not is_absolute_url(url):
        return twilio_error(400, 21205, f"Url is not a valid URL: {url}")
    if twiml:
        refusal = refusal_of_twiml(twiml)
        if refusal is not None:
            return refusal
    if (url or twiml) and call.status in ENDED:
        return twilio_error(400, 21220, "Call is not in-progress. Cannot redirect.")
    if form.get("StatusCallback"):
        call.status_callback = form["StatusCallback"]
    if form.get("StatusCallbackMethod"):
        call.status_callback_method = form["StatusCallbackMethod"].upper()
    if status is not None:
        sim.hang_up_by_api(call, status)
    elif url or twiml:
        sim.redirect_by_api(call, url or None, form.get("Method", "POST").upper(), twiml or None)
    return web.json_response(call.resource())


# ---------------------------------------------------------------------------------------------- Recordings


def silent_wav(seconds: float) -> bytes:
    """A valid WAV file of silence (8 kHz, mono, 16 bit), at most one second long."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(b"\x00\x00" * int(8000 * min(max(seconds, 0.1), 1.0)))
    return out.getvalue()


# An ID3 tag and one silent MPEG-1 Layer III frame header: enough for a client to see an MP3.
SILENT_MP3 = b"ID3\x03\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x00" + b"\x00" * 413


async def recording(request: web.Request) -> web.StreamResponse:
    """`GET .../Recordings/{Sid}.json` (the resource) or `.../Recordings/{Sid}[.wav|.mp3]` (the media)."""
    state = request.app[STATE]
    name = request.match_info["name"]
    sid, _, extension = name.partition(".")
    found = state.recordings.get(sid)
    if found is None or extension not in ("", "json", "wav", "mp3"):
        return not_found(request)
    if extension == "json":
        return web.json_response(found.resource())
    if extension == "mp3":
        return web.Response(body=SILENT_MP3, content_type="audio/mpeg")
    return web.Response(body=silent_wav(found.duration_s), content_type="audio/x-wav")


async def list_recordings(request: web.Request) -> web.Response:
    state = request.app[STATE]
    call_sid = request.match_info.get("call_sid") or request.query.get("CallSid")
    items = [r.resource() for r in state.recordings.values() if call_sid is None or r.call_sid == call_sid]
    return page(request, "recordings", items)


# ------------------------------------------------------------------------------------ IncomingPhoneNumbers


def refusal_of_number(form: Mapping[str, str]) -> web.Response | None:
    for name in ("VoiceUrl", "VoiceFallbackUrl", "StatusCallback"):
        if form.get(name) and not is_absolute_url(form[name]):
            return twilio_error(400, 21502, f"Invalid {name}: {form[name]}")
    for name in ("VoiceMethod", "VoiceFallbackMethod", "StatusCallbackMethod"):
        if form.get(name) and form[name].upper() not in METHODS:
            return twilio_error(400, 21503, f"Invalid {name}: {form[name]}")
    return None


def apply_number_form(number: PhoneNumber, form: Mapping[str, str]) -> None:
    for name, attribute in PhoneNumber.FIELDS.items():
        if name in form:
            value: str | None = form[name] or None
            if attribute.endswith("method"):
                value = (value or "POST").upper()
            setattr(number, attribute, value)
    number.updated = utcnow()


def add_number(state: TwilioState, phone_number: str, form: Mapping[str, str]) -> PhoneNumber:
    number = PhoneNumber(new_sid("PN"), state.account_sid, phone_number)
    apply_number_form(number, form)
    state.numbers[number.sid] = number
    return number


async def create_number(request: web.Request) -> web.Response:
    """`POST .../IncomingPhoneNumbers.json`: give the account a number whose calls go to its VoiceUrl."""
    state = request.app[STATE]
    form, _ = await form_of(request)
    phone_number = form.get("PhoneNumber", "")
    if not E164.match(phone_number):
        return twilio_error(400, 21421, f"PhoneNumber is invalid: {phone_number!r}")
    if any(n.phone_number == phone_number for n in state.numbers.values()):
        return twilio_error(400, 21422, f"PhoneNumber {phone_number} is not available")
    refusal = refusal_of_number(form)
    if refusal is not None:
        return refusal
    return web.json_response(add_number(state, phone_number, form).resource(), status=201)


async def list_numbers(request: web.Request) -> web.Response:
    query = request.query
    numbers = [
        n.resource()
        for n in request.app[STATE].numbers.values()
        if query.get("PhoneNumber") in (None, n.phone_number)
        and query.get("FriendlyName") in (None, n.friendly_name or n.phone_number)
    ]
    return page(request, "incoming_phone_numbers", numbers)


async def fetch_number(request: web.Request) -> web.Response:
    number = request.app[STATE].numbers.get(request.match_info["sid"])
    return not_found(request) if number is None else web.json_response(number.resource())


async def update_number(request: web.Request) -> web.Response:
    number = request.app[STATE].numbers.get(request.match_info["sid"])
    if number is None:
        return not_found(request)
    form, _ = await form_of(request)
    refusal = refusal_of_number(form)
    if refusal is not None:
        return refusal
    apply_number_form(number, form)
    return web.json_response(number.resource())


async def delete_number(request: web.Request) -> web.Response:
    if request.app[STATE].numbers.pop(request.match_info["sid"], None) is None:
        return not_found(request)
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.middlewares.append(basic_auth)
    router = app.router
    router.add_post(f"{ACCOUNT}/Calls.json", create_call)
    router.add_get(f"{ACCOUNT}/Calls.json", list_calls)
    router.add_get(f"{ACCOUNT}/Calls/{{sid}}.json", fetch_call)
    router.add_post(f"{ACCOUNT}/Calls/{{sid}}.json", update_call)
    router.add_get(f"{ACCOUNT}/Calls/{{call_sid}}/Recordings.json", list_recordings)
    router.add_get(f"{ACCOUNT}/Recordings.json", list_recordings)
    router.add_get(f"{ACCOUNT}/Recordings/{{name}}", recording)
    router.add_post(f"{ACCOUNT}/IncomingPhoneNumbers.json", create_number)
    router.add_get(f"{ACCOUNT}/IncomingPhoneNumbers.json", list_numbers)
    router.add_get(f"{ACCOUNT}/IncomingPhoneNumbers/{{sid}}.json", fetch_number)
    router.add_post(f"{ACCOUNT}/IncomingPhoneNumbers/{{sid}}.json", update_number)
    router.add_delete(f"{ACCOUNT}/IncomingPhoneNumbers/{{sid}}.json", delete_number)
