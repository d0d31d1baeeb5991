"""HTTP routes of the notifier service."""

from __future__ import annotations

from uuid import UUID

from aiohttp import web
from pydantic import BaseModel

from services.notifier import store
from shared.errors import NotFound
from shared.http import Api, Page, json_response, parse_param, principal, read_query
from shared.runtime import POOL

api = Api("notifier", "1.0.0", "Push and voice notifications: devices, preferences, delivery history.")


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
    title: str
    body: str
    urgency: str
    status: str


class HistoryQuery(Page):
    user_id: UUID | None = None


@api.route(
    "GET",
    "/v1/recipients/{user_id}",
    summary="A user as notifier knows them",
    response=RecipientOut,
    path_types={"user_id": UUID},
)
async def get_recipient(request: web.Request) -> web.Response:
    """notifier's own copy of a user, built from schedule's user snapshots."""
    user_id = parse_param(request, "user_id", UUID)
    principal(request).require_self_or_admin(user_id)
    row = await store.get_recipient(request.app[POOL], user_id)
    if row is None:
        raise NotFound(f"recipient {user_id}")
    return json_response(RecipientOut.model_validate(dict(row)))


@api.route("GET", "/v1/notifications", summary="Notification history", response=list[DeliveryOut], query=HistoryQuery)
async def list_notifications(request: web.Request) -> web.Response:
    """The caller's own notifications, newest first; an admin may name another `user_id`."""
    query = read_query(request, HistoryQuery)
    actor = principal(request)
    user_id = query.user_id or UUID(actor.user_id)
    actor.require_self_or_admin(user_id)
    deliveries = await store.list_deliveries(request.app[POOL], user_id, limit=query.limit, offset=query.offset)
    return json_response([DeliveryOut.model_validate(d, from_attributes=True) for d in deliveries])
