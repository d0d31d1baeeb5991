"""Rotations against independent oracles: iCalendar RRULEs expanded by recurring-ical-events and dateutil."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from uuid import UUID
from zoneinfo import ZoneInfo

import icalendar
import recurring_ical_events
from dateutil import rrule
from hypothesis import given, settings
from hypothesis import strategies as st

from services.schedule.domain.shifts import (
    Schedule,
    Segment,
    gaps_of,
    new_layer,
    parse_windows,
    resolve,
    shifts_of,
)

ZONES = [
    "America/New_York",
    "Europe/Berlin",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "America/Santiago",
    "Pacific/Chatham",
    "Antarctica/Troll",
    "Europe/London",
]
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Turn = tuple[datetime, datetime, UUID]


@dataclass(frozen=True)
class Rotation:
    zone: str
    handoff: datetime
    users: tuple[UUID, ...]
    unit: str
    length: int
    start: datetime
    end: datetime

    @property
    def step(self) -> timedelta:
        return timedelta(days=self.length * (7 if self.unit == "weeks" else 1))

    @property
    def first_handoff(self) -> datetime:
        return self.handoff.replace(tzinfo=ZoneInfo(self.zone)).astimezone(UTC)

    @property
    def expansion(self) -> tuple[datetime, datetime]:
        margin = self.step + timedelta(days=2)
        return self.start - margin, self.end + margin


@st.composite
def rotations(draw: st.DrawFn) -> Rotation:
    zone = draw(st.sampled_from(ZONES))
    day = draw(st.dates(date(2025, 1, 1), date(2027, 6, 30)))
    hour = draw(st.sampled_from([0, 1, 2, 3]) | st.integers(0, 23))
    minute = draw(st.sampled_from([0, 15, 30, 45]) | st.integers(0, 59))
    handoff = datetime.combine(day, time(hour, minute))
    users = tuple(UUID(int=i + 1) for i in range(draw(st.integers(1, 6))))
    unit, length = draw(st.tuples(st.just("days"), st.integers(1, 3)) | st.tuples(st.just("weeks"), st.integers(1, 2)))
    first = handoff.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)
    start = first + timedelta(minutes=draw(st.integers(-30 * 24 * 60, 300 * 24 * 60)))
    end = start + timedelta(minutes=draw(st.integers(1, 365 * 24 * 60)))
    return Rotation(zone, handoff, users, unit, length, start, end)


def vcalendar(rotation: Rotation) -> str:
    """One VEVENT per user: their first turn as DTSTART in the zone, recurring every full round."""
    freq = "WEEKLY" if rotation.unit == "weeks" else "DAILY"
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//oncall tests//rotation oracle//EN"]
    for i in range(len(rotation.users)):
        first = rotation.handoff + i * rotation.step
        lines += [
            "BEGIN:VEVENT",
            f"UID:turn-{i}",
            "DTSTAMP:20260101T000000Z",
            f"DTSTART;TZID={rotation.zone}:{first:%Y%m%dT%H%M%S}",
            "DURATION:PT1M",
            f"RRULE:FREQ={freq};INTERVAL={rotation.length * len(rotation.users)}",
            "END:VEVENT",
        ]
    lines.append("END:VCALENDAR")
    return "\r\n".join(lines) + "\r\n"


def handoffs_by_recurring_ical_events(rotation: Rotation) -> list[tuple[datetime, UUID]]:
    calendar = icalendar.Calendar.from_ical(vcalendar(rotation))
    found = []
    for event in recurring_ical_events.of(calendar).between(*rotation.expansion):
        starts = event["DTSTART"].dt
        assert starts.tzinfo is not None, "TZID was not resolved to a zone"
        found.append((starts.astimezone(UTC), rotation.users[int(str(event["UID"]).removeprefix("turn-"))]))
    return sorted(found)


def handoffs_by_dateutil(rotation: Rotation) -> list[tuple[datetime, UUID]]:
    freq = rrule.WEEKLY if rotation.unit == "weeks" else rrule.DAILY
    found = []
    for i, user in enumerate(rotation.users):
        dtstart = (rotation.handoff + i * rotation.step).replace(tzinfo=ZoneInfo(rotation.zone))
        rule = rrule.rrule(freq, dtstart=dtstart, interval=rotation.length * len(rotation.users))
        found += [(s.astimezone(UTC), user) for s in rule.between(*rotation.expansion, inc=True)]
    return sorted(found)


def turns_between_handoffs(handoffs: list[tuple[datetime, UUID]]) -> list[Turn]:
    """Each turn ends where the next one starts, so DST moves both ends alike."""
    return [(start, next_start, user) for (start, user), (next_start, _) in pairwise(handoffs)]


def clipped(turns: list[Turn], start: datetime, end: datetime) -> list[Turn]:
    inside = [(max(a, start), min(b, end), user) for a, b, user in turns]
    return merged([t for t in inside if t[0] < t[1]])


def merged(pieces: list[Turn]) -> list[Turn]:
    out: list[Turn] = []
    for a, b, user in sorted(pieces):
        if out and out[-1][2] == user and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b), user)
        else:
            out.append((a, b, user))
    return out


def resolved(rotation: Rotation, restrictions: tuple[tuple[list[str], str, str], ...] = ()) -> list[Segment]:
    layer = new_layer(
        rotation.users,
        rotation.length,
        rotation.unit,
        rotation.handoff,
        parse_windows(restrictions, "restrictions"),
    )
    schedule = Schedule(UUID(int=100), "oracle", rotation.zone, "recurring", (layer,))
    return resolve(schedule, [], rotation.start, rotation.end)


def as_turns(segments: list[Segment]) -> list[Turn]:
    return [(s.start, s.end, s.user_id) for s in shifts_of(segments) if s.user_id is not None]


@settings(max_examples=150, deadline=None)
@given(rotations())
def test_rotation_turns_match_icalendar_recurrences(rotation: Rotation) -> None:
    by_ical = clipped(turns_between_handoffs(handoffs_by_recurring_ical_events(rotation)), rotation.start, rotation.end)
    by_dateutil = clipped(turns_between_handoffs(handoffs_by_dateutil(rotation)), rotation.start, rotation.end)
    assert by_ical == by_dateutil, "the two oracles disagree"

    segments = resolved(rotation)

    assert as_turns(segments) == by_ical
    before_first = min(rotation.first_handoff, rotation.end)
    expected_gaps = [(rotation.start, before_first)] if rotation.start < before_first else []
    assert [(s.start, s.end) for s in gaps_of(segments)] == expected_gaps


window_specs = st.lists(
    st.tuples(
        st.lists(st.sampled_from(DAY_NAMES), min_size=1, max_size=7, unique=True),
        st.sampled_from(["00:00", "01:30", "02:00", "02:30", "03:00", "09:00", "17:00", "22:00", "23:45"]),
        st.sampled_from(["00:00", "02:15", "02:30", "03:00", "06:00", "12:00", "17:00", "24:00"]),
    ).filter(lambda spec: spec[1] != spec[2]),
    min_size=1,
    max_size=3,
).map(tuple)


def clock(text: str) -> tuple[int, int]:
    hours, minutes = text.split(":")
    return int(hours), int(minutes)


def window_instants(
    specs: tuple[tuple[list[str], str, str], ...], zone: str, start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    """Each spec's local opening and closing on every local day, as UTC instants (fold=0, RFC 5545 3.3.5)."""
    tz = ZoneInfo(zone)
    found = []
    day = start.astimezone(tz).date() - timedelta(days=1)
    while day <= end.astimezone(tz).date():
        for days, opens_text, closes_text in specs:
            if DAY_NAMES[day.weekday()] not in days:
                continue
            opens = datetime.combine(day, time(*clock(opens_text)))
            close_hour, close_minute = clock(closes_text)
            closes = datetime.combine(day, time()) + timedelta(hours=close_hour, minutes=close_minute)
            if closes <= opens:
                closes += timedelta(days=1)
            a, b = (t.replace(tzinfo=tz).astimezone(UTC) for t in (opens, closes))
            if a < b:
                found.append((a, b))
        day += timedelta(days=1)
    return found


@settings(max_examples=100, deadline=None)
@given(rotations(), window_specs)
def test_restricted_rotation_turns_are_the_turns_intersected_with_the_local_windows(
    rotation: Rotation, specs: tuple[tuple[list[str], str, str], ...]
) -> None:
    turns = turns_between_handoffs(handoffs_by_dateutil(rotation))
    windows = window_instants(specs, rotation.zone, rotation.start, rotation.end)
    pieces = [(max(a, wa), min(b, wb), user) for a, b, user in turns for wa, wb in windows if max(a, wa) < min(b, wb)]

    assert as_turns(resolved(rotation, specs)) == clipped(merged(pieces), rotation.start, rotation.end)


def clock_changes(zone: str) -> list[datetime]:
    tz = ZoneInfo(zone)
    found = []
    day = datetime(2025, 1, 1, tzinfo=UTC)
    while day < datetime(2028, 1, 1, tzinfo=UTC):
        if day.astimezone(tz).utcoffset() != (day + timedelta(days=1)).astimezone(tz).utcoffset():
            instant = day
            while instant.astimezone(tz).utcoffset() == day.astimezone(tz).utcoffset():
                instant += timedelta(minutes=15)
            found.append(instant)
        day += timedelta(days=1)
    return found


CLOCK_CHANGES = {zone: clock_changes(zone) for zone in ZONES if zone != "Asia/Kolkata"}


@settings(max_examples=150, deadline=None)
@given(
    zone=st.sampled_from(sorted(CLOCK_CHANGES)),
    pick=st.integers(0, 100),
    days_before=st.integers(0, 20),
    handoff_time=st.times().map(lambda t: t.replace(second=0, microsecond=0)),
    users=st.integers(1, 4),
    unit=st.sampled_from(["hours", "days", "weeks"]),
    length=st.integers(1, 3),
    start_offset=st.integers(-6 * 60, 6 * 60),
    span=st.integers(1, 3 * 24 * 60),
)
def test_a_timeline_does_not_depend_on_the_window_it_was_asked_for(
    zone: str,
    pick: int,
    days_before: int,
    handoff_time: time,
    users: int,
    unit: str,
    length: int,
    start_offset: int,
    span: int,
) -> None:
    changes = CLOCK_CHANGES[zone]
    change = changes[pick % len(changes)]
    local_day = change.astimezone(ZoneInfo(zone)).date() - timedelta(days=days_before)
    layer = new_layer([UUID(int=i + 1) for i in range(users)], length, unit, datetime.combine(local_day, handoff_time))
    schedule = Schedule(UUID(int=100), "windows", zone, "recurring", (layer,))
    start = change + timedelta(minutes=start_offset)
    end = start + timedelta(minutes=span)

    wide = resolve(schedule, [], change - timedelta(days=30), change + timedelta(days=30))

    expected = [(max(s.start, start), min(s.end, end), s.user_id) for s in wide if s.end > start and s.start < end]
    assert [(s.start, s.end, s.user_id) for s in resolve(schedule, [], start, end)] == expected
