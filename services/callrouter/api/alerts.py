"""Routes: call-routing alerts (responders see those of policies they are on, admins all)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from services.callrouter.api import api
from services.callrouter.domain import ALERT_STATUSES, Alert, AlertStatus
from services.callrouter.service import alerts
from shared.auth import ANYONE, WRITERS
from shared.http import Call, next_cursor, read_cursor
from shared.messages import utcnow
from shared.runtime import POOL


class AlertOut(BaseModel):
    id: UUID
    status: AlertStatus
    summary: str
    caller: str = Field(description="The caller's number.")
    policy_id: UUID
    number_id: UUID = Field(description="The routing number that was called.")
    call_id: UUID
    voicemail_url: str | None = Field(description="The caller's recorded message, if one was left.")
    voicemail_seconds: int | None
    escalating: bool = Field(description="Whether pages still go out rule by rule until someone acknowledges.")
    acknowledged_by: UUID | None
    acknowledged_at: datetime | None
    resolved_by: UUID | None
    resolved_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, a: Alert) -> AlertOut:
        return cls(
            id=a.id,
            status=a.status,
            summary=a.summary,
            caller=a.caller,
            policy_id=a.policy_id,
            number_id=a.number_id,
            call_id=a.call_id,
            voicemail_url=a.voicemail_url,
            voicemail_seconds=a.voicemail_s,
            escalating=a.escalating,
            acknowledged_by=a.acknowledged_by,
            acknowledged_at=a.acknowledged_at,
            resolved_by=a.resolved_by,
            resolved_at=a.resolved_at,
            created_at=a.created_at,
            updated_at=a.updated_at,
        )


class EventOut(BaseModel):
    at: datetime
    what: str = Field(description="e.g. incoming, option, dialed, declined, accepted, voicemail left, paged.")
    user_id: UUID | None
    detail: str


class AlertDetailOut(AlertOut):
    from_number: str
    to_number: str
    connected_user_id: UUID | None = Field(description="The responder who accepted the call, if one did.")
    timeline: list[EventOut]


class AlertPage(BaseModel):
    items: list[AlertOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page; null on the last.")


_ONE = "|".join(ALERT_STATUSES)
StatusList = Annotated[str, Field(max_length=100, pattern=rf"^(({_ONE})(,({_ONE}))*)?$", examples=["open"])]


class AlertQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: StatusList = Field(default="", description="Comma-separated statuses to keep; all when empty.")
    cursor: str | None = Field(default=None, max_length=200)
    limit: int = Field(default=50, ge=1, le=200)


ALERT = {"alert_id": UUID}


@api.route(
    "GET", "/v1/call-alerts", summary="List call-routing alerts", roles=ANYONE, query=AlertQuery, response=AlertPage
)
async def list_alerts(call: Call[None, AlertQuery]) -> AlertPage:
    """Newest first. Admins see every alert; others those of policies they are on or calls that reached them."""
    q = call.query
    statuses = tuple(s for s in q.status.split(",") if s)
    found = await alerts.listing(call.app[POOL], call.actor, statuses, read_cursor(q.cursor), q.limit)  # type: ignore[arg-type]
    return AlertPage(
        items=[AlertOut.of(a) for a in found], next_cursor=next_cursor([(a.created_at, a.id) for a in found], q.limit)
    )


def _detail(v: alerts.AlertView) -> AlertDetailOut:
    return AlertDetailOut(
        **AlertOut.of(v.alert).model_dump(),
        from_number=v.from_number,
        to_number=v.to_number,
        connected_user_id=v.connected_user,
        timeline=[EventOut(at=e.at, what=e.what, user_id=e.user_id, detail=e.detail) for e in v.events],
    )


@api.route(
    "GET",
    "/v1/call-alerts/{alert_id}",
    summary="Get an alert with its call's timeline",
    roles=ANYONE,
    path_types=ALERT,
    response=AlertDetailOut,
)
async def get_alert(call: Call[None, None]) -> AlertDetailOut:
    """One the caller may not see is a 404."""
    return _detail(await alerts.view(call.app[POOL], call.actor, call.path["alert_id"]))


@api.route(
    "POST",
    "/v1/call-alerts/{alert_id}/acknowledge",
    summary="Acknowledge an alert (stops escalation)",
    roles=WRITERS,
    path_types=ALERT,
    response=AlertOut,
    conflicts=True,
)
async def acknowledge_alert(call: Call[None, None]) -> AlertOut:
    """Acknowledging again changes nothing; a resolved alert is a 409."""
    actor = call.actor
    done = await alerts.acknowledge(call.app[POOL], actor, call.path["alert_id"], actor.user_id, utcnow(), "in the app")
    return AlertOut.of(done)


@api.route(
    "POST",
    "/v1/call-alerts/{alert_id}/resolve",
    summary="Resolve an alert",
    roles=WRITERS,
    path_types=ALERT,
    response=AlertOut,
)
async def resolve_alert(call: Call[None, None]) -> AlertOut:
    return AlertOut.of(await alerts.resolve(call.app[POOL], call.actor, call.path["alert_id"], utcnow()))


@api.route(
    "POST",
    "/v1/call-alerts/{alert_id}/callback",
    summary="Call me and connect me to the caller",
    roles=WRITERS,
    path_types=ALERT,
    response=AlertOut,
    status=202,
    conflicts=True,
)
async def call_back(call: Call[None, None]) -> AlertOut:
    """Only the one who acknowledged the alert: callrouter dials them first, then bridges the caller's number.
    Both legs appear in the alert's timeline."""
    return AlertOut.of(await alerts.call_back(call.app[POOL], call.actor, call.path["alert_id"], utcnow()))
