"""Escalation policies and support hours: who is paged in which order, and when support is staffed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from uuid import UUID
from zoneinfo import ZoneInfo

from services.schedule.domain.shifts import Window, in_windows, utc_to_local
from shared.errors import InvalidInput

MAX_TIMEOUT_MINUTES = 24 * 60
MAX_REPEAT = 10


@dataclass(frozen=True)
class Rule:
    """One escalation step: page these users and whoever is on call on these schedules, for `timeout_minutes`."""

    timeout_minutes: int
    user_ids: tuple[UUID, ...] = ()
    schedule_ids: tuple[UUID, ...] = ()


@dataclass(frozen=True)
class Policy:
    id: UUID
    name: str
    rules: tuple[Rule, ...]
    repeat: int = 0  # how many more times the whole list runs after the first pass
    version: int = 1


def new_policy(
    id: UUID, name: str, rules: Sequence[Rule], repeat: int, known_users: set[UUID], known_schedules: set[UUID]
) -> Policy:
    if not name.strip():
        raise InvalidInput("name", "name must not be empty")
    if not rules:
        raise InvalidInput("rules", "a policy needs at least one rule")
    if not 0 <= repeat <= MAX_REPEAT:
        raise InvalidInput("repeat", f"repeat must be between 0 and {MAX_REPEAT}")
    for i, rule in enumerate(rules):
        if not rule.user_ids and not rule.schedule_ids:
            raise InvalidInput(f"rules.{i}", "a rule must target at least one user or schedule")
        if not 1 <= rule.timeout_minutes <= MAX_TIMEOUT_MINUTES:
            raise InvalidInput(f"rules.{i}.timeout_minutes", f"timeout must be 1 to {MAX_TIMEOUT_MINUTES} minutes")
        unknown_users = [str(u) for u in rule.user_ids if u not in known_users]
        if unknown_users:
            raise InvalidInput(f"rules.{i}.user_ids", f"unknown or deactivated user ids: {', '.join(unknown_users)}")
        unknown_schedules = [str(s) for s in rule.schedule_ids if s not in known_schedules]
        if unknown_schedules:
            raise InvalidInput(f"rules.{i}.schedule_ids", f"unknown schedule ids: {', '.join(unknown_schedules)}")
    return Policy(id, name.strip(), tuple(rules), repeat)


@dataclass(frozen=True)
class Step:
    rule: int
    timeout_minutes: int
    responders: tuple[UUID, ...]


def responders_at(policy: Policy, on_call: Callable[[UUID], UUID | None]) -> list[Step]:
    """Each rule's responders now: its users, then whoever `on_call` names for each of its schedules, deduplicated."""
    steps = []
    for i, rule in enumerate(policy.rules):
        found = [*rule.user_ids, *(u for s in rule.schedule_ids if (u := on_call(s)) is not None)]
        steps.append(Step(i, rule.timeout_minutes, tuple(dict.fromkeys(found))))
    return steps


@dataclass(frozen=True)
class SupportHours:
    """Weekly staffed windows in a zone, minus holidays (local dates on which the windows do not apply)."""

    id: UUID
    name: str
    time_zone: str
    windows: tuple[Window, ...]
    holidays: tuple[date, ...] = ()
    version: int = 1

    def inside(self, instant: datetime) -> bool:
        """Whether `instant` is inside support hours: in a window, and not on a holiday (by local date)."""
        zone = ZoneInfo(self.time_zone)
        if utc_to_local(instant, zone).date() in self.holidays:
            return False
        return in_windows(self.windows, zone, instant)


def new_support_hours(
    id: UUID, name: str, time_zone: str, windows: tuple[Window, ...], holidays: Sequence[date]
) -> SupportHours:
    if not name.strip():
        raise InvalidInput("name", "name must not be empty")
    if not windows:
        raise InvalidInput("windows", "support hours need at least one window")
    return SupportHours(id, name.strip(), time_zone, windows, tuple(sorted(set(holidays))))
