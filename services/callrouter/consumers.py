"""Kafka subscribers of the callrouter service."""

from __future__ import annotations

from services.callrouter import service
from shared.messages import UserSnapshot
from shared.runtime import Service
from shared.topics import USERS


def register(svc: Service) -> None:
    @svc.subscriber(USERS)
    async def on_user_snapshot(snapshot: UserSnapshot) -> None:
        """Refresh the dialable responders from schedule's user snapshots."""
        await service.apply_user_snapshot(svc.pool, snapshot)
