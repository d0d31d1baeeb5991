"""The routing table against the services' live API declarations: every operation reachable through the
gateway on the right origin, nothing routed to a service that does not serve it."""

from __future__ import annotations

import pytest

from shared.services import SERVICE_NAMES
from tools.gateway import table as gw
from tools.gateway.table import Operation, RoutingTable, TableError


@pytest.fixture(scope="module")
def operations() -> list[Operation]:
    return gw.live_operations()


def test_the_table_agrees_with_every_service(operations: list[Operation]) -> None:
    assert gw.disagreements(gw.load(), operations) == []


def test_operations_are_the_services_openapi_paths(operations: list[Operation]) -> None:
    import importlib

    for name in SERVICE_NAMES:
        doc = importlib.import_module(f"services.{name}.main").build().api.openapi()
        documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
        assert documented == {(op.method, op.path) for op in operations if op.service == name}


def test_every_service_with_operations_has_routes(operations: list[Operation]) -> None:
    routed = {r.service for r in gw.load().routes}
    assert {op.service for op in operations} <= routed


def _table(*routes: dict[str, object]) -> RoutingTable:
    return gw.parse(
        {
            "origins": {
                "api": {"hostname": "api.example.com", "local_port": 1, "max_body_bytes": 10, "timeout_s": 1},
                "webhooks": {"hostname": "hooks.example.com", "local_port": 2, "max_body_bytes": 5, "timeout_s": 1},
            },
            "routes": list(routes),
        }
    )


def test_prefixes_match_on_segment_boundaries() -> None:
    t = _table({"prefix": "/v1/notifications", "service": "notifier"},
               {"prefix": "/v1/notification-preferences", "service": "notifier"})
    assert t.route_for("/v1/notifications/abc/ack").prefix == "/v1/notifications"  # type: ignore[union-attr]
    assert t.route_for("/v1/notification-preferences/x").prefix == "/v1/notification-preferences"  # type: ignore[union-attr]
    assert t.route_for("/v1/notificationsx") is None


def test_routes_take_their_origins_defaults() -> None:
    t = _table({"prefix": "/v1/users", "service": "schedule"},
               {"prefix": "/webhooks/x", "service": "notifier", "origin": "webhooks", "timeout_s": 3})
    users, hook = t.routes
    assert (users.max_body_bytes, users.timeout_s, users.webhook) == (10, 1, False)
    assert (hook.max_body_bytes, hook.timeout_s, hook.webhook) == (5, 3, True)


@pytest.mark.parametrize(
    "route, message",
    [
        ({"prefix": "/v1/users/", "service": "schedule"}, "prefix"),
        ({"prefix": "/v1/users", "service": "billing"}, "service"),
        ({"prefix": "/v1/users", "service": "schedule", "origin": "admin"}, "origin"),
        ({"prefix": "/v1/users", "service": "schedule", "timeout_s": 0}, "timeout_s"),
        ({"prefix": "/v1/users", "service": "schedule", "stripprefix": True}, "unknown keys"),
    ],
)
def test_malformed_routes_are_refused(route: dict[str, object], message: str) -> None:
    with pytest.raises(TableError, match=message):
        _table(route)


def test_overlapping_prefixes_are_refused() -> None:
    with pytest.raises(TableError, match="overlaps"):
        _table({"prefix": "/v1/users", "service": "schedule"}, {"prefix": "/v1/users/me", "service": "coverage"})


def test_disagreements_name_each_kind_of_mistake() -> None:
    t = _table(
        {"prefix": "/v1/users", "service": "schedule"},
        {"prefix": "/v1/devices", "service": "coverage"},
        {"prefix": "/webhooks/twilio/voice", "service": "notifier"},
        {"prefix": "/v1/teams", "service": "schedule"},
        {"prefix": "/v1/call-alerts", "service": "callrouter", "pending": "being written"},
    )
    ops = [
        Operation("schedule", "GET", "/v1/users", False, False),
        Operation("schedule", "GET", "/healthz", False, True),
        Operation("schedule", "GET", "/v1/policies", False, False),
        Operation("notifier", "GET", "/v1/devices", False, False),
        Operation("notifier", "POST", "/webhooks/twilio/voice/{id}", True, True),
    ]
    problems = gw.disagreements(t, ops)
    assert problems == [
        "schedule: GET /v1/policies is not reachable through the gateway (no route's prefix matches)",
        "notifier: GET /v1/devices is routed to coverage by /v1/devices",
        "notifier: POST /webhooks/twilio/voice/{id} must be on the webhook origin, but /webhooks/twilio/voice is on "
        "origin api",
        "/v1/devices is routed to coverage, which serves nothing under it",
        "/v1/teams is routed to schedule, which serves nothing under it",
    ]
