"""Calls through Twilio's REST API with the twilio package's async client. `base_url` replaces
https://api.twilio.com (the local telephony simulator, for instance)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import aiohttp
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.rest import Client

from services.callrouter.providers import Dial, TelephonyError
from shared.webhooks import CALLS_LOOKBACK, TwilioRest, calls_since

TWILIO_API_URL = "https://api.twilio.com"
EVENTS = ["initiated", "ringing", "answered", "completed"]
# Twilio error 21220: the call is not in a state that allows the change (it already ended).
CALL_NOT_LIVE = 21220


class TwilioCalls:
    """A `Telephony` on Twilio."""

    def __init__(self, account_sid: str, auth_token: str, *, base_url: str = TWILIO_API_URL, timeout_s: float = 10.0):
        self._rest = TwilioRest(account_sid, auth_token, base_url)
        self._timeout_s = timeout_s

    async def dial(self, leg: Dial) -> str:
        placed = await self._do(
            lambda calls: calls.create_async(
                to=leg.to,
                from_=leg.from_,
                url=leg.answer_url,
                method="POST",
                status_callback=leg.status_url,
                status_callback_method="POST",
                status_callback_event=EVENTS,
                timeout=leg.ring_timeout_s,
            )
        )
        return str(placed.sid)

    async def placed(self, leg: Dial, since: datetime) -> list[str]:
        # Twilio's own date filter is by day: the latest calls between the two numbers are read and cut here.
        found = await self._do(lambda calls: calls.list_async(to=leg.to, from_=leg.from_, limit=CALLS_LOOKBACK))
        return calls_since(found, since)

    async def redirect(self, call_id: str, url: str) -> None:
        await self._do(lambda calls: calls(call_id).update_async(url=url, method="POST"))

    async def hang_up(self, call_id: str) -> None:
        call = await self._do(lambda calls: calls(call_id).fetch_async())
        if call.status in ("queued", "ringing"):
            status = "canceled"
        elif call.status == "in-progress":
            status = "completed"
        else:
            return
        try:
            await self._do(lambda calls: calls(call_id).update_async(status=status))
        except TelephonyError:
            # it may have ended between the fetch and the update; ask again before giving up
            again = await self._do(lambda calls: calls(call_id).fetch_async())
            if again.status in ("queued", "ringing", "in-progress"):
                raise

    async def close(self) -> None:
        await self._rest.close()

    async def _do(self, action: Callable[[Any], Awaitable[Any]]) -> Any:
        try:
            async with asyncio.timeout(self._timeout_s):
                return await action(self._twilio().api.v2010.account.calls)
        except TwilioRestException as exc:
            retry = exc.status == 429 or exc.status >= 500
            raise TelephonyError(f"twilio {exc.status} {exc.code}: {exc.msg}", retry=retry) from exc
        except TimeoutError as exc:
            raise TelephonyError(f"no answer from twilio within {self._timeout_s:g}s", retry=True) from exc
        except aiohttp.ClientError as exc:
            raise TelephonyError(f"{type(exc).__name__}: {exc}", retry=True) from exc
        except TwilioException as exc:
            raise TelephonyError(str(exc), retry=False) from exc

    def _twilio(self) -> Client:
        return self._rest.client
