"""Android pushes through Firebase Cloud Messaging's HTTP v1 API.

The access token comes from a service-account key file through google-auth (its `token_uri` names the OAuth2
endpoint: Google's, or the local fake's) and is reused until google-auth deems it near expiry. Critical pushes
go to the `critical_alerts` channel, which the Android app creates with high importance and
`setBypassDnd(true)`, so they ring through Do-Not-Disturb once the user has allowed it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import aiohttp
import requests
from google.auth import exceptions as google_auth_errors
from google.auth.transport.requests import Request as GoogleAuthRequest
from google.oauth2 import service_account

from services.notifier.providers import Outcome, Push

FCM_BASE_URL = "https://fcm.googleapis.com"
FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
CRITICAL_CHANNEL_ID = "critical_alerts"
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})


def fcm_message(push: Push, *, critical_channel_id: str = CRITICAL_CHANNEL_ID) -> dict[str, Any]:
    """The `messages:send` body for one push, in FCM HTTP v1's field names."""
    notification: dict[str, Any] = {"tag": push.collapse_id}
    if push.critical:
        notification |= {
            "channel_id": critical_channel_id,
            "notification_priority": "PRIORITY_MAX",
            "visibility": "PUBLIC",
            "default_sound": True,
        }
    elif push.time_sensitive:
        notification["notification_priority"] = "PRIORITY_HIGH"
    if push.badge is not None:
        notification["notification_count"] = push.badge
    return {
        "message": {
            "token": push.token,
            "notification": {"title": push.title, "body": push.body},
            "data": dict(push.data),
            "android": {
                "priority": "high",
                "collapse_key": push.collapse_id,
                "ttl": f"{push.ttl_s}s",
                "notification": notification,
            },
        }
    }


def retry_after_seconds(header: str | None, now: datetime | None = None) -> float | None:
    """The delay a Retry-After header asks for (seconds or an HTTP date), or None."""
    if not header:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())


def fcm_error_code(error: Mapping[str, Any]) -> str | None:
    for detail in error.get("details", ()):
        if detail.get("@type") == FCM_ERROR_TYPE:
            return str(detail.get("errorCode"))
    return None


def is_about_the_token(error: Mapping[str, Any]) -> bool:
    """Whether an INVALID_ARGUMENT names the registration token, not the rest of the message."""
    for detail in error.get("details", ()):
        if detail.get("@type") == BAD_REQUEST_TYPE:
            if any(violation.get("field") == "message.token" for violation in detail.get("fieldViolations", ())):
                return True
    return "registration token" in str(error.get("message", ""))


def outcome_of_answer(status: int, body: str, retry_after: str | None = None) -> Outcome:
    """What one answer of `messages:send` means, in provider-neutral terms (401 is the caller's to handle)."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    payload = parsed if isinstance(parsed, dict) else {}
    if status == 200:
        return Outcome("sent", provider_id=payload.get("name"))
    found = payload.get("error")
    error: Mapping[str, Any] = found if isinstance(found, dict) else {}
    code = fcm_error_code(error) or error.get("status") or f"HTTP {status}"
    description = f"{code}: {error.get('message', body[:200])}"
    if code == "UNREGISTERED" or (code == "INVALID_ARGUMENT" and is_about_the_token(error)):
        return Outcome("gone", error=description)
    if status in TRANSIENT_STATUSES or status >= 500:
        return Outcome("retry", error=description, retry_after_s=retry_after_seconds(retry_after))
    return Outcome("failed", error=description)


class FcmProvider:
    """Delivers pushes to Android devices through FCM HTTP v1 (a `PushProvider`)."""

    def __init__(
        self,
        service_account_file: str | Path,
        *,
        base_url: str = FCM_BASE_URL,
        timeout_s: float = 10.0,
        critical_channel_id: str = CRITICAL_CHANNEL_ID,
    ) -> None:
        self._credentials = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
            str(service_account_file), scopes=[FCM_SCOPE]
        )
        self._send_url = f"{base_url.rstrip('/')}/v1/projects/{self._credentials.project_id}/messages:send"
        self._timeout_s = timeout_s
        self._critical_channel_id = critical_channel_id
        self._token_lock = asyncio.Lock()
        self._token_http = requests.Session()
        self._session: aiohttp.ClientSession | None = None

    async def send(self, push: Push) -> Outcome:
        """Send one push; a refused access token is renewed once and the push sent again."""
        body = fcm_message(push, critical_channel_id=self._critical_channel_id)
        try:
            token = await self._access_token()
            outcome = await self._post(body, token)
            if outcome is None:
                outcome = await self._post(body, await self._access_token(refused=token))
        except google_auth_errors.RefreshError as exc:
            return Outcome("retry" if exc.retryable else "failed", error=f"access token: {exc}")
        except google_auth_errors.GoogleAuthError as exc:
            return Outcome("retry", error=f"access token: {exc}")
        except TimeoutError:
            return Outcome("retry", error=f"no answer within {self._timeout_s:g}s")
        except aiohttp.ClientError as exc:
            return Outcome("retry", error=f"{type(exc).__name__}: {exc}")
        if outcome is None:
            return Outcome("failed", error="UNAUTHENTICATED: a freshly issued access token was refused")
        return outcome

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        self._token_http.close()

    async def _access_token(self, refused: str | None = None) -> str:
        """A valid access token; a new one if the cached one is near expiry or is `refused`."""
        async with self._token_lock:
            credentials = self._credentials
            if not credentials.valid or (refused is not None and credentials.token == refused):
                async with asyncio.timeout(self._timeout_s):
                    # google-auth's service-account refresh is blocking HTTP (requests).
                    await asyncio.to_thread(credentials.refresh, GoogleAuthRequest(self._token_http))
            return str(credentials.token)

    async def _post(self, body: Mapping[str, Any], token: str) -> Outcome | None:
        """Send once; None when the access token was refused (401)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout_s))
        headers = {"Authorization": f"Bearer {token}"}
        async with self._session.post(self._send_url, json=body, headers=headers) as answer:
            text = await answer.text()
            if answer.status == 401:
                return None
            return outcome_of_answer(answer.status, text, answer.headers.get("Retry-After"))
