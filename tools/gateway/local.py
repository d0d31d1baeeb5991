"""The gateway of `make up`: one Caddy process in front of the four services, recorded in .run/gateway.json.

`ports` picks the two origins' ports before the services start (notifier must be told its public webhook URL);
`up` (re)starts Caddy when its config changed or it is not running, `down` stops it, `status` reports it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from tools import infra
from tools.gateway import caddy
from tools.gateway.openapi import OUTPUT as OPENAPI_FILE
from tools.gateway.table import OriginName, load
from tools.procs import REPO_ROOT, OsProcess, http_status, spawn, tail

RECORD_FILE = "gateway.json"
# Services believe X-Forwarded-* only from this peer: the local gateway.
TRUSTED_PROXIES = "127.0.0.1"


@dataclass(frozen=True)
class GatewayRecord(caddy.LocalOrigins):
    pid: int
    ports: dict[OriginName, int]
    digest: str
    log_path: Path

    def attach(self) -> OsProcess | None:
        return OsProcess.attach(self.pid, "caddy")


def load_record(run_dir: Path) -> GatewayRecord | None:
    try:
        raw = cast(dict[str, Any], json.loads((run_dir / RECORD_FILE).read_text()))
        ports = cast(dict[OriginName, int], {k: int(v) for k, v in raw["ports"].items()})
        return GatewayRecord(int(raw["pid"]), ports, str(raw["digest"]), Path(raw["log_path"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _save(run_dir: Path, record: GatewayRecord) -> None:
    raw = {"pid": record.pid, "ports": record.ports, "digest": record.digest, "log_path": str(record.log_path)}
    (run_dir / RECORD_FILE).write_text(json.dumps(raw, indent=2) + "\n")


def ports(run_dir: Path) -> dict[OriginName, int]:
    """The origins' ports: those of a gateway still running, else the table's (8080, 8090) when free, else free
    ones."""
    record = load_record(run_dir)
    if record is not None and record.attach() is not None:
        return dict(record.ports)
    chosen: dict[OriginName, int] = {}
    for name, origin in load().origins.items():
        port = origin.local_port
        while infra.port_in_use(port) or port in chosen.values():
            port = infra.free_port()
        chosen[name] = port
    return chosen


def public_webhook_url(run_dir: Path) -> str:
    return f"http://127.0.0.1:{ports(run_dir)['webhooks']}"


def up(run_dir: Path, upstreams: Mapping[str, str], origin_ports: Mapping[OriginName, int]) -> GatewayRecord:
    """Run Caddy for `upstreams` (service -> base URL) on `origin_ports`; keep one already running with the
    same config."""
    hosts = {name: urlsplit(url).netloc for name, url in upstreams.items()}
    state_dir = run_dir / "gateway"
    log_dir = run_dir / "logs"
    config = caddy.write_config(state_dir, load(), hosts, origin_ports, log_dir, OPENAPI_FILE)
    record = load_record(run_dir)
    running = record.attach() if record is not None else None
    if record is not None and running is not None:
        if record.digest == config.digest:
            caddy.wait_serving(config, running)
            return record
        running.terminate(timeout=10)
    log_path = log_dir / "gateway.log"
    proc = spawn(caddy.argv(config), log_path=log_path, env=caddy.caddy_env(state_dir), cwd=REPO_ROOT)
    record = GatewayRecord(proc.pid, dict(origin_ports), config.digest, log_path)
    _save(run_dir, record)
    try:
        caddy.wait_serving(config, proc)
    except caddy.GatewayError as exc:
        proc.terminate(timeout=5)
        raise caddy.GatewayError(f"{exc}; log {log_path}:\n{tail(log_path)}") from None
    return record


def down(run_dir: Path) -> list[str]:
    record = load_record(run_dir)
    stopped = []
    if record is not None:
        proc = record.attach()
        if proc is not None:
            proc.terminate(timeout=10)
            stopped.append(f"gateway (pid {record.pid})")
    (run_dir / RECORD_FILE).unlink(missing_ok=True)
    return stopped


def still_running(run_dir: Path) -> bool:
    record = load_record(run_dir)
    return record is not None and record.attach() is not None


def status(run_dir: Path) -> list[infra.ComponentStatus]:
    """One row per origin: serving or not, and what answers behind it."""
    record = load_record(run_dir)
    proc = record.attach() if record is not None else None
    if record is None or proc is None:
        return [infra.ComponentStatus("gateway", False, "", None, "not running")]
    access_log = record.log_path.parent / caddy.ACCESS_LOG
    rows = []
    for origin, url, detail in (
        ("api", record.api_url, f"{record.api_url}/v1/..., /openapi.json; access log {access_log}"),
        ("webhooks", record.webhooks_url, f"{record.webhooks_url}/webhooks/..."),
    ):
        code = http_status(f"{url}/healthz")
        rows.append(infra.ComponentStatus(f"gw-{origin}", code == 200, url, record.pid, detail))
    return rows
