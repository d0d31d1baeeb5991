"""Who is on call when: rotations, restrictions, layers, static shifts, overrides and coverage, resolved.

Local wall-clock rules (see docs/schedules.md):
- Rotations and windows are defined in the schedule's IANA zone and advance in local wall-clock time, so a
  09:00 handoff stays at 09:00 local across DST changes (a shift that spans a change is an hour shorter or
  longer in real time).
- A local time that falls in a skipped hour (spring forward) is read with the offset before the gap, so it
  happens that much later (02:30 on a New York spring-forward night is 03:30 EDT); a local time that occurs
  twice (fall back) means its first occurrence. Both are RFC 5545's rules (3.3.5), and `zoneinfo`'s fold=0.
- A segment that becomes empty this way (an hourly handoff inside the skipped hour) is dropped.
Precedence, lowest to highest: layers in list order (a later layer wins wherever it has someone), then
overrides and accepted coverage, among which the most recently placed wins. Where nobody is on call the
result holds an explicit gap.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from itertools import pairwise
from typing import Literal
from uuid import UUID
from zoneinfo import ZoneInfo

from shared.errors import InvalidInput

Unit = Literal["hours", "days", "weeks"]
Source = Literal["layer", "static", "override", "coverage", "gap"]
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_ROTATION_HOURS = 366 * 24
_CLOCK = re.compile(r"^(?:([01]\d|2[0-3]):([0-5]\d)|24:00)$")
_UNIT_STEP = {"hours": timedelta(hours=1), "days": timedelta(days=1), "weeks": timedelta(weeks=1)}
_FOREVER = datetime.max.replace(tzinfo=UTC)
# Clock changes can skip more than an hourly turn (Antarctica/Troll jumps 2 h, Samoa skipped a whole day), so
# turns handed off in the gap can start before earlier ones; walking from this far back gives every query
# window the same turns.
_TURN_LOOKBACK = timedelta(days=2)


def local_to_utc(local: datetime, zone: ZoneInfo) -> datetime:
    """A naive local wall-clock time in `zone` as a UTC instant, by the module's skipped/repeated-hour rule."""
    return local.replace(tzinfo=zone, fold=0).astimezone(UTC)


def utc_to_local(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


def check_range(start: datetime, end: datetime, field_name: str = "end") -> None:
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidInput(field_name, "instants need a UTC offset, e.g. 2026-03-08T09:00:00Z")
    if end <= start:
        raise InvalidInput(field_name, "end must be after start")


@dataclass(frozen=True)
class Window:
    """A weekly local time-of-day window: on `weekday` (0 = Monday) from `start` for `minutes` minutes."""

    weekday: int
    start: time
    minutes: int


def parse_clock(text: str, field_name: str) -> tuple[int, int]:
    match = _CLOCK.fullmatch(text)
    if not match:
        raise InvalidInput(field_name, f"'{text}' is not a time of day HH:MM (00:00-24:00)")
    return (24, 0) if text == "24:00" else (int(match[1]), int(match[2]))


def parse_windows(specs: Sequence[tuple[Sequence[str], str, str]], field_name: str) -> tuple[Window, ...]:
    """Windows from (days, "HH:MM", "HH:MM") triples; an end at or before the start runs past midnight."""
    windows: list[Window] = []
    for i, (days, start_text, end_text) in enumerate(specs):
        where = f"{field_name}.{i}"
        if not days:
            raise InvalidInput(f"{where}.days", "name at least one weekday")
        unknown = [d for d in days if d not in WEEKDAYS]
        if unknown:
            raise InvalidInput(f"{where}.days", f"unknown weekday '{unknown[0]}'; use {', '.join(WEEKDAYS)}")
        sh, sm = parse_clock(start_text, f"{where}.start")
        eh, em = parse_clock(end_text, f"{where}.end")
        if (sh, sm) == (24, 0):
            raise InvalidInput(f"{where}.start", "a window cannot start at 24:00")
        begin, finish = sh * 60 + sm, eh * 60 + em
        if begin == finish:
            raise InvalidInput(f"{where}.end", "a window needs an end different from its start")
        minutes = finish - begin if finish > begin else finish + 24 * 60 - begin
        for day in dict.fromkeys(days):
            windows.append(Window(WEEKDAYS.index(day), time(sh, sm), minutes))
    return tuple(windows)


def window_intervals(
    windows: Sequence[Window], zone: ZoneInfo, start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    """The UTC intervals the weekly `windows` cover within [start, end), merged and sorted."""
    if not windows:
        return []
    first = utc_to_local(start, zone).date() - timedelta(days=1)
    last = utc_to_local(end, zone).date()
    by_day: dict[int, list[Window]] = {}
    for w in windows:
        by_day.setdefault(w.weekday, []).append(w)
    raw: list[tuple[datetime, datetime]] = []
    day = first
    while day <= last:
        for w in by_day.get(day.weekday(), ()):
            local_start = datetime.combine(day, w.start)
            a = local_to_utc(local_start, zone)
            b = local_to_utc(local_start + timedelta(minutes=w.minutes), zone)
            if b > start and a < end and b > a:
                raw.append((max(a, start), min(b, end)))
        day += timedelta(days=1)
    return merge_intervals(raw)


def merge_intervals(intervals: Iterable[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    merged: list[tuple[datetime, datetime]] = []
    for a, b in sorted(intervals):
        if merged and a <= merged[-1][1]:
            if b > merged[-1][1]:
                merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return merged


def in_windows(windows: Sequence[Window], zone: ZoneInfo, instant: datetime) -> bool:
    return bool(window_intervals(windows, zone, instant, instant + timedelta(microseconds=1)))


@dataclass(frozen=True)
class Layer:
    """A rotation: `users` take turns of `length` `unit`s from the local `handoff`, masked by `restrictions`."""

    users: tuple[UUID, ...]
    length: int
    unit: Unit
    handoff: datetime  # naive, local wall-clock time in the schedule's zone
    restrictions: tuple[Window, ...] = ()
    start: datetime | None = None  # UTC; defaults to the first handoff
    end: datetime | None = None
    name: str = ""

    @property
    def step(self) -> timedelta:
        return _UNIT_STEP[self.unit] * self.length


def new_layer(
    users: Sequence[UUID],
    length: int,
    unit: str,
    handoff: datetime,
    restrictions: tuple[Window, ...] = (),
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    name: str = "",
    field_name: str = "layer",
) -> Layer:
    if not users:
        raise InvalidInput(f"{field_name}.users", "a rotation needs at least one user")
    if unit not in _UNIT_STEP:
        raise InvalidInput(f"{field_name}.unit", "unit must be hours, days or weeks")
    if length <= 0:
        raise InvalidInput(f"{field_name}.length", "rotation length must be positive")
    if length > timedelta(hours=MAX_ROTATION_HOURS) // _UNIT_STEP[unit]:
        raise InvalidInput(f"{field_name}.length", "a turn can last at most 366 days")
    if handoff.tzinfo is not None:
        raise InvalidInput(f"{field_name}.handoff", "handoff is a local date-time without offset: 2026-01-05T09:00")
    if start is not None and end is not None:
        check_range(start, end, f"{field_name}.end")
    return Layer(tuple(users), length, unit, handoff, restrictions, start, end, name)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Segment:
    start: datetime
    end: datetime
    user_id: UUID | None
    source: Source
    layer: int | None = None
    ref: UUID | None = None  # override id or coverage request id


Turn = tuple[datetime, datetime, UUID]


def rotation_turns(layer: Layer, zone: ZoneInfo, start: datetime, end: datetime) -> list[Turn]:
    """The rotation's turns (UTC start, UTC end, user) overlapping [start, end), before restrictions."""
    lo = max(start, layer.start or local_to_utc(layer.handoff, zone))
    hi = min(end, layer.end or _FOREVER)
    if lo >= hi:
        return []
    step = layer.step
    n = len(layer.users)
    k = (utc_to_local(lo, zone) - layer.handoff - _TURN_LOOKBACK) // step - 1
    turns: list[Turn] = []
    turn_start = local_to_utc(layer.handoff + step * k, zone)
    while turn_start < hi:
        turn_end = max(local_to_utc(layer.handoff + step * (k + 1), zone), turn_start)
        a, b = max(turn_start, lo), min(turn_end, hi)
        if a < b:
            turns.append((a, b, layer.users[k % n]))
        k += 1
        turn_start = turn_end
    return turns


def layer_segments(layer: Layer, index: int, zone: ZoneInfo, start: datetime, end: datetime) -> list[Segment]:
    turns = rotation_turns(layer, zone, start, end)
    if not layer.restrictions:
        return [Segment(a, b, u, "layer", index) for a, b, u in turns]
    if not turns:
        return []
    windows = window_intervals(layer.restrictions, zone, turns[0][0], turns[-1][1])
    out: list[Segment] = []
    i = 0
    for a, b, user in turns:
        while i < len(windows) and windows[i][1] <= a:
            i += 1
        j = i
        while j < len(windows) and windows[j][0] < b:
            wa, wb = windows[j]
            out.append(Segment(max(a, wa), min(b, wb), user, "layer", index))
            j += 1
    return out


@dataclass(frozen=True)
class StaticShift:
    user_id: UUID
    start: datetime
    end: datetime


def check_static_shifts(shifts: Sequence[StaticShift], field_name: str = "shifts") -> tuple[StaticShift, ...]:
    """The shifts sorted by start; 422 naming the first one that is empty or overlaps another."""
    indexed = sorted(enumerate(shifts), key=lambda p: p[1].start)
    for i, s in indexed:
        check_range(s.start, s.end, f"{field_name}.{i}.end")
    for (_, before), (i, after) in pairwise(indexed):
        if after.start < before.end:
            span = f"{before.start.isoformat()} - {before.end.isoformat()}"
            raise InvalidInput(f"{field_name}.{i}", f"overlaps the shift {span}")
    return tuple(s for _, s in indexed)


@dataclass(frozen=True)
class Cover:
    """Someone placed above the schedule for a window: an override, or a shift taken over by coverage."""

    id: UUID
    user_id: UUID
    start: datetime
    end: datetime
    source: Literal["override", "coverage"]
    seq: int  # placement order; the later one wins
    coverage_request_id: UUID | None = None
    created_by: UUID | None = None


@dataclass(frozen=True)
class Schedule:
    id: UUID
    name: str
    time_zone: str
    kind: Literal["recurring", "static"]
    layers: tuple[Layer, ...] = ()
    shifts: tuple[StaticShift, ...] = ()
    version: int = 1
    team_id: UUID | None = None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def user_ids(self) -> set[UUID]:
        return {u for layer in self.layers for u in layer.users} | {s.user_id for s in self.shifts}


def base_segments(schedule: Schedule, start: datetime, end: datetime) -> list[Segment]:
    if schedule.kind == "static":
        return [
            Segment(max(s.start, start), min(s.end, end), s.user_id, "static")
            for s in schedule.shifts
            if s.end > start and s.start < end
        ]
    zone = schedule.zone
    out: list[Segment] = []
    for index, layer in enumerate(schedule.layers):
        out.extend(layer_segments(layer, index, zone, start, end))
    return out


def resolve(schedule: Schedule, covers: Sequence[Cover], start: datetime, end: datetime) -> list[Segment]:
    """The final on-call timeline of [start, end): contiguous segments, gaps included (user_id None)."""
    check_range(start, end)
    items: list[tuple[tuple[int, int], Segment]] = [
        ((0, s.layer or 0), s) for s in base_segments(schedule, start, end)
    ]
    for c in covers:
        if c.end > start and c.start < end:
            ref = c.coverage_request_id if c.source == "coverage" else c.id
            items.append(((1, c.seq), Segment(max(c.start, start), min(c.end, end), c.user_id, c.source, None, ref)))
    events: list[tuple[datetime, int, int]] = []
    for n, (_, seg) in enumerate(items):
        if seg.start < seg.end:
            events.append((seg.start, 1, n))
            events.append((seg.end, 0, n))
    events.sort()
    out: list[Segment] = []
    active: dict[int, tuple[int, int]] = {}
    cursor = start
    i = 0
    while i <= len(events):
        at = events[i][0] if i < len(events) else end
        if at > cursor:
            top = max(active, key=active.__getitem__) if active else None
            _append(out, _piece(items[top][1], cursor, at) if top is not None else Segment(cursor, at, None, "gap"))
            cursor = at
        if i == len(events):
            break
        while i < len(events) and events[i][0] == at:
            _, opening, n = events[i]
            if opening:
                active[n] = items[n][0]
            else:
                active.pop(n, None)
            i += 1
    return out


def _piece(seg: Segment, start: datetime, end: datetime) -> Segment:
    return Segment(start, end, seg.user_id, seg.source, seg.layer, seg.ref)


def _append(out: list[Segment], seg: Segment) -> None:
    if out:
        last = out[-1]
        if (last.user_id, last.source, last.layer, last.ref) == (seg.user_id, seg.source, seg.layer, seg.ref):
            out[-1] = _piece(last, last.start, seg.end)
            return
    out.append(seg)


def shifts_of(segments: Iterable[Segment]) -> list[Segment]:
    return [s for s in segments if s.user_id is not None]


def gaps_of(segments: Iterable[Segment]) -> list[Segment]:
    return [s for s in segments if s.user_id is None]


def on_call_at(segments: Sequence[Segment], instant: datetime) -> Segment | None:
    """The segment of a sorted, contiguous timeline that holds `instant`, if the timeline reaches it."""
    starts = [s.start for s in segments]
    i = bisect_right(starts, instant) - 1
    if i >= 0 and segments[i].start <= instant < segments[i].end:
        return segments[i]
    return None


@dataclass(frozen=True)
class ShiftClaim:
    """One shift a coverage request asks someone else to take: on `schedule_id`, [start, end)."""

    schedule_id: UUID
    start: datetime
    end: datetime


def claim_problem(segments: Sequence[Segment], claim: ShiftClaim, requester: UUID) -> str | None:
    """Why `claim` is not (any longer) the requester's shift in the final timeline, or None when it is."""
    cursor = claim.start
    for seg in segments:
        if seg.end <= cursor or seg.start >= claim.end:
            continue
        if seg.start > cursor:
            break
        if seg.user_id != requester:
            who = "nobody" if seg.user_id is None else f"user {seg.user_id}"
            return f"{who} is on call from {max(seg.start, claim.start).isoformat()}, not the requester"
        cursor = seg.end
        if cursor >= claim.end:
            return None
    return "the requester is not on call for the whole shift"


@dataclass(frozen=True)
class Horizon:
    """How far ahead timelines are published, and when the rolling job must extend them."""

    days_ahead: int = 62
    days_behind: int = 1
    refresh_when_below_days: int = 61

    def window(self, now: datetime) -> tuple[datetime, datetime]:
        day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return day - timedelta(days=self.days_behind), day + timedelta(days=self.days_ahead)

    def refresh_before(self, now: datetime) -> datetime:
        """A timeline published up to an instant earlier than this must be extended."""
        return now + timedelta(days=self.refresh_when_below_days)
