"""Routes: coverage requests, the caller's coverable shifts, and the badge count."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from services.coverage.api import api
from services.coverage.domain import MAX_MESSAGE, MAX_RECIPIENTS, MAX_SHIFTS, OPEN, STATUSES, CoverageRequest, Status
from services.coverage.service import requests
from services.coverage.service.commands import Accept, CreateRequest, Decline, ListRequests, ShiftChoice
from services.coverage.store import Box
from shared.auth import ANYONE, WRITERS
from shared.http import Call, Instant, Span, WithStatus, next_cursor, read_cursor
from shared.messages import utcnow
from shared.runtime import POOL

# How long accept waits for schedule's answer before it answers 202 with the request still `accepting`.
ACCEPT_WAIT_S = 1.5


class ShiftIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schedule_id: UUID
    start: Instant
    end: Instant


class RequestIn(BaseModel):
    """Ask colleagues to take some of your shifts in a period."""

    model_config = ConfigDict(extra="forbid")
    recipient_ids: list[UUID] = Field(
        min_length=1,
        max_length=MAX_RECIPIENTS,
        description="Teammates asked; with several, the first to accept takes it.",
    )
    start: Instant = Field(description="Start of the period the shifts lie in.")
    end: Instant = Field(description="End of the period (exclusive).")
    shifts: list[ShiftIn] = Field(
        min_length=1,
        max_length=MAX_SHIFTS,
        description="Your final shifts in the period, as GET /v1/coverage-requests/shifts lists them.",
    )
    message: str = Field(default="", max_length=MAX_MESSAGE)
    remind_minutes_before: int = Field(
        default=60,
        ge=0,
        le=7 * 24 * 60,
        description="Remind the recipients (and warn you) this long before the first shift if nobody has "
        "answered; 0: no reminder.",
    )

    def command(self) -> CreateRequest:
        return CreateRequest(
            tuple(self.recipient_ids),
            self.start,
            self.end,
            tuple(ShiftChoice(s.schedule_id, s.start, s.end) for s in self.shifts),
            self.message,
            timedelta(minutes=self.remind_minutes_before) if self.remind_minutes_before else None,
        )


class AcceptIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    shifts: list[ShiftIn] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_SHIFTS,
        description="Take only these of the request's shifts (partial acceptance); all when left out.",
    )


class DeclineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="", max_length=MAX_MESSAGE)


class ShiftOut(BaseModel):
    schedule_id: UUID
    start: datetime
    end: datetime
    covered: bool | None = Field(description="Once accepted: whether this shift was taken. Null before.")


class RecipientOut(BaseModel):
    user_id: UUID
    decision: str | None
    decided_at: datetime | None


class TransitionOut(BaseModel):
    at: datetime
    actor_id: UUID | None = Field(description="Who made the change; null when the system did (schedule, a deadline).")
    status: Status
    reason: str


class RequestOut(BaseModel):
    id: UUID
    status: Status
    requester_id: UUID
    recipients: list[RecipientOut]
    covering_user_id: UUID | None
    start: datetime
    end: datetime
    shifts: list[ShiftOut]
    message: str
    reason: str = Field(description="Why the request ended as it did (obsolete, expired, declined).")
    remind_at: datetime | None
    expires_at: datetime = Field(description="When a still-pending request expires: the first shift's start.")
    created_at: datetime
    updated_at: datetime
    history: list[TransitionOut]

    @classmethod
    def of(cls, r: CoverageRequest) -> RequestOut:
        return cls(
            id=r.id,
            status=r.status,
            requester_id=r.requester_id,
            recipients=[
                RecipientOut(user_id=x.user_id, decision=x.decision, decided_at=x.decided_at) for x in r.recipients
            ],
            covering_user_id=r.covering_user_id,
            start=r.period_start,
            end=r.period_end,
            shifts=[ShiftOut(schedule_id=s.schedule_id, start=s.start, end=s.end, covered=s.covered) for s in r.shifts],
            message=r.message,
            reason=r.reason,
            remind_at=r.remind_at,
            expires_at=r.first_shift_start,
            created_at=r.created_at,
            updated_at=r.updated_at,
            history=[TransitionOut(at=t.at, actor_id=t.actor_id, status=t.status, reason=t.reason) for t in r.history],
        )


class RequestPage(BaseModel):
    items: list[RequestOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page; null on the last.")


_ONE_STATUS = "|".join(STATUSES)
StatusList = Annotated[
    str, Field(max_length=200, pattern=rf"^(({_ONE_STATUS})(,({_ONE_STATUS}))*)?$", examples=["pending,accepting"])
]


class ListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    box: Box = Field(
        default="received", description="received: addressed to me; sent: mine; all: every request (admins)."
    )
    status: StatusList = Field(default="", description="Comma-separated statuses to keep; all when empty.")
    cursor: str | None = Field(default=None, max_length=200)
    limit: int = Field(default=50, ge=1, le=200)

    def command(self) -> ListRequests:
        statuses = tuple(s for s in self.status.split(",") if s)
        return ListRequests(self.box, statuses, read_cursor(self.cursor), self.limit)  # type: ignore[arg-type]


def _next_cursor(items: list[CoverageRequest], limit: int) -> str | None:
    return next_cursor([(r.created_at, r.id) for r in items], limit)


class BadgeOut(BaseModel):
    pending: int = Field(description="Pending requests addressed to you that you have not answered.")


class MyShiftOut(BaseModel):
    schedule_id: UUID
    schedule_name: str
    start: datetime
    end: datetime
    open_request_id: UUID | None = Field(description="An open request that already asks to hand this shift over.")


REQUEST = {"request_id": UUID}


@api.route(
    "POST",
    "/v1/coverage-requests",
    summary="Ask colleagues to cover some of your shifts",
    roles=WRITERS,
    body=RequestIn,
    response=RequestOut,
    status=201,
    conflicts=True,
)
async def create_request(call: Call[RequestIn, None]) -> RequestOut:
    """The recipients are told at once on their phones. Each shift must be one of your final shifts in the
    period as coverage knows them (GET /v1/coverage-requests/shifts); a shift already in another open
    request is a 409 naming that request."""
    created = await requests.create(call.app[POOL], call.actor, call.body.command(), utcnow())
    return RequestOut.of(created)


@api.route(
    "GET",
    "/v1/coverage-requests",
    summary="Requests I received or sent, newest first",
    roles=ANYONE,
    query=ListQuery,
    response=RequestPage,
)
async def list_requests(call: Call[None, ListQuery]) -> RequestPage:
    found = await requests.listing(call.app[POOL], call.actor, call.query.command())
    return RequestPage(items=[RequestOut.of(r) for r in found], next_cursor=_next_cursor(found, call.query.limit))


@api.route(
    "GET",
    "/v1/coverage-requests/badge",
    summary="How many requests wait for my answer",
    roles=ANYONE,
    response=BadgeOut,
)
async def badge(call: Call[None, None]) -> BadgeOut:
    return BadgeOut(pending=await requests.badge(call.app[POOL], call.actor))


@api.route(
    "GET",
    "/v1/coverage-requests/shifts",
    summary="My shifts a request may hand over, in [from, to)",
    roles=WRITERS,
    query=Span,
    response=list[MyShiftOut],
)
async def my_shifts(call: Call[None, Span]) -> list[MyShiftOut]:
    """Your final shifts overlapping the period as coverage's projection of the published timelines shows
    them, cut to the period: what the create screen lists."""
    found = await requests.my_shifts(call.app[POOL], call.actor, call.query.from_, call.query.to)
    return [
        MyShiftOut(
            schedule_id=m.piece.schedule_id,
            schedule_name=m.schedule_name,
            start=m.piece.start,
            end=m.piece.end,
            open_request_id=m.claimed_by,
        )
        for m in found
    ]


@api.route(
    "GET",
    "/v1/coverage-requests/{request_id}",
    summary="One request with its history",
    roles=ANYONE,
    path_types=REQUEST,
    response=RequestOut,
)
async def get_request(call: Call[None, None]) -> RequestOut:
    """Its requester, its recipients and admins see it; to anyone else it does not exist (404)."""
    return RequestOut.of(await requests.get(call.app[POOL], call.actor, call.path["request_id"]))


@api.route(
    "POST",
    "/v1/coverage-requests/{request_id}/accept",
    summary="Take the request's shifts (or some)",
    roles=WRITERS,
    path_types=REQUEST,
    body=AcceptIn,
    response=RequestOut,
    conflicts=True,
    also={202: "Accepted by you; schedule has not confirmed yet (status `accepting`). GET it again."},
)
async def accept_request(call: Call[AcceptIn, None]) -> RequestOut | WithStatus:
    """Only a recipient may. The request is `accepted` once schedule has moved the shifts to you, normally at
    once: the answer is then 200 with the final state, else 202 while it is still `accepting`. Accepting
    again what you accepted changes nothing; a request someone else took, or one that was cancelled, is a
    409 with its current status."""
    pool = call.app[POOL]
    shifts = call.body.shifts
    chosen = tuple(ShiftChoice(s.schedule_id, s.start, s.end) for s in shifts) if shifts is not None else None
    accepted = await requests.accept(pool, call.actor, Accept(call.path["request_id"], chosen), utcnow())
    if accepted.status in OPEN:
        final = await requests.settled(pool, call.actor, accepted.id, ACCEPT_WAIT_S)
        if final is None:
            return WithStatus(RequestOut.of(accepted), 202)
        accepted = final
    return RequestOut.of(accepted)


@api.route(
    "POST",
    "/v1/coverage-requests/{request_id}/decline",
    summary="Say no to a request",
    roles=WRITERS,
    path_types=REQUEST,
    body=DeclineIn,
    response=RequestOut,
    conflicts=True,
)
async def decline_request(call: Call[DeclineIn, None]) -> RequestOut:
    """Only a recipient may, while it is pending. It ends `declined` when every recipient has declined."""
    cmd = Decline(call.path["request_id"], call.body.reason)
    return RequestOut.of(await requests.decline(call.app[POOL], call.actor, cmd, utcnow()))


@api.route(
    "POST",
    "/v1/coverage-requests/{request_id}/cancel",
    summary="Withdraw my request",
    roles=WRITERS,
    path_types=REQUEST,
    response=RequestOut,
    conflicts=True,
)
async def cancel_request(call: Call[None, None]) -> RequestOut:
    """Only the requester may, and only while nobody has accepted it (else 409 with its current status)."""
    return RequestOut.of(await requests.cancel(call.app[POOL], call.actor, call.path["request_id"], utcnow()))
