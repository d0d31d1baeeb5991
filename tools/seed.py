"""Demo organisation for `make up`: an admin, three responders, an observer and a team, created through
schedule's public API like any client would, so the events flow to the other services too.

Idempotent: people are found by e-mail and the team by name, so a second run creates nothing.
Writes `<run dir>/seed.json` (ids used by `make token` and printed examples).

Env: SCHEDULE_URL (default http://127.0.0.1:8081), JWT_SECRET, ONCALL_RUN_DIR (default .run).
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


async def seed(schedule_url: str, secret: str) -> dict[str, Any]:
    headers = {"Authorization": "Bearer " + issue_dev_token(secret, "seed", "admin")}
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
    return {
        "admin_user_id": users[0]["id"],
        "users": {u["email"]: {"id": u["id"], "role": u["role"], "name": u["name"]} for u in users},
        "team_id": team["id"],
    }


def main() -> int:
    schedule_url = os.environ.get("SCHEDULE_URL", "http://127.0.0.1:8081")
    secret = os.environ.get("JWT_SECRET") or ServiceSettings().jwt_secret.get_secret_value()
    out = Path(os.environ.get("ONCALL_RUN_DIR", ".run")) / "seed.json"
    try:
        result = asyncio.run(seed(schedule_url, secret))
    except (aiohttp.ClientError, RuntimeError) as exc:
        print(f"seed failed: {exc}", file=sys.stderr)
        return 1
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"demo data: {len(result['users'])} users and team '{TEAM}' ({out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
