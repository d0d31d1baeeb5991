"""HTTP routes of the notifier service, one module per resource; each route declared once (shared.http.Api)."""

from uuid import UUID

from aiohttp import web

from services.notifier.service.deliveries import is_deactivated
from shared.http import Api
from shared.runtime import POOL

api = Api("notifier", "1.0.0", "Push and voice notifications: devices, preferences, delivery history.")


async def _deactivated(app: web.Application, user_id: UUID) -> bool:
    return await is_deactivated(app[POOL], user_id)


api.deactivated = _deactivated

from services.notifier.api import (  # noqa: E402,F401  (each registers its routes)
    devices,
    notifications,
    preferences,
    recipients,
)

__all__ = ["api"]
