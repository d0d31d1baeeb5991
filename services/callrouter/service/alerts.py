"""Call-routing alerts: one per routed call. Nobody accepting the call escalates it by the policy's regular
rules (rule by rule, honouring the escalation timeouts and repeats) until someone acknowledges it, in the app
or by acknowledging the page notifier delivered; then (or when it is resolved) notifier withdraws everyone's
pages. The acknowledger can ask to be called and bridged to the caller."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID, uuid4

import asyncpg

from services.callrouter import store
from services.callrouter.domain import Alert, AlertStatus, CallEvent, Leg, after, escalation_step
from services.callrouter.service.kinds import DIAL, ESCALATE
from shared import timers
from shared.auth import Principal
from shared.db import transaction
from shared.errors import Conflict, InvalidInput, NotFound
from shared.messages import CallAlertChanged, SendNotification, WithdrawNotifications
from shared.outbox import enqueue, enqueue_all

FIRST_STEP = {"round": 0, "rule": 0}
KEY_PREFIX = "call-alert:"
PAGED = "paged"  # the call event naming each person an escalation step paged


@dataclass(frozen=True)
class AlertView:
    alert: Alert
    events: list[CallEvent]
    from_number: str
    to_number: str
    connected_user: UUID | None


def changed_event(alert: Alert, routing_number: str) -> CallAlertChanged:
    """The event publishing the alert's current state."""
    return CallAlertChanged(
        alert_id=alert.id,
        version=alert.version,
        call_id=alert.call_id,
        routing_number=routing_number,
        caller=alert.caller,
        policy_id=alert.policy_id,
        status=alert.status,
        summary=alert.summary,
        voicemail_url=alert.voicemail_url,
        escalating=alert.escalating,
        acknowledged_by=alert.acknowledged_by,
        acknowledged_at=alert.acknowledged_at,
        resolved_by=alert.resolved_by,
        resolved_at=alert.resolved_at,
    )


async def open_alert(conn: asyncpg.Connection, alert: Alert, routing_number: str) -> None:
    """Store a new alert and publish it, in the caller's transaction."""
    await store.insert_alert(conn, alert)
    await enqueue(conn, changed_event(alert, routing_number))


async def save(conn: asyncpg.Connection, alert: Alert) -> None:
    """Store a change of the alert and publish its new state, in the caller's transaction."""
    alert.version += 1
    await enqueue(conn, changed_event(alert, await store.save_alert(conn, alert)))


def alert_of_key(idempotency_key: str) -> UUID | None:
    """The alert a notification's idempotency key is about, if it is one of ours."""
    if not idempotency_key.startswith(KEY_PREFIX):
        return None
    try:
        return UUID(idempotency_key[len(KEY_PREFIX) :].split(":", 1)[0])
    except ValueError:
        return None


async def _visible_alert(conn: asyncpg.Connection, actor: Principal, alert_id: UUID, *, lock: bool = False) -> Alert:
    alert = await store.get_alert(conn, alert_id, lock=lock)
    # someone who may not see it learns nothing, not even that it exists
    if alert is None or not (actor.is_admin or await store.visible(conn, alert_id, actor.user_id)):
        raise NotFound(f"alert {alert_id}")
    return alert


async def view(pool: asyncpg.Pool, actor: Principal, alert_id: UUID) -> AlertView:
    async with pool.acquire() as conn:
        alert = await _visible_alert(conn, actor, alert_id)
        call = await store.get_call(conn, alert.call_id)
        assert call is not None
        return AlertView(
            alert, await store.events(conn, alert.call_id), call.from_number, call.to_number, call.connected_user
        )


async def listing(
    pool: asyncpg.Pool,
    actor: Principal,
    statuses: tuple[AlertStatus, ...],
    after_key: tuple[datetime, UUID] | None,
    limit: int,
) -> list[Alert]:
    async with pool.acquire() as conn:
        viewer = None if actor.is_admin else actor.user_id
        return await store.list_alerts(conn, viewer, statuses, after_key, limit)


async def acknowledge_locked(conn: asyncpg.Connection, alert_id: UUID, user_id: UUID, now: datetime, how: str) -> Alert:
    """Acknowledge within a transaction whose caller holds the alert's timers; escalation stops and the pages
    still running are withdrawn. Acknowledging an acknowledged alert changes nothing; a resolved one is a
    conflict."""
    alert = await store.get_alert(conn, alert_id, lock=True)
    if alert is None:
        raise NotFound(f"alert {alert_id}")
    if alert.status == "resolved":
        raise Conflict("the alert is resolved", state=alert.status)
    if alert.status == "acknowledged":
        return alert
    alert.status, alert.acknowledged_by, alert.acknowledged_at = "acknowledged", user_id, now
    alert.escalating, alert.updated_at = False, now
    await save(conn, alert)
    await timers.cancel(conn, ESCALATE, str(alert.id))
    await store.add_events(conn, alert.call_id, [CallEvent(now, "acknowledged", user_id, how)])
    await _withdraw_pages(conn, alert, "the alert was acknowledged")
    return alert


async def acknowledge(
    pool: asyncpg.Pool, actor: Principal | None, alert_id: UUID, user_id: UUID, now: datetime, how: str
) -> Alert:
    """`user_id` acknowledges; `actor` None: the acknowledgement came from notifier (the page was acknowledged)."""
    async with transaction(pool) as conn:
        await timers.hold(conn, str(alert_id))
        if actor is not None:
            await _visible_alert(conn, actor, alert_id)
        return await acknowledge_locked(conn, alert_id, user_id, now, how)


async def acknowledge_from_page(pool: asyncpg.Pool, alert_id: UUID, user_id: UUID, at: datetime, via: str) -> None:
    """notifier says `user_id` acknowledged a page of this alert; a resolved or unknown alert is left alone."""
    try:
        await acknowledge(pool, None, alert_id, user_id, at, f"acknowledged the page ({via})")
    except (Conflict, NotFound):
        pass


async def resolve(pool: asyncpg.Pool, actor: Principal, alert_id: UUID, now: datetime) -> Alert:
    """Close the alert (escalation stops, and the pages of an open one still running are withdrawn); resolving
    again changes nothing."""
    async with transaction(pool) as conn:
        await timers.hold(conn, str(alert_id))
        alert = await _visible_alert(conn, actor, alert_id, lock=True)
        if alert.status == "resolved":
            return alert
        paging = alert.status == "open"  # an acknowledged alert's pages were withdrawn then
        alert.status, alert.resolved_by, alert.resolved_at = "resolved", actor.user_id, now
        alert.escalating, alert.updated_at = False, now
        await save(conn, alert)
        await timers.cancel(conn, ESCALATE, str(alert.id))
        await store.add_events(conn, alert.call_id, [CallEvent(now, "resolved", actor.user_id)])
        if paging:
            await _withdraw_pages(conn, alert, "the alert was resolved")
        return alert


async def _withdraw_pages(conn: asyncpg.Connection, alert: Alert, reason: str) -> None:
    """The alert no longer needs anyone: notifier stops what it still runs of the alert's pages (the voice call
    a few minutes after a push) for everyone paged so far, the one who settled it included (their pages of
    earlier rounds), in the transaction that settled it. Pushes already on the phones stay."""
    await enqueue_all(
        conn,
        [
            WithdrawNotifications(user_id=u, key_prefix=f"{KEY_PREFIX}{alert.id}:", reason=reason)
            for u in await store.users_of_events(conn, alert.call_id, PAGED)
        ],
    )


async def call_back(pool: asyncpg.Pool, actor: Principal, alert_id: UUID, now: datetime) -> Alert:
    """The acknowledger asks to be connected to the caller: they are dialed first, then the caller is dialed
    and bridged; both legs land in the call's timeline."""
    async with transaction(pool) as conn:
        alert = await _visible_alert(conn, actor, alert_id, lock=True)
        if alert.status != "acknowledged" or alert.acknowledged_by != actor.user_id:
            raise Conflict("only the one who acknowledged the alert can call the caller back", state=alert.status)
        call = await store.get_call(conn, alert.call_id, lock=True)
        assert call is not None
        if any(leg.kind == "callback" and not leg.ended for leg in await store.legs_of(conn, call.id)):
            raise Conflict("a callback is already in progress", state=alert.status)
        me = (await store.responders(conn, [actor.user_id])).get(actor.user_id)
        if me is None or not me.phone:
            raise InvalidInput("user", "you have no phone number to be called on")
        leg = Leg(uuid4(), call.id, "callback", actor.user_id, me.phone, "requested", now)
        await store.insert_leg(conn, leg)
        await timers.schedule(conn, DIAL, str(leg.id), now)
        await store.add_events(conn, call.id, [CallEvent(now, "callback requested", actor.user_id, call.from_number)])
        return alert


async def escalate(
    conn: asyncpg.Connection, timer: timers.Timer, now: datetime, minute: timedelta = timedelta(minutes=1)
) -> None:
    """One escalation step of an open alert: page the rule's responders now (push, then voice by each one's
    preferences, through notifier) and arm the next rule after this one's timeout, counted in `minute`s
    (`DELAY_MINUTE_S`)."""
    alert = await store.get_alert(conn, UUID(timer.key), lock=True)
    if alert is None or alert.status != "open":
        return
    round_, rule = int(timer.payload.get("round", 0)), int(timer.payload.get("rule", 0))
    policy = await store.policy(conn, alert.policy_id)
    step = None
    if policy is not None:
        schedules = {s for r in policy.rules for s in r.schedule_ids}
        step = escalation_step(policy, round_, rule, await store.on_call(conn, schedules, now), now, minute)
    if policy is None or step is None:
        alert.escalating, alert.updated_at = False, now
        await save(conn, alert)
        why = "the policy is not known" if policy is None else "every rule was paged; nobody acknowledged"
        await store.add_events(conn, alert.call_id, [CallEvent(now, "escalation ended", detail=why)])
        return
    people = await store.responders(conn, step.targets)
    paged = [u for u in step.targets if u in people and people[u].active]
    body = alert.summary.rstrip(".") + ". A voicemail was left." if alert.voicemail_url else alert.summary
    await enqueue_all(
        conn,
        [
            SendNotification(
                user_id=u,
                idempotency_key=f"{KEY_PREFIX}{alert.id}:{round_}:{rule}:{u}",
                title="Missed call",
                body=body,
                urgency="high",
                kind="call_alert",
                acknowledgeable=True,
                data={
                    "alert_id": str(alert.id),
                    "caller": alert.caller,
                    **({"voicemail_url": alert.voicemail_url} if alert.voicemail_url else {}),
                },
            )
            for u in paged
        ],
    )
    alert.escalating, alert.round, alert.rule, alert.updated_at = step.next_at is not None, round_, rule, now
    await save(conn, alert)
    where = f"rule {rule + 1}, round {round_ + 1}"
    await store.add_events(
        conn,
        alert.call_id,
        [CallEvent(now, PAGED, u, where) for u in paged] or [CallEvent(now, "paged nobody", detail=where)],
    )
    if step.next_at is not None:
        next_round, next_rule = after(policy, round_, rule)
        await timers.schedule(conn, ESCALATE, str(alert.id), step.next_at, {"round": next_round, "rule": next_rule})
