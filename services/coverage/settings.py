from shared.services import COVERAGE
from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = COVERAGE.name
    http_port: int = COVERAGE.port
