"""shared.cpu: work runs in worker processes, domain errors cross back intact, and no worker outlives its
parent, even one killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from shared import cpu
from shared.errors import InvalidInput, NotFound


def _refuse(field: str) -> None:
    raise InvalidInput(field, f"{field} is wrong")


def _missing() -> None:
    raise NotFound("schedule 42")


async def test_work_runs_in_another_process_and_errors_keep_their_fields() -> None:
    assert await cpu.run(os.getpid) != os.getpid()
    with pytest.raises(InvalidInput) as refused:
        await cpu.run(_refuse, "layers.0.length")
    assert refused.value.field == "layers.0.length" and str(refused.value) == "layers.0.length is wrong"
    with pytest.raises(NotFound, match="schedule 42 does not exist"):
        await cpu.run(_missing)


PARENT = """
import asyncio, os, sys
from shared import cpu
async def main():
    print(await cpu.run(os.getpid), flush=True)
    await asyncio.sleep(120)
asyncio.run(main())
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie has exited; only its parent's wait is missing
        return stat.read().split(") ")[1][0] != "Z"


def test_no_worker_outlives_a_parent_killed_with_sigkill() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    worker = int(parent.stdout.readline())
    assert _alive(worker)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 30
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(worker), "the worker process outlived its killed parent"
