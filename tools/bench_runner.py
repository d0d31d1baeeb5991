"""`make bench`: every bench/*.py against a real broker and PostgreSQL started for this run only.

    python -m tools.bench_runner [--broker tansu|noida] [--timeout SECONDS] [NAME ...]

Infrastructure starts on free ports in a temporary run dir (KAFKA_BOOTSTRAP / DATABASE_URL, when set, are
used instead), migrations are applied, and each benchmark runs as `python bench/NAME.py` with both
variables set, printing its JSON lines straight through. Everything is stopped and deleted afterwards.
Exit status: 0 only if at least one benchmark ran and all of them succeeded.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tools import infra
from tools.procs import REPO_ROOT, ProcessError, apply_migrations

BENCH_DIR = REPO_ROOT / "bench"


def own_code_first() -> str:
    """PYTHONPATH with this checkout first: a script's directory, not the working directory, heads its sys.path,
    and the venv's editable install would otherwise import another checkout's code (a git worktree's main)."""
    return os.pathsep.join(filter(None, (str(REPO_ROOT), os.environ.get("PYTHONPATH"))))


def run_benchmarks(paths: list[Path], env: dict[str, str], timeout: float) -> list[str]:
    """Run each benchmark script in turn; returns the names of those that failed."""
    failed = []
    for path in paths:
        print(f"# {path.name}", file=sys.stderr, flush=True)
        started = time.monotonic()
        try:
            done = subprocess.run(
                [sys.executable, str(path)],
                env={**os.environ, **env, "PYTHONPATH": own_code_first()},
                cwd=REPO_ROOT,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
            )
            ok = done.returncode == 0
        except subprocess.TimeoutExpired:
            ok = False
        print(f"# {path.name}: {'ok' if ok else 'FAILED'} in {time.monotonic() - started:.1f}s", file=sys.stderr)
        if not ok:
            failed.append(path.name)
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench_runner", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--broker", choices=infra.BROKER_KINDS, default="tansu")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per benchmark")
    parser.add_argument("names", nargs="*", help="benchmark file stems (default: all)")
    args = parser.parse_args(argv)
    paths = sorted(p for p in BENCH_DIR.glob("*.py") if not p.name.startswith("_"))
    if args.names:
        paths = [p for p in paths if p.stem in args.names]
    if not paths:
        print(f"error: no benchmarks to run in {BENCH_DIR}", file=sys.stderr)
        return 1
    # SIGTERM (a CI time limit, kill) unwinds like Ctrl-C, so the finally below still stops the servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="oncall-bench-") as tmp:
        run_dir = Path(tmp)
        broker = postgres = None
        try:
            env = {key: os.environ[key] for key in ("KAFKA_BOOTSTRAP", "DATABASE_URL") if os.environ.get(key)}
            if "KAFKA_BOOTSTRAP" not in env:
                broker = infra.start_broker(args.broker, run_dir)
                env["KAFKA_BOOTSTRAP"] = broker.bootstrap
            if "DATABASE_URL" not in env:
                # Durable settings: fsync=off would flatter every figure that touches the database.
                postgres = infra.start_postgres(run_dir)
                env["DATABASE_URL"] = postgres.url
            apply_migrations(env["DATABASE_URL"])
            failed = run_benchmarks(paths, env, args.timeout)
        except (infra.InfraError, ProcessError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            if broker is not None:
                broker.stop()
            if postgres is not None:
                postgres.stop(delete_data=True)
    if failed:
        print(f"error: failed benchmarks: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
