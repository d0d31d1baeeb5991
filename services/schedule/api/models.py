"""Request and answer models several of schedule's resources share."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel

from services.schedule.domain.shifts import Segment, Window, describe_windows
from services.schedule.service.commands import WindowSpec
from shared.messages import Source, WeeklyWindow


def window_specs(windows: list[WeeklyWindow]) -> tuple[WindowSpec, ...]:
    return tuple(WindowSpec(tuple(w.days), w.start, w.end) for w in windows)


def weekly(windows: tuple[Window, ...]) -> list[WeeklyWindow]:
    return [WeeklyWindow.model_construct(days=d, start=s, end=e) for d, s, e in describe_windows(windows)]


class ShiftOut(BaseModel):
    """A piece of the final timeline; `source` says where it comes from and `ref` is the override id or the
    coverage request id. `user_id` null with source `gap` means nobody is on call."""

    start: datetime
    end: datetime
    user_id: UUID | None
    source: Source
    layer: int | None = None
    ref: UUID | None = None

    @classmethod
    def of(cls, s: Segment) -> ShiftOut:
        return cls(start=s.start, end=s.end, user_id=s.user_id, source=s.source, layer=s.layer, ref=s.ref)
