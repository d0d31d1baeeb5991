"""Telephony webhooks: the Twilio signature check every voice webhook runs behind.

Twilio signs the URL it called (the public one, behind the gateway) plus the posted form fields with the
account's auth token (HMAC-SHA1, base64, in `X-Twilio-Signature`); twilio's `RequestValidator` checks it.
The process sees another URL than Twilio called, so the signed URL is rebuilt from the configured public
base URL and the path and query the request arrived with.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from twilio.request_validator import RequestValidator

FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class TwilioWebhook:
    """What checking Twilio's callbacks needs: the auth token that signs them and the public base URL Twilio
    was given."""

    auth_token: str
    public_url: str

    def signed_url(self, request: web.Request) -> str:
        return self.public_url.rstrip("/") + request.path_qs

    async def verified_form(self, request: web.Request) -> dict[str, str]:
        """The posted form of a request Twilio signed; anything else is a 403 (never a 4xx that tells a forger
        which part was wrong beyond the reason)."""
        if not self.auth_token:
            raise web.HTTPForbidden(text="Twilio webhooks are not configured")
        # Twilio posts a urlencoded form; anything else cannot carry a valid signature.
        if request.content_type != FORM:
            raise web.HTTPForbidden(text="not a signed Twilio form")
        signature = request.headers.get("X-Twilio-Signature", "")
        if not signature:
            raise web.HTTPForbidden(text="missing X-Twilio-Signature")
        try:
            form = await request.post()
        except (ValueError, UnicodeDecodeError):
            raise web.HTTPForbidden(text="not a signed Twilio form") from None
        params = {k: str(v) for k, v in form.items()}
        if not RequestValidator(self.auth_token).validate(self.signed_url(request), params, signature):
            raise web.HTTPForbidden(text="invalid Twilio signature")
        return params


TWILIO_WEBHOOK = web.AppKey("twilio_webhook", TwilioWebhook)


def twilio_webhook(request: web.Request) -> TwilioWebhook:
    webhook = request.app.get(TWILIO_WEBHOOK)
    if webhook is None:
        raise web.HTTPForbidden(text="Twilio webhooks are not configured")
    return webhook
