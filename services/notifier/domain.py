"""What a notification is, independent of how it is delivered."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal
from uuid import UUID

from shared.errors import InvalidInput


@dataclass(frozen=True)
class Delivery:
    id: UUID
    user_id: UUID
    idempotency_key: str
    title: str
    body: str
    urgency: str
    data: dict[str, str] = field(default_factory=dict)
    # then sent, delivered (a phone confirmed it), failed; at the end acknowledged, or withdrawn by its sender
    status: str = "planned"
    kind: str = "notification"
    acknowledgeable: bool = False
    steps: int = 0
    acknowledged_at: datetime | None = None
    acknowledged_via: str | None = None
    created_at: datetime | None = None
    received_at: datetime | None = None
    read_at: datetime | None = None
    withdrawn_at: datetime | None = None
    withdrawn_reason: str | None = None

    @property
    def critical(self) -> bool:
        return self.urgency == "critical"

    @property
    def settled(self) -> bool:
        """Acknowledged, or withdrawn by its sender: no step runs any more."""
        return self.acknowledged_at is not None or self.withdrawn_at is not None


Platform = Literal["ios", "android"]


@dataclass(frozen=True)
class Device:
    """A phone that receives pushes: its push token on its platform, and whether its owner allowed critical
    alerts (iOS asks separately; Android needs the DND-bypassing channel enabled)."""

    id: UUID
    user_id: UUID
    platform: Platform
    token: str
    app_version: str
    critical_allowed: bool
    created_at: datetime
    updated_at: datetime


Channel = Literal["push", "voice"]
URGENCIES = ("high", "low")


@dataclass(frozen=True)
class Step:
    """Reach the user on `channel` `after` the notification was sent, unless they acknowledged it before."""

    channel: Channel
    after: timedelta


@dataclass(frozen=True)
class Preferences:
    """How a user wants to be reached, per urgency: ordered steps. A critical notification follows the high
    steps (and breaks through Do-Not-Disturb where the device allows it)."""

    high: tuple[Step, ...]
    low: tuple[Step, ...]
    version: int = 0

    def steps(self, urgency: str) -> tuple[Step, ...]:
        return self.low if urgency == "low" else self.high


MAX_STEPS = 10
MAX_DELAY = timedelta(hours=24)

# A new user: a push at once; for high urgency, a call 2 minutes later if the push was not acknowledged.
DEFAULT_PREFERENCES = Preferences(
    high=(Step("push", timedelta(0)), Step("voice", timedelta(minutes=2))),
    low=(Step("push", timedelta(0)),),
)


# The unit of a step's `after`: a real minute, unless DELAY_MINUTE_S shortens it (the demo, the end-to-end tests).
MINUTE = timedelta(minutes=1)


def step_due(sent_at: datetime, step: Step, minute: timedelta = MINUTE) -> datetime:
    """When `step` of a notification sent at `sent_at` falls due, each minute of its delay lasting `minute`."""
    return sent_at + step.after * (minute / MINUTE)


def checked_steps(steps: Sequence[Step], field_name: str) -> tuple[Step, ...]:
    """The steps in order of time; at least one, at most MAX_STEPS, each at most MAX_DELAY after the
    notification, no step twice."""
    if not steps:
        raise InvalidInput(field_name, "at least one step is needed, or the user would never be told")
    if len(steps) > MAX_STEPS:
        raise InvalidInput(field_name, f"at most {MAX_STEPS} steps")
    for i, step in enumerate(steps):
        if not timedelta(0) <= step.after <= MAX_DELAY:
            raise InvalidInput(f"{field_name}.{i}.after_minutes", "between 0 and 1440 minutes")
        if step in steps[:i]:
            raise InvalidInput(f"{field_name}.{i}", "the same step twice")
    return tuple(sorted(steps, key=lambda s: (s.after, s.channel)))


def planned_steps(prefs: Preferences, urgency: str, acknowledgeable: bool) -> tuple[Step, ...]:
    """The steps a notification runs: all of the urgency's steps for a page someone must acknowledge (each
    later one only if the earlier ones were not answered); only the immediate ones otherwise, since nothing
    would ever stop the later ones."""
    steps = prefs.steps(urgency)
    return steps if acknowledgeable else tuple(s for s in steps if s.after == timedelta(0)) or steps[:1]


def retry_delay(attempt: int, first_s: float, cap_s: float, retry_after_s: float | None, jitter: float) -> float:
    """Seconds before retrying after the `attempt`-th refusal (1-based): exponential from `first_s` to `cap_s`,
    with `jitter` in [0, 1) spreading retries so a provider's hiccup is not answered by a thundering herd;
    never sooner than the provider's Retry-After."""
    backoff = min(cap_s, first_s * 2 ** (attempt - 1)) * (0.5 + jitter / 2)
    return float(max(backoff, retry_after_s or 0.0))


@dataclass(frozen=True)
class FloodLimit:
    """At most `per_window` low-urgency notifications reach a user's phones in any `window`; more wait for
    room (they are delayed, never dropped). High and critical ones are never held back."""

    per_window: int = 5
    window: timedelta = timedelta(minutes=1)

    def wait(self, urgency: str, recent: Sequence[datetime], now: datetime) -> timedelta | None:
        """How long a push of `urgency` must wait, given when the recent low-urgency ones went out (oldest
        first); None when it may go now."""
        if urgency != "low":
            return None
        inside = [t for t in recent if t > now - self.window]
        if len(inside) < self.per_window:
            return None
        return inside[-self.per_window] + self.window - now


# A summary push carries this many of the notifications it stands for by id (the rest: the app's history);
# APNs takes at most 4 KB of payload.
SUMMARY_IDS = 20
SUMMARY_BODY_CHARS = 180
_SUMMARY_TITLES = {"en": "{n} new notifications", "de": "{n} neue Benachrichtigungen"}


def summary_title(count: int, language: str) -> str:
    """The title of one push standing for `count` low-urgency notifications held back by the flood limit."""
    template = _SUMMARY_TITLES.get(language.split("-", 1)[0].lower(), _SUMMARY_TITLES["en"])
    return template.format(n=count)


def summary_body(titles: Sequence[str]) -> str:
    """Their titles, oldest first, cut at SUMMARY_BODY_CHARS."""
    text = "; ".join(titles)
    return text if len(text) <= SUMMARY_BODY_CHARS else text[: SUMMARY_BODY_CHARS - 1].rstrip() + "…"

