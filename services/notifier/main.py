"""Process entry point: `python -m services.notifier.main`."""

from services.notifier import consumers
from services.notifier.api import api
from services.notifier.settings import Settings
from shared.runtime import Service
from shared.topics import DELIVERIES, NOTIFICATION_COMMANDS, USERS


def build(settings: Settings | None = None) -> Service:
    svc = Service(settings or Settings(), api, publishes=[DELIVERIES], consumes=[USERS, NOTIFICATION_COMMANDS])
    consumers.register(svc)
    return svc


if __name__ == "__main__":
    build().run()
