"""Defect 9: once an admin deactivates a user, that user's token and calendar feeds stop working."""

from __future__ import annotations

import uuid

import pytest

from tests.api.conftest import Client, call, daily, new_schedule, new_users
from tests.conftest import token

pytestmark = pytest.mark.api


async def test_a_deactivated_users_token_and_feeds_stop_working(client: Client) -> None:
    (user_id,) = await new_users(client, 1)  # in no schedule and no policy, so it may be deactivated
    others = await new_users(client, 2)
    schedule = await new_schedule(client, daily(others))
    me = token(user_id, "responder")

    status, feed = await call(client, "POST", f"/v1/users/{user_id}/calendar-token", headers=me)
    assert status == 201, feed
    schedule_feed = feed["schedule_feed_template"].format(schedule_id=schedule["id"])
    assert (await call(client, "GET", feed["my_shifts"], headers={}))[0] == 200
    assert (await call(client, "GET", schedule_feed, headers={}))[0] == 200

    status, user = await call(client, "PATCH", f"/v1/users/{user_id}", json={"active": False})
    assert (status, user.get("active")) == (200, False), user

    status, answer = await call(client, "PATCH", f"/v1/users/{user_id}", json={"name": "Still here"}, headers=me)
    assert status in (401, 403), (status, answer)
    status, answer = await call(client, "POST", f"/v1/users/{user_id}/calendar-token", headers=me)
    assert status in (401, 403), (status, answer)
    status, answer = await call(client, "GET", feed["my_shifts"], headers={})
    assert status in (404, 410), (status, answer)
    status, answer = await call(client, "GET", schedule_feed, headers={})
    assert status in (404, 410), (status, answer)

    status, user = await call(client, "GET", f"/v1/users/{user_id}")
    assert (status, user["name"], user["active"]) == (200, "U0", False), user


async def test_an_admin_can_reactivate_a_user(client: Client) -> None:
    (user_id,) = await new_users(client, 1)
    status, user = await call(client, "PATCH", f"/v1/users/{user_id}", json={"active": False})
    assert status == 200, user
    status, user = await call(client, "PATCH", f"/v1/users/{user_id}", json={"active": True})
    assert (status, user.get("active")) == (200, True), user


async def test_a_feed_of_an_unknown_token_is_404(client: Client) -> None:
    status, _ = await call(client, "GET", f"/ical/{uuid.uuid4().hex}/my-shifts.ics", headers={})
    assert status == 404
