"""HTTP helpers of the end-to-end tests: one request to a running service and its decoded answer."""

from __future__ import annotations

from typing import Any

import aiohttp

from tools.procs import ServiceProcess


async def call(method: str, url: str, *, headers: dict[str, str] | None = None, **kw: Any) -> tuple[int, Any]:
    """Status and body: JSON decoded, an iCalendar feed as bytes, None when empty."""
    async with aiohttp.ClientSession() as http, http.request(method, url, headers=headers, **kw) as resp:
        if resp.content_type == "text/calendar":
            return resp.status, await resp.read()
        return resp.status, (await resp.json(content_type=None) if resp.content_length != 0 else None)


async def get(process: ServiceProcess, path: str) -> tuple[int, Any] | None:
    """GET `path` of a service process that may not be listening yet (or any more): None then."""
    try:
        async with aiohttp.ClientSession() as http, http.get(process.base_url + path, timeout=2) as resp:
            return resp.status, await resp.json()
    except (TimeoutError, aiohttp.ClientError):
        return None
