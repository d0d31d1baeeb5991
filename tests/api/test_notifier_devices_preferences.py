"""Devices and notification preferences through notifier's real web app and PostgreSQL: each user reads and
edits only their own (admins anyone's), and bad input is a 422 naming the field."""

from __future__ import annotations

import uuid
from typing import Any

from tests.api.conftest import Client, assert_422, call
from tests.conftest import token


def person(role: str = "responder") -> tuple[str, dict[str, str]]:
    user_id = str(uuid.uuid4())
    return user_id, token(user_id, role)


def apns_token() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex


async def register(client: Client, headers: dict[str, str], **body: Any) -> tuple[int, Any]:
    payload = {"platform": "ios", "token": apns_token(), "app_version": "3.2.1", "critical_allowed": True} | body
    return await call(client, "POST", "/v1/devices", json=payload, headers=headers)


async def test_a_phone_registers_refreshes_and_moves_between_users(notifier_client: Client) -> None:
    amy, amy_h = person()
    ben, ben_h = person()
    status, device = await register(notifier_client, amy_h)
    assert status == 201 and device["user_id"] == amy and device["critical_allowed"] is True, device
    status, again = await register(notifier_client, amy_h, token=device["token"], app_version="3.3.0")
    assert status == 201 and again["id"] == device["id"] and again["app_version"] == "3.3.0"
    # the same phone, now signed in as ben: amy's pushes no longer go to it
    status, moved = await register(notifier_client, ben_h, token=device["token"])
    assert status == 201 and moved["id"] == device["id"] and moved["user_id"] == ben
    assert (await call(notifier_client, "GET", "/v1/devices", headers=amy_h))[1] == []
    status, bens = await call(notifier_client, "GET", "/v1/devices", headers=ben_h)
    assert [d["id"] for d in bens] == [device["id"]]


async def test_a_user_touches_only_their_own_devices(notifier_client: Client) -> None:
    amy, amy_h = person()
    ben, ben_h = person()
    _, device = await register(notifier_client, amy_h)
    path = f"/v1/devices/{device['id']}"
    status, _ = await call(notifier_client, "PUT", path, json={"token": apns_token()}, headers=ben_h)
    assert status == 404
    assert (await call(notifier_client, "DELETE", path, headers=ben_h))[0] == 404
    assert (await call(notifier_client, "GET", f"/v1/devices?user_id={amy}", headers=ben_h))[0] == 403
    status, listed = await call(notifier_client, "GET", f"/v1/devices?user_id={amy}", headers=token(ben, "admin"))
    assert status == 200 and [d["id"] for d in listed] == [device["id"]]
    new_token = apns_token()
    status, refreshed = await call(notifier_client, "PUT", path, json={"token": new_token, "app_version": "4.0"},
                                   headers=amy_h)
    assert status == 200 and refreshed["token"] == new_token and refreshed["critical_allowed"] is False
    assert (await call(notifier_client, "DELETE", path, headers=amy_h))[0] == 204
    assert (await call(notifier_client, "GET", "/v1/devices", headers=amy_h))[1] == []
    assert (await call(notifier_client, "DELETE", path, headers=amy_h))[0] == 404


async def test_a_refreshed_token_that_was_registered_separately_replaces_that_registration(
    notifier_client: Client,
) -> None:
    _, amy_h = person()
    _, first = await register(notifier_client, amy_h)
    _, second = await register(notifier_client, amy_h)
    status, refreshed = await call(notifier_client, "PUT", f"/v1/devices/{first['id']}",
                                   json={"token": second["token"]}, headers=amy_h)
    assert status == 200, refreshed
    status, mine = await call(notifier_client, "GET", "/v1/devices", headers=amy_h)
    assert [(d["id"], d["token"]) for d in mine] == [(first["id"], second["token"])]


async def test_bad_devices_are_refused_naming_the_field(notifier_client: Client) -> None:
    _, amy_h = person()
    for body, field in [
        ({"platform": "web"}, "platform"),
        ({"token": "has spaces in it"}, "token"),
        ({"token": "x" * 5000}, "token"),
        ({"app_version": "v" * 65}, "app_version"),
        ({"critical_allowed": "maybe"}, "critical_allowed"),
    ]:
        status, problem = await register(notifier_client, amy_h, **body)
        assert_422(status, problem, field)


async def test_preferences_default_then_the_users_own(notifier_client: Client) -> None:
    amy, amy_h = person()
    path = f"/v1/notification-preferences/{amy}"
    status, prefs = await call(notifier_client, "GET", path, headers=amy_h)
    assert status == 200 and prefs["source"] == "default"
    assert prefs["high"] == [{"channel": "push", "after_minutes": 0}, {"channel": "voice", "after_minutes": 2}]
    assert prefs["low"] == [{"channel": "push", "after_minutes": 0}]
    mine = {"high": [{"channel": "voice", "after_minutes": 5}, {"channel": "push", "after_minutes": 0}],
            "low": [{"channel": "push", "after_minutes": 10}]}
    status, saved = await call(notifier_client, "PUT", path, json=mine, headers=amy_h)
    assert status == 200 and saved["source"] == "user"
    assert [s["after_minutes"] for s in saved["high"]] == [0, 5]  # kept in order of time
    assert (await call(notifier_client, "GET", path, headers=amy_h))[1] == saved


async def test_preferences_are_the_users_own(notifier_client: Client) -> None:
    amy, _ = person()
    ben, ben_h = person()
    path = f"/v1/notification-preferences/{amy}"
    body = {"high": [{"channel": "push", "after_minutes": 0}], "low": [{"channel": "push", "after_minutes": 0}]}
    assert (await call(notifier_client, "GET", path, headers=ben_h))[0] == 403
    assert (await call(notifier_client, "PUT", path, json=body, headers=ben_h))[0] == 403
    assert (await call(notifier_client, "PUT", path, json=body, headers=token(ben, "admin")))[0] == 200


async def test_bad_preferences_are_refused_naming_the_field(notifier_client: Client) -> None:
    amy, amy_h = person()
    path = f"/v1/notification-preferences/{amy}"
    push = {"channel": "push", "after_minutes": 0}
    for body, field in [
        ({"high": [], "low": [push]}, "high"),
        ({"high": [push], "low": [{"channel": "sms", "after_minutes": 0}]}, "low.0.channel"),
        ({"high": [{"channel": "push", "after_minutes": 1441}], "low": [push]}, "high.0.after_minutes"),
        ({"high": [push, push], "low": [push]}, "high.1"),
        ({"high": [push] * 11, "low": [push]}, "high"),
    ]:
        status, problem = await call(notifier_client, "PUT", path, json=body, headers=amy_h)
        assert_422(status, problem, field)
