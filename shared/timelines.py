"""A consumer's in-memory view of published on-call timelines: who is on call on schedule S at instant T.

Timelines are snapshots: each carries a schedule's whole resolved timeline for a horizon and a version, so
the index keeps only the newest one per schedule and ignores a redelivered or older snapshot.

Every replica of callrouter and coverage may hold the timelines of all schedules, so the index is compact:
per schedule one `array('q')` of microseconds since the epoch (horizon bounds, segment starts, segment
ends) and one `array('I')` of who-and-why codes (an interned user number and a source number); refs (the
override or coverage request behind a segment) only where a segment has one. That is about 28 bytes a
segment in all, where the pydantic objects took about 1,200 (`bench/schedule_oncall_lookup.py`). User ids
are interned once per index (or per `UserTable` shared between indexes) and never forgotten: the table grows
with the people ever on call, not with the timelines. A timeline is decoded straight from the message bytes
(`apply_json`) without building the pydantic models. Lookups bisect the segment starts: O(log n) in the
segments of one timeline.
"""

from __future__ import annotations

import json
from array import array
from bisect import bisect_right
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, NamedTuple, Protocol, get_args
from uuid import UUID

from shared.messages import EARLIEST, INSTANT_RANGE, LATEST, ScheduleTimeline, Source

SOURCES: tuple[Source, ...] = get_args(Source)
_SOURCE_CODE = {source: code for code, source in enumerate(SOURCES)}
_SOURCE_BITS = 3
_SOURCE_MASK = (1 << _SOURCE_BITS) - 1
_MAX_USERS = (1 << (32 - _SOURCE_BITS)) - 1
assert len(SOURCES) <= 1 << _SOURCE_BITS

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_EARLIEST_US = (EARLIEST - _EPOCH) // _US
_LATEST_US = (LATEST - _EPOCH) // _US


def to_micros(instant: datetime) -> int:
    """`instant` as microseconds since the Unix epoch; it must carry a UTC offset."""
    if instant.utcoffset() is None:
        raise ValueError("instant needs a UTC offset")
    return (instant - _EPOCH) // _US


def from_micros(micros: int) -> datetime:
    seconds, us = divmod(micros, 1_000_000)
    return _EPOCH + timedelta(0, seconds, us)


@lru_cache(maxsize=4096)
def _parse_instant(text: str) -> int:
    # Handoffs fall on few distinct instants (whole hours, mostly), shared by many schedules: the cache
    # turns most of the ~100 instants of a timeline into one dict hit.
    if type(text) is not str:
        raise ValueError(f"an instant must be an ISO 8601 string, not {type(text).__name__}")
    micros = to_micros(datetime.fromisoformat(text))
    if not _EARLIEST_US <= micros < _LATEST_US:
        raise ValueError(f"instant {text!r} must lie {INSTANT_RANGE}")
    return micros


class OnCall(NamedTuple):
    """One segment of a held timeline: [start, end) in microseconds since the epoch, who is on call
    (None: nobody, an explicit gap), why, and the override or coverage request behind it."""

    start_us: int
    end_us: int
    user_id: UUID | None
    source: Source
    ref: UUID | None = None

    @property
    def start(self) -> datetime:
        return from_micros(self.start_us)

    @property
    def end(self) -> datetime:
        return from_micros(self.end_us)


_new_tuple = tuple.__new__


class UserTable:
    """User ids interned to small numbers (0 stands for nobody), shared by every timeline of an index."""

    def __init__(self) -> None:
        self.ids: list[UUID | None] = [None]
        self._numbers: dict[UUID, int] = {}
        self._by_text: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.ids) - 1

    def number(self, user_id: UUID | None) -> int:
        if user_id is None:
            return 0
        number = self._numbers.get(user_id)
        if number is None:
            if len(self.ids) > _MAX_USERS:
                raise ValueError("too many distinct users for one index")
            number = self._numbers[user_id] = len(self.ids)
            self.ids.append(user_id)
        return number

    def number_of_text(self, text: object) -> int:
        """The number of a user id as written in a message: a UUID string, or null for nobody."""
        if text is None:
            return 0
        if type(text) is not str:
            raise ValueError(f"user_id must be a UUID string or null, not {type(text).__name__}")
        number = self._by_text.get(text)
        if number is None:
            number = self._by_text[text] = self.number(_uuid(text, "user_id"))
        return number


class HeldTimeline(NamedTuple):
    """A held timeline rebuilt on demand from the compact form."""

    schedule_id: UUID
    version: int
    horizon_start: datetime
    horizon_end: datetime
    segments: list[OnCall]


class _Held:
    """One schedule's timeline: bounds = [horizon start, horizon end, n segment starts, n segment ends] in
    microseconds; who[i] = user number << 3 | source number; refs only for the segments that have one."""

    __slots__ = ("bounds", "refs", "version", "who")

    def __init__(self, version: int, bounds: array[int], who: array[int], refs: dict[int, UUID] | None) -> None:
        self.version = version
        self.bounds = bounds
        self.who = who
        self.refs = refs

    @classmethod
    def build(
        cls,
        version: int,
        horizon: tuple[int, int],
        starts: list[int],
        ends: list[int],
        who: list[int],
        refs: dict[int, UUID] | None,
    ) -> _Held:
        if not horizon[0] <= horizon[1]:
            raise ValueError("the horizon ends before it starts")
        previous_end = _EARLIEST_US
        for i, (start, end) in enumerate(zip(starts, ends, strict=True)):
            if not previous_end <= start < end:
                raise ValueError(f"segment {i} is empty or out of order: segments must be sorted and disjoint")
            previous_end = end
        return cls(version, array("q", [*horizon, *starts, *ends]), array("I", who), refs)

    def __len__(self) -> int:
        return len(self.who)

    def segment(self, i: int, user_ids: list[UUID | None]) -> OnCall:
        n = len(self.who)
        return self._on_call(i, self.bounds[2 + i], self.bounds[2 + n + i], user_ids)

    def at(self, micros: int, user_ids: list[UUID | None]) -> OnCall | None:
        bounds = self.bounds
        if not bounds[0] <= micros < bounds[1]:
            return None
        n = len(self.who)
        i = bisect_right(bounds, micros, 2, 2 + n) - 3
        if i < 0:
            return None
        end = bounds[2 + n + i]
        if micros >= end:
            return None
        return self._on_call(i, bounds[2 + i], end, user_ids)

    def _on_call(self, i: int, start: int, end: int, user_ids: list[UUID | None]) -> OnCall:
        code = self.who[i]
        refs = self.refs
        # tuple.__new__ skips the NamedTuple's Python-level __new__: a tenth of a lookup.
        return _new_tuple(
            OnCall,
            (start, end, user_ids[code >> _SOURCE_BITS], SOURCES[code & _SOURCE_MASK], refs.get(i) if refs else None),
        )


class TimelineIndex:
    """The newest published timeline of each schedule, and the segment that holds a given instant."""

    def __init__(self, users: UserTable | None = None) -> None:
        self._by_schedule: dict[UUID, _Held] = {}
        self.users = users if users is not None else UserTable()
        self._segments = 0

    def __len__(self) -> int:
        return len(self._by_schedule)

    def __contains__(self, schedule_id: object) -> bool:
        return schedule_id in self._by_schedule

    @property
    def segments(self) -> int:
        """How many segments the held timelines have in all."""
        return self._segments

    def apply(self, timeline: ScheduleTimeline) -> bool:
        """Keep `timeline` unless one of the same or a newer version is held; True if it was kept."""
        number = self.users.number
        segments = timeline.segments
        refs = {i: s.ref for i, s in enumerate(segments) if s.ref is not None}
        held = _Held.build(
            timeline.version,
            (to_micros(timeline.horizon_start), to_micros(timeline.horizon_end)),
            [to_micros(s.start) for s in segments],
            [to_micros(s.end) for s in segments],
            [number(s.user_id) << _SOURCE_BITS | _SOURCE_CODE[s.source] for s in segments],
            refs or None,
        )
        return self._keep(timeline.schedule_id, held)

    def apply_json(self, raw: bytes | bytearray | str) -> bool:
        """`apply` for a ScheduleTimeline message as it travels on the topic, decoded without building the
        pydantic models. Reads and checks what the index needs (type, schedule_id, version, the horizon and
        the segments: aware ISO 8601 instants in the platform's range, sorted and disjoint, known sources,
        UUIDs); other fields are not examined. Raises ValueError for anything malformed."""
        try:
            message = json.loads(raw)
        except (ValueError, TypeError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise ValueError(f"not a JSON document: {exc}") from None
        if type(message) is not dict:
            raise ValueError("a timeline must be a JSON object")
        try:
            schedule_id, held = self._decode(message)
        except KeyError as exc:
            raise ValueError(f"a timeline needs {exc}") from None
        except TypeError as exc:  # an object or array where a string or number belongs
            raise ValueError(f"malformed timeline: {exc}") from None
        return self._keep(schedule_id, held)

    def _decode(self, message: dict[str, Any]) -> tuple[UUID, _Held]:
        if message.get("type", "ScheduleTimeline") != "ScheduleTimeline":
            raise ValueError(f"not a ScheduleTimeline: {message.get('type')!r}")
        schedule_id = _uuid(message["schedule_id"], "schedule_id")
        version = message["version"]
        if type(version) is not int or version < 1:
            raise ValueError(f"version must be a whole number of at least 1, not {version!r}")
        horizon = (_parse_instant(message["horizon_start"]), _parse_instant(message["horizon_end"]))
        segments = message["segments"]
        if type(segments) is not list:
            raise ValueError("segments must be a list")
        starts: list[int] = []
        ends: list[int] = []
        who: list[int] = []
        refs: dict[int, UUID] | None = None
        user_number = self.users.number_of_text
        parse = _parse_instant
        for i, segment in enumerate(segments):
            if type(segment) is not dict:
                raise ValueError(f"segment {i} must be an object")
            starts.append(parse(segment["start"]))
            ends.append(parse(segment["end"]))
            source = _SOURCE_CODE.get(segment["source"])
            if source is None:
                raise ValueError(f"segment {i} has an unknown source {segment['source']!r}")
            who.append(user_number(segment["user_id"]) << _SOURCE_BITS | source)
            ref = segment.get("ref")
            if ref is not None:
                refs = refs or {}
                refs[i] = _uuid(ref, "ref")
        return schedule_id, _Held.build(version, horizon, starts, ends, who, refs)

    def _keep(self, schedule_id: UUID, held: _Held) -> bool:
        current = self._by_schedule.get(schedule_id)
        if current is not None:
            if current.version >= held.version:
                return False
            self._segments -= len(current)
        self._by_schedule[schedule_id] = held
        self._segments += len(held)
        return True

    def version(self, schedule_id: UUID) -> int | None:
        held = self._by_schedule.get(schedule_id)
        return held.version if held is not None else None

    def get(self, schedule_id: UUID) -> HeldTimeline | None:
        """The held timeline of `schedule_id`, rebuilt from the compact form (for inspection, not lookups)."""
        held = self._by_schedule.get(schedule_id)
        if held is None:
            return None
        user_ids = self.users.ids
        return HeldTimeline(
            schedule_id,
            held.version,
            from_micros(held.bounds[0]),
            from_micros(held.bounds[1]),
            [held.segment(i, user_ids) for i in range(len(held))],
        )

    def at(self, schedule_id: UUID, instant: datetime) -> OnCall | None:
        """The segment of `schedule_id` holding `instant` (start inclusive, end exclusive); a gap segment has
        user_id None. None when the schedule is unknown or `instant` lies outside the published horizon."""
        micros = to_micros(instant)
        held = self._by_schedule.get(schedule_id)
        return held.at(micros, self.users.ids) if held is not None else None


def _uuid(value: object, name: str) -> UUID:
    if type(value) is not str:
        raise ValueError(f"{name} must be a UUID string, not {type(value).__name__}")
    return UUID(value)  # ValueError when malformed


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
