"""Call routing rules: routing numbers and their options, the IVR texts, who is dialed in which order, when a
responder accepts, support hours, and how a call-routing alert escalates. Pure: time and randomness are
parameters."""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Literal
from uuid import UUID
from zoneinfo import ZoneInfo

from shared.errors import InvalidInput

MAX_OPTIONS = 9
MAX_KEYWORDS = 10
MAX_KEYWORD_CHARS = 40
MAX_NAME = 100
MAX_GREETING = 1000

OutsideHours = Literal["voicemail", "options"]


# ------------------------------------------------------------------------------------------------ languages
@dataclass(frozen=True)
class Texts:
    """Everything the platform says on a call, in one language."""

    menu_intro: str  # "{name}."
    press: str  # "For {option}, press {digit} or say {keyword}."
    hold: str
    not_understood: str
    goodbye: str
    unavailable: str
    leave_message: str
    thanks_message: str
    no_message: str
    responder_prompt: str  # "{name}"
    connecting: str
    caller_gone: str
    not_in_service: str
    callback_intro: str  # "{caller}"
    accept_words: tuple[str, ...]


TEXTS: dict[str, Texts] = {
    "en": Texts(
        "Welcome to {name}.",
        "For {option}, press {digit}.",
        "Please hold while we connect you with the person on call.",
        "Sorry, that was not a valid choice.",
        "Goodbye.",
        "No one is available right now. Your call has been recorded as an alert and will be followed up. Goodbye.",
        "No one is available right now. Please leave a message after the tone.",
        "Thank you, your message has been recorded. Goodbye.",
        "We did not receive a message. Goodbye.",
        "This is {name}. You have a caller on hold. Press any key or say continue to connect.",
        "Connecting you now.",
        "The caller is no longer waiting. Goodbye.",
        "This number is not in service. Goodbye.",
        "Connecting you to the caller at {caller}.",
        ("continue", "connect", "yes", "accept"),
    ),
    "de": Texts(
        "Willkommen bei {name}.",
        "Für {option} drücken Sie die {digit}.",
        "Bitte bleiben Sie in der Leitung, wir verbinden Sie mit der Bereitschaft.",
        "Das war leider keine gültige Auswahl.",
        "Auf Wiederhören.",
        "Im Moment ist niemand erreichbar. Ihr Anruf wurde als Alarm erfasst und wird bearbeitet. Auf Wiederhören.",
        "Im Moment ist niemand erreichbar. Bitte hinterlassen Sie nach dem Signalton eine Nachricht.",
        "Vielen Dank, Ihre Nachricht wurde aufgezeichnet. Auf Wiederhören.",
        "Wir haben keine Nachricht erhalten. Auf Wiederhören.",
        "Hier ist {name}. Ein Anrufer wartet. Drücken Sie eine beliebige Taste oder sagen Sie weiter, um zu verbinden.",
        "Sie werden jetzt verbunden.",
        "Der Anrufer wartet nicht mehr. Auf Wiederhören.",
        "Diese Nummer ist nicht vergeben. Auf Wiederhören.",
        "Sie werden mit dem Anrufer unter {caller} verbunden.",
        ("weiter", "verbinden", "ja", "continue"),
    ),
}
# The voice and speech-recognition language Twilio is given, by the primary subtag of a number's language.
LANGUAGES: dict[str, str] = {"en": "en-US", "de": "de-DE"}
SUPPORTED_LANGUAGES = ("en-US", "en-GB", "de-DE")


def texts(language: str) -> Texts:
    return TEXTS.get(language.split("-", 1)[0].lower(), TEXTS["en"])


def voice_language(language: str) -> str:
    return language if language in SUPPORTED_LANGUAGES else LANGUAGES.get(language.split("-", 1)[0].lower(), "en-US")


# ------------------------------------------------------------------------------------------ routing numbers
@dataclass(frozen=True)
class Option:
    """A routing target the caller picks by `digit` or by saying one of `keywords`."""

    digit: str
    name: str
    policy_id: UUID
    keywords: tuple[str, ...] = ()


@dataclass(frozen=True)
class RoutingNumber:
    id: UUID
    number: str
    name: str
    language: str
    options: tuple[Option, ...]
    greeting: str = ""
    only_greeting: bool = False  # read only `greeting`, not the menu built from the options
    voicemail: bool = True
    voicemail_only: bool = False
    support_hours_id: UUID | None = None
    outside_hours: OutsideHours = "voicemail"
    outside_options: tuple[Option, ...] = ()
    hold_music_url: str | None = None
    greeting_audio_url: str | None = None
    voicemail_audio_url: str | None = None
    version: int = 1
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def policies(self) -> set[UUID]:
        return {o.policy_id for o in (*self.options, *self.outside_options)}


_WORD = re.compile(r"[^\w]+", re.UNICODE)


def _words(text: str) -> list[str]:
    return [w for w in _WORD.split(text.lower()) if w]


def _check_options(options: Sequence[Option], prefix: str, known_policies: set[UUID], required: bool) -> None:
    if required and not options:
        raise InvalidInput(prefix, "a routing number needs at least one option")
    if len(options) > MAX_OPTIONS:
        raise InvalidInput(prefix, f"at most {MAX_OPTIONS} options")
    digits: dict[str, int] = {}
    keywords: dict[str, int] = {}
    for i, option in enumerate(options):
        where = f"{prefix}.{i}"
        if not re.fullmatch(r"[0-9]", option.digit):
            raise InvalidInput(f"{where}.digit", "a digit is one of 0-9")
        if option.digit in digits:
            raise InvalidInput(f"{where}.digit", f"digit {option.digit} is already option {digits[option.digit]}'s")
        digits[option.digit] = i
        if not option.name.strip() or len(option.name) > MAX_NAME:
            raise InvalidInput(f"{where}.name", f"a name has 1 to {MAX_NAME} characters")
        if option.policy_id not in known_policies:
            raise InvalidInput(f"{where}.policy_id", f"unknown escalation policy {option.policy_id}")
        if len(option.keywords) > MAX_KEYWORDS:
            raise InvalidInput(f"{where}.keywords", f"at most {MAX_KEYWORDS} keywords")
        for k, keyword in enumerate(option.keywords):
            words = _words(keyword)
            if not words or len(keyword) > MAX_KEYWORD_CHARS:
                raise InvalidInput(
                    f"{where}.keywords.{k}",
                    f"a keyword has 1 to {MAX_KEYWORD_CHARS} characters and at least one letter or digit",
                )
            spoken = " ".join(words)
            if spoken in keywords:
                raise InvalidInput(f"{where}.keywords.{k}", f"'{keyword}' already picks option {keywords[spoken]}")
            keywords[spoken] = i


def new_routing_number(
    number: RoutingNumber, known_policies: set[UUID], known_support_hours: set[UUID]
) -> RoutingNumber:
    """`number` checked against the rules; InvalidInput names the field at fault."""
    if not number.name.strip() or len(number.name) > MAX_NAME:
        raise InvalidInput("name", f"a name has 1 to {MAX_NAME} characters")
    if number.language not in SUPPORTED_LANGUAGES:
        raise InvalidInput("language", f"one of {', '.join(SUPPORTED_LANGUAGES)}")
    if len(number.greeting) > MAX_GREETING:
        raise InvalidInput("greeting", f"at most {MAX_GREETING} characters")
    if number.only_greeting and not number.greeting.strip() and not number.greeting_audio_url:
        raise InvalidInput("greeting", "reading only the greeting needs a greeting (or greeting audio)")
    # voicemail-only numbers too: the first option names the policy their alerts escalate to
    _check_options(number.options, "options", known_policies, required=True)
    if number.voicemail_only and not number.voicemail:
        raise InvalidInput("voicemail", "voicemail-only mode needs voicemail")
    if number.support_hours_id is not None and number.support_hours_id not in known_support_hours:
        raise InvalidInput("support_hours_id", f"unknown support hours {number.support_hours_id}")
    if number.outside_hours == "options":
        if number.support_hours_id is None:
            raise InvalidInput("outside_hours", "an outside-hours option set needs support hours")
        _check_options(number.outside_options, "outside_options", known_policies, required=True)
    elif number.outside_options:
        raise InvalidInput("outside_options", "outside options are used only with outside_hours = options")
    if number.outside_hours == "voicemail" and number.support_hours_id is not None and not number.voicemail:
        raise InvalidInput("outside_hours", "outside hours go to voicemail, which is off")
    return number


def menu_text(number: RoutingNumber, options: Sequence[Option]) -> str:
    """What the caller hears before choosing: the custom greeting alone, or the number's name and each option."""
    said = texts(number.language)
    if number.only_greeting:
        return number.greeting
    lines = [number.greeting.strip() or said.menu_intro.format(name=number.name)]
    lines += [said.press.format(option=o.name, digit=o.digit) for o in options]
    return " ".join(lines)


def pick_option(options: Sequence[Option], digits: str, speech: str) -> Option | None:
    """The option the caller chose by key or by voice; None when it matches none (or more than one keyword)."""
    if digits:
        return next((o for o in options if o.digit == digits[:1]), None)
    said = " " + " ".join(_words(speech)) + " "
    if said.strip() == "":
        return None
    chosen = {
        o.digit: o for o in options for keyword in (*o.keywords, o.name) if f" {' '.join(_words(keyword))} " in said
    }
    return next(iter(chosen.values())) if len(chosen) == 1 else None


def accepts(digits: str, speech: str, language: str) -> bool:
    """A responder accepts a call by pressing any key or saying "continue" (in the number's language)."""
    if digits:
        return True
    words = set(_words(speech))
    return bool(words & {*texts(language).accept_words, "continue"})


# ------------------------------------------------------------------------------------------ support hours
@dataclass(frozen=True)
class WeeklyWindow:
    days: tuple[str, ...]
    start: str
    end: str


@dataclass(frozen=True)
class SupportHours:
    id: UUID
    time_zone: str
    windows: tuple[WeeklyWindow, ...]
    holidays: frozenset[date] = field(default_factory=frozenset)


_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _clock(text: str) -> timedelta:
    hours, minutes = text.split(":")
    return timedelta(hours=int(hours), minutes=int(minutes))


def inside_support_hours(hours: SupportHours, instant: datetime) -> bool:
    """Whether `instant` lies in a window (local wall time in the definition's zone; an end at or before the start
    runs past midnight into the next day) and its local date is no holiday."""
    local = instant.astimezone(ZoneInfo(hours.time_zone))
    if local.date() in hours.holidays:
        return False
    clock = timedelta(hours=local.hour, minutes=local.minute, seconds=local.second)
    today = _DAYS[local.weekday()]
    yesterday = _DAYS[(local.weekday() - 1) % 7]
    for window in hours.windows:
        start, end = _clock(window.start), _clock(window.end)
        if end > start:
            if today in window.days and start <= clock < end:
                return True
        else:  # past midnight: [start, 24:00) today and [00:00, end) on the next day
            if today in window.days and clock >= start:
                return True
            if yesterday in window.days and clock < end:
                return True
    return False


# --------------------------------------------------------------------------------------------- dial plans
@dataclass(frozen=True)
class Rule:
    timeout_minutes: int
    user_ids: tuple[UUID, ...]
    schedule_ids: tuple[UUID, ...]


@dataclass(frozen=True)
class Policy:
    id: UUID
    name: str
    repeat: int
    rules: tuple[Rule, ...]


def rule_targets(rule: Rule, on_call: Mapping[UUID, UUID | None]) -> list[UUID]:
    """A rule's responders now: its users, then whoever its schedules have on call, without repeats."""
    found = [*rule.user_ids, *(u for s in rule.schedule_ids if (u := on_call.get(s)) is not None)]
    return list(dict.fromkeys(found))


def dial_plan(
    policy: Policy, on_call: Mapping[UUID, UUID | None], dialable: Callable[[UUID], bool], rng: random.Random
) -> list[UUID]:
    """Who to call, one after another, for a call routed to `policy`: rule by rule (escalation timeouts do not
    apply to a live call); several responders of one rule in random order; each person once; only those
    `dialable` (active, with a phone)."""
    plan: list[UUID] = []
    for rule in policy.rules:
        group = [u for u in rule_targets(rule, on_call) if u not in plan and dialable(u)]
        rng.shuffle(group)
        plan += group
    return plan


# ------------------------------------------------------------------------------------------------ alerts
AlertStatus = Literal["open", "acknowledged", "resolved"]
ALERT_STATUSES: tuple[AlertStatus, ...] = ("open", "acknowledged", "resolved")


@dataclass(frozen=True)
class EscalationStep:
    """Which rule pages now (`round` counts passes over the rules, 0 first) and when the next step is due;
    `next_at` None: this was the last step."""

    round: int
    rule: int
    targets: tuple[UUID, ...]
    next_at: datetime | None


def escalation_step(
    policy: Policy,
    round_: int,
    rule: int,
    on_call: Mapping[UUID, UUID | None],
    now: datetime,
    minute: timedelta = timedelta(minutes=1),
) -> EscalationStep | None:
    """The step (round, rule) of an alert's escalation by the regular rules: the rule pages its responders and
    the next rule follows after the rule's timeout (in `minute`s: a demo or a test shortens them); after the last
    rule the whole list runs again `repeat` times. None when (round, rule) lies beyond the end."""
    if round_ > policy.repeat or rule >= len(policy.rules) or not policy.rules:
        return None
    current = policy.rules[rule]
    last = round_ == policy.repeat and rule == len(policy.rules) - 1
    next_at = None if last else now + current.timeout_minutes * minute
    return EscalationStep(round_, rule, tuple(rule_targets(current, on_call)), next_at)


def after(policy: Policy, round_: int, rule: int) -> tuple[int, int]:
    """The step that follows (round, rule)."""
    if rule + 1 < len(policy.rules):
        return round_, rule + 1
    return round_ + 1, 0


# ----------------------------------------------------------------------------------------- calls and legs
CallState = Literal["menu", "dialing", "connected", "voicemail", "unavailable", "ended"]
LegState = Literal[
    "requested",
    "ringing",
    "answered",
    "accepted",
    "declined",
    "completed",
    "busy",
    "no-answer",
    "failed",
    "canceled",
]
# Twilio's CallStatus values that mean a call is over.
CALL_OVER = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})


@dataclass
class Call:
    id: UUID
    call_sid: str
    number_id: UUID
    from_number: str
    to_number: str
    state: CallState
    started_at: datetime
    menu_attempts: int = 0
    option_digit: str | None = None
    policy_id: UUID | None = None
    plan: list[UUID] = field(default_factory=list)
    position: int = -1
    connected_user: UUID | None = None
    caller_gone: bool = False
    alert_id: UUID | None = None
    ended_at: datetime | None = None


@dataclass
class Leg:
    id: UUID
    call_id: UUID
    kind: Literal["responder", "callback"]
    user_id: UUID
    phone: str
    state: LegState
    created_at: datetime
    call_sid: str | None = None
    ended_at: datetime | None = None

    @property
    def ended(self) -> bool:
        return self.ended_at is not None


@dataclass
class Alert:
    id: UUID
    call_id: UUID
    number_id: UUID
    policy_id: UUID
    status: AlertStatus
    summary: str
    caller: str
    created_at: datetime
    updated_at: datetime
    voicemail_url: str | None = None
    voicemail_s: int | None = None
    escalating: bool = False
    round: int = 0
    rule: int = 0
    acknowledged_by: UUID | None = None
    acknowledged_at: datetime | None = None
    resolved_by: UUID | None = None
    resolved_at: datetime | None = None
    version: int = 1


@dataclass(frozen=True)
class CallEvent:
    at: datetime
    what: str
    user_id: UUID | None = None
    detail: str = ""


@dataclass(frozen=True)
class Responder:
    user_id: UUID
    name: str
    phone: str | None
    language: str
    active: bool

    @property
    def dialable(self) -> bool:
        return self.active and self.phone is not None
