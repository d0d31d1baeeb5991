"""The simulator's aiohttp application: Twilio's REST API, the test API, and the simulator running the calls."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from tools.fakes.twilio import rest, testapi
from tools.fakes.twilio.engine import Simulator
from tools.fakes.twilio.state import TwilioState


async def simulator(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession() as http:
        sim = Simulator(app[rest.STATE], http)
        app[rest.SIM] = sim
        yield
        await sim.close()


def create_app(state: TwilioState) -> web.Application:
    """The simulator's aiohttp application over `state`."""
    app = web.Application()
    app[rest.STATE] = state
    app.cleanup_ctx.append(simulator)
    rest.add_routes(app)
    testapi.add_routes(app)
    return app
