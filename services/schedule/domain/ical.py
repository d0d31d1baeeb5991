"""iCalendar feeds of final on-call shifts, and the memory that lets a vanished shift leave subscribed calendars.

A feed covers `feed_window(now)`. Calendar apps that merge by UID only remove an event they were told is
cancelled, so each feed remembers what it published (`FeedEntry`): a shift that drops out of the final
timeline (override, coverage, schedule edit) stays in the feed as STATUS:CANCELLED for `KEEP_CANCELLED`.
A shift that merely ages out behind the window is forgotten silently: it happened, it was not cancelled.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from uuid import UUID

from icalendar import STATUS, TRANSP, Calendar, Event, Timezone, vDuration

FEED_DAYS_BEHIND = 15
FEED_DAYS_AHEAD = 180
KEEP_CANCELLED = timedelta(days=30)
REFRESH_INTERVAL = timedelta(hours=1)
PRODID = "-//oncall-platform//schedule feed//EN"
UID_DOMAIN = "oncall"
SOURCE_LABELS = {
    "layer": "rotation",
    "static": "static shift",
    "override": "override",
    "coverage": "coverage swap",
}


@dataclass(frozen=True)
class FeedShift:
    """One final on-call shift as a feed shows it: `user_id` holds `schedule_id` over [start, end)."""

    schedule_id: UUID
    schedule_name: str
    user_id: UUID
    user_name: str
    start: datetime
    end: datetime
    source: str


@dataclass(frozen=True)
class FeedEntry:
    """What a feed remembers about one published event; `cancelled_at` is None while the shift is live."""

    uid: str
    schedule_id: UUID
    schedule_name: str
    user_id: UUID
    user_name: str
    start: datetime
    end: datetime
    source: str
    first_seen: datetime
    cancelled_at: datetime | None
    sequence: int

    @property
    def live(self) -> bool:
        return self.cancelled_at is None


def feed_window(now: datetime) -> tuple[datetime, datetime]:
    """[start, end) a feed resolves: whole UTC days covering `FEED_DAYS_BEHIND` back to `FEED_DAYS_AHEAD` ahead.

    Whole days because a shift clipped at a window edge changes its times (and so its UID) whenever the edge
    moves; day edges bound that churn to once a day.
    """
    day = _utc(now).replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=FEED_DAYS_BEHIND), day + timedelta(days=FEED_DAYS_AHEAD + 1)


def shift_uid(shift: FeedShift) -> str:
    """A UID that stays the same for the same person on the same schedule over the same span."""
    key = f"{shift.schedule_id}|{shift.user_id}|{_utc(shift.start).isoformat()}|{_utc(shift.end).isoformat()}"
    return f"{hashlib.sha1(key.encode()).hexdigest()[:32]}@{UID_DOMAIN}"


def reconcile(
    previous: Sequence[FeedEntry],
    current: Sequence[FeedShift],
    now: datetime,
    keep_cancelled: timedelta = KEEP_CANCELLED,
    *,
    window_start: datetime | None = None,
) -> list[FeedEntry]:
    """The feed's new memory, ordered by (start, uid).

    Current shifts are live (a known one keeps its first_seen and sequence; a cancelled one that reappears,
    or one whose names or source changed, gets the next sequence). A previously live entry missing from
    `current` is cancelled at `now` with the next sequence, unless it ended by `window_start` (default:
    `feed_window(now)`'s start), when it has aged out and is dropped. Cancelled entries are kept until
    `cancelled_at + keep_cancelled`.
    """
    aged_out_by = feed_window(now)[0] if window_start is None else window_start
    known = {entry.uid: entry for entry in previous}
    entries: dict[str, FeedEntry] = {}
    for shift in current:
        uid = shift_uid(shift)
        if uid not in entries:
            entries[uid] = _live_entry(uid, shift, known.get(uid), now)
    for uid, entry in known.items():
        if uid in entries:
            continue
        if entry.live:
            if entry.end > aged_out_by:
                entries[uid] = replace(entry, cancelled_at=now, sequence=entry.sequence + 1)
        elif entry.cancelled_at is not None and now < entry.cancelled_at + keep_cancelled:
            entries[uid] = entry
    return sorted(entries.values(), key=lambda e: (_utc(e.start), e.uid))


def render(entries: Sequence[FeedEntry], *, name: str, now: datetime) -> bytes:
    """The feed as an RFC 5545 VCALENDAR (CRLF line endings, folded lines), one VEVENT per entry."""
    calendar = Calendar()
    calendar.prodid = PRODID
    calendar.version = "2.0"
    calendar.calscale = "GREGORIAN"
    calendar.method = "PUBLISH"
    calendar.calendar_name = name
    # RFC 7986 gives REFRESH-INTERVAL no default value type, so VALUE=DURATION is required.
    calendar.add("REFRESH-INTERVAL", REFRESH_INTERVAL, parameters={"VALUE": "DURATION"})
    calendar.add("X-PUBLISHED-TTL", vDuration(REFRESH_INTERVAL))
    stamp = _utc(now)
    for entry in sorted(entries, key=lambda e: (_utc(e.start), e.uid)):
        calendar.add_component(_event(entry, stamp))
    if not entries:
        # RFC 5545 requires at least one component; an unused UTC zone keeps an empty feed valid.
        calendar.add_component(_utc_timezone())
    ical: bytes = calendar.to_ical()
    return ical


def summary(entry: FeedEntry) -> str:
    return f"On call: {entry.user_name} ({entry.schedule_name})"


def description(entry: FeedEntry) -> str:
    how = SOURCE_LABELS.get(entry.source, entry.source)
    if entry.live:
        return f"{entry.user_name} is on call for {entry.schedule_name} ({how})."
    return f"Cancelled: {entry.user_name} is no longer on call for {entry.schedule_name} in this span ({how})."


def _live_entry(uid: str, shift: FeedShift, known: FeedEntry | None, now: datetime) -> FeedEntry:
    entry = FeedEntry(
        uid=uid,
        schedule_id=shift.schedule_id,
        schedule_name=shift.schedule_name,
        user_id=shift.user_id,
        user_name=shift.user_name,
        start=_utc(shift.start),
        end=_utc(shift.end),
        source=shift.source,
        first_seen=now if known is None else known.first_seen,
        cancelled_at=None,
        sequence=0 if known is None else known.sequence,
    )
    if known is not None and (not known.live or _details(known) != _details(entry)):
        entry = replace(entry, sequence=known.sequence + 1)
    return entry


def _details(entry: FeedEntry) -> tuple[str, str, str]:
    return entry.schedule_name, entry.user_name, entry.source


def _event(entry: FeedEntry, stamp: datetime) -> Event:
    return Event.new(
        uid=entry.uid,
        stamp=stamp,
        created=_utc(entry.first_seen),
        start=_utc(entry.start),
        end=_utc(entry.end),
        summary=summary(entry),
        description=description(entry),
        sequence=entry.sequence,
        status=STATUS.CONFIRMED if entry.live else STATUS.CANCELLED,
        # A week on call must not show the person as busy to meeting schedulers.
        transparency=TRANSP.TRANSPARENT,
    )


def _utc_timezone() -> Timezone:
    zone = Timezone.from_tzid("UTC")
    zone.pop("COMMENT", None)
    return zone


def _utc(instant: datetime) -> datetime:
    if instant.tzinfo is None:
        raise ValueError(f"{instant.isoformat()} has no UTC offset")
    return instant.astimezone(UTC)
