"""Use cases of the notifier service."""

from __future__ import annotations

from uuid import UUID, uuid4

import asyncpg

from services.notifier import store
from services.notifier.domain import Delivery
from shared.db import transaction
from shared.errors import found
from shared.inbox import claim
from shared.logs import get_logger
from shared.messages import NotificationQueued, SendNotification, UserSnapshot
from shared.outbox import enqueue
from shared.projection import project_once

log = get_logger(__name__)

USERS_CONSUMER = "notifier.users"
COMMANDS_CONSUMER = "notifier.commands"


async def apply_user_snapshot(pool: asyncpg.Pool, snapshot: UserSnapshot) -> bool:
    """Keep the recipient directory in step with schedule's users; True if it changed."""
    return await project_once(pool, USERS_CONSUMER, snapshot, store.upsert_recipient)


async def accept_notification(pool: asyncpg.Pool, command: SendNotification) -> Delivery | None:
    """Record a delivery for the command, once per event and once per idempotency key.

    Returns the new delivery, or None when the command was a redelivery or a repeat of something the user
    has already been told.
    """
    delivery = Delivery(
        id=uuid4(), user_id=command.user_id, idempotency_key=command.idempotency_key, title=command.title,
        body=command.body, urgency=command.urgency, data=dict(command.data),
    )
    async with transaction(pool) as conn:
        if not await claim(conn, COMMANDS_CONSUMER, command.event_id):
            return None
        if not await store.insert_delivery(conn, delivery, command.event_id):
            return None
        await enqueue(
            conn,
            NotificationQueued(
                delivery_id=delivery.id, user_id=delivery.user_id, idempotency_key=delivery.idempotency_key
            ),
        )
    log.info("notification queued", delivery_id=str(delivery.id), user_id=str(delivery.user_id))
    return delivery


async def is_deactivated(pool: asyncpg.Pool, user_id: UUID) -> bool:
    """Whether schedule's user snapshots say this user is deactivated; their tokens then stop working (401)."""
    return await store.is_deactivated(pool, user_id)


async def get_recipient(pool: asyncpg.Pool, user_id: UUID) -> asyncpg.Record:
    """notifier's own copy of a user."""
    return found(await store.get_recipient(pool, user_id), f"recipient {user_id}")


async def list_deliveries(pool: asyncpg.Pool, user_id: UUID, limit: int, offset: int) -> list[Delivery]:
    """A user's notifications, newest first."""
    return await store.list_deliveries(pool, user_id, limit=limit, offset=offset)
