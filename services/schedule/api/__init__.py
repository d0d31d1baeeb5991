"""HTTP routes of the schedule service, one module per resource; each route declared once (shared.http.Api)."""

from aiohttp import web

from services.schedule.service.directory import refuse_deactivated
from shared.auth import Principal
from shared.http import Api
from shared.runtime import POOL

api = Api("schedule", "1.0.0", "Directory and on-call schedules: the source of truth for who is on call.")


async def _known_caller(app: web.Application, caller: Principal) -> None:
    await refuse_deactivated(app[POOL], caller)


api.caller_check = _known_caller

from services.schedule.api import (  # noqa: E402,F401  (each module registers its routes on `api`)
    directory,
    feeds,
    overrides,
    policies,
    schedules,
    support_hours,
)

__all__ = ["api"]
