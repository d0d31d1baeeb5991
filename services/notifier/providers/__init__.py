"""Outside vendors behind one interface each, so a vendor can be swapped without touching the core.

A provider turns one push (or one voice message) into one request to its vendor and says how it went in
vendor-neutral terms. It never retries by itself and never touches the database: retries, backoff and what a
result means for the device or the delivery are the notifier's decisions. Local fakes that answer like the
vendors live in `tools/fakes/`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

Platform = Literal["ios", "android"]


@dataclass(frozen=True)
class Push:
    """One push to one device. `collapse_id` names the intent (the same for a resend), so the phone shows a
    resend as the same notification; `critical` breaks through Do-Not-Disturb and silent mode where the
    device allows it (Apple critical alerts, an Android high-importance DND-bypassing channel);
    `time_sensitive` is Apple's interruption level for urgent but not critical pushes."""

    token: str
    title: str
    body: str
    collapse_id: str
    critical: bool = False
    time_sensitive: bool = False
    badge: int | None = None
    data: Mapping[str, str] = field(default_factory=dict)
    ttl_s: int = 3600


@dataclass(frozen=True)
class VoiceCall:
    """One outbound call that speaks `message` in `language` (BCP 47, e.g. "de-DE") and asks the callee to
    press 1 to acknowledge; the key pressed is posted to `callback_url` (a signed webhook)."""

    to: str  # E.164
    from_: str  # E.164
    message: str
    language: str
    callback_url: str


Result = Literal["sent", "retry", "failed", "gone"]


@dataclass(frozen=True)
class Outcome:
    """How one attempt went.

    - sent: the vendor accepted it (`provider_id`: its id for it, e.g. apns-id, FCM message name, call SID);
    - retry: a transient refusal (429, 5xx, timeout, connection error); `retry_after_s` when the vendor said;
    - failed: a permanent refusal of this request (e.g. a malformed payload, bad credentials); do not retry;
    - gone: the device token is no longer valid (APNs 410 Unregistered / 400 BadDeviceToken, FCM
      UNREGISTERED / INVALID_ARGUMENT on the token): remove the device.
    """

    result: Result
    provider_id: str | None = None
    error: str | None = None
    retry_after_s: float | None = None


class PushProvider(Protocol):
    """Delivers pushes to the devices of one platform."""

    async def send(self, push: Push) -> Outcome: ...

    async def close(self) -> None: ...


class VoiceProvider(Protocol):
    """Places outbound voice calls."""

    async def call(self, call: VoiceCall) -> Outcome: ...

    async def placed(self, call: VoiceCall, since: datetime) -> list[str]:
        """The ids of calls from `call.from_` to `call.to` the vendor created at or after `since`, oldest first:
        what an attempt that died before recording its call may have placed."""

    async def close(self) -> None: ...
