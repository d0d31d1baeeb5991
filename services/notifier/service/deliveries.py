"""Notifications: a command becomes a delivery, planned into the user's steps (push now, a call later...),
each step a durable timer that reaches the user's devices or phone until they acknowledge it.

Guarantee. A step's timer is removed in the same transaction that records what the providers answered. A
crash after a provider accepted a push but before that commit leaves the timer due, so the step runs again:
at least once per step and device, never lost. A resend carries the same collapse id (the delivery id;
`apns-collapse-id`, FCM `collapse_key`/`tag`), so the phone shows one notification, updated. Voice calls
have no such id: a call intent is committed before each call, and a step that fires again over one takes the
call Twilio already placed instead of calling again (`_calls_begun`).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from itertools import groupby
from typing import Any, cast
from uuid import UUID, uuid4

import asyncpg

from services.notifier import store
from services.notifier.domain import (
    DEFAULT_PREFERENCES,
    MINUTE,
    SUMMARY_IDS,
    Delivery,
    Device,
    FloodLimit,
    planned_steps,
    retry_delay,
    step_due,
    summary_body,
    summary_title,
)
from services.notifier.providers import Outcome, Push, PushProvider, VoiceCall, VoiceProvider
from shared import timers
from shared.auth import Principal
from shared.db import transaction
from shared.errors import NotFound, found
from shared.logs import get_logger
from shared.messages import (
    Message,
    NotificationAcknowledged,
    NotificationAttempted,
    NotificationQueued,
    SendNotification,
    UserSnapshot,
    WithdrawNotifications,
)
from shared.outbox import enqueue, enqueue_all
from shared.projection import fresh_events, project_batch, project_once

log = get_logger(__name__)

USERS_CONSUMER = "notifier.users"
COMMANDS_CONSUMER = "notifier.commands"
STEP = "notifier.step"
PROOF = "notifier.proof"
# A critical page whose push the app has not confirmed receiving by then calls the user at once.
PROOF_AFTER = timedelta(seconds=30)
# A call an interrupted attempt placed is looked for from this long before the attempt began: the vendor's
# creation times have whole seconds and its clock is not ours.
PLACED_SLACK = timedelta(seconds=30)


@dataclass(frozen=True)
class Channels:
    """The providers a process has (None: not configured) and what voice calls need."""

    push: dict[str, PushProvider] = field(default_factory=dict)  # by platform
    voice: VoiceProvider | None = None
    from_number: str = ""
    webhook_url: str = ""  # notifier's public base URL, for Twilio's callbacks
    max_attempts: int = 8
    first_retry_s: float = 1.0
    max_retry_s: float = 60.0
    flood: FloodLimit = field(default_factory=FloodLimit)
    concurrency: int = 100  # pushes and calls in flight at once while a batch of steps fires
    # The service's pool (once it runs), for the call intents committed before a call is placed (`_calls_begun`).
    # None: none are kept, and a call placed just before a crash may be placed again.
    pool: Callable[[], asyncpg.Pool] | None = None


async def apply_user_snapshot(pool: asyncpg.Pool, snapshot: UserSnapshot) -> bool:
    """Keep the recipient directory in step with schedule's users; True if it changed."""
    return await project_once(pool, USERS_CONSUMER, snapshot, store.upsert_recipient)


async def apply_user_snapshots(pool: asyncpg.Pool, snapshots: Sequence[UserSnapshot]) -> int:
    """`apply_user_snapshot` for a consumed batch, in one transaction; how many recipients changed."""
    return await project_batch(pool, USERS_CONSUMER, snapshots, store.upsert_recipients)


def _step_key(delivery_id: UUID, step: int) -> str:
    return f"{delivery_id}:{step}"


async def accept_notification(
    pool: asyncpg.Pool, command: SendNotification, proof_after: timedelta | None = PROOF_AFTER,
    minute: timedelta = MINUTE,
) -> Delivery | None:
    """Record a delivery for the command, once per event and once per idempotency key, and arm its steps
    (their minutes lasting `minute` each: `DELAY_MINUTE_S`); a critical page also gets its proof-of-delivery
    deadline (`proof_after`, None: none).

    Returns the new delivery, or None when the command was a redelivery or a repeat of something the user
    has already been told.
    """
    accepted = await handle_commands(pool, [command], proof_after, minute)
    return accepted[0] if accepted else None


Command = SendNotification | WithdrawNotifications


async def handle_commands(
    pool: asyncpg.Pool, commands: Sequence[Command], proof_after: timedelta | None = PROOF_AFTER,
    minute: timedelta = MINUTE,
) -> list[Delivery]:
    """The notification commands of a consumed batch, in their order, in one transaction: each SendNotification
    as `accept_notification`, each WithdrawNotifications as `_withdraw`. A run of SendNotifications takes one
    statement per table: the inbox claims, the users' preferences, the deliveries, their timers and the
    `NotificationQueued` events.

    Each command is handled as it would be alone and in order: a redelivered event, or a second command with
    an idempotency key already used (earlier in the batch or before), records nothing. Returns the new
    deliveries in the commands' order.
    """
    accepted: list[Delivery] = []
    async with transaction(pool) as conn:
        fresh = await fresh_events(conn, COMMANDS_CONSUMER, commands)
        for kind, same in groupby(fresh, key=type):  # runs of one kind: a run of sends is planned at once
            run = list(same)
            if kind is SendNotification:
                accepted += await _plan(conn, cast(list[SendNotification], run), proof_after, minute)
            else:
                for withdrawal in cast(list[WithdrawNotifications], run):
                    await _withdraw(conn, withdrawal)
    if accepted:  # one line per batch: a line per command cost 8 % of notifier's CPU at 600 commands/s
        log.info("notifications queued", deliveries=[f"{d.id}:{d.user_id}" for d in accepted])
    return accepted


async def _plan(
    conn: asyncpg.Connection, commands: Sequence[SendNotification], proof_after: timedelta | None,
    minute: timedelta,
) -> list[Delivery]:
    firsts = list({c.idempotency_key: c for c in reversed(commands)}.values())[::-1]
    prefs = await store.preferences_of(conn, {c.user_id for c in firsts})
    planned = []
    for command in firsts:
        steps = planned_steps(prefs.get(command.user_id, DEFAULT_PREFERENCES), command.urgency,
                              command.acknowledgeable)
        delivery = Delivery(
            id=uuid4(), user_id=command.user_id, idempotency_key=command.idempotency_key, title=command.title,
            body=command.body, urgency=command.urgency, data=dict(command.data), kind=command.kind,
            acknowledgeable=command.acknowledgeable, steps=len(steps),
        )
        planned.append((command, delivery, steps))
    inserted = await store.insert_deliveries(conn, [(d, c.event_id) for c, d, _ in planned])
    accepted = [(c, d, steps) for c, d, steps in planned if d.id in inserted]
    deadlines: list[tuple[str, str, datetime, Mapping[str, Any] | None]] = []
    for command, delivery, steps in accepted:
        due = command.occurred_at
        deadlines += [
            (STEP, _step_key(delivery.id, i), step_due(due, step, minute), {"step": i, "channel": step.channel})
            for i, step in enumerate(steps)
        ]
        if proof_after is not None and delivery.critical and delivery.acknowledgeable:
            deadlines.append((PROOF, str(delivery.id), command.occurred_at + proof_after, None))
    await timers.schedule_many(conn, deadlines)
    await enqueue_all(conn, [
        NotificationQueued(delivery_id=d.id, user_id=d.user_id, idempotency_key=d.idempotency_key)
        for _, d, _ in accepted
    ])
    return [d for _, d, _ in accepted]


async def _withdraw(conn: asyncpg.Connection, command: WithdrawNotifications) -> None:
    """The sender settled what these notifications were about: the user's deliveries whose key starts with the
    prefix and that are neither acknowledged nor withdrawn stop (their step timers are cancelled as an
    acknowledgement cancels them) and become `withdrawn`. Pushes already sent stay on the phones."""
    running = await store.running_deliveries(conn, command.user_id, command.key_prefix)
    if not running:
        return
    locked, idle = await _hold_steps(conn, {d.id: d.steps for d in running})
    stopped = [i for i, d in locked.items() if not d.settled]
    await store.withdraw(conn, stopped, command.occurred_at, command.reason)
    await timers.cancel_ids(conn, idle)
    if stopped:
        log.info("notifications withdrawn", user_id=str(command.user_id), key_prefix=command.key_prefix,
                 deliveries=[str(i) for i in stopped])


async def _hold_steps(conn: asyncpg.Connection, steps: Mapping[UUID, int]) -> tuple[dict[UUID, Delivery], list[int]]:
    """Before a delivery is settled (acknowledged, withdrawn): hold the step timers of the deliveries (id: the
    steps read unlocked) that no runner is firing, lock the deliveries and hold the steps a proof-of-delivery
    check added since the read. Returns the deliveries as locked, and the timers held, for `timers.cancel_ids`.

    Timers before deliveries: the lock order of the runner, which holds a step, then locks its delivery after
    the providers answered. A step being fired right now is skipped, not waited for: it sees the settlement when
    it locks the delivery, and re-arms nothing."""
    idle = await timers.hold_idle(conn, STEP, [_step_key(i, n) for i, count in steps.items() for n in range(count)])
    locked = await store.get_deliveries(conn, steps, lock=True) if steps else {}
    added = [_step_key(i, n) for i, d in locked.items() for n in range(steps[i], d.steps)]
    if added:
        idle += await timers.hold_idle(conn, STEP, added)
    return locked, idle


async def fire_step(conn: asyncpg.Connection, timer: timers.Timer, channels: Channels, now: datetime) -> None:
    """Run one step of a delivery (the timer runner's transaction): push to each device, or call the phone.
    Refusals for now are retried on the same timer with backoff; gone devices are forgotten."""
    await fire_steps(conn, [timer], channels, now)


@dataclass(eq=False)
class _Firing:
    timer: timers.Timer
    delivery: Delivery
    step: int
    channel: str
    attempt: int
    results: list[tuple[Device | None, str, Outcome]] = field(default_factory=list)
    # Low-urgency pushes the flood limit held back go out together as one summary push, made by the first of
    # them (`summarized`: the others); each of the others points at it (`summary`) and shares its results.
    summarized: list[_Firing] = field(default_factory=list)
    summary: _Firing | None = None


async def fire_steps(conn: asyncpg.Connection, batch: Sequence[timers.Timer], channels: Channels, now: datetime
                     ) -> None:
    """`fire_step` for due steps of many deliveries in one transaction (the timer runner's batch): the
    deliveries, devices and flood counts are read in one query each, every push and call of the batch is made
    concurrently, and what the providers answered is written in one statement per table. The outcome is the
    one firing them in order would leave, except that a device found gone is only forgotten after the batch
    (another delivery of the batch may have pushed to it too)."""
    # Read, not locked: an acknowledgement (or a withdrawal) must not wait while the providers answer (up to their
    # timeout). It skips the step timers this batch holds and commits; the deliveries are locked and read again
    # below, after the providers answered, and an acknowledgement that came meanwhile wins over re-arming.
    held = await store.get_deliveries(conn, {UUID(t.key.split(":", 1)[0]) for t in batch})
    firings = []
    for timer in batch:
        delivery = held.get(UUID(timer.key.split(":", 1)[0]))
        if delivery is None or delivery.settled:
            continue
        firings.append(_Firing(timer, delivery, int(timer.payload["step"]), str(timer.payload["channel"]),
                               int(timer.payload.get("attempt", 1))))
    rearm: list[tuple[str, str, datetime, Mapping[str, Any] | None]] = []
    firings = await _flood_control(conn, firings, channels, now, rearm)
    if firings:
        await _reach(conn, firings, channels)
    current = await store.get_deliveries(conn, {f.delivery.id for f in firings}, lock=True)
    attempts: list[store.Attempt] = []
    events: list[Message] = []
    gone: set[UUID] = set()
    status = {i: d.status for i, d in current.items()}
    for f in firings:
        delivery = f.delivery
        for device, target, outcome in f.results:
            attempts.append((delivery.id, f.step, f.attempt, f.channel, target, outcome))
            events.append(NotificationAttempted(
                delivery_id=delivery.id, user_id=delivery.user_id, idempotency_key=delivery.idempotency_key,
                channel=f.channel, target=target, result=outcome.result, provider_id=outcome.provider_id,  # type: ignore[arg-type]
                error=outcome.error,
            ))
            if outcome.result == "gone" and device is not None and device.id not in gone:
                log.info("device gone; forgotten", device_id=str(device.id), user_id=str(delivery.user_id))
                gone.add(device.id)
        retry = [(t, o) for _, t, o in f.results if o.result == "retry"]
        rearmed = bool(retry) and f.attempt < channels.max_attempts and not current[delivery.id].settled
        if rearmed:
            wait = retry_delay(f.attempt, channels.first_retry_s, channels.max_retry_s,
                               max((o.retry_after_s or 0.0) for _, o in retry), random.random())
            targets = [t for t, _ in retry] if f.channel == "push" else []
            payload = {**f.timer.payload, "attempt": f.attempt + 1, "devices": targets}
            rearm.append((STEP, f.timer.key, now + timedelta(seconds=wait), payload))
        sent = any(o.result == "sent" for _, _, o in f.results)
        if sent and status[delivery.id] in ("planned", "failed"):
            status[delivery.id] = "sent"
        elif not rearmed and not sent and status[delivery.id] == "planned":
            status[delivery.id] = "failed"
    await store.record_attempts(conn, attempts)
    await store.forget_call_intents(conn, [(f.delivery.id, f.step) for f in firings if f.channel != "push"])
    await store.delete_devices(conn, gone)
    await enqueue_all(conn, events)
    await timers.schedule_many(conn, rearm)
    await store.set_statuses(conn, {i: s for i, s in status.items() if s != current[i].status})


async def _flood_control(
    conn: asyncpg.Connection, firings: list[_Firing], channels: Channels, now: datetime,
    rearm: list[tuple[str, str, datetime, Mapping[str, Any] | None]],
) -> list[_Firing]:
    """The firings that may go now. A user's low-urgency first pushes beyond the flood limit are re-armed,
    marked `held`, for when there is room (each push the batch sends counts for the next). Held ones that fall
    due when there is room go together as one summary push, which takes one place in the window (and counts
    as the notifications it carries in the next one)."""
    def limited(f: _Firing) -> bool:
        return f.channel == "push" and f.attempt == 1 and f.delivery.urgency == "low"

    users = {f.delivery.user_id for f in firings if limited(f)}
    if not users:
        return firings
    recent = await store.low_pushes_since_each(conn, users, now - channels.flood.window)
    summaries: dict[UUID, _Firing] = {}
    going = []
    # Held ones first (they waited), oldest first: the oldest leads its summary and the titles keep their order.
    for f in sorted(firings, key=lambda f: (not f.timer.payload.get("held"), f.delivery.created_at or now)):
        if limited(f):
            user_id = f.delivery.user_id
            lead = summaries.get(user_id) if f.timer.payload.get("held") else None
            if lead is not None:
                lead.summarized.append(f)
                f.summary = lead
                going.append(f)
                continue
            pushed = recent.setdefault(user_id, [])
            wait = channels.flood.wait(f.delivery.urgency, pushed, now)
            if wait is not None:
                log.info("low-urgency flood limit; push delayed", delivery_id=str(f.delivery.id),
                         wait_s=wait.total_seconds())
                rearm.append((STEP, f.timer.key, now + wait, {**f.timer.payload, "held": True}))
                continue
            pushed.append(now)
            if f.timer.payload.get("held"):
                summaries[user_id] = f
        going.append(f)
    return going


async def _reach(conn: asyncpg.Connection, firings: list[_Firing], channels: Channels) -> None:
    """Make every push and call of the firings at once (at most `channels.concurrency` in flight), keeping each
    firing's results in its devices' order."""
    devices = await store.devices_of_each(conn, {f.delivery.user_id for f in firings if f.channel == "push"})
    voice = [f for f in firings if f.channel != "push"]
    leads = [f for f in firings if f.summarized]
    people = {f.delivery.user_id for f in voice + leads}
    recipients = await store.recipients_of(conn, people) if people else {}
    languages = {user_id: r["language"] for user_id, r in recipients.items()}
    recovering = await _calls_begun(conn, voice, recipients, channels)
    gate = asyncio.Semaphore(channels.concurrency)

    async def gated(call: Awaitable[Outcome]) -> Outcome:
        async with gate:
            return await call

    planned: list[tuple[_Firing, Device | None, str, Awaitable[Outcome]]] = []
    for f in firings:
        delivery = f.delivery
        if f.summary is not None:
            continue  # pushed as part of its summary
        collapse = f"summary:{delivery.id}" if f.summarized else str(delivery.id)
        if f.summarized:
            delivery = _summary(f, languages.get(delivery.user_id, "en"))
        if f.channel == "push":
            only = set(f.timer.payload.get("devices") or [])
            mine = [d for d in devices.get(delivery.user_id, []) if not only or str(d.id) in only]
            if not mine:
                f.results.append((None, "no device", Outcome("failed", error="the user has no device registered")))
            planned += [(f, d, str(d.id), _push(channels, delivery, d, collapse)) for d in mine]
        else:
            recipient = recipients.get(delivery.user_id)
            phone = recipient["phone"] if recipient is not None else None
            begun = recovering.get((delivery.id, f.step))
            call = _call(channels, delivery, phone, recipient["language"] if recipient else "en", begun)
            planned.append((f, None, phone or "no phone", call))
    outcomes = await asyncio.gather(*(gated(call) for _, _, _, call in planned))
    for (f, device, target, _), outcome in zip(planned, outcomes, strict=True):
        f.results.append((device, target, outcome))
    for f in firings:
        if f.summary is not None:
            f.results = list(f.summary.results)


def _summary(lead: _Firing, language: str) -> Delivery:
    """The push that stands for `lead` and the notifications summarized with it: a count as the title, their
    titles as the body, and the ids of (the first SUMMARY_IDS of) them; it goes out under the lead's id with
    a collapse id of its own (`summary:<lead id>`), so the phone shows it beside what is already there."""
    group = [lead, *lead.summarized]
    data = {"summary_of": ",".join(str(f.delivery.id) for f in group[:SUMMARY_IDS]), "count": str(len(group))}
    newest = group[-1].delivery.data
    if "badge" in newest:  # the newest count the sender gave
        data["badge"] = newest["badge"]
    return replace(
        lead.delivery,
        title=summary_title(len(group), language),
        body=summary_body([f.delivery.title for f in group]),
        data=data,
        kind="summary",
    )


async def _push(channels: Channels, delivery: Delivery, device: Device, collapse_id: str) -> Outcome:
    provider = channels.push.get(device.platform)
    if provider is None:
        return Outcome("failed", error=f"no {device.platform} push provider configured")
    push = Push(
        token=device.token, title=delivery.title, body=delivery.body, collapse_id=collapse_id,
        critical=delivery.critical and device.critical_allowed,
        time_sensitive=delivery.urgency in ("high", "critical"),
        badge=badge_of(delivery.data),
        data={**delivery.data, "delivery_id": str(delivery.id), "kind": delivery.kind,
              "acknowledgeable": "true" if delivery.acknowledgeable else "false"},
    )
    try:
        return await provider.send(push)
    except Exception as exc:  # a provider bug must not stop the other devices; retried like a 5xx
        log.exception("push provider raised", device_id=str(device.id))
        return Outcome("retry", error=repr(exc))


def badge_of(data: Mapping[str, str]) -> int | None:
    """The app icon's number a sender gave with its notification (`data.badge`, e.g. coverage's count of the
    recipient's open requests): APNs `aps.badge`, FCM `notification_count`. None (left as it is) when absent or
    not a whole number from 0 to 99999."""
    text = data.get("badge", "")
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 5 else None


@dataclass
class _Begun:
    """An earlier attempt at a voice step that died unrecorded: when it began, and the calls to that phone
    somebody already holds (shared by the steps to one phone, so two never take the same call)."""

    at: datetime
    taken: set[str]


async def _calls_begun(
    conn: asyncpg.Connection, voice: Sequence[_Firing], recipients: Mapping[UUID, asyncpg.Record],
    channels: Channels,
) -> dict[tuple[UUID, int], _Begun]:
    """The voice steps an interrupted attempt began (a call intent was left behind), and a new intent for each
    of the others, committed on its own before any provider is asked: Twilio has no idempotency key, so a step
    that dies after Twilio placed its call must find that call rather than call again."""
    if not voice:
        return {}
    steps = [(f.delivery.id, f.step) for f in voice]
    began = await store.call_intents(conn, steps)
    taken: dict[str, set[str]] = {}
    begun = {}
    for f in voice:
        at = began.get((f.delivery.id, f.step))
        recipient = recipients.get(f.delivery.user_id)
        phone = recipient["phone"] if recipient is not None else None
        if at is None or not phone:
            continue
        if phone not in taken:
            taken[phone] = await store.calls_to(conn, phone, at - timedelta(hours=1))
        begun[(f.delivery.id, f.step)] = _Begun(at, taken[phone])
    fresh = [step for step in steps if step not in began]
    if fresh and channels.pool is not None and channels.voice is not None:
        # the wall clock, not the handler's `now`: it is compared with the vendor's creation times
        await store.note_call_intents(channels.pool(), fresh, datetime.now(UTC))
    return begun


async def _call(
    channels: Channels, delivery: Delivery, phone: str | None, language: str, begun: _Begun | None = None
) -> Outcome:
    if channels.voice is None:
        return Outcome("failed", error="no voice provider configured")
    if not phone:
        return Outcome("failed", error="the user has no phone number")
    call = VoiceCall(
        to=phone, from_=channels.from_number, message=f"{delivery.title}. {delivery.body}", language=language,
        callback_url=f"{channels.webhook_url.rstrip('/')}/webhooks/twilio/voice/{delivery.id}",
    )
    if begun is not None:
        try:
            placed = await channels.voice.placed(call, begun.at - PLACED_SLACK)
        except Exception as exc:  # the vendor cannot say now: retried like any refusal for now
            return Outcome("retry", error=f"cannot list the calls placed before a restart: {exc!r}"[:500])
        free = [sid for sid in placed if sid not in begun.taken]
        if free:
            begun.taken.add(free[0])
            log.info("call placed before a restart found; not calling again", delivery_id=str(delivery.id),
                     call_sid=free[0])
            return Outcome("sent", provider_id=free[0])
    try:
        return await channels.voice.call(call)
    except Exception as exc:
        log.exception("voice provider raised", delivery_id=str(delivery.id))
        return Outcome("retry", error=repr(exc))


async def check_proof(conn: asyncpg.Connection, timer: timers.Timer, now: datetime) -> None:
    """A critical page's push was not confirmed by any of the user's phones in time: call now rather than at
    the next step (the pending voice step is moved to now, or a call is added when the user has none)."""
    delivery_id = UUID(timer.key)
    planned = await store.get_delivery(conn, delivery_id)
    if planned is None:
        return
    keys = [_step_key(delivery_id, i) for i in range(planned.steps)]
    await timers.hold(conn, *keys)
    delivery = await store.get_delivery(conn, delivery_id, lock=True)
    if delivery is None or delivery.settled or delivery.received_at is not None:
        return
    voice = [t for t in await timers.pending(conn, STEP, keys) if t.payload.get("channel") == "voice"]
    if voice:
        await timers.schedule(conn, STEP, voice[0].key, now, voice[0].payload)
    else:
        step = await store.add_step(conn, delivery_id)
        await timers.schedule(conn, STEP, _step_key(delivery_id, step), now, {"step": step, "channel": "voice"})
    log.warning("critical push not confirmed in time; calling now", delivery_id=str(delivery_id))


def _visible(actor: Principal | None, delivery: Delivery | None, delivery_id: UUID) -> Delivery:
    """The delivery if `actor` may touch it (its user, an admin, or None: a signed webhook). Another user's
    notification is reported as absent, as an unknown id is."""
    if delivery is None or (actor is not None and not actor.is_admin and delivery.user_id != actor.user_id):
        raise NotFound(f"notification {delivery_id}")
    return delivery


async def confirm_received(pool: asyncpg.Pool, actor: Principal, delivery_id: UUID, now: datetime) -> Delivery:
    """The app says the push arrived (proof of delivery): no fall-back call for it."""
    async with transaction(pool) as conn:
        _visible(actor, await store.get_delivery(conn, delivery_id), delivery_id)
        return await store.mark(conn, delivery_id, "received_at", now)


async def mark_read(pool: asyncpg.Pool, actor: Principal, delivery_id: UUID, now: datetime) -> Delivery:
    """The user opened it in the app's history."""
    async with transaction(pool) as conn:
        _visible(actor, await store.get_delivery(conn, delivery_id), delivery_id)
        return await store.mark(conn, delivery_id, "read_at", now)


async def unread_count(pool: asyncpg.Pool, actor: Principal, user_id: UUID) -> int:
    """Notifications the user neither read nor acknowledged."""
    actor.require_self_or_admin(user_id)
    return await store.unread(pool, user_id)


async def acknowledge(
    pool: asyncpg.Pool, actor: Principal | None, delivery_id: UUID, via: str, now: datetime
) -> Delivery:
    """Stop the delivery's remaining steps and tell its sender. `actor` None: a key pressed during the call
    (the webhook's signature is the credential). Acknowledging twice changes nothing. A withdrawn delivery (its
    sender settled it) can still be acknowledged: a tap on its push is recorded and told, never an error."""
    async with transaction(pool) as conn:
        planned = await store.get_delivery(conn, delivery_id)
        locked, idle = await _hold_steps(conn, {delivery_id: planned.steps} if planned else {})
        delivery = _visible(actor, locked.get(delivery_id), delivery_id)
        if delivery.acknowledged_at is not None:
            return delivery
        await store.acknowledge(conn, delivery_id, via, now)
        await timers.cancel_ids(conn, idle)
        await enqueue(conn, NotificationAcknowledged(
            delivery_id=delivery.id, user_id=delivery.user_id, idempotency_key=delivery.idempotency_key,
            kind=delivery.kind, via=via, acknowledged_at=now,  # type: ignore[arg-type]
        ))
        return replace(delivery, status="acknowledged", acknowledged_at=now, acknowledged_via=via)


async def is_deactivated(pool: asyncpg.Pool, user_id: UUID) -> bool:
    """Whether schedule's user snapshots say this user is deactivated; their tokens then stop working (401)."""
    return await store.is_deactivated(pool, user_id)


async def get_recipient(pool: asyncpg.Pool, user_id: UUID) -> asyncpg.Record:
    """notifier's own copy of a user."""
    return found(await store.get_recipient(pool, user_id), f"recipient {user_id}")


async def list_deliveries(pool: asyncpg.Pool, user_id: UUID, limit: int, offset: int) -> list[Delivery]:
    """A user's notifications, newest first."""
    return await store.list_deliveries(pool, user_id, limit=limit, offset=offset)
