"""Shared set-up of the notifier benchmarks (a helper, not a benchmark: bench_runner skips `_*.py`).

- `running_stack`: the APNs and FCM fakes as OS processes through their CLIs (as `make up` runs them), and one
  notifier process pointed at them with the provider settings devstack gives it, on free ports against
  DATABASE_URL and KAFKA_BOOTSTRAP. Before notifier starts, its command consumer group is moved to the end of
  notifier.commands.v1 (`skip_backlog`): commands other benchmarks left there (coverage's, for users without
  devices) are not this benchmark's work. Logs go to a temporary directory, kept and named on stderr if the
  benchmark fails or BENCH_KEEP_LOGS is set. Everything is terminated at the end, however it ends.
- `register_devices`: users, each with one device (alternately iOS and Android), through `POST /v1/devices`
  with each user's own dev token.
- `Commands`: a plain producer of `SendNotification` (urgency low: one push step, at once), keyed by user id
  like the platform's outbox relay, each with a unique idempotency key `bench:<run>:<i>` that is also in its
  `data` (`bench_key`), so the push the fake records names the command it came from.
- `arrivals`: what the fakes recorded (their inspection endpoints, fetched once at the end), by command.
- `Progress`: counts the run's deliveries that have a `sent` attempt in notifier's tables (cheap to poll; the
  fakes are read once when it is done).
- `stage_times`: per command, notifier's `deliveries.created_at` (its accepting transaction's start) and the
  first `delivery_attempts.at` (the start of the timer transaction that pushed it).
- `CpuMeter`: CPU seconds each started process, PostgreSQL (all its processes), the broker and this benchmark
  used over a window, and how busy the machine was.

Every time stamp is wall-clock (time.time() here, in the fakes, and PostgreSQL's now()): one machine, one clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from _coverage_setup import JWT_SECRET, SESSION_TIMEOUT_MS, bearer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError
from aiokafka.structs import OffsetAndMetadata

from shared.kafka import ensure_topics
from shared.messages import SendNotification
from shared.services import NOTIFIER
from shared.topics import NOTIFICATION_COMMANDS
from tools.devstack import push_provider_env
from tools.infra import free_port
from tools.procs import REPO_ROOT, OsProcess, ServiceProcess, http_status, spawn, start_service, tail

COMMANDS_GROUP = f"{NOTIFIER.name}.{NOTIFICATION_COMMANDS.name}"  # shared.runtime's group per subscription
SCHEMA = NOTIFIER.name


def base_env() -> dict[str, str]:
    return {
        "DATABASE_URL": os.environ["DATABASE_URL"],
        "KAFKA_BOOTSTRAP": os.environ["KAFKA_BOOTSTRAP"],
        "KAFKA_SESSION_TIMEOUT_MS": SESSION_TIMEOUT_MS,
        "JWT_SECRET": JWT_SECRET,
    }


def distinct_free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


async def _wait_until(what: str, ready: Any, proc: OsProcess, log_path: Path, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await asyncio.to_thread(ready):
        if not proc.alive:
            raise RuntimeError(f"{what} exited (status {proc.returncode}) before it was ready:\n{tail(log_path)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {timeout_s:.0f}s:\n{tail(log_path)}")
        await asyncio.sleep(0.1)


@dataclass
class Stack:
    notifier: ServiceProcess
    apns: OsProcess
    fcm: OsProcess
    apns_admin_url: str  # the APNs fake's inspection API
    fcm_url: str  # the FCM fake (its inspection endpoints are on the same port)
    provider_env: dict[str, str]
    more_notifiers: list[ServiceProcess] = field(default_factory=list)  # replicas beyond the first

    @property
    def processes(self) -> dict[str, OsProcess]:
        more = {f"notifier_{i + 2}": n for i, n in enumerate(self.more_notifiers)}
        return {"notifier": self.notifier, **more, "fake_apns": self.apns, "fake_fcm": self.fcm}


async def skip_backlog(bootstrap: str) -> int:
    """Commit notifier's command group past every command already on notifier.commands.v1 (the group has no
    member yet: notifier is not started); returns how many commands are thereby skipped.

    The end is found by reading to it, not from ListOffsets: after a burst of produces Tansu answers a "latest"
    offset below records it has already served (seen: 180 where offsets ran to 189)."""
    await ensure_topics(bootstrap, [NOTIFICATION_COMMANDS])
    parts = [TopicPartition(NOTIFICATION_COMMANDS.name, p) for p in range(NOTIFICATION_COMMANDS.partitions)]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=COMMANDS_GROUP, enable_auto_commit=False, fetch_max_wait_ms=200
    )
    await consumer.start()
    try:
        consumer.assign(parts)
        starts = {}
        for part in parts:
            committed = await consumer.committed(part)
            if committed is None:
                await consumer.seek_to_beginning(part)
            else:
                consumer.seek(part, committed)
            starts[part] = await consumer.position(part)
        while await consumer.getmany(timeout_ms=500, max_records=10_000):
            pass
        ends = {part: await consumer.position(part) for part in parts}
        skipped = sum(ends[part] - starts[part] for part in parts)
        if not skipped:
            return 0
        try:  # a commit outside any generation: Kafka accepts it from a group without members
            await consumer.commit({part: OffsetAndMetadata(ends[part], "") for part in parts})
            return skipped
        except CommitFailedError:
            pass  # Tansu refuses it once the group has had a generation: join it and commit as a member
    finally:
        await consumer.stop()
    member = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=COMMANDS_GROUP,
        enable_auto_commit=False,
        session_timeout_ms=int(SESSION_TIMEOUT_MS),
        heartbeat_interval_ms=1000,
    )
    await member.start()
    try:
        member.subscribe([NOTIFICATION_COMMANDS.name])
        deadline = time.monotonic() + 60
        while set(member.assignment()) != set(parts):
            if time.monotonic() > deadline:
                raise RuntimeError(f"could not join {COMMANDS_GROUP} to skip {skipped} earlier commands")
            await member.getmany(timeout_ms=200, max_records=1)
        await member.commit({part: OffsetAndMetadata(ends[part], "") for part in parts})
        return skipped
    finally:
        await member.stop()


@contextlib.asynccontextmanager
async def running_stack(extra_env: dict[str, str] | None = None, replicas: int = 1) -> AsyncIterator[Stack]:
    """The fakes and `replicas` notifier processes, ready (their consumers joined), terminated at the end."""
    logs = Path(tempfile.mkdtemp(prefix="oncall-bench-notifier-"))
    procs: dict[str, OsProcess] = {}
    ok = False
    try:
        apns_port, apns_admin_port, fcm_port, *notifier_ports = distinct_free_ports(3 + replicas)
        apns_dir, fcm_dir = logs / "fake-apns", logs / "fake-fcm"
        apns_dir.mkdir()
        apns_log, fcm_log = logs / "fake-apns.log", logs / "fake-fcm.log"
        procs["fake_apns"] = spawn(
            [
                sys.executable,
                "-m",
                "tools.fakes.apns",
                "--port",
                str(apns_port),
                "--admin-port",
                str(apns_admin_port),
                "--cert-dir",
                str(apns_dir),
            ],
            log_path=apns_log,
            cwd=REPO_ROOT,
        )
        procs["fake_fcm"] = spawn(
            [sys.executable, "-m", "tools.fakes.fcm", "--port", str(fcm_port), "--state-dir", str(fcm_dir)],
            log_path=fcm_log,
            cwd=REPO_ROOT,
        )
        apns_admin = f"http://127.0.0.1:{apns_admin_port}"
        fcm_url = f"http://127.0.0.1:{fcm_port}"
        described_path = apns_dir / "fake-apns.json"
        *_, skipped = await asyncio.gather(
            _wait_until(
                "fake APNs",
                lambda: described_path.exists() and http_status(apns_admin + "/_fake") == 200,
                procs["fake_apns"],
                apns_log,
            ),
            _wait_until(
                "fake FCM",
                lambda: http_status(fcm_url + "/_fake/messages?token=none") == 200,
                procs["fake_fcm"],
                fcm_log,
            ),
            skip_backlog(os.environ["KAFKA_BOOTSTRAP"]),
        )
        if skipped:
            print(f"# skipped {skipped} commands other runs left on {NOTIFICATION_COMMANDS.name}", file=sys.stderr)
        # What `make up` gives notifier (no Twilio: low urgency never calls).
        provider_env = push_provider_env(apns_dir, fcm_dir, fcm_url)
        notifiers = []
        for i, port in enumerate(notifier_ports):
            name = "notifier" if i == 0 else f"notifier_{i + 1}"
            notifiers.append(
                start_service(
                    "notifier",
                    env={**base_env(), **provider_env, **(extra_env or {})},
                    port=port,
                    log_path=logs / f"{name}.log",
                )
            )
            procs[name] = notifiers[-1]
        await asyncio.gather(*(asyncio.to_thread(n.wait_ready, 90) for n in notifiers))
        yield Stack(
            notifiers[0], procs["fake_apns"], procs["fake_fcm"], apns_admin, fcm_url, provider_env, notifiers[1:]
        )
        ok = all(p.alive for p in procs.values())
    finally:
        for name, proc in reversed(procs.items()):
            died = not proc.alive
            await asyncio.to_thread(proc.terminate)
            if died:
                ok = False
                print(f"{name} died during the benchmark", file=sys.stderr)
        if ok and not os.environ.get("BENCH_KEEP_LOGS"):
            shutil.rmtree(logs, ignore_errors=True)
        else:
            print(f"logs kept in {logs}", file=sys.stderr)


@dataclass(frozen=True)
class User:
    user_id: uuid.UUID
    platform: str
    token: str


async def register_devices(
    http: aiohttp.ClientSession, notifier_url: str, count: int, concurrency: int = 16
) -> list[User]:
    """`count` users with one device each (even: iOS, odd: Android), registered as themselves."""
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> User:
        user_id = uuid.uuid4()
        platform = "ios" if i % 2 == 0 else "android"
        token = secrets.token_hex(32) if platform == "ios" else f"bench{i}:{secrets.token_urlsafe(105)}"
        async with (
            gate,
            http.post(
                f"{notifier_url}/v1/devices",
                json={"platform": platform, "token": token, "app_version": "bench"},
                headers=bearer(user_id),
            ) as resp,
        ):
            answer = await resp.json()
            if resp.status != 201:
                raise RuntimeError(f"POST /v1/devices: {resp.status} {answer}")
        return User(user_id, platform, token)

    return list(await asyncio.gather(*(one(i) for i in range(count))))


class Commands:
    """A plain producer of SendNotification commands on notifier.commands.v1 (as a sender's outbox relay would
    publish them: keyed by user id, with the `type` and `event_id` headers)."""

    def __init__(self, bootstrap: str) -> None:
        self.run = uuid.uuid4().hex[:8]
        self.prefix = f"bench:{self.run}:"
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=0
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    def key(self, i: int) -> str:
        return f"{self.prefix}{i}"

    async def send(self, i: int, user: User) -> asyncio.Future[Any]:
        """Hand command `i` to the producer (returns once it is batched; the future settles on the broker's
        acknowledgement)."""
        key = self.key(i)
        command = SendNotification(
            user_id=user.user_id,
            idempotency_key=key,
            title="Bench",
            body=f"notification {i}",
            urgency="low",
            data={"bench_key": key},
            kind="bench",
        )
        future: asyncio.Future[Any] = await self._producer.send(
            NOTIFICATION_COMMANDS.name,
            value=command.model_dump_json().encode(),
            key=command.key.encode(),
            headers=[("type", command.type.encode()), ("event_id", str(command.event_id).encode())],
        )
        return future

    async def flush(self) -> None:
        await self._producer.flush()


@dataclass(frozen=True)
class Arrival:
    received_at: float  # the fake's time.time() when it accepted the push
    collapse_id: str
    provider: str


async def arrivals(http: aiohttp.ClientSession, stack: Stack, prefix: str) -> dict[str, list[Arrival]]:
    """Every push the fakes accepted for commands of this run, by idempotency key, oldest first."""
    found: dict[str, list[Arrival]] = {}
    async with http.get(f"{stack.apns_admin_url}/_fake/pushes") as resp:
        resp.raise_for_status()
        for push in (await resp.json())["pushes"]:
            key = str(push["payload"].get("bench_key", ""))
            if key.startswith(prefix):
                found.setdefault(key, []).append(
                    Arrival(push["received_at"], push["headers"].get("apns-collapse-id", ""), "apns")
                )
    async with http.get(f"{stack.fcm_url}/_fake/messages") as resp:
        resp.raise_for_status()
        for sent in (await resp.json())["messages"]:
            message = sent["message"]
            key = str(message.get("data", {}).get("bench_key", ""))
            if key.startswith(prefix):
                collapse = str(message.get("android", {}).get("collapse_key", ""))
                found.setdefault(key, []).append(Arrival(sent["received_at"], collapse, "fcm"))
    for pushes in found.values():
        pushes.sort(key=lambda a: a.received_at)
    return found


def duplicates(found: dict[str, list[Arrival]]) -> int:
    """Pushes beyond the first with the same collapse id at the same fake."""
    seen: dict[tuple[str, str], int] = {}
    for pushes in found.values():
        for a in pushes:
            seen[(a.provider, a.collapse_id)] = seen.get((a.provider, a.collapse_id), 0) + 1
    return sum(n - 1 for n in seen.values())


class Progress:
    """How far notifier got with this run's commands, from its tables."""

    def __init__(self, pool: asyncpg.Pool, prefix: str) -> None:
        self._pool = pool
        self._pattern = prefix.replace("_", r"\_").replace("%", r"\%") + "%"

    async def counts(self) -> dict[str, int]:
        """accepted (deliveries), sent (deliveries with a sent attempt), and attempts by result."""
        accepted = await self._pool.fetchval(
            f"SELECT count(*) FROM {SCHEMA}.deliveries WHERE idempotency_key LIKE $1", self._pattern
        )
        rows = await self._pool.fetch(
            f"""SELECT a.result, count(*) AS n, count(DISTINCT a.delivery_id) AS deliveries
                FROM {SCHEMA}.delivery_attempts a JOIN {SCHEMA}.deliveries d ON d.id = a.delivery_id
                WHERE d.idempotency_key LIKE $1 GROUP BY a.result""",
            self._pattern,
        )
        counts = {"accepted": int(accepted), "sent": 0}
        for row in rows:
            counts[f"attempts_{row['result']}"] = int(row["n"])
            if row["result"] == "sent":
                counts["sent"] = int(row["deliveries"])
        return counts

    async def wait_sent(self, target: int, timeout_s: float, idle_timeout_s: float | None = None) -> dict[str, int]:
        """Until `target` deliveries were sent, or `timeout_s` passed, or (if given) nothing moved for
        `idle_timeout_s`; returns the last counts."""
        deadline = time.monotonic() + timeout_s
        last, moved = -1, time.monotonic()
        while True:
            counts = await self.counts()
            if counts["sent"] >= target or time.monotonic() > deadline:
                return counts
            if counts["sent"] != last:
                last, moved = counts["sent"], time.monotonic()
            elif idle_timeout_s is not None and time.monotonic() - moved > idle_timeout_s:
                return counts
            await asyncio.sleep(0.25)

    async def stage_times(self) -> dict[str, tuple[float, float | None]]:
        """Per idempotency key: (delivery created_at, first attempt at), Unix seconds."""
        rows = await self._pool.fetch(
            f"""SELECT d.idempotency_key AS key, extract(epoch FROM d.created_at)::float8 AS created,
                       extract(epoch FROM min(a.at))::float8 AS attempted
                FROM {SCHEMA}.deliveries d LEFT JOIN {SCHEMA}.delivery_attempts a ON a.delivery_id = d.id
                WHERE d.idempotency_key LIKE $1 GROUP BY d.id""",
            self._pattern,
        )
        return {r["key"]: (r["created"], r["attempted"]) for r in rows}


def _stat(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return []


def _cpu_seconds(pid: int, reaped_children: bool = False) -> float:
    """utime + stime of `pid` (with `reaped_children`: plus those of its children it has waited for)."""
    fields_ = _stat(pid)
    if not fields_:
        return 0.0
    ticks = int(fields_[11]) + int(fields_[12]) + (int(fields_[13]) + int(fields_[14]) if reaped_children else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields_ = _stat(int(entry.name))
            if fields_ and int(fields_[1]) == pid:
                found.append(int(entry.name))
    return found


def _tree_cpu_seconds(pid: int) -> float:
    """A server and its worker processes (PostgreSQL's backends), those that ended included."""
    return _cpu_seconds(pid, reaped_children=True) + sum(_cpu_seconds(c) for c in _children(pid))


def _listener_pid(port: int) -> int | None:
    """The process listening on 127.0.0.1:`port` (TCP), if this user may see it."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:  # LISTEN
                    inodes.add(f"socket:[{cols[9]}]")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in inodes:
                        return int(entry.name)
    return None


async def infra_pids(pool: asyncpg.Pool) -> dict[str, int]:
    """PostgreSQL's postmaster (from its data directory) and the broker (from KAFKA_BOOTSTRAP's port), where
    they run on this machine and can be seen; for `CpuMeter`."""
    found: dict[str, int] = {}
    with contextlib.suppress(Exception):
        data_dir = await pool.fetchval("SELECT setting FROM pg_settings WHERE name = 'data_directory'")
        found["postgres"] = int((Path(data_dir) / "postmaster.pid").read_text().split()[0])
    with contextlib.suppress(Exception):
        port = int(os.environ["KAFKA_BOOTSTRAP"].split(",")[0].rsplit(":", 1)[1])
        pid = await asyncio.to_thread(_listener_pid, port)
        if pid is not None:
            found["broker"] = pid
    return found


def _machine_ticks() -> tuple[int, int]:
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values), idle


@dataclass
class CpuMeter:
    """CPU seconds used by each named process (and this benchmark) between `start()` and `stop()`."""

    pids: dict[str, int]
    _start: dict[str, float] = field(default_factory=dict)
    _machine: tuple[int, int] = (0, 0)
    _t0: float = 0.0

    def _sample(self) -> dict[str, float]:
        return {
            **{n: _tree_cpu_seconds(p) if n == "postgres" else _cpu_seconds(p) for n, p in self.pids.items()},
            "bench": _cpu_seconds(os.getpid()),
        }

    def start(self) -> None:
        self._start = self._sample()
        self._machine = _machine_ticks()
        self._t0 = time.monotonic()

    def stop(self) -> dict[str, Any]:
        """{"window_s", "<name>_cpu_s"..., "machine_busy": fraction of all CPUs busy, "cpus"}."""
        now = self._sample()
        total, idle = _machine_ticks()
        d_total, d_idle = total - self._machine[0], idle - self._machine[1]
        report: dict[str, Any] = {"window_s": round(time.monotonic() - self._t0, 2)}
        report |= {f"{n}_cpu_s": round(now[n] - self._start.get(n, 0.0), 2) for n in now}
        report["machine_busy"] = round(1 - d_idle / d_total, 2) if d_total else None
        report["cpus"] = os.cpu_count()
        return report


def user_for(users: Sequence[User], i: int) -> User:
    return users[i % len(users)]
