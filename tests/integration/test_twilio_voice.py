"""TwilioVoice against the local Twilio fake: the call and its TwiML, the key press as a signed webhook."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from twilio.request_validator import RequestValidator

from services.notifier.providers import VoiceCall
from services.notifier.providers.twilio_voice import TwilioVoice
from tools.fakes.twilio import FakeTwilio

CALLEE = "+4915112345678"
CALLER = "+4930123456789"


@dataclass
class AckReceiver:
    """A stand-in for the service's telephony webhook: validates X-Twilio-Signature like it must."""

    auth_token: str
    url: str = ""
    accepted: list[dict[str, str]] = field(default_factory=list)
    refused: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        params = {name: str(value) for name, value in (await request.post()).items()}
        signature = request.headers.get("X-Twilio-Signature", "")
        if not RequestValidator(self.auth_token).validate(str(request.url), params, signature):
            self.refused += 1
            raise web.HTTPForbidden()
        self.accepted.append(params)
        return web.Response(text="<Response><Say>Thank you.</Say></Response>", content_type="application/xml")


@pytest.fixture
async def fake() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio.running() as running:
        yield running


@pytest.fixture
async def receiver(fake: FakeTwilio) -> AsyncIterator[AckReceiver]:
    ack = AckReceiver(fake.auth_token)
    app = web.Application()
    app.router.add_post("/telephony/ack", ack.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    ack.url = f"http://127.0.0.1:{runner.addresses[0][1]}/telephony/ack"
    yield ack
    await runner.cleanup()


@pytest.fixture
async def voice(fake: FakeTwilio) -> AsyncIterator[TwilioVoice]:
    provider = TwilioVoice(fake.account_sid, fake.auth_token, base_url=fake.url, timeout_s=2.0)
    yield provider
    await provider.close()


def voice_call(callback_url: str, to: str = CALLEE, language: str = "de-DE") -> VoiceCall:
    return VoiceCall(
        to=to, from_=CALLER, message="Die Datenbank ist ausgefallen.", language=language, callback_url=callback_url
    )


async def test_the_call_says_the_message_in_its_language_and_gathers_one_key(
    fake: FakeTwilio, receiver: AckReceiver, voice: TwilioVoice
) -> None:
    outcome = await voice.call(voice_call(receiver.url))

    assert outcome.result == "sent"
    [placed] = fake.calls_to(CALLEE)
    assert outcome.provider_id == placed.sid
    assert placed.sid.startswith("CA") and len(placed.sid) == 34
    assert (placed.from_, placed.status) == (CALLER, "queued")
    assert placed.twiml is not None
    gather = ElementTree.fromstring(placed.twiml).find("Gather")
    assert gather is not None
    assert (gather.get("numDigits"), gather.get("action"), gather.get("method")) == ("1", receiver.url, "POST")
    says = gather.findall("Say")
    assert says[0].text == "Die Datenbank ist ausgefallen."
    assert says[0].get("language") == "de-DE"
    assert says[1].text and "1" in says[1].text


async def test_an_unknown_language_gets_the_english_prompt(
    receiver: AckReceiver, fake: FakeTwilio, voice: TwilioVoice
) -> None:
    await voice.call(voice_call(receiver.url, language="fi-FI"))

    [placed] = fake.calls_to(CALLEE)
    says = ElementTree.fromstring(placed.twiml or "").findall("Gather/Say")
    assert (says[0].get("language"), says[1].get("language")) == ("fi-FI", "en-US")
    assert says[1].text == "Press 1 to acknowledge."


async def test_pressing_1_posts_a_webhook_the_validator_accepts(
    fake: FakeTwilio, receiver: AckReceiver, voice: TwilioVoice
) -> None:
    outcome = await voice.call(voice_call(receiver.url))
    assert outcome.provider_id is not None

    pressed = await fake.press(outcome.provider_id, "1")

    assert pressed["webhook"]["status"] == 200
    [params] = receiver.accepted
    assert params["Digits"] == "1"
    assert (params["CallSid"], params["AccountSid"]) == (outcome.provider_id, fake.account_sid)
    assert (params["To"], params["From"], params["CallStatus"]) == (CALLEE, CALLER, "in-progress")


async def test_a_forged_webhook_is_refused(fake: FakeTwilio, receiver: AckReceiver) -> None:
    params = {"CallSid": "CA" + "0" * 32, "AccountSid": fake.account_sid, "Digits": "1"}
    forged = RequestValidator("not-the-auth-token").compute_signature(receiver.url, params)

    async with (
        aiohttp.ClientSession() as session,
        session.post(receiver.url, data=params, headers={"X-Twilio-Signature": forged}) as answer,
    ):
        assert answer.status == 403
    assert (receiver.refused, receiver.accepted) == (1, [])


async def test_the_inspection_endpoint_shows_the_call(
    fake: FakeTwilio, receiver: AckReceiver, voice: TwilioVoice
) -> None:
    await voice.call(voice_call(receiver.url))
    await voice.call(voice_call(receiver.url, to="+15005550006"))

    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{fake.url}/_fake/calls", params={"to": CALLEE}) as answer,
    ):
        calls = (await answer.json())["calls"]

    assert [call["to"] for call in calls] == [CALLEE]
    assert "<Gather" in calls[0]["twiml"]


async def test_wrong_credentials_fail(fake: FakeTwilio, receiver: AckReceiver) -> None:
    provider = TwilioVoice(fake.account_sid, "wrong-token", base_url=fake.url, timeout_s=2.0)
    try:
        outcome = await provider.call(voice_call(receiver.url))
    finally:
        await provider.close()

    assert outcome.result == "failed"
    assert outcome.error and "20003" in outcome.error
    assert fake.calls == []


async def test_an_invalid_number_fails(receiver: AckReceiver, voice: TwilioVoice) -> None:
    outcome = await voice.call(voice_call(receiver.url, to="0151 1234"))

    assert outcome.result == "failed"
    assert outcome.error and "21211" in outcome.error


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_throttling_and_server_trouble_are_retried(
    fake: FakeTwilio, receiver: AckReceiver, voice: TwilioVoice, status: int
) -> None:
    fake.program(CALLEE, status)  # type: ignore[arg-type]

    refused = await voice.call(voice_call(receiver.url))
    later = await voice.call(voice_call(receiver.url))

    assert refused.result == "retry"
    assert later.result == "sent"


async def test_a_slow_answer_is_retried(fake: FakeTwilio, receiver: AckReceiver) -> None:
    fake.program(CALLEE, None, delay_s=0.6)
    provider = TwilioVoice(fake.account_sid, fake.auth_token, base_url=fake.url, timeout_s=0.3)
    try:
        outcome = await provider.call(voice_call(receiver.url))
    finally:
        await provider.close()

    assert outcome.result == "retry"
