"""Process entry point: `python -m services.coverage.main`."""

from services.coverage import consumers
from services.coverage.api import api
from services.coverage.settings import Settings
from shared.runtime import Service
from shared.topics import COVERAGE_OUTCOMES, COVERAGE_REQUESTS, NOTIFICATION_COMMANDS, TEAMS, TIMELINES, USERS


def build(settings: Settings | None = None) -> Service:
    svc = Service(
        settings or Settings(),
        api,
        publishes=[COVERAGE_REQUESTS, NOTIFICATION_COMMANDS],
        consumes=[COVERAGE_OUTCOMES, TIMELINES, USERS, TEAMS],
    )
    consumers.register(svc)
    return svc


if __name__ == "__main__":
    build().run()
