"""Rotations and restriction windows keep local wall-clock times across DST changes (see shifts.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest

from services.schedule.domain.shifts import (
    Layer,
    Schedule,
    Segment,
    layer_segments,
    local_to_utc,
    new_layer,
    parse_windows,
    resolve,
    shifts_of,
)

ALICE, BOB, CAROL = UUID(int=1), UUID(int=2), UUID(int=3)
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]

# (zone, local date whose early morning the clocks change, real hours from 09:00 the day before to 09:00 that day)
CLOCK_CHANGES = [
    ("America/New_York", date(2026, 3, 8), 23),
    ("America/New_York", date(2026, 11, 1), 25),
    ("Europe/Berlin", date(2026, 3, 29), 23),
    ("Europe/Berlin", date(2026, 10, 25), 25),
    ("Australia/Lord_Howe", date(2026, 10, 4), 23.5),
    ("Australia/Lord_Howe", date(2026, 4, 5), 24.5),
    ("Asia/Kolkata", date(2026, 3, 8), 24),
    ("Asia/Kolkata", date(2026, 11, 1), 24),
]


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def at(local: datetime, zone: str) -> datetime:
    return local.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)


def wall_clock(instant: datetime, zone: str) -> datetime:
    return instant.astimezone(ZoneInfo(zone)).replace(tzinfo=None)


def timeline(zone: str, layer: Layer, start: datetime, end: datetime) -> list[Segment]:
    return resolve(Schedule(UUID(int=100), "primary", zone, "recurring", (layer,)), [], start, end)


@pytest.mark.parametrize(("zone", "night", "hours"), CLOCK_CHANGES)
def test_the_clock_change_table_matches_zoneinfo(zone: str, night: date, hours: float) -> None:
    tz = ZoneInfo(zone)
    offset_before = datetime.combine(night - timedelta(days=1), time(12), tz).utcoffset()
    offset_after = datetime.combine(night, time(12), tz).utcoffset()
    assert offset_before is not None and offset_after is not None
    assert offset_before - offset_after == timedelta(hours=hours - 24)
    if zone != "Asia/Kolkata":
        midnight_offset = datetime.combine(night, time(0), tz).utcoffset()
        assert midnight_offset == offset_before, "the change must happen after midnight of the named night"


@pytest.mark.parametrize(("zone", "night", "hours"), CLOCK_CHANGES)
def test_a_daily_0900_handoff_stays_at_0900_local_and_the_turn_over_the_change_stretches(
    zone: str, night: date, hours: float
) -> None:
    first = datetime.combine(night - timedelta(days=4), time(9))
    layer = new_layer([ALICE, BOB], 1, "days", first)

    segments = timeline(zone, layer, at(first, zone), at(first + timedelta(days=8), zone))

    assert [wall_clock(s.start, zone) for s in segments] == [first + timedelta(days=d) for d in range(8)]
    assert [s.user_id for s in segments] == [ALICE, BOB] * 4
    lengths = {wall_clock(s.start, zone).date(): s.end - s.start for s in segments}
    assert lengths.pop(night - timedelta(days=1)) == timedelta(hours=hours)
    assert set(lengths.values()) == {timedelta(hours=24)}


@pytest.mark.parametrize(("zone", "night", "hours"), CLOCK_CHANGES)
def test_a_weekly_0900_handoff_stays_at_0900_local_and_the_week_over_the_change_stretches(
    zone: str, night: date, hours: float
) -> None:
    spanning = datetime.combine(night - timedelta(days=4), time(9))
    layer = new_layer([ALICE, BOB, CAROL], 1, "weeks", spanning - timedelta(weeks=1))

    segments = timeline(zone, layer, at(spanning - timedelta(weeks=1), zone), at(spanning + timedelta(weeks=2), zone))

    assert [wall_clock(s.start, zone) for s in segments] == [spanning + timedelta(weeks=w) for w in (-1, 0, 1)]
    assert [s.user_id for s in segments] == [ALICE, BOB, CAROL]
    assert [s.end - s.start for s in segments] == [
        timedelta(hours=168),
        timedelta(hours=168 + hours - 24),
        timedelta(hours=168),
    ]


@pytest.mark.parametrize(
    ("zone", "night", "handoff", "happens_at", "local_time"),
    [
        ("America/New_York", date(2026, 3, 8), time(2, 30), utc(2026, 3, 8, 7, 30), time(3, 30)),
        ("Europe/Berlin", date(2026, 3, 29), time(2, 0), utc(2026, 3, 29, 1, 0), time(3, 0)),
        ("Australia/Lord_Howe", date(2026, 10, 4), time(2, 15), utc(2026, 10, 3, 15, 45), time(2, 45)),
    ],
)
def test_a_handoff_in_the_skipped_hour_happens_that_much_later(
    zone: str, night: date, handoff: time, happens_at: datetime, local_time: time
) -> None:
    skipped = datetime.combine(night, handoff)
    layer = new_layer([ALICE, BOB], 1, "days", skipped - timedelta(days=2))

    segments = timeline(zone, layer, at(skipped - timedelta(days=2), zone), at(skipped + timedelta(days=2), zone))

    assert local_to_utc(skipped, ZoneInfo(zone)) == happens_at
    assert segments[2].start == happens_at
    assert wall_clock(happens_at, zone) == datetime.combine(night, local_time)
    assert wall_clock(segments[3].start, zone) == skipped + timedelta(days=1), "the next day is back at the hour"


@pytest.mark.parametrize(
    ("zone", "night", "handoff", "first_occurrence"),
    [
        ("America/New_York", date(2026, 11, 1), time(1, 30), utc(2026, 11, 1, 5, 30)),
        ("Europe/Berlin", date(2026, 10, 25), time(2, 30), utc(2026, 10, 25, 0, 30)),
        ("Australia/Lord_Howe", date(2026, 4, 5), time(1, 45), utc(2026, 4, 4, 14, 45)),
    ],
)
def test_a_handoff_in_the_repeated_hour_is_its_first_occurrence(
    zone: str, night: date, handoff: time, first_occurrence: datetime
) -> None:
    repeated = datetime.combine(night, handoff)
    layer = new_layer([ALICE, BOB], 1, "days", repeated - timedelta(days=2))

    segments = timeline(zone, layer, at(repeated - timedelta(days=2), zone), at(repeated + timedelta(days=2), zone))

    assert local_to_utc(repeated, ZoneInfo(zone)) == first_occurrence
    assert segments[2].start == first_occurrence
    assert wall_clock(first_occurrence, zone) == repeated
    assert wall_clock(first_occurrence - timedelta(minutes=1), zone) < repeated, "not the second occurrence"


@pytest.mark.parametrize(
    ("zone", "first_handoff", "start", "expected"),
    [
        (
            "America/New_York",
            datetime(2026, 3, 8, 0, 30),
            utc(2026, 3, 8, 5, 0),
            [
                (utc(2026, 3, 8, 5, 30), utc(2026, 3, 8, 6, 30), ALICE),  # 00:30 EST
                (utc(2026, 3, 8, 6, 30), utc(2026, 3, 8, 7, 30), BOB),  # 01:30 EST
                (utc(2026, 3, 8, 7, 30), utc(2026, 3, 8, 8, 30), ALICE),  # 03:30 EDT; CAROL's 02:30 is empty
                (utc(2026, 3, 8, 8, 30), utc(2026, 3, 8, 9, 0), BOB),
            ],
        ),
        (
            "Europe/Berlin",
            datetime(2026, 3, 29, 0, 0),
            utc(2026, 3, 28, 23, 0),
            [
                (utc(2026, 3, 28, 23, 0), utc(2026, 3, 29, 0, 0), ALICE),  # 00:00 CET
                (utc(2026, 3, 29, 0, 0), utc(2026, 3, 29, 1, 0), BOB),  # 01:00 CET
                (utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 2, 0), ALICE),  # 03:00 CEST; CAROL's 02:00 is empty
                (utc(2026, 3, 29, 2, 0), utc(2026, 3, 29, 3, 0), BOB),
            ],
        ),
    ],
)
def test_an_hourly_turn_inside_the_skipped_hour_leaves_no_empty_segment(
    zone: str, first_handoff: datetime, start: datetime, expected: list[tuple[datetime, datetime, UUID]]
) -> None:
    layer = new_layer([ALICE, BOB, CAROL], 1, "hours", first_handoff)

    segments = timeline(zone, layer, start, expected[-1][1])

    assert all(s.start < s.end for s in segments)
    assert [(s.start, s.end, s.user_id) for s in shifts_of(segments)] == expected


@pytest.mark.parametrize(
    ("zone", "unit", "first_handoff", "jump"),
    [
        ("Antarctica/Troll", "hours", datetime(2026, 3, 28, 0, 0), utc(2026, 3, 29, 1)),  # +00 to +02
        ("Pacific/Apia", "hours", datetime(2011, 12, 29, 0, 0), utc(2011, 12, 30, 10)),  # skipped 2011-12-30
        ("Pacific/Apia", "days", datetime(2011, 12, 25, 9, 0), utc(2011, 12, 30, 10)),
    ],
)
def test_a_jump_longer_than_a_turn_gives_one_turn_at_a_time_whatever_the_query_window(
    zone: str, unit: str, first_handoff: datetime, jump: datetime
) -> None:
    layer = new_layer([ALICE, BOB, CAROL], 1, unit, first_handoff)
    end = jump + timedelta(days=2)
    whole = timeline(zone, layer, jump - timedelta(days=2), end)

    turns = layer_segments(layer, 0, ZoneInfo(zone), jump - timedelta(days=2), end)
    assert all(t.start < t.end for t in turns)
    assert all(before.end <= after.start for before, after in pairwise(turns)), "turns of one layer overlap"
    for minute in range(0, 26 * 60, 15):
        start = jump + timedelta(minutes=minute)
        expected = [(max(s.start, start), s.end, s.user_id) for s in whole if s.end > start]
        assert [(s.start, s.end, s.user_id) for s in timeline(zone, layer, start, end)] == expected


def test_weekday_business_hours_stay_at_0900_to_1700_local_across_the_change() -> None:
    zone = "Europe/Berlin"
    office = parse_windows([(WEEKDAYS, "09:00", "17:00")], "restrictions")
    layer = new_layer([ALICE], 1, "days", datetime(2026, 3, 20, 0, 0), office)

    segments = shifts_of(timeline(zone, layer, utc(2026, 3, 23), utc(2026, 4, 4)))

    workdays = [date(2026, 3, 23) + timedelta(days=d) for d in range(12) if d % 7 < 5]
    assert [(wall_clock(s.start, zone), wall_clock(s.end, zone)) for s in segments] == [
        (datetime.combine(d, time(9)), datetime.combine(d, time(17))) for d in workdays
    ]
    friday_before, monday_after = segments[4], segments[5]
    assert (friday_before.start, friday_before.end) == (utc(2026, 3, 27, 8), utc(2026, 3, 27, 16))
    assert (monday_after.start, monday_after.end) == (utc(2026, 3, 30, 7), utc(2026, 3, 30, 15))


@pytest.mark.parametrize(("zone", "night", "hours"), CLOCK_CHANGES)
def test_an_overnight_window_stays_at_2200_to_0600_local_and_shrinks_or_stretches_over_the_change(
    zone: str, night: date, hours: float
) -> None:
    nights = parse_windows([(["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "22:00", "06:00")], "restrictions")
    layer = new_layer([ALICE, BOB], 1, "days", datetime.combine(night - timedelta(days=5), time(12)), nights)
    first_evening = datetime.combine(night - timedelta(days=3), time(22))

    segments = shifts_of(timeline(zone, layer, at(first_evening, zone), at(first_evening + timedelta(days=5), zone)))

    evenings = [first_evening + timedelta(days=d) for d in range(5)]
    assert [(wall_clock(s.start, zone), wall_clock(s.end, zone)) for s in segments] == [
        (e, e + timedelta(hours=8)) for e in evenings
    ]
    lengths = {wall_clock(s.start, zone).date(): s.end - s.start for s in segments}
    assert lengths.pop(night - timedelta(days=1)) == timedelta(hours=8 + hours - 24)
    assert set(lengths.values()) == {timedelta(hours=8)}
