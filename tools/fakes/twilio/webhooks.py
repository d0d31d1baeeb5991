"""Webhooks as Twilio sends them: form-encoded (POST) or in the query (GET), signed with `X-Twilio-Signature`
over the exact URL called (query string included) plus the sorted POST parameters, and recorded in the call's
transcript with what the application answered."""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import aiohttp

from tools.fakes.twilio.state import Call, TwilioState

# Twilio gives up on a webhook after 15 s (its default timeout); so does the simulator (real seconds).
WEBHOOK_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Answer:
    """What a webhook answered: HTTP status and body, or `error` when nothing usable came back."""

    url: str
    method: str
    status: int | None
    body: str
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not None and 200 <= self.status < 300

    def twiml(self) -> ElementTree.Element | None:
        """The `<Response>` element the body holds, or None."""
        if not self.ok:
            return None
        try:
            root = ElementTree.fromstring(self.body)
        except ElementTree.ParseError:
            return None
        return root if root.tag == "Response" else None

    def to_json(self) -> dict[str, object]:
        return {"url": self.url, "method": self.method, "status": self.status, "body": self.body, "error": self.error}


def signed_request(
    state: TwilioState, url: str, method: str, params: Mapping[str, str]
) -> tuple[str, str, dict[str, str] | None]:
    """The URL to call, its signature, and the form body (None for GET, whose parameters go in the query)."""
    if method == "GET":
        called = f"{url}{'&' if urlsplit(url).query else '?'}{urlencode(params)}"
        return called, state.sign(called, {}), None
    return url, state.sign(url, params), dict(params)


async def send(
    state: TwilioState,
    http: aiohttp.ClientSession,
    call: Call | None,
    url: str,
    method: str,
    params: Mapping[str, str],
    purpose: str,
) -> Answer:
    """Call the application's webhook like Twilio does and note it (URL, method, answer) in `call`'s transcript."""
    method = method.upper() if method.upper() in ("GET", "POST") else "POST"
    called, signature, data = signed_request(state, url, method, params)
    headers = {
        "X-Twilio-Signature": signature,
        "User-Agent": "TwilioProxy/1.1",
        "I-Twilio-Idempotency-Token": secrets.token_hex(16),
        "Accept": "*/*",
    }
    timeout = aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT_S)
    try:
        async with http.request(method, called, data=data, headers=headers, timeout=timeout) as response:
            answer = Answer(url, method, response.status, await response.text(errors="replace"))
    except TimeoutError:
        answer = Answer(url, method, None, "", f"no answer within {WEBHOOK_TIMEOUT_S:g}s")
    except (aiohttp.ClientError, ValueError) as exc:
        answer = Answer(url, method, None, "", f"{type(exc).__name__}: {exc}")
    if call is not None:
        outcome = str(answer.status) if answer.error is None else answer.error
        call.note(
            "webhook",
            f"{purpose}: {method} {url} -> {outcome}",
            purpose=purpose,
            url=url,
            method=method,
            params=dict(params),
            http_status=answer.status,
            error=answer.error,
        )
    return answer
