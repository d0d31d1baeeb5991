"""The telephony provider behind one interface, so the call flow never names a vendor."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


class TelephonyError(Exception):
    """The provider refused or failed; `retry` says whether trying again later may work (429, 5xx, timeouts)."""

    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


@dataclass(frozen=True)
class Dial:
    """An outbound leg: ring `to` from `from_`; `answer_url` gives the call's instructions once answered and
    `status_url` hears how it went (ringing, answered, completed, busy, no-answer, failed, canceled)."""

    to: str
    from_: str
    answer_url: str
    status_url: str
    ring_timeout_s: int


class Telephony(Protocol):
    async def dial(self, leg: Dial) -> str:
        """Place the leg; returns the provider's call id."""

    async def placed(self, leg: Dial, since: datetime) -> list[str]:
        """The ids of calls from `leg.from_` to `leg.to` the provider created at or after `since`, oldest first:
        what an attempt at this leg that died before recording its call id may have placed."""

    async def redirect(self, call_id: str, url: str) -> None:
        """Give a live call new instructions from `url` (e.g. take a waiting caller to voicemail)."""

    async def hang_up(self, call_id: str) -> None:
        """End a call, whether it still rings (canceled) or is answered (completed); ended calls are left alone."""

    async def close(self) -> None: ...
