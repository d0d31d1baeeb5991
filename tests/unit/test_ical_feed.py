from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID

import pytest
from icalendar import Calendar

from services.schedule.domain.ical import (
    FEED_DAYS_AHEAD,
    FEED_DAYS_BEHIND,
    KEEP_CANCELLED,
    FeedEntry,
    FeedShift,
    feed_window,
    reconcile,
    render,
    shift_uid,
)

PRIMARY = UUID("00000000-0000-0000-0000-0000000000a1")
SECONDARY = UUID("00000000-0000-0000-0000-0000000000a2")
ALICE = UUID("00000000-0000-0000-0000-0000000000b1")
BOB = UUID("00000000-0000-0000-0000-0000000000b2")
NOW = datetime(2026, 3, 10, 12, 30, tzinfo=UTC)


def at(day: int, hour: int = 9) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=UTC)


def shift(
    start: datetime,
    end: datetime,
    user: UUID = ALICE,
    schedule: UUID = PRIMARY,
    source: str = "layer",
    user_name: str = "Alice",
) -> FeedShift:
    return FeedShift(schedule, "Primary", user, user_name, start, end, source)


def parse(feed: bytes) -> Calendar:
    calendar = Calendar.from_ical(feed)
    assert isinstance(calendar, Calendar)
    return calendar


def by_uid(entries: list[FeedEntry]) -> dict[str, FeedEntry]:
    return {e.uid: e for e in entries}


# UIDs


def test_uid_is_stable_and_ends_in_the_feed_domain() -> None:
    a = shift(at(10), at(11))
    assert shift_uid(a) == shift_uid(shift(at(10), at(11)))
    assert shift_uid(a).endswith("@oncall")
    assert len(shift_uid(a).split("@")[0]) == 32


def test_uid_ignores_the_offset_an_instant_is_written_in_and_what_is_only_displayed() -> None:
    plus_two = timezone(timedelta(hours=2))
    a = shift(at(10), at(11))
    b = FeedShift(PRIMARY, "Renamed", ALICE, "Alice B.", at(10).astimezone(plus_two), at(11), "override")
    assert shift_uid(a) == shift_uid(b)


@pytest.mark.parametrize(
    "other",
    [
        shift(at(10), at(11), user=BOB),
        shift(at(10), at(11), schedule=SECONDARY),
        shift(at(10, 10), at(11)),
        shift(at(10), at(11, 10)),
    ],
)
def test_uid_changes_with_schedule_user_start_or_end(other: FeedShift) -> None:
    assert shift_uid(other) != shift_uid(shift(at(10), at(11)))


def test_naive_instants_are_refused() -> None:
    with pytest.raises(ValueError):
        shift_uid(shift(datetime(2026, 3, 10, 9), at(11)))


# reconcile


def test_new_shifts_are_live_from_now_in_start_order() -> None:
    later, earlier = shift(at(12), at(13), user=BOB), shift(at(10), at(11))
    entries = reconcile([], [later, earlier], NOW)
    assert [e.uid for e in entries] == [shift_uid(earlier), shift_uid(later)]
    assert all(e.live and e.first_seen == NOW and e.sequence == 0 for e in entries)
    assert entries[1].user_id == BOB and entries[1].start == at(12) and entries[1].source == "layer"


def test_unchanged_shifts_keep_first_seen_and_sequence() -> None:
    first = reconcile([], [shift(at(10), at(11))], NOW)
    again = reconcile(first, [shift(at(10), at(11))], NOW + timedelta(hours=5))
    assert again == first


def test_a_removed_shift_is_cancelled_now_with_the_next_sequence() -> None:
    kept, removed = shift(at(10), at(11)), shift(at(11), at(12), user=BOB)
    first = reconcile([], [kept, removed], NOW)
    later = NOW + timedelta(hours=1)
    second = by_uid(reconcile(first, [kept], later))
    assert second[shift_uid(kept)].live
    gone = second[shift_uid(removed)]
    assert gone.cancelled_at == later and gone.sequence == 1 and gone.first_seen == NOW


def test_a_shift_split_by_an_override_cancels_the_whole_and_publishes_the_pieces() -> None:
    week = shift(at(9), at(16))
    first = reconcile([], [week], NOW)
    pieces = [shift(at(9), at(12)), shift(at(12), at(13), user=BOB, source="override"), shift(at(13), at(16))]
    second = reconcile(first, pieces, NOW + timedelta(minutes=5))
    assert [e.start for e in second] == [at(9), at(9), at(12), at(13)]
    assert {(e.start, e.end, e.live) for e in second} == {
        (at(9), at(16), False),
        (at(9), at(12), True),
        (at(12), at(13), True),
        (at(13), at(16), True),
    }


def test_a_cancelled_entry_stays_until_keep_cancelled_then_is_dropped() -> None:
    removed = shift(at(11), at(12))
    cancelled = reconcile(reconcile([], [removed], NOW), [], NOW)
    assert [e.live for e in cancelled] == [False]
    just_before = NOW + KEEP_CANCELLED - timedelta(seconds=1)
    assert reconcile(cancelled, [], just_before) == cancelled
    assert reconcile(cancelled, [], NOW + KEEP_CANCELLED) == []


def test_keep_cancelled_can_be_shortened() -> None:
    cancelled = reconcile(reconcile([], [shift(at(11), at(12))], NOW), [], NOW)
    assert reconcile(cancelled, [], NOW + timedelta(days=1), keep_cancelled=timedelta(days=1)) == []


def test_a_reappearing_shift_is_live_again_with_the_next_sequence() -> None:
    back = shift(at(11), at(12))
    cancelled = reconcile(reconcile([], [back], NOW), [], NOW + timedelta(hours=1))
    revived = reconcile(cancelled, [back], NOW + timedelta(hours=2))
    assert len(revived) == 1
    entry = revived[0]
    assert entry.live and entry.sequence == 2 and entry.first_seen == NOW


def test_a_renamed_or_resourced_shift_keeps_its_uid_with_the_next_sequence() -> None:
    first = reconcile([], [shift(at(10), at(11))], NOW)
    renamed = reconcile(first, [shift(at(10), at(11), user_name="Alice Liddell", source="override")], NOW)
    assert [(e.uid, e.sequence, e.user_name, e.source) for e in renamed] == [
        (first[0].uid, 1, "Alice Liddell", "override")
    ]


def test_a_shift_that_ages_out_behind_the_window_is_forgotten_not_cancelled() -> None:
    old = shift(at(1), at(2))
    first = reconcile([], [old], at(2))
    a_month_on = at(2) + timedelta(days=FEED_DAYS_BEHIND + 2)
    assert old.end <= feed_window(a_month_on)[0]
    assert reconcile(first, [], a_month_on) == []


def test_a_shift_clipped_at_the_moving_window_edge_is_cancelled_for_its_longer_self() -> None:
    long = shift(at(1), at(20))
    first = reconcile([], [replace(long, start=at(3))], NOW, window_start=at(3))
    second = reconcile(first, [replace(long, start=at(4))], NOW, window_start=at(4))
    assert [(e.start, e.live) for e in second] == [(at(3), False), (at(4), True)]


def test_duplicate_current_shifts_publish_one_entry() -> None:
    assert len(reconcile([], [shift(at(10), at(11)), shift(at(10), at(11))], NOW)) == 1


def test_feed_window_covers_15_days_back_to_180_ahead_in_whole_utc_days() -> None:
    start, end = feed_window(NOW)
    assert start == datetime(2026, 2, 23, tzinfo=UTC)
    assert start <= NOW - timedelta(days=FEED_DAYS_BEHIND)
    assert end >= NOW + timedelta(days=FEED_DAYS_AHEAD)
    assert feed_window(NOW + timedelta(hours=11)) == (start, end)


# render


def feed_of(*shifts: FeedShift, removed: tuple[FeedShift, ...] = ()) -> bytes:
    entries = reconcile([], [*shifts, *removed], NOW - timedelta(hours=1))
    entries = reconcile(entries, list(shifts), NOW)
    return render(entries, name="On call: Alice", now=NOW)


def test_calendar_properties_make_it_subscribable() -> None:
    calendar = parse(feed_of(shift(at(10), at(11))))
    assert calendar["VERSION"] == "2.0"
    assert calendar["PRODID"]
    assert calendar["CALSCALE"] == "GREGORIAN"
    assert calendar["METHOD"] == "PUBLISH"
    assert calendar["X-WR-CALNAME"] == "On call: Alice"
    assert calendar.calendar_name == "On call: Alice"
    assert calendar.refresh_interval == timedelta(hours=1)
    assert calendar["X-PUBLISHED-TTL"] == "PT1H"
    calendar.validate()


def test_refresh_interval_carries_its_required_value_type() -> None:
    assert b"REFRESH-INTERVAL;VALUE=DURATION:PT1H\r\n" in feed_of(shift(at(10), at(11)))


def test_one_event_per_entry_with_utc_times_uid_summary_and_status() -> None:
    live, removed = shift(at(10), at(11)), shift(at(12), at(13), user=BOB, user_name="Bob", source="coverage")
    events = parse(feed_of(live, removed=(removed,))).events
    assert [e.uid for e in events] == [shift_uid(live), shift_uid(removed)]
    first, second = events
    assert (first.start, first.end) == (at(10), at(11))
    assert first.start.utcoffset() == timedelta(0)
    assert first.DTSTAMP == NOW
    assert first["SUMMARY"] == "On call: Alice (Primary)"
    assert (first["STATUS"], first.sequence) == ("CONFIRMED", 0)
    assert (second["STATUS"], second.sequence) == ("CANCELLED", 1)
    assert second["SUMMARY"] == "On call: Bob (Primary)"
    assert first["TRANSP"] == "TRANSPARENT"


def test_times_are_written_in_utc_whatever_offset_they_came_in() -> None:
    plus_two = timezone(timedelta(hours=2))
    feed = feed_of(shift(at(10).astimezone(plus_two), at(11).astimezone(plus_two)))
    assert b"DTSTART:20260310T090000Z\r\n" in feed
    assert b"DTEND:20260311T090000Z\r\n" in feed
    assert b"DTSTAMP:20260310T123000Z\r\n" in feed


@pytest.mark.parametrize(
    ("source", "words"),
    [("layer", "rotation"), ("override", "override"), ("coverage", "coverage"), ("static", "static")],
)
def test_description_names_the_source(source: str, words: str) -> None:
    (event,) = parse(feed_of(shift(at(10), at(11), source=source))).events
    assert words in event["DESCRIPTION"]


def test_a_cancelled_event_says_so() -> None:
    (event,) = parse(feed_of(removed=(shift(at(10), at(11)),))).events
    assert event["STATUS"] == "CANCELLED"
    assert event["DESCRIPTION"].startswith("Cancelled")


def test_an_empty_feed_is_still_a_valid_calendar() -> None:
    feed = render([], name="On call: nobody", now=NOW)
    calendar = parse(feed)
    assert calendar.events == []
    assert calendar["X-WR-CALNAME"] == "On call: nobody"
    calendar.validate()
    assert feed.startswith(b"BEGIN:VCALENDAR\r\n") and feed.endswith(b"END:VCALENDAR\r\n")


def test_render_is_deterministic() -> None:
    entries = reconcile([], [shift(at(12), at(13)), shift(at(10), at(11))], NOW)
    assert render(entries, name="x", now=NOW) == render(list(reversed(entries)), name="x", now=NOW)


def test_lines_end_in_crlf_and_long_lines_are_folded_to_75_octets() -> None:
    name = "Zoë Ångström-Łukasiewicz " * 6
    feed = feed_of(shift(at(10), at(11), user_name=name))
    assert feed.endswith(b"\r\n")
    lines = feed.split(b"\r\n")[:-1]
    assert all(b"\n" not in line and b"\r" not in line for line in lines)
    assert all(len(line) <= 75 for line in lines)
    assert any(line.startswith(b" ") for line in lines)
    (event,) = parse(feed).events
    assert event["SUMMARY"] == f"On call: {name} (Primary)"
