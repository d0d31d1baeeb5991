"""The coverage-request workflow as pure rules: states, who may move a request where, and who is told what.

Time is a parameter; nothing here touches the database, Kafka or HTTP. A transition returns the new request
(requests are immutable values) and raises when the caller may not make it: `Conflict` when the request is no
longer in a state that allows it (the answer names the current state), `Forbidden` for a caller who may see
the request but not do this, `InvalidInput` for a bad choice of shifts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Literal
from uuid import UUID
from zoneinfo import ZoneInfo

from shared.auth import Forbidden
from shared.errors import Conflict, InvalidInput
from shared.timelines import holder_problem

Status = Literal["pending", "accepting", "accepted", "declined", "cancelled", "expired", "obsolete"]
STATUSES: tuple[Status, ...] = ("pending", "accepting", "accepted", "declined", "cancelled", "expired", "obsolete")
# While open, a request holds its shifts: no second open request may claim them.
OPEN: frozenset[Status] = frozenset({"pending", "accepting"})
FINAL: frozenset[Status] = frozenset(STATUSES) - OPEN
Decision = Literal["accepted", "declined"]

MAX_RECIPIENTS = 20
MAX_SHIFTS = 50
MAX_MESSAGE = 1000


@dataclass(frozen=True)
class Shift:
    """One shift the requester asks to hand over; `covered` is set once the request ends accepted."""

    schedule_id: UUID
    start: datetime
    end: datetime
    covered: bool | None = None

    @property
    def span(self) -> tuple[UUID, datetime, datetime]:
        return (self.schedule_id, self.start, self.end)


@dataclass(frozen=True)
class Recipient:
    user_id: UUID
    decision: Decision | None = None
    decided_at: datetime | None = None


@dataclass(frozen=True)
class Transition:
    """One step of a request's history: who (None: the system) moved it to `status`, when and why."""

    at: datetime
    actor_id: UUID | None
    status: Status
    reason: str = ""


@dataclass(frozen=True)
class CoverageRequest:
    id: UUID
    requester_id: UUID
    recipients: tuple[Recipient, ...]
    period_start: datetime
    period_end: datetime
    shifts: tuple[Shift, ...]
    message: str
    status: Status
    created_at: datetime
    updated_at: datetime
    remind_at: datetime | None = None
    covering_user_id: UUID | None = None
    reason: str = ""
    history: tuple[Transition, ...] = field(default_factory=tuple)

    @property
    def first_shift_start(self) -> datetime:
        return min(s.start for s in self.shifts)

    @property
    def recipient_ids(self) -> tuple[UUID, ...]:
        return tuple(r.user_id for r in self.recipients)

    @property
    def undecided(self) -> tuple[UUID, ...]:
        """Recipients who have neither accepted nor declined."""
        return tuple(r.user_id for r in self.recipients if r.decision is None)

    @property
    def taker(self) -> UUID:
        """The recipient who accepted (only once the request is accepting or accepted)."""
        if self.covering_user_id is None:
            raise ValueError(f"coverage request {self.id} has not been accepted")
        return self.covering_user_id

    def is_party(self, user_id: UUID) -> bool:
        return user_id == self.requester_id or user_id in self.recipient_ids

    def chosen(self) -> tuple[Shift, ...]:
        """The shifts an accepting or accepted request hands over (all of them unless partly accepted)."""
        return tuple(s for s in self.shifts if s.covered)

    def _moved(
        self, status: Status, actor: UUID | None, now: datetime, reason: str = "", **changes: object
    ) -> CoverageRequest:
        step = Transition(now, actor, status, reason)
        ended = reason if status in FINAL else self.reason
        return replace(self, status=status, updated_at=now, reason=ended, history=(*self.history, step), **changes)  # type: ignore[arg-type]

    def _require(self, allowed: Iterable[Status], doing: str) -> None:
        if self.status not in allowed:
            raise Conflict(
                f"cannot {doing} a request that is {self.status}",
                request_id=str(self.id),
                state=self.status,
                covering_user_id=str(self.covering_user_id) if self.covering_user_id else None,
            )

    def _require_recipient(self, user_id: UUID, doing: str) -> None:
        if user_id not in self.recipient_ids:
            raise Forbidden(f"only a recipient of the request may {doing} it")

    def accept(
        self, user_id: UUID, chosen: Sequence[tuple[UUID, datetime, datetime]] | None, now: datetime
    ) -> CoverageRequest:
        """`user_id`, a recipient, takes `chosen` (all shifts when None). The request waits in `accepting`
        until schedule confirms; the first acceptance of a broadcast wins."""
        self._require_recipient(user_id, "accept")
        if self.status in ("accepting", "accepted") and self.covering_user_id == user_id:
            return self  # the same acceptance again (an app retry): one effect
        self._require({"pending"}, "accept")
        if now >= self.first_shift_start:  # its expiry timer is about to fire
            raise Conflict("the first shift has started: the request expired", request_id=str(self.id), state="expired")
        if dict((r.user_id, r.decision) for r in self.recipients)[user_id] == "declined":
            raise Conflict("you declined this request", request_id=str(self.id), state=self.status)
        wanted = set(self._known_shifts(chosen)) if chosen else {s.span for s in self.shifts}
        shifts = tuple(replace(s, covered=s.span in wanted) for s in self.shifts)
        recipients = tuple(
            replace(r, decision="accepted", decided_at=now) if r.user_id == user_id else r for r in self.recipients
        )
        partly = "" if len(wanted) == len(self.shifts) else f"{len(wanted)} of {len(self.shifts)} shifts"
        return self._moved(
            "accepting", user_id, now, partly, covering_user_id=user_id, shifts=shifts, recipients=recipients
        )

    def _known_shifts(self, chosen: Sequence[tuple[UUID, datetime, datetime]]) -> list[tuple[UUID, datetime, datetime]]:
        spans = {s.span for s in self.shifts}
        for i, span in enumerate(chosen):
            if span not in spans:
                raise InvalidInput(f"shifts.{i}", "not one of the request's shifts")
            if span in chosen[:i]:
                raise InvalidInput(f"shifts.{i}", "the same shift twice")
        return list(chosen)

    def decline(self, user_id: UUID, reason: str, now: datetime) -> CoverageRequest:
        """`user_id`, a recipient, declines. The request ends declined when no recipient is left undecided."""
        self._require_recipient(user_id, "decline")
        mine = dict((r.user_id, r.decision) for r in self.recipients)[user_id]
        if mine == "declined":
            return self
        self._require({"pending"}, "decline")
        recipients = tuple(
            replace(r, decision="declined", decided_at=now) if r.user_id == user_id else r for r in self.recipients
        )
        declined = replace(self, recipients=recipients)
        if declined.undecided:
            step = Transition(now, user_id, "pending", f"declined by {user_id}" + (f": {reason}" if reason else ""))
            return replace(declined, updated_at=now, history=(*self.history, step))
        return declined._moved("declined", user_id, now, reason)

    def cancel(self, user_id: UUID, now: datetime) -> CoverageRequest:
        """The requester withdraws the request while nobody has accepted it."""
        if user_id != self.requester_id:
            raise Forbidden("only the requester may cancel a request")
        if self.status == "cancelled":
            return self
        self._require({"pending"}, "cancel")
        return self._moved("cancelled", user_id, now)

    def confirm(self, now: datetime) -> CoverageRequest:
        """schedule applied the accepted shifts."""
        return self._moved("accepted", None, now, "schedule applied the coverage")

    def expire(self, now: datetime) -> CoverageRequest:
        return self._moved("expired", None, now, "nobody accepted before the first shift started")

    def obsolete(self, reason: str, now: datetime) -> CoverageRequest:
        # Nobody covers anything: the recipient who had accepted stays in `recipients` and the history.
        shifts = tuple(replace(s, covered=None) for s in self.shifts)
        return self._moved("obsolete", None, now, reason, shifts=shifts, covering_user_id=None)


def new_request(
    id: UUID,
    requester_id: UUID,
    recipient_ids: Sequence[UUID],
    period: tuple[datetime, datetime],
    shifts: Sequence[Shift],
    message: str,
    now: datetime,
    remind_before: timedelta | None,
) -> CoverageRequest:
    """A pending request, after the checks that need nothing but its own input."""
    start, end = period
    if end <= start:
        raise InvalidInput("end", "the period must end after it starts")
    if end <= now:
        raise InvalidInput("end", "the period lies in the past")
    for i, user_id in enumerate(recipient_ids):
        if user_id == requester_id:
            raise InvalidInput(f"recipient_ids.{i}", "you cannot ask yourself to cover your own shifts")
        if user_id in recipient_ids[:i]:
            raise InvalidInput(f"recipient_ids.{i}", "the same recipient twice")
    for i, s in enumerate(shifts):
        if s.end <= s.start:
            raise InvalidInput(f"shifts.{i}.end", "the shift must end after it starts")
        if s.start < start or s.end > end:
            raise InvalidInput(f"shifts.{i}", "the shift lies outside the period")
        if s.start <= now:
            raise InvalidInput(f"shifts.{i}.start", "the shift has already started")
    ordered = sorted(range(len(shifts)), key=lambda i: (shifts[i].schedule_id, shifts[i].start, i))
    for i, j in pairwise(ordered):
        a, b = shifts[i], shifts[j]
        if a.schedule_id == b.schedule_id and b.start < a.end:
            raise InvalidInput(f"shifts.{max(i, j)}", "overlaps another shift of the request")
    first = min(s.start for s in shifts)
    remind_at = first - remind_before if remind_before else None
    return CoverageRequest(
        id,
        requester_id,
        tuple(Recipient(u) for u in recipient_ids),
        start,
        end,
        tuple(shifts),
        message,
        "pending",
        now,
        now,
        remind_at if remind_at and remind_at > now else None,
        history=(Transition(now, requester_id, "pending", "requested"),),
    )


@dataclass(frozen=True)
class Piece:
    """A piece of a published timeline that someone holds: [start, end) on `schedule_id`."""

    schedule_id: UUID
    start: datetime
    end: datetime
    user_id: UUID | None


def shift_problem(
    shift: Shift,
    requester_id: UUID,
    pieces: Sequence[Piece],
    horizon_end: datetime | None,
    period: tuple[datetime, datetime],
) -> str | None:
    """Why `shift` is not one of the requester's final shifts on the published timeline, or None.

    A shift is the requester's when they hold all of it and it starts and ends where one of their published
    shifts does, or where the chosen period cuts one: a user hands over shifts, not arbitrary slices of one.
    """
    if horizon_end is None:
        return "coverage knows no published timeline of this schedule"
    if shift.end > horizon_end:
        return f"the shift lies beyond the published horizon, which ends {horizon_end.isoformat()}"
    problem = holder_problem(pieces, shift.start, shift.end, requester_id)
    if problem:
        return problem
    mine = [p for p in pieces if p.user_id == requester_id]
    if shift.start != period[0] and not any(p.start == shift.start for p in mine):
        return "the shift does not start where one of the requester's shifts starts"
    if shift.end != period[1] and not any(p.end == shift.end for p in mine):
        return "the shift does not end where one of the requester's shifts ends"
    return None


def lost_shifts(
    request: CoverageRequest, schedule_id: UUID, pieces: Sequence[Piece], horizon_end: datetime
) -> list[str]:
    """Reasons, per shift of `request` on `schedule_id`, why a newly published timeline no longer gives it to
    the requester. Shifts beyond the timeline's horizon are not judged."""
    reasons = []
    for s in request.shifts:
        if s.schedule_id != schedule_id or s.end > horizon_end:
            continue
        problem = holder_problem(pieces, s.start, s.end, request.requester_id)
        if problem:
            reasons.append(f"shift {s.start.isoformat()} to {s.end.isoformat()}: {problem}")
    return reasons


# --- who is told what ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Notice:
    """Something one user is told about a request; `what` makes it unique per request and user."""

    user_id: UUID
    what: str
    title: str
    body: str


@dataclass(frozen=True)
class People:
    """Names and zones of the users a notice mentions (from coverage's user projection)."""

    names: Mapping[UUID, str]
    zones: Mapping[UUID, str]

    def name(self, user_id: UUID | None) -> str:
        return self.names.get(user_id, "A colleague") if user_id else "Nobody"

    def when(self, instant: datetime, user_id: UUID) -> str:
        try:
            zone = ZoneInfo(self.zones.get(user_id, "UTC"))
        except (ValueError, KeyError):
            zone = ZoneInfo("UTC")
        return instant.astimezone(zone).strftime("%a %d %b %H:%M %Z")


def _shifts_text(shifts: Sequence[Shift], people: People, reader: UUID) -> str:
    if not shifts:
        return "no shifts"
    first = min(s.start for s in shifts)
    count = f"{len(shifts)} shift" + ("s" if len(shifts) != 1 else "")
    return f"{count} from {people.when(first, reader)}"


def notices(before: CoverageRequest | None, after: CoverageRequest, people: People) -> list[Notice]:
    """Who is told what when a request moves from `before` (None: just created) to `after`."""
    r, asker = after, people.name(after.requester_id)
    if before is None:
        note = f' "{r.message}"' if r.message else ""
        return [
            Notice(
                u,
                "created",
                "Coverage request",
                f"{asker} asks you to cover {_shifts_text(r.shifts, people, u)}.{note}",
            )
            for u in r.recipient_ids
        ]
    if after.status == before.status and after.status == "pending":
        newly = [
            x.user_id
            for x in after.recipients
            if x.decision == "declined" and dict((y.user_id, y.decision) for y in before.recipients)[x.user_id] is None
        ]
        return [n for u in newly for n in _declined(r, u, people)]
    if after.status == before.status:
        return []
    if after.status == "accepted":
        taker = r.taker
        helper = people.name(taker)
        taken = _shifts_text(r.chosen(), people, r.requester_id)
        told = [
            Notice(r.requester_id, "accepted", "Coverage accepted", f"{helper} now covers {taken}."),
            Notice(
                taker,
                "accepted",
                "Coverage accepted",
                f"You are now on call for {asker}: {_shifts_text(r.chosen(), people, taker)}.",
            ),
        ]
        others = [u for u in r.recipient_ids if u != r.covering_user_id and u in before.undecided]
        return told + [
            Notice(u, "taken", "Coverage request taken", f"{helper} took {asker}'s request.") for u in others
        ]
    if after.status == "declined":
        last = r.history[-1].actor_id
        return _declined(r, last, people) if last else []
    if after.status == "cancelled":
        return [
            Notice(u, "cancelled", "Coverage request cancelled", f"{asker} cancelled the request.")
            for u in before.undecided
        ]
    if after.status == "expired":
        return [
            Notice(
                r.requester_id,
                "expired",
                "Coverage request expired",
                f"Nobody accepted before your shift started at {people.when(r.first_shift_start, r.requester_id)}.",
            )
        ]
    if after.status == "obsolete":
        told_users = [r.requester_id, *(before.undecided if before.status == "pending" else [before.covering_user_id])]
        return [
            Notice(u, "obsolete", "Coverage request no longer applies", f"{asker}'s request is obsolete: {r.reason}")
            for u in told_users
            if u is not None
        ]
    return []


def _declined(r: CoverageRequest, decliner: UUID, people: People) -> list[Notice]:
    who = people.name(decliner)
    return [
        Notice(r.requester_id, f"declined:{decliner}", "Coverage declined", f"{who} declined your coverage request."),
        Notice(
            decliner,
            f"declined:{decliner}",
            "Coverage declined",
            f"You declined {people.name(r.requester_id)}'s request.",
        ),
    ]


def reminders(r: CoverageRequest, people: People) -> list[Notice]:
    """Before the first shift of a still-pending request: remind the undecided recipients, warn the requester."""
    starts = people.when(r.first_shift_start, r.requester_id)
    return [
        *(
            Notice(
                u,
                "reminder",
                "Coverage request waiting",
                f"{people.name(r.requester_id)} still needs cover from {people.when(r.first_shift_start, u)}.",
            )
            for u in r.undecided
        ),
        Notice(
            r.requester_id,
            "reminder",
            "Nobody has accepted yet",
            f"Your coverage request is still pending; it expires when your shift starts ({starts}).",
        ),
    ]
