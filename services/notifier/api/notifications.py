"""Routes: acknowledging a notification, from the app or by a key pressed during its voice call."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import VoiceResponse

from services.notifier.api import api
from services.notifier.api.recipients import DeliveryOut
from services.notifier.service import deliveries
from shared.auth import ANYONE, PUBLIC
from shared.http import Call
from shared.messages import utcnow
from shared.runtime import POOL


@dataclass(frozen=True)
class VoiceWebhook:
    """What checking Twilio's callbacks needs: the auth token that signs them and the public base URL Twilio
    was given (it signs the URL it called, which behind the gateway is not the one this process sees)."""

    auth_token: str
    public_url: str


VOICE_WEBHOOK = web.AppKey("voice_webhook", VoiceWebhook)
DELIVERY = {"delivery_id": UUID}


@api.route("POST", "/v1/notifications/{delivery_id}/ack", summary="Acknowledge a notification", roles=ANYONE,
           path_types=DELIVERY, response=DeliveryOut)
async def acknowledge(call: Call[None, None]) -> DeliveryOut:
    """Stops its remaining steps (e.g. the voice call) and tells its sender. Only the user it was for (or an
    admin); anyone else's is a 404. Acknowledging again changes nothing."""
    done = await deliveries.acknowledge(call.app[POOL], call.actor, call.path["delivery_id"], "app", utcnow())
    return DeliveryOut.model_validate(done, from_attributes=True)


@api.route("POST", "/v1/notifications/{delivery_id}/received", summary="The app confirms a push arrived",
           roles=ANYONE, path_types=DELIVERY, response=DeliveryOut)
async def confirm_received(call: Call[None, None]) -> DeliveryOut:
    """Proof of delivery: a critical page whose push no phone confirms within the configured seconds is
    followed by a voice call at once, not at the next step. Only the user's own (else 404)."""
    done = await deliveries.confirm_received(call.app[POOL], call.actor, call.path["delivery_id"], utcnow())
    return DeliveryOut.model_validate(done, from_attributes=True)


@api.route("POST", "/v1/notifications/{delivery_id}/read", summary="Mark a notification read", roles=ANYONE,
           path_types=DELIVERY, response=DeliveryOut)
async def mark_read(call: Call[None, None]) -> DeliveryOut:
    done = await deliveries.mark_read(call.app[POOL], call.actor, call.path["delivery_id"], utcnow())
    return DeliveryOut.model_validate(done, from_attributes=True)


class UnreadQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: UUID | None = Field(default=None, description="Another user's count (admins only).")


class UnreadOut(BaseModel):
    unread: int = Field(description="Notifications neither read nor acknowledged.")


@api.route("GET", "/v1/notifications/unread-count", summary="How many notifications are unread", roles=ANYONE,
           query=UnreadQuery, response=UnreadOut)
async def unread_count(call: Call[None, UnreadQuery]) -> UnreadOut:
    user_id = call.query.user_id or call.actor.user_id
    return UnreadOut(unread=await deliveries.unread_count(call.app[POOL], call.actor, user_id))


@api.route("POST", "/webhooks/twilio/voice/{delivery_id}", summary="Twilio: the key pressed during a voice message",
           roles=PUBLIC, path_types=DELIVERY, media_type="application/xml", signed=True)
async def voice_gather(call: Call[None, None]) -> web.Response:
    """Signed by Twilio (`X-Twilio-Signature` over the public URL and the form fields); anything else is a
    403. Digit 1 acknowledges the notification."""
    request = call.request
    webhook = request.app.get(VOICE_WEBHOOK)
    if webhook is None:
        raise web.HTTPForbidden(text="voice webhooks are not configured")
    # Twilio posts a urlencoded form; anything else cannot carry a valid signature.
    if request.content_type != "application/x-www-form-urlencoded":
        raise web.HTTPForbidden(text="not a signed Twilio form")
    form = await request.post()
    params = {k: str(v) for k, v in form.items()}
    url = webhook.public_url.rstrip("/") + request.path_qs
    signature = request.headers.get("X-Twilio-Signature", "")
    if not RequestValidator(webhook.auth_token).validate(url, params, signature):
        raise web.HTTPForbidden(text="invalid Twilio signature")
    answer = VoiceResponse()
    if params.get("Digits") == "1":
        await deliveries.acknowledge(call.app[POOL], None, call.path["delivery_id"], "voice", utcnow())
        answer.say("Acknowledged. Thank you.")
    else:
        answer.say("Not acknowledged.")
    answer.hangup()
    return web.Response(text=str(answer), content_type="application/xml")
