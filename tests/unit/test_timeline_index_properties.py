"""The compact TimelineIndex against a naive oracle: a dict of plain segment lists, scanned linearly."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.messages import ScheduleTimeline, Source, TimelineSegment
from shared.timelines import SOURCES, TimelineIndex, from_micros, to_micros

T0 = to_micros(datetime(2026, 3, 1, tzinfo=UTC))
HOUR = 3_600_000_000
SCHEDULES = [UUID(int=0x5C4ED << 64 | k, version=4) for k in range(3)]
USERS = [UUID(int=0xC0FFEE << 64 | k, version=4) for k in range(5)]
REFS = [UUID(int=0xBEEF << 64 | k, version=4) for k in range(3)]

Row = tuple[int, int, UUID | None, Source, UUID | None]


@dataclass(frozen=True)
class Drawn:
    schedule_id: UUID
    version: int
    horizon: tuple[int, int]
    rows: list[Row]

    def message(self) -> ScheduleTimeline:
        return ScheduleTimeline(
            schedule_id=self.schedule_id,
            version=self.version,
            name="drawn",
            time_zone="UTC",
            horizon_start=from_micros(self.horizon[0]),
            horizon_end=from_micros(self.horizon[1]),
            segments=[
                TimelineSegment(start=from_micros(a), end=from_micros(b), user_id=u, source=s, ref=r)
                for a, b, u, s, r in self.rows
            ],
        )


@dataclass
class Oracle:
    held: dict[UUID, Drawn] = field(default_factory=dict)

    def apply(self, drawn: Drawn) -> bool:
        current = self.held.get(drawn.schedule_id)
        if current is not None and current.version >= drawn.version:
            return False
        self.held[drawn.schedule_id] = drawn
        return True

    def at(self, schedule_id: UUID, micros: int) -> Row | None:
        drawn = self.held.get(schedule_id)
        if drawn is None or not drawn.horizon[0] <= micros < drawn.horizon[1]:
            return None
        return next((row for row in drawn.rows if row[0] <= micros < row[1]), None)


@st.composite
def timelines(draw: st.DrawFn) -> Drawn:
    cursor = T0 + draw(st.integers(-48 * HOUR, 48 * HOUR))
    rows: list[Row] = []
    for _ in range(draw(st.integers(0, 25))):
        cursor += draw(st.sampled_from([0, 0, 0, 1, HOUR])) if rows else 0  # now and then a hole
        length = draw(st.one_of(st.integers(1, 3), st.integers(1, 72 * HOUR), st.sampled_from([HOUR, 12 * HOUR])))
        user = draw(st.sampled_from([*USERS, None]))
        source: Source = "gap" if user is None else draw(st.sampled_from([s for s in SOURCES if s != "gap"]))
        ref = draw(st.sampled_from([None, None, None, *REFS]))
        rows.append((cursor, cursor + length, user, source, ref))
        cursor += length
    first = rows[0][0] if rows else cursor
    start = first + draw(st.sampled_from([0, 0, -HOUR, 1, HOUR]))
    end = max(start, cursor + draw(st.sampled_from([0, 0, HOUR, -1, -HOUR])))
    return Drawn(draw(st.sampled_from(SCHEDULES)), draw(st.integers(1, 4)), (start, end), rows)


def probes(oracle: Oracle) -> list[tuple[UUID, int]]:
    points = [(UUID(int=7, version=4), T0)]
    for schedule_id, drawn in oracle.held.items():
        edges = [*drawn.horizon, *(t for row in drawn.rows for t in row[:2])]
        points += [(schedule_id, t + d) for t in edges for d in (-1, 0, 1)]
        points += [(s, t) for s in SCHEDULES for t in (T0, T0 + 5 * HOUR + 17)]
    return points


def render(drawn: Drawn, offset: timedelta) -> bytes:
    """The message as JSON with every instant written in another UTC offset, as another producer might."""
    zone = timezone(offset)

    def instant(micros: int) -> str:
        return from_micros(micros).astimezone(zone).isoformat()

    document: dict[str, Any] = json.loads(drawn.message().model_dump_json())
    document["horizon_start"], document["horizon_end"] = map(instant, drawn.horizon)
    for segment, row in zip(document["segments"], drawn.rows, strict=True):
        segment["start"], segment["end"] = instant(row[0]), instant(row[1])
    return json.dumps(document).encode()


def assert_agrees(index: TimelineIndex, oracle: Oracle) -> None:
    assert len(index) == len(oracle.held)
    assert index.segments == sum(len(d.rows) for d in oracle.held.values())
    for schedule_id, micros in probes(oracle):
        found = index.at(schedule_id, from_micros(micros))
        assert (tuple(found) if found is not None else None) == oracle.at(schedule_id, micros)
    for schedule_id, drawn in oracle.held.items():
        held = index.get(schedule_id)
        assert held is not None and index.version(schedule_id) == held.version == drawn.version
        assert (to_micros(held.horizon_start), to_micros(held.horizon_end)) == drawn.horizon
        assert [tuple(s) for s in held.segments] == drawn.rows


@settings(max_examples=150, deadline=None)
@given(st.lists(timelines(), min_size=1, max_size=8), st.integers(-14 * 60, 14 * 60))
def test_every_way_in_agrees_with_the_oracle(history: list[Drawn], offset_minutes: int) -> None:
    oracle = Oracle()
    from_models, from_json, from_other_offsets = TimelineIndex(), TimelineIndex(), TimelineIndex()
    for drawn in history:
        kept = oracle.apply(drawn)
        message = drawn.message()
        assert from_models.apply(message) == kept
        assert from_json.apply_json(message.model_dump_json().encode()) == kept
        assert from_other_offsets.apply_json(render(drawn, timedelta(minutes=offset_minutes))) == kept
    for index in (from_models, from_json, from_other_offsets):
        assert_agrees(index, oracle)


@settings(max_examples=100, deadline=None)
@given(timelines(), st.integers(T0 - 100 * HOUR, T0 + 2000 * HOUR), st.integers(-14 * 60, 14 * 60))
def test_an_instant_in_any_offset_finds_the_same_segment(drawn: Drawn, micros: int, offset_minutes: int) -> None:
    index = TimelineIndex()
    index.apply(drawn.message())
    utc = index.at(drawn.schedule_id, from_micros(micros))
    elsewhere = index.at(drawn.schedule_id, from_micros(micros).astimezone(timezone(timedelta(minutes=offset_minutes))))
    assert utc == elsewhere
    oracle = Oracle()
    oracle.apply(drawn)
    assert (tuple(utc) if utc is not None else None) == oracle.at(drawn.schedule_id, micros)


def test_users_are_interned_once_across_timelines() -> None:
    index = TimelineIndex()
    for k, schedule_id in enumerate(SCHEDULES):
        rows: list[Row] = [(T0 + i * HOUR, T0 + (i + 1) * HOUR, USERS[(i + k) % 2], "layer", None) for i in range(50)]
        index.apply_json(Drawn(schedule_id, 1, (T0, T0 + 50 * HOUR), rows).message().model_dump_json())
    assert len(index.users) == 2 and index.segments == 150


GOOD = Drawn(
    SCHEDULES[0],
    3,
    (T0, T0 + 3 * HOUR),
    [(T0, T0 + HOUR, USERS[0], "layer", None), (T0 + HOUR, T0 + 3 * HOUR, None, "gap", None)],
)


def mutated(change: Any) -> bytes:
    document = json.loads(GOOD.message().model_dump_json())
    change(document)
    return json.dumps(document).encode()


def swap_segments(d: dict[str, Any]) -> None:
    d["segments"].reverse()


MALFORMED = {
    "not json": b"{",
    "not utf-8": b'{"schedule_id": "\xff"}',
    "an array": b"[]",
    "a tombstone": b"",
    "another message type": mutated(lambda d: d.update(type="UserSnapshot")),
    "no schedule id": mutated(lambda d: d.pop("schedule_id")),
    "a malformed schedule id": mutated(lambda d: d.update(schedule_id="not-a-uuid")),
    "a numeric schedule id": mutated(lambda d: d.update(schedule_id=5)),
    "no version": mutated(lambda d: d.pop("version")),
    "version 0": mutated(lambda d: d.update(version=0)),
    "a text version": mutated(lambda d: d.update(version="4")),
    "a boolean version": mutated(lambda d: d.update(version=True)),
    "a fractional version": mutated(lambda d: d.update(version=4.5)),
    "a naive horizon": mutated(lambda d: d.update(horizon_start="2026-03-01T00:00:00")),
    "a numeric horizon": mutated(lambda d: d.update(horizon_end=1772330400)),
    "an object for a horizon": mutated(lambda d: d.update(horizon_end={"at": 1})),
    "an instant before 1970": mutated(lambda d: d.update(horizon_start="1969-12-31T23:00:00Z")),
    "an instant after 2199": mutated(lambda d: d.update(horizon_end="2200-01-01T00:00:00Z")),
    "a horizon ending before it starts": mutated(lambda d: d.update(horizon_end="2026-02-01T00:00:00Z")),
    "no segments": mutated(lambda d: d.pop("segments")),
    "segments not a list": mutated(lambda d: d.update(segments={})),
    "a segment not an object": mutated(lambda d: d["segments"].append("x")),
    "a segment without an end": mutated(lambda d: d["segments"][0].pop("end")),
    "a segment without a user_id": mutated(lambda d: d["segments"][0].pop("user_id")),
    "a malformed user id": mutated(lambda d: d["segments"][0].update(user_id="nobody")),
    "a user id list": mutated(lambda d: d["segments"][0].update(user_id=[])),
    "an unknown source": mutated(lambda d: d["segments"][0].update(source="rota")),
    "a list for a source": mutated(lambda d: d["segments"][0].update(source=[])),
    "a malformed ref": mutated(lambda d: d["segments"][0].update(ref="x")),
    "an empty segment": mutated(lambda d: d["segments"][0].update(end=d["segments"][0]["start"])),
    "segments out of order": mutated(swap_segments),
    "overlapping segments": mutated(lambda d: d["segments"][1].update(start="2026-03-01T00:30:00Z")),
}


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_messages_are_refused_and_change_nothing(raw: bytes) -> None:
    index = TimelineIndex()
    assert index.apply_json(mutated(lambda d: d.update(version=1)))
    with pytest.raises(ValueError):
        index.apply_json(raw)
    assert len(index) == 1 and index.version(GOOD.schedule_id) == 1 and index.segments == 2


def test_the_unmutated_message_is_accepted() -> None:
    index = TimelineIndex()
    assert index.apply_json(mutated(lambda d: None))
    found = index.at(GOOD.schedule_id, from_micros(T0 + 2 * HOUR))
    assert found is not None and (found.user_id, found.source) == (None, "gap")


def test_a_model_with_segments_out_of_order_is_refused_too() -> None:
    shuffled = Drawn(GOOD.schedule_id, GOOD.version, GOOD.horizon, GOOD.rows[::-1])
    with pytest.raises(ValueError):
        TimelineIndex().apply(shuffled.message())
