"""Use cases of the schedule service: load, apply the domain rules, store and stage events in one transaction."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from services.schedule import domain, store
from services.schedule.domain import Team, User, ical
from services.schedule.domain.policies import (
    Policy,
    Rule,
    Step,
    SupportHours,
    new_policy,
    new_support_hours,
    responders_at,
)
from services.schedule.domain.shifts import (
    Cover,
    Horizon,
    Schedule,
    Segment,
    ShiftClaim,
    StaticShift,
    Window,
    check_range,
    check_static_shifts,
    claim_problem,
    new_layer,
    on_call_at,
    parse_windows,
    resolve,
    shifts_of,
)
from shared.auth import Forbidden, Principal
from shared.db import transaction
from shared.errors import Conflict, InvalidInput, NotFound
from shared.inbox import claim
from shared.messages import (
    CoverageApplied,
    CoverageRejected,
    CoverageRequestAccepted,
    CoverageRequestRevoked,
    CoverageReverted,
    Message,
    PolicyRule,
    PolicySnapshot,
    ScheduleTimeline,
    ShiftProblem,
    SupportHoursSnapshot,
    TeamSnapshot,
    TimelineSegment,
    UserSnapshot,
    utcnow,
)
from shared.outbox import enqueue


@contextmanager
def unique(conflict: str) -> Iterator[None]:
    """Turn a unique-constraint violation inside the block into a 409 saying `conflict`."""
    try:
        yield
    except asyncpg.UniqueViolationError as exc:
        raise Conflict(conflict) from exc


def user_snapshot(user: User) -> UserSnapshot:
    return UserSnapshot(
        user_id=user.id, version=user.version, name=user.name, email=user.email, phone=user.phone,
        time_zone=user.time_zone, language=user.language, role=user.role,  # type: ignore[arg-type]
        active=user.active,
    )


def team_snapshot(team: Team) -> TeamSnapshot:
    return TeamSnapshot(team_id=team.id, version=team.version, name=team.name, member_ids=list(team.member_ids))


async def create_user(pool: asyncpg.Pool, fields: dict[str, Any]) -> User:
    """Add a user to the directory and publish their snapshot."""
    user = domain.new_user(id=uuid4(), **fields)
    async with transaction(pool) as conn:
        with unique(f"a user with e-mail {user.email} exists"):
            await store.insert_user(conn, user)
        await enqueue(conn, user_snapshot(user))
    return user


async def edit_user(pool: asyncpg.Pool, actor: Principal, user_id: UUID, changes: dict[str, Any]) -> User:
    """Change a user's profile; a user edits only their own profile fields, an admin anything."""
    actor.require_self_or_admin(user_id)
    async with transaction(pool) as conn:
        current = await store.get_user(conn, user_id, lock=True)
        if current is None:
            raise NotFound(f"user {user_id}")
        try:
            edited = domain.edit_user(current, changes, by_admin=actor.is_admin)
        except PermissionError as exc:
            raise Forbidden(str(exc)) from exc
        if edited == current:
            return current
        if current.active and not edited.active:
            # a deactivated user must never be the one paged: they leave schedules and policies first
            commitments = await store.commitments_of_user(conn, user_id, utcnow())
            if commitments:
                raise Conflict(f"the user is still on call somewhere; remove them first from: {'; '.join(commitments)}")
        with unique(f"a user with e-mail {edited.email} exists"):
            await store.update_user(conn, edited)
        await enqueue(conn, user_snapshot(edited))
    return edited


async def get_user(pool: asyncpg.Pool, user_id: UUID) -> User:
    user = await store.get_user(pool, user_id)
    if user is None:
        raise NotFound(f"user {user_id}")
    return user


async def create_team(pool: asyncpg.Pool, name: str, member_ids: list[UUID]) -> Team:
    """Create a team of existing users and publish its snapshot."""
    async with transaction(pool) as conn:
        team = domain.new_team(uuid4(), name, member_ids, await store.existing_user_ids(conn, member_ids))
        with unique(f"a team named {team.name} exists"):
            await store.insert_team(conn, team)
        await enqueue(conn, team_snapshot(team))
    return team


async def set_team_members(pool: asyncpg.Pool, team_id: UUID, member_ids: list[UUID]) -> Team:
    """Replace a team's members (in order) and publish its snapshot."""
    async with transaction(pool) as conn:
        team = await store.get_team(conn, team_id, lock=True)
        if team is None:
            raise NotFound(f"team {team_id}")
        changed = domain.change_members(team, member_ids, await store.existing_user_ids(conn, member_ids))
        await store.update_team(conn, changed)
        await enqueue(conn, team_snapshot(changed))
    return changed


async def get_team(pool: asyncpg.Pool, team_id: UUID) -> Team:
    team = await store.get_team(pool, team_id)
    if team is None:
        raise NotFound(f"team {team_id}")
    return team


# --- schedules ------------------------------------------------------------------------------------------------

HORIZON = Horizon()
MAX_QUERY_SPAN = timedelta(days=400)
COVERAGE_CONSUMER = "schedule.coverage"


def _instant(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _windows(specs: list[dict[str, Any]], field_name: str) -> tuple[Window, ...]:
    return parse_windows([(w["days"], w["start"], w["end"]) for w in specs], field_name)


def build_schedule(schedule_id: UUID, fields: dict[str, Any], version: int = 1) -> Schedule:
    """A schedule from its stored/posted definition; InvalidInput names the first field that breaks a rule."""
    if not fields["name"].strip():
        raise InvalidInput("name", "name must not be empty")
    zone = domain.check_time_zone(fields["time_zone"])
    layers = tuple(
        new_layer(
            [UUID(str(u)) for u in spec["users"]],
            spec["length"],
            spec["unit"],
            datetime.fromisoformat(spec["handoff"]),
            _windows(spec.get("restrictions") or [], f"layers.{i}.restrictions"),
            _instant(spec.get("start")),
            _instant(spec.get("end")),
            name=spec.get("name") or f"Layer {i + 1}",
            field_name=f"layers.{i}",
        )
        for i, spec in enumerate(fields.get("layers") or [])
    )
    shifts = check_static_shifts(
        [
            StaticShift(UUID(str(s["user_id"])), datetime.fromisoformat(s["start"]), datetime.fromisoformat(s["end"]))
            for s in fields.get("shifts") or []
        ]
    )
    kind = fields["kind"]
    if kind == "recurring" and (not layers or shifts):
        raise InvalidInput("layers", "a recurring schedule has one or more layers and no static shifts")
    if kind == "static" and layers:
        raise InvalidInput("layers", "a static schedule has shifts, not layers")
    team_id = UUID(str(fields["team_id"])) if fields.get("team_id") else None
    return Schedule(schedule_id, fields["name"].strip(), zone, kind, layers, shifts, version, team_id)


def schedule_of(row: asyncpg.Record) -> Schedule:
    fields = dict(row["definition"], name=row["name"], time_zone=row["time_zone"], kind=row["kind"])
    return build_schedule(row["id"], fields | {"team_id": row["team_id"]}, row["version"])


async def _check_references(conn: asyncpg.Connection, schedule: Schedule) -> None:
    known = await store.active_user_ids(conn, schedule.user_ids())
    for i, layer in enumerate(schedule.layers):
        unknown = [str(u) for u in layer.users if u not in known]
        if unknown:
            raise InvalidInput(f"layers.{i}.users", f"unknown or deactivated user ids: {', '.join(unknown)}")
    for i, shift in enumerate(schedule.shifts):
        if shift.user_id not in known:
            raise InvalidInput(f"shifts.{i}.user_id", f"unknown or deactivated user id: {shift.user_id}")
    if schedule.team_id is not None and await store.get_team(conn, schedule.team_id) is None:
        raise InvalidInput("team_id", f"unknown team id: {schedule.team_id}")


def _definition(fields: dict[str, Any]) -> dict[str, Any]:
    return {"layers": fields.get("layers") or [], "shifts": fields.get("shifts") or []}


async def create_schedule(pool: asyncpg.Pool, fields: dict[str, Any], now: datetime) -> Schedule:
    """Create a recurring or static schedule and publish its first timeline."""
    schedule = build_schedule(uuid4(), fields)
    async with transaction(pool) as conn:
        await _check_references(conn, schedule)
        row = {
            "id": schedule.id, "version": 1, "name": schedule.name, "time_zone": schedule.time_zone,
            "kind": schedule.kind, "team_id": schedule.team_id, "definition": _definition(fields),
        }
        with unique(f"a schedule named {schedule.name} exists"):
            await store.insert_schedule(conn, row, schedule.user_ids())
        await publish_timeline(conn, schedule, now)
    return schedule


async def replace_schedule(pool: asyncpg.Pool, schedule_id: UUID, fields: dict[str, Any], now: datetime) -> Schedule:
    """Replace a schedule's definition (layers or shifts, zone, name) and republish its timeline."""
    async with transaction(pool) as conn:
        current = await _locked_schedule(conn, schedule_id)
        schedule = build_schedule(schedule_id, fields, current.version + 1)
        await _check_references(conn, schedule)
        row = {
            "id": schedule.id, "version": schedule.version, "name": schedule.name, "time_zone": schedule.time_zone,
            "kind": schedule.kind, "team_id": schedule.team_id, "definition": _definition(fields),
        }
        with unique(f"a schedule named {schedule.name} exists"):
            await store.update_schedule(conn, row, schedule.user_ids())
        await publish_timeline(conn, schedule, now)
    return schedule


async def _locked_schedule(conn: asyncpg.Connection, schedule_id: UUID) -> Schedule:
    rows = await store.lock_schedules(conn, [schedule_id])
    if not rows:
        raise NotFound(f"schedule {schedule_id}")
    return schedule_of(rows[0])


async def get_schedule(pool: asyncpg.Pool | asyncpg.Connection, schedule_id: UUID) -> Schedule:
    row = await store.get_schedule(pool, schedule_id)
    if row is None:
        raise NotFound(f"schedule {schedule_id}")
    return schedule_of(row)


def check_span(start: datetime, end: datetime, end_field: str = "to") -> None:
    check_range(start, end, end_field)
    if end - start > MAX_QUERY_SPAN:
        raise InvalidInput(end_field, f"at most {MAX_QUERY_SPAN.days} days after the start")


async def timeline(
    conn: asyncpg.Pool | asyncpg.Connection, schedule: Schedule, start: datetime, end: datetime
) -> list[Segment]:
    """The final timeline of [start, end): layers or static shifts, then overrides and coverage, gaps explicit."""
    return resolve(schedule, await store.covers_between(conn, schedule.id, start, end), start, end)


async def schedule_timeline(
    pool: asyncpg.Pool, schedule_id: UUID, start: datetime, end: datetime
) -> tuple[Schedule, list[Segment]]:
    check_span(start, end)
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        schedule = await get_schedule(conn, schedule_id)
        return schedule, await timeline(conn, schedule, start, end)


# "who is on call at T" answers with the whole shift around T, looked for this far on either side
ON_CALL_REACH = timedelta(days=32)


async def on_call(pool: asyncpg.Pool, schedule_id: UUID, at: datetime) -> Segment:
    """The shift (or gap) holding `at`; one longer than ON_CALL_REACH on either side is cut there."""
    _, segments = await schedule_timeline(pool, schedule_id, at - ON_CALL_REACH, at + ON_CALL_REACH)
    found = on_call_at(segments, at)
    assert found is not None  # the timeline is contiguous over the window, which holds `at`
    return found


async def user_shifts(
    pool: asyncpg.Pool, user_id: UUID, start: datetime, end: datetime
) -> list[tuple[Schedule, Segment]]:
    """Every final shift of one user across all schedules in [start, end), by start time."""
    check_span(start, end)
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        if await store.get_user(conn, user_id) is None:
            raise NotFound(f"user {user_id}")
        found = []
        for row in await store.schedules_of_user(conn, user_id, start, end):
            schedule = schedule_of(row)
            found += [(schedule, s) for s in await timeline(conn, schedule, start, end) if s.user_id == user_id]
    return sorted(found, key=lambda pair: (pair[1].start, pair[0].name))


async def publish_timeline(conn: asyncpg.Connection, schedule: Schedule, now: datetime) -> ScheduleTimeline:
    """Stage the schedule's timeline for the rolling horizon; call it holding the schedule's row lock."""
    start, end = HORIZON.window(now)
    segments = await timeline(conn, schedule, start, end)
    version = await store.mark_timeline_published(conn, schedule.id, end)
    message = ScheduleTimeline(
        schedule_id=schedule.id, version=version, name=schedule.name, time_zone=schedule.time_zone,
        horizon_start=start, horizon_end=end,
        segments=[
            TimelineSegment(start=s.start, end=s.end, user_id=s.user_id, source=s.source, ref=s.ref) for s in segments
        ],
    )
    await enqueue(conn, message)
    return message


async def refresh_timelines(pool: asyncpg.Pool, now: datetime, batch: int = 50) -> int:
    """The rolling job: republish every timeline whose horizon is running short; safe on many replicas at once."""
    published = 0
    while True:
        async with transaction(pool) as conn:
            due = await store.schedules_to_refresh(conn, HORIZON.refresh_before(now), batch)
            for row in await store.lock_schedules(conn, due):
                await publish_timeline(conn, schedule_of(row), now)
        published += len(due)
        if len(due) < batch:
            return published


# --- overrides and coverage -------------------------------------------------------------------------------------


async def add_override(
    pool: asyncpg.Pool, actor: Principal, schedule_id: UUID, user_id: UUID, start: datetime, end: datetime,
    now: datetime,
) -> Cover:
    """Put `user_id` on call over the schedule for [start, end). A responder may only put themself there."""
    actor.require_writer()
    if not actor.is_admin and str(user_id) != actor.user_id:
        raise Forbidden("a responder may add an override only for themself")
    check_span(start, end, "end")
    async with transaction(pool) as conn:
        schedule = await _locked_schedule(conn, schedule_id)
        user = await store.get_user(conn, user_id)
        if user is None:
            raise InvalidInput("user_id", f"unknown user id: {user_id}")
        if not user.active:
            raise InvalidInput("user_id", "the user is deactivated")
        cover = Cover(uuid4(), user_id, start, end, "override", 0, created_by=UUID(actor.user_id))
        cover = await store.insert_cover(conn, schedule.id, cover)
        await publish_timeline(conn, schedule, now)
    return cover


async def remove_override(
    pool: asyncpg.Pool, actor: Principal, schedule_id: UUID, override_id: UUID, now: datetime
) -> None:
    """Remove an override; only its creator or an admin may. Coverage is removed by revoking its request."""
    actor.require_writer()
    async with transaction(pool) as conn:
        schedule = await _locked_schedule(conn, schedule_id)
        cover = await store.get_cover(conn, schedule_id, override_id)
        if cover is None:
            raise NotFound(f"override {override_id}")
        if cover.source == "coverage":
            raise Conflict("this shift was taken by coverage request; revoke the request instead")
        if not actor.is_admin and str(cover.created_by) != actor.user_id:
            raise Forbidden("only the creator of an override or an admin may remove it")
        await store.delete_cover(conn, override_id)
        await publish_timeline(conn, schedule, now)


async def list_covers(pool: asyncpg.Pool, schedule_id: UUID, start: datetime, end: datetime) -> list[Cover]:
    check_span(start, end)
    await get_schedule(pool, schedule_id)
    return await store.covers_between(pool, schedule_id, start, end)


async def _answer(conn: asyncpg.Connection, request_id: UUID, status: str, answer: Message) -> None:
    await store.save_coverage_outcome(conn, request_id, status, answer.model_dump(mode="json"))
    await enqueue(conn, answer)


async def _answer_again(conn: asyncpg.Connection, stored: asyncpg.Record) -> None:
    """A re-sent request gets the answer it got before (a new event), and nothing else happens."""
    kinds: dict[str, type[Message]] = {
        "applied": CoverageApplied, "rejected": CoverageRejected, "reverted": CoverageReverted,
    }
    previous = kinds[stored["status"]].model_validate(stored["answer"])
    await enqueue(conn, previous.model_copy(update={"event_id": uuid4(), "occurred_at": utcnow()}))


async def apply_coverage(pool: asyncpg.Pool, event: CoverageRequestAccepted, now: datetime) -> Message | None:
    """Move every requested shift to the covering user if each still belongs to the requester in the final
    schedule right now; otherwise move none and say why, per shift. Returns the answer staged, if any."""
    async with transaction(pool) as conn:
        if not await claim(conn, COVERAGE_CONSUMER, event.event_id):
            return None
        stored = await store.get_coverage_outcome(conn, event.request_id)
        if stored is not None:
            await _answer_again(conn, stored)
            return None
        rows = {r["id"]: r for r in await store.lock_schedules(conn, {s.schedule_id for s in event.shifts})}
        covering = await store.get_user(conn, event.covering_user_id)
        problems: list[ShiftProblem] = []
        for ref in event.shifts:
            reason = None
            if ref.end <= ref.start:
                reason = "the shift ends before it starts"
            elif ref.schedule_id not in rows:
                reason = "the schedule does not exist"
            elif covering is None or not covering.active:
                reason = "the covering user does not exist or is deactivated"
            elif event.covering_user_id == event.requester_id:
                reason = "the requester cannot cover their own shift"
            else:
                claim_ = ShiftClaim(ref.schedule_id, ref.start, ref.end)
                segments = await timeline(conn, schedule_of(rows[ref.schedule_id]), ref.start, ref.end)
                reason = claim_problem(segments, claim_, event.requester_id)
            if reason:
                problems.append(ShiftProblem(**ref.model_dump(), reason=reason))
        if problems:
            rejected = CoverageRejected(request_id=event.request_id, problems=problems)
            await _answer(conn, event.request_id, "rejected", rejected)
            return rejected
        for ref in event.shifts:
            cover = Cover(uuid4(), event.covering_user_id, ref.start, ref.end, "coverage", 0, event.request_id)
            await store.insert_cover(conn, ref.schedule_id, cover)
        for row in rows.values():
            await publish_timeline(conn, schedule_of(row), now)
        applied = CoverageApplied(
            request_id=event.request_id, covering_user_id=event.covering_user_id, shifts=event.shifts
        )
        await _answer(conn, event.request_id, "applied", applied)
        return applied


async def revoke_coverage(pool: asyncpg.Pool, event: CoverageRequestRevoked, now: datetime) -> Message | None:
    """Remove what an applied coverage request placed and answer CoverageReverted. A request never applied is
    recorded as reverted too, so an acceptance re-sent later cannot apply it."""
    async with transaction(pool) as conn:
        if not await claim(conn, COVERAGE_CONSUMER, event.event_id):
            return None
        stored = await store.get_coverage_outcome(conn, event.request_id)
        if stored is not None and stored["status"] == "reverted":
            await _answer_again(conn, stored)
            return None
        affected = await store.lock_schedules(conn, await store.schedules_of_coverage(conn, event.request_id))
        removed = await store.delete_coverage(conn, event.request_id)
        for row in affected:
            await publish_timeline(conn, schedule_of(row), now)
        reverted = CoverageReverted(request_id=event.request_id, removed_shifts=removed)
        await _answer(conn, event.request_id, "reverted", reverted)
        return reverted


# --- escalation policies and support hours -----------------------------------------------------------------------


def policy_of(row: asyncpg.Record) -> Policy:
    rules = tuple(
        Rule(r["timeout_minutes"], tuple(UUID(u) for u in r["user_ids"]), tuple(UUID(s) for s in r["schedule_ids"]))
        for r in row["rules"]
    )
    return Policy(row["id"], row["name"], rules, row["repeat"], row["version"])


def policy_snapshot(policy: Policy) -> PolicySnapshot:
    return PolicySnapshot(
        policy_id=policy.id, version=policy.version, name=policy.name, repeat=policy.repeat,
        rules=[
            PolicyRule(timeout_minutes=r.timeout_minutes, user_ids=list(r.user_ids), schedule_ids=list(r.schedule_ids))
            for r in policy.rules
        ],
    )


async def _checked_policy(conn: asyncpg.Connection, policy_id: UUID, fields: dict[str, Any], version: int) -> Policy:
    rules = [
        Rule(
            r["timeout_minutes"],
            tuple(UUID(str(u)) for u in r["user_ids"]),
            tuple(UUID(str(s)) for s in r["schedule_ids"]),
        )
        for r in fields["rules"]
    ]
    users = await store.active_user_ids(conn, [u for r in rules for u in r.user_ids])
    schedules = await store.existing_schedule_ids(conn, [s for r in rules for s in r.schedule_ids])
    policy = new_policy(policy_id, fields["name"], rules, fields["repeat"], users, schedules)
    return replace(policy, version=version)


def _policy_row(policy: Policy) -> dict[str, Any]:
    snapshot = policy_snapshot(policy).model_dump(mode="json")
    return {"id": policy.id, "version": policy.version, "name": policy.name, "repeat": policy.repeat,
            "rules": snapshot["rules"]}


async def create_policy(pool: asyncpg.Pool, fields: dict[str, Any]) -> Policy:
    """Create an escalation policy and publish its snapshot."""
    async with transaction(pool) as conn:
        policy = await _checked_policy(conn, uuid4(), fields, 1)
        with unique(f"a policy named {policy.name} exists"):
            await store.insert_policy(conn, _policy_row(policy))
        await enqueue(conn, policy_snapshot(policy))
    return policy


async def replace_policy(pool: asyncpg.Pool, policy_id: UUID, fields: dict[str, Any]) -> Policy:
    """Replace an escalation policy's name, rules and repeat count, and publish its snapshot."""
    async with transaction(pool) as conn:
        current = await store.get_policy(conn, policy_id, lock=True)
        if current is None:
            raise NotFound(f"policy {policy_id}")
        policy = await _checked_policy(conn, policy_id, fields, current["version"] + 1)
        with unique(f"a policy named {policy.name} exists"):
            await store.update_policy(conn, _policy_row(policy))
        await enqueue(conn, policy_snapshot(policy))
    return policy


async def get_policy(pool: asyncpg.Pool | asyncpg.Connection, policy_id: UUID) -> Policy:
    row = await store.get_policy(pool, policy_id)
    if row is None:
        raise NotFound(f"policy {policy_id}")
    return policy_of(row)


async def policy_on_call(pool: asyncpg.Pool, policy_id: UUID, at: datetime) -> tuple[Policy, list[Step]]:
    """Each rule of the policy with the responders it would page at `at` (schedules resolved at that moment)."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        policy = await get_policy(conn, policy_id)
        on_call_now: dict[UUID, UUID | None] = {}
        for schedule_id in {s for r in policy.rules for s in r.schedule_ids}:
            schedule = await get_schedule(conn, schedule_id)
            segment = (await timeline(conn, schedule, at, at + timedelta(microseconds=1)))[0]
            on_call_now[schedule_id] = segment.user_id
    return policy, responders_at(policy, on_call_now.__getitem__)


def support_hours_of(row: asyncpg.Record) -> SupportHours:
    return SupportHours(
        row["id"], row["name"], row["time_zone"], _windows(row["windows"], "windows"), tuple(row["holidays"]),
        row["version"],
    )


def support_hours_snapshot(hours: SupportHours, windows: list[dict[str, Any]]) -> SupportHoursSnapshot:
    return SupportHoursSnapshot(
        support_hours_id=hours.id, version=hours.version, name=hours.name, time_zone=hours.time_zone,
        windows=windows, holidays=list(hours.holidays),  # type: ignore[arg-type]
    )


def _checked_support_hours(hours_id: UUID, fields: dict[str, Any], version: int) -> SupportHours:
    hours = new_support_hours(
        hours_id, fields["name"], domain.check_time_zone(fields["time_zone"]),
        _windows(fields["windows"], "windows"), [date.fromisoformat(str(d)) for d in fields.get("holidays") or []],
    )
    return replace(hours, version=version)


def _support_hours_row(hours: SupportHours, windows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": hours.id, "version": hours.version, "name": hours.name, "time_zone": hours.time_zone,
            "windows": windows, "holidays": list(hours.holidays)}


async def create_support_hours(pool: asyncpg.Pool, fields: dict[str, Any]) -> SupportHours:
    """Define support hours and publish their snapshot."""
    hours = _checked_support_hours(uuid4(), fields, 1)
    async with transaction(pool) as conn:
        with unique(f"support hours named {hours.name} exist"):
            await store.insert_support_hours(conn, _support_hours_row(hours, fields["windows"]))
        await enqueue(conn, support_hours_snapshot(hours, fields["windows"]))
    return hours


async def replace_support_hours(pool: asyncpg.Pool, hours_id: UUID, fields: dict[str, Any]) -> SupportHours:
    """Replace support hours' windows, zone and holidays, and publish their snapshot."""
    async with transaction(pool) as conn:
        current = await store.get_support_hours(conn, hours_id, lock=True)
        if current is None:
            raise NotFound(f"support hours {hours_id}")
        hours = _checked_support_hours(hours_id, fields, current["version"] + 1)
        with unique(f"support hours named {hours.name} exist"):
            await store.update_support_hours(conn, _support_hours_row(hours, fields["windows"]))
        await enqueue(conn, support_hours_snapshot(hours, fields["windows"]))
    return hours


async def get_support_hours(pool: asyncpg.Pool, hours_id: UUID) -> SupportHours:
    row = await store.get_support_hours(pool, hours_id)
    if row is None:
        raise NotFound(f"support hours {hours_id}")
    return support_hours_of(row)


# --- calendar feeds ---------------------------------------------------------------------------------------------

# Resolve this far past the feed window, so a shift running over the window's edge keeps its real times (and
# its UID) instead of being cut afresh each day as the window moves.
FEED_MARGIN = timedelta(days=31)


async def issue_calendar_token(pool: asyncpg.Pool, actor: Principal, user_id: UUID) -> str:
    """A new secret for the user's calendar feeds; the previous one stops working."""
    actor.require_self_or_admin(user_id)
    actor.require_writer()
    await get_user(pool, user_id)
    token = secrets.token_urlsafe(32)
    await store.set_calendar_token(pool, user_id, token)
    return token


def _entry_json(entry: ical.FeedEntry) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        return value.isoformat() if isinstance(value, datetime) else str(value) if isinstance(value, UUID) else value

    return {k: plain(v) for k, v in asdict(entry).items()}


def _entry_of(raw: dict[str, Any]) -> ical.FeedEntry:
    return ical.FeedEntry(
        uid=raw["uid"], schedule_id=UUID(raw["schedule_id"]), schedule_name=raw["schedule_name"],
        user_id=UUID(raw["user_id"]), user_name=raw["user_name"], start=datetime.fromisoformat(raw["start"]),
        end=datetime.fromisoformat(raw["end"]), source=raw["source"],
        first_seen=datetime.fromisoformat(raw["first_seen"]),
        cancelled_at=datetime.fromisoformat(raw["cancelled_at"]) if raw["cancelled_at"] else None,
        sequence=raw["sequence"],
    )


async def calendar_feed(pool: asyncpg.Pool, token: str, schedule_id: UUID | None, now: datetime) -> bytes:
    """The iCalendar feed behind a user's token: their own shifts across schedules, or one schedule's shifts.

    Shifts that vanished since an earlier fetch stay in the feed as CANCELLED for a while, so subscribed
    calendars drop them."""
    user_id = await store.user_of_calendar_token(pool, token)
    if user_id is None:
        raise NotFound("calendar feed")
    start, end = ical.feed_window(now)
    async with transaction(pool) as conn:
        if schedule_id is None:
            rows = await store.schedules_of_user(conn, user_id, start - FEED_MARGIN, end + FEED_MARGIN)
            feed, name = f"user:{user_id}", "On call: my shifts"
        else:
            row = await store.get_schedule(conn, schedule_id)
            if row is None:
                raise NotFound(f"schedule {schedule_id}")
            rows = [row]
            feed, name = f"schedule:{schedule_id}", f"On call: {row['name']}"
        found: list[tuple[Schedule, Segment]] = []
        for schedule in map(schedule_of, rows):
            segments = await timeline(conn, schedule, start - FEED_MARGIN, end + FEED_MARGIN)
            found += [
                (schedule, s) for s in shifts_of(segments)
                if s.end > start and s.start < end and (schedule_id is not None or s.user_id == user_id)
            ]
        names = await store.user_names(conn, {s.user_id for _, s in found if s.user_id})
        current = [
            ical.FeedShift(sch.id, sch.name, s.user_id, names.get(s.user_id, str(s.user_id)), s.start, s.end, s.source)
            for sch, s in found
            if s.user_id is not None
        ]
        remembered = [_entry_of(raw) for raw in await store.feed_entries(conn, feed)]
        previous = sorted(remembered, key=lambda e: (e.start, e.uid))
        entries = ical.reconcile(previous, current, now, window_start=start)
        if entries != previous:  # calendar apps poll hourly; most polls change nothing
            await store.replace_feed_entries(conn, feed, {e.uid: _entry_json(e) for e in entries})
    return ical.render(entries, name=name, now=now)
