"""Message contracts exchanged over Kafka.

Every message carries the same envelope (`event_id`, `occurred_at`, `type`, `schema_version`) and the id of
the entity it is about. Events are past tense, commands imperative. Snapshots carry the whole current state
and a monotonically increasing `version`, so a consumer that replays a topic rebuilds its projection and
can ignore a snapshot older than what it already holds.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, ClassVar, Literal
from uuid import UUID, uuid4

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator


def utcnow() -> datetime:
    return datetime.now(UTC)


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


Role = Literal["admin", "responder", "observer"]
E164 = Annotated[str, Field(pattern=r"^\+[1-9]\d{6,14}$", examples=["+4915112345678"])]


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


class NotificationQueued(Message):
    """notifier accepted a SendNotification and recorded a delivery for it."""

    entity_field: ClassVar[str] = "delivery_id"
    type: Literal["NotificationQueued"] = "NotificationQueued"

    delivery_id: UUID
    user_id: UUID
    idempotency_key: str
