from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "schedule"
    http_port: int = 8081
