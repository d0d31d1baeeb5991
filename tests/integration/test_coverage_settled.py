"""Accepts waiting for schedule's answer (`requests.settled`) share one LISTEN connection per pool, however many
start at once: a waiter holding the pool's last connection to listen would leave none to look the request up."""

from __future__ import annotations

import asyncio
import uuid

from services.coverage.service import requests
from shared.auth import Principal
from shared.db import create_pool
from shared.errors import NotFound
from tests.conftest import Infra


async def test_many_first_waits_at_once_leave_the_pool_usable(infra: Infra) -> None:
    pool = await create_pool(infra.database_url, "coverage", max_size=3)
    admin = Principal(uuid.uuid4(), "admin")
    try:
        async with asyncio.timeout(15):
            answers = await asyncio.gather(
                *(requests.settled(pool, admin, uuid.uuid4(), 0.5) for _ in range(8)), return_exceptions=True
            )
        assert all(isinstance(a, NotFound) for a in answers), answers
    finally:
        await pool.close()
