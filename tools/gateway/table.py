"""The routing table (deploy/gateway/routes.toml) as typed values, and its agreement with the services' APIs."""

from __future__ import annotations

import importlib
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from shared.services import SERVICE_NAMES

REPO_ROOT = Path(__file__).resolve().parents[2]
TABLE_FILE = REPO_ROOT / "deploy" / "gateway" / "routes.toml"
OriginName = Literal["api", "webhooks"]
ORIGINS: tuple[OriginName, ...] = ("api", "webhooks")
_PREFIX = re.compile(r"^(/[a-z0-9][a-z0-9._-]*)+$")
_HOSTNAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$")


class TableError(ValueError):
    """The table is malformed, or disagrees with the services."""


@dataclass(frozen=True)
class Origin:
    """Where clients reach the gateway: a hostname in the cluster, a port locally, and the origin's defaults."""

    name: OriginName
    hostname: str
    local_port: int
    max_body_bytes: int
    timeout_s: float


@dataclass(frozen=True)
class Route:
    """A path prefix (matched on segment boundaries) that one service serves, unchanged, on one origin."""

    prefix: str
    service: str
    origin: OriginName
    max_body_bytes: int
    timeout_s: float
    pending: str | None = None

    @property
    def webhook(self) -> bool:
        return self.origin == "webhooks"

    def matches(self, path: str) -> bool:
        return path == self.prefix or path.startswith(self.prefix + "/")

    @property
    def slug(self) -> str:
        """A name for objects made from this route: `v1-users`, `webhooks-twilio-voice`."""
        return re.sub(r"[^a-z0-9]+", "-", self.prefix.lower()).strip("-")


@dataclass(frozen=True)
class RoutingTable:
    origins: Mapping[OriginName, Origin]
    routes: tuple[Route, ...]

    def route_for(self, path: str) -> Route | None:
        """The route a request path takes: the longest matching prefix (prefixes never nest today)."""
        matching = [r for r in self.routes if r.matches(path)]
        return max(matching, key=lambda r: len(r.prefix)) if matching else None

    def for_origin(self, origin: OriginName) -> tuple[Route, ...]:
        return tuple(r for r in self.routes if r.origin == origin)

    def services(self) -> tuple[str, ...]:
        return tuple(name for name in SERVICE_NAMES if any(r.service == name for r in self.routes))


def _positive(raw: Mapping[str, Any], key: str, where: str, default: Any = None) -> Any:
    value = raw.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise TableError(f"{where}: {key} must be a positive number, not {value!r}")
    return value


def parse(raw: Mapping[str, Any]) -> RoutingTable:
    """The table from its TOML data; TableError naming the first thing wrong."""
    unknown = set(raw) - {"origins", "routes"}
    if unknown:
        raise TableError(f"unknown top-level keys {sorted(unknown)}")
    origins: dict[OriginName, Origin] = {}
    for name in ORIGINS:
        spec = raw.get("origins", {}).get(name)
        if spec is None:
            raise TableError(f"origin {name!r} is missing")
        hostname = spec.get("hostname", "")
        if not _HOSTNAME.match(hostname):
            raise TableError(f"origin {name}: hostname {hostname!r} is not a DNS name")
        where = f"origin {name}"
        origins[name] = Origin(
            name, hostname, int(_positive(spec, "local_port", where)),
            int(_positive(spec, "max_body_bytes", where)), float(_positive(spec, "timeout_s", where)),
        )
    if set(raw.get("origins", {})) - set(ORIGINS):
        raise TableError(f"origins must be exactly {ORIGINS}")
    if len({o.local_port for o in origins.values()}) != len(origins) or len({o.hostname for o in origins.values()}) < 2:
        raise TableError("the origins need distinct hostnames and local ports")
    routes: list[Route] = []
    for i, spec in enumerate(raw.get("routes", [])):
        where = f"route {i + 1} ({spec.get('prefix', '?')})"
        extra = set(spec) - {"prefix", "service", "origin", "max_body_bytes", "timeout_s", "pending"}
        if extra:
            raise TableError(f"{where}: unknown keys {sorted(extra)}")
        prefix = spec.get("prefix", "")
        if not _PREFIX.match(prefix):
            raise TableError(f"{where}: a prefix is /segment[/segment...] in lower case without a trailing slash")
        if spec.get("service") not in SERVICE_NAMES:
            raise TableError(f"{where}: service must be one of {', '.join(SERVICE_NAMES)}")
        origin = spec.get("origin", "api")
        if origin not in ORIGINS:
            raise TableError(f"{where}: origin must be one of {ORIGINS}")
        defaults = origins[origin]
        routes.append(
            Route(
                prefix, spec["service"], origin,
                int(_positive(spec, "max_body_bytes", where, defaults.max_body_bytes)),
                float(_positive(spec, "timeout_s", where, defaults.timeout_s)),
                spec.get("pending"),
            )
        )
    for a in routes:
        for b in routes:
            if a is not b and (a.prefix == b.prefix or b.matches(a.prefix)):
                raise TableError(f"prefix {a.prefix} overlaps {b.prefix}: one path must have one route")
    return RoutingTable(origins, tuple(routes))


@cache
def load(path: Path = TABLE_FILE) -> RoutingTable:
    with path.open("rb") as f:
        return parse(tomllib.load(f))


# --- agreement with the services ------------------------------------------------------------------------------

# Served by every service for operators and probes; never routed through the public gateway.
INTERNAL_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"})


@dataclass(frozen=True)
class Operation:
    service: str
    method: str
    path: str
    signed: bool
    public: bool


def live_operations(services: Iterable[str] = SERVICE_NAMES) -> list[Operation]:
    """Every operation the services declare right now, read from their `shared.http.Api` objects (the same
    declarations their OpenAPI documents are generated from)."""
    ops = []
    for name in services:
        api = importlib.import_module(f"services.{name}.main").build().api
        ops += [Operation(name, op.method.upper(), op.path, op.signed, not op.roles) for op in api.operations]
    return ops


def disagreements(table: RoutingTable, operations: Iterable[Operation]) -> list[str]:
    """Everything in which the table and the services' operations disagree; empty when they agree."""
    ops = list(operations)
    problems = []
    for op in ops:
        if op.path in INTERNAL_PATHS:
            continue
        route = table.route_for(op.path)
        where = f"{op.service}: {op.method} {op.path}"
        if route is None:
            problems.append(f"{where} is not reachable through the gateway (no route's prefix matches)")
        elif route.service != op.service:
            problems.append(f"{where} is routed to {route.service} by {route.prefix}")
        elif op.signed != route.webhook:
            want = "the webhook origin" if op.signed else "the API origin"
            problems.append(f"{where} must be on {want}, but {route.prefix} is on origin {route.origin}")
        elif op.path.startswith("/v1/") and route.webhook:
            problems.append(f"{where} needs a token and must not be on the webhook origin")
    for route in table.routes:
        served = [op for op in ops if route.matches(op.path) and op.service == route.service]
        if not served and route.pending is None:
            problems.append(f"{route.prefix} is routed to {route.service}, which serves nothing under it")
    return problems
