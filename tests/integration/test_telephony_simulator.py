"""The telephony simulator (tools/fakes/twilio) playing whole calls against a tiny call router.

The router is an aiohttp app in the test: it answers Twilio's webhooks with TwiML built by twilio's
VoiceResponse, checks every webhook's X-Twilio-Signature with RequestValidator (a refused one fails the test),
and places, cancels and redirects legs with the real twilio REST client pointed at the simulator. The test plays
the router's brain between webhooks: it dials the responders and watches their status callbacks. Simulated time
runs 100 times faster than real time (FakeTwilio's test default).
"""

from __future__ import annotations

import asyncio
import sys
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from twilio.twiml.voice_response import Dial, Gather, VoiceResponse

from services.callrouter.providers import Dial as Leg
from services.callrouter.providers.twilio_calls import TwilioCalls
from tools.fakes.twilio import APPLICATION_ERROR, FakeTwilio, Party, Step

ROUTING = "+4930900100"  # the company's number
CALLER = "+4917100001"
ANNA, BEN, CARL = "+4915100001", "+4915100002", "+4915100003"
EVENTS = ["initiated", "ringing", "answered", "completed"]
GREETING = "Welcome to Acme on-call. Press 2 or say support; press 3 to leave a message."
HOLD_MUSIC = "https://music.example/hold.mp3"


def twiml(response: VoiceResponse) -> web.Response:
    return web.Response(text=str(response), content_type="application/xml")


@dataclass
class Router:
    """Plays the call router: webhooks in, TwiML out, every signature checked."""

    auth_token: str
    client: Client
    base: str = ""
    refused: list[str] = field(default_factory=list)
    posts: dict[str, list[dict[str, str]]] = field(default_factory=lambda: defaultdict(list))
    leg_statuses: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    ringing_legs: list[str] = field(default_factory=list)  # canceled when the caller gives up

    def url(self, path: str) -> str:
        return self.base + path

    async def verified(self, request: web.Request) -> dict[str, str]:
        """The webhook's parameters, if Twilio signed them (the URL called, query string included)."""
        params = {k: str(v) for k, v in (await request.post()).items()} if request.method == "POST" else {}
        signature = request.headers.get("X-Twilio-Signature", "")
        if not RequestValidator(self.auth_token).validate(str(request.url), params, signature):
            self.refused.append(str(request.url))
            raise web.HTTPForbidden()
        if request.method == "GET":
            params = dict(request.query)
        self.posts[request.path].append(params)
        return params

    async def incoming(self, request: web.Request) -> web.Response:
        await self.verified(request)
        response = VoiceResponse()
        gather = Gather(input="dtmf speech", num_digits=1, action=self.url("/menu"), hints="support, billing")
        gather.say(GREETING, language="en-GB", voice="Polly.Amy")
        response.append(gather)
        response.say("We did not receive any input. Goodbye.")
        return twiml(response)

    async def menu(self, request: web.Request) -> web.Response:
        form = await self.verified(request)
        digits, speech = form.get("Digits"), form.get("SpeechResult", "")
        response = VoiceResponse()
        if digits == "2" or "support" in speech:
            response.say("Please hold for the engineer on call.")
            response.enqueue("support", wait_url=self.url("/hold"), action=self.url("/queue-left"))
        elif digits == "3":
            response.say("Leave a message after the beep.")
            response.record(
                action=self.url("/voicemail"), max_length=60, recording_status_callback=self.url("/recording-status")
            )
        elif digits == "4":
            dial = Dial(action=self.url("/dialed"), timeout=15, caller_id=ROUTING)
            dial.number(ANNA, url=self.url("/screen"), status_callback=self.url("/leg-status"),
                        status_callback_event="initiated ringing answered completed")
            response.append(dial)
        elif "billing" in speech:
            response.say("Billing answers on weekdays. Goodbye.")
            response.hangup()
        else:
            response.redirect(self.url("/incoming"))
        return twiml(response)

    async def hold(self, request: web.Request) -> web.Response:
        await self.verified(request)
        response = VoiceResponse()
        response.play(HOLD_MUSIC)
        return twiml(response)

    async def queue_left(self, request: web.Request) -> web.Response:
        form = await self.verified(request)
        if form["QueueResult"] == "hangup":
            for sid in self.ringing_legs:
                await self.client.api.v2010.account.calls(sid).update_async(status="canceled")
        response = VoiceResponse()
        response.say("Thank you for calling Acme. Goodbye.")
        return twiml(response)

    async def responder(self, request: web.Request) -> web.Response:
        await self.verified(request)
        response = VoiceResponse()
        gather = Gather(input="dtmf speech", num_digits=1, action=self.url("/responder/accept"), timeout=5)
        gather.say("An Acme customer is waiting. Press 1 or say continue to take the call.")
        response.append(gather)
        response.say("Nobody took the call. Goodbye.")
        return twiml(response)

    async def accept(self, request: web.Request) -> web.Response:
        form = await self.verified(request)
        response = VoiceResponse()
        if form.get("Digits") == "1" or form.get("SpeechResult") == "continue":
            dial = Dial()
            dial.queue("support")
            response.append(dial)
        else:
            response.say("Fine, we will ask someone else.")
            response.hangup()
        return twiml(response)

    async def leg_status(self, request: web.Request) -> web.Response:
        form = await self.verified(request)
        self.leg_statuses[form["CallSid"]].append(form["CallStatus"])
        return web.Response(text="")

    async def voicemail(self, request: web.Request) -> web.Response:
        await self.verified(request)
        response = VoiceResponse()
        response.say("Thank you, we will call you back.")
        response.hangup()
        return twiml(response)

    async def dialed(self, request: web.Request) -> web.Response:
        form = await self.verified(request)
        response = VoiceResponse()
        if form["DialCallStatus"] != "completed" and len(self.posts["/dialed"]) == 1:
            dial = Dial(action=self.url("/dialed"), timeout=15)
            dial.number(BEN, url=self.url("/screen"))
            response.append(dial)
        else:
            response.say("Goodbye.")
        return twiml(response)

    async def screen(self, request: web.Request) -> web.Response:
        await self.verified(request)
        response = VoiceResponse()
        gather = Gather(num_digits=1, action=self.url("/screen/done"), timeout=3)
        gather.say("A customer is calling. Press 1 to accept.")
        response.append(gather)
        response.hangup()
        return twiml(response)

    async def screened(self, request: web.Request) -> web.Response:
        form = await self.verified(request)
        response = VoiceResponse()
        if form.get("Digits") != "1":
            response.hangup()
        return twiml(response)

    async def room(self, request: web.Request) -> web.Response:
        form = await self.verified(request)
        response = VoiceResponse()
        dial = Dial()
        dial.conference("incident-42", end_conference_on_exit=form["From"] == CALLER, wait_url="")
        response.append(dial)
        response.say("The bridge has closed.")
        return twiml(response)

    async def ok(self, request: web.Request) -> web.Response:
        await self.verified(request)
        return web.Response(text="")

    async def broken(self, request: web.Request) -> web.Response:
        await self.verified(request)
        return web.Response(status=500, text="boom")

    async def not_twiml(self, request: web.Request) -> web.Response:
        await self.verified(request)
        return web.Response(text="hello", content_type="text/plain")

    def app(self) -> web.Application:
        app = web.Application()
        routes = {
            "/incoming": self.incoming, "/menu": self.menu, "/hold": self.hold, "/queue-left": self.queue_left,
            "/responder": self.responder, "/responder/accept": self.accept, "/leg-status": self.leg_status,
            "/voicemail": self.voicemail, "/recording-status": self.ok, "/number-status": self.ok,
            "/dialed": self.dialed, "/screen": self.screen, "/screen/done": self.screened, "/room": self.room,
            "/broken": self.broken, "/not-twiml": self.not_twiml,
        }
        for path, handler in routes.items():
            app.router.add_route("*", path, handler)
        return app


@pytest.fixture
async def fake() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio.running() as running:
        yield running


@pytest.fixture
async def rest(fake: FakeTwilio) -> AsyncIterator[Client]:
    """The real twilio REST client, pointed at the simulator."""
    http = AsyncTwilioHttpClient()
    client = Client(fake.account_sid, fake.auth_token, http_client=http)
    client.api.base_url = fake.url
    yield client
    await http.close()


@pytest.fixture
async def router(fake: FakeTwilio, rest: Client) -> AsyncIterator[Router]:
    router = Router(fake.auth_token, rest)
    runner = web.AppRunner(router.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    router.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    fake.configure_number(ROUTING, router.url("/incoming?tenant=acme"), status_callback=router.url("/number-status"))
    yield router
    await runner.cleanup()
    assert router.refused == [], "the simulator sent a webhook its signature does not cover"


def in_order(events: Iterable[dict[str, Any]], *expected: tuple[str, str, str]) -> bool:
    """Whether (party, kind, text fragment) steps appear in `events` in this order (others may come between);
    an AssertionError showing the transcript names the first step missing."""
    events = list(events)
    steps = iter(expected)
    want = next(steps, None)
    for event in events:
        if want is not None and (event["party"], event["kind"]) == want[:2] and want[2] in event["text"]:
            want = next(steps, None)
    if want is not None:
        lines = "\n".join(f"  {e['sim_t']:7.2f} {e['party']} {e['kind']}: {e['text']}" for e in events)
        raise AssertionError(f"not found in order: {want}\n{lines}")
    return True


async def dial_responder(router: Router, rest: Client, number: str, ring_s: int = 20) -> str:
    placed = await rest.api.v2010.account.calls.create_async(
        to=number, from_=ROUTING, url=router.url("/responder"), status_callback=router.url("/leg-status"),
        status_callback_event=EVENTS, timeout=ring_s,
    )
    return str(placed.sid)


async def test_caller_waits_with_hold_music_a_busy_responder_declines_and_the_next_presses_1_and_is_bridged(
    fake: FakeTwilio, router: Router, rest: Client
) -> None:
    fake.script(ANNA, Party(answer="busy", ring_s=4))
    fake.script(BEN, Party(answer="answer", ring_s=6, steps=(Step.press("1"),)))

    caller = fake.incoming_call(CALLER, ROUTING, Party(steps=(Step.press("2"),)))
    await fake.wait_for(lambda: fake.events(caller.sid, "enqueued"), what="the caller in the queue")

    anna = await dial_responder(router, rest, ANNA)
    await fake.wait_for(lambda: "busy" in router.leg_statuses[anna], what="Anna's busy callback")
    ben = await dial_responder(router, rest, BEN)
    await fake.wait_for(lambda: fake.call(caller.sid).bridged_with, what="the caller connected")

    assert fake.call(caller.sid).bridged_with == [ben]
    assert fake.call(ben).bridged_with == [caller.sid]
    assert router.leg_statuses[anna] == ["initiated", "ringing", "busy"]
    [incoming] = router.posts["/incoming"]
    assert (incoming["Direction"], incoming["CallStatus"], incoming["From"], incoming["To"]) == (
        "inbound", "ringing", CALLER, ROUTING
    )
    assert incoming["AccountSid"] == fake.account_sid and incoming["ApiVersion"] == "2010-04-01"
    assert [p["Digits"] for p in router.posts["/menu"]] == ["2"]

    fake.hang_up(ben)  # the engineer is done
    conversation = await fake.wait_ended(caller.sid)

    assert in_order(
        fake.timeline(since=caller.sid),
        (CALLER, "heard", GREETING),
        (CALLER, "pressed", "2"),
        (CALLER, "heard", "Please hold"),
        (CALLER, "enqueued", "support"),
        (CALLER, "played", HOLD_MUSIC),
        (ANNA, "ringing", ""),
        (ANNA, "declined", "busy"),
        (BEN, "ringing", ""),
        (BEN, "answered", ""),
        (BEN, "heard", "Press 1"),
        (BEN, "pressed", "1"),
        (BEN, "bridged", CALLER),
        (CALLER, "bridged", BEN),
        (BEN, "hung-up", "callee"),
        (CALLER, "heard", "Thank you for calling Acme"),
        (CALLER, "ended", "completed"),
    )
    greeting = next(e for e in fake.events(caller.sid, "heard") if e["text"] == GREETING)
    assert (greeting["language"], greeting["voice"]) == ("en-GB", "Polly.Amy")
    assert [p["QueueResult"] for p in router.posts["/queue-left"]] == ["bridged"]
    assert router.leg_statuses[ben] == ["initiated", "ringing", "in-progress", "completed"]
    assert {c["sid"] for c in conversation["calls"]} == {caller.sid, ben}
    fetched = await rest.api.v2010.account.calls(caller.sid).fetch_async()
    assert (fetched.status, fetched.direction, fetched.from_formatted, fetched.to) == (
        "completed", "inbound", CALLER, ROUTING
    )
    [number_status] = router.posts["/number-status"]
    assert (number_status["CallSid"], number_status["CallStatus"]) == (caller.sid, "completed")
    assert int(number_status["CallDuration"]) > 0


async def test_a_caller_who_hangs_up_while_the_responder_rings_has_the_ringing_leg_canceled(
    fake: FakeTwilio, router: Router, rest: Client
) -> None:
    fake.script(CARL, Party(answer="no-answer"))
    caller = fake.incoming_call(CALLER, ROUTING, Party(steps=(Step.press("2"),)))
    await fake.wait_for(lambda: fake.events(caller.sid, "enqueued"), what="the caller in the queue")
    carl = await dial_responder(router, rest, CARL, ring_s=600)
    router.ringing_legs.append(carl)
    await fake.wait_for(lambda: "ringing" in router.leg_statuses[carl], what="Carl's phone ringing")

    fake.hang_up(caller.sid)
    await fake.wait_ended(caller.sid)
    await fake.wait_for(lambda: fake.call(carl).finished, what="Carl's leg to end")

    assert [p["QueueResult"] for p in router.posts["/queue-left"]] == ["hangup"]
    assert router.leg_statuses[carl] == ["initiated", "ringing", "canceled"]
    assert fake.call(carl).status == "canceled" and fake.call(carl).start_time is None
    assert in_order(fake.events(carl), (CARL, "ringing", ""), (CARL, "canceled", "REST API"))
    assert fake.call(caller.sid).hung_up_by == "caller" and fake.call(caller.sid).bridged_with == []
    assert fake.state.queues["support"].members == []
    # Twilio ignores what an action answers after the caller hung up: nothing more was heard.
    assert "Thank you for calling Acme. Goodbye." not in fake.heard(caller.sid)


async def test_a_voicemail_is_recorded_and_its_media_fetchable(
    fake: FakeTwilio, router: Router, rest: Client
) -> None:
    caller = fake.incoming_call(CALLER, ROUTING, Party(steps=(Step.press("3"),), voicemail_s=12))
    await fake.wait_ended(caller.sid)

    [done] = router.posts["/voicemail"]
    assert (done["RecordingDuration"], done["Digits"]) == ("12", "#")
    recording = await rest.api.v2010.account.recordings(done["RecordingSid"]).fetch_async()
    assert (recording.call_sid, recording.duration, recording.status) == (caller.sid, "12", "completed")
    async with aiohttp.ClientSession() as http:
        async with http.get(done["RecordingUrl"] + ".wav") as wav:
            assert wav.status == 200 and (await wav.read()).startswith(b"RIFF")
        async with http.get(done["RecordingUrl"] + ".mp3") as mp3:
            assert mp3.status == 200 and mp3.content_type == "audio/mpeg" and await mp3.read()
    [status] = router.posts["/recording-status"]
    assert (status["RecordingStatus"], status["RecordingSid"]) == ("completed", done["RecordingSid"])
    assert in_order(
        fake.events(caller.sid),
        (CALLER, "heard", "Leave a message"),
        (CALLER, "heard", "(beep)"),
        (CALLER, "recorded", "12 s"),
        (CALLER, "heard", "we will call you back"),
        (CALLER, "hung-up", "application"),
    )


async def test_speech_input_is_posted_as_speech_result(fake: FakeTwilio, router: Router) -> None:
    caller = fake.incoming_call(CALLER, ROUTING, Party(steps=(Step.say("billing"),)))
    await fake.wait_ended(caller.sid)

    [menu] = router.posts["/menu"]
    assert menu["SpeechResult"] == "billing" and float(menu["Confidence"]) > 0.5 and "Digits" not in menu
    assert fake.heard(caller.sid)[-1] == "Billing answers on weekdays. Goodbye."
    gathering = fake.events(caller.sid, "gathering")[0]
    assert (gathering["input"], gathering["hints"]) == (["dtmf", "speech"], "support, billing")


async def test_a_gather_without_input_goes_on_with_the_next_verb(fake: FakeTwilio, router: Router) -> None:
    caller = fake.incoming_call(CALLER, ROUTING, Party(steps=(Step.silence(),)))
    await fake.wait_ended(caller.sid)

    assert router.posts["/menu"] == []
    assert fake.heard(caller.sid) == [GREETING, "We did not receive any input. Goodbye."]
    assert fake.events(caller.sid, "no-input")


async def test_a_queued_caller_redirected_through_the_rest_api_leaves_the_queue(
    fake: FakeTwilio, router: Router, rest: Client
) -> None:
    caller = fake.incoming_call(CALLER, ROUTING, Party(steps=(Step.press("2"),)))
    await fake.wait_for(lambda: fake.events(caller.sid, "played"), what="hold music")

    busy = VoiceResponse()
    busy.say("Everyone is busy. We will call you back.")
    busy.hangup()
    await rest.api.v2010.account.calls(caller.sid).update_async(twiml=str(busy))
    await fake.wait_ended(caller.sid)

    assert [p["QueueResult"] for p in router.posts["/queue-left"]] == ["redirected"]
    assert in_order(
        fake.events(caller.sid),
        (CALLER, "enqueued", "support"),
        (CALLER, "redirected", "REST API"),
        (CALLER, "heard", "Everyone is busy"),
        (CALLER, "ended", "completed"),
    )
    assert fake.state.queues["support"].members == []
    with pytest.raises(TwilioRestException) as ended:
        await rest.api.v2010.account.calls(caller.sid).update_async(url=router.url("/incoming"))
    assert (ended.value.status, ended.value.code) == (400, 21220)


async def test_a_responder_saying_continue_dequeues_the_caller(fake: FakeTwilio, router: Router, rest: Client) -> None:
    fake.script(CARL, Party(steps=(Step.say("continue"),)))
    caller = fake.incoming_call(CALLER, ROUTING, Party(steps=(Step.say("support please"),)))
    await fake.wait_for(lambda: fake.events(caller.sid, "enqueued"), what="the caller in the queue")
    carl = await dial_responder(router, rest, CARL)
    await fake.wait_for(lambda: fake.call(caller.sid).bridged_with, what="the caller connected")

    rest_update = await rest.api.v2010.account.calls(carl).update_async(status="completed")  # the router hangs up
    await fake.wait_ended(caller.sid)

    assert rest_update.sid == carl
    assert fake.call(caller.sid).bridged_with == [carl]
    assert router.posts["/responder/accept"][0]["SpeechResult"] == "continue"
    assert fake.call(carl).hung_up_by == "api"


async def test_dial_number_tries_the_next_responder_after_a_busy_one_and_screens_before_connecting(
    fake: FakeTwilio, router: Router
) -> None:
    fake.script(ANNA, Party(answer="busy"))
    fake.script(BEN, Party(steps=(Step.press("1"),), talk_s=30))
    caller = fake.incoming_call(CALLER, ROUTING, Party(steps=(Step.press("4"),)))
    await fake.wait_ended(caller.sid)

    first, second = router.posts["/dialed"]
    assert (first["DialCallStatus"], first["DialBridged"]) == ("busy", "false")
    assert (second["DialCallStatus"], second["DialBridged"]) == ("completed", "true")
    ben_leg = fake.call(second["DialCallSid"])
    assert (ben_leg.to, ben_leg.direction, ben_leg.parent_sid) == (BEN, "outbound-dial", caller.sid)
    assert ben_leg.from_ == CALLER  # a <Dial> without callerId shows the caller's number
    assert router.leg_statuses[first["DialCallSid"]] == ["initiated", "ringing", "busy"]
    assert fake.call(caller.sid).bridged_with == [ben_leg.sid]
    assert in_order(
        fake.conversation(caller.sid)["events"],
        (CALLER, "dialed", ANNA),
        (ANNA, "declined", "busy"),
        (CALLER, "dialed", BEN),
        (BEN, "heard", "Press 1 to accept"),
        (BEN, "pressed", "1"),
        (CALLER, "bridged", BEN),
        (BEN, "hung-up", "callee"),
        (CALLER, "heard", "Goodbye."),
    )


async def test_participants_of_a_conference_are_connected_until_it_ends(fake: FakeTwilio, router: Router) -> None:
    fake.configure_number(ROUTING, router.url("/room"))
    host = fake.incoming_call(CALLER, ROUTING)
    guest = fake.incoming_call(CARL, ROUTING)
    await fake.wait_for(lambda: fake.call(guest.sid).bridged_with, what="the guest connected")
    assert fake.call(host.sid).bridged_with == [guest.sid]

    fake.hang_up(host.sid)  # the host ends the conference as they leave
    await fake.wait_ended(host.sid)

    assert fake.heard(guest.sid) == ["The bridge has closed."]
    assert fake.call(guest.sid).status == "completed"


@pytest.mark.parametrize(("path", "status"), [("/broken", 500), ("/not-twiml", 200)])
async def test_a_webhook_answering_no_twiml_is_an_application_error(
    fake: FakeTwilio, router: Router, path: str, status: int
) -> None:
    fake.configure_number(ROUTING, router.url(path))
    caller = fake.incoming_call(CALLER, ROUTING)
    await fake.wait_ended(caller.sid)

    [webhook] = fake.events(caller.sid, "webhook")[:1]
    assert (webhook["url"], webhook["http_status"]) == (router.url(path), status)
    assert fake.events(caller.sid, "application-error")
    assert fake.heard(caller.sid) == [APPLICATION_ERROR]
    assert fake.call(caller.sid).status == "completed"


async def test_get_webhooks_are_signed_over_the_query_they_carry(fake: FakeTwilio, router: Router) -> None:
    fake.configure_number(ROUTING, router.url("/incoming?tenant=acme"), voice_method="GET")
    caller = fake.incoming_call(CALLER, ROUTING, Party(steps=(Step.silence(),)))
    await fake.wait_ended(caller.sid)

    [incoming] = router.posts["/incoming"]
    assert (incoming["tenant"], incoming["CallSid"], incoming["Direction"]) == ("acme", caller.sid, "inbound")


async def test_the_routers_check_refuses_a_forged_signature(fake: FakeTwilio, router: Router) -> None:
    params = {"CallSid": "CA" + "0" * 32, "AccountSid": fake.account_sid, "Digits": "1"}
    forged = RequestValidator("not-the-auth-token").compute_signature(router.url("/menu"), params)
    async with (
        aiohttp.ClientSession() as http,
        http.post(router.url("/menu"), data=params, headers={"X-Twilio-Signature": forged}) as answer,
    ):
        assert answer.status == 403
    assert router.refused == [router.url("/menu")]
    router.refused.clear()


async def test_numbers_are_managed_through_incoming_phone_numbers(
    fake: FakeTwilio, router: Router, rest: Client
) -> None:
    numbers = rest.api.v2010.account.incoming_phone_numbers
    created = await numbers.create_async(
        phone_number="+4940700200", voice_url=router.url("/broken"), status_callback=router.url("/number-status")
    )
    await numbers(created.sid).update_async(voice_url=router.url("/incoming"), voice_method="POST")
    [listed] = await numbers.list_async(phone_number="+4940700200")
    with pytest.raises(TwilioRestException) as taken:
        await numbers.create_async(phone_number="+4940700200", voice_url=router.url("/incoming"))

    caller = fake.incoming_call(CALLER, "+4940700200", Party(steps=(Step.say("billing"),)))
    await fake.wait_ended(caller.sid)

    assert (listed.sid, listed.voice_url, listed.phone_number) == (created.sid, router.url("/incoming"), "+4940700200")
    assert taken.value.code == 21422
    assert router.posts["/incoming"][0]["To"] == "+4940700200"
    assert fake.call(caller.sid).phone_number_sid == created.sid
    with pytest.raises(LookupError):
        fake.incoming_call(CALLER, "+4940999999")


async def test_an_answered_rest_call_is_hung_up_only_by_status_completed(
    fake: FakeTwilio, router: Router, rest: Client
) -> None:
    fake.script(ANNA, Party(ring_s=3))
    waiting = VoiceResponse()
    waiting.pause(length=600)
    placed = await rest.api.v2010.account.calls.create_async(
        to=ANNA, from_=ROUTING, twiml=str(waiting), status_callback=router.url("/leg-status"),
        status_callback_event=EVENTS,
    )
    sid = str(placed.sid)
    assert placed.status == "queued"
    await fake.wait_for(lambda: fake.events(sid, "paused"), what="Anna on the line")

    with pytest.raises(TwilioRestException) as bad:
        await rest.api.v2010.account.calls(sid).update_async(status="busy")
    await rest.api.v2010.account.calls(sid).update_async(status="canceled")  # only queued or ringing calls: no effect
    assert fake.call(sid).status == "in-progress"
    await rest.api.v2010.account.calls(sid).update_async(status="completed")
    await fake.wait_ended(sid)

    assert bad.value.status == 400
    assert router.leg_statuses[sid] == ["initiated", "ringing", "in-progress", "completed"]
    assert fake.call(sid).hung_up_by == "api"
    [listed] = await rest.api.v2010.account.calls.list_async(to=ANNA)
    assert (listed.sid, listed.status, listed.direction) == (sid, "completed", "outbound-api")
    with pytest.raises(TwilioRestException) as missing:
        await rest.api.v2010.account.calls("CA" + "f" * 32).fetch_async()
    assert (missing.value.status, missing.value.code) == (404, 20404)


async def test_the_call_command_prints_what_the_caller_heard(fake: FakeTwilio, router: Router) -> None:
    fake.script(ANNA, Party(answer="busy"))
    fake.script(BEN, Party(steps=(Step.press("1"),), talk_s=20))
    command = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tools.fakes.twilio", "call", "--sim", fake.url, "--to", ROUTING,
        "--from", CALLER, "--press", "4", "--timeout", "60",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(command.communicate(), 60)

    assert command.returncode == 0, err.decode()
    text = out.decode()
    assert f'caller {CALLER}' in text and f'hears "{GREETING}"' in text
    assert "pressed 4" in text and f"dials {ANNA}" in text and "declined the call (busy)" in text
    assert f"connected with {BEN}" in text and "ended:" in text


async def test_the_calls_placed_between_two_numbers_since_an_instant_are_found(
    fake: FakeTwilio, router: Router
) -> None:
    """callrouter's `TwilioCalls.placed` on the real twilio client: how a leg placed just before a crash is found
    again (the latest calls To and From the two numbers, cut at the instant, oldest first)."""
    telephony = TwilioCalls(fake.account_sid, fake.auth_token, base_url=fake.url)
    try:
        fake.script(ANNA, Party(ring_s=600))
        fake.script(BEN, Party(ring_s=600))
        before = datetime.now(UTC) - timedelta(seconds=2)
        leg = Leg(ANNA, ROUTING, router.url("/leg-answer"), router.url("/leg-status"), 30)
        first = await telephony.dial(leg)
        await telephony.dial(Leg(BEN, ROUTING, router.url("/leg-answer"), router.url("/leg-status"), 30))
        await telephony.dial(Leg(ANNA, CALLER, router.url("/leg-answer"), router.url("/leg-status"), 30))
        second = await telephony.dial(leg)

        assert await telephony.placed(leg, before) == [first, second]
        assert await telephony.placed(leg, datetime.now(UTC) + timedelta(seconds=5)) == []
    finally:
        await telephony.close()
