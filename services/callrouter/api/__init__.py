"""HTTP routes of the callrouter service; each route declared once (shared.http.Api)."""

from uuid import UUID

from aiohttp import web

from services.callrouter import store
from shared.http import Api
from shared.runtime import POOL

api = Api("callrouter", "1.0.0", "Call routing: routing numbers, IVR, responder dialing, voicemail, call alerts.")


async def _deactivated(app: web.Application, user_id: UUID) -> bool:
    async with app[POOL].acquire() as conn:
        return await store.is_deactivated(conn, user_id)


api.deactivated = _deactivated

from services.callrouter.api import alerts, numbers, webhooks  # noqa: E402,F401  (register their routes on `api`)

__all__ = ["api"]
