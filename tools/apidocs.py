"""Generate (or check) the shipped API documents of every service.

- docs/asyncapi/<service>.json: the events it publishes and consumes, from its faststream broker;
- docs/openapi/<service>.json: its HTTP API, the same document the service serves at /openapi.json.

`python -m tools.apidocs` writes them; `--check` fails if any is out of date.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from faststream.specification import AsyncAPI

from shared.topics import SERVICES

DOCS = Path(__file__).resolve().parent.parent / "docs"


def documents(service: str) -> dict[Path, str]:
    svc = importlib.import_module(f"services.{service}.main").build()
    asyncapi = AsyncAPI(svc.broker, title=f"oncall {service}", version="1.0.0", schema_version="3.0.0")
    return {
        DOCS / "asyncapi" / f"{service}.json": _json(asyncapi.to_specification().to_jsonable()),
        DOCS / "openapi" / f"{service}.json": _json(svc.api.openapi()),
    }


def _json(doc: object) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    stale = []
    for service in SERVICES:
        for path, text in documents(service).items():
            if args.check:
                if not path.exists() or path.read_text() != text:
                    stale.append(str(path))
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
    if stale:
        print("out of date (run `python -m tools.apidocs`): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
