"""docs/openapi/gateway.json: the mobile API of every service in one document, current with the services."""

from __future__ import annotations

from typing import Any

from tools.gateway import openapi
from tools.gateway.table import load


def test_the_checked_in_document_is_current() -> None:
    assert openapi.OUTPUT.read_text() == openapi.render(), "stale: run `python -m tools.gateway.openapi`"


def test_it_holds_every_api_origin_operation_and_no_webhook() -> None:
    documents = openapi.service_documents()
    merged = openapi.merge(documents, load())
    table = load()
    expected = {
        (path, method)
        for doc in documents.values()
        for path, ops in doc["paths"].items()
        for method in ops
        if (route := table.route_for(path)) is not None and not route.webhook
    }
    assert {(path, method) for path, ops in merged["paths"].items() for method in ops} == expected
    assert not [path for path in merged["paths"] if path.startswith("/webhooks/")]
    refs = _refs(merged["paths"]) | _refs(merged["components"]["schemas"])
    assert refs <= set(merged["components"]["schemas"])


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"].rsplit("/", 1)[1]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


def _doc(path: str, schemas: dict[str, Any], ref: str) -> dict[str, Any]:
    ok = {"200": {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}}
    return {"paths": {path: {"get": {"operationId": "get_it", "responses": ok}}}, "components": {"schemas": schemas}}


def test_schemas_of_the_same_name_are_kept_apart_when_they_differ() -> None:
    user_a = {"type": "object", "properties": {"name": {"type": "string"}}}
    user_b = {"type": "object", "properties": {"phone": {"type": "string"}}}
    wrapper = {"type": "object", "properties": {"user": {"$ref": "#/components/schemas/User"}}}
    merged = openapi.merge(
        {
            "schedule": _doc("/v1/users", {"User": user_a, "Wrapper": wrapper}, "Wrapper"),
            "notifier": _doc("/v1/recipients", {"User": user_b, "Wrapper": wrapper}, "Wrapper"),
        },
        load(),
    )
    schemas = merged["components"]["schemas"]
    assert schemas["User"] == user_a and schemas["NotifierUser"] == user_b
    assert schemas["NotifierWrapper"]["properties"]["user"]["$ref"] == "#/components/schemas/NotifierUser"
    recipients = merged["paths"]["/v1/recipients"]["get"]
    assert recipients["operationId"] == "notifier_get_it" and recipients["tags"] == ["notifier"]
