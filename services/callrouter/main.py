"""Process entry point: `python -m services.callrouter.main`."""

from services.callrouter import consumers
from services.callrouter.api import api
from services.callrouter.settings import Settings
from shared.runtime import Service
from shared.topics import USERS


def build(settings: Settings | None = None) -> Service:
    svc = Service(settings or Settings(), api, consumes=[USERS])
    consumers.register(svc)
    return svc


if __name__ == "__main__":
    build().run()
