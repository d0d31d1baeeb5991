from shared.services import NOTIFIER
from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = NOTIFIER.name
    http_port: int = NOTIFIER.port
