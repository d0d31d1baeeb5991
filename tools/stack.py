"""The whole platform on a given broker and database, for the end-to-end tests and the `platform.e2e` benchmark:
the vendor fakes (APNs, FCM, the telephony simulator), the four services as OS processes and the Caddy gateway
in front of them, wired as `make up` wires them, on ports of their own.

Each service keeps its port across `kill()` / `restart()`, so the gateway's upstreams stay right and a call's
webhooks find the restarted process. `Doors` is what a user of the platform can reach: the gateway's two
origins and the fakes' inspection APIs; the scenarios (tools.scenarios) need nothing else, so they run the same
against this and against `make up`.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from shared.services import SERVICE_NAMES
from shared.settings import DEV_JWT_SECRET
from tools import devstack, infra
from tools.gateway import local as gateway
from tools.gateway.caddy import LocalOrigins
from tools.gateway.table import OriginName
from tools.procs import ServiceProcess, http_status, start_service

READY_TIMEOUT_S = 90.0
# The quick platform of the end-to-end tests and the `platform.e2e` benchmark: a minute of escalation timeouts
# and notification delays lasts QUICK_MINUTE_S, rings are short, timers and relays poll often, and simulated
# telephony runs at QUICK_TIME_SCALE (a 5 s ring timeout rings for 1.25 s).
QUICK_MINUTE_S = 3.0
QUICK_SERVICE_ENV = {
    "DELAY_MINUTE_S": str(QUICK_MINUTE_S),
    "RING_TIMEOUT_S": "5",
    "LEG_DEADLINE_S": "3",
    "VOICEMAIL_DEADLINE_S": "30",
    "TIMER_POLL_INTERVAL_S": "0.2",
    "OUTBOX_POLL_INTERVAL_S": "0.2",
}
QUICK_TIME_SCALE = 0.25


@dataclass(frozen=True)
class Doors:
    """Where the platform's users reach it: the gateway's API and webhook origins, and the fakes' inspection
    APIs (what each phone received; the telephony simulator's test API)."""

    api_url: str
    webhooks_url: str
    apns_url: str  # the APNs fake's inspection API
    fcm_url: str
    twilio_url: str  # the telephony simulator (REST API and its /_sim test API)
    jwt_secret: str

    @classmethod
    def of(cls, fakes: Mapping[str, devstack.FakeRecord], edge: LocalOrigins, secret: str) -> Doors:
        return cls(edge.api_url, edge.webhooks_url, fakes["fake-apns"].inspect_url, fakes["fake-fcm"].inspect_url,
                   fakes["fake-twilio"].url, secret)

    @classmethod
    def of_make_up(cls, run_dir: Path = devstack.RUN_DIR) -> Doors:
        """The doors of the platform `make up` runs (read from its records in `run_dir`)."""
        fakes = devstack.load_fakes(run_dir)
        edge = gateway.load_record(run_dir)
        missing = [n for n in devstack.FAKES if n not in fakes or fakes[n].attach() is None]
        if edge is None or edge.attach() is None:
            missing.append("gateway")
        if missing or edge is None:
            raise RuntimeError(f"not running: {', '.join(missing)}; start everything with `make up`")
        return cls.of(fakes, edge, os.environ.get("JWT_SECRET", DEV_JWT_SECRET))


@dataclass
class Platform:
    """Fakes, services and gateway started by `start`; `stop` ends them all."""

    run_dir: Path
    env: dict[str, str]
    extra: dict[str, dict[str, str]]
    ports: dict[str, int]
    fakes: dict[str, devstack.FakeRecord]
    edge: gateway.GatewayRecord | None = None
    procs: dict[str, ServiceProcess] = field(default_factory=dict)

    @classmethod
    def start(
        cls, run_dir: Path, env: Mapping[str, str], *, time_scale: float = 1.0, service_env: Mapping[str, str] = {}
    ) -> Platform:
        """Everything on free ports; `env` carries DATABASE_URL, KAFKA_BOOTSTRAP and JWT_SECRET (migrations
        applied); `service_env` is added for every service (timeouts); `time_scale` is the simulator's."""
        run_dir.mkdir(parents=True, exist_ok=True)
        fake_ports: dict[str, dict[str, int]] = {}
        taken: set[int] = set()
        for name, spec in devstack.FAKES.items():
            fake_ports[name] = {key: _fresh_port(taken) for key in spec.default_ports}
        fakes = devstack.fakes_up(run_dir, fake_ports, time_scale=time_scale)
        origins: dict[OriginName, int] = {"api": _fresh_port(taken), "webhooks": _fresh_port(taken)}
        webhooks = f"http://127.0.0.1:{origins['webhooks']}"
        platform = cls(
            run_dir,
            {**env, **service_env, "TRUSTED_PROXIES": gateway.TRUSTED_PROXIES},
            devstack.service_extras(fakes, webhooks),
            {name: _fresh_port(taken) for name in SERVICE_NAMES},
            fakes,
        )
        try:
            for name in SERVICE_NAMES:
                platform.procs[name] = platform._spawn(name)
            for proc in platform.procs.values():
                proc.wait_ready(timeout=READY_TIMEOUT_S)
            platform.edge = gateway.up(run_dir, {n: p.base_url for n, p in platform.procs.items()}, origins)
        except BaseException:
            platform.stop()
            raise
        return platform

    @classmethod
    def quick(cls, run_dir: Path, env: Mapping[str, str]) -> Platform:
        """`start` with the quick timers (QUICK_SERVICE_ENV) and telephony (QUICK_TIME_SCALE)."""
        return cls.start(run_dir, env, time_scale=QUICK_TIME_SCALE, service_env=QUICK_SERVICE_ENV)

    @property
    def doors(self) -> Doors:
        assert self.edge is not None
        return Doors.of(self.fakes, self.edge, self.env["JWT_SECRET"])

    def _spawn(self, name: str) -> ServiceProcess:
        log = self.run_dir / "logs" / f"{name}-{uuid.uuid4().hex[:6]}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        own = {**self.env, **self.extra.get(name, {})}
        return start_service(name, env=own, port=self.ports[name], log_path=log)

    def kill(self, name: str) -> None:
        """SIGKILL the service: no shutdown, no flush, no commit of anything in flight."""
        self.procs[name].kill()

    def stop_service(self, name: str) -> None:
        self.procs[name].terminate(timeout=30)

    async def restart(self, name: str) -> ServiceProcess:
        """Start the (killed or stopped) service again on its port; returns once it is ready and the gateway
        routes to it again."""
        proc = self.procs[name]
        if proc.alive:
            proc.kill()
        await asyncio.to_thread(_port_freed, self.ports[name])
        proc = self.procs[name] = self._spawn(name)
        await asyncio.to_thread(proc.wait_ready, READY_TIMEOUT_S)
        await self.routed(name)
        return proc

    async def routed(self, name: str, timeout_s: float = 30.0) -> None:
        """Until the gateway's health check has seen the service ready (it checks every few seconds)."""
        path = {"schedule": "/v1/users", "coverage": "/v1/coverage-requests", "notifier": "/v1/devices",
                "callrouter": "/v1/call-alerts"}[name]
        assert self.edge is not None
        deadline = time.monotonic() + timeout_s
        while await asyncio.to_thread(http_status, self.edge.api_url + path) in {502, 503, 504, None}:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the gateway does not route to {name} within {timeout_s:.0f}s")
            await asyncio.sleep(0.2)

    def logs(self) -> list[Path]:
        return sorted((self.run_dir / "logs").glob("*.log"))

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.alive:
                proc.terminate(timeout=30)
        gateway.down(self.run_dir)
        devstack.fakes_down(self.run_dir)


def _port_freed(port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while infra.port_in_use(port) and time.monotonic() < deadline:
        time.sleep(0.05)


def _fresh_port(taken: set[int]) -> int:
    port = infra.free_port()
    while port in taken:
        port = infra.free_port()
    taken.add(port)
    return port
