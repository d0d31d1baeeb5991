"""Apple Push Notification service (APNs) over its HTTP/2 provider API, with token-based authentication.

Why neither aioapns (which DESIGN.md section 9 names) nor httpx: aioapns 4.0 cannot be pointed at another host
without patching it. The host and port are class attributes of its connection protocol (`APNS_SERVER`,
`APNS_PORT`), picked inside the connection pool from `use_sandbox`; its only other route, `proxy_host`, tunnels
to api.push.apple.com by name. So the local fake and the tests could not reach it. It also hides what the
provider must report (the response headers) and retries failed connections by itself
(`max_connection_attempts`, one second apart) where this package leaves retries to the notifier. httpx, the
first client here, spoke to any host but cost about 1 ms of CPU per push in its own layers. The client is now
`http2.Http2Connection`: the same `h2` state machine aioapns uses, on an asyncio protocol, and nothing more.

One `ApnsProvider` holds one HTTP/2 connection and multiplexes concurrent sends on it, as many at once as the
server's `MAX_CONCURRENT_STREAMS` allows (APNs: up to 1000); further sends wait for a free stream, within their
timeout. If the connection dies or APNs sends GOAWAY, the sends on it come back as `retry` and the next send
opens a new one.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import ssl
import time
import urllib.parse
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from services.notifier.providers import Outcome, Push
from services.notifier.providers.http2 import Http2Connection, Http2Error

PRODUCTION_URL = "https://api.push.apple.com"
SANDBOX_URL = "https://api.sandbox.push.apple.com"
ALERT_PRIORITY = "10"
MAX_COLLAPSE_ID_BYTES = 64
# Apple refuses tokens older than an hour and refreshes more often than every 20 minutes.
PROVIDER_TOKEN_REFRESH_S = 50 * 60
CRITICAL_SOUND: Mapping[str, Any] = {"critical": 1, "name": "default", "volume": 1.0}
GONE_REASONS = frozenset({"BadDeviceToken", "DeviceTokenNotForTopic", "Unregistered", "ExpiredToken"})
PROVIDER_TOKEN_REFUSALS = frozenset({"ExpiredProviderToken", "InvalidProviderToken"})


@dataclass(frozen=True)
class ApnsCredentials:
    """An APNs authentication key: its id, the team that owns it, the .p8 private key (PEM), and the app's
    bundle id, the topic every push is sent to."""

    key_id: str
    team_id: str
    private_key_pem: str
    topic: str


def interruption_level(push: Push) -> str:
    if push.critical:
        return "critical"
    if push.time_sensitive:
        return "time-sensitive"
    return "active"


def apns_payload(push: Push) -> dict[str, Any]:
    """The JSON payload Apple expects for `push`: the `aps` dictionary, then the custom data as top-level keys."""
    aps: dict[str, Any] = {
        "alert": {"title": push.title, "body": push.body},
        "sound": dict(CRITICAL_SOUND) if push.critical else "default",
        "interruption-level": interruption_level(push),
    }
    if push.badge is not None:
        aps["badge"] = push.badge
    # Custom data goes first so a data key named "aps" can never replace the alert.
    return {**push.data, "aps": aps}


def collapse_id(push: Push) -> str:
    """The apns-collapse-id: the push's collapse id, or its SHA-256 when longer than Apple's 64 bytes (still the
    same for every resend of the intent)."""
    if len(push.collapse_id.encode()) <= MAX_COLLAPSE_ID_BYTES:
        return push.collapse_id
    return hashlib.sha256(push.collapse_id.encode()).hexdigest()


def apns_headers(push: Push, *, topic: str, apns_id: str, now: float) -> dict[str, str]:
    """The request headers for `push`, but `authorization`. `ttl_s` <= 0 means "now or never" (expiration 0)."""
    expiration = int(now) + push.ttl_s if push.ttl_s > 0 else 0
    return {
        "apns-id": apns_id,
        "apns-topic": topic,
        "apns-push-type": "alert",
        "apns-priority": ALERT_PRIORITY,
        "apns-expiration": str(expiration),
        "apns-collapse-id": collapse_id(push),
    }


def retry_after_s(value: str | None, now: float) -> float | None:
    """Seconds to wait from a retry-after header (delay-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def reason_of(body: bytes) -> str | None:
    try:
        document = json.loads(body)
    except ValueError:
        return None
    reason = document.get("reason") if isinstance(document, dict) else None
    return reason if isinstance(reason, str) else None


def outcome_of(status: int, headers: Mapping[str, str], body: bytes, now: float) -> Outcome:
    """What an APNs answer means: 200 sent; 410 and dead-token 400s gone; 429 and 5xx retry; other errors failed."""
    apns_id = headers.get("apns-id")
    if status == 200:
        return Outcome("sent", provider_id=apns_id)
    reason = reason_of(body) or f"HTTP {status}"
    if status == 410 or (status == 400 and reason in GONE_REASONS):
        return Outcome("gone", provider_id=apns_id, error=reason)
    if status == 429 or status >= 500:
        return Outcome("retry", provider_id=apns_id, error=reason,
                       retry_after_s=retry_after_s(headers.get("retry-after"), now))
    return Outcome("failed", provider_id=apns_id, error=reason)


class ProviderToken:
    """The `authorization` header value: an ES256 JWT (kid = key id, iss = team id, iat), reused for 50 minutes
    because Apple throttles providers that mint tokens more often than every 20."""

    def __init__(self, credentials: ApnsCredentials, clock: Callable[[], float] = time.time) -> None:
        key = serialization.load_pem_private_key(credentials.private_key_pem.encode(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
            raise ValueError("an APNs authentication key is an EC P-256 private key (the .p8 file)")
        self._key = key
        self._key_id = credentials.key_id
        self._team_id = credentials.team_id
        self._clock = clock
        self._header: str | None = None
        self._issued_at = 0

    def header(self) -> str:
        """The current `bearer <JWT>`, minted anew when older than the refresh interval."""
        now = int(self._clock())
        if self._header is None or now - self._issued_at >= PROVIDER_TOKEN_REFRESH_S:
            token = jwt.encode({"iss": self._team_id, "iat": now}, self._key, algorithm="ES256",
                               headers={"kid": self._key_id})
            self._header, self._issued_at = f"bearer {token}", now
        return self._header

    def discard(self) -> None:
        """Mint a new token on the next push (after APNs refused this one)."""
        self._header = None


class ApnsProvider:
    """Delivers pushes to iOS devices through APNs (see the module docstring for the connection)."""

    def __init__(
        self,
        credentials: ApnsCredentials,
        *,
        base_url: str = PRODUCTION_URL,
        ca_path: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        """`base_url`: PRODUCTION_URL, SANDBOX_URL, or a fake's (https only); `ca_path`: a PEM CA to trust instead
        of the system's (for a fake); `timeout_s`: the most one send may take, connecting and waiting for a
        stream included."""
        url = urllib.parse.urlsplit(base_url)
        if url.scheme != "https" or not url.hostname:
            raise ValueError(f"APNs is reached over https, not {base_url!r}")
        self._host = url.hostname
        self._port = url.port or 443
        self._authority = url.netloc
        self._credentials = credentials
        self._token = ProviderToken(credentials)
        self._timeout_s = timeout_s
        self._tls = ssl.create_default_context(cafile=ca_path)
        self._tls.set_alpn_protocols(["h2"])
        self._connection: Http2Connection | None = None
        self._connecting = asyncio.Lock()

    async def send(self, push: Push) -> Outcome:
        """One attempt at `push`; never retries by itself."""
        now = time.time()
        headers = [
            (":method", "POST"),
            (":scheme", "https"),
            (":authority", self._authority),
            (":path", f"/3/device/{push.token}"),
            ("authorization", self._token.header()),
            *apns_headers(push, topic=self._credentials.topic, apns_id=str(uuid.uuid4()), now=now).items(),
        ]
        body = json.dumps(apns_payload(push), ensure_ascii=False, separators=(",", ":")).encode()
        headers.append(("content-length", str(len(body))))
        try:
            async with asyncio.timeout(self._timeout_s):
                connection = await self._connected()
                response = await connection.request(headers, body)
        except TimeoutError:
            return Outcome("retry", error=f"no answer from APNs within {self._timeout_s:g} s")
        except (Http2Error, OSError) as exc:  # ssl.SSLError is an OSError
            return Outcome("retry", error=f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        outcome = outcome_of(response.status, response.headers, response.body, time.time())
        if response.status == 403 and outcome.error in PROVIDER_TOKEN_REFUSALS:
            self._token.discard()
        return outcome

    async def _connected(self) -> Http2Connection:
        """The open connection, or a new one when there is none or APNs is closing it (one connect at a time)."""
        connection = self._connection
        if connection is not None and connection.usable:
            return connection
        async with self._connecting:
            connection = self._connection
            if connection is None or not connection.usable:
                connection = await Http2Connection.open(self._host, self._port, self._tls)
                self._connection = connection
            return connection

    async def close(self) -> None:
        """Close the connection; sends still in flight end as `retry`."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None
