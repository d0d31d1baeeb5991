"""Escalation policy and support-hours rules, and the weekly windows both kinds of schedule are built from."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from uuid import UUID

import pytest

from services.schedule.domain.policies import (
    Rule,
    Step,
    SupportHours,
    new_policy,
    new_support_hours,
    responders_at,
)
from services.schedule.domain.shifts import Window, describe_windows, parse_windows
from shared.errors import InvalidInput

ALICE, BOB, CAROL = UUID(int=1), UUID(int=2), UUID(int=3)
PRIMARY, SECONDARY = UUID(int=101), UUID(int=102)
KNOWN_USERS = {ALICE, BOB, CAROL}
KNOWN_SCHEDULES = {PRIMARY, SECONDARY}
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def policy_with(rules: list[Rule], repeat: int = 0, name: str = "Payments") -> None:
    new_policy(UUID(int=9), name, rules, repeat, KNOWN_USERS, KNOWN_SCHEDULES)


@pytest.mark.parametrize(
    ("specs", "field"),
    [
        ([(WEEKDAYS, "25:00", "17:00")], "hours.0.start"),
        ([(WEEKDAYS, "9am", "17:00")], "hours.0.start"),
        ([(WEEKDAYS, "", "17:00")], "hours.0.start"),
        ([(WEEKDAYS, "9:00", "17:00")], "hours.0.start"),
        ([(WEEKDAYS, "09:60", "17:00")], "hours.0.start"),
        ([(WEEKDAYS, "24:00", "06:00")], "hours.0.start"),
        ([(WEEKDAYS, "09:00", "24:01")], "hours.0.end"),
        ([(WEEKDAYS, "09:00", "17:00\n")], "hours.0.end"),
        ([(WEEKDAYS, "09:00", "24:00\n")], "hours.0.end"),
        ([(WEEKDAYS, "09:00", "17:00"), (["monday"], "09:00", "17:00")], "hours.1.days"),
        ([(["Mon"], "09:00", "17:00")], "hours.0.days"),
        ([([], "09:00", "17:00")], "hours.0.days"),
    ],
)
def test_invalid_windows_name_the_field(specs: list[tuple[list[str], str, str]], field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_windows(specs, "hours")
    assert err.value.field == field


def test_a_window_ending_where_it_starts_lasts_24_hours_and_duplicates_are_kept_once() -> None:
    twice = [(WEEKDAYS, "09:00", "17:00"), (WEEKDAYS, "09:00", "17:00")]
    assert parse_windows(twice, "hours") == parse_windows(twice[:1], "hours")
    assert parse_windows([(["mon"], "09:00", "09:00"), (["tue"], "00:00", "00:00")], "hours") == (
        Window(0, time(9), 24 * 60),
        Window(1, time(0), 24 * 60),
    )


def test_described_windows_read_back_as_the_same_windows() -> None:
    windows = parse_windows(
        [(WEEKDAYS, "09:00", "17:00"), (["sat", "sun"], "22:00", "06:00"), (["wed"], "00:00", "24:00"),
         (["thu"], "07:30", "07:30")],
        "hours",
    )
    assert set(parse_windows(describe_windows(windows), "hours")) == set(windows)


def test_windows_are_one_per_day_and_run_past_midnight_when_they_end_earlier() -> None:
    assert parse_windows([(["fri", "mon", "fri"], "22:00", "06:00"), (["sun"], "00:00", "24:00")], "hours") == (
        Window(4, time(22), 8 * 60),
        Window(0, time(22), 8 * 60),
        Window(6, time(0), 24 * 60),
    )


@pytest.mark.parametrize(
    ("rules", "repeat", "name", "field"),
    [
        ([], 0, "Payments", "rules"),
        ([Rule(5, (ALICE,)), Rule(5)], 0, "Payments", "rules.1"),
        ([Rule(0, (ALICE,))], 0, "Payments", "rules.0.timeout_minutes"),
        ([Rule(-5, (ALICE,))], 0, "Payments", "rules.0.timeout_minutes"),
        ([Rule(24 * 60 + 1, (ALICE,))], 0, "Payments", "rules.0.timeout_minutes"),
        ([Rule(5, (ALICE, UUID(int=99)))], 0, "Payments", "rules.0.user_ids"),
        ([Rule(5, (ALICE,)), Rule(5, (), (PRIMARY, UUID(int=199)))], 0, "Payments", "rules.1.schedule_ids"),
        ([Rule(5, (ALICE,))], -1, "Payments", "repeat"),
        ([Rule(5, (ALICE,))], 11, "Payments", "repeat"),
        ([Rule(5, (ALICE,))], 0, "  ", "name"),
    ],
)
def test_invalid_policies_name_the_field(rules: list[Rule], repeat: int, name: str, field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        policy_with(rules, repeat, name)
    assert err.value.field == field


def test_a_policy_at_the_limits_is_accepted_and_named_without_padding() -> None:
    rules = [Rule(1, (ALICE,)), Rule(24 * 60, (), (PRIMARY,))]

    policy = new_policy(UUID(int=9), " Payments ", rules, 10, KNOWN_USERS, KNOWN_SCHEDULES)

    assert (policy.name, policy.rules, policy.repeat) == ("Payments", tuple(rules), 10)


def test_responders_are_a_rules_users_then_whoever_is_on_call_deduplicated() -> None:
    policy = new_policy(
        UUID(int=9),
        "Payments",
        [Rule(5, (ALICE,), (PRIMARY, SECONDARY)), Rule(10, (), (SECONDARY,))],
        0,
        KNOWN_USERS,
        KNOWN_SCHEDULES,
    )
    on_call = {PRIMARY: ALICE, SECONDARY: None}

    assert responders_at(policy, on_call.get) == [Step(0, 5, (ALICE,)), Step(1, 10, ())]
    on_call = {PRIMARY: BOB, SECONDARY: CAROL}
    assert responders_at(policy, on_call.get) == [Step(0, 5, (ALICE, BOB, CAROL)), Step(1, 10, (CAROL,))]


def support(zone: str, specs: list[tuple[list[str], str, str]], holidays: list[date] | None = None) -> SupportHours:
    return new_support_hours(UUID(int=7), "Support", zone, parse_windows(specs, "windows"), holidays or [])


def test_support_hours_are_inside_their_window_and_not_outside_it() -> None:
    office = support("Europe/Berlin", [(WEEKDAYS, "09:00", "17:00")])  # Berlin is +01:00 in January

    assert office.inside(utc(2026, 1, 12, 8, 0))  # Monday 09:00
    assert office.inside(utc(2026, 1, 12, 15, 59))
    assert not office.inside(utc(2026, 1, 12, 7, 59))
    assert not office.inside(utc(2026, 1, 12, 16, 0)), "the end is exclusive"
    assert not office.inside(utc(2026, 1, 17, 10, 0)), "Saturday"


def test_a_holiday_closes_support_by_its_local_date() -> None:
    office = support(
        "Asia/Kolkata", [(WEEKDAYS, "09:00", "18:00"), (["sun"], "22:00", "02:00")], holidays=[date(2026, 1, 26)]
    )

    assert not office.inside(utc(2026, 1, 26, 4, 0)), "Monday 09:30 IST on Republic Day"
    assert office.inside(utc(2026, 1, 27, 4, 0)), "Tuesday 09:30 IST"
    assert office.inside(utc(2026, 1, 25, 17, 0)), "Sunday 22:30 IST: the UTC and local date are not a holiday"
    assert not office.inside(utc(2026, 1, 25, 20, 0)), "Monday 01:30 IST is a holiday though still Sunday in UTC"


def test_an_overnight_window_covers_the_small_hours_of_the_next_day() -> None:
    night_desk = support("America/New_York", [(["fri"], "22:00", "06:00")])  # New York is -05:00 in January

    assert night_desk.inside(utc(2026, 1, 10, 3, 0))  # Friday 22:00
    assert night_desk.inside(utc(2026, 1, 10, 8, 0))  # Saturday 03:00
    assert not night_desk.inside(utc(2026, 1, 10, 11, 0)), "Saturday 06:00"
    assert not night_desk.inside(utc(2026, 1, 10, 2, 59)), "Friday 21:59"
    assert not night_desk.inside(utc(2026, 1, 9, 8, 0)), "Friday 03:00 belongs to Thursday night, which has no window"


def test_support_hours_follow_local_time_across_the_change() -> None:
    office = support("Europe/Berlin", [(WEEKDAYS, "09:00", "17:00"), (["sat"], "22:00", "06:00")])

    assert office.inside(utc(2026, 3, 27, 8, 0)) and not office.inside(utc(2026, 3, 27, 7, 30)), "Fri 09:00 CET"
    assert office.inside(utc(2026, 3, 30, 7, 0)) and not office.inside(utc(2026, 3, 30, 6, 30)), "Mon 09:00 CEST"
    assert not office.inside(utc(2026, 3, 30, 15, 0)), "Mon 17:00 CEST"
    assert office.inside(utc(2026, 3, 29, 3, 30)), "Sun 05:30 CEST, in Saturday's night window"
    assert not office.inside(utc(2026, 3, 29, 4, 0)), "Sun 06:00 CEST ends it, after only 7 real hours"


def test_support_hours_need_a_name_and_a_window_and_keep_holidays_sorted_once() -> None:
    windows = parse_windows([(WEEKDAYS, "09:00", "17:00")], "windows")
    for name, given_windows, field in [("  ", windows, "name"), ("Support", (), "windows")]:
        with pytest.raises(InvalidInput) as err:
            new_support_hours(UUID(int=7), name, "Europe/Berlin", given_windows, [])
        assert err.value.field == field

    hours = new_support_hours(
        UUID(int=7), " Support ", "Europe/Berlin", windows, [date(2026, 12, 25), date(2026, 1, 1), date(2026, 12, 25)]
    )

    assert (hours.name, hours.holidays) == ("Support", (date(2026, 1, 1), date(2026, 12, 25)))
