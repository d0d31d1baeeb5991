"""A callrouter app over real PostgreSQL, with schedule's published data staged in its projections, Twilio's
webhooks signed as Twilio signs them, and a telephony provider that records what callrouter asked of it.

The recorder stands in for Twilio only in this in-process tier, where each webhook is posted by the test; the
integration tests play whole calls against the telephony simulator's real HTTP API.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient
from twilio.request_validator import RequestValidator

import services.callrouter.api
from services.callrouter import store
from services.callrouter.api.webhooks import DESK
from services.callrouter.providers import Dial
from services.callrouter.service import alerts, calls
from services.callrouter.service.calls import Desk, Urls
from services.callrouter.service.kinds import DIAL, ESCALATE, HANG_UP, LEG_DEADLINE, REDIRECT
from services.callrouter.settings import Settings
from shared.db import transaction
from shared.messages import (
    PolicyRule,
    PolicySnapshot,
    ScheduleTimeline,
    SupportHoursSnapshot,
    TimelineSegment,
    UserSnapshot,
    WeeklyWindow,
)
from shared.projection import replace_timelines
from shared.timers import Timer, TimerRunner
from shared.webhooks import TWILIO_WEBHOOK, TwilioWebhook
from tests.api.conftest import service_app

PUBLIC_URL = "https://hooks.example.test/cr"
AUTH_TOKEN = "callrouter-test-token-0123456789ab"


@dataclass
class RecordingPhones:
    """A `Telephony` that records what it was asked and answers like Twilio would."""

    dialed: list[tuple[Dial, str]] = field(default_factory=list)
    redirected: list[tuple[str, str]] = field(default_factory=list)
    hung_up: list[str] = field(default_factory=list)
    created: dict[str, datetime] = field(default_factory=dict)  # call id -> when it was placed
    # Raised right after the next dial was placed, as a process dying before it recorded the call would.
    die_after_dial: BaseException | None = None

    async def dial(self, leg: Dial) -> str:
        sid = "CA" + uuid.uuid4().hex
        self.dialed.append((leg, sid))
        self.created[sid] = datetime.now(UTC)
        if self.die_after_dial is not None:
            dying, self.die_after_dial = self.die_after_dial, None
            raise dying
        return sid

    async def placed(self, leg: Dial, since: datetime) -> list[str]:
        return [sid for d, sid in self.dialed
                if (d.to, d.from_) == (leg.to, leg.from_) and self.created[sid] >= since]

    async def redirect(self, call_id: str, url: str) -> None:
        self.redirected.append((call_id, url))

    async def hang_up(self, call_id: str) -> None:
        self.hung_up.append(call_id)

    async def close(self) -> None:
        return None


def callrouter_app(pool: asyncpg.Pool, database_url: str, desk: Desk) -> web.Application:
    app = service_app(services.callrouter.api.api, Settings(database_url=database_url), pool)
    app[DESK] = desk
    app[TWILIO_WEBHOOK] = TwilioWebhook(AUTH_TOKEN, PUBLIC_URL)
    return app


def new_desk(phones: RecordingPhones, seed: int = 7, pool: asyncpg.Pool | None = None) -> Desk:
    return Desk(Urls(PUBLIC_URL), phones, ring_timeout_s=20, rng=random.Random(seed),
                pool=(lambda: pool) if pool is not None else None)


def runner(pool: asyncpg.Pool, desk: Desk) -> TimerRunner:
    async def dial(conn: asyncpg.Connection, timer: Timer) -> None:
        await calls.dial(conn, desk, timer, datetime.now(UTC))

    async def redirect(conn: asyncpg.Connection, timer: Timer) -> None:
        await calls.redirect(conn, desk, timer, datetime.now(UTC))

    async def hang_up(conn: asyncpg.Connection, timer: Timer) -> None:
        await calls.hang_up(conn, desk, timer, datetime.now(UTC))

    async def escalate(conn: asyncpg.Connection, timer: Timer) -> None:
        await alerts.escalate(conn, timer, datetime.now(UTC))

    async def deadline(conn: asyncpg.Connection, timer: Timer) -> None:
        await calls.leg_deadline(conn, desk, timer, datetime.now(UTC))

    handlers = {DIAL: dial, REDIRECT: redirect, HANG_UP: hang_up, ESCALATE: escalate, LEG_DEADLINE: deadline}
    return TimerRunner(pool, "callrouter", handlers)


def random_number() -> str:
    return "+4930" + "".join(random.choice("0123456789") for _ in range(8))


def sign(url: str, params: dict[str, str]) -> str:
    return RequestValidator(AUTH_TOKEN).compute_signature(url, params)  # type: ignore[no-any-return]


async def webhook(
    client: TestClient[Any, Any], url: str, params: dict[str, str], *, signed: bool = True
) -> tuple[int, str]:
    """POST a Twilio webhook to `url` (a public URL callrouter gave out), signed as Twilio signs it."""
    parts = urlsplit(url)
    path = parts.path.removeprefix(urlsplit(PUBLIC_URL).path) + (f"?{parts.query}" if parts.query else "")
    headers = {"X-Twilio-Signature": sign(url, params)} if signed else {}
    async with client.post(path, data=params, headers=headers) as resp:
        return resp.status, await resp.text()


@dataclass
class World:
    """Users, a policy and a schedule as schedule would have published them."""

    pool: asyncpg.Pool
    users: list[uuid.UUID]
    phones_of: dict[uuid.UUID, str]
    policy_id: uuid.UUID
    schedule_id: uuid.UUID | None = None

    @classmethod
    async def build(
        cls,
        pool: asyncpg.Pool,
        n_users: int = 3,
        *,
        rules: list[list[int]] | None = None,
        on_call: int | None = None,
        repeat: int = 0,
        timeout_minutes: int = 5,
    ) -> World:
        """`rules`: each rule's users as indexes into the users; `on_call`: a schedule (on a last rule of its
        own) with that user on call now."""
        users = [uuid.uuid4() for _ in range(n_users)]
        phones = {u: random_number() for u in users}
        policy_id = uuid.uuid4()
        schedule_id = uuid.uuid4() if on_call is not None else None
        rules_in = [
            PolicyRule(timeout_minutes=timeout_minutes, user_ids=[users[i] for i in r])
            for r in (rules if rules is not None else [[0]])
        ]
        if schedule_id is not None:
            rules_in.append(PolicyRule(timeout_minutes=timeout_minutes, schedule_ids=[schedule_id]))
        async with transaction(pool) as conn:
            await store.upsert_responders(
                conn,
                [
                    UserSnapshot(
                        user_id=u,
                        version=1,
                        name=f"Responder {i}",
                        email=f"{u.hex}@example.com",
                        phone=phones[u],
                        time_zone="Europe/Berlin",
                        language="en-US",
                        role="responder",
                        active=True,
                    )
                    for i, u in enumerate(users)
                ],
            )
            await store.upsert_policies(
                conn, [PolicySnapshot(policy_id=policy_id, version=1, name="Ops", repeat=repeat, rules=rules_in)]
            )
            if schedule_id is not None and on_call is not None:
                now = datetime.now(UTC)
                start, end = now - timedelta(days=1), now + timedelta(days=1)
                await replace_timelines(
                    conn,
                    [
                        ScheduleTimeline(
                            schedule_id=schedule_id,
                            version=1,
                            name="Primary",
                            time_zone="Europe/Berlin",
                            horizon_start=start,
                            horizon_end=end,
                            segments=[TimelineSegment(start=start, end=end, user_id=users[on_call], source="layer")],
                        )
                    ],
                )
        return cls(pool, users, phones, policy_id, schedule_id)

    async def support_hours(self, windows: list[WeeklyWindow], holidays: list[date] | None = None) -> uuid.UUID:
        hours_id = uuid.uuid4()
        async with transaction(self.pool) as conn:
            await store.upsert_support_hours(
                conn,
                [
                    SupportHoursSnapshot(
                        support_hours_id=hours_id,
                        version=1,
                        name="Office",
                        time_zone="Europe/Berlin",
                        windows=windows,
                        holidays=holidays or [],
                    )
                ],
            )
        return hours_id

    def number_body(self, **extra: Any) -> dict[str, Any]:
        return {
            "number": random_number(),
            "name": "Emergency Hotline",
            "language": "en-US",
            "options": [
                {
                    "digit": "1",
                    "name": "Operations",
                    "policy_id": str(self.policy_id),
                    "keywords": ["operations", "outage"],
                }
            ],
        } | extra
