"""A consumer's in-memory view of published on-call timelines: who is on call on schedule S at instant T.

Timelines are snapshots: each carries a schedule's whole resolved timeline for a horizon and a
version, so the index keeps only the newest one per schedule and ignores a redelivered or older snapshot.
Lookups bisect the segment starts, so they cost O(log n) in the segments of one timeline. Instants are
held and compared in `datetime.UTC`: two datetimes sharing one tzinfo object compare field by field, while
mixed ones (pydantic parses "Z" into its own tzinfo) call utcoffset() on both sides of every comparison.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol
from uuid import UUID

from shared.messages import ScheduleTimeline, TimelineSegment


@dataclass(frozen=True)
class _Indexed:
    timeline: ScheduleTimeline
    horizon_start: datetime
    horizon_end: datetime
    starts: tuple[datetime, ...]
    ends: tuple[datetime, ...]

    @classmethod
    def of(cls, timeline: ScheduleTimeline) -> _Indexed:
        return cls(
            timeline,
            timeline.horizon_start.astimezone(UTC),
            timeline.horizon_end.astimezone(UTC),
            tuple(s.start.astimezone(UTC) for s in timeline.segments),
            tuple(s.end.astimezone(UTC) for s in timeline.segments),
        )


class TimelineIndex:
    """The newest published timeline of each schedule, and the segment that holds a given instant."""

    def __init__(self) -> None:
        self._by_schedule: dict[UUID, _Indexed] = {}

    def __len__(self) -> int:
        return len(self._by_schedule)

    def __contains__(self, schedule_id: object) -> bool:
        return schedule_id in self._by_schedule

    def apply(self, timeline: ScheduleTimeline) -> bool:
        """Keep `timeline` unless one of the same or a newer version is held; True if it was kept."""
        held = self._by_schedule.get(timeline.schedule_id)
        if held is not None and held.timeline.version >= timeline.version:
            return False
        self._by_schedule[timeline.schedule_id] = _Indexed.of(timeline)
        return True

    def get(self, schedule_id: UUID) -> ScheduleTimeline | None:
        held = self._by_schedule.get(schedule_id)
        return held.timeline if held is not None else None

    def at(self, schedule_id: UUID, instant: datetime) -> TimelineSegment | None:
        """The segment of `schedule_id` holding `instant` (start inclusive, end exclusive); a gap segment has
        user_id None. None when the schedule is unknown or `instant` lies outside the published horizon."""
        if instant.tzinfo is None:
            raise ValueError("instant needs a UTC offset")
        held = self._by_schedule.get(schedule_id)
        if held is None:
            return None
        instant = instant.astimezone(UTC)
        if not held.horizon_start <= instant < held.horizon_end:
            return None
        i = bisect_right(held.starts, instant) - 1
        if i < 0 or instant >= held.ends[i]:
            return None
        return held.timeline.segments[i]


class Held(Protocol):
    """A piece of a final timeline: [start, end) and who is on call (None: nobody)."""

    @property
    def start(self) -> datetime: ...
    @property
    def end(self) -> datetime: ...
    @property
    def user_id(self) -> UUID | None: ...


def holder_problem(segments: Iterable[Held], start: datetime, end: datetime, user_id: UUID) -> str | None:
    """Why `user_id` does not hold [start, end) on a sorted, contiguous final timeline, or None when they do
    over the whole span. How a timeline is read, not a rule of either side: schedule asks it before applying
    a coverage request, coverage before accepting one and whenever a new timeline arrives."""
    cursor = start
    for seg in segments:
        if seg.end <= cursor or seg.start >= end:
            continue
        if seg.start > cursor:
            break
        if seg.user_id != user_id:
            who = "nobody" if seg.user_id is None else f"user {seg.user_id}"
            return f"{who} is on call from {max(seg.start, start).isoformat()}, not the requester"
        cursor = seg.end
        if cursor >= end:
            return None
    return "the requester is not on call for the whole shift"
