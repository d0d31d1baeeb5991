"""SQL of the callrouter service: one function per query, returning domain objects."""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import asdict, fields
from datetime import date, datetime
from typing import Any
from uuid import UUID

import asyncpg

from services.callrouter.domain import (
    Alert,
    Call,
    CallEvent,
    Leg,
    Option,
    Policy,
    Responder,
    RoutingNumber,
    Rule,
    SupportHours,
    WeeklyWindow,
)
from shared.messages import PolicySnapshot, SupportHoursSnapshot, UserSnapshot
from shared.projection import upsert_snapshots

CONFIG_VERSION = 1

# ------------------------------------------------------------------------------------------- projections


def _responder_row(user: UserSnapshot) -> dict[str, object]:
    return {
        "user_id": user.user_id,
        "name": user.name,
        "phone": user.phone,
        "language": user.language,
        "active": user.active,
        "role": user.role,
    }


async def upsert_responders(conn: asyncpg.Connection, users: Sequence[UserSnapshot]) -> list[Hashable]:
    """Keep the newest snapshot of each of these users (distinct ids) in one statement; the ids that changed."""
    return await upsert_snapshots(conn, "responders", "user_id", [(u.version, _responder_row(u)) for u in users])


def _policy_row(policy: PolicySnapshot) -> dict[str, object]:
    return {
        "policy_id": policy.policy_id,
        "name": policy.name,
        "repeat": policy.repeat,
        "rules": [r.model_dump(mode="json") for r in policy.rules],
    }


async def upsert_policies(conn: asyncpg.Connection, policies: Sequence[PolicySnapshot]) -> list[Hashable]:
    return await upsert_snapshots(conn, "policies", "policy_id", [(p.version, _policy_row(p)) for p in policies])


def _hours_row(hours: SupportHoursSnapshot) -> dict[str, object]:
    return {
        "support_hours_id": hours.support_hours_id,
        "name": hours.name,
        "time_zone": hours.time_zone,
        "windows": [w.model_dump(mode="json") for w in hours.windows],
        "holidays": list(hours.holidays),
    }


async def upsert_support_hours(conn: asyncpg.Connection, many: Sequence[SupportHoursSnapshot]) -> list[Hashable]:
    rows = [(h.version, _hours_row(h)) for h in many]
    return await upsert_snapshots(conn, "support_hours", "support_hours_id", rows)


async def on_call(conn: asyncpg.Connection, schedule_ids: Iterable[UUID], at: datetime) -> dict[UUID, UUID | None]:
    """Who each schedule's newest published timeline has on call at `at` (absent: nobody, or not published)."""
    rows = await conn.fetch(
        """SELECT schedule_id, user_id FROM timeline_shifts
           WHERE schedule_id = ANY($1::uuid[]) AND starts_at <= $2 AND ends_at > $2""",
        list(set(schedule_ids)),
        at,
    )
    return {r["schedule_id"]: r["user_id"] for r in rows}


async def responders(conn: asyncpg.Connection, user_ids: Iterable[UUID]) -> dict[UUID, Responder]:
    rows = await conn.fetch(
        "SELECT user_id, name, phone, language, active FROM responders WHERE user_id = ANY($1::uuid[])",
        list(set(user_ids)),
    )
    return {r["user_id"]: Responder(r["user_id"], r["name"], r["phone"], r["language"], r["active"]) for r in rows}


async def is_deactivated(conn: asyncpg.Connection, user_id: UUID) -> bool:
    return bool(await conn.fetchval("SELECT NOT active FROM responders WHERE user_id = $1", user_id))


def _policy(row: asyncpg.Record) -> Policy:
    rules = tuple(
        Rule(
            r["timeout_minutes"],
            tuple(UUID(u) for u in r.get("user_ids", [])),
            tuple(UUID(s) for s in r.get("schedule_ids", [])),
        )
        for r in json.loads(row["rules"])
    )
    return Policy(row["policy_id"], row["name"], row["repeat"], rules)


async def policy(conn: asyncpg.Connection, policy_id: UUID) -> Policy | None:
    row = await conn.fetchrow(
        "SELECT policy_id, name, repeat, rules::text AS rules FROM policies WHERE policy_id = $1", policy_id
    )
    return _policy(row) if row else None


async def policy_names(conn: asyncpg.Connection, policy_ids: Iterable[UUID]) -> dict[UUID, str]:
    rows = await conn.fetch(
        "SELECT policy_id, name FROM policies WHERE policy_id = ANY($1::uuid[])", list(set(policy_ids))
    )
    return {r["policy_id"]: r["name"] for r in rows}


async def known_support_hours(conn: asyncpg.Connection, ids: Iterable[UUID]) -> set[UUID]:
    rows = await conn.fetch(
        "SELECT support_hours_id FROM support_hours WHERE support_hours_id = ANY($1::uuid[])", list(set(ids))
    )
    return {r["support_hours_id"] for r in rows}


async def support_hours(conn: asyncpg.Connection, support_hours_id: UUID) -> SupportHours | None:
    row = await conn.fetchrow(
        "SELECT time_zone, windows::text AS windows, holidays FROM support_hours WHERE support_hours_id = $1",
        support_hours_id,
    )
    if row is None:
        return None
    windows = tuple(WeeklyWindow(tuple(w["days"]), w["start"], w["end"]) for w in json.loads(row["windows"]))
    holidays: list[date] = list(row["holidays"])
    return SupportHours(support_hours_id, row["time_zone"], windows, frozenset(holidays))


# ----------------------------------------------------------------------------------------- routing numbers


def _options_out(options: Sequence[Option]) -> list[dict[str, Any]]:
    return [
        {"digit": o.digit, "name": o.name, "policy_id": str(o.policy_id), "keywords": list(o.keywords)} for o in options
    ]


def _options_in(items: list[dict[str, Any]]) -> tuple[Option, ...]:
    return tuple(Option(o["digit"], o["name"], UUID(o["policy_id"]), tuple(o.get("keywords", ()))) for o in items)


_PLAIN = (
    "name",
    "language",
    "greeting",
    "only_greeting",
    "voicemail",
    "voicemail_only",
    "outside_hours",
    "hold_music_url",
    "greeting_audio_url",
    "voicemail_audio_url",
)


def _config(n: RoutingNumber) -> dict[str, Any]:
    config: dict[str, Any] = {"v": CONFIG_VERSION, **{k: getattr(n, k) for k in _PLAIN}}
    config["options"] = _options_out(n.options)
    config["outside_options"] = _options_out(n.outside_options)
    config["support_hours_id"] = str(n.support_hours_id) if n.support_hours_id else None
    return config


def _number(row: asyncpg.Record) -> RoutingNumber:
    config = json.loads(row["config"])
    known = {f.name for f in fields(RoutingNumber)}
    plain = {k: v for k, v in config.items() if k in _PLAIN and k in known}
    return RoutingNumber(
        id=row["number_id"],
        number=row["number"],
        options=_options_in(config.get("options", [])),
        outside_options=_options_in(config.get("outside_options", [])),
        support_hours_id=UUID(config["support_hours_id"]) if config.get("support_hours_id") else None,
        version=row["version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        **plain,
    )


_NUMBER_COLUMNS = "number_id, number, version, config::text AS config, created_at, updated_at"


async def insert_number(conn: asyncpg.Connection, n: RoutingNumber, now: datetime) -> RoutingNumber | None:
    """Store a new routing number; None when its phone number is taken."""
    row = await conn.fetchrow(
        f"""INSERT INTO routing_numbers (number_id, number, version, config, created_at, updated_at)
            VALUES ($1, $2, 1, $3::jsonb, $4, $4) ON CONFLICT (number) DO NOTHING RETURNING {_NUMBER_COLUMNS}""",
        n.id,
        n.number,
        _config(n),
        now,
    )
    return _number(row) if row else None


async def update_number(conn: asyncpg.Connection, n: RoutingNumber, now: datetime) -> RoutingNumber:
    row = await conn.fetchrow(
        f"""UPDATE routing_numbers SET number = $2, version = version + 1, config = $3::jsonb, updated_at = $4
            WHERE number_id = $1 RETURNING {_NUMBER_COLUMNS}""",
        n.id,
        n.number,
        _config(n),
        now,
    )
    return _number(row)


async def number_taken(conn: asyncpg.Connection, number: str, other_than: UUID) -> UUID | None:
    found: UUID | None = await conn.fetchval(
        "SELECT number_id FROM routing_numbers WHERE number = $1 AND number_id <> $2", number, other_than
    )
    return found


async def get_number(conn: asyncpg.Connection, number_id: UUID, *, lock: bool = False) -> RoutingNumber | None:
    row = await conn.fetchrow(
        f"SELECT {_NUMBER_COLUMNS} FROM routing_numbers WHERE number_id = $1" + (" FOR UPDATE" if lock else ""),
        number_id,
    )
    return _number(row) if row else None


async def number_by_phone(conn: asyncpg.Connection, number: str) -> RoutingNumber | None:
    row = await conn.fetchrow(f"SELECT {_NUMBER_COLUMNS} FROM routing_numbers WHERE number = $1", number)
    return _number(row) if row else None


async def list_numbers(conn: asyncpg.Connection, limit: int, offset: int) -> list[RoutingNumber]:
    rows = await conn.fetch(
        f"SELECT {_NUMBER_COLUMNS} FROM routing_numbers ORDER BY number LIMIT $1 OFFSET $2", limit, offset
    )
    return [_number(r) for r in rows]


async def delete_number(conn: asyncpg.Connection, number_id: UUID) -> bool:
    status: str = await conn.execute("DELETE FROM routing_numbers WHERE number_id = $1", number_id)
    return status == "DELETE 1"


# ------------------------------------------------------------------------------------------------ calls
_CALL = (
    "call_id, call_sid, number_id, from_number, to_number, state, started_at, menu_attempts, option_digit, "
    "policy_id, plan, position, connected_user, caller_gone, alert_id, ended_at"
)


def _call(row: asyncpg.Record) -> Call:
    values = dict(row)
    values["id"] = values.pop("call_id")
    values["plan"] = list(values["plan"])
    return Call(**values)


async def insert_call(conn: asyncpg.Connection, call: Call) -> Call | None:
    """Store a new call; None when one with its CallSid exists (a repeated webhook)."""
    row = await conn.fetchrow(
        f"""INSERT INTO calls (call_id, call_sid, number_id, from_number, to_number, state, started_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (call_sid) DO NOTHING RETURNING {_CALL}""",
        call.id,
        call.call_sid,
        call.number_id,
        call.from_number,
        call.to_number,
        call.state,
        call.started_at,
    )
    return _call(row) if row else None


async def call_by_sid(conn: asyncpg.Connection, call_sid: str, *, lock: bool = False) -> Call | None:
    row = await conn.fetchrow(
        f"SELECT {_CALL} FROM calls WHERE call_sid = $1" + (" FOR UPDATE" if lock else ""), call_sid
    )
    return _call(row) if row else None


async def get_call(conn: asyncpg.Connection, call_id: UUID, *, lock: bool = False) -> Call | None:
    row = await conn.fetchrow(
        f"SELECT {_CALL} FROM calls WHERE call_id = $1" + (" FOR UPDATE" if lock else ""), call_id
    )
    return _call(row) if row else None


async def save_call(conn: asyncpg.Connection, c: Call) -> None:
    await conn.execute(
        """UPDATE calls SET state = $2, menu_attempts = $3, option_digit = $4, policy_id = $5, plan = $6,
                  position = $7, connected_user = $8, caller_gone = $9, alert_id = $10, ended_at = $11
           WHERE call_id = $1""",
        c.id,
        c.state,
        c.menu_attempts,
        c.option_digit,
        c.policy_id,
        c.plan,
        c.position,
        c.connected_user,
        c.caller_gone,
        c.alert_id,
        c.ended_at,
    )


async def add_events(conn: asyncpg.Connection, call_id: UUID, events: Sequence[CallEvent]) -> None:
    if events:
        await conn.executemany(
            "INSERT INTO call_events (call_id, at, what, user_id, detail) VALUES ($1, $2, $3, $4, $5)",
            [(call_id, e.at, e.what, e.user_id, e.detail) for e in events],
        )


async def events(conn: asyncpg.Connection, call_id: UUID) -> list[CallEvent]:
    rows = await conn.fetch("SELECT at, what, user_id, detail FROM call_events WHERE call_id = $1 ORDER BY id", call_id)
    return [CallEvent(r["at"], r["what"], r["user_id"], r["detail"]) for r in rows]


async def users_of_events(conn: asyncpg.Connection, call_id: UUID, what: str) -> list[UUID]:
    """The users the call's events of this kind name, each once, in the order they first appear."""
    rows = await conn.fetch(
        """SELECT user_id FROM call_events WHERE call_id = $1 AND what = $2 AND user_id IS NOT NULL
           GROUP BY user_id ORDER BY min(id)""",
        call_id,
        what,
    )
    return [r["user_id"] for r in rows]


# ------------------------------------------------------------------------------------------------- legs
_LEG = "leg_id, call_id, kind, user_id, phone, state, created_at, call_sid, ended_at"


def _leg(row: asyncpg.Record | dict[str, Any]) -> Leg:
    values = dict(row)
    values["id"] = values.pop("leg_id")
    return Leg(**values)


async def insert_leg(conn: asyncpg.Connection, leg: Leg) -> None:
    await conn.execute(
        "INSERT INTO legs (leg_id, call_id, kind, user_id, phone, state, created_at) VALUES ($1,$2,$3,$4,$5,$6,$7)",
        leg.id,
        leg.call_id,
        leg.kind,
        leg.user_id,
        leg.phone,
        leg.state,
        leg.created_at,
    )


async def get_leg(conn: asyncpg.Connection, leg_id: UUID) -> Leg | None:
    row = await conn.fetchrow(f"SELECT {_LEG} FROM legs WHERE leg_id = $1", leg_id)
    return _leg(row) if row else None


async def legs_of(conn: asyncpg.Connection, call_id: UUID) -> list[Leg]:
    rows = await conn.fetch(f"SELECT {_LEG} FROM legs WHERE call_id = $1 ORDER BY created_at, leg_id", call_id)
    return [_leg(r) for r in rows]


async def current_leg(conn: asyncpg.Connection, call_id: UUID) -> Leg | None:
    """The responder leg dialed last for a call."""
    row = await conn.fetchrow(
        f"SELECT {_LEG} FROM legs WHERE call_id = $1 AND kind = 'responder' ORDER BY created_at DESC LIMIT 1", call_id
    )
    return _leg(row) if row else None


async def leg_to_dial(conn: asyncpg.Connection, leg_id: UUID) -> tuple[Leg, datetime | None] | None:
    """The leg, and when an earlier attempt to place it began if that attempt never recorded how it went."""
    row = await conn.fetchrow(
        f"SELECT {_LEG}, at AS intent_at FROM legs LEFT JOIN dial_intents USING (leg_id) WHERE leg_id = $1", leg_id
    )
    if row is None:
        return None
    values = dict(row)
    began: datetime | None = values.pop("intent_at")
    return _leg(values), began


async def note_dial_intent(pool: asyncpg.Pool, leg_id: UUID, at: datetime) -> None:
    """Committed on its own, before the provider is asked (see migration 0004)."""
    await pool.execute(
        "INSERT INTO dial_intents (leg_id, at) VALUES ($1, $2) ON CONFLICT (leg_id) DO UPDATE SET at = EXCLUDED.at",
        leg_id, at,
    )


async def forget_dial_intent(conn: asyncpg.Connection, leg_id: UUID) -> None:
    await conn.execute("DELETE FROM dial_intents WHERE leg_id = $1", leg_id)


async def call_sids_to(conn: asyncpg.Connection, phone: str, since: datetime) -> set[str]:
    """The provider ids of legs placed to `phone` since then (the calls that are somebody's already)."""
    rows = await conn.fetch(
        "SELECT call_sid FROM legs WHERE phone = $1 AND created_at >= $2 AND call_sid IS NOT NULL", phone, since
    )
    return {r["call_sid"] for r in rows}


async def save_leg(conn: asyncpg.Connection, leg: Leg) -> None:
    await conn.execute(
        "UPDATE legs SET state = $2, call_sid = $3, ended_at = $4 WHERE leg_id = $1",
        leg.id,
        leg.state,
        leg.call_sid,
        leg.ended_at,
    )


# ----------------------------------------------------------------------------------------------- alerts
_ALERT = (
    "alert_id, call_id, number_id, policy_id, status, summary, caller, created_at, updated_at, voicemail_url, "
    "voicemail_s, escalating, round, rule, acknowledged_by, acknowledged_at, resolved_by, resolved_at, version"
)


def _alert(row: asyncpg.Record) -> Alert:
    values = dict(row)
    values["id"] = values.pop("alert_id")
    return Alert(**values)


async def insert_alert(conn: asyncpg.Connection, a: Alert) -> None:
    values = asdict(a)
    values["alert_id"] = values.pop("id")
    columns = list(values)
    await conn.execute(
        f"INSERT INTO alerts ({', '.join(columns)}) VALUES ({', '.join(f'${i + 1}' for i in range(len(columns)))})",
        *values.values(),
    )


async def called_number(conn: asyncpg.Connection, call_id: UUID) -> str:
    """The routing number a call was made to."""
    number: str = await conn.fetchval("SELECT to_number FROM calls WHERE call_id = $1", call_id)
    return number


async def get_alert(conn: asyncpg.Connection, alert_id: UUID, *, lock: bool = False) -> Alert | None:
    row = await conn.fetchrow(
        f"SELECT {_ALERT} FROM alerts WHERE alert_id = $1" + (" FOR UPDATE" if lock else ""), alert_id
    )
    return _alert(row) if row else None


async def save_alert(conn: asyncpg.Connection, a: Alert) -> str:
    """Store the alert's state; the routing number its call was made to (for the event), in the same round trip."""
    number: str = await conn.fetchval(
        """UPDATE alerts SET status = $2, voicemail_url = $3, voicemail_s = $4, escalating = $5, round = $6,
                  rule = $7, acknowledged_by = $8, acknowledged_at = $9, resolved_by = $10, resolved_at = $11,
                  updated_at = $12, version = $13
           WHERE alert_id = $1
           RETURNING (SELECT to_number FROM calls WHERE calls.call_id = alerts.call_id)""",
        a.id,
        a.status,
        a.voicemail_url,
        a.voicemail_s,
        a.escalating,
        a.round,
        a.rule,
        a.acknowledged_by,
        a.acknowledged_at,
        a.resolved_by,
        a.resolved_at,
        a.updated_at,
        a.version,
    )
    return number


async def alerts_after(conn: asyncpg.Connection, after: tuple[datetime, UUID] | None, limit: int) -> list[Alert]:
    """Alerts oldest first, after the (created_at, id) given."""
    rows = await conn.fetch(
        f"""SELECT {_ALERT} FROM alerts
            WHERE $1::timestamptz IS NULL OR (created_at, alert_id) > ($1, $2)
            ORDER BY created_at, alert_id LIMIT $3""",
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    return [_alert(r) for r in rows]


# Who may see an alert besides admins: people on its policy (a rule's users, or anyone holding a shift on a rule's
# schedules), and anyone the call or its escalation reached.
_VISIBLE = """(
    EXISTS (SELECT 1 FROM policies p, jsonb_array_elements(p.rules) r
            WHERE p.policy_id = a.policy_id
              AND (r->'user_ids' ? ($1::uuid)::text
                   OR EXISTS (SELECT 1 FROM timeline_shifts t
                              WHERE t.user_id = $1::uuid
                                AND t.schedule_id::text IN (SELECT jsonb_array_elements_text(r->'schedule_ids')))))
    OR a.acknowledged_by = $1::uuid
    OR EXISTS (SELECT 1 FROM legs l WHERE l.call_id = a.call_id AND l.user_id = $1::uuid)
    OR EXISTS (SELECT 1 FROM call_events e WHERE e.call_id = a.call_id AND e.user_id = $1::uuid))"""


async def visible(conn: asyncpg.Connection, alert_id: UUID, user_id: UUID) -> bool:
    return bool(await conn.fetchval(f"SELECT {_VISIBLE} FROM alerts a WHERE a.alert_id = $2", user_id, alert_id))


async def list_alerts(
    conn: asyncpg.Connection,
    viewer: UUID | None,
    statuses: Sequence[str],
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> list[Alert]:
    """Newest first; `viewer` None: every alert (admins); otherwise those the viewer may see."""
    where = [
        "($2::text[] = '{}' OR a.status = ANY($2::text[]))",
        "($3::timestamptz IS NULL OR (a.created_at, a.alert_id) < ($3, $4))",
    ]
    where.append(f"($1::uuid IS NULL OR {_VISIBLE})")
    rows = await conn.fetch(
        f"""SELECT {", ".join("a." + c.strip() for c in _ALERT.split(","))} FROM alerts a
            WHERE {" AND ".join(where)} ORDER BY a.created_at DESC, a.alert_id DESC LIMIT $5""",
        viewer,
        list(statuses),
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    return [_alert(r) for r in rows]
