"""The topic registry: every Kafka topic, who writes it, and the messages it carries.

One topic per producer stream, versioned. Keys are entity ids so one entity's messages stay ordered;
commands to notifier are keyed by the recipient user.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Union

from pydantic import Field

from shared.messages import (
    CallAlertChanged,
    CoverageApplied,
    CoverageRejected,
    CoverageRequestAccepted,
    CoverageRequestRevoked,
    CoverageReverted,
    Message,
    NotificationAcknowledged,
    NotificationAttempted,
    NotificationQueued,
    PolicySnapshot,
    ScheduleTimeline,
    SendNotification,
    SupportHoursSnapshot,
    TeamSnapshot,
    UserSnapshot,
    WithdrawNotifications,
)

SERVICES = ("schedule", "coverage", "callrouter", "notifier")


@dataclass(frozen=True)
class Topic:
    name: str
    owner: str
    messages: tuple[type[Message], ...]
    partitions: int = 3
    compacted: bool = False

    @property
    def schema(self) -> Any:
        """What one record of the topic parses as: its message, or the union of its messages told apart by
        `type` (parsed as that one message alone, not tried against each)."""
        if len(self.messages) == 1:
            return self.messages[0]
        return Annotated[Union[self.messages], Field(discriminator="type")]  # noqa: UP007

    @property
    def dlq(self) -> str:
        return dead_letter_topic(self.name)


def dead_letter_topic(name: str) -> str:
    return f"{name}.dlq"


USERS = Topic("schedule.users.v1", "schedule", (UserSnapshot,), compacted=True)
TEAMS = Topic("schedule.teams.v1", "schedule", (TeamSnapshot,), compacted=True)
TIMELINES = Topic("schedule.timelines.v1", "schedule", (ScheduleTimeline,), compacted=True)
POLICIES = Topic("schedule.policies.v1", "schedule", (PolicySnapshot,), compacted=True)
SUPPORT_HOURS = Topic("schedule.support-hours.v1", "schedule", (SupportHoursSnapshot,), compacted=True)
COVERAGE_OUTCOMES = Topic("schedule.coverage.v1", "schedule", (CoverageApplied, CoverageRejected, CoverageReverted))
COVERAGE_REQUESTS = Topic("coverage.requests.v1", "coverage", (CoverageRequestAccepted, CoverageRequestRevoked))
NOTIFICATION_COMMANDS = Topic(
    "notifier.commands.v1", "notifier", (SendNotification, WithdrawNotifications), partitions=6
)
DELIVERIES = Topic(
    "notifier.deliveries.v1", "notifier", (NotificationQueued, NotificationAttempted, NotificationAcknowledged)
)
CALL_ALERTS = Topic("callrouter.alerts.v1", "callrouter", (CallAlertChanged,), compacted=True)

ALL_TOPICS = (
    USERS,
    TEAMS,
    TIMELINES,
    POLICIES,
    SUPPORT_HOURS,
    COVERAGE_OUTCOMES,
    COVERAGE_REQUESTS,
    NOTIFICATION_COMMANDS,
    DELIVERIES,
    CALL_ALERTS,
)


def topic_for(message: Message) -> Topic:
    """The topic a message type is published on."""
    for topic in ALL_TOPICS:
        if type(message) in topic.messages:
            return topic
    raise LookupError(f"no topic carries {type(message).__name__}")
