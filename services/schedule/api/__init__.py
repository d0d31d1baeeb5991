"""HTTP routes of the schedule service, one module per resource; each route declared once (shared.http.Api)."""

from uuid import UUID

from aiohttp import web

from services.schedule.service.directory import is_deactivated
from shared.http import Api
from shared.runtime import POOL

api = Api("schedule", "1.0.0", "Directory and on-call schedules: the source of truth for who is on call.")


async def _deactivated(app: web.Application, user_id: UUID) -> bool:
    return await is_deactivated(app[POOL], user_id)


api.deactivated = _deactivated

from services.schedule.api import (  # noqa: E402,F401  (each module registers its routes on `api`)
    directory,
    feeds,
    overrides,
    policies,
    schedules,
    support_hours,
)

__all__ = ["api"]
