"""Defect 2: an Authorization header that is not ASCII is a bad credential (401) on every /v1 route, never 500.

aiohttp's client refuses to send such bytes, so the request is written by hand over a plain TCP connection.
"""

from __future__ import annotations

import asyncio
import re
import uuid

import pytest

import services.schedule.api
from tests.api.conftest import Client

pytestmark = pytest.mark.api

HEADERS = [
    pytest.param(b"Bearer \xff\xfe", id="invalid-utf8"),
    pytest.param(b"Bearer \xc3\xa9t\xc3\xa9", id="utf8-non-ascii"),
    pytest.param(b"B\xe9arer abc", id="latin1-scheme"),
]


def v1_routes() -> list[tuple[str, str]]:
    """Every /v1 operation with its path parameters filled in."""
    routes = []
    for op in services.schedule.api.api.operations:
        if op.path.startswith("/v1/"):
            routes.append((op.method, re.sub(r"\{[^{}]+\}", lambda _: str(uuid.uuid4()), op.path)))
    return routes


async def raw_request(client: Client, method: str, path: str, authorization: bytes) -> tuple[int, dict[str, str]]:
    """(status, headers) of a request whose Authorization header is sent as exactly these bytes."""
    body = b"{}" if method in ("POST", "PUT", "PATCH") else b""
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {client.host}:{client.port}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(head + b"Authorization: " + authorization + b"\r\n\r\n" + body)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
        headers: dict[str, str] = {}
        while (line := await asyncio.wait_for(reader.readline(), 10)) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
    finally:
        writer.close()
    return int(status_line.split()[1]), headers


@pytest.mark.parametrize("authorization", HEADERS)
async def test_non_ascii_authorization_is_401_on_every_route(client: Client, authorization: bytes) -> None:
    routes = v1_routes()
    assert len(routes) >= 20, routes  # the app's /v1 operations, not an empty list that passes vacuously
    wrong = []
    for method, path in routes:
        status, headers = await raw_request(client, method, path, authorization)
        if status != 401 or not headers.get("www-authenticate", "").lower().startswith("bearer"):
            wrong.append((method, path, status))
    assert not wrong, f"{len(wrong)} routes did not answer 401 with WWW-Authenticate: {wrong}"
