"""Request and answer models several of schedule's resources share."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from services.schedule.domain.shifts import Segment, Window, describe_windows
from services.schedule.service.commands import WindowSpec
from shared.http import Instant
from shared.messages import Source, WeeklyWindow

# Answers are built from stored domain objects without the input rules (an old row must still be shown), so
# they use plain types with the same published format as the inputs.
LocalDateTimeOut = Annotated[
    datetime,
    WithJsonSchema({"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?$",
                    "description": "A local wall-clock date-time without offset."}),
]


class Span(BaseModel):
    model_config = ConfigDict(extra="forbid")
    from_: Instant = Field(alias="from", description="Start, inclusive (ISO 8601 with offset).")
    to: Instant = Field(description="End, exclusive; at most 400 days after `from`.")


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
