"""The coverage-request state machine against an independent model: any sequence of actions by anyone
(requester, recipients, a stranger, schedule's answers, deadlines) keeps the workflow's promises."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from services.coverage.domain import FINAL, CoverageRequest, People, Shift, new_request, notices
from shared.auth import Forbidden
from shared.errors import Conflict, InvalidInput

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
REQUESTER, X, Y, STRANGER = (uuid.uuid4() for _ in range(4))
SCHEDULE = uuid.uuid4()
SHIFTS = tuple(Shift(SCHEDULE, NOW + timedelta(days=d), NOW + timedelta(days=d, hours=12)) for d in (2, 3, 4))
PEOPLE = People({REQUESTER: "Amy", X: "Ben", Y: "Cat"}, {})
# pending -> accepting -> accepted, and the ends each state may reach
EDGES = {
    "pending": {"accepting", "declined", "cancelled", "expired", "obsolete"},
    "accepting": {"accepted", "obsolete"},
}


def fresh() -> CoverageRequest:
    return new_request(uuid.uuid4(), REQUESTER, [X, Y], (NOW, NOW + timedelta(days=7)), SHIFTS, "hi", NOW,
                       timedelta(hours=1))


class Workflow(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.request = fresh()
        self.told: list[tuple[str, object]] = [(n.what, n.user_id) for n in notices(None, self.request, PEOPLE)]
        self.clock = NOW
        self.declined: set[uuid.UUID] = set()

    def _move(self, action: object) -> None:
        before = self.request
        self.clock += timedelta(seconds=1)
        try:
            after = action()  # type: ignore[operator]
        except (Conflict, Forbidden, InvalidInput):
            return
        if after.status != before.status:
            assert after.status in EDGES.get(before.status, set()), (before.status, after.status)
        if after is not before:
            assert after.history[: len(before.history)] == before.history
            assert len(after.history) == len(before.history) + 1
        self.told += [(n.what, n.user_id) for n in notices(before, after, PEOPLE)]
        self.request = after

    @rule(who=st.sampled_from([REQUESTER, X, Y, STRANGER]), subset=st.sets(st.sampled_from(SHIFTS)))
    def accept(self, who: uuid.UUID, subset: set[Shift]) -> None:
        chosen = [s.span for s in SHIFTS if s in subset] or None
        self._move(lambda: self.request.accept(who, chosen, self.clock))

    @rule(who=st.sampled_from([REQUESTER, X, Y, STRANGER]))
    def decline(self, who: uuid.UUID) -> None:
        before = self.request
        self._move(lambda: self.request.decline(who, "", self.clock))
        if self.request is not before and before.status == "pending":
            self.declined.add(who)

    @rule(who=st.sampled_from([REQUESTER, X, Y, STRANGER]))
    def cancel(self, who: uuid.UUID) -> None:
        self._move(lambda: self.request.cancel(who, self.clock))

    @rule()
    def schedule_applies(self) -> None:
        if self.request.status == "accepting":
            self._move(lambda: self.request.confirm(self.clock))

    @rule()
    def schedule_rejects(self) -> None:
        if self.request.status == "accepting":
            self._move(lambda: self.request.obsolete("rejected", self.clock))

    @rule()
    def deadline(self) -> None:
        if self.request.status == "pending":
            self._move(lambda: self.request.expire(self.clock))

    @invariant()
    def keeps_its_promises(self) -> None:
        r = self.request
        assert r.history[-1].status == r.status or (r.status == "pending" and r.history[-1].status == "pending")
        if r.status in ("accepting", "accepted"):
            assert r.covering_user_id in (X, Y) and r.covering_user_id not in self.declined
            assert r.chosen(), "an acceptance takes at least one shift"
        else:
            assert r.covering_user_id is None
        if r.status == "cancelled":
            assert r.history[-1].actor_id == REQUESTER
        if r.status == "declined":
            assert {x.decision for x in r.recipients} == {"declined"}
        # nobody is told the same thing twice, and the requester is never asked to cover
        assert len(self.told) == len(set(self.told)), self.told
        assert ("created", REQUESTER) not in self.told
        if r.status == "accepted":
            assert ("accepted", REQUESTER) in self.told and ("accepted", r.covering_user_id) in self.told
        if r.status in FINAL and r.status != "accepted":
            assert not any(what == "accepted" for what, _ in self.told)


Workflow.TestCase.settings = settings(max_examples=300, stateful_step_count=12, deadline=None)
test_workflow = Workflow.TestCase


def test_a_new_request_checks_its_own_input() -> None:
    def make(**kw: object) -> CoverageRequest:
        args: dict[str, object] = {
            "id": uuid.uuid4(), "requester_id": REQUESTER, "recipient_ids": [X],
            "period": (NOW, NOW + timedelta(days=7)), "shifts": SHIFTS[:1], "message": "", "now": NOW,
            "remind_before": None,
        } | kw
        return new_request(**args)  # type: ignore[arg-type]

    cases = {
        "recipient_ids.0": {"recipient_ids": [REQUESTER]},
        "recipient_ids.1": {"recipient_ids": [X, X]},
        "end": {"period": (NOW, NOW)},
        "shifts.0": {"period": (NOW + timedelta(days=5), NOW + timedelta(days=6))},
        "shifts.1": {"shifts": (SHIFTS[0], SHIFTS[0])},
        "shifts.0.start": {"now": SHIFTS[0].start},
    }
    for field, change in cases.items():
        with pytest.raises(InvalidInput) as caught:
            make(**change)
        assert caught.value.field == field, (field, caught.value)
    # a reminder already due when the request is made is left out; a later one is kept
    assert make(remind_before=timedelta(days=30)).remind_at is None
    assert make(remind_before=timedelta(hours=1)).remind_at == SHIFTS[0].start - timedelta(hours=1)


def test_a_request_cannot_be_accepted_once_its_first_shift_has_started() -> None:
    request = fresh()
    with pytest.raises(Conflict) as caught:
        request.accept(X, None, SHIFTS[0].start)
    assert caught.value.details["state"] == "expired"
    assert request.accept(X, None, SHIFTS[0].start - timedelta(seconds=1)).status == "accepting"
