"""Demo organisation for `make up`: an admin, three responders, an observer, a team, an on-call schedule
with two layers, an escalation policy and support hours, created through
schedule's public API like any client would, so the events flow to the other services too.

Idempotent: people are found by e-mail and everything else by name, so a second run creates nothing.
Writes `<run dir>/seed.json` (ids used by `make token` and printed examples).

Env: SCHEDULE_URL (default: schedule's default port on 127.0.0.1), JWT_SECRET, ONCALL_RUN_DIR (default .run).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp

from shared.auth import issue_dev_token
from shared.services import DEFAULT_PORTS
from shared.settings import ServiceSettings

PEOPLE = [
    {
        "name": "Alex Admin",
        "email": "alex.admin@demo.oncall",
        "time_zone": "Europe/Berlin",
        "role": "admin",
        "phone": "+4930901820",
        "language": "de",
    },
    {
        "name": "Rita Responder",
        "email": "rita@demo.oncall",
        "time_zone": "Europe/Berlin",
        "role": "responder",
        "phone": "+4915112345601",
        "language": "de",
    },
    {
        "name": "Sam Responder",
        "email": "sam@demo.oncall",
        "time_zone": "America/New_York",
        "role": "responder",
        "phone": "+12125550101",
        "language": "en",
    },
    {
        "name": "Priya Responder",
        "email": "priya@demo.oncall",
        "time_zone": "Asia/Kolkata",
        "role": "responder",
        "phone": "+919812345601",
        "language": "en",
    },
    {
        "name": "Olga Observer",
        "email": "olga@demo.oncall",
        "time_zone": "Europe/Berlin",
        "role": "observer",
        "language": "en",
    },
]
TEAM = "Platform SRE"
SCHEDULE = "Platform SRE primary"
POLICY = "Platform SRE escalation"
SUPPORT_HOURS = "Berlin office hours"
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]
# The seed acts as an admin that is no user of the directory; token subjects must be user ids (UUIDs).
SEED_ACTOR = "00000000-0000-4000-8000-000000005eed"
HOTLINE = "+4930555000100"
HOTLINE_NAME = "Platform Hotline"
# callrouter learns the policy from schedule's published snapshot: wait this long for it to arrive.
POLICY_ARRIVAL_S = 60.0


async def ensure(http: aiohttp.ClientSession, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """The object named body["name"] under `path`, created from `body` if there is none yet."""
    async with http.get(path, params={"limit": "500"}) as resp:
        resp.raise_for_status()
        found = next((x for x in await resp.json() if x["name"] == body["name"]), None)
    if found is not None:
        return found  # type: ignore[no-any-return]
    async with http.post(path, json=body) as resp:
        if resp.status != 201:
            raise RuntimeError(f"creating {body['name']}: {resp.status} {await resp.text()}")
        return await resp.json()  # type: ignore[no-any-return]


async def seed(schedule_url: str, secret: str) -> dict[str, Any]:
    headers = {"Authorization": "Bearer " + issue_dev_token(secret, SEED_ACTOR, "admin")}
    async with aiohttp.ClientSession(base_url=schedule_url, headers=headers) as http:
        async with http.get("/v1/users", params={"limit": "500"}) as resp:
            resp.raise_for_status()
            by_email = {u["email"]: u for u in await resp.json()}
        users = []
        for person in PEOPLE:
            if person["email"] not in by_email:
                async with http.post("/v1/users", json=person) as resp:
                    if resp.status != 201:
                        raise RuntimeError(f"creating {person['email']}: {resp.status} {await resp.text()}")
                    by_email[person["email"]] = await resp.json()
            users.append(by_email[person["email"]])
        async with http.get("/v1/teams") as resp:
            resp.raise_for_status()
            team = next((t for t in await resp.json() if t["name"] == TEAM), None)
        if team is None:
            members = [u["id"] for u in users if u["role"] != "observer"]
            async with http.post("/v1/teams", json={"name": TEAM, "member_ids": members}) as resp:
                if resp.status != 201:
                    raise RuntimeError(f"creating team: {resp.status} {await resp.text()}")
                team = await resp.json()
        admin, rita, sam, priya = (u["id"] for u in users[:4])
        # weekly follow-the-week rotation in Berlin; on weekdays 09-17 Rita's office layer sits on top
        schedule = await ensure(
            http,
            "/v1/schedules",
            {
                "name": SCHEDULE,
                "time_zone": "Europe/Berlin",
                "team_id": team["id"],
                "layers": [
                    {
                        "name": "Weekly",
                        "users": [rita, sam, priya],
                        "length": 1,
                        "unit": "weeks",
                        "handoff": "2026-01-05T09:00:00",
                    },
                    {
                        "name": "Office hours",
                        "users": [rita],
                        "length": 1,
                        "unit": "weeks",
                        "handoff": "2026-01-05T00:00:00",
                        "restrictions": [{"days": WEEKDAYS, "start": "09:00", "end": "17:00"}],
                    },
                ],
            },
        )
        policy = await ensure(
            http,
            "/v1/policies",
            {
                "name": POLICY,
                "repeat": 1,
                "rules": [
                    {"timeout_minutes": 5, "schedule_ids": [schedule["id"]]},
                    {"timeout_minutes": 10, "user_ids": [admin]},
                ],
            },
        )
        hours = await ensure(
            http,
            "/v1/support-hours",
            {
                "name": SUPPORT_HOURS,
                "time_zone": "Europe/Berlin",
                "windows": [{"days": WEEKDAYS, "start": "09:00", "end": "17:00"}],
                "holidays": ["2026-12-24", "2026-12-25", "2026-12-26", "2027-01-01"],
            },
        )
    return {
        "admin_user_id": users[0]["id"],
        "users": {u["email"]: {"id": u["id"], "role": u["role"], "name": u["name"]} for u in users},
        "team_id": team["id"],
        "schedule_id": schedule["id"],
        "policy_id": policy["id"],
        "support_hours_id": hours["id"],
    }


async def route_calls(callrouter_url: str, secret: str, policy_id: str, hours_id: str) -> dict[str, Any]:
    """The demo routing number: option 1 (or "outage") dials the demo policy; outside office hours the same
    option is offered (`make call` works at any hour)."""
    headers = {"Authorization": "Bearer " + issue_dev_token(secret, SEED_ACTOR, "admin")}
    option = {"digit": "1", "name": "Platform incidents", "policy_id": policy_id, "keywords": ["outage", "incident"]}
    body = {
        "number": HOTLINE,
        "name": HOTLINE_NAME,
        "language": "en-US",
        "options": [option],
        "support_hours_id": hours_id,
        "outside_hours": "options",
        "outside_options": [option],
    }
    deadline = asyncio.get_running_loop().time() + POLICY_ARRIVAL_S
    async with aiohttp.ClientSession(base_url=callrouter_url, headers=headers) as http:
        while True:
            async with http.get("/v1/routing-numbers", params={"limit": "500"}) as resp:
                resp.raise_for_status()
                found = next((n for n in await resp.json() if n["number"] == HOTLINE), None)
            if found is not None:
                return found  # type: ignore[no-any-return]
            async with http.post("/v1/routing-numbers", json=body) as resp:
                if resp.status == 201:
                    return await resp.json()  # type: ignore[no-any-return]
                text = await resp.text()
                # 422 while callrouter has not yet seen the policy or the support hours published by schedule
                if resp.status != 422 or asyncio.get_running_loop().time() > deadline:
                    raise RuntimeError(f"creating the routing number: {resp.status} {text}")
            await asyncio.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    """`python -m tools.seed`: the directory (users, team, schedule, policy, support hours) through schedule's API;
    `python -m tools.seed calls`: the demo routing number through callrouter's (once schedule's data reached it)."""
    args = sys.argv[1:] if argv is None else argv
    secret = os.environ.get("JWT_SECRET") or ServiceSettings().jwt_secret.get_secret_value()
    out = Path(os.environ.get("ONCALL_RUN_DIR", ".run")) / "seed.json"
    if args[:1] == ["calls"]:
        return seed_calls(out, secret)
    schedule_url = os.environ.get("SCHEDULE_URL", f"http://127.0.0.1:{DEFAULT_PORTS['schedule']}")
    try:
        result = asyncio.run(seed(schedule_url, secret))
    except (aiohttp.ClientError, RuntimeError) as exc:
        print(f"seed failed: {exc}", file=sys.stderr)
        return 1
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(
        f"demo data: {len(result['users'])} users, team '{TEAM}', schedule '{SCHEDULE}', policy '{POLICY}', "
        f"support hours '{SUPPORT_HOURS}' ({out})"
    )
    return 0


def seed_calls(out: Path, secret: str) -> int:
    callrouter_url = os.environ.get("CALLROUTER_URL", f"http://127.0.0.1:{DEFAULT_PORTS['callrouter']}")
    result = json.loads(out.read_text())
    try:
        number = asyncio.run(route_calls(callrouter_url, secret, result["policy_id"], result["support_hours_id"]))
    except (aiohttp.ClientError, RuntimeError) as exc:
        print(f"seed failed: {exc}", file=sys.stderr)
        return 1
    result["routing_number"] = number["number"]
    out.write_text(json.dumps(result, indent=2))
    print(f"demo routing number: {number['number']} ({number['name']}): press 1 or say 'outage'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
