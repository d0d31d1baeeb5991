"""The platform's services, their default HTTP ports and entry modules: defined here and nowhere else.

Python code derives from this table (service settings, the local process tools, the container healthcheck);
files that cannot import Python (docker-compose.yml, deploy/, the README) are checked against it by
tests/unit/test_service_table.py.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    port: int

    @property
    def module(self) -> str:
        """The module the service runs as: `python -m services.<name>.main`."""
        return f"services.{self.name}.main"


SCHEDULE = ServiceSpec("schedule", 8081)
COVERAGE = ServiceSpec("coverage", 8082)
CALLROUTER = ServiceSpec("callrouter", 8083)
NOTIFIER = ServiceSpec("notifier", 8084)

ALL_SERVICES: tuple[ServiceSpec, ...] = (SCHEDULE, COVERAGE, CALLROUTER, NOTIFIER)
SERVICE_NAMES: tuple[str, ...] = tuple(spec.name for spec in ALL_SERVICES)
DEFAULT_PORTS: dict[str, int] = {spec.name: spec.port for spec in ALL_SERVICES}


def service(name: str) -> ServiceSpec:
    """The service called `name`; ValueError naming the known ones otherwise."""
    for spec in ALL_SERVICES:
        if spec.name == name:
            return spec
    raise ValueError(f"unknown service {name!r}; one of {', '.join(SERVICE_NAMES)}")
