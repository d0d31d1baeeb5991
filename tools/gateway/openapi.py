"""One OpenAPI document for the mobile app: every operation the gateway serves on its API origin, merged from
the services' own documents (each generated from its `shared.http.Api` declarations), so a mobile team
generates its client from one file.

    python -m tools.gateway.openapi            write docs/openapi/gateway.json
    python -m tools.gateway.openapi --check    fail when it is stale

Each operation is tagged with its service. A schema name two services use for different schemas is
qualified with the service's name (`NotifierUserOut`); identical ones are kept once.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import sys
from collections.abc import Mapping
from typing import Any

from shared.services import SERVICE_NAMES
from tools.gateway.table import INTERNAL_PATHS, REPO_ROOT, RoutingTable, load

OUTPUT = REPO_ROOT / "docs" / "openapi" / "gateway.json"
REF = "#/components/schemas/"


def service_documents() -> dict[str, dict[str, Any]]:
    """Each service's OpenAPI document, as it serves it at /openapi.json."""
    return {name: importlib.import_module(f"services.{name}.main").build().api.openapi() for name in SERVICE_NAMES}


def _rename_refs(node: Any, renames: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(REF) and value[len(REF):] in renames:
                out[key] = REF + renames[value[len(REF):]]
            else:
                out[key] = _rename_refs(value, renames)
        return out
    if isinstance(node, list):
        return [_rename_refs(item, renames) for item in node]
    return node


def merge(documents: Mapping[str, dict[str, Any]], table: RoutingTable) -> dict[str, Any]:
    """The public mobile API of `documents` (service -> its OpenAPI) as one OpenAPI 3.1 document."""
    schemas: dict[str, Any] = {}
    owners: dict[str, str] = {}
    paths: dict[str, Any] = {}
    operation_ids: set[str] = set()
    tags = []
    for service, original in documents.items():
        doc = copy.deepcopy(original)
        own = doc.get("components", {}).get("schemas", {})
        renames: dict[str, str] = {}
        changed = True
        while changed:  # a schema that refers to a renamed one differs too
            changed = False
            for name, schema in own.items():
                if name in schemas and name not in renames and schemas[name] != _rename_refs(schema, renames):
                    renames[name] = service.capitalize() + name
                    changed = True
        doc = _rename_refs(doc, renames)
        served = False
        for path, operations in doc.get("paths", {}).items():
            route = table.route_for(path)
            if path in INTERNAL_PATHS or route is None or route.webhook or route.service != service:
                continue
            if path in paths:
                raise ValueError(f"{path} is served by {owners.get(path)} and {service}")
            owners[path] = service
            for operation in operations.values():
                operation["tags"] = [service]
                if operation.get("operationId") in operation_ids:
                    operation["operationId"] = f"{service}_{operation['operationId']}"
                operation_ids.add(operation.get("operationId", ""))
            paths[path] = operations
            served = True
        if served:
            tags.append({"name": service, "description": original.get("info", {}).get("description", "")})
        for name, schema in doc.get("components", {}).get("schemas", {}).items():
            schemas.setdefault(renames.get(name, name), schema)
    used = _referenced(paths, schemas)
    api = table.origins["api"]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "oncall mobile API",
            "version": "1.0.0",
            "description": (
                "Every operation the mobile app can call, through the gateway's API origin; merged from the services' "
                "own documents by tools/gateway/openapi.py. Each service verifies the bearer token itself."
            ),
        },
        "servers": [{"url": f"https://{api.hostname}"}, {"url": f"http://127.0.0.1:{api.local_port}",
                                                          "description": "make up"}],
        "tags": tags,
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": {name: schemas[name] for name in sorted(used)},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }


def _referenced(paths: Mapping[str, Any], schemas: Mapping[str, Any]) -> set[str]:
    """The schemas `paths` refer to, directly or through other schemas."""
    found: set[str] = set()
    stack: list[Any] = [paths]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(REF) and ref[len(REF):] not in found:
                name = ref[len(REF):]
                found.add(name)
                stack.append(schemas.get(name))
            stack.extend(value for key, value in node.items() if key != "$ref")
        elif isinstance(node, list):
            stack.extend(node)
    return found


def render(table: RoutingTable | None = None) -> str:
    return json.dumps(merge(service_documents(), table or load()), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.gateway.openapi", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if docs/openapi/gateway.json is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(f"{OUTPUT.relative_to(REPO_ROOT)} is stale: run `python -m tools.gateway.openapi`", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
