"""The quick platform (tools.stack) on a broker and database of a test module's own, for the scenario tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator

from tests.conftest import Infra, IsolatedInfra, own_infra
from tools.infra import BrokerKind
from tools.stack import Platform


@contextlib.asynccontextmanager
async def own_platform(
    infra: Infra, name: str = "platform", broker: BrokerKind = "tansu"
) -> AsyncIterator[tuple[Platform, IsolatedInfra]]:
    """Fakes, services and gateway on a broker (`broker`: noida survives a restart) and database nobody else
    uses, and those two; SCENARIO_LOGS names a directory to keep the processes' logs in for a look later."""
    async with own_infra(infra, broker) as own:
        started = await asyncio.to_thread(Platform.quick, own.run_dir / name, own.env())
        try:
            yield started, own
        finally:
            await asyncio.to_thread(started.stop)
            if keep := os.environ.get("SCENARIO_LOGS"):
                shutil.copytree(started.run_dir / "logs", keep, dirs_exist_ok=True)
