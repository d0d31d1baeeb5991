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
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from typing import Literal, NamedTuple, get_args
from uuid import UUID
from zoneinfo import ZoneInfo

from shared.errors import InvalidInput
from shared.messages import Source, Weekday
from shared.timelines import holder_problem

Unit = Literal["hours", "days", "weeks"]
WEEKDAYS: tuple[str, ...] = get_args(Weekday)
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


# Resolution works on integer microseconds since the epoch: comparing and sorting ints is many times faster
# than aware datetimes, and a year of a busy schedule is thousands of boundaries.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)
_US = timedelta(microseconds=1)
_MAX_US = (_FOREVER - _EPOCH) // _US


def to_us(instant: datetime) -> int:
    return (instant - _EPOCH) // _US


def from_us(us: int) -> datetime:
    return _EPOCH + timedelta(0, 0, us)


_DAY_US = 86_400_000_000
_UNIX_DAY = date(1970, 1, 1).toordinal()


def local_us(local: datetime) -> int:
    """A naive local wall-clock time as microseconds since 0001-01-01 00:00 on that same wall clock."""
    seconds = local.toordinal() * 86_400 + local.hour * 3_600 + local.minute * 60 + local.second
    return seconds * 1_000_000 + local.microsecond


# zone -> {local day ordinal -> that day's UTC offset in microseconds, or None when the day has a clock
# change}. Facts of the tz database, shared by every resolution; bounded, since a server sees few zones.
_DAY_OFFSETS: dict[str, dict[int, int | None]] = {}
_MIDNIGHTS: dict[str, dict[int, int]] = {}
_DAY_OFFSETS_MAX = 100_000


class LocalClock:
    """`local_to_utc` on integer microseconds, fast: a local day without a clock change has one offset all
    day, so only days with a change take zoneinfo's per-instant path (zoneinfo costs microseconds a call)."""

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone
        self._offsets = _DAY_OFFSETS.setdefault(zone.key, {})
        self._midnights = _MIDNIGHTS.setdefault(zone.key, {})

    def utc(self, local: int) -> int:
        """The UTC instant (microseconds since the epoch) of a `local_us` wall-clock time."""
        day = local // _DAY_US
        try:
            offset = self._offsets[day]
        except KeyError:
            offset = self._day_offset(day)
        if offset is None:
            naive = datetime.fromordinal(day) + timedelta(0, 0, local - day * _DAY_US)
            return to_us(local_to_utc(naive, self.zone))
        return local - _UNIX_DAY * _DAY_US - offset

    def us(self, local: datetime) -> int:
        return self.utc(local_us(local))

    def _day_offset(self, day: int) -> int | None:
        here, there = self._midnight_offset(day), self._midnight_offset(day + 1)
        offset = here if here == there else None
        if len(self._offsets) >= _DAY_OFFSETS_MAX:
            self._offsets.clear()
            self._midnights.clear()
        self._offsets[day] = offset
        return offset

    def _midnight_offset(self, day: int) -> int:
        """The UTC offset `local_to_utc` applies at that day's local midnight (fold=0, as everywhere)."""
        try:
            return self._midnights[day]
        except KeyError:
            offset = datetime.fromordinal(day).replace(tzinfo=self.zone, fold=0).utcoffset()
            assert offset is not None
            self._midnights[day] = offset // _US
            return self._midnights[day]


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
    """Windows from (days, "HH:MM", "HH:MM") triples; an end before the start runs past midnight, an end equal
    to the start means 24 hours. The same window named twice is kept once."""
    windows: dict[Window, None] = {}
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
        minutes = finish - begin if finish > begin else finish + 24 * 60 - begin
        for day in days:
            windows[Window(WEEKDAYS.index(day), time(sh, sm), minutes)] = None
    return tuple(windows)


def describe_windows(windows: Iterable[Window]) -> list[tuple[list[str], str, str]]:
    """Windows as (days, "HH:MM", "HH:MM"), days grouped per start and length: what `parse_windows` reads back."""
    grouped: dict[tuple[int, int], dict[int, None]] = {}
    for w in windows:
        grouped.setdefault((w.start.hour * 60 + w.start.minute, w.minutes), {})[w.weekday] = None
    described = []
    for (begin, minutes), days in grouped.items():
        finish = (begin + minutes) % 1440
        end = "24:00" if begin + minutes == 1440 else _clock(finish)
        described.append(([WEEKDAYS[d] for d in sorted(days)], _clock(begin), end))
    return described


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def window_intervals(
    windows: Sequence[Window], zone: ZoneInfo, start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    """The UTC intervals the weekly `windows` cover within [start, end), merged and sorted."""
    spans = _window_spans(windows, LocalClock(zone), to_us(start), to_us(end))
    return [(from_us(a), from_us(b)) for a, b in spans]


def _window_spans(windows: Sequence[Window], clock: LocalClock, start: int, end: int) -> list[tuple[int, int]]:
    if not windows:
        return []
    first = utc_to_local(from_us(start), clock.zone).toordinal() - 1
    last = utc_to_local(from_us(end), clock.zone).toordinal()
    week = 7 * _DAY_US
    raw: list[tuple[int, int]] = []
    for w in windows:
        day = first + (w.weekday - date.fromordinal(first).weekday()) % 7
        opens = day * _DAY_US + (w.start.hour * 60 + w.start.minute) * 60_000_000
        length = w.minutes * 60_000_000
        stop = (last + 1) * _DAY_US
        while opens < stop:
            a, b = clock.utc(opens), clock.utc(opens + length)
            if b > start and a < end and b > a:
                raw.append((max(a, start), min(b, end)))
            opens += week
    return _merge_spans(raw)


def _merge_spans(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for a, b in sorted(spans):
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


class Segment(NamedTuple):
    """A piece of a timeline: who is on call over [start, end) and why (None and "gap": nobody)."""

    start: datetime
    end: datetime
    user_id: UUID | None
    source: Source
    layer: int | None = None
    ref: UUID | None = None  # override id or coverage request id


_Span = tuple[int, int, UUID]


def _turn_spans(layer: Layer, clock: LocalClock, start: int, end: int) -> list[_Span]:
    lo = max(start, to_us(layer.start) if layer.start else clock.us(layer.handoff))
    hi = min(end, to_us(layer.end) if layer.end else _MAX_US)
    if lo >= hi:
        return []
    step = layer.step // _US
    users = layer.users
    n = len(users)
    handoff = local_us(layer.handoff)
    k = (local_us(utc_to_local(from_us(lo), clock.zone)) - handoff - _TURN_LOOKBACK // _US) // step - 1
    turns: list[_Span] = []
    local = handoff + step * k
    turn_start = clock.utc(local)
    while turn_start < hi:
        local += step
        turn_end = max(clock.utc(local), turn_start)
        a, b = max(turn_start, lo), min(turn_end, hi)
        if a < b:
            turns.append((a, b, users[k % n]))
        k += 1
        turn_start = turn_end
    return turns


def _layer_spans(layer: Layer, clock: LocalClock, start: int, end: int) -> list[_Span]:
    turns = _turn_spans(layer, clock, start, end)
    if not layer.restrictions or not turns:
        return turns
    windows = _window_spans(layer.restrictions, clock, turns[0][0], turns[-1][1])
    out: list[_Span] = []
    i = 0
    for a, b, user in turns:
        while i < len(windows) and windows[i][1] <= a:
            i += 1
        j = i
        while j < len(windows) and windows[j][0] < b:
            wa, wb = windows[j]
            out.append((max(a, wa), min(b, wb), user))
            j += 1
    return out


def layer_segments(layer: Layer, index: int, zone: ZoneInfo, start: datetime, end: datetime) -> list[Segment]:
    spans = _layer_spans(layer, LocalClock(zone), to_us(start), to_us(end))
    return [Segment(from_us(a), from_us(b), u, "layer", index) for a, b, u in spans]


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


# (start, end, priority, user, source, layer, ref): a piece of someone's time, with how strongly it holds
_Piece = tuple[int, int, int, UUID | None, Source, int | None, UUID | None]
_ID_BITS = 24
_KIND_BIT = 1 << _ID_BITS
_ID_MASK = _KIND_BIT - 1


def _base_pieces(schedule: Schedule, start: int, end: int) -> list[_Piece]:
    if schedule.kind == "static":
        pieces: list[_Piece] = []
        for s in schedule.shifts:
            a, b = max(to_us(s.start), start), min(to_us(s.end), end)
            if a < b:
                pieces.append((a, b, 0, s.user_id, "static", None, None))
        return pieces
    clock = LocalClock(schedule.zone)
    return [
        (a, b, index, user, "layer", index, None)
        for index, layer in enumerate(schedule.layers)
        for a, b, user in _layer_spans(layer, clock, start, end)
    ]


def resolve(schedule: Schedule, covers: Sequence[Cover], start: datetime, end: datetime) -> list[Segment]:
    """The final on-call timeline of [start, end): contiguous segments, gaps included (user_id None)."""
    check_range(start, end)
    lo, hi = to_us(start), to_us(end)
    pieces = _base_pieces(schedule, lo, hi)
    above = len(schedule.layers) + 1
    for rank, c in enumerate(sorted(covers, key=lambda c: c.seq)):
        a, b = max(to_us(c.start), lo), min(to_us(c.end), hi)
        if a < b:
            ref = c.coverage_request_id if c.source == "coverage" else c.id
            pieces.append((a, b, above + rank, c.user_id, c.source, None, ref))
    if len(pieces) > _ID_MASK:
        raise InvalidInput("to", "too many shifts in this range; ask for a shorter one")
    # one int per event, sorted: time, then ends before starts, then piece number
    events = [p[0] << (_ID_BITS + 1) | _KIND_BIT | n for n, p in enumerate(pieces)]
    events += [p[1] << (_ID_BITS + 1) | n for n, p in enumerate(pieces)]
    events.sort()
    merged: list[list[object]] = []  # [start, end, user, source, layer, ref]
    # priority -> piece: pieces of one priority never overlap (one layer, one static schedule, one cover)
    active: dict[int, int] = {}
    cursor = lo
    gap: tuple[object, ...] = (None, "gap", None, None)
    last_key: tuple[object, ...] | None = None
    for event in events:
        at = event >> (_ID_BITS + 1)
        if at > cursor:
            if active:
                top = pieces[active[max(active)]]
                key: tuple[object, ...] = (top[3], top[4], top[5], top[6])
            else:
                key = gap
            if key == last_key:
                merged[-1][1] = at
            else:
                merged.append([cursor, at, *key])
                last_key = key
            cursor = at
        n = event & _ID_MASK
        if event & _KIND_BIT:
            active[pieces[n][2]] = n
        else:
            del active[pieces[n][2]]
    if cursor < hi:
        if last_key == gap:
            merged[-1][1] = hi
        else:
            merged.append([cursor, hi, *gap])
    out: list[Segment] = []
    boundary = from_us(lo)
    for m in merged:  # contiguous: each piece starts where the previous one ended
        end_at = from_us(m[1])  # type: ignore[arg-type]
        out.append(Segment(boundary, end_at, *m[2:]))  # type: ignore[arg-type]
        boundary = end_at
    return out


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
    return holder_problem(segments, claim.start, claim.end, requester)


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
