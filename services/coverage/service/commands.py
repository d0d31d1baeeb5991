"""Typed commands the API hands to the use cases."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from services.coverage.domain import Status
from services.coverage.store import Box


@dataclass(frozen=True)
class ShiftChoice:
    schedule_id: UUID
    start: datetime
    end: datetime


@dataclass(frozen=True)
class CreateRequest:
    recipient_ids: tuple[UUID, ...]
    start: datetime
    end: datetime
    shifts: tuple[ShiftChoice, ...]
    message: str
    remind_before: timedelta | None


@dataclass(frozen=True)
class Accept:
    request_id: UUID
    shifts: tuple[ShiftChoice, ...] | None  # None: all of them


@dataclass(frozen=True)
class Decline:
    request_id: UUID
    reason: str


@dataclass(frozen=True)
class ListRequests:
    box: Box
    statuses: tuple[Status, ...]
    before: tuple[datetime, UUID] | None
    limit: int
