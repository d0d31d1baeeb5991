"""The local gateway for real: Caddy configured from the routing table in front of a small service that runs the
services' own Twilio check (shared.webhooks) and echoes what reached it.

A webhook signed for the gateway's public URL is accepted through Caddy, a forged one is refused 403, and
forwarded headers count only from a trusted peer; request ids, body limits, timeouts, unknown paths and a
dead upstream behave as the routing table says.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict
from twilio.request_validator import RequestValidator

from shared.webhooks import TwilioWebhook
from tools.gateway import caddy
from tools.gateway.table import RoutingTable, load
from tools.procs import OsProcess, spawn

TOKEN = "twilio-test-token"
PUBLIC_URL = "https://hooks.oncall.example.com"
HOOK = "/webhooks/twilio/voice/3b1f0e52-2c4e-4b7a-9a53-8f1d1e0c9a11"
FORM = {"Digits": "1", "CallSid": "CA123", "From": "+15005550006"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Upstream:
    """The small service: the webhook check in use is swapped per test."""

    webhook: TwilioWebhook
    seen: list[CIMultiDict[str]]


def _app(upstream: Upstream) -> web.Application:
    async def voice(request: web.Request) -> web.Response:
        form = await upstream.webhook.verified_form(request)
        return web.json_response({"form": form})

    async def echo(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("sleep", "0")))
        body = await request.read()
        upstream.seen.append(request.headers.copy())
        request_id = request.headers.get("X-Request-ID", "")
        return web.json_response({"bytes": len(body)}, headers={"X-Request-ID": request_id})

    async def ready(_: web.Request) -> web.Response:
        return web.json_response({"status": "ready"})

    app = web.Application(client_max_size=8 * 1024 * 1024)
    app.router.add_post("/webhooks/twilio/voice/{delivery_id}", voice)
    app.router.add_route("*", "/v1/devices", echo)
    app.router.add_get("/readyz", ready)
    return app


@dataclass
class Gateway:
    config: caddy.GatewayConfig
    upstream: Upstream
    log_dir: Path

    def access_log(self) -> list[dict[str, object]]:
        path = self.log_dir / caddy.ACCESS_LOG
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _short_timeouts(table: RoutingTable) -> RoutingTable:
    return replace(table, routes=tuple(replace(r, timeout_s=1.0) for r in table.routes))


@pytest.fixture(scope="module")
async def upstream() -> AsyncIterator[tuple[Upstream, int]]:
    state = Upstream(TwilioWebhook(TOKEN, PUBLIC_URL), [])
    server = TestServer(_app(state), host="127.0.0.1", port=_free_port())
    await server.start_server()
    try:
        yield state, server.port  # type: ignore[misc]
    finally:
        await server.close()


@pytest.fixture(scope="module")
def gateway(upstream: tuple[Upstream, int], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    state, port = upstream
    root = tmp_path_factory.mktemp("gateway")
    dead = _free_port()  # nothing listens here: schedule's upstream is down
    upstreams = {"schedule": f"127.0.0.1:{dead}", "coverage": f"127.0.0.1:{dead}", "callrouter": f"127.0.0.1:{dead}",
                 "notifier": f"127.0.0.1:{port}"}
    openapi = root / "openapi" / "gateway.json"
    openapi.parent.mkdir()
    openapi.write_text('{"openapi": "3.1.0"}\n')
    config = caddy.write_config(
        root / "state", _short_timeouts(load()), upstreams, {"api": _free_port(), "webhooks": _free_port()},
        root / "logs", openapi,
    )
    proc: OsProcess = spawn(caddy.argv(config), log_path=root / "logs" / "caddy.log",
                            env=caddy.caddy_env(root / "state"))
    try:
        caddy.wait_serving(config, proc)
        yield Gateway(config, state, root / "logs")
    finally:
        proc.terminate(timeout=10)


def _signature(url: str, form: dict[str, str]) -> str:
    return RequestValidator(TOKEN).compute_signature(url, form)


async def _post_hook(base: str, signature: str, headers: dict[str, str] | None = None) -> aiohttp.ClientResponse:
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            base + HOOK, data=FORM, headers={"X-Twilio-Signature": signature, **(headers or {})}
        )
        await response.read()
        return response


async def test_a_webhook_signed_for_the_gateways_url_is_accepted_behind_it(gateway: Gateway) -> None:
    gateway.upstream.webhook = TwilioWebhook.behind(TOKEN, PUBLIC_URL, ["127.0.0.1"])
    public = gateway.config.webhooks_url  # the URL Twilio was given and called
    response = await _post_hook(public, _signature(public + HOOK, FORM))
    assert response.status == 200


async def test_a_forged_webhook_is_refused(gateway: Gateway) -> None:
    gateway.upstream.webhook = TwilioWebhook.behind(TOKEN, PUBLIC_URL, ["127.0.0.1"])
    public = gateway.config.webhooks_url
    forged = RequestValidator("not-the-token").compute_signature(public + HOOK, FORM)
    assert (await _post_hook(public, forged)).status == 403
    assert (await _post_hook(public, _signature(public + HOOK, {**FORM, "Digits": "9"}))).status == 403


async def test_a_client_cannot_forge_the_forwarded_host_through_the_gateway(gateway: Gateway) -> None:
    gateway.upstream.webhook = TwilioWebhook.behind(TOKEN, PUBLIC_URL, ["127.0.0.1"])
    forged_host = "attacker.example"
    signature = _signature(f"http://{forged_host}{HOOK}", FORM)
    response = await _post_hook(gateway.config.webhooks_url, signature, {"X-Forwarded-Host": forged_host})
    assert response.status == 403  # Caddy replaced the client's X-Forwarded-Host with the one it was called on


async def test_forwarded_headers_from_an_untrusted_peer_are_ignored(
    gateway: Gateway, upstream: tuple[Upstream, int]
) -> None:
    _, port = upstream
    direct = f"http://127.0.0.1:{port}"
    gateway.upstream.webhook = TwilioWebhook.behind(TOKEN, PUBLIC_URL, ["10.0.0.0/8"])  # not this peer
    spoofed = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "attacker.example"}
    assert (await _post_hook(direct, _signature(f"https://attacker.example{HOOK}", FORM), spoofed)).status == 403
    # ... the configured public URL still counts, through the gateway or not
    assert (await _post_hook(direct, _signature(PUBLIC_URL + HOOK, FORM), spoofed)).status == 200
    public = gateway.config.webhooks_url
    assert (await _post_hook(public, _signature(public + HOOK, FORM))).status == 403
    assert (await _post_hook(public, _signature(PUBLIC_URL + HOOK, FORM))).status == 200


async def test_requests_get_an_id_that_reaches_the_service_and_the_access_log(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(gateway.config.api_url + "/v1/devices") as response:
            assert response.status == 200
            made = response.headers["X-Request-ID"]
        kept_id = {"X-Request-ID": "app-42", "Authorization": "Bearer never-logged-token"}
        async with session.get(gateway.config.api_url + "/v1/devices", headers=kept_id) as kept:
            assert kept.headers["X-Request-ID"] == "app-42"
        bad = {"X-Request-ID": "has spaces and ; semicolons"}
        async with session.get(gateway.config.api_url + "/v1/devices", headers=bad) as replaced:
            assert replaced.headers["X-Request-ID"] not in ("", bad["X-Request-ID"])
    assert len(made) == 36 and made in [h.get("X-Request-Id") for h in gateway.upstream.seen]
    assert "app-42" in [h.get("X-Request-Id") for h in gateway.upstream.seen]
    await asyncio.sleep(0.2)
    logged = [entry for entry in gateway.access_log() if entry.get("request_id") in (made, "app-42")]
    assert {entry["request_id"] for entry in logged} == {made, "app-42"}
    assert all(entry["origin"] == "api" and entry["status"] == 200 for entry in logged)
    assert "never-logged-token" not in (gateway.log_dir / caddy.ACCESS_LOG).read_text()


async def test_the_api_origin_does_not_serve_webhooks_nor_the_webhook_origin_the_api(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(gateway.config.api_url + HOOK, data=FORM) as response:
            assert response.status == 404
            assert response.content_type == caddy.PROBLEM
        async with session.get(gateway.config.webhooks_url + "/v1/devices") as response:
            assert response.status == 404
        async with session.get(gateway.config.api_url + "/v1/devicesx") as response:
            assert response.status == 404
        async with session.get(gateway.config.api_url + "/openapi.json") as response:
            assert response.status == 200 and (await response.json())["openapi"] == "3.1.0"


async def test_body_limits_timeouts_and_a_dead_upstream_are_problem_documents(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as session:
        big = b"x" * (load().route_for("/v1/devices").max_body_bytes + 1)  # type: ignore[union-attr]
        async with session.post(gateway.config.api_url + "/v1/devices", data=big) as response:
            assert response.status == 413
            assert (await response.json(content_type=None))["status"] == 413
        async with session.post(gateway.config.api_url + "/v1/devices", data=b"x" * 1000) as response:
            assert response.status == 200 and (await response.json())["bytes"] == 1000
        async with session.get(gateway.config.api_url + "/v1/devices?sleep=3") as response:
            assert response.status == 504
            assert response.headers["X-Request-ID"]
        async with session.get(gateway.config.api_url + "/v1/users") as response:
            assert response.status in (502, 503)
            assert (await response.json(content_type=None))["status"] == response.status
