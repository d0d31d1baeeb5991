"""Defect 4: PATCH /v1/users/{id} with JSON null for a field that cannot be empty is 422 naming that field.

`phone: null` is different: it means "remove the phone" (200).
"""

from __future__ import annotations

import uuid

import pytest

from tests.api.conftest import Client, assert_422, call
from tests.conftest import token

pytestmark = pytest.mark.api

NOT_NULLABLE = ["name", "email", "time_zone", "language", "active"]
SELF_EDITABLE = ["name", "email", "time_zone", "language"]


async def new_user(client: Client) -> str:
    body = {
        "name": "Nina",
        "email": f"{uuid.uuid4().hex}@example.com",
        "time_zone": "Europe/Berlin",
        "phone": "+4915112345678",
    }
    status, user = await call(client, "POST", "/v1/users", json=body)
    assert status == 201, user
    return user["id"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("field", NOT_NULLABLE)
async def test_admin_patching_null_is_422(client: Client, field: str) -> None:
    user_id = await new_user(client)
    status, body = await call(client, "PATCH", f"/v1/users/{user_id}", json={field: None})
    assert_422(status, body, field)
    status, user = await call(client, "GET", f"/v1/users/{user_id}")
    assert status == 200 and user["version"] == 1, user


@pytest.mark.parametrize("field", SELF_EDITABLE)
async def test_responder_patching_null_on_themself_is_422(client: Client, field: str) -> None:
    user_id = await new_user(client)
    status, body = await call(
        client, "PATCH", f"/v1/users/{user_id}", json={field: None}, headers=token(user_id, "responder")
    )
    assert_422(status, body, field)


async def test_null_phone_removes_the_phone(client: Client) -> None:
    user_id = await new_user(client)
    status, user = await call(client, "PATCH", f"/v1/users/{user_id}", json={"phone": None})
    assert status == 200, user
    assert user["phone"] is None
    status, user = await call(client, "GET", f"/v1/users/{user_id}")
    assert (status, user["phone"]) == (200, None), user
