"""Routes: acknowledging a notification, from the app or by a key pressed during its voice call."""

from __future__ import annotations

from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from twilio.twiml.voice_response import VoiceResponse

from services.notifier.api import api
from services.notifier.api.recipients import DeliveryOut
from services.notifier.service import deliveries
from shared.auth import ANYONE, PUBLIC
from shared.http import Call
from shared.messages import utcnow
from shared.runtime import POOL
from shared.webhooks import twilio_webhook

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
    params = await twilio_webhook(call.request).verified_form(call.request)
    answer = VoiceResponse()
    if params.get("Digits") == "1":
        await deliveries.acknowledge(call.app[POOL], None, call.path["delivery_id"], "voice", utcnow())
        answer.say("Acknowledged. Thank you.")
    else:
        answer.say("Not acknowledged.")
    answer.hangup()
    return web.Response(text=str(answer), content_type="application/xml")
