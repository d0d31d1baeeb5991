"""Voice calls through Twilio's REST API, with the TwiML that reads the message and asks for a key press.

The twilio package's own async HTTP client places the call. `base_url` replaces `https://api.twilio.com`
(the local fake, for instance): the client's `api` domain builds every Calls URL from its `base_url`.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import aiohttp
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.rest import Client
from twilio.twiml.voice_response import Gather, VoiceResponse

from services.notifier.providers import Outcome, VoiceCall
from shared.webhooks import CALLS_LOOKBACK, TwilioRest, calls_since

TWILIO_API_URL = "https://api.twilio.com"
# The prompt after the message, by primary language subtag; English for the others.
PRESS_ONE_PROMPTS = {
    "en": "Press 1 to acknowledge.",
    "de": "Drücken Sie die 1, um zu bestätigen.",
    "fr": "Appuyez sur 1 pour confirmer.",
    "es": "Pulse 1 para confirmar.",
    "nl": "Druk op 1 om te bevestigen.",
}
PROMPT_FALLBACK_LANGUAGE = "en-US"
# Said twice, so a callee who picks up mid-sentence still hears it whole before the call ends.
TIMES_SAID = 2


def press_one_prompt(language: str) -> tuple[str, str]:
    """The acknowledgement prompt and the language to say it in, for a message in `language` (BCP 47)."""
    primary = language.split("-", 1)[0].lower()
    if primary in PRESS_ONE_PROMPTS:
        return PRESS_ONE_PROMPTS[primary], language
    return PRESS_ONE_PROMPTS["en"], PROMPT_FALLBACK_LANGUAGE


def voice_twiml(call: VoiceCall) -> str:
    """The TwiML of the call: the message in its language, then "press 1", gathering one key to the callback."""
    prompt, prompt_language = press_one_prompt(call.language)
    response = VoiceResponse()
    for _ in range(TIMES_SAID):
        gather = Gather(input="dtmf", num_digits=1, action=call.callback_url, method="POST", timeout=5)
        gather.say(call.message, language=call.language)
        gather.say(prompt, language=prompt_language)
        response.append(gather)
    response.hangup()
    return str(response)


def outcome_of_refusal(exc: TwilioRestException) -> Outcome:
    """What Twilio refusing a call means: throttling and its own failures pass, the rest will not."""
    description = f"{exc.code}: {exc.msg}"
    if exc.status == 429 or exc.status >= 500:
        return Outcome("retry", error=description)
    return Outcome("failed", error=description)


class TwilioVoice:
    """Places calls through Twilio (a `VoiceProvider`)."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        base_url: str = TWILIO_API_URL,
        timeout_s: float = 10.0,
        ring_timeout_s: int = 30,
    ) -> None:
        self._rest = TwilioRest(account_sid, auth_token, base_url)
        self._timeout_s = timeout_s
        self._ring_timeout_s = ring_timeout_s

    async def call(self, call: VoiceCall) -> Outcome:
        """Place one call; `provider_id` is its call SID."""
        try:
            async with asyncio.timeout(self._timeout_s):
                placed = await self._twilio().api.v2010.account.calls.create_async(
                    to=call.to, from_=call.from_, twiml=voice_twiml(call), timeout=self._ring_timeout_s
                )
        except TwilioRestException as exc:
            return outcome_of_refusal(exc)
        except TimeoutError:
            return Outcome("retry", error=f"no answer within {self._timeout_s:g}s")
        except aiohttp.ClientError as exc:
            return Outcome("retry", error=f"{type(exc).__name__}: {exc}")
        except TwilioException as exc:
            return Outcome("failed", error=str(exc))
        return Outcome("sent", provider_id=placed.sid)

    async def placed(self, call: VoiceCall, since: datetime) -> list[str]:
        async with asyncio.timeout(self._timeout_s):
            found = await self._twilio().api.v2010.account.calls.list_async(
                to=call.to, from_=call.from_, limit=CALLS_LOOKBACK
            )
        return calls_since(found, since)

    async def close(self) -> None:
        await self._rest.close()

    def _twilio(self) -> Client:
        return self._rest.client
