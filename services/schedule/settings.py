from shared.services import SCHEDULE
from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = SCHEDULE.name
    http_port: int = SCHEDULE.port
    # how often the rolling job looks for timelines whose 62-day horizon needs extending
    timeline_refresh_interval_s: float = 600.0
