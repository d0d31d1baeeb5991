"""Process entry point: `python -m services.schedule.main`."""

from services.schedule import consumers
from services.schedule.api import api
from services.schedule.service import schedules
from services.schedule.settings import Settings
from shared.messages import utcnow
from shared.runtime import Service
from shared.topics import COVERAGE_OUTCOMES, COVERAGE_REQUESTS, POLICIES, SUPPORT_HOURS, TEAMS, TIMELINES, USERS


def build(settings: Settings | None = None) -> Service:
    settings = settings or Settings()
    svc = Service(
        settings,
        api,
        publishes=[USERS, TEAMS, TIMELINES, POLICIES, SUPPORT_HOURS, COVERAGE_OUTCOMES],
        consumes=[COVERAGE_REQUESTS],
    )
    consumers.register(svc)

    @svc.every(settings.timeline_refresh_interval_s, "timeline-horizon")
    async def roll_timelines() -> int:
        """Extend every timeline whose horizon runs short (a new day entering the 62-day window)."""
        return await schedules.refresh_timelines(svc.pool, utcnow())

    return svc


if __name__ == "__main__":
    build().run()
