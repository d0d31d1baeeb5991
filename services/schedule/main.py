"""Process entry point: `python -m services.schedule.main`."""

from services.schedule.api import api
from services.schedule.settings import Settings
from shared.runtime import Service
from shared.topics import TEAMS, USERS


def build(settings: Settings | None = None) -> Service:
    return Service(settings or Settings(), api, publishes=[USERS, TEAMS], consumes=[])


if __name__ == "__main__":
    build().run()
