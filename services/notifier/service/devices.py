"""Devices: the phones a user's pushes go to."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from uuid import UUID, uuid4

import asyncpg

from services.notifier import store
from services.notifier.domain import Device, Platform
from shared.auth import Principal
from shared.db import transaction
from shared.errors import NotFound


async def register(
    pool: asyncpg.Pool, actor: Principal, platform: Platform, token: str, app_version: str, critical_allowed: bool,
    now: datetime,
) -> Device:
    """The caller's phone, identified by its push token. Registering a token again refreshes it; a token
    last registered by someone else (a shared or handed-over phone) now reaches the caller only."""
    device = Device(uuid4(), actor.user_id, platform, token, app_version, critical_allowed, now, now)
    async with transaction(pool) as conn:
        return await store.upsert_device(conn, device)


async def _mine(conn: asyncpg.Connection, actor: Principal, device_id: UUID) -> Device:
    device = await store.get_device(conn, device_id, lock=True)
    # Another user's device is reported as absent, as an unknown id is: its existence is not theirs to learn.
    if device is None or not (actor.is_admin or device.user_id == actor.user_id):
        raise NotFound(f"device {device_id}")
    return device


async def refresh(
    pool: asyncpg.Pool, actor: Principal, device_id: UUID, token: str, app_version: str, critical_allowed: bool,
    now: datetime,
) -> Device:
    """A new push token (the OS rotates them) or app version for a device of the caller's."""
    async with transaction(pool) as conn:
        device = await _mine(conn, actor, device_id)
        changed = replace(
            device, token=token, app_version=app_version, critical_allowed=critical_allowed, updated_at=now
        )
        # the new token registered as another device is this phone's older registration
        await store.delete_token(conn, device.platform, token, keep=device.id)
        return await store.update_device(conn, changed)


async def remove(pool: asyncpg.Pool, actor: Principal, device_id: UUID) -> None:
    """Stop pushing to a device (signed out, app removed)."""
    async with transaction(pool) as conn:
        await _mine(conn, actor, device_id)
        await store.delete_device(conn, device_id)


async def listing(pool: asyncpg.Pool, actor: Principal, user_id: UUID) -> list[Device]:
    actor.require_self_or_admin(user_id)
    return await store.devices_of(pool, user_id)
