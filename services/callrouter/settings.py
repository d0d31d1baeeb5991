from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "callrouter"
    http_port: int = 8083
