"""Benchmark `schedule.final_shifts_1y`: one year of final shifts for one schedule, ours against the iCal way.

Scenario (seeded, the same every run): one schedule in Europe/Berlin, so both DST changes of the year fall
inside it; three weekly rotations of 8 users each (drawn from a pool of 12, so a user can sit in several
layers), all handing off on Monday 09:00 local, each masked by weekday windows that fit inside a turn:
  layer 0 "weekend"   Sat-Sun 00:00-24:00  (holds both DST Sundays: 23 h and 25 h days)
  layer 1 "business"  Mon-Fri 09:00-17:00
  layer 2 "nights"    Mon-Fri 17:00-09:00  (overlaps layer 0 on Saturday morning; layer 2 wins)
which leaves a gap every Monday 00:00-09:00; plus 100 overrides at pseudo-random times and lengths, some
overlapping (the most recently placed wins). The range is [2026-01-01, 2027-01-01) local.

- ours: `resolve(schedule, overrides, from, to)` on the domain objects; median of several runs after a
  warm-up.
- peer: what Grafana OnCall does at query time: the layers as iCalendar text (one recurring VEVENT per
  user per layer window, TZID=Europe/Berlin, RRULE FREQ=WEEKLY;INTERVAL=8;BYDAY=...) and the overrides as
  a second calendar of single VEVENTs. The text is generated once with `icalendar`, outside the timing
  (OnCall caches it); parsing it (`icalendar`), expanding it (`recurring_ical_events.of(cal).between`)
  and resolving the occurrences with the same precedence are timed. The resolver is written here,
  independently of ours: interval painting from lowest to highest priority, then explicit gaps.

`same_output` compares both final timelines as (user, start, end) in UTC, gaps included, adjacent pieces
of the same user merged (ours also says layer/override; that is dropped for the comparison).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
import uuid
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from typing import TypeVar
from zoneinfo import ZoneInfo

import icalendar
import recurring_ical_events

from services.schedule.domain import shifts
from services.schedule.domain.shifts import (
    Cover,
    Schedule,
    new_layer,
    parse_windows,
    resolve,
)

NAME = "schedule.final_shifts_1y"
SEED = 20260101
ZONE = ZoneInfo("Europe/Berlin")
HANDOFF = datetime(2025, 12, 29, 9, 0)  # a Monday, local wall-clock time
USERS_PER_LAYER = 8
POOL = 12
OVERRIDES = 100
WEEKDAYS_MON_FRI = ("mon", "tue", "wed", "thu", "fri")
LAYERS: tuple[tuple[str, list[tuple[tuple[str, ...], str, str]]], ...] = (
    ("weekend", [(("sat", "sun"), "00:00", "24:00")]),
    ("business", [(WEEKDAYS_MON_FRI, "09:00", "17:00")]),
    ("nights", [(WEEKDAYS_MON_FRI, "17:00", "09:00")]),
)
ICAL_DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")

Shift = tuple[uuid.UUID | None, datetime, datetime]
T = TypeVar("T")


@dataclass(frozen=True)
class Scenario:
    schedule: Schedule
    overrides: list[Cover]
    start: datetime
    end: datetime


def local(d: date, hh: int = 0, mm: int = 0) -> datetime:
    return datetime(d.year, d.month, d.day, hh, mm, tzinfo=ZONE)


def scenario(seed: int = SEED) -> Scenario:
    rng = random.Random(seed)
    pool = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(POOL)]
    layers = tuple(
        new_layer(rng.sample(pool, USERS_PER_LAYER), 1, "weeks", HANDOFF, parse_windows(specs, name), name=name)
        for name, specs in LAYERS
    )
    schedule = Schedule(uuid.UUID(int=rng.getrandbits(128), version=4), "bench", ZONE.key, "recurring", layers)
    start = local(date(2026, 1, 1)).astimezone(UTC)
    end = local(date(2027, 1, 1)).astimezone(UTC)
    outsiders = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(4)]
    overrides = []
    for seq in range(1, OVERRIDES + 1):
        at = start + timedelta(minutes=15 * rng.randrange(365 * 24 * 4))
        length = timedelta(minutes=15 * rng.randrange(4, 72 * 4))
        who = rng.choice(pool + outsiders)
        cover_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        overrides.append(Cover(cover_id, who, at, at + length, "override", seq))
    return Scenario(schedule, overrides, start, end)


def merged(shifts: Sequence[Shift]) -> list[Shift]:
    out: list[Shift] = []
    for user, a, b in shifts:
        a, b = a.astimezone(UTC), b.astimezone(UTC)
        if out and out[-1][0] == user and out[-1][2] == a:
            out[-1] = (user, out[-1][1], b)
        else:
            out.append((user, a, b))
    return out


def ours(s: Scenario) -> list[Shift]:
    return [(seg.user_id, seg.start, seg.end) for seg in resolve(s.schedule, s.overrides, s.start, s.end)]


# --- the peer: iCalendar text, expanded by recurring-ical-events, resolved by interval painting ---------


def ical_calendars(s: Scenario) -> tuple[bytes, bytes]:
    """The layers and the overrides as two iCalendar documents, the way an iCal-based on-call tool keeps them.

    A weekly rotation of n users is, per user and window, one event repeating every n weeks from that
    user's first turn; the windows chosen here lie inside a Monday 09:00 turn, so no window straddles two
    users' turns.
    """
    layers = icalendar.Calendar()
    layers.add("prodid", "-//oncall bench//layers//EN")
    layers.add("version", "2.0")
    for rank, layer in enumerate(s.schedule.layers):
        groups: dict[tuple[clock_time, int], list[int]] = {}
        for w in layer.restrictions:
            groups.setdefault((w.start, w.minutes), []).append(w.weekday)
        for (clock, minutes), weekdays in groups.items():
            first_day = min(weekdays)
            opens = datetime.combine(HANDOFF.date() + timedelta(days=first_day), clock)
            closes = opens + timedelta(days=max(weekdays) - first_day, minutes=minutes)
            if opens < HANDOFF or closes > HANDOFF + timedelta(weeks=1):
                raise ValueError(f"a {layer.name} window does not fit inside one turn")
            for i, user in enumerate(layer.users):
                monday = HANDOFF.date() + timedelta(weeks=i)
                begin = datetime.combine(monday + timedelta(days=first_day), clock, tzinfo=ZONE)
                event = icalendar.Event()
                event.add("uid", f"layer{rank}-{i}-{clock:%H%M}@bench")
                event.add("summary", str(user))
                event.add("dtstart", begin)
                event.add("dtend", begin + timedelta(minutes=minutes))  # wall-clock, like the domain
                event.add(
                    "rrule",
                    {
                        "freq": "weekly",
                        "interval": len(layer.users),
                        "byday": [ICAL_DAYS[d] for d in sorted(weekdays)],
                        "wkst": "MO",
                    },
                )
                event.add("x-oncall-rank", str(rank))
                layers.add_component(event)
    overrides = icalendar.Calendar()
    overrides.add("prodid", "-//oncall bench//overrides//EN")
    overrides.add("version", "2.0")
    for c in s.overrides:
        event = icalendar.Event()
        event.add("uid", f"{c.id}@bench")
        event.add("summary", str(c.user_id))
        event.add("dtstart", c.start)
        event.add("dtend", c.end)
        event.add("x-oncall-rank", str(c.seq))
        overrides.add_component(event)
    return layers.to_ical(), overrides.to_ical()


Piece = tuple[tuple[int, int], datetime, datetime, uuid.UUID]


def occurrences(text: bytes, tier: int, start: datetime, end: datetime) -> list[Piece]:
    calendar = icalendar.Calendar.from_ical(text)
    return [
        (
            (tier, int(str(e["X-ONCALL-RANK"]))),
            e["DTSTART"].dt.astimezone(UTC),
            e["DTEND"].dt.astimezone(UTC),
            uuid.UUID(str(e["SUMMARY"])),
        )
        for e in recurring_ical_events.of(calendar).between(start, end)
    ]


def paint(pieces: list[Piece], start: datetime, end: datetime) -> list[Shift]:
    """Lay pieces from lowest to highest priority over [start, end); what shows at the end wins."""
    starts: list[datetime] = []
    ends: list[datetime] = []
    users: list[uuid.UUID] = []
    for _, a, b, user in sorted(pieces, key=lambda p: p[0]):
        a, b = max(a, start), min(b, end)
        if a >= b:
            continue
        i = bisect_right(ends, a)  # first painted interval ending after a
        j = bisect_left(starts, b)  # painted intervals [i, j) overlap [a, b)
        new_s, new_e, new_u = [a], [b], [user]
        if i < j and starts[i] < a:
            new_s.insert(0, starts[i])
            new_e.insert(0, a)
            new_u.insert(0, users[i])
        if i < j and ends[j - 1] > b:
            new_s.append(b)
            new_e.append(ends[j - 1])
            new_u.append(users[j - 1])
        starts[i:j], ends[i:j], users[i:j] = new_s, new_e, new_u
    out: list[Shift] = []
    cursor = start
    for a, b, user in zip(starts, ends, users, strict=True):
        if a > cursor:
            out.append((None, cursor, a))
        out.append((user, a, b))
        cursor = b
    if cursor < end:
        out.append((None, cursor, end))
    return out


def peer_expand(layers: bytes, overrides: bytes, s: Scenario) -> list[Piece]:
    return occurrences(layers, 0, s.start, s.end) + occurrences(overrides, 1, s.start, s.end)


def peer(layers: bytes, overrides: bytes, s: Scenario) -> list[Shift]:
    return paint(peer_expand(layers, overrides, s), s.start, s.end)


def median_ms(fn: Callable[[], T], runs: int, warmup: int = 1) -> tuple[float, T]:
    for _ in range(warmup):
        result = fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), result


def first_difference(a: list[Shift], b: list[Shift]) -> str:
    def show(shift: Shift) -> str:
        return f"{shift[0]} {shift[1].isoformat()}..{shift[2].isoformat()}"

    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return f"#{i}: ours {show(x)}, peer {show(y)}"
    return f"lengths differ: ours {len(a)}, peer {len(b)}"


def cold(s: Scenario) -> list[Shift]:
    shifts._DAY_OFFSETS.clear()
    shifts._MIDNIGHTS.clear()
    return ours(s)


def main(runs: int, peer_runs: int) -> None:
    s = scenario()
    layers_ics, overrides_ics = ical_calendars(s)
    cold_ms, _ = median_ms(lambda: cold(s), runs, warmup=0)
    ours_ms, ours_shifts = median_ms(lambda: ours(s), runs, warmup=3)
    peer_ms, peer_shifts = median_ms(lambda: peer(layers_ics, overrides_ics, s), peer_runs)
    expand_ms, pieces = median_ms(lambda: peer_expand(layers_ics, overrides_ics, s), peer_runs, warmup=0)
    paint_ms, _ = median_ms(lambda: paint(pieces, s.start, s.end), peer_runs, warmup=0)
    a, b = merged(ours_shifts), merged(peer_shifts)
    figure: dict[str, object] = {
        "bench": NAME,
        "ours_ms": round(ours_ms, 2),
        "peer": "recurring-ical-events",
        "peer_ms": round(peer_ms, 2),
        "ratio": round(peer_ms / ours_ms, 1),
        # the first resolution in a zone also learns that zone's daily UTC offsets (kept for the process)
        "ours_cold_ms": round(cold_ms, 2),
        "ratio_cold": round(peer_ms / cold_ms, 1),
        "same_output": a == b,
        "peer_parse_expand_ms": round(expand_ms, 2),
        "peer_resolve_ms": round(paint_ms, 2),
        "ical_generation": "outside timing",
        "time_zone": ZONE.key,
        "layers": len(s.schedule.layers),
        "users_per_layer": USERS_PER_LAYER,
        "overrides": len(s.overrides),
        "occurrences": len(pieces),
        "shifts": sum(1 for u, _, _ in a if u is not None),
        "gaps": sum(1 for u, _, _ in a if u is None),
        "runs": runs,
        "peer_runs": peer_runs,
    }
    if a != b:
        figure["first_difference"] = first_difference(a, b)
    print(json.dumps(figure), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=21, help="timed runs of ours (median reported)")
    parser.add_argument("--peer-runs", type=int, default=7, help="timed runs of the peer (median reported)")
    args = parser.parse_args()
    main(args.runs, args.peer_runs)
