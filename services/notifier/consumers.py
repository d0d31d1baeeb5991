"""Kafka subscribers of the notifier service: parse, then hand to the use case."""

from __future__ import annotations

from datetime import timedelta

from services.notifier.service import deliveries as service
from shared.messages import SendNotification, UserSnapshot
from shared.runtime import Service
from shared.topics import NOTIFICATION_COMMANDS, USERS


def register(svc: Service, proof_after: timedelta | None = None) -> None:
    @svc.subscriber(USERS)
    async def on_user_snapshot(snapshot: UserSnapshot) -> None:
        """Refresh the recipient directory from schedule's user snapshots."""
        await service.apply_user_snapshot(svc.pool, snapshot)

    @svc.subscriber(NOTIFICATION_COMMANDS)
    async def on_send_notification(command: SendNotification) -> None:
        """Accept a notification command; duplicates have no second effect."""
        await service.accept_notification(svc.pool, command, proof_after)
