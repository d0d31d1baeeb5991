"""Driving schedule and coverage as their users do, over HTTP, and reading what the broker carried."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from shared.testing import eventually
from shared.topics import NOTIFICATION_COMMANDS
from tests.conftest import token
from tests.e2e.http import call

ADMIN = token(uuid.uuid4(), "admin")


class Locates(Protocol):
    def url(self, service: str, path: str) -> str: ...


@dataclass
class Urls:
    """Where each service listens; a restarted process gets a new port, so this is mutable."""

    bases: dict[str, str]

    def url(self, service: str, path: str) -> str:
        return self.bases[service] + path


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class World:
    """Users `a` (requester) and `b` (teammate) sharing a team, `c` outside it, and one daily UTC rotation
    [a, b] handing over at `handoff`."""

    svc: Locates
    users: dict[str, str] = field(default_factory=dict)
    schedule_id: str = ""
    team_id: str = ""
    handoff: datetime = field(default_factory=lambda: datetime.now(UTC))

    def headers(self, who: str) -> dict[str, str]:
        return token(self.users[who], "responder")

    async def user(self, name: str) -> str:
        body = {"name": f"{name.upper()}-{uuid.uuid4().hex[:6]}", "email": f"{uuid.uuid4().hex}@example.com"}
        status, user = await call(
            "POST", self.svc.url("schedule", "/v1/users"), json=body | {"time_zone": "UTC"}, headers=ADMIN
        )
        assert status == 201, user
        self.users[name] = user["id"]
        return str(user["id"])

    async def people(self) -> None:
        for name in ("a", "b", "c"):
            await self.user(name)
        body = {"name": f"T-{uuid.uuid4().hex[:8]}", "member_ids": [self.users["a"], self.users["b"]]}
        status, team = await call("POST", self.svc.url("schedule", "/v1/teams"), json=body, headers=ADMIN)
        assert status == 201, team
        self.team_id = team["id"]

    async def rotation(self, handoff: datetime) -> None:
        self.handoff = handoff
        layer = {
            "users": [self.users["a"], self.users["b"]],
            "length": 1,
            "unit": "days",
            "handoff": handoff.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        }
        body = {"name": f"S-{uuid.uuid4().hex[:8]}", "time_zone": "UTC", "team_id": self.team_id, "layers": [layer]}
        status, schedule = await call("POST", self.svc.url("schedule", "/v1/schedules"), json=body, headers=ADMIN)
        assert status == 201, schedule
        self.schedule_id = schedule["id"]

    async def coverable(self, who: str, start: datetime, end: datetime) -> tuple[int, list[dict[str, Any]]]:
        status, body = await call(
            "GET",
            self.svc.url("coverage", "/v1/coverage-requests/shifts"),
            params={"from": iso(start), "to": iso(end)},
            headers=self.headers(who),
        )
        mine = [s for s in body if s["schedule_id"] == self.schedule_id] if status == 200 else body
        return status, mine

    async def shifts_in_coverage(self, who: str, start: datetime, end: datetime, n: int) -> list[dict[str, Any]]:
        """`who`'s shifts on this schedule in [start, end) as coverage lists them, once it lists `n`: the
        timeline has come over Kafka into coverage's projection."""

        async def listed() -> list[dict[str, Any]]:
            status, mine = await self.coverable(who, start, end)
            assert status == 200, mine
            return mine if len(mine) == n else []

        return await eventually(listed, timeout_s=30, interval_s=0.2, what=f"coverage lists {n} shifts of {who}")

    async def ask(
        self, shifts: Sequence[dict[str, Any]], period: tuple[datetime, datetime], **extra: Any
    ) -> dict[str, Any]:
        """`a` asks `b` to cover `shifts`. A 422 on the recipient only means schedule's user or team snapshot
        has not reached coverage yet: asked again until it has."""
        body = {
            "recipient_ids": [self.users["b"]],
            "start": iso(period[0]),
            "end": iso(period[1]),
            "shifts": [{"schedule_id": s["schedule_id"], "start": s["start"], "end": s["end"]} for s in shifts],
            "message": "Could you take these? Family wedding.",
        } | extra

        async def created() -> dict[str, Any]:
            status, answer = await call(
                "POST", self.svc.url("coverage", "/v1/coverage-requests"), json=body, headers=self.headers("a")
            )
            if status == 422 and {e["field"] for e in answer["errors"]} == {"recipient_ids.0"}:
                return {}
            assert status == 201, answer
            return answer  # type: ignore[no-any-return]

        return await eventually(created, timeout_s=30, interval_s=0.2, what="request created")

    async def request(self, request_id: str, who: str = "a") -> dict[str, Any]:
        status, body = await call(
            "GET", self.svc.url("coverage", f"/v1/coverage-requests/{request_id}"), headers=self.headers(who)
        )
        assert status == 200, body
        return body  # type: ignore[no-any-return]

    async def reaches(self, request_id: str, status: str, timeout_s: float = 30) -> dict[str, Any]:
        async def there() -> dict[str, Any]:
            body = await self.request(request_id)
            return body if body["status"] == status else {}

        return await eventually(there, timeout_s=timeout_s, interval_s=0.2, what=f"request {status}")

    async def accept(self, request_id: str) -> tuple[int, dict[str, Any]]:
        return await call(
            "POST",
            self.svc.url("coverage", f"/v1/coverage-requests/{request_id}/accept"),
            json={},
            headers=self.headers("b"),
        )

    async def badge(self, who: str) -> int:
        status, body = await call(
            "GET", self.svc.url("coverage", "/v1/coverage-requests/badge"), headers=self.headers(who)
        )
        assert status == 200, body
        return int(body["pending"])

    async def box(self, who: str, box: str) -> list[dict[str, Any]]:
        status, body = await call(
            "GET", self.svc.url("coverage", "/v1/coverage-requests"), params={"box": box}, headers=self.headers(who)
        )
        assert status == 200, body
        return body["items"]  # type: ignore[no-any-return]

    async def on_call(self, instant: datetime) -> dict[str, Any]:
        status, body = await call(
            "GET",
            self.svc.url("schedule", f"/v1/schedules/{self.schedule_id}/oncall"),
            params={"at": iso(instant)},
            headers=self.headers("a"),
        )
        assert status == 200, body
        return body  # type: ignore[no-any-return]


def middle(shift: dict[str, Any]) -> datetime:
    start, end = at(shift["start"]), at(shift["end"])
    return start + (end - start) / 2


def day(n: int) -> datetime:
    """Midnight UTC `n` days from today."""
    return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=n)


async def topic_now(bootstrap: str, topic: str, timeout_s: float = 15) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of `topic` up to its end as it is now, on all partitions."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        # Not end_offsets(): Tansu answers ListOffsets with one past the last batch's first offset, short of the
        # end when the producer batched several records. The high watermark in fetch answers is right.
        records: list[ConsumerRecord[bytes, bytes]] = []
        pending = set(tps)
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: not read to its end within {timeout_s}s")
            batch = await consumer.getmany(*pending, timeout_ms=300)
            for part in batch.values():
                records.extend(part)
            for tp in list(pending):
                high = consumer.highwater(tp)
                if high is not None and await consumer.position(tp) >= high:
                    pending.discard(tp)
        return records
    finally:
        await consumer.stop()


async def notices(bootstrap: str, request_id: str) -> list[tuple[str, str, str]]:
    """(user_id, idempotency_key, status in data) of every SendNotification about `request_id`, in topic order
    per recipient."""
    found = []
    for record in await topic_now(bootstrap, NOTIFICATION_COMMANDS.name):
        try:
            message = json.loads(record.value)
        except ValueError:
            continue  # other tests park garbage on this topic
        data = message.get("data") if isinstance(message, dict) else None
        if isinstance(data, dict) and data.get("request_id") == request_id:
            found.append((message["user_id"], message["idempotency_key"], data.get("status", "")))
    return found


def key(request_id: str, what: str, user_id: str) -> str:
    return f"coverage-request:{request_id}:{what}:{user_id}"


async def notices_with(
    bootstrap: str, request_id: str, *keys: str, timeout_s: float = 20
) -> list[tuple[str, str, str]]:
    """The request's notifications once all of `keys` are among them."""

    async def arrived() -> list[tuple[str, str, str]]:
        got = await notices(bootstrap, request_id)
        return got if set(keys) <= {k for _, k, _ in got} else []

    return await eventually(arrived, timeout_s=timeout_s, interval_s=0.3, what=f"notifications {keys}")
