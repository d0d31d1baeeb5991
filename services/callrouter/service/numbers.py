"""Routing numbers: the phone numbers callrouter answers and how each routes its callers (admins only; the
route declares it)."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from uuid import UUID

import asyncpg

from services.callrouter import store
from services.callrouter.domain import RoutingNumber, new_routing_number
from shared.db import transaction
from shared.errors import Conflict, found


async def _checked(conn: asyncpg.Connection, number: RoutingNumber) -> RoutingNumber:
    policies = set(await store.policy_names(conn, number.policies()))
    hours = await store.known_support_hours(conn, [number.support_hours_id] if number.support_hours_id else [])
    return new_routing_number(number, policies, hours)


async def create(pool: asyncpg.Pool, number: RoutingNumber, now: datetime) -> RoutingNumber:
    """Add a routing number; 409 naming the one that already answers the same phone number."""
    async with transaction(pool) as conn:
        checked = await _checked(conn, number)
        created = await store.insert_number(conn, checked, now)
        if created is None:
            taken = await store.number_taken(conn, number.number, number.id)
            raise Conflict(f"{number.number} is already a routing number", number_id=str(taken))
        return created


async def replace(
    pool: asyncpg.Pool, number: RoutingNumber, now: datetime, expected_version: int | None
) -> RoutingNumber:
    """Replace a routing number's whole configuration; with `expected_version`, only if nobody changed it since."""
    async with transaction(pool) as conn:
        held = found(await store.get_number(conn, number.id, lock=True), f"routing number {number.id}")
        if expected_version is not None and held.version != expected_version:
            raise Conflict("the routing number was changed meanwhile", version=held.version)
        checked = await _checked(conn, dataclasses.replace(number, created_at=held.created_at))
        taken = await store.number_taken(conn, number.number, number.id)
        if taken is not None:
            raise Conflict(f"{number.number} is already a routing number", number_id=str(taken))
        return await store.update_number(conn, checked, now)


async def get(pool: asyncpg.Pool, number_id: UUID) -> RoutingNumber:
    async with pool.acquire() as conn:
        return found(await store.get_number(conn, number_id), f"routing number {number_id}")


async def listing(pool: asyncpg.Pool, limit: int, offset: int) -> list[RoutingNumber]:
    async with pool.acquire() as conn:
        return await store.list_numbers(conn, limit, offset)


async def delete(pool: asyncpg.Pool, number_id: UUID) -> None:
    """Stop answering a number; calls already in progress carry on with what they were told."""
    async with transaction(pool) as conn:
        if not await store.delete_number(conn, number_id):
            found(None, f"routing number {number_id}")
