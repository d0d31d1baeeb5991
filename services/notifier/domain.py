"""What a notification is, independent of how it is delivered."""

from __future__ import annotations

from dataclasses import dataclass, field
from uuid import UUID


@dataclass(frozen=True)
class Delivery:
    id: UUID
    user_id: UUID
    idempotency_key: str
    title: str
    body: str
    urgency: str
    data: dict[str, str] = field(default_factory=dict)
    status: str = "queued"

