"""HTTP routes of the coverage service; each route declared once (shared.http.Api)."""

from uuid import UUID

from aiohttp import web

from services.coverage.service.workflow import is_deactivated
from shared.http import Api
from shared.runtime import POOL

api = Api("coverage", "1.0.0", "Coverage requests: ask a colleague to take your shifts.")


async def _deactivated(app: web.Application, user_id: UUID) -> bool:
    return await is_deactivated(app[POOL], user_id)


api.deactivated = _deactivated

from services.coverage.api import requests  # noqa: E402,F401  (registers its routes on `api`)

__all__ = ["api"]
