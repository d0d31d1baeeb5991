"""What a phone shows: a push as the APNs or FCM fake recorded it, read into one shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Received:
    """One push on a phone's screen: when it arrived (unix time), its texts, whether it broke through
    Do-Not-Disturb, its collapse id, the app icon's badge it sets, and the app's data."""

    at: float | None
    title: str
    body: str
    critical: bool
    collapse: str | None
    badge: int | None
    data: dict[str, Any]

    @classmethod
    def of(cls, platform: str, item: dict[str, Any]) -> Received:
        """`item`: one entry of the APNs fake's `/_fake/pushes` (platform "ios") or the FCM fake's
        `/_fake/messages` (platform "android")."""
        if platform == "ios":
            payload = item.get("payload", {})
            aps = payload.get("aps", {})
            alert = aps.get("alert", {})
            title, body = (alert.get("title"), alert.get("body")) if isinstance(alert, dict) else ("", alert)
            sound = aps.get("sound")
            critical = aps.get("interruption-level") == "critical" or (
                isinstance(sound, dict) and bool(sound.get("critical"))
            )
            collapse = item.get("headers", {}).get("apns-collapse-id")
            badge = aps.get("badge")
            data = {k: v for k, v in payload.items() if k != "aps"}
        else:
            message = item.get("message", {})
            note = message.get("notification", {})
            android = message.get("android", {})
            title, body = note.get("title"), note.get("body")
            critical = android.get("notification", {}).get("notification_priority") == "PRIORITY_MAX"
            collapse = android.get("collapse_key")
            badge = android.get("notification", {}).get("notification_count")
            data = dict(message.get("data", {}))
        return cls(item.get("received_at"), title or "", body or "", critical, collapse,
                   None if badge is None else int(badge), data)
