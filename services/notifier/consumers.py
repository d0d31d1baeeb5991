"""Kafka subscribers of the notifier service: parse, then hand to the use case, a fetched batch at a time (one
transaction each; see shared.kafka.batch_subscriber)."""

from __future__ import annotations

from datetime import timedelta

from services.notifier.domain import MINUTE
from services.notifier.service import deliveries as service
from shared.messages import SendNotification, UserSnapshot, WithdrawNotifications
from shared.runtime import Service
from shared.topics import NOTIFICATION_COMMANDS, USERS


def register(svc: Service, proof_after: timedelta | None = None, minute: timedelta = MINUTE) -> None:
    """`minute`: how long a minute of a preference step's delay lasts (`DELAY_MINUTE_S`)."""

    @svc.subscriber(USERS, batch=True)
    async def on_user_snapshot(snapshots: list[UserSnapshot]) -> None:
        """Refresh the recipient directory from schedule's user snapshots."""
        await service.apply_user_snapshots(svc.pool, snapshots)

    @svc.subscriber(NOTIFICATION_COMMANDS, batch=True)
    async def on_notification_command(commands: list[SendNotification | WithdrawNotifications]) -> None:
        """Tell a user something (SendNotification), or stop what they are still being told about a thing the
        sender settled (WithdrawNotifications); in order, duplicates having no second effect."""
        await service.handle_commands(svc.pool, commands, proof_after, minute)
