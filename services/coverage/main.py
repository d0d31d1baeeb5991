"""Process entry point: `python -m services.coverage.main`."""

from services.coverage.api import api
from services.coverage.settings import Settings
from shared.runtime import Service


def build(settings: Settings | None = None) -> Service:
    return Service(settings or Settings(), api)


if __name__ == "__main__":
    build().run()
