"""The reference product's two workflows played end to end against a running platform, through the doors its
users use: the mobile API behind the gateway with each person's JWT, calls placed on the telephony simulator
(which posts signed webhooks to the gateway), and what each phone received from the APNs, FCM and Twilio fakes.

`make demo` plays them against `make up` and prints each step in plain words; tests/e2e/test_scenarios.py plays
them against a platform of its own (tools.stack) and asserts what each person would see. Every step checks
what it claims (an AssertionError otherwise: `Failed`, or a wait that ran out), so the demo cannot tell a
story the platform did not live.

The cast, built fresh each time so runs never collide: Ada and Ben share a team and a daily rotation (Ada on
call now, then every other day); Cleo leads. The hotline's option 1 ("outage") dials the policy: rule 1 whoever
the rotation has on call, rule 2 Cleo, each rule 2 minutes, the list once more. A minute of those delays lasts
DELAY_MINUTE_S seconds on the platform (`Cast.minute_s`).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import aiohttp
from icalendar import Calendar

from shared.auth import issue_dev_token
from shared.testing import eventually
from tools.fakes.inbox import Received
from tools.fakes.twilio.helper import SimClient
from tools.fakes.twilio.state import Party, Step
from tools.stack import Doors

Say = Callable[[str], None]
# Called between a scenario's steps with the name of the step just done: chaos tests kill a process there.
Checkpoint = Callable[[str], Awaitable[None]]
Platform = Literal["ios", "android"]
WAIT_S = 45.0


class Failed(AssertionError):
    """The platform did not do what the scenario expects."""


async def nothing(_: str) -> None:
    return None


def when(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%a %d %b %H:%M:%S UTC")


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# ------------------------------------------------------------------------------------------------- doors


@dataclass
class Person:
    name: str
    id: str
    phone: str
    platform: Platform
    device: str  # the push token of their one phone


@dataclass
class Api:
    """The platform as its users reach it. Requests are retried while the gateway has no ready upstream
    (502/503/504, a service restarting); `idempotent=False` requests only when the upstream surely did not get
    them (503: the gateway refused to forward)."""

    doors: Doors
    http: aiohttp.ClientSession
    admin_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def auth(self, who: Person | None, role: str = "responder") -> dict[str, str]:
        subject, role = (self.admin_id, "admin") if who is None else (who.id, role)
        return {"Authorization": "Bearer " + issue_dev_token(self.doors.jwt_secret, subject, role)}  # type: ignore[arg-type]

    async def call(
        self, method: str, path: str, who: Person | None = None, *, idempotent: bool | None = None, **kw: Any
    ) -> tuple[int, Any]:
        idempotent = method == "GET" if idempotent is None else idempotent
        retry_on = {502, 503, 504} if idempotent else {503}
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                async with self.http.request(method, self.doors.api_url + path, headers=self.auth(who), **kw) as r:
                    body = await (r.read() if r.content_type == "text/calendar" else r.text())
                    status = r.status
            except aiohttp.ClientConnectionError:
                status, body = 599, b""
            if (status not in retry_on and status != 599) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)
        if isinstance(body, str):
            try:
                return status, json.loads(body) if body else None
            except ValueError:
                return status, body
        return status, body

    async def ok(self, method: str, path: str, who: Person | None = None, expect: Iterable[int] = (200, 201),
                 **kw: Any) -> Any:
        status, body = await self.call(method, path, who, **kw)
        if status not in set(expect):
            raise Failed(f"{method} {path} as {who.name if who else 'admin'}: HTTP {status} {body!r}")
        return body

    async def pushes(self, person: Person) -> list[Received]:
        """What the person's phone shows: every push the APNs or FCM fake accepted for their device."""
        return [push for _, push in await self._accepted(person.platform, person.device)]

    async def phones(self) -> dict[str, list[Received]]:
        """What every phone shows, by device token."""
        shown: dict[str, list[Received]] = {}
        for platform in ("ios", "android"):
            for token, push in await self._accepted(platform, None):
                shown.setdefault(token, []).append(push)
        return shown

    async def _accepted(self, platform: Platform, token: str | None) -> list[tuple[str, Received]]:
        """(device token, push) for every push the platform's fake accepted (for `token`, if given)."""
        if platform == "ios":
            url, key = f"{self.doors.apns_url}/_fake/pushes", "pushes"
        else:
            url, key = f"{self.doors.fcm_url}/_fake/messages", "messages"
        async with self.http.get(url, params={"token": token} if token else None) as resp:
            if resp.status != 200:
                raise Failed(f"{url}: HTTP {resp.status}")
            return [(item["token"], Received.of(platform, item)) for item in (await resp.json())[key]]

    async def calls_to(self, person: Person) -> list[dict[str, Any]]:
        """Every call the telephony simulator placed to the person's phone."""
        return await SimClient(self.doors.twilio_url, self.http).calls(to=person.phone)

    @property
    def sim(self) -> SimClient:
        return SimClient(self.doors.twilio_url, self.http)


def about(pushes: list[Received], key: str, value: str) -> list[Received]:
    return [p for p in pushes if p.data.get(key) == value]


async def push_about(api: Api, person: Person, key: str, value: str, n: int = 1,
                     where: Callable[[Received], bool] = lambda _: True) -> list[Received]:
    """The person's pushes whose data has `key` = `value`, once there are `n` of them that satisfy `where`."""

    async def arrived() -> list[Received]:
        found = [p for p in about(await api.pushes(person), key, value) if where(p)]
        return found if len(found) >= n else []

    return await eventually(arrived,
        what=f"{person.name}'s phone shows {n} push(es) with {key}={value}", timeout_s=WAIT_S)


def duplicates(pushes: list[Received]) -> list[str]:
    """Collapse ids shown more than once: the same notification twice on one phone."""
    seen: dict[str, int] = {}
    for p in pushes:
        if p.collapse:
            seen[p.collapse] = seen.get(p.collapse, 0) + 1
    return [c for c, n in seen.items() if n > 1]


# -------------------------------------------------------------------------------------------------- cast


def phone_number() -> str:
    """A made-up mobile number, new each time."""
    return "+49151" + "".join(random.choices("0123456789", k=8))


@dataclass
class Cast:
    api: Api
    say: Say
    ada: Person
    ben: Person
    cleo: Person
    team_id: str
    schedule_id: str
    policy_id: str
    hotline: str
    handoff: datetime  # Ada's shift started here; the rotation hands over every 24 h
    minute_s: float
    feeds: dict[str, str] = field(default_factory=dict)  # each person's calendar feed path

    @property
    def people(self) -> list[Person]:
        return [self.ada, self.ben, self.cleo]

    @classmethod
    async def create(cls, api: Api, say: Say, minute_s: float = 60.0) -> Cast:
        """An admin sets up three people with a phone each, a team, a rotation, a policy and a hotline."""
        people = []
        for name, platform in (("Ada", "ios"), ("Ben", "android"), ("Cleo", "ios")):
            body = {"name": name, "email": f"{name.lower()}.{uuid.uuid4().hex[:10]}@example.com",
                    "time_zone": "UTC", "phone": phone_number()}
            user = await api.ok("POST", "/v1/users", json=body, idempotent=False)
            person = Person(name, user["id"], body["phone"], platform,  # type: ignore[arg-type]
                            uuid.uuid4().hex + uuid.uuid4().hex if platform == "ios" else "fcm-" + uuid.uuid4().hex)
            people.append(person)
        ada, ben, cleo = people
        team = await api.ok("POST", "/v1/teams", json={"name": f"Payments {uuid.uuid4().hex[:8]}",
                                                       "member_ids": [ada.id, ben.id, cleo.id]}, idempotent=False)
        handoff = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        layer = {"users": [ada.id, ben.id], "length": 1, "unit": "days",
                 "handoff": handoff.strftime("%Y-%m-%dT%H:%M:%S")}
        schedule = await api.ok("POST", "/v1/schedules", json={
            "name": f"Payments primary {uuid.uuid4().hex[:8]}", "time_zone": "UTC", "team_id": team["id"],
            "layers": [layer]}, idempotent=False)
        policy = await api.ok("POST", "/v1/policies", json={
            "name": f"Payments {uuid.uuid4().hex[:8]}", "repeat": 1,
            "rules": [{"timeout_minutes": 2, "schedule_ids": [schedule["id"]], "user_ids": []},
                      {"timeout_minutes": 2, "user_ids": [cleo.id], "schedule_ids": []}]}, idempotent=False)
        say(f"An admin set up the team {team['name']}: Ada and Ben share a daily rotation (Ada on call now, Ben from "
            f"{when(handoff + timedelta(days=1))}), Cleo is the escalation after 2 minutes.")
        for person in people:
            await api.ok("POST", "/v1/devices", person, json={
                "platform": person.platform, "token": person.device, "app_version": "3.1", "critical_allowed": True,
            }, idempotent=False)
        # the rotation's two want a call 1 minute after a page they have not acknowledged; Cleo keeps the
        # default (2 minutes)
        for person in (ada, ben):
            await api.ok("PUT", f"/v1/notification-preferences/{person.id}", person, json={
                "high": [{"channel": "push", "after_minutes": 0}, {"channel": "voice", "after_minutes": 1}],
                "low": [{"channel": "push", "after_minutes": 0}]}, idempotent=True)
        say("Ada (iPhone), Ben (Android) and Cleo (iPhone) installed the app; Ada and Ben asked for a call 1 minute "
            "after a page they have not acknowledged.")
        hotline = "+49305559" + "".join(random.choices("0123456789", k=7))
        cast = cls(api, say, ada, ben, cleo, team["id"], schedule["id"], policy["id"], hotline, handoff, minute_s)
        await cast._hotline()
        return cast

    async def _hotline(self) -> None:
        body = {"number": self.hotline, "name": "Payments hotline", "language": "en-US", "voicemail": True,
                "options": [{"digit": "1", "name": "payment outages", "policy_id": self.policy_id,
                             "keywords": ["outage", "payments"]}]}

        async def created() -> Any:
            # 422 on policy_id until the policy's snapshot has reached callrouter
            status, answer = await self.api.call("POST", "/v1/routing-numbers", json=body, idempotent=False)
            if status == 422:
                return None
            if status != 201:
                raise Failed(f"POST /v1/routing-numbers: HTTP {status} {answer!r}")
            return answer

        await eventually(created, what="the hotline is created once callrouter knows the policy", timeout_s=WAIT_S)
        hooks = self.api.doors.webhooks_url + "/webhooks/twilio/calls"
        await self.api.sim.configure_number(self.hotline, voice_url=f"{hooks}/incoming",
                                            status_callback=f"{hooks}/status")
        self.say(f"The hotline {self.hotline} answers through the gateway: press 1 or say \"outage\".")

    # ---------------------------------------------------------------------------------------- schedule

    async def on_call(self, instant: datetime) -> str:
        body = await self.api.ok("GET", f"/v1/schedules/{self.schedule_id}/oncall", self.ada,
                                 params={"at": iso(instant)})
        user = body.get("user_id") if isinstance(body, dict) else None
        return next((p.name for p in self.people if p.id == user), str(user))

    async def expect_on_call(self, instant: datetime, name: str) -> None:
        async def right() -> bool:
            return await self.on_call(instant) == name

        await eventually(right, what=f"{name} on call at {when(instant)}", timeout_s=20)

    async def calendar(self, person: Person) -> list[tuple[datetime, datetime, str]]:
        """(start, end, STATUS) of every event in the person's my-shifts iCalendar feed (subscribed to once, as a
        calendar app does: a feed tells a shift it showed before that it is gone)."""
        if person.name not in self.feeds:
            issued = await self.api.ok("POST", f"/v1/users/{person.id}/calendar-token", person, idempotent=False)
            self.feeds[person.name] = issued["my_shifts"]
        status, body = await self.api.call("GET", self.feeds[person.name], None)
        if status != 200:
            raise Failed(f"{person.name}'s calendar feed: HTTP {status}")
        events = []
        for event in Calendar.from_ical(body).walk("VEVENT"):
            events.append((event.decoded("DTSTART"), event.decoded("DTEND"), str(event.get("STATUS", ""))))
        return events

    # ---------------------------------------------------------------------------------------- coverage

    async def ada_shifts(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """Ada's shifts in [start, end) as the app lists them to ask for coverage (once coverage has them)."""

        async def listed() -> list[dict[str, Any]]:
            body = await self.api.ok("GET", "/v1/coverage-requests/shifts", self.ada,
                                     params={"from": iso(start), "to": iso(end)})
            return [s for s in body if s["schedule_id"] == self.schedule_id]

        return await eventually(listed, what="Ada's shifts listed in the app", timeout_s=WAIT_S)

    async def ask(self, shifts: list[dict[str, Any]], message: str = "", to: Person | None = None,
                  **extra: Any) -> dict[str, Any]:
        """Ada asks Ben (or `to`) to cover `shifts`. 422 on the recipient: their snapshot has not reached coverage
        yet."""
        to = to or self.ben
        start = min(at(s["start"]) for s in shifts)
        end = max(at(s["end"]) for s in shifts)
        body = {"recipient_ids": [to.id], "start": iso(start), "end": iso(end), "message": message,
                "shifts": [{k: s[k] for k in ("schedule_id", "start", "end")} for s in shifts]} | extra

        async def created() -> Any:
            status, answer = await self.api.call("POST", "/v1/coverage-requests", self.ada, json=body,
                                                 idempotent=False)
            if status == 422 and {e.get("field") for e in answer.get("errors", [])} == {"recipient_ids.0"}:
                return None
            if status != 201:
                raise Failed(f"Ada's coverage request: HTTP {status} {answer!r}")
            return answer

        request: dict[str, Any] = await eventually(created, what="Ada's coverage request is created", timeout_s=WAIT_S)
        spans = "; ".join(f"{when(at(s['start']))} to {when(at(s['end']))}" for s in shifts)
        said = f' — "{message}"' if message else ""
        self.say(f"Ada asked {to.name} to cover {len(shifts)} shift(s): {spans}{said}")
        return request

    async def request(self, request_id: str, who: Person | None = None) -> dict[str, Any]:
        return await self.api.ok("GET", f"/v1/coverage-requests/{request_id}", who or self.ada)  # type: ignore[no-any-return]

    async def reaches(self, request_id: str, status: str) -> dict[str, Any]:
        async def there() -> Any:
            body = await self.request(request_id)
            return body if body["status"] == status else None

        return await eventually(there, what=f"the request is {status}", timeout_s=WAIT_S)

    async def told(self, person: Person, request_id: str, status: str) -> Received:
        """The push about the request in `status` on the person's phone."""
        (push, *_) = await push_about(self.api, person, "request_id", request_id,
                                      where=lambda p: p.data.get("status") == status)
        badge = "" if push.badge is None else f" (app badge {push.badge})"
        self.say(f"{person.name}'s phone: \"{push.title}: {push.body}\"{badge}")
        return push

    async def badge(self, person: Person) -> int:
        body = await self.api.ok("GET", "/v1/coverage-requests/badge", person)
        return int(body["pending"])

    async def listed_as(self, person: Person, box: str, request_id: str) -> str:
        body = await self.api.ok("GET", "/v1/coverage-requests", person, params={"box": box})
        mine = [r["status"] for r in body["items"] if r["id"] == request_id]
        if len(mine) != 1:
            raise Failed(f"{person.name}'s {box} list does not show the request once: {mine}")
        return str(mine[0])

    # -------------------------------------------------------------------------------------------- calls

    async def script(self, person: Person, party: Party) -> None:
        await self.api.sim.script(person.phone, party)

    async def ring(self, caller: Party, caller_number: str) -> dict[str, Any]:
        return await self.api.sim.incoming_call(caller_number, self.hotline, caller)

    async def alert_of(self, caller_number: str, since: datetime) -> dict[str, Any]:
        """The alert of the newest call from `caller_number` to the hotline, opened at `since` or later."""

        async def found() -> Any:
            body = await self.api.ok("GET", "/v1/call-alerts", None, params={"limit": 200})
            return next((a for a in body["items"] if a["caller"] == caller_number
                         and at(a["created_at"]) >= since - timedelta(seconds=1)), None)

        return await eventually(found, what=f"the alert of the call from {caller_number}", timeout_s=WAIT_S)

    async def acknowledged(self, caller_number: str, by: Person, since: datetime) -> dict[str, Any]:
        """The alert of the call from `caller_number` (opened at `since` or later) once it is acknowledged;
        `Failed` unless `by` did."""
        alert = await self.alert_of(caller_number, since)

        async def accepted() -> Any:
            body = await self.alert(alert["id"])
            return body if body["status"] == "acknowledged" else None

        acked: dict[str, Any] = await eventually(accepted,
            what=f"the call's alert acknowledged by {by.name}", timeout_s=WAIT_S)
        if acked["acknowledged_by"] != by.id:
            raise Failed(f"acknowledged by {acked['acknowledged_by']}, not {by.name}")
        return acked

    async def alert(self, alert_id: str) -> dict[str, Any]:
        return await self.api.ok("GET", f"/v1/call-alerts/{alert_id}", None)  # type: ignore[no-any-return]


# ------------------------------------------------------------------------------------------- scenario 1


@dataclass
class Covered:
    request_id: str
    shifts: list[dict[str, Any]]  # the two shifts Ben now covers: the first starts `lead_s` after the request


async def coverage_accepted(cast: Cast, lead_s: float = 20.0, checkpoint: Checkpoint = nothing) -> Covered:
    """Scenario 1: Ada asks Ben to cover two of her shifts (the rest of today's from `lead_s` on, and next
    week's); Ben's phone shows it with badge 1; Ben accepts; both are told; the schedule, both calendars and
    both lists show it."""
    api, ada, ben = cast.api, cast.ada, cast.ben
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=lead_s)
    listed = await cast.ada_shifts(soon, soon + timedelta(days=9))
    cast.say(f"Ada opened her shifts for the coming week: {len(listed)} of them.")
    today = listed[0]
    next_week = next((s for s in listed if at(s["start"]) >= soon + timedelta(days=6)
                      and at(s["end"]) - at(s["start"]) == timedelta(days=1)), None)
    if at(today["start"]) != soon or next_week is None:
        raise Failed(f"Ada's shifts are not the rotation's: {listed}")
    for person in (ada, ben):  # their calendar apps have subscribed to their shifts
        await cast.calendar(person)
    request = await cast.ask([today, next_week], "Could you take these? Family wedding.")
    await checkpoint("requested")
    push = await cast.told(ben, request["id"], "pending")
    if push.badge != 1:
        raise Failed(f"Ben's badge shows {push.badge}, not 1")
    if await cast.badge(ben) != 1:
        raise Failed("the app does not count Ben's one open request")

    status, body = await api.call("POST", f"/v1/coverage-requests/{request['id']}/accept", ben, json={},
                                  idempotent=True)
    if status not in (200, 202):
        raise Failed(f"Ben's accept: HTTP {status} {body!r}")
    cast.say("Ben accepted.")
    await checkpoint("accepted")
    await cast.reaches(request["id"], "accepted")
    await cast.told(ada, request["id"], "accepted")
    await cast.told(ben, request["id"], "accepted")

    covered = [today, next_week]
    for shift in covered:
        middle = at(shift["start"]) + (at(shift["end"]) - at(shift["start"])) / 2
        await cast.expect_on_call(middle, "Ben")
    elsewhere = at(next_week["start"]) - timedelta(days=2) + timedelta(hours=1)  # Ada's shift before it
    await cast.expect_on_call(elsewhere, "Ada")
    cast.say(f"Who is on call: Ben during both shifts, Ada still on {when(elsewhere)}.")

    spans = [(at(s["start"]), at(s["end"])) for s in covered]

    seen: list[Any] = []

    async def feeds_show_it() -> bool:
        hers, his = await cast.calendar(ada), await cast.calendar(ben)
        seen[:] = [hers, his]

        def live(events: list[tuple[datetime, datetime, str]], start: datetime, end: datetime) -> bool:
            return any(st == "CONFIRMED" and s < end and e > start for s, e, st in events)

        return (
            all(any(st == "CONFIRMED" and s <= a and e >= b for s, e, st in his) for a, b in spans)
            and not any(live(hers, a, b) for a, b in spans)
            and any(st == "CANCELLED" and (s, e) == spans[1] for s, e, st in hers)
        )

    try:
        await eventually(feeds_show_it,
            what="Ada's calendar shows the shifts cancelled and Ben's lists them", timeout_s=20)
    except AssertionError as exc:
        raise Failed(f"{exc}; covered {spans}; Ada's feed {seen[0]}; Ben's feed {seen[1]}") from None
    cast.say("Calendars: Ada's feed shows the shifts cancelled, Ben's lists them.")
    sent, received = await cast.listed_as(ada, "sent", request["id"]), await cast.listed_as(ben, "received",
                                                                                            request["id"])
    if (sent, received) != ("accepted", "accepted"):
        raise Failed(f"lists show {sent} (Ada) and {received} (Ben)")
    if await cast.badge(ben) != 0:
        raise Failed("Ben's badge still counts the accepted request")
    return Covered(request["id"], covered)


async def ben_on_call(cast: Cast, covered: Covered) -> None:
    """Until Ben's first covered shift has begun: from then on the schedule has him on call."""
    wait = (at(covered.shifts[0]["start"]) - datetime.now(UTC)).total_seconds()
    if wait > 0:
        cast.say(f"   (waiting {wait:.0f} s for Ben's covered shift to begin)")
        await asyncio.sleep(wait + 0.5)
    await cast.expect_on_call(datetime.now(UTC), "Ben")
    cast.say("   Ben is on call now.")


# ------------------------------------------------------------------------------------------- scenario 4


async def call_routed(cast: Cast, by: Literal["digit", "voice"], caller_number: str) -> dict[str, Any]:
    """Scenario 4: a caller rings the hotline and picks the option by key or by voice; whoever the schedule has
    on call now (Ben, by the coverage) is dialed first and declines; Cleo accepts and is connected."""
    return await _routed(cast, by, caller_number, cast.ben, cast.cleo)


async def call_routed_to_on_call(cast: Cast, name: str, caller_number: str) -> dict[str, Any]:
    """A call whose option is picked by key: the person the schedule has on call now (`name`) is dialed first,
    accepts and is connected."""
    first = next(p for p in cast.people if p.name == name)
    return await _routed(cast, "digit", caller_number, None, first)


async def _routed(
    cast: Cast, by: Literal["digit", "voice"], caller_number: str, decliner: Person | None, taker: Person
) -> dict[str, Any]:
    if decliner is not None:
        await cast.script(decliner, Party(answer="answer", ring_s=1, hang_up_after_s=1))
    await cast.script(taker, Party(answer="answer", ring_s=1, steps=(Step.press("1"),), talk_s=3))
    sim = cast.api.sim
    before = {p.name: len(await sim.calls(to=p.phone, from_=cast.hotline)) for p in cast.people}
    choice = Step.press("1") if by == "digit" else Step.say("outage")
    rang = datetime.now(UTC)
    call = await cast.ring(Party(steps=(choice,)), caller_number)
    cast.say(f"A caller rang the hotline and {'pressed 1' if by == 'digit' else 'said “outage”'}.")

    async def dialed(person: Person) -> Any:
        """The person's first leg of this call."""
        calls = await sim.calls(to=person.phone, from_=cast.hotline)
        return calls[before[person.name]] if len(calls) > before[person.name] else None

    if decliner is not None:
        await eventually(lambda: dialed(decliner), what=f"{decliner.name} (on call now) is dialed", timeout_s=WAIT_S)
        cast.say(f"callrouter dialed {decliner.name} first (the schedule has them on call now); {decliner.name} "
                 "answered and hung up: declined.")
    leg = await eventually(lambda: dialed(taker), what=f"{taker.name} is dialed", timeout_s=WAIT_S)

    async def bridged() -> Any:
        answered, caller = await sim.call(leg["sid"]), await sim.call(call["sid"])
        return call["sid"] in answered["bridged_with"] or leg["sid"] in caller["bridged_with"]

    try:
        await eventually(bridged, what=f"{taker.name} is connected to the caller", timeout_s=WAIT_S)
    except AssertionError as exc:
        story = await sim.conversation(call["sid"])
        raise Failed(f"{exc}; the call: {json.dumps(story)[:6000]}") from None
    cast.say(f"{taker.name} answered, pressed 1 and was connected to the caller.")
    alert = await cast.acknowledged(caller_number, taker, rang)
    for person in cast.people:
        dials = len(await sim.calls(to=person.phone, from_=cast.hotline)) - before[person.name]
        expected = 1 if person in (decliner, taker) else 0
        if dials != expected:
            raise Failed(f"{person.name} was dialed {dials} times for this call, not {expected}")
    return alert


# ------------------------------------------------------------------------------------------- scenario 5


async def nobody_answers(
    cast: Cast, caller_number: str, checkpoint: Checkpoint = nothing, strict: bool = True
) -> dict[str, Any]:
    """Scenario 5: whoever is on call and Cleo are busy; the caller leaves a voicemail; the alert escalates rule
    by rule (the one on call: a push, then a call a minute later by their preferences; Cleo after rule 1's 2
    minutes) until Cleo acknowledges it in the app; then nothing more reaches anyone.

    `strict`: exactly one push each and no call to Cleo. A chaos test that stops processes for longer than a
    minute lasts lets the escalation run on meanwhile (late pages are still pages), so it only asks that
    nothing more comes once the acknowledgement has settled."""
    api, cleo = cast.api, cast.cleo
    name = await cast.on_call(datetime.now(UTC))
    first = next(p for p in cast.people if p.name == name)
    await cast.script(first, Party(answer="busy"))
    await cast.script(cleo, Party(answer="busy"))
    rang = datetime.now(UTC)
    await cast.ring(Party(steps=(Step.press("1"),), voicemail_s=3, hang_up_after_voicemail=True), caller_number)
    cast.say(f"Another caller rang and pressed 1; {first.name} (on call) and Cleo were both busy.")
    alert = await cast.alert_of(caller_number, rang)

    async def voicemail() -> Any:
        body = await cast.alert(alert["id"])
        return body if body.get("voicemail_url") else None

    alert = await eventually(voicemail, what="the voicemail attached to the alert", timeout_s=WAIT_S)
    cast.say(f"The caller left a voicemail; it is attached to alert {alert['id'][:8]}, which escalates.")
    await checkpoint("voicemail")
    # the one on call answers the voice page when it comes, but presses nothing: not an acknowledgement
    await cast.script(first, Party(answer="answer", ring_s=1, steps=(Step.silence(),)))
    pushed = await push_about(api, first, "alert_id", alert["id"])
    cast.say(f"Rule 1 paged {first.name}: the phone shows \"{pushed[0].title}: {pushed[0].body}\"")

    async def voice_page() -> Any:
        return [c for c in await api.calls_to(first) if c.get("from") != cast.hotline] or None

    await eventually(voice_page, what=f"{first.name}'s voice page a minute later", timeout_s=WAIT_S + 2 * cast.minute_s)
    cast.say(f"A minute later nobody had acknowledged: notifier called {first.name}, who did not press a key.")
    await checkpoint("voice")
    (cleo_push, *_) = await push_about(api, cleo, "alert_id", alert["id"])
    cast.say(f"After rule 1's 2 minutes, rule 2 paged Cleo: \"{cleo_push.title}\"")
    acked = await api.ok("POST", f"/v1/call-alerts/{alert['id']}/acknowledge", cleo, json={}, idempotent=True)
    cast.say(f"Cleo acknowledged in the app at {when(at(acked['acknowledged_at']))}.")
    if acked["status"] != "acknowledged" or acked["acknowledged_by"] != cleo.id:
        raise Failed(f"the alert after Cleo's acknowledgement: {acked}")
    # unstopped, round 2 would page again 2 minutes after Cleo's page, and Cleo's own call would come then too
    async def reached() -> tuple[int, int, int]:
        first_pushes = about(await api.pushes(first), "alert_id", alert["id"])
        cleo_pushes = about(await api.pushes(cleo), "alert_id", alert["id"])
        cleo_calls = [c for c in await api.calls_to(cleo) if c.get("from") != cast.hotline]
        return len(first_pushes), len(cleo_pushes), len(cleo_calls)

    await asyncio.sleep(0.4 * cast.minute_s)  # what was already on its way when Cleo acknowledged
    settled = await reached()
    await asyncio.sleep(1.9 * cast.minute_s)
    later = await reached()
    if later != settled or (strict and later != (1, 1, 0)):
        raise Failed(f"after the acknowledgement: {first.name} {later[0]} pushes, Cleo {later[1]} pushes and "
                     f"{later[2]} calls ({'1, 1, 0' if strict else settled} expected)")
    final = await cast.alert(alert["id"])
    if final["status"] != "acknowledged" or final["escalating"]:
        raise Failed(f"the alert still escalates: {final}")
    cast.say("Escalation stopped: nobody was paged again, and Cleo got no call.")
    return final


# ------------------------------------------------------------------------------------------------- demo


async def demo(doors: Doors, say: Say, minute_s: float) -> None:
    """Scenarios 1, 4 and 5 in a row against a running platform."""
    async with aiohttp.ClientSession() as http:
        api = Api(doors, http)
        cast = await Cast.create(api, say, minute_s)
        say("")
        say("1. Coverage")
        await ben_on_call(cast, await coverage_accepted(cast, lead_s=6))
        say("")
        say("2. A call to the hotline")
        await call_routed(cast, "digit", phone_number())
        say("")
        say("3. Nobody answers")
        await nobody_answers(cast, caller_number=phone_number())
        say("")
        for person in cast.people:
            say(f"What {person.name}'s phone got: make phone USER={person.id}")
