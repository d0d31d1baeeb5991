"""Defect 6: the token's `sub` is the caller's user id.

A signed token whose `sub` is not a UUID names nobody: 401 wherever the caller's id matters. A `sub` that is
the caller's own UUID in upper case is the same user.
"""

from __future__ import annotations

from typing import Any

import pytest

from shared.auth import issue_dev_token
from tests.api.conftest import Client, call, daily, new_schedule, new_users
from tests.conftest import JWT_SECRET

pytestmark = pytest.mark.api

WINDOW = {"start": "2026-03-04T10:00:00Z", "end": "2026-03-04T12:00:00Z"}


def bearer(sub: str, role: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + issue_dev_token(JWT_SECRET, sub, role)}  # type: ignore[arg-type]


def requests(user_id: str, schedule_id: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    return [
        ("PATCH", f"/v1/users/{user_id}", {"name": "Renamed"}),
        ("POST", f"/v1/users/{user_id}/calendar-token", None),
        ("POST", f"/v1/schedules/{schedule_id}/overrides", {"user_id": user_id} | WINDOW),
    ]


@pytest.mark.parametrize("sub", ["not-a-uuid", "", "12345", "9f1c2a52-4f7e-4d8e-9c1b-2a3b4c5d6e7fx"])
@pytest.mark.parametrize("role", ["responder", "admin"])
async def test_a_subject_that_is_not_a_uuid_is_401(client: Client, role: str, sub: str) -> None:
    (user_id,) = await new_users(client, 1)
    schedule = await new_schedule(client, daily([user_id]))
    answers = []
    for method, path, body in requests(user_id, schedule["id"]):
        status, answer = await call(client, method, path, json=body, headers=bearer(sub, role))
        answers.append((method, path, status, answer if status != 401 else None))
    assert all(status == 401 for _, _, status, _ in answers), answers
    status, user = await call(client, "GET", f"/v1/users/{user_id}")
    assert (status, user["name"]) == (200, "U0"), user


async def test_an_upper_case_subject_is_the_same_user(client: Client) -> None:
    (user_id,) = await new_users(client, 1)
    schedule = await new_schedule(client, daily([user_id]))
    me = bearer(user_id.upper(), "responder")

    status, user = await call(client, "PATCH", f"/v1/users/{user_id}", json={"name": "Renamed"}, headers=me)
    assert (status, user.get("name")) == (200, "Renamed"), (status, user)

    status, feed = await call(client, "POST", f"/v1/users/{user_id}/calendar-token", headers=me)
    assert status == 201, feed

    path = f"/v1/schedules/{schedule['id']}/overrides"
    status, override = await call(client, "POST", path, json={"user_id": user_id} | WINDOW, headers=me)
    assert status == 201, override
    assert override["created_by"] == user_id, override
    # the creator may remove their own override, whichever case their token spells the id in
    lower = bearer(user_id, "responder")
    status, answer = await call(client, "DELETE", f"{path}/{override['id']}", headers=lower)
    assert status == 204, answer
