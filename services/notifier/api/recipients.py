"""Routes: notifier's copy of a user, and a user's notification history."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, Field

from services.notifier.api import api
from services.notifier.service import deliveries as service
from shared.auth import ANYONE
from shared.http import Call, Page
from shared.runtime import POOL


class RecipientOut(BaseModel):
    user_id: UUID
    version: int
    name: str
    email: str
    phone: str | None
    time_zone: str
    language: str
    active: bool


class DeliveryOut(BaseModel):
    id: UUID
    user_id: UUID
    idempotency_key: str
    kind: str
    title: str
    body: str
    urgency: str
    data: dict[str, str]
    status: str = Field(description=(
        "planned, sent (a provider accepted a push or placed the call), delivered (a phone confirmed the push "
        "arrived), failed (every channel refused for good), acknowledged, or withdrawn (its sender settled it, "
        "e.g. someone else acknowledged the alert: nothing more is sent)"
    ))
    acknowledgeable: bool
    acknowledged_at: datetime | None
    acknowledged_via: str | None
    created_at: datetime | None
    received_at: datetime | None = Field(description="When a phone confirmed the push arrived.")
    read_at: datetime | None
    withdrawn_at: datetime | None = Field(description="When its sender withdrew it.")
    withdrawn_reason: str | None = Field(description="Why, as its sender said (e.g. acknowledged by someone else).")


class HistoryQuery(Page):
    user_id: UUID | None = None


@api.route("GET", "/v1/recipients/{user_id}", summary="A user as notifier knows them", roles=ANYONE,
           path_types={"user_id": UUID}, response=RecipientOut)
async def get_recipient(call: Call[None, None]) -> RecipientOut:
    """notifier's own copy of a user, built from schedule's user snapshots."""
    user_id = call.path["user_id"]
    call.actor.require_self_or_admin(user_id)
    return RecipientOut.model_validate(dict(await service.get_recipient(call.app[POOL], user_id)))


@api.route("GET", "/v1/notifications", summary="Notification history", roles=ANYONE, query=HistoryQuery,
           response=list[DeliveryOut])
async def list_notifications(call: Call[None, HistoryQuery]) -> list[DeliveryOut]:
    """The caller's own notifications, newest first; an admin may name another `user_id`."""
    user_id = call.query.user_id or call.actor.user_id
    call.actor.require_self_or_admin(user_id)
    deliveries = await service.list_deliveries(call.app[POOL], user_id, call.query.limit, call.query.offset)
    return [DeliveryOut.model_validate(d, from_attributes=True) for d in deliveries]
