"""The developer CLI behind the Makefile: the whole platform on this machine, without Docker.

    python -m tools.devstack up [--broker tansu|noida]   broker + PostgreSQL + migrations + vendor fakes
                                                        + 4 services + seed
    python -m tools.devstack down                       stop all of it (data stays in .run/)
    python -m tools.devstack status                     each component: up/down, port, pid
    python -m tools.devstack logs [NAME] [-n LINES]     tail of the logs (NAME: a service, fake, broker, postgres)
    python -m tools.devstack token [--user U] [--role R] [--ttl S]   a dev JWT
    python -m tools.devstack phone --user U             what U's phones got from the APNs/FCM/Twilio fakes
    python -m tools.devstack clean                      down, then delete .run/ and the cluster behind it

State lives in .run/ (override with ONCALL_RUN_DIR): infra.json/infra.env, services.json, fakes.json,
fakes/<name>/ (keys, certificates), logs/<name>.log.
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
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, cast

from shared.auth import issue_dev_token
from shared.services import DEFAULT_PORTS, SERVICE_NAMES
from shared.settings import DEV_JWT_SECRET
from tools import infra
from tools.fakes.inbox import Received
from tools.gateway import local as gateway
from tools.procs import (
    REPO_ROOT,
    OsProcess,
    ProcessError,
    ServiceProcess,
    apply_migrations,
    http_status,
    spawn,
    start_service,
    tail,
)

RUN_DIR = Path(os.environ.get("ONCALL_RUN_DIR", REPO_ROOT / ".run"))
SERVICES_FILE = "services.json"
ROLES = ("admin", "responder", "observer")
# Token subjects are user ids (UUIDs); this one stands for an admin before the seed has created one.
DEFAULT_DEV_USER = "00000000-0000-4000-8000-00000000d0a0"
LOCAL_SESSION_TIMEOUT_MS = "6000"
# A minute of a user-set delay (escalation timeouts, notification steps) lasts this many seconds under `make up`.
LOCAL_DELAY_MINUTE_S = "3"


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


def _own_env(name: str, env: dict[str, str], extra: dict[str, dict[str, str]], port: int) -> dict[str, str]:
    """The environment of service `name` on `port`: the shared one plus its own extras (notifier: providers)."""
    own = {**env, **extra.get(name, {})}
    if name == "notifier" and name in extra:
        own.setdefault("PUBLIC_WEBHOOK_URL", f"http://127.0.0.1:{port}")  # the gateway's, when `up` runs one
    return own


def _services_up(
    run_dir: Path, env: dict[str, str], broker_kind: str, extra: dict[str, dict[str, str]] | None = None
) -> dict[str, ServiceProcess]:
    """Keep each recorded service that runs with the same environment; (re)start the others.

    `extra`: service name -> environment only that service gets."""
    extra = extra or {}
    records = _load_records(run_dir)
    procs: dict[str, ServiceProcess] = {}
    for name in SERVICE_NAMES:
        record = records.get(name)
        running = record.attach() if record else None
        if (
            running is not None
            and record is not None
            and record.started_with == {**_own_env(name, env, extra, record.port), "broker": broker_kind}
        ):
            procs[name] = running
            continue
        if running is not None:  # started against a broker, database or fake that has since changed
            running.terminate()
        log_path = run_dir / "logs" / f"{name}.log"
        port = _port_for(name, record)
        own_env = _own_env(name, env, extra, port)
        procs[name] = start_service(name, env=own_env, port=port, log_path=log_path)
        records[name] = ServiceRecord(name, procs[name].pid, port, log_path, {**own_env, "broker": broker_kind})
        _save_records(run_dir, records)
    for proc in procs.values():
        proc.wait_ready(timeout=60)
    return procs


def delay_minute_s(run_dir: Path = RUN_DIR) -> float:
    """How many seconds a minute of escalation or notification delay lasts on the services `make up` runs."""
    record = _load_records(run_dir).get("callrouter")
    return float(record.started_with.get("DELAY_MINUTE_S", 60)) if record else 60.0


def _services_down(run_dir: Path) -> list[str]:
    stopped = []
    for record in _load_records(run_dir).values():
        proc = record.attach()
        if proc is not None:
            proc.terminate()
            stopped.append(f"{record.name} (pid {record.pid})")
    (run_dir / SERVICES_FILE).unlink(missing_ok=True)
    return stopped


# --------------------------------------------------------------------------------------------------- fakes

FAKES_FILE = "fakes.json"
APNS_TOPIC = "com.example.oncall"
TWILIO_FROM_NUMBER = "+15005550006"  # Twilio's "valid" magic test number
FAKE_START_TIMEOUT = 30.0


@dataclass(frozen=True)
class FakeSpec:
    """A local stand-in for a vendor that notifier talks to, run as `python -m <module>`."""

    name: str
    module: str
    default_ports: dict[str, int]  # "port" (the vendor API), and "admin_port" where inspection has its own
    probe: str  # a GET on the inspection port that answers 200 once the fake serves
    inbox: str  # "what the phone received", by device token or phone number: append the (quoted) value

    def argv(self, ports: dict[str, int], state_dir: Path, time_scale: float = 1.0) -> list[str]:
        argv = [sys.executable, "-m", self.module, "--port", str(ports["port"])]
        if self.name == "fake-apns":
            return [*argv, "--admin-port", str(ports["admin_port"]), "--cert-dir", str(state_dir)]
        if self.name == "fake-fcm":
            return [*argv, "--state-dir", str(state_dir)]
        return [*argv, "--time-scale", f"{time_scale:g}"]

    def url(self, ports: dict[str, int]) -> str:
        """Where the vendor API answers (APNs: TLS)."""
        scheme = "https" if self.name == "fake-apns" else "http"
        return f"{scheme}://127.0.0.1:{ports['port']}"

    def inspect_url(self, ports: dict[str, int]) -> str:
        """The base of the `/_fake/...` inspection endpoints."""
        return f"http://127.0.0.1:{ports.get('admin_port', ports['port'])}"


FAKES: dict[str, FakeSpec] = {
    spec.name: spec
    for spec in (
        FakeSpec("fake-apns", "tools.fakes.apns", {"port": 2197, "admin_port": 2198}, "/_fake",
                 "/_fake/pushes?token="),
        FakeSpec("fake-fcm", "tools.fakes.fcm", {"port": 9411}, "/_fake/messages", "/_fake/messages?token="),
        FakeSpec("fake-twilio", "tools.fakes.twilio", {"port": 9412}, "/_fake/calls", "/_fake/calls?to="),
    )
}


@dataclass(frozen=True)
class FakeRecord:
    """What fakes.json keeps about one fake's process."""

    name: str
    pid: int
    ports: dict[str, int]
    log_path: Path
    state_dir: Path

    @property
    def spec(self) -> FakeSpec:
        return FAKES[self.name]

    @property
    def url(self) -> str:
        return self.spec.url(self.ports)

    @property
    def inspect_url(self) -> str:
        return self.spec.inspect_url(self.ports)

    def attach(self) -> OsProcess | None:
        return OsProcess.attach(self.pid, self.spec.module)

    def ready(self) -> bool:
        if http_status(self.inspect_url + self.spec.probe) != 200:
            return False
        return self.name != "fake-apns" or (self.state_dir / "fake-apns.json").exists()


def load_fakes(run_dir: Path) -> dict[str, FakeRecord]:
    try:
        raw = cast(dict[str, dict[str, Any]], json.loads((run_dir / FAKES_FILE).read_text()))
        return {
            name: FakeRecord(
                name, int(r["pid"]), {k: int(v) for k, v in r["ports"].items()}, Path(r["log_path"]),
                Path(r["state_dir"]),
            )
            for name, r in raw.items()
            if name in FAKES
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _save_fakes(run_dir: Path, records: dict[str, FakeRecord]) -> None:
    raw = {
        r.name: {"pid": r.pid, "ports": r.ports, "log_path": str(r.log_path), "state_dir": str(r.state_dir)}
        for r in records.values()
    }
    (run_dir / FAKES_FILE).write_text(json.dumps(raw, indent=2) + "\n")


def _fake_ports(spec: FakeSpec, record: FakeRecord | None) -> dict[str, int]:
    """The recorded (else default) ports, each replaced by a free one when something else holds it."""
    ports: dict[str, int] = {}
    for key, default in spec.default_ports.items():
        preferred = record.ports.get(key, default) if record else default
        port = preferred
        while infra.port_in_use(port) or port in ports.values():
            port = infra.free_port()
        ports[key] = port
    return ports


def _wait_fake(record: FakeRecord, proc: OsProcess, timeout: float = FAKE_START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not record.ready():
        if not proc.alive:
            raise ProcessError(
                f"{record.name} exited (status {proc.returncode}) before it was ready; "
                f"log {record.log_path}:\n{tail(record.log_path)}"
            )
        if time.monotonic() >= deadline:
            raise ProcessError(
                f"{record.name} not ready at {record.inspect_url}{record.spec.probe} after {timeout:.0f}s; "
                f"log {record.log_path}:\n{tail(record.log_path)}"
            )
        time.sleep(0.1)


def fakes_up(
    run_dir: Path, ports: dict[str, dict[str, int]] | None = None, time_scale: float = 1.0
) -> dict[str, FakeRecord]:
    """Keep each recorded fake that still runs and answers; (re)start the others and wait until they serve.

    `ports` (fake name -> port key -> port) overrides the defaults, as tests do; `time_scale`: the telephony
    simulator's real seconds per simulated second.
    """
    records = load_fakes(run_dir)
    started: dict[str, OsProcess] = {}
    for name, spec in FAKES.items():
        record = records.get(name)
        running = record.attach() if record else None
        if running is not None and record is not None and record.ready():
            continue
        if running is not None:  # alive but not answering: start afresh
            running.terminate()
        state_dir = run_dir / "fakes" / name
        state_dir.mkdir(parents=True, exist_ok=True)
        (state_dir / "fake-apns.json").unlink(missing_ok=True)  # written anew once the APNs fake serves
        chosen = _fake_ports(spec, record) if ports is None or name not in ports else dict(ports[name])
        log_path = run_dir / "logs" / f"{name}.log"
        proc = spawn(spec.argv(chosen, state_dir, time_scale), log_path=log_path, cwd=REPO_ROOT)
        records[name] = FakeRecord(name, proc.pid, chosen, log_path, state_dir)
        started[name] = proc
        _save_fakes(run_dir, records)
    for name, proc in started.items():
        _wait_fake(records[name], proc)
    return records


def fakes_down(run_dir: Path) -> list[str]:
    stopped = []
    for record in load_fakes(run_dir).values():
        proc = record.attach()
        if proc is not None:
            proc.terminate(timeout=10.0)
            stopped.append(f"{record.name} (pid {record.pid})")
    (run_dir / FAKES_FILE).unlink(missing_ok=True)
    return stopped


def push_provider_env(apns_state_dir: Path, fcm_state_dir: Path, fcm_url: str) -> dict[str, str]:
    """notifier's APNs and FCM settings pointing at fakes started with these state dirs."""
    from tools.fakes.fcm import SERVICE_ACCOUNT_FILE

    described = json.loads((apns_state_dir / "fake-apns.json").read_text())
    return {
        "APNS_URL": str(described["url"]),
        "APNS_KEY_ID": str(described["key_id"]),
        "APNS_TEAM_ID": str(described["team_id"]),
        "APNS_KEY_FILE": str(described["key_path"]),
        "APNS_CA_FILE": str(described["ca_path"]),
        "APNS_TOPIC": APNS_TOPIC,
        "FCM_SERVICE_ACCOUNT_FILE": str(fcm_state_dir / SERVICE_ACCOUNT_FILE),
        "FCM_URL": fcm_url,
    }


def telephony_env(fakes: dict[str, FakeRecord]) -> dict[str, str]:
    """Twilio settings pointing at the telephony simulator (notifier's voice messages, callrouter's calls)."""
    from tools.fakes.twilio import DEV_ACCOUNT_SID, DEV_AUTH_TOKEN

    return {
        "TWILIO_ACCOUNT_SID": DEV_ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": DEV_AUTH_TOKEN,
        "TWILIO_API_URL": fakes["fake-twilio"].url,
    }


def service_extras(fakes: dict[str, FakeRecord], public_webhook_url: str) -> dict[str, dict[str, str]]:
    """The environment only some services get: the providers' fakes for notifier and callrouter, and where the
    telephony provider posts their webhooks (the gateway's webhook origin)."""
    hooks = {"PUBLIC_WEBHOOK_URL": public_webhook_url}
    return {"notifier": {**notifier_provider_env(fakes), **hooks}, "callrouter": {**telephony_env(fakes), **hooks}}


def notifier_provider_env(fakes: dict[str, FakeRecord]) -> dict[str, str]:
    """notifier's provider settings pointing at the fakes (PUBLIC_WEBHOOK_URL is added with notifier's port)."""
    return {
        **push_provider_env(fakes["fake-apns"].state_dir, fakes["fake-fcm"].state_dir, fakes["fake-fcm"].url),
        **telephony_env(fakes),
        "TWILIO_FROM_NUMBER": TWILIO_FROM_NUMBER,
    }


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
    # The routing number needs the policy in callrouter's projection: after the snapshots went out.
    done = subprocess.run(
        [sys.executable, "-m", "tools.seed", "calls"], env=seed_env, cwd=REPO_ROOT, stdin=subprocess.DEVNULL
    )
    if done.returncode != 0:
        raise ProcessError(f"tools.seed calls failed (exit {done.returncode})")


def _connect_routing_number(run_dir: Path, simulator_url: str, webhook_url: str) -> None:
    """Point the demo routing number at callrouter through the gateway, in the telephony simulator: what buying
    the number and setting its voice URL and status callback is at Twilio."""
    number = _seeded(run_dir).get("routing_number")
    if not number:
        return
    hooks = webhook_url.rstrip("/") + "/webhooks/twilio/calls"
    body = json.dumps({"voice_url": f"{hooks}/incoming", "status_callback": f"{hooks}/status"}).encode()
    request = urllib.request.Request(
        f"{simulator_url}/_sim/numbers/{urllib.parse.quote(number)}", data=body, method="PUT",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        answer.read()
    # the demo people pick up after a few rings and press 1 (`make call RESPONDERS=...` scripts others per call)
    from tools.seed import PEOPLE

    picks_up = json.dumps({"answer": "answer", "ring_s": 4, "steps": [{"press": "1"}], "talk_s": 20}).encode()
    for person in PEOPLE:
        if person.get("phone"):
            request = urllib.request.Request(
                f"{simulator_url}/_sim/parties/{urllib.parse.quote(str(person['phone']))}", data=picks_up,
                method="PUT", headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=10) as answer:
                answer.read()


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
        # Escalation timeouts and notification delays are whole minutes: locally they pass quicker.
        "DELAY_MINUTE_S": os.environ.get("DELAY_MINUTE_S", LOCAL_DELAY_MINUTE_S),
    }
    apply_migrations(stack.database_url)
    fakes = fakes_up(run_dir)
    # Twilio calls the gateway's webhook origin; the services believe its X-Forwarded-* headers.
    edge_ports = gateway.ports(run_dir)
    env["TRUSTED_PROXIES"] = gateway.TRUSTED_PROXIES
    hooks = {"PUBLIC_WEBHOOK_URL": gateway.public_webhook_url(run_dir)}
    extra = service_extras(fakes, hooks["PUBLIC_WEBHOOK_URL"])
    procs = _services_up(run_dir, env, stack.broker.kind if stack.broker else "external", extra)
    edge = gateway.up(run_dir, {name: proc.base_url for name, proc in procs.items()}, edge_ports)
    _run_seed(env, procs, run_dir)
    _connect_routing_number(run_dir, fakes["fake-twilio"].url, hooks["PUBLIC_WEBHOOK_URL"])
    print(infra.format_status(infra.status(run_dir)))
    print()
    for name, proc in procs.items():
        base = proc.base_url
        print(f"{name:<11} {base}/healthz  {base}/openapi.json  {base}/metrics   (pid {proc.pid})")
    for name, fake in fakes.items():
        print(f"{name:<11} {fake.url}  what phones got: {fake.inspect_url}{fake.spec.inbox}...   (pid {fake.pid})")
    print(f"gateway     {edge.api_url}/v1/...  {edge.api_url}/openapi.json (the whole mobile API)  "
          f"webhooks {edge.webhooks_url}/webhooks/...   (pid {edge.pid})")
    token = issue_token(dev_user(run_dir), "admin")
    schedule = procs["schedule"].base_url
    print(
        f"\nready in {time.monotonic() - started:.1f}s; logs in {run_dir / 'logs'}; env in {run_dir / infra.ENV_FILE}"
    )
    notifier = procs["notifier"].base_url
    coverage = procs["coverage"].base_url
    hotline = _seeded(run_dir).get("routing_number", "+4930555000100")
    schedule = notifier = coverage = edge.api_url  # the examples go through the gateway, as the app does
    seeded = _seeded(run_dir)
    people: dict[str, dict[str, str]] = seeded.get("users", {})  # type: ignore[assignment]
    rita = people.get("rita@demo.oncall", {}).get("id", "<rita id>")
    sam = people.get("sam@demo.oncall", {}).get("id", "<sam id>")
    three_weeks = (datetime.now(UTC) + timedelta(days=21)).strftime("%Y-%m-%dT%H:%M:%SZ")
    fortnight = (datetime.now(UTC) + timedelta(days=14)).strftime("%Y-%m-%dT%H:%M:%SZ")
    print(f"""
The quickest tour: `make demo` plays a coverage request, a routed call and an escalation in under a minute,
step by step in plain words. (Locally a minute of escalation timeout or notification delay lasts
{env["DELAY_MINUTE_S"]} s: DELAY_MINUTE_S.)

Try it by hand (a dev admin token for the seeded admin; `make token USER=<id> ROLE=responder` for others):

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

  # Rita and Sam, two responders of the demo team; register a phone for Sam (pushes go to every device)
  RITA=$(make -s token USER={rita} ROLE=responder); SAM=$(make -s token USER={sam} ROLE=responder)
  curl -s -H "Authorization: Bearer $SAM" -H 'Content-Type: application/json' \\
       -d '{{"platform":"ios","token":"'$(python3 -c 'import secrets; print(secrets.token_hex(32))')'"}}' \\
       {notifier}/v1/devices

  # coverage: Rita asks Sam to take her next shift; Sam sees it, accepts, and schedule then has Sam on call
  curl -s -H "Authorization: Bearer $RITA" \\
       "{coverage}/v1/coverage-requests/shifts?from=$(date -u +%FT%TZ)&to={three_weeks}" | python3 -c '
import sys, json, datetime as d; now = d.datetime.now(d.timezone.utc)
s = [x for x in json.load(sys.stdin) if d.datetime.fromisoformat(x["start"]) > now and not x["open_request_id"]][0]
one = {{k: s[k] for k in ("schedule_id", "start", "end")}}
print(json.dumps({{"recipient_ids": ["{sam}"], "start": s["start"], "end": s["end"], "shifts": [one],
                  "message": "Could you take this one?"}}))' > /tmp/coverage-request.json
  REQ=$(curl -s -H "Authorization: Bearer $RITA" -H 'Content-Type: application/json' \\
       -d @/tmp/coverage-request.json {coverage}/v1/coverage-requests \\
       | python3 -c 'import sys,json; print(json.load(sys.stdin)["id"])')
  curl -s -H "Authorization: Bearer $SAM" {coverage}/v1/coverage-requests/badge
  curl -s -X POST -H "Authorization: Bearer $SAM" -H 'Content-Type: application/json' -d '{{}}' \\
       {coverage}/v1/coverage-requests/$REQ/accept

  # ... and see what their phones received (the request, then the acceptance):
  make phone USER={sam}
  curl -s {fakes["fake-apns"].inspect_url}/_fake/pushes    # every push the APNs fake accepted
  curl -s {fakes["fake-fcm"].inspect_url}/_fake/messages  # ... the FCM fake
  curl -s {fakes["fake-twilio"].inspect_url}/_fake/calls     # every call the Twilio fake placed

  # call routing: ring the demo hotline, press 1, and watch whom callrouter dials (the demo people pick up and
  # press 1; script them otherwise), then the call's alert with its timeline:
  make call TO={hotline} DIGITS=1
  make call TO={hotline} SAY=outage RESPONDERS='+12125550101=busy +4915112345601=no-answer'
  curl -s -H "Authorization: Bearer $TOKEN" {edge.api_url}/v1/call-alerts

Then: make status | make logs NAME=notifier | make down""")
    return 0


def down(run_dir: Path) -> int:
    """Stop the services, then the infrastructure; fail if a recorded process is still alive afterwards."""
    records = _load_records(run_dir)
    fakes = load_fakes(run_dir)
    recorded = infra.load(run_dir)
    for line in gateway.down(run_dir) + _services_down(run_dir) + fakes_down(run_dir):
        print(f"stopped {line}")
    infra.down(run_dir)
    leftovers = [r.name for r in records.values() if r.attach() is not None]
    leftovers += [f.name for f in fakes.values() if f.attach() is not None]
    leftovers += ["gateway"] if gateway.still_running(run_dir) else []
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
    fakes = load_fakes(run_dir)
    for name in FAKES:
        fake = fakes.get(name)
        if fake is None or fake.attach() is None:
            rows.append(infra.ComponentStatus(name, False, "", None, "not running"))
            continue
        inbox = fake.spec.inbox.split("?")[0]
        rows.append(infra.ComponentStatus(name, fake.ready(), fake.url, fake.pid, f"inspect {fake.inspect_url}{inbox}"))
    rows += gateway.status(run_dir)
    print(infra.format_status(rows))
    return 0


def _get_json(url: str, token: str | None = None) -> tuple[int | None, Any]:
    """Status and parsed JSON body of GET `url` (None, None when nothing answers)."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status), json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"null")
        except ValueError:
            return exc.code, None
    except (OSError, ValueError):
        return None, None


def _when(unix: float | None) -> str:
    return "-" if unix is None else datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _received_lines(platform: str, items: list[dict[str, Any]]) -> list[str]:
    """One line per push: time, title, body, critical or not, collapse id, and the badge when it sets one."""
    lines = []
    for item in items:
        push = Received.of(platform, item)
        lines.append(
            f"  {_when(push.at)}  {push.title!r}: {push.body!r}  "
            f"{'CRITICAL' if push.critical else 'normal'}  collapse={push.collapse or '-'}"
            + (f"  badge={push.badge}" if push.badge is not None else "")
        )
    return lines


def _call_lines(calls: list[dict[str, Any]]) -> list[str]:
    lines = []
    for call in calls:
        said = ""
        if call.get("twiml"):
            try:
                said = " ".join(t.strip() for t in ElementTree.fromstring(call["twiml"]).itertext() if t.strip())
            except ElementTree.ParseError:
                said = call["twiml"]
        elif call.get("url"):
            said = f"TwiML from {call['url']}"
        pressed = ",".join(call.get("digits_pressed") or []) or "-"
        try:
            when = _when(parsedate_to_datetime(call["date_created"]).timestamp())
        except (KeyError, TypeError, ValueError):
            when = "-"
        lines.append(
            f"  {when}  call from {call.get('from')}: {said!r}  status {call.get('status')}  pressed {pressed}"
        )
    return lines


def phone(run_dir: Path, user: str) -> int:
    """Print what `user`'s phones received: pushes per registered device from the APNs/FCM fakes, calls to
    their phone number from the Twilio fake."""
    record = _load_records(run_dir).get("notifier")
    notifier = record.attach() if record else None
    fakes = {name: f for name, f in load_fakes(run_dir).items() if f.attach() is not None}
    if notifier is None or len(fakes) < len(FAKES):
        print("error: notifier or a vendor fake is not running; `make up` first", file=sys.stderr)
        return 1
    token = issue_token(dev_user(run_dir), "admin")
    quoted = urllib.parse.quote(user)
    code, devices = _get_json(f"{notifier.base_url}/v1/devices?user_id={quoted}", token)
    if code != 200:
        print(f"error: notifier GET /v1/devices?user_id={user}: HTTP {code or '-'} {devices or ''}", file=sys.stderr)
        return 1
    code, recipient = _get_json(f"{notifier.base_url}/v1/recipients/{quoted}", token)
    recipient = recipient if code == 200 else {}
    phone_number = recipient.get("phone")
    print(f"user {user}: {recipient.get('name', '(notifier has no recipient record)')}, phone {phone_number or '-'}")
    if not devices:
        print("no devices registered (POST /v1/devices with this user's token)")
    for device in devices:
        fake = fakes["fake-apns" if device["platform"] == "ios" else "fake-fcm"]
        code, answer = _get_json(f"{fake.inspect_url}{fake.spec.inbox}{urllib.parse.quote(device['token'])}")
        items = (answer or {}).get("pushes" if fake.name == "fake-apns" else "messages", []) if code == 200 else []
        short = device["token"] if len(device["token"]) <= 16 else device["token"][:12] + "..."
        allowed = "allowed" if device["critical_allowed"] else "off"
        print(f"\n{device['platform']} device {short} (critical alerts {allowed}), via {fake.name}:")
        if code != 200:
            print(f"  error: {fake.name} answered HTTP {code or '-'}")
        print("\n".join(_received_lines(device["platform"], items)) or "  nothing received")
    if phone_number:
        twilio = fakes["fake-twilio"]
        code, answer = _get_json(f"{twilio.inspect_url}{twilio.spec.inbox}{urllib.parse.quote(phone_number)}")
        print(f"\nvoice calls to {phone_number}, via fake-twilio:")
        if code != 200:
            print(f"  error: fake-twilio answered HTTP {code or '-'}")
        print("\n".join(_call_lines((answer or {}).get("calls", []) if code == 200 else [])) or "  nothing received")
    else:
        print("\nno phone number on record: no voice calls")
    return 0


def _log_paths(run_dir: Path) -> dict[str, Path]:
    paths = {name: run_dir / "logs" / f"{name}.log" for name in (*SERVICE_NAMES, *FAKES)}
    paths["postgres"] = run_dir / "postgres.log"
    paths["gateway"] = run_dir / "logs" / "gateway.log"
    paths["gateway-access"] = run_dir / "logs" / "gateway-access.log"
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
    phone_parser = commands.add_parser("phone")
    phone_parser.add_argument("--user", required=True, help="a user id")
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
        if args.command == "phone":
            return phone(RUN_DIR, args.user)
        print(issue_token(args.user or dev_user(RUN_DIR), args.role, args.ttl))
        return 0
    except (infra.InfraError, ProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
