"""OS processes for the local stack: process-group hygiene, and the four services run as processes.

Every process is started in a new session, so it leads its own process group and one signal reaches it and
everything it forked. Used by `make up` (tools.devstack), `make bench` and the pytest fixtures.
Linux only: liveness and group membership are read from /proc.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from shared.services import service
from shared.settings import DEV_JWT_SECRET

REPO_ROOT = Path(__file__).resolve().parent.parent


class ProcessError(RuntimeError):
    """A process could not be started, became unready, or would not die."""


def tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a text file, or a note that it does not exist."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state first), or None when there is no such pid."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses; it ends at the last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def _reap(pid: int) -> None:
    """Collect the exit status if `pid` is our own child, so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def pid_alive(pid: int) -> bool:
    """True while `pid` runs; a zombie counts as dead (PID 1 in containers may reap late or never)."""
    _reap(pid)
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def cmdline(pid: int) -> str:
    """The command line of `pid`, space-joined ('' if gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group `pgid`."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and fields[0] != "Z" and int(fields[2]) == pgid:
                members.append(int(entry.name))
    return members


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _wait_group_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if not group_members(pgid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


class OsProcess:
    """A process that leads its own process group: started by `spawn` or re-attached by pid."""

    def __init__(self, pid: int, popen: subprocess.Popen[bytes] | None = None) -> None:
        self.pid = pid
        self._popen = popen

    @classmethod
    def attach(cls, pid: int, expect: str) -> OsProcess | None:
        """Re-attach to a recorded pid if it still runs and its command line contains `expect`.

        The check guards against a recycled pid now belonging to an unrelated program.
        """
        if pid <= 0 or not pid_alive(pid) or expect not in cmdline(pid):
            return None
        try:
            leads_group = os.getpgid(pid) == pid
        except ProcessLookupError:
            return None
        return cls(pid) if leads_group else None

    @property
    def alive(self) -> bool:
        """True while the group leader runs."""
        if self._popen is not None:
            return self._popen.poll() is None
        return pid_alive(self.pid)

    @property
    def returncode(self) -> int | None:
        """Exit status when we started it and it ended; otherwise None."""
        return self._popen.poll() if self._popen is not None else None

    def terminate(self, timeout: float = 25.0) -> None:
        """SIGTERM the whole group, wait up to `timeout` s, then SIGKILL whatever is left."""
        _signal_group(self.pid, signal.SIGTERM)
        if not _wait_group_gone(self.pid, timeout):
            self.kill()
        self._collect()

    def kill(self) -> None:
        """SIGKILL the whole group at once (a crash, as far as the process can tell)."""
        _signal_group(self.pid, signal.SIGKILL)
        if not _wait_group_gone(self.pid, 10.0):
            raise ProcessError(f"process group {self.pid} survived SIGKILL: {group_members(self.pid)}")
        self._collect()

    def _collect(self) -> None:
        if self._popen is not None:
            self._popen.wait()


def spawn(
    argv: Sequence[str],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> OsProcess:
    """Start `argv` in a new session with stdin closed and stdout+stderr appended to `log_path`."""
    popen = _popen_in_session(argv, log_path=log_path, env=env, cwd=cwd)
    return OsProcess(popen.pid, popen)


def _popen_in_session(
    argv: Sequence[str], *, log_path: Path, env: Mapping[str, str] | None, cwd: Path | None
) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    return popen


class ServiceProcess(OsProcess):
    """One platform service (`python -m services.<name>.main`) running as an OS process."""

    def __init__(
        self, name: str, port: int, log_path: Path, pid: int, popen: subprocess.Popen[bytes] | None = None
    ) -> None:
        super().__init__(pid, popen)
        self.name = name
        self.port = port
        self.log_path = log_path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def reattach(cls, name: str, port: int, log_path: Path, pid: int) -> ServiceProcess | None:
        """The recorded service process if it still runs (pid and command line checked), else None."""
        if OsProcess.attach(pid, service_module(name)) is None:
            return None
        return cls(name, port, log_path, pid)

    def ready(self) -> bool:
        """One probe of GET /readyz: True on HTTP 200."""
        return http_status(f"{self.base_url}/readyz") == 200

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Poll /readyz until it answers 200; raise with the log tail if the process dies or time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive:
                raise ProcessError(
                    f"{self.name} exited (status {self.returncode}) before it was ready; "
                    f"log {self.log_path}:\n{tail(self.log_path)}"
                )
            if self.ready():
                return
            if time.monotonic() >= deadline:
                raise ProcessError(
                    f"{self.name} not ready at {self.base_url}/readyz after {timeout:.0f}s; "
                    f"log {self.log_path}:\n{tail(self.log_path)}"
                )
            time.sleep(0.2)


def service_module(name: str) -> str:
    """The module a service runs as: `services.<name>.main`."""
    return service(name).module


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """HTTP status of GET `url`, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None


def service_env(env: Mapping[str, str], port: int) -> dict[str, str]:
    """The environment a service process gets: ours, the fixed local settings, then the caller's extras."""
    merged = dict(os.environ)
    merged.update(
        HTTP_HOST="127.0.0.1",
        HTTP_PORT=str(port),
        LOG_FORMAT="json",
        JWT_SECRET=os.environ.get("JWT_SECRET", DEV_JWT_SECRET),
        PYTHONUNBUFFERED="1",
    )
    merged.update(env)
    missing = [key for key in ("DATABASE_URL", "KAFKA_BOOTSTRAP") if not merged.get(key)]
    if missing:
        raise ValueError(f"service environment lacks {', '.join(missing)}")
    return merged


def start_service(name: str, *, env: Mapping[str, str], port: int, log_path: Path) -> ServiceProcess:
    """Start service `name` listening on 127.0.0.1:`port`; `env` must carry DATABASE_URL and KAFKA_BOOTSTRAP.

    Returns at once; call `wait_ready()` before using it.
    """
    module = service_module(name)  # ValueError for an unknown name
    popen = _popen_in_session(
        [sys.executable, "-m", module], log_path=log_path, env=service_env(env, port), cwd=REPO_ROOT
    )
    return ServiceProcess(name, port, log_path, popen.pid, popen)


def apply_migrations(database_url: str, timeout: float = 120.0) -> str:
    """Run `python -m shared.migrations --all` against `database_url`; returns its output, raises on failure."""
    env = {**os.environ, "DATABASE_URL": database_url}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "shared.migrations", "--all"],
            env=env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise ProcessError(f"migrations did not finish within {timeout:.0f}s") from exc
    if done.returncode != 0:
        raise ProcessError(f"migrations failed (exit {done.returncode}):\n{done.stdout}{done.stderr}")
    return done.stdout
