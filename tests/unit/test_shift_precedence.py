"""Who wins where: layers, overrides, coverage, static shifts, gaps; claims and lookups on the final timeline."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from itertools import pairwise
from typing import Literal
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.schedule.domain.shifts import (
    Cover,
    Layer,
    Schedule,
    Segment,
    ShiftClaim,
    StaticShift,
    check_range,
    check_static_shifts,
    claim_problem,
    layer_segments,
    new_layer,
    on_call_at,
    parse_windows,
    resolve,
)
from shared.errors import InvalidInput

ALICE, BOB, CAROL, DAN = UUID(int=1), UUID(int=2), UUID(int=3), UUID(int=4)
PEOPLE = (ALICE, BOB, CAROL, DAN)
ZONE = "Europe/Berlin"
SCHEDULE_ID = UUID(int=100)
OFFICE_HOURS = parse_windows([(["mon", "tue", "wed", "thu", "fri"], "09:00", "17:00")], "restrictions")
NIGHTS = parse_windows([(["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "22:00", "06:00")], "restrictions")
MONDAY = datetime(2026, 3, 2)  # local, CET (+01:00)
Key = tuple[datetime, datetime, UUID | None, str, int | None, UUID | None]


def berlin(day_offset: int, hour: int, minute: int = 0) -> datetime:
    local = MONDAY + timedelta(days=day_offset, hours=hour, minutes=minute)
    return local.replace(tzinfo=ZoneInfo(ZONE)).astimezone(UTC)


def recurring(*layers: Layer) -> Schedule:
    return Schedule(SCHEDULE_ID, "primary", ZONE, "recurring", layers)


def always(user: UUID, **options: object) -> Layer:
    return new_layer([user], 1, "weeks", MONDAY - timedelta(weeks=1), **options)  # type: ignore[arg-type]


def override(user: UUID, start: datetime, end: datetime, seq: int, number: int = 0) -> Cover:
    return Cover(UUID(int=1000 + seq * 10 + number), user, start, end, "override", seq)


def coverage(user: UUID, start: datetime, end: datetime, seq: int, request: UUID) -> Cover:
    return Cover(UUID(int=3000 + seq), user, start, end, "coverage", seq, coverage_request_id=request)


def keys(segments: list[Segment]) -> list[Key]:
    return [(s.start, s.end, s.user_id, s.source, s.layer, s.ref) for s in segments]


def who(segments: list[Segment]) -> list[tuple[datetime, datetime, UUID | None]]:
    return [(s.start, s.end, s.user_id) for s in segments]


def day_of(schedule: Schedule, covers: list[Cover] | None = None, day: int = 0) -> list[Segment]:
    return resolve(schedule, covers or [], berlin(day, 0), berlin(day + 1, 0))


def test_an_override_beats_every_layer() -> None:
    night_shift = override(CAROL, berlin(0, 10), berlin(0, 14), seq=1)

    segments = day_of(recurring(always(ALICE), always(BOB)), [night_shift])

    assert keys(segments) == [
        (berlin(0, 0), berlin(0, 10), BOB, "layer", 1, None),
        (berlin(0, 10), berlin(0, 14), CAROL, "override", None, night_shift.id),
        (berlin(0, 14), berlin(1, 0), BOB, "layer", 1, None),
    ]


def test_a_later_layer_beats_an_earlier_one() -> None:
    assert who(day_of(recurring(always(ALICE), always(BOB)))) == [(berlin(0, 0), berlin(1, 0), BOB)]
    assert who(day_of(recurring(always(BOB), always(ALICE)))) == [(berlin(0, 0), berlin(1, 0), ALICE)]


def test_a_restricted_upper_layer_lets_the_lower_one_show_through_outside_its_windows() -> None:
    schedule = recurring(always(ALICE), always(BOB, restrictions=OFFICE_HOURS))

    assert keys(day_of(schedule)) == [
        (berlin(0, 0), berlin(0, 9), ALICE, "layer", 0, None),
        (berlin(0, 9), berlin(0, 17), BOB, "layer", 1, None),
        (berlin(0, 17), berlin(1, 0), ALICE, "layer", 0, None),
    ]
    assert who(day_of(schedule, day=5)) == [(berlin(5, 0), berlin(6, 0), ALICE)], "Saturday has no office hours"


def test_where_nobody_is_on_call_the_timeline_holds_an_explicit_gap() -> None:
    day_layer = always(BOB, restrictions=OFFICE_HOURS, end=berlin(2, 12))

    segments = resolve(recurring(day_layer), [], berlin(0, 0), berlin(3, 0))

    gap = (None, "gap", None, None)
    assert [(s.start, s.end, s.user_id, s.source, s.layer, s.ref) for s in segments] == [
        (berlin(0, 0), berlin(0, 9), *gap),
        (berlin(0, 9), berlin(0, 17), BOB, "layer", 0, None),
        (berlin(0, 17), berlin(1, 9), *gap),
        (berlin(1, 9), berlin(1, 17), BOB, "layer", 0, None),
        (berlin(1, 17), berlin(2, 9), *gap),
        (berlin(2, 9), berlin(2, 12), BOB, "layer", 0, None),
        (berlin(2, 12), berlin(3, 0), *gap),
    ]


def test_a_layer_starting_later_leaves_a_gap_before_it() -> None:
    late = always(ALICE, start=berlin(0, 12))

    assert who(day_of(recurring(late))) == [(berlin(0, 0), berlin(0, 12), None), (berlin(0, 12), berlin(1, 0), ALICE)]


@pytest.mark.parametrize("placed_in_order", [True, False])
def test_of_two_overlapping_overrides_the_later_placed_wins(placed_in_order: bool) -> None:
    first = override(ALICE, berlin(0, 10), berlin(0, 14), seq=1)
    second = override(BOB, berlin(0, 12), berlin(0, 16), seq=2)
    covers = [first, second] if placed_in_order else [second, first]

    segments = day_of(recurring(always(DAN)), covers)

    assert who(segments)[1:3] == [(berlin(0, 10), berlin(0, 12), ALICE), (berlin(0, 12), berlin(0, 16), BOB)]


def test_an_override_placed_later_over_a_longer_one_punches_through_it() -> None:
    long = override(ALICE, berlin(0, 8), berlin(0, 20), seq=1)
    short = override(BOB, berlin(0, 12), berlin(0, 13), seq=2)

    segments = day_of(recurring(always(DAN)), [long, short])

    assert keys(segments)[1:4] == [
        (berlin(0, 8), berlin(0, 12), ALICE, "override", None, long.id),
        (berlin(0, 12), berlin(0, 13), BOB, "override", None, short.id),
        (berlin(0, 13), berlin(0, 20), ALICE, "override", None, long.id),
    ]


def test_coverage_ranks_like_an_override_and_carries_the_coverage_request_id() -> None:
    request = UUID(int=555)
    earlier_override = override(BOB, berlin(0, 8), berlin(0, 12), seq=1)
    taken_over = coverage(CAROL, berlin(0, 10), berlin(0, 14), seq=2, request=request)
    later_override = override(DAN, berlin(0, 13), berlin(0, 15), seq=3)

    segments = day_of(recurring(always(ALICE)), [later_override, taken_over, earlier_override])

    assert keys(segments)[1:4] == [
        (berlin(0, 8), berlin(0, 10), BOB, "override", None, earlier_override.id),
        (berlin(0, 10), berlin(0, 13), CAROL, "coverage", None, request),
        (berlin(0, 13), berlin(0, 15), DAN, "override", None, later_override.id),
    ]


def test_a_rotation_of_one_merges_into_one_segment_and_alternating_turns_stay_apart() -> None:
    alone = new_layer([ALICE], 1, "days", MONDAY)
    pair = new_layer([ALICE, BOB], 1, "days", MONDAY)

    assert who(resolve(recurring(alone), [], berlin(0, 0), berlin(10, 0))) == [(berlin(0, 0), berlin(10, 0), ALICE)]
    assert who(resolve(recurring(pair), [], berlin(0, 0), berlin(3, 0))) == [
        (berlin(0, 0), berlin(1, 0), ALICE),
        (berlin(1, 0), berlin(2, 0), BOB),
        (berlin(2, 0), berlin(3, 0), ALICE),
    ]


def test_a_static_schedule_resolves_its_shifts_and_gaps_and_yields_to_overrides() -> None:
    shifts = check_static_shifts(
        [
            StaticShift(BOB, berlin(0, 12), berlin(0, 18)),
            StaticShift(ALICE, berlin(0, 6), berlin(0, 12)),
        ]
    )
    schedule = Schedule(SCHEDULE_ID, "conference", ZONE, "static", shifts=shifts)
    swap = override(CAROL, berlin(0, 16), berlin(0, 20), seq=1)

    segments = day_of(schedule, [swap])

    assert keys(segments) == [
        (berlin(0, 0), berlin(0, 6), None, "gap", None, None),
        (berlin(0, 6), berlin(0, 12), ALICE, "static", None, None),
        (berlin(0, 12), berlin(0, 16), BOB, "static", None, None),
        (berlin(0, 16), berlin(0, 20), CAROL, "override", None, swap.id),
        (berlin(0, 20), berlin(1, 0), None, "gap", None, None),
    ]


def test_static_shifts_are_sorted_and_may_touch() -> None:
    later, earlier = StaticShift(BOB, berlin(0, 12), berlin(0, 18)), StaticShift(ALICE, berlin(0, 6), berlin(0, 12))

    assert check_static_shifts([later, earlier]) == (earlier, later)


@pytest.mark.parametrize(
    ("shifts", "field"),
    [
        ([(ALICE, (0, 6), (0, 12)), (BOB, (0, 11), (0, 18))], "shifts.1"),
        ([(BOB, (0, 11), (0, 18)), (ALICE, (0, 6), (0, 12))], "shifts.0"),
        ([(ALICE, (0, 6), (0, 20)), (BOB, (1, 0), (1, 5)), (CAROL, (0, 8), (0, 9))], "shifts.2"),
        ([(ALICE, (0, 6), (0, 12)), (BOB, (0, 14), (0, 14))], "shifts.1.end"),
        ([(ALICE, (0, 6), (0, 5))], "shifts.0.end"),
    ],
)
def test_check_static_shifts_rejects_overlapping_or_empty_shifts_naming_the_shift(
    shifts: list[tuple[UUID, tuple[int, int], tuple[int, int]]], field: str
) -> None:
    with pytest.raises(InvalidInput) as err:
        check_static_shifts([StaticShift(user, berlin(*start), berlin(*end)) for user, start, end in shifts])
    assert err.value.field == field


def claim(start: datetime, end: datetime) -> ShiftClaim:
    return ShiftClaim(SCHEDULE_ID, start, end)


def test_a_claim_held_by_the_requester_across_several_sources_has_no_problem() -> None:
    schedule = recurring(always(BOB), always(ALICE, restrictions=OFFICE_HOURS))
    covers = [
        override(ALICE, berlin(0, 17), berlin(0, 20), seq=1),
        coverage(ALICE, berlin(0, 20), berlin(0, 22), seq=2, request=UUID(int=77)),
    ]
    segments = day_of(schedule, covers)
    assert {s.source for s in segments if berlin(0, 9) <= s.start < berlin(0, 22)} == {"layer", "override", "coverage"}

    assert claim_problem(segments, claim(berlin(0, 9), berlin(0, 22)), ALICE) is None
    assert claim_problem(segments, claim(berlin(0, 10), berlin(0, 11)), ALICE) is None


def test_a_claim_partly_held_by_someone_else_names_them_and_when() -> None:
    schedule = recurring(always(ALICE))
    segments = day_of(schedule, [override(BOB, berlin(0, 12), berlin(0, 13), seq=1)])

    problem = claim_problem(segments, claim(berlin(0, 9), berlin(0, 17)), ALICE)

    assert problem is not None
    assert str(BOB) in problem and berlin(0, 12).isoformat() in problem


def test_a_claim_over_a_gap_or_beyond_the_timeline_is_a_problem() -> None:
    segments = day_of(recurring(always(ALICE, restrictions=OFFICE_HOURS)))

    over_the_evening_gap = claim_problem(segments, claim(berlin(0, 16), berlin(0, 18)), ALICE)
    past_the_timeline = claim_problem(segments[:2], claim(berlin(0, 9), berlin(0, 18)), ALICE)
    before_the_timeline = claim_problem(day_of(recurring(always(ALICE))), claim(berlin(-1, 23), berlin(0, 1)), ALICE)

    assert over_the_evening_gap is not None and "nobody" in over_the_evening_gap
    assert past_the_timeline is not None
    assert before_the_timeline is not None
    assert claim_problem(segments, claim(berlin(0, 9), berlin(0, 17)), ALICE) is None


def test_on_call_at_finds_the_segment_holding_an_instant() -> None:
    segments = day_of(recurring(always(ALICE, restrictions=OFFICE_HOURS)))

    assert on_call_at(segments, berlin(0, 9)) == segments[1]
    assert on_call_at(segments, berlin(0, 9) - timedelta(microseconds=1)) == segments[0]
    assert on_call_at(segments, berlin(0, 17)) == segments[2]
    assert on_call_at(segments, berlin(-1, 23)) is None
    assert on_call_at(segments, berlin(1, 0)) is None
    assert on_call_at([], berlin(0, 0)) is None


def test_check_range_names_the_field_and_resolve_refuses_an_empty_window() -> None:
    for start, end in [(berlin(0, 9), berlin(0, 9)), (berlin(0, 9), berlin(0, 8))]:
        with pytest.raises(InvalidInput) as err:
            check_range(start, end, "until")
        assert err.value.field == "until"
        with pytest.raises(InvalidInput) as err:
            resolve(recurring(always(ALICE)), [], start, end)
        assert err.value.field == "end"
    with pytest.raises(InvalidInput) as err:
        check_range(datetime(2026, 3, 2), berlin(0, 9))
    assert err.value.field == "end"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"users": []}, "layers.2.users"),
        ({"length": 0}, "layers.2.length"),
        ({"length": -1}, "layers.2.length"),
        ({"unit": "months"}, "layers.2.unit"),
        ({"length": 367, "unit": "days"}, "layers.2.length"),
        ({"length": 53, "unit": "weeks"}, "layers.2.length"),
        ({"length": 366 * 24 + 1, "unit": "hours"}, "layers.2.length"),
        ({"length": 10**12, "unit": "hours"}, "layers.2.length"),
        ({"handoff": datetime(2026, 3, 2, 9, tzinfo=ZoneInfo(ZONE))}, "layers.2.handoff"),
        ({"start": berlin(1, 0), "end": berlin(0, 0)}, "layers.2.end"),
    ],
)
def test_invalid_rotations_name_the_field(changes: dict[str, object], field: str) -> None:
    fields: dict[str, object] = {"users": [ALICE], "length": 1, "unit": "days", "handoff": MONDAY} | changes
    with pytest.raises(InvalidInput) as err:
        new_layer(**fields, field_name="layers.2")  # type: ignore[arg-type]
    assert err.value.field == field


@pytest.mark.parametrize(("length", "unit"), [(366, "days"), (52, "weeks"), (366 * 24, "hours")])
def test_the_longest_turns_are_accepted(length: int, unit: str) -> None:
    assert new_layer([ALICE], length, unit, MONDAY).length == length


# Random schedules over the Berlin spring-forward week, for the properties below.
WINDOW = (berlin(23, 0), berlin(30, 0))


@dataclass(frozen=True)
class Situation:
    schedule: Schedule
    covers: list[Cover]


@st.composite
def situations(draw: st.DrawFn) -> Situation:
    layers = []
    for _ in range(draw(st.integers(1, 3))):
        unit: Literal["hours", "days"] = draw(st.sampled_from(["hours", "days"]))
        layers.append(
            new_layer(
                draw(st.lists(st.sampled_from(PEOPLE), min_size=1, max_size=3)),
                draw(st.integers(1, 12 if unit == "hours" else 2)),
                unit,
                MONDAY + timedelta(days=22, hours=draw(st.integers(0, 72))),
                draw(st.sampled_from([(), OFFICE_HOURS, NIGHTS])),
            )
        )
    count = draw(st.integers(0, 6))
    seqs = draw(st.permutations(range(1, count + 1)))
    covers = []
    for n, seq in enumerate(seqs):
        start = WINDOW[0] + timedelta(minutes=15 * draw(st.integers(-96, 7 * 96)))
        end = start + timedelta(minutes=15 * draw(st.integers(1, 3 * 96)))
        user = draw(st.sampled_from(PEOPLE))
        if draw(st.booleans()):
            covers.append(override(user, start, end, seq, number=n))
        else:
            covers.append(coverage(user, start, end, seq, request=UUID(int=2000 + n)))
    return Situation(recurring(*layers), covers)


def by_brute_force(schedule: Schedule, covers: list[Cover], start: datetime, end: datetime) -> list[Key]:
    """Precedence decided separately for every stretch between two consecutive edges of anything."""
    zone = ZoneInfo(schedule.time_zone)
    layered = [s for i, layer in enumerate(schedule.layers) for s in layer_segments(layer, i, zone, start, end)]
    edges = {start, end} | {t for s in layered for t in (s.start, s.end)}
    edges |= {t for c in covers for t in (c.start, c.end) if start < t < end}
    out: list[Key] = []
    for a, b in pairwise(sorted(edges)):
        over = [c for c in covers if c.start <= a and b <= c.end]
        under = [s for s in layered if s.start <= a and b <= s.end]
        if over:
            top = max(over, key=lambda c: c.seq)
            ref = top.coverage_request_id if top.source == "coverage" else top.id
            piece: Key = (a, b, top.user_id, top.source, None, ref)
        elif under:
            upper = max(under, key=lambda s: s.layer or 0)
            piece = (a, b, upper.user_id, "layer", upper.layer, None)
        else:
            piece = (a, b, None, "gap", None, None)
        if out and out[-1][2:] == piece[2:]:
            out[-1] = (out[-1][0], b, *piece[2:])
        else:
            out.append(piece)
    return out


def clipped(timeline: list[Key], start: datetime, end: datetime) -> list[Key]:
    inside = [(max(k[0], start), min(k[1], end), *k[2:]) for k in timeline]
    return [k for k in inside if k[0] < k[1]]


@settings(max_examples=200, deadline=None)
@given(situations(), st.randoms(use_true_random=False))
def test_resolution_matches_precedence_decided_stretch_by_stretch(situation: Situation, rnd: random.Random) -> None:
    segments = resolve(situation.schedule, situation.covers, *WINDOW)

    assert keys(segments) == by_brute_force(situation.schedule, situation.covers, *WINDOW)
    assert segments[0].start == WINDOW[0] and segments[-1].end == WINDOW[1]
    assert all(before.end == after.start for before, after in pairwise(segments))
    assert all(s.start < s.end for s in segments)
    assert all(keys([x])[0][2:] != keys([y])[0][2:] for x, y in pairwise(segments)), "equal neighbours not merged"
    shuffled = list(situation.covers)
    rnd.shuffle(shuffled)
    assert resolve(situation.schedule, shuffled, *WINDOW) == segments


@settings(max_examples=200, deadline=None)
@given(situations(), st.data())
def test_an_override_changes_only_its_own_span_and_removing_it_restores_the_timeline(
    situation: Situation, data: st.DataObject
) -> None:
    start = WINDOW[0] + timedelta(minutes=15 * data.draw(st.integers(-96, 7 * 96)))
    end = start + timedelta(minutes=15 * data.draw(st.integers(1, 2 * 96)))
    on_top = data.draw(st.booleans())
    seq = len(situation.covers) + 1 if on_top else 0
    added = override(data.draw(st.sampled_from(PEOPLE)), start, end, seq, number=9)

    before = keys(resolve(situation.schedule, situation.covers, *WINDOW))
    during = keys(resolve(situation.schedule, [*situation.covers, added], *WINDOW))
    after = keys(resolve(situation.schedule, [c for c in [*situation.covers, added] if c != added], *WINDOW))

    assert after == before
    assert clipped(during, WINDOW[0], start) == clipped(before, WINDOW[0], start)
    assert clipped(during, end, WINDOW[1]) == clipped(before, end, WINDOW[1])
    if on_top:
        expected_span = clipped([(start, end, added.user_id, "override", None, added.id)], *WINDOW)
        assert clipped(during, start, end) == expected_span
    else:
        assert [k for k in clipped(during, start, end) if k[3] in ("override", "coverage") and k[5] != added.id] == [
            k for k in clipped(before, start, end) if k[3] in ("override", "coverage")
        ], "an override placed first does not push later ones aside"


@settings(max_examples=100, deadline=None)
@given(situations(), st.integers(-60, 7 * 24 * 60 + 60))
def test_on_call_at_agrees_with_a_scan(situation: Situation, minutes: int) -> None:
    segments = resolve(situation.schedule, situation.covers, *WINDOW)
    instant = WINDOW[0] + timedelta(minutes=minutes, seconds=minutes % 7)

    assert on_call_at(segments, instant) == next((s for s in segments if s.start <= instant < s.end), None)


def test_the_window_contains_the_spring_forward_night() -> None:
    tz = ZoneInfo(ZONE)
    assert WINDOW[0].astimezone(tz).utcoffset() != WINDOW[1].astimezone(tz).utcoffset()
    assert WINDOW[0].astimezone(tz).time() == time(0)
