"""CPU-heavy work off the event loop: a small pool of worker processes per service process.

Resolving a long window of a large schedule takes long enough that, run on the event loop, it would hold up
every other request, the liveness probe included. Threads would not help: the work is pure Python and holds
the GIL. Worker processes do; the pool is small and bounded, so a burst of heavy reads queues instead of
taking the machine.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

_pool: ProcessPoolExecutor | None = None
_workers = 2


def configure(workers: int) -> None:
    """Size of the pool, set once at start-up before the first `run`."""
    global _workers
    _workers = workers


def _worker_init(parent: int) -> None:
    # The parent decides when to stop; a Ctrl-C or SIGTERM sent to the process group must not kill a worker
    # in the middle of a request the parent is still draining. A parent that dies without stopping the pool
    # (SIGKILL) must not leave its workers behind.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Thread(target=_exit_with, args=(parent,), daemon=True, name="parent-watch").start()


def _exit_with(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _executor() -> ProcessPoolExecutor:
    global _pool
    if _pool is None:
        # spawn, not fork: forking a process that runs an event loop and holds sockets copies them into workers
        _pool = ProcessPoolExecutor(
            _workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init,
            initargs=(os.getpid(),),
        )
    return _pool


async def run(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` in a worker process; `fn` and its arguments and result must pickle. With no workers
    configured it runs here, on the event loop (the benchmark's peer)."""
    if _workers == 0:
        return fn(*args)
    return await asyncio.get_running_loop().run_in_executor(_executor(), fn, *args)


def shutdown() -> None:
    global _pool
    if _pool is not None:
        _pool.shutdown(wait=False, cancel_futures=True)
        _pool = None
