"""The developer CLI behind the Makefile: the whole platform on this machine, without Docker.

    python -m tools.devstack up [--broker tansu|noida]   broker + PostgreSQL + migrations + 4 services + seed
    python -m tools.devstack down                       stop all of it (data stays in .run/)
    python -m tools.devstack status                     each component: up/down, port, pid
    python -m tools.devstack logs [NAME] [-n LINES]     tail of the logs (NAME: a service, broker, postgres)
    python -m tools.devstack token [--user U] [--role R] [--ttl S]   a dev JWT
    python -m tools.devstack clean                      down, then delete .run/ and the cluster behind it

State lives in .run/ (override with ONCALL_RUN_DIR): infra.json/infra.env, services.json, logs/<name>.log.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from shared.auth import issue_dev_token
from shared.services import DEFAULT_PORTS, SERVICE_NAMES
from shared.settings import DEV_JWT_SECRET
from tools import infra
from tools.procs import (
    REPO_ROOT,
    ProcessError,
    ServiceProcess,
    apply_migrations,
    http_status,
    start_service,
    tail,
)

RUN_DIR = Path(os.environ.get("ONCALL_RUN_DIR", REPO_ROOT / ".run"))
SERVICES_FILE = "services.json"
ROLES = ("admin", "responder", "observer")
# Token subjects are user ids (UUIDs); this one stands for an admin before the seed has created one.
DEFAULT_DEV_USER = "00000000-0000-4000-8000-00000000d0a0"
LOCAL_SESSION_TIMEOUT_MS = "6000"


def issue_token(user: str, role: str, ttl: int = 3600) -> str:
    """A dev JWT (HS256) with claims sub, role, iat, exp, signed with JWT_SECRET or the dev default."""
    return issue_dev_token(os.environ.get("JWT_SECRET", DEV_JWT_SECRET), user, role, ttl)  # type: ignore[arg-type]


def dev_user(run_dir: Path = RUN_DIR) -> str:
    """The seeded admin (run_dir/seed.json key admin_user_id) if the seed has run, else DEFAULT_DEV_USER."""
    try:
        seed = json.loads((run_dir / "seed.json").read_text())
        return str(seed["admin_user_id"])
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_DEV_USER


# ------------------------------------------------------------------------------------------ services


@dataclass(frozen=True)
class ServiceRecord:
    """What services.json keeps about one service process."""

    name: str
    pid: int
    port: int
    log_path: Path
    started_with: dict[str, str]  # its environment and broker kind: a change means a restart

    def attach(self) -> ServiceProcess | None:
        return ServiceProcess.reattach(self.name, self.port, self.log_path, self.pid)


def _load_records(run_dir: Path) -> dict[str, ServiceRecord]:
    try:
        raw = cast(dict[str, dict[str, Any]], json.loads((run_dir / SERVICES_FILE).read_text()))
        return {
            name: ServiceRecord(name, int(r["pid"]), int(r["port"]), Path(r["log_path"]), dict(r["started_with"]))
            for name, r in raw.items()
        }
    except (OSError, ValueError, KeyError, TypeError):  # none yet, or written by an older version
        return {}


def _save_records(run_dir: Path, records: dict[str, ServiceRecord]) -> None:
    raw = {
        r.name: {"pid": r.pid, "port": r.port, "log_path": str(r.log_path), "started_with": r.started_with}
        for r in records.values()
    }
    (run_dir / SERVICES_FILE).write_text(json.dumps(raw, indent=2) + "\n")


def _port_for(name: str, record: ServiceRecord | None) -> int:
    preferred = record.port if record else DEFAULT_PORTS[name]
    return infra.free_port() if infra.port_in_use(preferred) else preferred


def _services_up(run_dir: Path, env: dict[str, str], broker_kind: str) -> dict[str, ServiceProcess]:
    """Keep each recorded service that runs against the same infrastructure; (re)start the others."""
    started_with = {**env, "broker": broker_kind}
    records = _load_records(run_dir)
    procs: dict[str, ServiceProcess] = {}
    for name in SERVICE_NAMES:
        record = records.get(name)
        running = record.attach() if record else None
        if running is not None and record is not None and record.started_with == started_with:
            procs[name] = running
            continue
        if running is not None:  # started against a broker or database that has since changed
            running.terminate()
        log_path = run_dir / "logs" / f"{name}.log"
        procs[name] = start_service(name, env=env, port=_port_for(name, record), log_path=log_path)
        records[name] = ServiceRecord(name, procs[name].pid, procs[name].port, log_path, started_with)
        _save_records(run_dir, records)
    for proc in procs.values():
        proc.wait_ready(timeout=60)
    return procs


def _services_down(run_dir: Path) -> list[str]:
    stopped = []
    for record in _load_records(run_dir).values():
        proc = record.attach()
        if proc is not None:
            proc.terminate()
            stopped.append(f"{record.name} (pid {record.pid})")
    (run_dir / SERVICES_FILE).unlink(missing_ok=True)
    return stopped


# -------------------------------------------------------------------------------------------- commands


def _run_seed(env: dict[str, str], procs: dict[str, ServiceProcess], run_dir: Path) -> None:
    """Run the demo seed (`python -m tools.seed`) if the project has one; it must be idempotent."""
    if importlib.util.find_spec("tools.seed") is None:
        return
    seed_env = {**os.environ, **env, "ONCALL_RUN_DIR": str(run_dir)}
    seed_env.update({f"{name.upper()}_URL": proc.base_url for name, proc in procs.items()})
    done = subprocess.run([sys.executable, "-m", "tools.seed"], env=seed_env, cwd=REPO_ROOT, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise ProcessError(f"tools.seed failed (exit {done.returncode})")
    # Data kept in .run/ from an earlier `make up` outlives a memory-only broker: publish schedule's snapshots
    # again so every service's projections know them (a no-op for projections that already do).
    done = subprocess.run(
        [sys.executable, "-m", "services.schedule.republish"], env=seed_env, cwd=REPO_ROOT, stdin=subprocess.DEVNULL
    )
    if done.returncode != 0:
        raise ProcessError(f"services.schedule.republish failed (exit {done.returncode})")


def _seeded(run_dir: Path) -> dict[str, str]:
    try:
        return dict(json.loads((run_dir / "seed.json").read_text()))
    except (OSError, ValueError):
        return {}


def up(run_dir: Path, broker: infra.BrokerKind | None) -> int:
    """Start (or re-attach to) everything, then print how to use it."""
    started = time.monotonic()
    stack = infra.up(run_dir, broker)
    env = {
        **stack.env(),
        "JWT_SECRET": os.environ.get("JWT_SECRET", DEV_JWT_SECRET),
        # Consumer-group joins take about half the session timeout; keep local starts quick.
        "KAFKA_SESSION_TIMEOUT_MS": os.environ.get("KAFKA_SESSION_TIMEOUT_MS", LOCAL_SESSION_TIMEOUT_MS),
    }
    apply_migrations(stack.database_url)
    procs = _services_up(run_dir, env, stack.broker.kind if stack.broker else "external")
    _run_seed(env, procs, run_dir)
    print(infra.format_status(infra.status(run_dir)))
    print()
    for name, proc in procs.items():
        base = proc.base_url
        print(f"{name:<11} {base}/healthz  {base}/openapi.json  {base}/metrics   (pid {proc.pid})")
    token = issue_token(dev_user(run_dir), "admin")
    schedule = procs["schedule"].base_url
    print(
        f"\nready in {time.monotonic() - started:.1f}s; logs in {run_dir / 'logs'}; env in {run_dir / infra.ENV_FILE}"
    )
    notifier = procs["notifier"].base_url
    coverage = procs["coverage"].base_url
    seeded = _seeded(run_dir)
    people: dict[str, dict[str, str]] = seeded.get("users", {})  # type: ignore[assignment]
    rita = people.get("rita@demo.oncall", {}).get("id", "<rita id>")
    sam = people.get("sam@demo.oncall", {}).get("id", "<sam id>")
    three_weeks = (datetime.now(UTC) + timedelta(days=21)).strftime("%Y-%m-%dT%H:%M:%SZ")
    fortnight = (datetime.now(UTC) + timedelta(days=14)).strftime("%Y-%m-%dT%H:%M:%SZ")
    print(f"""
Try it (a dev admin token for the seeded admin; `make token USER=<id> ROLE=responder` for others):

  export TOKEN={token}
  curl -s -H "Authorization: Bearer $TOKEN" {schedule}/v1/users

  # a user created in schedule reaches notifier over Kafka (outbox -> topic -> inbox):
  ID=$(curl -s -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
       -d '{{"name":"Lin","email":"lin.'$RANDOM'@example.com","time_zone":"Asia/Shanghai"}}' \\
       {schedule}/v1/users | python3 -c 'import sys,json; print(json.load(sys.stdin)["id"])')
  sleep 1; curl -s -H "Authorization: Bearer $TOKEN" {notifier}/v1/recipients/$ID

  # who is on call now on the demo schedule, and whom the escalation policy would page:
  curl -s -H "Authorization: Bearer $TOKEN" {schedule}/v1/schedules/{seeded.get("schedule_id", "<id>")}/oncall
  curl -s -H "Authorization: Bearer $TOKEN" {schedule}/v1/policies/{seeded.get("policy_id", "<id>")}/oncall
  # the next two weeks of final shifts (layers, overrides, coverage), and a calendar feed to subscribe to:
  curl -s -H "Authorization: Bearer $TOKEN" \\
       "{schedule}/v1/schedules/{seeded.get("schedule_id", "<id>")}/shifts?from=$(date -u +%FT%TZ)&to={fortnight}"
  curl -s -X POST -H "Authorization: Bearer $TOKEN" \\
       {schedule}/v1/users/{seeded.get("admin_user_id", "<id>")}/calendar-token

  # bad input gets a problem document with a reason:
  curl -s -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{{"name":""}}' {schedule}/v1/users

  # coverage: Rita asks Sam to take her next shift; Sam sees it, accepts, and schedule then has Sam on call
  RITA=$(make -s token USER={rita} ROLE=responder); SAM=$(make -s token USER={sam} ROLE=responder)
  curl -s -H "Authorization: Bearer $RITA" \\
       "{coverage}/v1/coverage-requests/shifts?from=$(date -u +%FT%TZ)&to={three_weeks}" | python3 -c '
import sys, json, datetime as d; now = d.datetime.now(d.timezone.utc)
s = [x for x in json.load(sys.stdin) if d.datetime.fromisoformat(x["start"]) > now][0]
one = {{k: s[k] for k in ("schedule_id", "start", "end")}}
print(json.dumps({{"recipient_ids": ["{sam}"], "start": s["start"], "end": s["end"], "shifts": [one],
                  "message": "Could you take this one?"}}))' > /tmp/coverage-request.json
  REQ=$(curl -s -H "Authorization: Bearer $RITA" -H 'Content-Type: application/json' \\
       -d @/tmp/coverage-request.json {coverage}/v1/coverage-requests \\
       | python3 -c 'import sys,json; print(json.load(sys.stdin)["id"])')
  curl -s -H "Authorization: Bearer $SAM" {coverage}/v1/coverage-requests/badge
  curl -s -X POST -H "Authorization: Bearer $SAM" -H 'Content-Type: application/json' -d '{{}}' \\
       {coverage}/v1/coverage-requests/$REQ/accept

Then: make status | make logs NAME=notifier | make down""")
    return 0


def down(run_dir: Path) -> int:
    """Stop the services, then the infrastructure; fail if a recorded process is still alive afterwards."""
    records = _load_records(run_dir)
    recorded = infra.load(run_dir)
    for line in _services_down(run_dir):
        print(f"stopped {line}")
    infra.down(run_dir)
    leftovers = [r.name for r in records.values() if r.attach() is not None]
    if recorded is not None and recorded.broker is not None and recorded.broker.alive:
        leftovers.append(recorded.broker.kind)
    if infra.Postgres.attach(run_dir) is not None:
        leftovers.append("postgres")
    if leftovers:
        print(f"error: still running: {', '.join(leftovers)}", file=sys.stderr)
        return 1
    print(f"nothing of ours left running; data kept in {run_dir}")
    return 0


def status(run_dir: Path) -> int:
    """Print broker, PostgreSQL and each service: up/down, pid, address."""
    rows = infra.status(run_dir)
    records = _load_records(run_dir)
    for name in SERVICE_NAMES:
        record = records.get(name)
        proc = record.attach() if record else None
        if record is None or proc is None:
            rows.append(infra.ComponentStatus(name, False, "", None, "not running"))
            continue
        code = http_status(f"{proc.base_url}/readyz")
        rows.append(infra.ComponentStatus(name, code == 200, proc.base_url, proc.pid, f"readyz {code or '-'}"))
    print(infra.format_status(rows))
    return 0


def _log_paths(run_dir: Path) -> dict[str, Path]:
    paths = {name: run_dir / "logs" / f"{name}.log" for name in SERVICE_NAMES}
    paths["postgres"] = run_dir / "postgres.log"
    for kind in infra.BROKER_KINDS:
        if (run_dir / f"{kind}.log").exists():
            paths[kind] = run_dir / f"{kind}.log"
    return paths


def logs(run_dir: Path, name: str | None, lines: int) -> int:
    """Print the tail of one log or of each."""
    paths = _log_paths(run_dir)
    if name in ("broker", "kafka"):
        name = next((kind for kind in infra.BROKER_KINDS if kind in paths), "tansu")
    if name is not None and name not in paths:
        print(f"error: no log named {name!r}; one of {', '.join(paths)}", file=sys.stderr)
        return 2
    for key, path in paths.items():
        if name in (None, key):
            print(f"==> {path} <==\n{tail(path, lines)}\n")
    return 0


def clean(run_dir: Path) -> int:
    """`down`, then delete the run dir and the cluster it may link to in /var/tmp."""
    rc = down(run_dir)
    if rc != 0:
        return rc
    cluster = run_dir / "postgres"
    if cluster.is_symlink():
        shutil.rmtree(cluster.resolve(), ignore_errors=True)
    shutil.rmtree(run_dir, ignore_errors=True)
    print("removed", run_dir)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.devstack", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up_parser = commands.add_parser("up")
    up_parser.add_argument("--broker", choices=infra.BROKER_KINDS, help="default: as last time, else tansu")
    for name in ("down", "status", "clean"):
        commands.add_parser(name)
    logs_parser = commands.add_parser("logs")
    logs_parser.add_argument("name", nargs="?")
    logs_parser.add_argument("-n", "--lines", type=int, default=40)
    token_parser = commands.add_parser("token")
    token_parser.add_argument("--user")
    token_parser.add_argument("--role", choices=ROLES, default="admin")
    token_parser.add_argument("--ttl", type=int, default=3600, help="seconds")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            return up(RUN_DIR, args.broker)
        if args.command == "down":
            return down(RUN_DIR)
        if args.command == "status":
            return status(RUN_DIR)
        if args.command == "logs":
            return logs(RUN_DIR, args.name, args.lines)
        if args.command == "clean":
            return clean(RUN_DIR)
        print(issue_token(args.user or dev_user(RUN_DIR), args.role, args.ttl))
        return 0
    except (infra.InfraError, ProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
