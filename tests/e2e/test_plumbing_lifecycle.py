"""Start-up never waits on Kafka or PostgreSQL: HTTP opens first, /readyz names what is missing, and SIGTERM
stops the process at any stage."""

import asyncio
import os
import signal
from typing import Any

import pytest

from shared.testing import eventually
from tests.conftest import IsolatedInfra, Processes
from tests.e2e.http import get
from tools.infra import free_port
from tools.procs import ServiceProcess

pytestmark = pytest.mark.e2e


async def sigterm_and_wait(process: ServiceProcess) -> None:
    os.kill(process.pid, signal.SIGTERM)
    await eventually(lambda: asyncio.sleep(0, result=not process.alive), timeout_s=15, what="exit after SIGTERM")
    assert process.returncode == 0


async def test_http_opens_and_sigterm_stops_while_database_and_broker_are_unreachable(processes: Processes) -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    notifier = processes.start(
        "notifier", wait=False, KAFKA_BOOTSTRAP=nowhere, DATABASE_URL=f"postgresql://oncall@{nowhere}/oncall"
    )
    healthz = await eventually(lambda: get(notifier, "/healthz"), timeout_s=30, what="/healthz answers")
    assert healthz[0] == 200
    readyz = await get(notifier, "/readyz")
    assert readyz is not None and readyz[0] == 503
    checks = readyz[1]["checks"]
    assert checks["database"].startswith("failing") and checks["broker"].startswith("failing")
    assert "joining" in checks["consumers"] and "notifier.notifier.commands.v1" in checks["consumers"]
    await sigterm_and_wait(notifier)


@pytest.mark.broker("noida")
async def test_a_service_sigkilled_on_noida_comes_back_serving_http_and_stops_on_sigterm(
    isolated_infra: IsolatedInfra, processes: Processes
) -> None:
    """noida-db keeps a SIGKILLed member in its groups, so the restarted process is not assigned partitions
    (see docs/operations.md); it must still serve HTTP, say why it is not ready, and obey SIGTERM."""
    first = processes.start("notifier", infra=isolated_infra)
    first.kill()
    again = processes.start("notifier", infra=isolated_infra, wait=False)
    healthz = await eventually(lambda: get(again, "/healthz"), timeout_s=30, what="/healthz answers")
    assert healthz[0] == 200

    async def readiness() -> Any:
        answer = await get(again, "/readyz")
        return answer if answer and answer[1]["checks"].get("database") == "ok" else None

    status, body = await eventually(readiness, timeout_s=30, what="/readyz with the database up")
    assert status == 503 and "joining" in body["checks"]["consumers"], body
    await sigterm_and_wait(again)
