from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID, uuid4

import pytest

from shared.messages import ScheduleTimeline, TimelineSegment
from shared.timelines import TimelineIndex

T0 = datetime(2026, 3, 1, tzinfo=UTC)
ADA, BOB = uuid4(), uuid4()


def hours(n: float) -> datetime:
    return T0 + timedelta(hours=n)


def a_timeline(schedule_id: UUID, version: int, *pieces: tuple[float, float, UUID | None]) -> ScheduleTimeline:
    segments = [
        TimelineSegment(start=hours(a), end=hours(b), user_id=user, source="layer" if user else "gap")
        for a, b, user in pieces
    ]
    return ScheduleTimeline(
        schedule_id=schedule_id,
        version=version,
        name="primary",
        time_zone="Europe/Berlin",
        horizon_start=segments[0].start,
        horizon_end=segments[-1].end,
        segments=segments,
    )


@pytest.fixture
def schedule_id() -> UUID:
    return uuid4()


@pytest.fixture
def index(schedule_id: UUID) -> TimelineIndex:
    idx = TimelineIndex()
    idx.apply(a_timeline(schedule_id, 2, (0, 8, ADA), (8, 10, None), (10, 24, BOB)))
    return idx


def who(index: TimelineIndex, schedule_id: UUID, at: datetime) -> UUID | str | None:
    segment = index.at(schedule_id, at)
    return "outside" if segment is None else segment.user_id


def test_start_is_inclusive_and_end_exclusive(index: TimelineIndex, schedule_id: UUID) -> None:
    assert who(index, schedule_id, hours(0)) == ADA
    assert who(index, schedule_id, hours(8) - timedelta(microseconds=1)) == ADA
    assert who(index, schedule_id, hours(10)) == BOB
    assert who(index, schedule_id, hours(24) - timedelta(microseconds=1)) == BOB


def test_a_gap_is_a_segment_with_nobody(index: TimelineIndex, schedule_id: UUID) -> None:
    segment = index.at(schedule_id, hours(9))
    assert segment is not None
    assert (segment.user_id, segment.source, segment.start, segment.end) == (None, "gap", hours(8), hours(10))


def test_outside_the_horizon_nothing_is_known(index: TimelineIndex, schedule_id: UUID) -> None:
    assert index.at(schedule_id, hours(0) - timedelta(microseconds=1)) is None
    assert index.at(schedule_id, hours(24)) is None
    assert index.at(schedule_id, hours(1000)) is None


def test_an_unknown_schedule_has_no_answer(index: TimelineIndex) -> None:
    assert index.at(uuid4(), hours(1)) is None


def test_instants_in_any_offset_are_the_same_instant(index: TimelineIndex, schedule_id: UUID) -> None:
    berlin_winter = timezone(timedelta(hours=1))
    assert who(index, schedule_id, hours(10).astimezone(berlin_winter)) == BOB
    assert who(index, schedule_id, hours(10).astimezone(berlin_winter) - timedelta(microseconds=1)) is None


def test_naive_instants_are_refused(index: TimelineIndex, schedule_id: UUID) -> None:
    with pytest.raises(ValueError):
        index.at(schedule_id, datetime(2026, 3, 1, 12))


def test_a_newer_version_replaces_the_timeline(index: TimelineIndex, schedule_id: UUID) -> None:
    assert index.apply(a_timeline(schedule_id, 3, (0, 48, BOB)))
    assert who(index, schedule_id, hours(1)) == BOB
    assert who(index, schedule_id, hours(30)) == BOB
    timeline = index.get(schedule_id)
    assert timeline is not None and timeline.version == 3


@pytest.mark.parametrize("version", [1, 2])
def test_an_older_or_repeated_version_is_ignored(index: TimelineIndex, schedule_id: UUID, version: int) -> None:
    assert not index.apply(a_timeline(schedule_id, version, (0, 48, BOB)))
    assert who(index, schedule_id, hours(1)) == ADA
    assert who(index, schedule_id, hours(30)) == "outside"


def test_schedules_are_kept_apart(index: TimelineIndex, schedule_id: UUID) -> None:
    other = uuid4()
    assert index.apply(a_timeline(other, 1, (0, 5, BOB)))
    assert len(index) == 2 and other in index
    assert who(index, other, hours(1)) == BOB
    assert who(index, schedule_id, hours(1)) == ADA


def test_lookups_agree_with_a_scan_across_many_segments(schedule_id: UUID) -> None:
    users = [ADA, BOB, None]
    pieces = [(i * 0.5, (i + 1) * 0.5, users[i % 3]) for i in range(500)]
    idx = TimelineIndex()
    idx.apply(a_timeline(schedule_id, 1, *pieces))
    for minute in range(-30, 250 * 60 + 30, 7):
        at = hours(minute / 60)
        expected = next((u for a, b, u in pieces if hours(a) <= at < hours(b)), "outside")
        assert who(idx, schedule_id, at) == expected
