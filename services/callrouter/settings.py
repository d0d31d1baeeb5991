from shared.services import CALLROUTER
from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = CALLROUTER.name
    http_port: int = CALLROUTER.port
