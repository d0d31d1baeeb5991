"""A call's way through callrouter: the IVR menu, responders dialed one after another until one accepts, the
bridge, voicemail, and the end.

Every webhook and timer is one transaction on the call's locked row, so a duplicate, late or out-of-order
webhook finds the state it needs or changes nothing, and whichever replica gets the next webhook carries on.
Talking to the provider (dialing a leg, taking the waiting caller to voicemail, hanging up a ringing leg) is
done by durable timers due at once, so a replica dying between the state change and the provider call leaves
the work to the next runner instead of losing it.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import asyncpg

from services.callrouter import store
from services.callrouter.domain import (
    CALL_OVER,
    Alert,
    Call,
    CallEvent,
    Leg,
    Option,
    Responder,
    RoutingNumber,
    Texts,
    accepts,
    dial_plan,
    inside_support_hours,
    menu_text,
    pick_option,
    texts,
    voice_language,
)
from services.callrouter.providers import Dial, Telephony, TelephonyError
from services.callrouter.service import alerts
from services.callrouter.service.kinds import DIAL, ESCALATE, HANG_UP, LEG_DEADLINE, REDIRECT
from shared import timers
from shared.db import transaction
from shared.logs import get_logger

log = get_logger(__name__)

MAX_MENU_ATTEMPTS = 3
# A call an interrupted attempt placed is looked for from this long before the attempt began: the provider's
# creation times have whole seconds and its clock is not ours.
PLACED_SLACK = timedelta(seconds=30)


class Urls:
    """The public webhook URLs Twilio is given (the gateway's webhook origin in front of this service)."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/") + "/webhooks/twilio"

    def incoming(self) -> str:
        return f"{self.base}/calls/incoming"

    def status(self) -> str:
        return f"{self.base}/calls/status"

    def call(self, call_id: UUID, what: str) -> str:
        return f"{self.base}/calls/{call_id}/{what}"

    def leg(self, leg_id: UUID, what: str) -> str:
        return f"{self.base}/calls/legs/{leg_id}/{what}"


async def _always() -> bool:
    return True


@dataclass(frozen=True)
class Desk:
    """What running calls needs besides the database."""

    urls: Urls
    telephony: Telephony | None
    ring_timeout_s: int = 20
    hold_music_url: str | None = None
    voicemail_max_s: int = 120
    # Escalation of a voicemail call's alert starts when the message is recorded or the caller hangs up, and at
    # the latest this long after the caller was sent to voicemail (a lost webhook never leaves it silent).
    voicemail_deadline: timedelta = timedelta(minutes=4)
    # A responder's leg whose end never reached us (a status callback lost while this service was down) counts
    # as unanswered this long after it stopped ringing, or after its prompt: the caller is never left waiting.
    leg_deadline: timedelta = timedelta(seconds=60)
    rng: random.Random = random.Random()  # noqa: RUF009  (one per process; a test passes a seeded one)
    # Whether the projections (users, policies, support hours, timelines) have caught up since this replica
    # started; before that, who is on call may be unknown or old, and no one is dialed (see `incoming`).
    caught_up: Callable[[], Awaitable[bool]] = _always
    # The service's pool (once it runs), for the one write that must commit outside the dial timer's transaction:
    # the intent to place a leg (`dial`). None: no intents are kept (a leg placed just before a crash may ring
    # twice).
    pool: Callable[[], asyncpg.Pool] | None = None


# ------------------------------------------------------------------------------------------------ answers
@dataclass(frozen=True)
class Say:
    text: str
    language: str
    audio_url: str | None = None


@dataclass(frozen=True)
class Menu:
    call_id: UUID
    prompt: Say
    hints: tuple[str, ...]
    before: Say | None = None


@dataclass(frozen=True)
class Hold:
    call_id: UUID
    prompt: Say


@dataclass(frozen=True)
class HoldMusic:
    url: str | None
    prompt: Say


@dataclass(frozen=True)
class Voicemail:
    call_id: UUID
    prompt: Say
    max_s: int
    no_message: Say


@dataclass(frozen=True)
class Goodbye:
    prompt: Say | None


@dataclass(frozen=True)
class AskResponder:
    leg_id: UUID
    prompt: Say
    goodbye: Say


@dataclass(frozen=True)
class Bridge:
    call_id: UUID
    prompt: Say


@dataclass(frozen=True)
class CallBack:
    leg_id: UUID
    prompt: Say
    caller: str
    caller_id: str


@dataclass(frozen=True)
class Nothing:
    pass


Answer = Menu | Hold | HoldMusic | Voicemail | Goodbye | AskResponder | Bridge | CallBack | Nothing


def _said(number: RoutingNumber | None, text: str, audio_url: str | None = None) -> Say:
    return Say(text, voice_language(number.language if number else "en-US"), audio_url)


def _bye(number: RoutingNumber | None, text: str | None = None) -> Goodbye:
    said = texts(number.language if number else "en-US")
    return Goodbye(_said(number, text if text is not None else said.goodbye))


# -------------------------------------------------------------------------------------------- the caller
async def _locked(conn: asyncpg.Connection, call_id: UUID) -> Call | None:
    """The call, locked for the rest of the transaction; the timers of its alert are held first (the order a
    timer runner takes them in)."""
    alert_id = await conn.fetchval("SELECT alert_id FROM calls WHERE call_id = $1", call_id)
    if alert_id is not None:
        await timers.hold(conn, str(alert_id))
    return await store.get_call(conn, call_id, lock=True)


async def _options_now(conn: asyncpg.Connection, number: RoutingNumber, now: datetime) -> tuple[Option, ...] | None:
    """The options a caller gets now: inside support hours (or without any) the number's own; outside, the
    outside set, or None when outside hours go to voicemail. Unknown support hours count as inside: a caller is
    routed rather than sent away on missing data."""
    if number.support_hours_id is None:
        return number.options
    hours = await store.support_hours(conn, number.support_hours_id)
    if hours is None or inside_support_hours(hours, now):
        return number.options
    return number.outside_options if number.outside_hours == "options" else None


def _menu(number: RoutingNumber, call: Call, options: tuple[Option, ...], before: Say | None = None) -> Menu:
    hints = tuple(k for o in options for k in (*o.keywords, o.name))
    prompt = _said(number, menu_text(number, options), number.greeting_audio_url)
    return Menu(call.id, prompt, hints, before)


def _voicemail(desk: Desk, number: RoutingNumber, call: Call) -> Voicemail:
    said = texts(number.language)
    return Voicemail(
        call.id,
        _said(number, said.leave_message, number.voicemail_audio_url),
        desk.voicemail_max_s,
        _said(number, said.no_message),
    )


def _hold(number: RoutingNumber, call: Call) -> Hold:
    return Hold(call.id, _said(number, texts(number.language).hold))


async def _current(conn: asyncpg.Connection, desk: Desk, call: Call) -> Answer:
    """What a repeated webhook is answered: the instructions of the state the call is in."""
    number = await store.get_number(conn, call.number_id)
    if number is None:
        return _bye(None)
    if call.state == "menu":
        return _menu(number, call, await _options_now(conn, number, call.started_at) or number.options)
    if call.state in ("dialing", "connected"):
        return _hold(number, call)
    if call.state == "voicemail":
        return _voicemail(desk, number, call)
    if call.state == "unavailable":
        return _bye(number, texts(number.language).unavailable)
    return _bye(number)


async def incoming(pool: asyncpg.Pool, desk: Desk, call_sid: str, caller: str, to: str, now: datetime) -> Answer:
    """A call to one of the routing numbers: the menu, or voicemail (voicemail-only, or outside support hours).
    A number that is not a routing number is told so and hung up."""
    async with transaction(pool) as conn:
        held = await store.call_by_sid(conn, call_sid)
        if held is not None:
            return await _current(conn, desk, held)
        number = await store.number_by_phone(conn, to)
        if number is None:
            return _bye(None, texts("en").not_in_service)
        call = await store.insert_call(conn, Call(uuid4(), call_sid, number.id, caller, to, "menu", now))
        if call is None:  # the same webhook, handled at this moment by another replica
            return _bye(number)
        events = [CallEvent(now, "incoming", detail=f"{caller} called {number.name} ({to})")]
        if not await desk.caught_up():
            # A replica still reading schedule's published data could dial the wrong person: the caller is not
            # routed but heard (voicemail, or told nobody is available), and the alert escalates by the rules
            # once the escalation timer fires, with the data caught up by then.
            events.append(CallEvent(now, "not routed", detail="the on-call data is still being loaded"))
            await store.add_events(conn, call.id, events)
            await _open_alert(conn, call, number, number.options[0], now)
            return await _nobody_left(conn, desk, call, number, now, enqueued=False)
        options = await _options_now(conn, number, now)
        if number.voicemail_only or options is None:
            why = "voicemail only" if number.voicemail_only else "outside support hours"
            events.append(CallEvent(now, "voicemail", detail=why))
            await _open_alert(conn, call, number, number.options[0], now)
            await _to_voicemail(conn, desk, call, now)
            await store.add_events(conn, call.id, events)
            return _voicemail(desk, number, call)
        await store.add_events(conn, call.id, events)
        return _menu(number, call, options)


async def menu_again(pool: asyncpg.Pool, desk: Desk, call_id: UUID, now: datetime) -> Answer:
    """The caller chose nothing: the menu once more, until MAX_MENU_ATTEMPTS, then goodbye."""
    async with transaction(pool) as conn:
        call = await _locked(conn, call_id)
        if call is None:
            return _bye(None)
        if call.state != "menu":
            return await _current(conn, desk, call)
        return await _not_chosen(conn, call, now, None)


async def _not_chosen(conn: asyncpg.Connection, call: Call, now: datetime, before: Say | None) -> Answer:
    number = await store.get_number(conn, call.number_id)
    if number is None:
        return _bye(None)
    call.menu_attempts += 1
    if call.menu_attempts >= MAX_MENU_ATTEMPTS:
        call.state, call.ended_at = "ended", now
        await store.save_call(conn, call)
        await store.add_events(conn, call.id, [CallEvent(now, "no choice", detail="the caller chose no option")])
        said = texts(number.language)
        return _bye(number, f"{said.not_understood} {said.goodbye}")
    await store.save_call(conn, call)
    return _menu(number, call, await _options_now(conn, number, now) or number.options, before)


async def choice(pool: asyncpg.Pool, desk: Desk, call_id: UUID, digits: str, speech: str, now: datetime) -> Answer:
    """The caller picked an option by key or by voice: an alert is opened for the call and the option's
    responders are dialed one after another while the caller holds."""
    async with transaction(pool) as conn:
        call = await _locked(conn, call_id)
        if call is None:
            return _bye(None)
        if call.state != "menu":
            return await _current(conn, desk, call)
        number = await store.get_number(conn, call.number_id)
        if number is None:
            return _bye(None)
        options = await _options_now(conn, number, now) or number.options
        option = pick_option(options, digits, speech)
        if option is None:
            heard = f"pressed {digits}" if digits else f"said {speech!r}" if speech else "chose nothing"
            await store.add_events(conn, call.id, [CallEvent(now, "invalid choice", detail=heard)])
            return await _not_chosen(conn, call, now, _said(number, texts(number.language).not_understood))
        how = f"pressed {digits}" if digits else f"said {speech!r}"
        return await _route(
            conn, desk, call, number, option, now, CallEvent(now, "option", detail=f"{how}: {option.name}")
        )


async def _route(
    conn: asyncpg.Connection,
    desk: Desk,
    call: Call,
    number: RoutingNumber,
    option: Option,
    now: datetime,
    chosen: CallEvent,
) -> Answer:
    policy = await store.policy(conn, option.policy_id)
    await _open_alert(conn, call, number, option, now)
    call.option_digit, call.policy_id = option.digit, option.policy_id
    plan: list[UUID] = []
    people: dict[UUID, Responder] = {}
    if policy is not None:
        schedules = {s for rule in policy.rules for s in rule.schedule_ids}
        on_call = await store.on_call(conn, schedules, now)
        people = await store.responders(
            conn, {u for r in policy.rules for u in r.user_ids} | {u for u in on_call.values() if u is not None}
        )
        plan = dial_plan(policy, on_call, lambda u: u in people and people[u].dialable, desk.rng)
    call.plan = plan
    detail = f"policy {policy.name}: {len(plan)} to dial" if policy else f"policy {option.policy_id} is not known"
    await store.add_events(conn, call.id, [chosen, CallEvent(now, "routing", detail=detail)])
    call.state = "dialing"
    if not await _dial_next(conn, call, now, people):  # saves the call when someone is dialed
        return await _nobody_left(conn, desk, call, number, now, enqueued=False)
    return _hold(number, call)


async def _open_alert(
    conn: asyncpg.Connection, call: Call, number: RoutingNumber, option: Option, now: datetime
) -> None:
    alert = Alert(
        id=uuid4(),
        call_id=call.id,
        number_id=number.id,
        policy_id=option.policy_id,
        status="open",
        summary=f"Call from {call.from_number} to {number.name}: {option.name}",
        caller=call.from_number,
        created_at=now,
        updated_at=now,
    )
    await alerts.open_alert(conn, alert, call.to_number)
    call.alert_id = alert.id  # stored with the call's next save, in this transaction


async def _dial_next(
    conn: asyncpg.Connection, call: Call, now: datetime, known: Mapping[UUID, Responder] | None = None
) -> bool:
    """Put the next dialable person of the plan on a new leg, dialed at once; False when nobody is left.
    `known`: responders already read in this transaction (else each is read now: they may have changed since
    the plan was made)."""
    while True:
        call.position += 1
        if call.position >= len(call.plan):
            return False
        user_id = call.plan[call.position]
        responder = (known if known is not None else await store.responders(conn, [user_id])).get(user_id)
        if responder is not None and responder.dialable and responder.phone:
            break
        await store.add_events(conn, call.id, [CallEvent(now, "skipped", user_id, "no longer dialable")])
    leg = Leg(uuid4(), call.id, "responder", user_id, responder.phone, "requested", now)
    await store.insert_leg(conn, leg)
    await timers.schedule(conn, DIAL, str(leg.id), now)
    await store.save_call(conn, call)
    return True


async def _nobody_left(
    conn: asyncpg.Connection, desk: Desk, call: Call, number: RoutingNumber, now: datetime, *, enqueued: bool
) -> Answer:
    """Nobody accepted: voicemail when the number has it, else the caller is told nobody is available; either
    way the call's alert escalates by the policy's regular rules."""
    if number.voicemail:
        await store.add_events(conn, call.id, [CallEvent(now, "voicemail", detail="nobody accepted the call")])
        await _to_voicemail(conn, desk, call, now)
        answer: Answer = _voicemail(desk, number, call)
    else:
        call.state = "unavailable"
        await store.add_events(conn, call.id, [CallEvent(now, "unavailable", detail="nobody accepted the call")])
        await store.save_call(conn, call)
        await _start_escalation(conn, call, now)
        answer = _bye(number, texts(number.language).unavailable)
    if enqueued:  # the caller waits in the queue: the provider is told to take them out
        await timers.schedule(conn, REDIRECT, str(call.id), now, {"to": call.state})
        return Nothing()
    return answer


async def _to_voicemail(conn: asyncpg.Connection, desk: Desk, call: Call, now: datetime) -> None:
    call.state = "voicemail"
    await store.save_call(conn, call)
    if call.alert_id is not None:
        await timers.schedule(conn, ESCALATE, str(call.alert_id), now + desk.voicemail_deadline, alerts.FIRST_STEP)


async def _start_escalation(conn: asyncpg.Connection, call: Call, now: datetime) -> None:
    if call.alert_id is None:
        return
    alert = await store.get_alert(conn, call.alert_id, lock=True)
    if alert is not None and alert.status == "open" and not alert.escalating:
        await timers.schedule(conn, ESCALATE, str(alert.id), now, alerts.FIRST_STEP)


async def redirected_to(pool: asyncpg.Pool, desk: Desk, call_id: UUID, now: datetime) -> Answer:
    """Where a caller taken out of the queue is sent (voicemail, or the nobody-available message)."""
    async with pool.acquire() as conn:
        call = await store.get_call(conn, call_id)
        return _bye(None) if call is None else await _current(conn, desk, call)


async def hold_music(pool: asyncpg.Pool, desk: Desk, call_id: UUID) -> Answer:
    async with pool.acquire() as conn:
        call = await store.get_call(conn, call_id)
        number = await store.get_number(conn, call.number_id) if call else None
    url = (number.hold_music_url if number else None) or desk.hold_music_url
    return HoldMusic(url, _said(number, texts(number.language if number else "en").hold))


async def left_queue(pool: asyncpg.Pool, desk: Desk, call_id: UUID, result: str, now: datetime) -> Answer:
    """The caller left the queue (Enqueue's action): after a bridge the call ends; a hang-up is the caller gone."""
    if result == "hangup":
        async with transaction(pool) as conn:
            call = await _locked(conn, call_id)
            if call is not None:
                await _caller_gone(conn, call, "hung up while waiting", now)
        return Nothing()
    if result in ("redirected", "leave"):
        return Nothing()
    return Goodbye(None)


async def caller_status(pool: asyncpg.Pool, call_sid: str, status: str, now: datetime) -> None:
    """The caller's call changed status (the number's status callback); only its end matters."""
    if status not in CALL_OVER:
        return
    async with transaction(pool) as conn:
        held = await store.call_by_sid(conn, call_sid)
        call = await _locked(conn, held.id) if held else None
        if call is not None:
            await _caller_gone(conn, call, f"call {status}", now)


async def _caller_gone(conn: asyncpg.Connection, call: Call, why: str, now: datetime) -> None:
    if call.caller_gone:
        return
    was = call.state
    call.caller_gone, call.ended_at = True, now
    call.state = "ended"
    await store.save_call(conn, call)
    await store.add_events(conn, call.id, [CallEvent(now, "caller gone", detail=why)])
    if was == "dialing":
        leg = await store.current_leg(conn, call.id)
        if leg is not None and not leg.ended:
            await timers.schedule(conn, HANG_UP, str(leg.id), now)
        await _start_escalation(conn, call, now)  # a missed call still needs someone
    elif was in ("voicemail", "unavailable"):
        await _start_escalation(conn, call, now)


async def recorded(
    pool: asyncpg.Pool, desk: Desk, call_id: UUID, url: str, duration_s: int | None, now: datetime
) -> Answer:
    """The caller left a voicemail: it is attached to the call's alert, which escalates now."""
    async with transaction(pool) as conn:
        call = await _locked(conn, call_id)
        if call is None or call.alert_id is None:
            return _bye(None)
        number = await store.get_number(conn, call.number_id)
        alert = await store.get_alert(conn, call.alert_id, lock=True)
        if alert is not None and alert.voicemail_url is None and url:
            alert.voicemail_url, alert.voicemail_s, alert.updated_at = url, duration_s, now
            await alerts.save(conn, alert)
            await store.add_events(conn, call.id, [CallEvent(now, "voicemail left", detail=f"{duration_s or 0} s")])
            await _start_escalation(conn, call, now)
        return _bye(number, texts(number.language if number else "en").thanks_message)


# ------------------------------------------------------------------------------------------- responders
async def _leg_and_call(conn: asyncpg.Connection, leg_id: UUID) -> tuple[Leg, Call] | None:
    leg = await store.get_leg(conn, leg_id)
    call = await _locked(conn, leg.call_id) if leg else None
    if leg is None or call is None:
        return None
    return await store.get_leg(conn, leg_id) or leg, call


async def _waiting_for(conn: asyncpg.Connection, leg: Leg, call: Call) -> bool:
    """Whether `leg` is the one the waiting caller's call is dialing now."""
    if leg.kind != "responder" or leg.ended or call.state != "dialing" or call.caller_gone:
        return False
    current = await store.current_leg(conn, call.id)
    return current is not None and current.id == leg.id


@dataclass(frozen=True)
class _Waiting:
    leg: Leg
    call: Call
    number: RoutingNumber | None
    said: Texts


async def _waiting_leg(conn: asyncpg.Connection, leg_id: UUID) -> _Waiting | Goodbye:
    """The leg, its locked call and what to say, if the call waits for this leg; else the goodbye to say."""
    found = await _leg_and_call(conn, leg_id)
    if found is None:
        return _bye(None)
    leg, call = found
    number = await store.get_number(conn, call.number_id)
    said = texts(number.language if number else "en")
    if not await _waiting_for(conn, leg, call):
        return _bye(number, said.caller_gone)
    return _Waiting(leg, call, number, said)


async def responder_answered(pool: asyncpg.Pool, desk: Desk, leg_id: UUID, now: datetime) -> Answer:
    """A dialed responder picked up: they hear the number's name and accept with any key or "continue"."""
    async with transaction(pool) as conn:
        waiting = await _waiting_leg(conn, leg_id)
        if isinstance(waiting, Goodbye):
            return waiting
        leg, call, number, said = waiting.leg, waiting.call, waiting.number, waiting.said
        leg.state = "answered"
        await store.save_leg(conn, leg)
        await store.add_events(conn, call.id, [CallEvent(now, "answered", leg.user_id)])
        await timers.schedule(conn, LEG_DEADLINE, str(leg.id), now + desk.leg_deadline)
        name = number.name if number else ""
        return AskResponder(leg.id, _said(number, said.responder_prompt.format(name=name)), _said(number, said.goodbye))


async def responder_input(
    pool: asyncpg.Pool, desk: Desk, leg_id: UUID, digits: str, speech: str, now: datetime
) -> Answer:
    """The responder pressed a key or said "continue" (connected to the caller, who is taken off the queue),
    or anything else (the next one is dialed at once)."""
    async with transaction(pool) as conn:
        waiting = await _waiting_leg(conn, leg_id)
        if isinstance(waiting, Goodbye):
            return waiting
        leg, call, number, said = waiting.leg, waiting.call, waiting.number, waiting.said
        if accepts(digits, speech, number.language if number else "en"):
            leg.state = "accepted"
            call.state, call.connected_user = "connected", leg.user_id
            await store.save_leg(conn, leg)
            await store.save_call(conn, call)
            await store.add_events(conn, call.id, [CallEvent(now, "accepted", leg.user_id)])
            if call.alert_id is not None:
                await alerts.acknowledge_locked(conn, call.alert_id, leg.user_id, now, "accepted the call")
            return Bridge(call.id, _said(number, said.connecting))
        leg.state, leg.ended_at = "declined", now
        await store.save_leg(conn, leg)
        heard = f"pressed {digits}" if digits else f"said {speech!r}" if speech else "no input"
        await store.add_events(conn, call.id, [CallEvent(now, "declined", leg.user_id, heard)])
        await _advance(conn, desk, call, now)
        return _bye(number)


async def leg_status(pool: asyncpg.Pool, desk: Desk, leg_id: UUID, status: str, call_sid: str, now: datetime) -> None:
    """A leg's status callback: ringing, or its end (busy, no-answer, failed, canceled, completed), which moves
    the call on to the next responder unless the leg was accepted or the caller is gone."""
    async with transaction(pool) as conn:
        found = await _leg_and_call(conn, leg_id)
        if found is None:
            return
        leg, call = found
        if leg.call_sid is None and call_sid:
            leg.call_sid = call_sid
        if status not in CALL_OVER:
            if status == "ringing" and leg.state == "requested":
                leg.state = "ringing"
            await store.save_leg(conn, leg)
            return
        if leg.ended:
            await store.save_leg(conn, leg)
            return
        waiting = await _waiting_for(conn, leg, call)
        leg.ended_at = now
        if leg.state != "accepted":
            leg.state = status  # type: ignore[assignment]
        await store.save_leg(conn, leg)
        what = "conversation ended" if leg.state == "accepted" else status
        await store.add_events(conn, call.id, [CallEvent(now, what, leg.user_id, leg.kind)])
        if waiting and leg.state != "accepted":
            await _advance(conn, desk, call, now)


async def _advance(conn: asyncpg.Connection, desk: Desk, call: Call, now: datetime) -> None:
    if call.caller_gone or call.state != "dialing":
        return
    if await _dial_next(conn, call, now):
        return
    number = await store.get_number(conn, call.number_id)
    if number is None:
        return
    await _nobody_left(conn, desk, call, number, now, enqueued=True)


# ------------------------------------------------------------------------------------------------ timers
async def dial(conn: asyncpg.Connection, desk: Desk, timer: timers.Timer, now: datetime) -> None:
    """Place a leg with the provider: a responder for a waiting caller (unless the call moved on meanwhile), or
    the responder side of a callback. A leg the provider refuses is skipped at once: a caller is waiting."""
    found = await store.leg_to_dial(conn, UUID(timer.key))
    leg, began = found if found else (None, None)
    call = await store.get_call(conn, leg.call_id, lock=True) if leg else None
    if leg is None or call is None or leg.state != "requested" or (
        leg.kind == "responder" and not await _waiting_for(conn, leg, call)
    ):
        await store.forget_dial_intent(conn, UUID(timer.key))  # one an interrupted attempt left, if any
        return
    if desk.telephony is None:
        raise RuntimeError("no telephony provider is configured (TWILIO_ACCOUNT_SID)")
    what = "answer" if leg.kind == "responder" else "callback"
    order = Dial(
        leg.phone, call.to_number, desk.urls.leg(leg.id, what), desk.urls.leg(leg.id, "status"), desk.ring_timeout_s
    )
    placed = None
    try:
        placed = await _placed_before(conn, desk.telephony, leg, order, began) if began else None
        if placed is None:
            if desk.pool is not None:  # the wall clock: it is compared with the provider's creation times
                await store.note_dial_intent(desk.pool(), leg.id, datetime.now(UTC))
            leg.call_sid = await desk.telephony.dial(order)
        else:
            leg.call_sid = placed
    except TelephonyError as exc:
        leg.state, leg.ended_at = "failed", now
        await store.save_leg(conn, leg)
        await store.forget_dial_intent(conn, leg.id)
        await store.add_events(conn, call.id, [CallEvent(now, "dial failed", leg.user_id, str(exc)[:500])])
        if leg.kind == "responder":
            await _advance(conn, desk, call, now)
        return
    leg.state = "ringing"
    await store.save_leg(conn, leg)
    await store.forget_dial_intent(conn, leg.id)
    how = f"{leg.kind} {leg.phone}" + ("" if placed is None else " (placed before a restart; not dialed again)")
    await store.add_events(conn, call.id, [CallEvent(now, "dialed", leg.user_id, how)])
    if leg.kind == "responder":
        ringing = timedelta(seconds=desk.ring_timeout_s)
        await timers.schedule(conn, LEG_DEADLINE, str(leg.id), now + ringing + desk.leg_deadline)


async def _placed_before(
    conn: asyncpg.Connection, telephony: Telephony, leg: Leg, order: Dial, began: datetime
) -> str | None:
    """The call an earlier attempt at this leg (begun then) placed before it died unrecorded, if the provider has
    one: the oldest call between the two numbers since then that no other leg holds. Only asked when an intent
    was left behind, so a normal dial costs no extra request."""
    since = began - PLACED_SLACK
    taken = await store.call_sids_to(conn, leg.phone, since - timedelta(hours=1))
    free = [sid for sid in await telephony.placed(order, since) if sid not in taken]
    return free[0] if free else None


async def leg_deadline(conn: asyncpg.Connection, desk: Desk, timer: timers.Timer, now: datetime) -> None:
    """The leg's end never arrived (its status callback was lost): it counts as unanswered, is hung up, and the
    next responder is dialed."""
    leg = await store.get_leg(conn, UUID(timer.key))
    call = await store.get_call(conn, leg.call_id, lock=True) if leg else None
    if leg is None or call is None or leg.state == "accepted" or not await _waiting_for(conn, leg, call):
        return
    leg.state, leg.ended_at = "no-answer", now
    await store.save_leg(conn, leg)
    await store.add_events(conn, call.id, [CallEvent(now, "no answer in time", leg.user_id, "its end never arrived")])
    if leg.call_sid is not None:
        await timers.schedule(conn, HANG_UP, str(leg.id), now)
    await _advance(conn, desk, call, now)


async def redirect(conn: asyncpg.Connection, desk: Desk, timer: timers.Timer, now: datetime) -> None:
    """Take the waiting caller out of the queue to voicemail or the nobody-available message."""
    call = await store.get_call(conn, UUID(timer.key), lock=True)
    if call is None or call.caller_gone or call.state not in ("voicemail", "unavailable"):
        return
    if desk.telephony is None:
        raise RuntimeError("no telephony provider is configured (TWILIO_ACCOUNT_SID)")
    try:
        await desk.telephony.redirect(call.call_sid, desk.urls.call(call.id, "next"))
    except TelephonyError as exc:
        if exc.retry:
            raise
        log.warning("caller not redirected", call_id=str(call.id), error=str(exc))


async def hang_up(conn: asyncpg.Connection, desk: Desk, timer: timers.Timer, now: datetime) -> None:
    """End a responder's leg nobody waits for any more (the caller hung up while it rang)."""
    leg = await store.get_leg(conn, UUID(timer.key))
    # an ended leg too: "ended" may be our verdict while the phone still rings; the provider ignores ended calls
    if leg is None or leg.call_sid is None:
        return
    if desk.telephony is None:
        raise RuntimeError("no telephony provider is configured (TWILIO_ACCOUNT_SID)")
    try:
        await desk.telephony.hang_up(leg.call_sid)
    except TelephonyError as exc:
        if exc.retry:
            raise
        log.warning("leg not hung up", leg_id=str(leg.id), error=str(exc))


# ------------------------------------------------------------------------------------------- call-backs
async def callback_answered(pool: asyncpg.Pool, leg_id: UUID, now: datetime) -> Answer:
    """The responder who asked for a callback picked up: the caller is dialed and bridged."""
    async with transaction(pool) as conn:
        found = await _leg_and_call(conn, leg_id)
        if found is None or found[0].kind != "callback":
            return _bye(None)
        leg, call = found
        number = await store.get_number(conn, call.number_id)
        leg.state = "answered"
        await store.save_leg(conn, leg)
        await store.add_events(conn, call.id, [CallEvent(now, "callback answered", leg.user_id, call.from_number)])
        said = texts(number.language if number else "en")
        spoken = " ".join(call.from_number)
        return CallBack(
            leg.id, _said(number, said.callback_intro.format(caller=spoken)), call.from_number, call.to_number
        )


async def callback_done(pool: asyncpg.Pool, leg_id: UUID, dial_status: str, duration_s: str, now: datetime) -> Answer:
    """The bridged caller leg of a callback ended (Dial's action)."""
    async with transaction(pool) as conn:
        found = await _leg_and_call(conn, leg_id)
        if found is None:
            return _bye(None)
        leg, call = found
        detail = f"caller {dial_status or 'unknown'}" + (f", {duration_s} s" if duration_s else "")
        await store.add_events(conn, call.id, [CallEvent(now, "callback ended", leg.user_id, detail)])
        return Goodbye(None)
