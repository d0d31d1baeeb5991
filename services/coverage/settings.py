from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "coverage"
    http_port: int = 8082
