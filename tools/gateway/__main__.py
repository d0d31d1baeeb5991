"""`python -m tools.gateway generate` writes every file generated from the routing table and the registries
(docs/openapi/gateway.json, the generated manifests of deploy/k8s); `python -m tools.gateway check` is
`make k8s-check` plus the freshness of the merged OpenAPI document."""

from __future__ import annotations

import sys

from tools.gateway import check, k8s, openapi


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["generate"]:
        return openapi.main([]) or k8s.main([])
    if args == ["check"]:
        return max(openapi.main(["--check"]), check.main())
    print("usage: python -m tools.gateway generate|check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
