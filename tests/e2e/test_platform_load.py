"""Scenario 8, load: 200 coverage workflows and 50 calls at once keep the guarantees of scenarios 1 and 4, on a
platform of this module's own (all four services as processes, the gateway, the vendor fakes). The latencies are
the `platform.e2e` benchmark's business (bench/platform_e2e.py); nothing here depends on timing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.conftest import Infra
from tests.e2e.platform_helpers import own_platform
from tools.load import platform_load
from tools.scenarios import Api
from tools.stack import Platform


@pytest.fixture(scope="module")
async def platform(infra: Infra) -> AsyncIterator[Platform]:
    async with own_platform(infra) as (started, _):
        yield started


async def test_200_coverage_workflows_and_50_calls_at_once_all_complete_once(platform: Platform) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        figures = await platform_load(Api(platform.doors, http), workflows=200, calls=50)
    assert (figures.lost, figures.duplicates) == ([], [])
    assert (figures.covered, figures.connected) == (200, 50)
    assert (len(figures.coverage_s), len(figures.dial_s)) == (200, 50)
