"""What the schedule service's use cases take: typed commands, built by the API from validated requests.

A command carries values already typed (UUIDs, aware instants, naive local times); the use case turns it into
domain objects, whose constructors apply the domain rules and name the field at fault.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from uuid import UUID


@dataclass(frozen=True)
class NewUser:
    name: str
    email: str
    time_zone: str
    phone: str | None = None
    language: str = "en"
    role: str = "responder"


@dataclass(frozen=True)
class EditUser:
    """Only the fields present in `changes` change; a field set to None there is cleared (only `phone` may be)."""

    user_id: UUID
    changes: Mapping[str, object]


@dataclass(frozen=True)
class DefineTeam:
    name: str
    member_ids: tuple[UUID, ...] = ()


@dataclass(frozen=True)
class WindowSpec:
    """Weekly window: on `days`, local `start` to `end` ("HH:MM"; "24:00" allowed as an end)."""

    days: tuple[str, ...]
    start: str
    end: str


@dataclass(frozen=True)
class LayerSpec:
    users: tuple[UUID, ...]
    length: int
    unit: str
    handoff: datetime  # naive local wall-clock time in the schedule's zone
    restrictions: tuple[WindowSpec, ...] = ()
    start: datetime | None = None
    end: datetime | None = None
    name: str | None = None


@dataclass(frozen=True)
class ShiftSpec:
    user_id: UUID
    start: datetime
    end: datetime


@dataclass(frozen=True)
class DefineSchedule:
    """A schedule's whole definition, for create and replace."""

    name: str
    time_zone: str
    kind: str = "recurring"
    team_id: UUID | None = None
    layers: tuple[LayerSpec, ...] = ()
    shifts: tuple[ShiftSpec, ...] = ()


@dataclass(frozen=True)
class AddOverride:
    schedule_id: UUID
    user_id: UUID
    start: datetime
    end: datetime


@dataclass(frozen=True)
class RuleSpec:
    timeout_minutes: int
    user_ids: tuple[UUID, ...] = ()
    schedule_ids: tuple[UUID, ...] = ()


@dataclass(frozen=True)
class DefinePolicy:
    name: str
    rules: tuple[RuleSpec, ...]
    repeat: int = 0


@dataclass(frozen=True)
class DefineSupportHours:
    name: str
    time_zone: str
    windows: tuple[WindowSpec, ...]
    holidays: tuple[date, ...] = field(default=())
