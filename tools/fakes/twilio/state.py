"""The simulator's world: accounts' numbers, scripted parties, calls and their transcripts, queues, conferences,
recordings, and the clock that scales simulated seconds to real ones."""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, Literal

from twilio.request_validator import RequestValidator

API_VERSION = "2010-04-01"
DEV_ACCOUNT_SID = "AC" + "0f" * 16
DEV_AUTH_TOKEN = "fa4e" * 8

# Call statuses after which nothing more happens to a call.
ENDED = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
NOT_ANSWERED = frozenset({"queued", "initiated", "ringing"})

FailureStatus = Literal[429, 500, 503]
Answer = Literal["answer", "busy", "no-answer", "failed"]
StepKind = Literal["press", "say", "silence", "hangup"]
ANSWERS: tuple[str, ...] = ("answer", "busy", "no-answer", "failed")
# Other words for them in the JSON and command-line forms: Twilio reports a callee declining as busy.
ANSWER_ALIASES = {"decline": "busy", "declined": "busy", "reject": "busy", "rejected": "busy", "ignore": "no-answer",
                  "fail": "failed"}


def new_sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def rfc2822(moment: datetime | None) -> str | None:
    return None if moment is None else format_datetime(moment)


def iso_ms(moment: datetime) -> str:
    """The instant as the test API shows it: ISO 8601 in UTC to the millisecond."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utcnow() -> datetime:
    return datetime.now(UTC)


async def wait_event(event: asyncio.Event, within_s: float | None) -> bool:
    """Whether `event` was set within `within_s` real seconds."""
    waiter = asyncio.ensure_future(event.wait())
    try:
        done, _ = await asyncio.wait([waiter], timeout=within_s)
    finally:
        waiter.cancel()
    return bool(done)


# ------------------------------------------------------------------------------------------------ parties


@dataclass(frozen=True)
class Step:
    """What a party does at one `<Gather>`: press keys, say something, stay silent, or hang up."""

    kind: StepKind
    value: str = ""

    @classmethod
    def press(cls, digits: str) -> Step:
        return cls("press", digits)

    @classmethod
    def say(cls, text: str) -> Step:
        return cls("say", text)

    @classmethod
    def silence(cls) -> Step:
        return cls("silence")

    @classmethod
    def hang_up(cls) -> Step:
        return cls("hangup")

    def to_json(self) -> dict[str, Any]:
        if self.kind in ("press", "say"):
            return {self.kind: self.value}
        return {self.kind: True}

    @classmethod
    def from_json(cls, raw: Any) -> Step:
        """`{"press": "1"}`, `{"say": "billing"}`, `{"silence": true}`, `{"hangup": true}`, or a string of keys."""
        if isinstance(raw, str):
            return cls.press(raw)
        if isinstance(raw, Mapping) and len(raw) == 1:
            [(kind, value)] = raw.items()
            if kind in ("press", "say") and isinstance(value, str):
                return cls(kind, value)
            if kind in ("silence", "hangup") and value is True:
                return cls(kind)
        forms = "{'press': keys}, {'say': text}, {'silence': true} or {'hangup': true}"
        raise ValueError(f"a step is {forms}: {raw!r}")

    @classmethod
    def parse(cls, spec: str) -> Step:
        """The CLI's form: `1`, `press=12#`, `say=billing`, `silence`, `hangup`."""
        if spec in ("silence", "silent"):
            return cls.silence()
        if spec in ("hangup", "hang-up"):
            return cls.hang_up()
        if spec.startswith("say="):
            return cls.say(spec[4:])
        if spec.startswith("press="):
            return cls.press(spec[6:])
        return cls.press(spec)

    def describe(self) -> str:
        return {"press": f"press {self.value}", "say": f"say {self.value!r}", "silence": "stay silent"}.get(
            self.kind, "hang up"
        )


@dataclass(frozen=True)
class Party:
    """How the person at one phone number behaves on a call, in simulated seconds.

    `answer`: what they do when their phone rings (callers always "answer": they placed the call); `ring_s`: how
    long it rings before they answer or decline ("no-answer" lets it ring until the call's timeout); `steps`: their
    input at successive `<Gather>`s, after hearing the prompt (then silence); `hang_up_after_s`: they hang up this long
    after their call starts (a callee: once they answer); `talk_s`: they hang up this long after being connected with
    someone; `voicemail_s`: at a `<Record>` they speak this long (None: silence), then press `#` or, with
    `hang_up_after_voicemail`, hang up.
    """

    answer: Answer = "answer"
    ring_s: float = 2.0
    steps: tuple[Step, ...] = ()
    hang_up_after_s: float | None = None
    talk_s: float | None = None
    voicemail_s: float | None = None
    hang_up_after_voicemail: bool = False

    def __post_init__(self) -> None:
        if self.answer not in ANSWERS:
            raise ValueError(f"answer must be one of {', '.join(ANSWERS)}, not {self.answer!r}")
        if self.ring_s < 0:
            raise ValueError("ring_s must not be negative")

    def to_json(self) -> dict[str, Any]:
        return {
            "answer": self.answer,
            "ring_s": self.ring_s,
            "steps": [step.to_json() for step in self.steps],
            "hang_up_after_s": self.hang_up_after_s,
            "talk_s": self.talk_s,
            "voicemail_s": self.voicemail_s,
            "hang_up_after_voicemail": self.hang_up_after_voicemail,
        }

    @classmethod
    def from_json(cls, raw: Any) -> Party:
        if not isinstance(raw, Mapping):
            raise ValueError("a party is a JSON object")
        fields = {"answer", "ring_s", "steps", "hang_up_after_s", "talk_s", "voicemail_s", "hang_up_after_voicemail"}
        unknown = set(raw) - fields
        if unknown:
            raise ValueError(f"unknown party fields: {', '.join(sorted(unknown))}")
        answer = str(raw.get("answer", "answer"))
        return cls(
            answer=ANSWER_ALIASES.get(answer, answer),  # type: ignore[arg-type]
            ring_s=float(raw.get("ring_s", 2.0)),
            steps=tuple(Step.from_json(step) for step in raw.get("steps", ())),
            hang_up_after_s=_optional_float(raw.get("hang_up_after_s")),
            talk_s=_optional_float(raw.get("talk_s")),
            voicemail_s=_optional_float(raw.get("voicemail_s")),
            hang_up_after_voicemail=bool(raw.get("hang_up_after_voicemail", False)),
        )

    @classmethod
    def parse(cls, spec: str) -> Party:
        """The CLI's form: `busy`, `no-answer`, `failed`, `answer`, or `answer:STEP,STEP...` with steps as in
        `Step.parse` (e.g. `answer:1`, `answer:say=continue`, `answer:silence,hangup`)."""
        answer, _, steps = spec.partition(":")
        answer = ANSWER_ALIASES.get(answer, answer)
        if answer not in ANSWERS:
            raise ValueError(f"a responder is one of {', '.join(ANSWERS)} (answer:STEPS), not {spec!r}")
        return cls(answer=answer, steps=tuple(Step.parse(s) for s in steps.split(",") if s))  # type: ignore[arg-type]


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


# ---------------------------------------------------------------------------------------------- transcript


# Events are numbered in the order they happen, across all calls (`GET /_sim/events?after=N` pages on it).
EVENT_SEQUENCE = itertools.count(1)


@dataclass(frozen=True)
class Event:
    """One step of a call, as the person on it would tell it."""

    seq: int
    at: datetime
    mono: float
    call_sid: str
    party: str
    kind: str
    text: str
    data: Mapping[str, Any]

    def to_json(self, origin: float, time_scale: float) -> dict[str, Any]:
        elapsed = self.mono - origin
        return {
            "seq": self.seq,
            "at": iso_ms(self.at),
            "t": round(elapsed, 4),
            "sim_t": round(elapsed / time_scale, 2) if time_scale > 0 else None,
            "call_sid": self.call_sid,
            "party": self.party,
            "kind": self.kind,
            "text": self.text,
            **dict(self.data),
        }


# ---------------------------------------------------------------------------------------------------- calls


class Interrupted(Exception):
    """Raised inside a call's flow when it is hung up or redirected from outside (the party, the REST API)."""

    def __init__(self, interrupt: Interrupt) -> None:
        super().__init__(interrupt.kind)
        self.interrupt = interrupt


@dataclass(frozen=True)
class Interrupt:
    """Why a call's flow stops: `hangup` (by `by`) or `redirect` to new TwiML (`url`+`method`, or `twiml`)."""

    kind: Literal["hangup", "redirect"]
    by: str = ""
    status: str | None = None  # the status a call that was never answered ends with
    url: str | None = None
    method: str = "POST"
    twiml: str | None = None


@dataclass(eq=False)
class Call:
    """One call leg: its REST resource fields, its far-end party, its transcript, and its running state."""

    sid: str
    account_sid: str
    direction: Literal["inbound", "outbound-api", "outbound-dial"]
    to: str
    from_: str
    status: str = "queued"
    url: str | None = None
    method: str = "POST"
    twiml: str | None = None
    fallback_url: str | None = None
    fallback_method: str = "POST"
    status_callback: str | None = None
    status_callback_method: str = "POST"
    status_callback_events: frozenset[str] = frozenset({"completed"})
    timeout_s: float | None = 60.0
    parent_sid: str | None = None
    phone_number_sid: str | None = None
    party: Party | None = None  # None: nobody scripted; the call waits for /press or /complete
    created: datetime = field(default_factory=utcnow)
    start_time: datetime | None = None
    end_time: datetime | None = None
    events: list[Event] = field(default_factory=list)
    bridged_with: list[str] = field(default_factory=list)
    digits_pressed: list[str] = field(default_factory=list)
    recording_sids: list[str] = field(default_factory=list)
    final_callback: dict[str, Any] | None = None
    hung_up_by: str | None = None
    executing: bool = False  # TwiML is running: a REST update of Url/Twiml redirects it
    callback_sequence: int = 0
    # running state
    interruption: Interrupt | None = None
    interrupted: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    live_inputs: deque[Step] = field(default_factory=deque)
    input_ready: asyncio.Event = field(default_factory=asyncio.Event)
    manual_answer: asyncio.Event = field(default_factory=asyncio.Event)
    gather_waiters: list[asyncio.Future[dict[str, Any]]] = field(default_factory=list)
    step_index: int = 0
    clock: SimClock | None = None

    @property
    def far_end(self) -> str:
        """The number of the person this leg reaches: the caller of an inbound call, the callee otherwise."""
        return self.from_ if self.direction == "inbound" else self.to

    @property
    def role(self) -> str:
        return "caller" if self.direction == "inbound" else "callee"

    @property
    def finished(self) -> bool:
        return self.ended.is_set()

    @property
    def duration_s(self) -> int:
        if self.start_time is None:
            return 0
        return int(((self.end_time or utcnow()) - self.start_time).total_seconds() / self._scale() + 0.5)

    def _scale(self) -> float:
        return self.clock.scale if self.clock is not None and self.clock.scale > 0 else 1.0

    # ------------------------------------------------------------------ transcript
    def note(self, kind: str, text: str, **data: Any) -> Event:
        event = Event(next(EVENT_SEQUENCE), utcnow(), time.monotonic(), self.sid, self.far_end, kind, text, data)
        self.events.append(event)
        return event

    # ------------------------------------------------------------------ input from the party
    def next_scripted_step(self) -> Step | None:
        if self.party is None or self.step_index >= len(self.party.steps):
            return None
        step = self.party.steps[self.step_index]
        self.step_index += 1
        return step

    def give_input(self, step: Step) -> None:
        self.live_inputs.append(step)
        self.input_ready.set()

    def take_input(self) -> Step | None:
        step = self.live_inputs.popleft() if self.live_inputs else None
        if not self.live_inputs:
            self.input_ready.clear()
        return step

    # ------------------------------------------------------------------ interruptions
    def interrupt(self, interrupt: Interrupt) -> bool:
        """Stop what the call does: a hangup ends it, a redirect replaces its TwiML. False if it had ended."""
        if self.finished or (self.interruption is not None and self.interruption.kind == "hangup"):
            return False
        if interrupt.kind == "hangup":
            self.hung_up_by = interrupt.by
            if self.status == "in-progress":
                self.status = "completed"
            elif self.status in NOT_ANSWERED:
                self.status = interrupt.status or "canceled"
            self.end_time = self.end_time or utcnow()
        self.interruption = interrupt
        self.interrupted.set()
        return True

    def clear_redirect(self) -> Interrupt:
        interrupt = self.interruption
        assert interrupt is not None and interrupt.kind == "redirect"
        self.interruption = None
        self.interrupted.clear()
        return interrupt

    def check(self) -> None:
        """Raise Interrupted if the call was hung up or redirected."""
        if self.interruption is not None:
            raise Interrupted(self.interruption)

    async def race(self, waitables: Iterable[Awaitable[Any]], sim_s: float | None = None) -> set[asyncio.Future[Any]]:
        """Wait for the first of `waitables` or `sim_s` simulated seconds; Interrupted if the call is stopped first.
        Returns the finished ones among futures passed in (empty on timeout) and leaves those running; coroutines
        passed in are wrapped, and cancelled if unfinished."""
        self.check()
        futures: list[asyncio.Future[Any]] = []
        owned: list[asyncio.Future[Any]] = []
        for waitable in waitables:
            future: asyncio.Future[Any] = asyncio.ensure_future(waitable)
            futures.append(future)
            if not asyncio.isfuture(waitable):
                owned.append(future)
        guard = asyncio.ensure_future(self.interrupted.wait())
        real = None if sim_s is None else self._clock().real(sim_s)
        try:
            done, _ = await asyncio.wait([*futures, guard], timeout=real, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for future in (guard, *owned):
                if not future.done():
                    future.cancel()
        self.check()
        return {f for f in done if f is not guard}

    async def sleep(self, sim_s: float, stop: asyncio.Event | None = None) -> bool:
        """Let `sim_s` simulated seconds pass; True if `stop` was set first. Interrupted if the call is stopped."""
        if stop is not None and stop.is_set():
            return True
        return bool(await self.race([stop.wait()] if stop is not None else [], sim_s))

    def _clock(self) -> SimClock:
        return self.clock if self.clock is not None else SimClock(1.0)

    # ------------------------------------------------------------------ as Twilio shows it
    def webhook_params(self) -> dict[str, str]:
        """The parameters Twilio posts to every webhook of this call."""
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": self.sid,
            "CallStatus": self.status,
            "Called": self.to,
            "Caller": self.from_,
            "Direction": self.direction,
            "From": self.from_,
            "To": self.to,
        }
        if self.parent_sid is not None:
            params["ParentCallSid"] = self.parent_sid
        return params

    def resource(self) -> dict[str, Any]:
        """The call as Twilio's REST API shows it."""
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{self.sid}"
        ended = self.status in ENDED
        return {
            "sid": self.sid,
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "date_created": rfc2822(self.created),
            "date_updated": rfc2822(self.end_time or self.start_time or self.created),
            "direction": self.direction,
            "to": self.to,
            "to_formatted": self.to,
            "from": self.from_,
            "from_formatted": self.from_,
            "status": self.status,
            "parent_call_sid": self.parent_sid,
            "phone_number_sid": self.phone_number_sid,
            "start_time": rfc2822(self.start_time),
            "end_time": rfc2822(self.end_time) if ended else None,
            "duration": str(self.duration_s) if ended else None,
            "price": None,
            "price_unit": "USD",
            "answered_by": None,
            "annotation": None,
            "forwarded_from": None,
            "group_sid": None,
            "caller_name": None,
            "queue_time": "0",
            "trunk_sid": None,
            "uri": f"{uri}.json",
            "subresource_uris": {
                name: f"{uri}/{name.title().replace('_', '')}.json"
                for name in (
                    "notifications",
                    "recordings",
                    "payments",
                    "events",
                    "siprec",
                    "streams",
                    "user_defined_message_subscriptions",
                    "user_defined_messages",
                )
            },
        }

    def recorded(self) -> dict[str, Any]:
        """The call as the old inspection endpoint (`/_fake/calls`) shows it."""
        return self.resource() | {
            "twiml": self.twiml,
            "url": self.url,
            "status_callback": self.status_callback,
            "digits_pressed": self.digits_pressed,
        }


# -------------------------------------------------------------------------------------- numbers, recordings


@dataclass
class PhoneNumber:
    """A number of the account (Twilio's IncomingPhoneNumber): where its incoming calls are sent."""

    sid: str
    account_sid: str
    phone_number: str
    voice_url: str | None = None
    voice_method: str = "POST"
    voice_fallback_url: str | None = None
    voice_fallback_method: str = "POST"
    status_callback: str | None = None
    status_callback_method: str = "POST"
    friendly_name: str | None = None
    created: datetime = field(default_factory=utcnow)
    updated: datetime = field(default_factory=utcnow)

    FIELDS = {
        "VoiceUrl": "voice_url",
        "VoiceMethod": "voice_method",
        "VoiceFallbackUrl": "voice_fallback_url",
        "VoiceFallbackMethod": "voice_fallback_method",
        "StatusCallback": "status_callback",
        "StatusCallbackMethod": "status_callback_method",
        "FriendlyName": "friendly_name",
    }

    def resource(self) -> dict[str, Any]:
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/IncomingPhoneNumbers/{self.sid}.json"
        return {
            "sid": self.sid,
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "phone_number": self.phone_number,
            "friendly_name": self.friendly_name or self.phone_number,
            "voice_url": self.voice_url,
            "voice_method": self.voice_method,
            "voice_fallback_url": self.voice_fallback_url,
            "voice_fallback_method": self.voice_fallback_method,
            "voice_caller_id_lookup": False,
            "voice_application_sid": None,
            "voice_receive_mode": "voice",
            "status_callback": self.status_callback,
            "status_callback_method": self.status_callback_method,
            "sms_url": None,
            "sms_method": "POST",
            "sms_fallback_url": None,
            "sms_fallback_method": "POST",
            "sms_application_sid": None,
            "capabilities": {"voice": True, "sms": False, "mms": False, "fax": False},
            "address_requirements": "none",
            "address_sid": None,
            "beta": False,
            "bundle_sid": None,
            "identity_sid": None,
            "trunk_sid": None,
            "emergency_status": "Inactive",
            "emergency_address_sid": None,
            "emergency_address_status": "unregistered",
            "origin": "twilio",
            "status": "in-use",
            "date_created": rfc2822(self.created),
            "date_updated": rfc2822(self.updated),
            "uri": uri,
            "subresource_uris": {"assigned_add_ons": uri.replace(".json", "/AssignedAddOns.json")},
        }


@dataclass
class Recording:
    """A recording a `<Record>` made."""

    sid: str
    account_sid: str
    call_sid: str
    duration_s: int
    started: datetime
    base_url: str

    @property
    def url(self) -> str:
        """Its RecordingUrl: the media answers with `.wav` (also without extension) or `.mp3`."""
        return f"{self.base_url}/{API_VERSION}/Accounts/{self.account_sid}/Recordings/{self.sid}"

    def resource(self) -> dict[str, Any]:
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Recordings/{self.sid}"
        return {
            "sid": self.sid,
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "call_sid": self.call_sid,
            "conference_sid": None,
            "date_created": rfc2822(self.started),
            "date_updated": rfc2822(self.started),
            "start_time": rfc2822(self.started),
            "duration": str(self.duration_s),
            "price": None,
            "price_unit": "USD",
            "status": "completed",
            "channels": 1,
            "source": "RecordVerb",
            "error_code": None,
            "encryption_details": None,
            "media_url": self.url,
            "uri": f"{uri}.json",
            "subresource_uris": {
                "add_on_results": f"{uri}/AddOnResults.json",
                "transcriptions": f"{uri}/Transcriptions.json",
            },
        }


# --------------------------------------------------------------------------------- queues, bridges, rooms


@dataclass(eq=False)
class Bridge:
    """Two or more legs that hear each other until one leaves."""

    calls: list[Call]
    via: str
    started: float = field(default_factory=time.monotonic)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    ended_by: str | None = None

    def end(self, by: Call) -> None:
        if not self.ended.is_set():
            self.ended_by = by.sid
            self.ended.set()


@dataclass(eq=False)
class Dequeue:
    """A `<Dial><Queue>` taking a waiting caller: who takes them, and the TwiML the caller hears first."""

    dialer: Call
    url: str | None
    method: str


@dataclass(eq=False)
class Member:
    """A caller waiting in a queue."""

    call: Call
    entered: float = field(default_factory=time.monotonic)
    taken: asyncio.Future[Dequeue] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    bridged: asyncio.Future[Bridge | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


@dataclass(eq=False)
class Queue:
    """A named call queue (created by the first `<Enqueue>` naming it)."""

    sid: str
    name: str
    members: list[Member] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    waits: list[float] = field(default_factory=list)  # seconds callers waited, for AvgQueueTime

    def first_waiting(self) -> Member | None:
        return next((m for m in self.members if not m.taken.done()), None)


@dataclass(eq=False)
class Participant:
    call: Call
    starts: bool
    ends: bool


@dataclass(eq=False)
class Room:
    """A conference: participants are connected once one who starts it has joined."""

    sid: str
    name: str
    participants: list[Participant] = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)


# ---------------------------------------------------------------------------------------------------- state


@dataclass(frozen=True)
class SimClock:
    """Simulated seconds (ring times, Gather timeouts, speech) times `scale` are real seconds."""

    scale: float = 1.0

    def real(self, sim_s: float) -> float:
        return max(0.0, sim_s * self.scale)

    async def sleep(self, sim_s: float) -> None:
        await asyncio.sleep(self.real(sim_s))


@dataclass
class Programmed:
    """What the REST API does with the next calls to one number: refuse with `status` (None: accept), after
    `delay_s` (real seconds), for `times` calls (None: until reprogrammed)."""

    status: FailureStatus | None
    times: int | None = 1
    delay_s: float = 0.0


@dataclass
class TwilioState:
    """The account, its numbers, the scripted parties, and every call with its transcript."""

    account_sid: str
    auth_token: str
    time_scale: float = 1.0
    base_url: str = ""
    calls: dict[str, Call] = field(default_factory=dict)
    programmed: dict[str, Programmed] = field(default_factory=dict)
    parties: dict[str, Party] = field(default_factory=dict)
    numbers: dict[str, PhoneNumber] = field(default_factory=dict)  # by sid
    default_number: PhoneNumber | None = None
    queues: dict[str, Queue] = field(default_factory=dict)
    rooms: dict[str, Room] = field(default_factory=dict)
    recordings: dict[str, Recording] = field(default_factory=dict)
    origin: float = field(default_factory=time.monotonic)

    @property
    def clock(self) -> SimClock:
        return SimClock(self.time_scale)

    def program(self, to: str, status: FailureStatus | None, *, times: int | None = 1, delay_s: float = 0.0) -> None:
        """Make the next `times` calls to `to` fail with `status` (or just be slow when status is None)."""
        self.programmed[to] = Programmed(status, times, delay_s)

    def take_programmed(self, to: str) -> Programmed | None:
        programmed = self.programmed.get(to)
        if programmed is not None and programmed.times is not None:
            programmed.times -= 1
            if programmed.times <= 0:
                del self.programmed[to]
        return programmed

    def calls_to(self, to: str | None = None) -> list[Call]:
        return [call for call in self.calls.values() if to is None or call.to == to]

    def find_calls(self, to: str | None = None, from_: str | None = None) -> list[Call]:
        return [c for c in self.calls.values() if (to is None or c.to == to) and (from_ is None or c.from_ == from_)]

    def sign(self, url: str, params: Mapping[str, str]) -> str:
        """The X-Twilio-Signature Twilio puts on a webhook to `url` with `params`."""
        return str(RequestValidator(self.auth_token).compute_signature(url, params))

    def number(self, phone_number: str) -> PhoneNumber | None:
        """The configuration incoming calls to `phone_number` follow: its own, else the default, else None."""
        own = next((n for n in self.numbers.values() if n.phone_number == phone_number), None)
        return own or self.default_number

    def timeline(self, after: int = 0, since: Call | None = None) -> list[Event]:
        """Every event of every leg (created no earlier than `since`) numbered above `after`, in order."""
        calls = [c for c in self.calls.values() if since is None or c.created >= since.created]
        return sorted((e for c in calls for e in c.events if e.seq > after), key=lambda e: e.seq)

    def conversation(self, sid: str) -> list[Call]:
        """The calls connected with `sid`: its parent and child legs, and every leg it was bridged with (and so on),
        oldest first."""
        seen: dict[str, Call] = {}
        todo = [sid]
        while todo:
            current = self.calls.get(todo.pop())
            if current is None or current.sid in seen:
                continue
            seen[current.sid] = current
            todo.extend(current.bridged_with)
            if current.parent_sid:
                todo.append(current.parent_sid)
            todo.extend(c.sid for c in self.calls.values() if c.parent_sid == current.sid)
        return sorted(seen.values(), key=lambda c: c.created)

    def reset(self) -> None:
        """Forget calls, parties, queues, conferences, recordings and programmed failures (numbers stay)."""
        self.calls.clear()
        self.programmed.clear()
        self.parties.clear()
        self.queues.clear()
        self.rooms.clear()
        self.recordings.clear()
