"""Routes: calendar feed tokens, and the iCalendar feeds behind them (public: the token is the secret)."""

from __future__ import annotations

from uuid import UUID

from aiohttp import web
from pydantic import BaseModel

from services.schedule.api import api
from services.schedule.service import feeds
from shared.auth import PUBLIC, WRITERS
from shared.http import Call
from shared.messages import utcnow
from shared.runtime import POOL

ICS = "text/calendar"


class CalendarOut(BaseModel):
    """Feed URLs (relative to this service's public address) a calendar app can subscribe to. Anyone with
    the token can read them; issuing a new token revokes the old one, and deactivating the user revokes it."""

    token: str
    my_shifts: str
    schedule_feed_template: str


@api.route("POST", "/v1/users/{user_id}/calendar-token", summary="Issue (or replace) a user's calendar feed token",
           roles=WRITERS, path_types={"user_id": UUID}, response=CalendarOut, status=201, conflicts=True)
async def issue_calendar_token(call: Call[None, None]) -> CalendarOut:
    token = await feeds.issue_calendar_token(call.app[POOL], call.actor, call.path["user_id"])
    return CalendarOut(
        token=token, my_shifts=f"/ical/{token}/my-shifts.ics",
        schedule_feed_template=f"/ical/{token}/schedules/{{schedule_id}}.ics",
    )


@api.route("GET", "/ical/{token}/my-shifts.ics", summary="iCalendar feed of the token owner's shifts", roles=PUBLIC,
           media_type=ICS)
async def my_shifts_feed(call: Call[None, None]) -> web.Response:
    """Final shifts of the token's user across all schedules, 15 days back to 180 days ahead."""
    body = await feeds.calendar_feed(call.app[POOL], call.path["token"], None, utcnow())
    return web.Response(body=body, content_type=ICS, charset="utf-8")


@api.route("GET", "/ical/{token}/schedules/{schedule_id}.ics", summary="iCalendar feed of a schedule's shifts",
           roles=PUBLIC, path_types={"schedule_id": UUID}, media_type=ICS)
async def schedule_feed(call: Call[None, None]) -> web.Response:
    """Final shifts of one schedule, 15 days back to 180 days ahead."""
    body = await feeds.calendar_feed(call.app[POOL], call.path["token"], call.path["schedule_id"], utcnow())
    return web.Response(body=body, content_type=ICS, charset="utf-8")
