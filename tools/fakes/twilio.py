"""A local fake of Twilio's REST API for outbound calls, and of the callee pressing keys.

`POST /2010-04-01/Accounts/{AccountSid}/Calls.json` takes the form fields the twilio package sends, checks HTTP
basic auth (account SID + auth token), validates the numbers (E.164) and the call instructions, and answers
like Twilio: 201 with the call resource, or Twilio's error JSON (`code`, `message`, `more_info`, `status`).
"The phone" is `GET /_fake/calls?to=`; `POST /_fake/calls/{sid}/press?digits=1` makes the callee press keys:
the fake reads the call's TwiML (inline `Twiml`, or fetched from `Url`), finds its `<Gather>` and posts the
digits to the Gather's `action`, signed with `X-Twilio-Signature` like Twilio signs webhooks.
`POST /_fake/calls/{sid}/complete?status=completed` ends the call and posts its `StatusCallback`.
Failures are programmed per destination number (`POST /_fake/program`).

    python -m tools.fakes.twilio --port 9412 [--account-sid AC... --auth-token ...]

Not emulated: ringing and answering on their own, speech, recordings, machine detection, `<Dial>`, TwiML
verbs after the Gather, API keys (only the account's own SID and auth token authenticate), rate limits
other than the programmed ones.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import secrets
import xml.etree.ElementTree as ElementTree
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, Literal
from urllib.parse import urlencode, urljoin, urlsplit

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator

from shared.messages import E164_PATTERN

API_VERSION = "2010-04-01"
DEV_ACCOUNT_SID = "AC" + "0f" * 16
DEV_AUTH_TOKEN = "fa4e" * 8
MAX_TWIML_CHARS = 4000
WEBHOOK_TIMEOUT_S = 10.0
E164 = re.compile(E164_PATTERN)

FailureStatus = Literal[429, 500, 503]
# HTTP status -> (Twilio error code, message) of the refusals a destination can be programmed with.
PROGRAMMABLE_FAILURES: dict[int, tuple[int, str]] = {
    429: (20429, "Too Many Requests"),
    500: (20500, "Internal Server Error"),
    503: (20503, "Service Unavailable"),
}


def twilio_error(status: int, code: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    """An error in the format of Twilio's REST API."""
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return web.json_response(body, status=status, headers=headers)


def new_sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def rfc2822(moment: datetime) -> str:
    return format_datetime(moment)


@dataclass
class PlacedCall:
    """One call the fake was asked to place, and what happened to it since."""

    sid: str
    account_sid: str
    to: str
    from_: str
    twiml: str | None
    url: str | None
    method: str
    status_callback: str | None
    status_callback_method: str
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    status: str = "queued"
    digits_pressed: list[str] = field(default_factory=list)

    def resource(self) -> dict[str, Any]:
        """The call as Twilio's REST API shows it."""
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{self.sid}"
        return {
            "sid": self.sid,
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "date_created": rfc2822(self.created),
            "date_updated": rfc2822(self.created),
            "direction": "outbound-api",
            "to": self.to,
            "to_formatted": self.to,
            "from": self.from_,
            "from_formatted": self.from_,
            "status": self.status,
            "parent_call_sid": None,
            "phone_number_sid": None,
            "start_time": None,
            "end_time": None,
            "duration": None,
            "price": None,
            "price_unit": "USD",
            "answered_by": None,
            "annotation": None,
            "forwarded_from": None,
            "group_sid": None,
            "caller_name": None,
            "queue_time": "0",
            "trunk_sid": None,
            "uri": f"{uri}.json",
            "subresource_uris": {
                name: f"{uri}/{name.title().replace('_', '')}.json"
                for name in (
                    "notifications",
                    "recordings",
                    "payments",
                    "events",
                    "siprec",
                    "streams",
                    "user_defined_message_subscriptions",
                    "user_defined_messages",
                )
            },
        }

    def webhook_params(self) -> dict[str, str]:
        """The parameters Twilio posts to every webhook of this call."""
        return {
            "AccountSid": self.account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": self.sid,
            "CallStatus": self.status,
            "Called": self.to,
            "Caller": self.from_,
            "Direction": "outbound-api",
            "From": self.from_,
            "To": self.to,
        }

    def recorded(self) -> dict[str, Any]:
        """The call as the inspection endpoint shows it."""
        return self.resource() | {
            "twiml": self.twiml,
            "url": self.url,
            "status_callback": self.status_callback,
            "digits_pressed": self.digits_pressed,
        }


@dataclass
class Programmed:
    """What the fake does with the next calls to one number: refuse with `status` (None: accept), after
    `delay_s`, for `times` calls (None: until reprogrammed)."""

    status: FailureStatus | None
    times: int | None = 1
    delay_s: float = 0.0


@dataclass
class TwilioState:
    """The account, the calls placed, and what the fake is told to do."""

    account_sid: str
    auth_token: str
    calls: dict[str, PlacedCall] = field(default_factory=dict)
    programmed: dict[str, Programmed] = field(default_factory=dict)

    def program(self, to: str, status: FailureStatus | None, *, times: int | None = 1, delay_s: float = 0.0) -> None:
        """Make the next `times` calls to `to` fail with `status` (or just be slow when status is None)."""
        self.programmed[to] = Programmed(status, times, delay_s)

    def take_programmed(self, to: str) -> Programmed | None:
        programmed = self.programmed.get(to)
        if programmed is not None and programmed.times is not None:
            programmed.times -= 1
            if programmed.times <= 0:
                del self.programmed[to]
        return programmed

    def calls_to(self, to: str | None = None) -> list[PlacedCall]:
        return [call for call in self.calls.values() if to is None or call.to == to]

    def sign(self, url: str, params: Mapping[str, str]) -> str:
        """The X-Twilio-Signature Twilio puts on a webhook to `url` with `params`."""
        return str(RequestValidator(self.auth_token).compute_signature(url, params))


STATE = web.AppKey("state", TwilioState)
HTTP = web.AppKey("http", aiohttp.ClientSession)


def authenticated(request: web.Request, state: TwilioState) -> bool:
    header = request.headers.get("Authorization", "")
    try:
        credentials = aiohttp.BasicAuth.decode(header)
    except ValueError:
        return False
    return secrets.compare_digest(credentials.login, state.account_sid) and secrets.compare_digest(
        credentials.password, state.auth_token
    )


def is_absolute_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def refusal_of_call(form: Mapping[str, str]) -> web.Response | None:
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
    if twiml:
        if len(twiml) > MAX_TWIML_CHARS:
            return twilio_error(400, 21200, f"Twiml exceeds the maximum length of {MAX_TWIML_CHARS} characters")
        try:
            root = ElementTree.fromstring(twiml)
        except ElementTree.ParseError as exc:
            return twilio_error(400, 12100, f"Document parse failure: {exc}")
        if root.tag != "Response":
            return twilio_error(400, 12100, "Document parse failure: the root element must be <Response>")
    return None


async def create_call(request: web.Request) -> web.Response:
    """`POST /2010-04-01/Accounts/{AccountSid}/Calls.json`."""
    state = request.app[STATE]
    if not authenticated(request, state):
        return web.json_response(
            {
                "code": 20003,
                "message": "Authenticate",
                "more_info": "https://www.twilio.com/docs/errors/20003",
                "status": 401,
            },
            status=401,
            headers={"WWW-Authenticate": 'Basic realm="Twilio API"'},
        )
    if request.match_info["account_sid"] != state.account_sid:
        return twilio_error(404, 20404, f"The requested resource {request.path} was not found")
    form = {name: str(value) for name, value in (await request.post()).items()}
    refusal = refusal_of_call(form)
    if refusal is not None:
        return refusal
    programmed = state.take_programmed(form["To"])
    if programmed is not None:
        await asyncio.sleep(programmed.delay_s)
        if programmed.status is not None:
            code, message = PROGRAMMABLE_FAILURES[programmed.status]
            headers = {"Retry-After": "1"} if programmed.status == 429 else None
            return twilio_error(programmed.status, code, message, headers)
    call = PlacedCall(
        sid=new_sid("CA"),
        account_sid=state.account_sid,
        to=form["To"],
        from_=form["From"],
        twiml=form.get("Twiml"),
        url=form.get("Url"),
        method=form.get("Method", "POST").upper(),
        status_callback=form.get("StatusCallback"),
        status_callback_method=form.get("StatusCallbackMethod", "POST").upper(),
    )
    state.calls[call.sid] = call
    return web.json_response(call.resource(), status=201)


async def post_webhook(request: web.Request, url: str, method: str, params: Mapping[str, str]) -> tuple[int, str]:
    """Call the application's webhook like Twilio does: signed, form-encoded (POST) or in the query (GET)."""
    state = request.app[STATE]
    if method == "GET":
        signed_url = f"{url}{'&' if urlsplit(url).query else '?'}{urlencode(params)}"
        signature, data = state.sign(signed_url, {}), None
    else:
        signed_url, signature, data = url, state.sign(url, params), dict(params)
    headers = {"X-Twilio-Signature": signature, "User-Agent": "TwilioProxy/1.1"}
    timeout = aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT_S)
    async with request.app[HTTP].request(method, signed_url, data=data, headers=headers, timeout=timeout) as answer:
        return answer.status, await answer.text()


async def call_instructions(request: web.Request, call: PlacedCall) -> str:
    """The TwiML the call runs: the inline Twiml, or what its Url answers once the callee picks up."""
    if call.twiml is not None:
        return call.twiml
    if call.url is None:
        raise web.HTTPConflict(text="the call has neither Twiml nor Url (ApplicationSid is not emulated)")
    status, body = await post_webhook(request, call.url, call.method, call.webhook_params())
    if status != 200:
        raise web.HTTPBadGateway(text=f"the call's Url answered {status}: {body[:200]}")
    return body


def find_gather(twiml: str) -> ElementTree.Element:
    try:
        gather = ElementTree.fromstring(twiml).find(".//Gather")
    except ElementTree.ParseError as exc:
        raise web.HTTPBadGateway(text=f"the call's TwiML does not parse: {exc}") from exc
    if gather is None:
        raise web.HTTPConflict(text="the call's TwiML has no <Gather>")
    return gather


async def press(request: web.Request) -> web.Response:
    """`POST /_fake/calls/{sid}/press?digits=1`: the callee picks up and presses keys during the Gather."""
    state = request.app[STATE]
    call = state.calls.get(request.match_info["sid"])
    if call is None:
        raise web.HTTPNotFound(text="no such call")
    digits = request.query.get("digits", "1")
    call.status = "in-progress"
    gather = find_gather(await call_instructions(request, call))
    num_digits = gather.get("numDigits")
    if num_digits is not None:
        digits = digits[: int(num_digits)]
    action = gather.get("action") or call.url
    if not action:
        raise web.HTTPConflict(text="the Gather has no action and the call no Url to post the digits to")
    action = urljoin(call.url or "", action)
    params = call.webhook_params() | {"Digits": digits, "FinishedOnKey": "", "msg": "Gather End"}
    status, body = await post_webhook(request, action, (gather.get("method") or "POST").upper(), params)
    call.digits_pressed.append(digits)
    return web.json_response(
        {"sid": call.sid, "digits": digits, "webhook": {"url": action, "status": status, "body": body}}
    )


async def complete(request: web.Request) -> web.Response:
    """`POST /_fake/calls/{sid}/complete?status=completed`: the call ends; its StatusCallback is told."""
    state = request.app[STATE]
    call = state.calls.get(request.match_info["sid"])
    if call is None:
        raise web.HTTPNotFound(text="no such call")
    call.status = request.query.get("status", "completed")
    webhook: dict[str, Any] | None = None
    if call.status_callback:
        params = call.webhook_params() | {
            "CallDuration": "0" if call.status != "completed" else "30",
            "Timestamp": rfc2822(datetime.now(UTC)),
            "SequenceNumber": "0",
        }
        status, body = await post_webhook(request, call.status_callback, call.status_callback_method, params)
        webhook = {"url": call.status_callback, "status": status, "body": body}
    return web.json_response({"sid": call.sid, "status": call.status, "webhook": webhook})


async def list_calls(request: web.Request) -> web.Response:
    """What the phones rang with: `GET /_fake/calls?to=`."""
    calls = request.app[STATE].calls_to(request.query.get("to"))
    return web.json_response({"calls": [call.recorded() for call in calls]})


async def program_number(request: web.Request) -> web.Response:
    """`POST /_fake/program {"to", "status", "times", "delay_s"}` (status 429, 500, 503 or null: slow success)."""
    spec = await request.json()
    status = spec.get("status")
    if status is not None and status not in PROGRAMMABLE_FAILURES:
        raise web.HTTPBadRequest(text=f"status must be one of {sorted(PROGRAMMABLE_FAILURES)} or null")
    request.app[STATE].program(spec["to"], status, times=spec.get("times", 1), delay_s=spec.get("delay_s", 0.0))
    return web.json_response({"programmed": spec["to"]})


async def webhook_client(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession() as session:
        app[HTTP] = session
        yield


def create_app(state: TwilioState) -> web.Application:
    """The fake's aiohttp application over `state`."""
    app = web.Application()
    app[STATE] = state
    app.cleanup_ctx.append(webhook_client)
    app.router.add_post(f"/{API_VERSION}/Accounts/{{account_sid}}/Calls.json", create_call)
    app.router.add_get("/_fake/calls", list_calls)
    app.router.add_post("/_fake/calls/{sid}/press", press)
    app.router.add_post("/_fake/calls/{sid}/complete", complete)
    app.router.add_post("/_fake/program", program_number)
    return app


@dataclass
class FakeTwilio:
    """A running fake: its `url` (the base URL to point the twilio client at), the credentials it accepts,
    and its state to inspect and program."""

    url: str
    state: TwilioState

    @property
    def account_sid(self) -> str:
        return self.state.account_sid

    @property
    def auth_token(self) -> str:
        return self.state.auth_token

    @property
    def calls(self) -> list[PlacedCall]:
        return list(self.state.calls.values())

    def calls_to(self, to: str) -> list[PlacedCall]:
        """The calls placed to one number."""
        return self.state.calls_to(to)

    def program(self, to: str, status: FailureStatus | None, *, times: int | None = 1, delay_s: float = 0.0) -> None:
        """Make the next `times` calls to `to` fail with `status` (None: succeed, after `delay_s`)."""
        self.state.program(to, status, times=times, delay_s=delay_s)

    async def press(self, sid: str, digits: str = "1") -> dict[str, Any]:
        """Make the callee of call `sid` press `digits`; returns what the Gather's action webhook answered."""
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.url}/_fake/calls/{sid}/press", params={"digits": digits}) as answer,
        ):
            answer.raise_for_status()
            result: dict[str, Any] = await answer.json()
            return result

    @classmethod
    @contextlib.asynccontextmanager
    async def running(
        cls,
        account_sid: str | None = None,
        auth_token: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> AsyncIterator[FakeTwilio]:
        """Serve the fake in this event loop on `port` (0: a free one) until the block ends; credentials are
        made up unless given."""
        state = TwilioState(account_sid or new_sid("AC"), auth_token or secrets.token_hex(16))
        runner = web.AppRunner(create_app(state), access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
            yield cls(f"http://{host}:{runner.addresses[0][1]}", state)
        finally:
            await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description="Local fake of Twilio's REST API for outbound calls.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--account-sid", default=DEV_ACCOUNT_SID)
    parser.add_argument("--auth-token", default=DEV_AUTH_TOKEN)
    args = parser.parse_args()
    print(f"fake Twilio on http://{args.host}:{args.port} for account {args.account_sid}", flush=True)
    web.run_app(create_app(TwilioState(args.account_sid, args.auth_token)), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
