"""Telephony plumbing: the Twilio signature check every voice webhook runs behind, and Twilio's REST client.

Twilio signs the URL it called (the public one, behind the gateway) plus the posted form fields with the
account's auth token (HMAC-SHA1, base64, in `X-Twilio-Signature`); twilio's `RequestValidator` checks it.
The process sees another URL than Twilio called, so the signed URL is rebuilt: from the scheme, host and path
prefix the gateway forwards (`X-Forwarded-Proto`, `X-Forwarded-Host`, `X-Forwarded-Prefix`) when the direct peer
is one of the configured trusted proxies, otherwise from the configured public base URL; then the path and
query the request arrived with. Forwarded headers from any other peer are ignored, so a client cannot choose
the URL its signature is checked against.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

FORM = "application/x-www-form-urlencoded"
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_HOST = re.compile(r"^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")
_PREFIX = re.compile(r"^(/[A-Za-z0-9._~%!$&'()*+,;=:@-]+)*/?$")


def networks(cidrs: Iterable[str]) -> tuple[IpNetwork, ...]:
    """IPs or CIDRs (as `ServiceSettings.trusted_proxies` holds them) as networks."""
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def _first(value: str | None) -> str:
    """The client-side (left-most) value of a forwarded header a proxy may have appended to."""
    return (value or "").split(",")[0].strip()


@dataclass(frozen=True)
class TwilioWebhook:
    """What checking Twilio's callbacks needs: the auth token that signs them and the public base URL Twilio
    was given."""

    auth_token: str
    public_url: str
    trusted_proxies: tuple[IpNetwork, ...] = field(default=())

    @classmethod
    def behind(cls, auth_token: str, public_url: str, trusted_proxies: Iterable[str]) -> TwilioWebhook:
        """A check that believes the forwarded headers of `trusted_proxies` (IPs or CIDRs, e.g.
        `settings.trusted_proxies`)."""
        return cls(auth_token, public_url, networks(trusted_proxies))

    def trusts(self, peer: str | None) -> bool:
        if not peer or not self.trusted_proxies:
            return False
        try:
            address = ipaddress.ip_address(peer.split("%")[0])
        except ValueError:
            return False
        return any(address in network for network in self.trusted_proxies)

    def signed_url(self, request: web.Request) -> str:
        """The URL Twilio called: the public base URL (or what a trusted gateway forwards) + path and query."""
        public = urlsplit(self.public_url)
        scheme, host, prefix = public.scheme, public.netloc, public.path
        if self.trusts(request.remote):
            proto = _first(request.headers.get("X-Forwarded-Proto")).lower()
            forwarded_host = _first(request.headers.get("X-Forwarded-Host"))
            forwarded_prefix = _first(request.headers.get("X-Forwarded-Prefix"))
            scheme = proto if proto in ("http", "https") else scheme
            host = forwarded_host if _HOST.match(forwarded_host) else host
            prefix = forwarded_prefix if forwarded_prefix and _PREFIX.match(forwarded_prefix) else prefix
        return f"{scheme}://{host}{prefix.rstrip('/')}{request.path_qs}"

    async def verified_form(self, request: web.Request) -> dict[str, str]:
        """The posted form of a request Twilio signed; anything else is a 403 (never a 4xx that tells a forger
        which part was wrong beyond the reason)."""
        if not self.auth_token:
            raise web.HTTPForbidden(text="Twilio webhooks are not configured")
        # Twilio posts a urlencoded form; anything else cannot carry a valid signature.
        if request.content_type != FORM:
            raise web.HTTPForbidden(text="not a signed Twilio form")
        signature = request.headers.get("X-Twilio-Signature", "")
        if not signature:
            raise web.HTTPForbidden(text="missing X-Twilio-Signature")
        try:
            form = await request.post()
        except (ValueError, UnicodeDecodeError):
            raise web.HTTPForbidden(text="not a signed Twilio form") from None
        params = {k: str(v) for k, v in form.items()}
        if not RequestValidator(self.auth_token).validate(self.signed_url(request), params, signature):
            raise web.HTTPForbidden(text="invalid Twilio signature")
        return params


TWILIO_WEBHOOK = web.AppKey("twilio_webhook", TwilioWebhook)


def twilio_webhook(request: web.Request) -> TwilioWebhook:
    webhook = request.app.get(TWILIO_WEBHOOK)
    if webhook is None:
        raise web.HTTPForbidden(text="Twilio webhooks are not configured")
    return webhook


class TwilioRest:
    """The twilio package's REST client on its async HTTP client, made on first use (the client's aiohttp session
    needs the running loop). `base_url` replaces https://api.twilio.com (the local telephony simulator)."""

    def __init__(self, account_sid: str, auth_token: str, base_url: str = "https://api.twilio.com") -> None:
        self._account_sid, self._auth_token, self._base_url = account_sid, auth_token, base_url
        self._client: Client | None = None
        self._http: AsyncTwilioHttpClient | None = None

    @property
    def client(self) -> Client:
        if self._client is None:
            self._http = AsyncTwilioHttpClient()
            self._client = Client(self._account_sid, self._auth_token, http_client=self._http)
            self._client.api.base_url = self._base_url
        return self._client

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()


# How many of the latest calls between two numbers are read to find one placed by an interrupted attempt.
CALLS_LOOKBACK = 20


def calls_since(latest_first: Sequence[Any], since: datetime) -> list[str]:
    """The sids of the calls a Calls list returned (newest first, as Twilio lists them) created at or after
    `since`, oldest first. Creation times have whole seconds: within one, the list's own order decides. What
    an attempt to place a call that died before recording it may have placed (Twilio has no idempotency key
    on `Calls.create`)."""
    recent = [c for c in reversed(latest_first) if c.date_created is not None and c.date_created >= since]
    return [str(c.sid) for c in sorted(recent, key=lambda c: c.date_created)]

