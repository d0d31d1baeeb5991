"""Message contracts exchanged over Kafka.

Every message carries the same envelope (`event_id`, `occurred_at`, `type`, `schema_version`) and the id of
the entity it is about. Events are past tense, commands imperative. Snapshots carry the whole current state
and a monotonically increasing `version`, so a consumer that replays a topic rebuilds its projection and
can ignore a snapshot older than what it already holds.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, ClassVar, Literal
from uuid import UUID, uuid4

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator


def utcnow() -> datetime:
    return datetime.now(UTC)


# Every instant the platform accepts from outside (HTTP or Kafka) lies in [EARLIEST, LATEST): far from
# datetime's own ends, so no arithmetic on an accepted value (look-backs, horizons, windows) can overflow.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
INSTANT_RANGE = f"from {EARLIEST:%Y-%m-%d} to before {LATEST:%Y-%m-%d}"


def in_range_utc(value: datetime) -> datetime:
    if not EARLIEST <= value < LATEST:
        raise ValueError(f"must lie {INSTANT_RANGE}")
    return value.astimezone(UTC)


Instant = Annotated[AwareDatetime, AfterValidator(in_range_utc)]
"""An aware instant inside the platform's range, held in UTC."""


class Message(BaseModel):
    """The envelope shared by every event and command."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    entity_field: ClassVar[str]

    event_id: UUID = Field(default_factory=uuid4)
    occurred_at: AwareDatetime = Field(default_factory=utcnow)
    type: str
    schema_version: int = 1

    @field_validator("occurred_at")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @property
    def key(self) -> str:
        """The partition key: the id of the entity the message is about."""
        return str(getattr(self, self.entity_field))


# The platform's shared vocabulary: every service, the API and the domain rules use these, never their own copy.
Role = Literal["admin", "responder", "observer"]
E164_PATTERN = r"^\+[1-9]\d{6,14}$"
E164 = Annotated[str, Field(pattern=E164_PATTERN, examples=["+4915112345678"])]


class UserSnapshot(Message):
    """The whole current state of one user, published by schedule on every change."""

    entity_field: ClassVar[str] = "user_id"
    type: Literal["UserSnapshot"] = "UserSnapshot"

    user_id: UUID
    version: int = Field(ge=1)
    name: str
    email: str
    phone: E164 | None = None
    time_zone: str
    language: str
    role: Role
    active: bool


class TeamSnapshot(Message):
    """The whole current state of one team, published by schedule on every change."""

    entity_field: ClassVar[str] = "team_id"
    type: Literal["TeamSnapshot"] = "TeamSnapshot"

    team_id: UUID
    version: int = Field(ge=1)
    name: str
    member_ids: list[UUID]


Urgency = Literal["low", "high", "critical"]


class SendNotification(Message):
    """Ask notifier to tell one user something on their devices.

    `idempotency_key` names the thing the user is told about (e.g. `coverage-request:<id>:created`): two
    commands with the same key never page the user twice.
    """

    entity_field: ClassVar[str] = "user_id"
    type: Literal["SendNotification"] = "SendNotification"

    user_id: UUID
    idempotency_key: str = Field(min_length=1, max_length=200)
    title: str = Field(max_length=200)
    body: str = Field(max_length=2000)
    urgency: Urgency = "high"
    data: dict[str, str] = Field(default_factory=dict)
    # What it is about (e.g. "alert", "coverage_request"), for the app to group and route it.
    kind: str = Field(default="notification", min_length=1, max_length=64)
    # A page someone must answer: the user's later steps (e.g. a call after 2 minutes) run until they
    # acknowledge it, and the acknowledgement is published for the sender. Otherwise only the immediate
    # steps run.
    acknowledgeable: bool = False


class WithdrawNotifications(Message):
    """Stop the remaining steps of the user's notifications whose idempotency key starts with `key_prefix` (the
    sender's thing is settled: e.g. someone else acknowledged the alert). Already delivered pushes stay; nothing
    more is sent.

    Published on the notification commands keyed by the user, like SendNotification, so it comes after that
    user's SendNotification for the same thing.
    """

    entity_field: ClassVar[str] = "user_id"
    type: Literal["WithdrawNotifications"] = "WithdrawNotifications"

    user_id: UUID
    key_prefix: str = Field(min_length=1, max_length=200)
    # Why, for the user's history (e.g. "acknowledged by someone else").
    reason: str = Field(default="", max_length=200)


class NotificationQueued(Message):
    """notifier accepted a SendNotification and recorded a delivery for it."""

    entity_field: ClassVar[str] = "delivery_id"
    type: Literal["NotificationQueued"] = "NotificationQueued"

    delivery_id: UUID
    user_id: UUID
    idempotency_key: str


class NotificationAcknowledged(Message):
    """The user acknowledged a notification (in the app, or by a key pressed during its voice call); its
    remaining steps were stopped. The sender finds its own by `idempotency_key`."""

    entity_field: ClassVar[str] = "delivery_id"
    type: Literal["NotificationAcknowledged"] = "NotificationAcknowledged"

    delivery_id: UUID
    user_id: UUID
    idempotency_key: str
    kind: str
    via: Literal["app", "voice"]
    acknowledged_at: AwareDatetime


class NotificationAttempted(Message):
    """One attempt to reach a user on one channel and target (a device, a phone number), and how it went."""

    entity_field: ClassVar[str] = "delivery_id"
    type: Literal["NotificationAttempted"] = "NotificationAttempted"

    delivery_id: UUID
    user_id: UUID
    idempotency_key: str
    channel: Literal["push", "voice"]
    target: str
    result: Literal["sent", "retry", "failed", "gone"]
    provider_id: str | None = None
    error: str | None = None


class CallAlertChanged(Message):
    """The whole current state of one call-routing alert, published by callrouter on every change (opened,
    voicemail attached, escalating, acknowledged, resolved); `version` grows with each."""

    entity_field: ClassVar[str] = "alert_id"
    type: Literal["CallAlertChanged"] = "CallAlertChanged"

    alert_id: UUID
    version: int = Field(ge=1)
    call_id: UUID
    routing_number: str
    caller: str
    policy_id: UUID
    status: Literal["open", "acknowledged", "resolved"]
    summary: str
    voicemail_url: str | None = None
    escalating: bool
    acknowledged_by: UUID | None = None
    acknowledged_at: AwareDatetime | None = None
    resolved_by: UUID | None = None
    resolved_at: AwareDatetime | None = None


Source = Literal["layer", "static", "override", "coverage", "gap"]


class TimelineSegment(BaseModel):
    """[start, end) of a schedule's final timeline: who is on call (None: nobody, an explicit gap) and why."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    start: Instant
    end: Instant
    user_id: UUID | None
    source: Source
    ref: UUID | None = None


class ScheduleTimeline(Message):
    """The resolved on-call timeline of one schedule for [horizon_start, horizon_end), published by schedule
    whenever anything affecting it changes and as the horizon rolls forward. Segments are sorted and
    contiguous over the horizon; outside it the timeline says nothing."""

    entity_field: ClassVar[str] = "schedule_id"
    type: Literal["ScheduleTimeline"] = "ScheduleTimeline"

    schedule_id: UUID
    version: int = Field(ge=1)
    name: str
    time_zone: str
    horizon_start: Instant
    horizon_end: Instant
    segments: list[TimelineSegment]


class PolicyRule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    timeout_minutes: int = Field(ge=1, le=1440)
    user_ids: list[UUID] = Field(default_factory=list)
    schedule_ids: list[UUID] = Field(default_factory=list)


class PolicySnapshot(Message):
    """The whole current state of one escalation policy. Rules run in order; each pages its users and whoever
    is on call on its schedules, then escalates after `timeout_minutes`; the list runs `repeat` more times."""

    entity_field: ClassVar[str] = "policy_id"
    type: Literal["PolicySnapshot"] = "PolicySnapshot"

    policy_id: UUID
    version: int = Field(ge=1)
    name: str
    repeat: int = Field(ge=0)
    rules: list[PolicyRule]


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
ClockTime = Annotated[str, Field(pattern=r"^(([01]\d|2[0-3]):[0-5]\d|24:00)$", examples=["09:00"])]


class WeeklyWindow(BaseModel):
    """Local time-of-day window on the named weekdays; an end at or before the start runs past midnight."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    days: list[Weekday] = Field(min_length=1, max_length=7)
    start: ClockTime
    end: ClockTime


class SupportHoursSnapshot(Message):
    """The whole current state of one support-hours definition: weekly windows in a zone, minus holidays."""

    entity_field: ClassVar[str] = "support_hours_id"
    type: Literal["SupportHoursSnapshot"] = "SupportHoursSnapshot"

    support_hours_id: UUID
    version: int = Field(ge=1)
    name: str
    time_zone: str
    windows: list[WeeklyWindow]
    holidays: list[date]


MAX_SHIFT_DAYS = 400


class ShiftRef(BaseModel):
    """One shift of one schedule, [start, end), at most MAX_SHIFT_DAYS long."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    schedule_id: UUID
    start: Instant
    end: Instant

    @model_validator(mode="after")
    def _bounded_span(self) -> ShiftRef:
        if self.end - self.start > timedelta(days=MAX_SHIFT_DAYS):
            raise ValueError(f"a shift spans at most {MAX_SHIFT_DAYS} days")
        return self


class CoverageRequestAccepted(Message):
    """coverage: `covering_user_id` accepted to take `shifts` from `requester_id`. schedule answers with
    CoverageApplied or CoverageRejected; re-sent with a new event_id until an answer arrives."""

    entity_field: ClassVar[str] = "request_id"
    type: Literal["CoverageRequestAccepted"] = "CoverageRequestAccepted"

    request_id: UUID
    requester_id: UUID
    covering_user_id: UUID
    shifts: list[ShiftRef] = Field(min_length=1, max_length=200)


class CoverageRequestRevoked(Message):
    """coverage: an applied request is withdrawn; schedule removes its shifts and answers CoverageReverted."""

    entity_field: ClassVar[str] = "request_id"
    type: Literal["CoverageRequestRevoked"] = "CoverageRequestRevoked"

    request_id: UUID
    reason: str = Field(default="", max_length=500)


class CoverageApplied(Message):
    """schedule placed every shift of the request on the covering user (all or none)."""

    entity_field: ClassVar[str] = "request_id"
    type: Literal["CoverageApplied"] = "CoverageApplied"

    request_id: UUID
    covering_user_id: UUID
    shifts: list[ShiftRef]


class ShiftProblem(ShiftRef):
    reason: str


class CoverageRejected(Message):
    """schedule applied none of the request's shifts; `problems` says why, per shift that failed the check."""

    entity_field: ClassVar[str] = "request_id"
    type: Literal["CoverageRejected"] = "CoverageRejected"

    request_id: UUID
    problems: list[ShiftProblem]


class CoverageReverted(Message):
    """schedule removed the shifts a revoked request had placed (also sent when there was nothing to remove)."""

    entity_field: ClassVar[str] = "request_id"
    type: Literal["CoverageReverted"] = "CoverageReverted"

    request_id: UUID
    removed_shifts: int
