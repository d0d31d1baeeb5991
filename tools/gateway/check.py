"""`make k8s-check`: build every kustomization of deploy/k8s and check what operators rely on, offline.

1. Build each overlay (and deploy/k8s/topics/*) with `kubectl kustomize`; where kubectl is absent, with the
   pure-Python subset in tools/gateway/kustomize.py, and say so.
2. Validate every object: built-in kinds with `kubernetes-validate` (strict: unknown fields are errors), KEDA
   ScaledObject, Gateway API Gateway/HTTPRoute and Strimzi KafkaTopic against the CRD schemas vendored in
   deploy/k8s/schemas/ (made strict the same way). A kind with no schema is an error, never skipped.
3. Structure: per service a Deployment with probes, resources, non-root and a read-only root filesystem, its
   migration init container, a PodDisruptionBudget and a NetworkPolicy; where KEDA scales it, a ScaledObject
   whose kafka triggers are exactly the service's subscriptions (group and topic) and whose maxReplicaCount
   stays within the partitions it consumes; routes that reach existing Services, webhooks on their hostname.

    python -m tools.gateway.check       (exit 1 on any problem)
"""

from __future__ import annotations

import copy
import importlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from shared.services import ALL_SERVICES, SERVICE_NAMES
from shared.topics import ALL_TOPICS
from tools.gateway import k8s
from tools.gateway.table import REPO_ROOT, load

K8S = REPO_ROOT / "deploy" / "k8s"
SCHEMAS = K8S / "schemas"
KUBERNETES_VERSION = "1.30"
# kind -> vendored schema file (deploy/k8s/schemas/README.md says where each comes from)
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject-keda-v1alpha1.json",
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): "httproute-gateway-v1.json",
    ("gateway.networking.k8s.io/v1", "Gateway"): "gateway-gateway-v1.json",
    ("kafka.strimzi.io/v1", "KafkaTopic"): "kafkatopic-kafka-v1.json",
}
PARTITIONS = {topic.name: topic.partitions for topic in ALL_TOPICS}


def kustomizations() -> list[Path]:
    """Every kustomization meant to be applied: the overlays and the topic bundles."""
    return sorted(p.parent for group in ("overlays", "topics") for p in (K8S / group).glob("*/kustomization.yaml"))


@dataclass
class Build:
    path: Path
    objects: list[dict[str, Any]]
    how: str


def build(path: Path) -> Build:
    """The objects `path` renders to: kubectl kustomize when there is a kubectl, else the Python subset."""
    kubectl = shutil.which("kubectl")
    if kubectl is not None:
        done = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"kubectl kustomize {path} failed: {done.stderr.strip()}")
        return Build(path, [o for o in yaml.safe_load_all(done.stdout) if o], "kubectl kustomize")
    from tools.gateway import kustomize

    return Build(path, kustomize.build(path), "pure-Python kustomize subset (tools/gateway/kustomize.py): no kubectl")


# --- schemas -------------------------------------------------------------------------------------------------------


def _strict(schema: Any) -> Any:
    """Unknown fields are errors, as `kubectl apply --validate=strict` makes them; preserve-unknown-fields and
    maps (additionalProperties given) stay open."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


@cache
def _crd_validator(filename: str) -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMAS / filename).read_text())
    schema.pop("$comment", None)
    schema = _strict(schema)
    # metadata is checked by the API server, not the CRD schema; give it the core shape.
    schema.setdefault("properties", {})["metadata"] = {"type": "object"}
    schema["properties"].setdefault("apiVersion", {"type": "string"})
    schema["properties"].setdefault("kind", {"type": "string"})
    return jsonschema.Draft202012Validator(schema)


def _name(obj: dict[str, Any]) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def validate(objects: Iterable[dict[str, Any]], version: str = KUBERNETES_VERSION) -> list[str]:
    import kubernetes_validate
    from kubernetes_validate.utils import SchemaNotFoundError

    problems = []
    for obj in objects:
        key = (obj.get("apiVersion"), obj.get("kind"))
        if key in CRD_SCHEMAS:
            for error in _crd_validator(CRD_SCHEMAS[key]).iter_errors(obj):
                where = ".".join(str(p) for p in error.absolute_path)
                problems.append(f"{_name(obj)}: {where}: {error.message}")
            continue
        try:
            kubernetes_validate.validate(copy.deepcopy(obj), version, strict=True)
        except SchemaNotFoundError:
            problems.append(f"{_name(obj)}: no schema for {key[0]} {key[1]} (vendor one in deploy/k8s/schemas)")
        except jsonschema.ValidationError as exc:  # kubernetes_validate's ValidationError is one
            where = ".".join(str(p) for p in exc.absolute_path)
            problems.append(f"{_name(obj)}: {where}: {exc.message}")
    return problems


# --- structure -----------------------------------------------------------------------------------------------------


@cache
def subscriptions() -> dict[str, frozenset[tuple[str, str]]]:
    """service -> {(consumer group, topic)} as the service subscribes (its faststream broker's subscribers)."""
    subs: dict[str, frozenset[tuple[str, str]]] = {}
    for name in SERVICE_NAMES:
        broker = importlib.import_module(f"services.{name}.main").build().broker
        subs[name] = frozenset(
            (str(sub.group_id), topic) for sub in broker.subscribers for topic in getattr(sub, "topic_names", ())
        )
    return subs


@dataclass
class Objects:
    items: list[dict[str, Any]]
    by_kind: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for obj in self.items:
            self.by_kind.setdefault(obj["kind"], []).append(obj)

    def named(self, kind: str, name: str) -> dict[str, Any] | None:
        return next((o for o in self.by_kind.get(kind, []) if o["metadata"]["name"] == name), None)


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    wanted = selector.get("matchLabels", {})
    return bool(wanted) and all(labels.get(k) == v for k, v in wanted.items())


def _container_problems(where: str, container: dict[str, Any], probes: bool) -> list[str]:
    problems = []
    if probes:
        problems += [f"{where}: no {p}" for p in ("startupProbe", "livenessProbe", "readinessProbe")
                     if p not in container]
    resources = container.get("resources", {})
    if not {"cpu", "memory"} <= set(resources.get("requests", {})):
        problems.append(f"{where}: needs cpu and memory requests")
    if "memory" not in resources.get("limits", {}):
        problems.append(f"{where}: needs a memory limit")
    security = container.get("securityContext", {})
    if security.get("readOnlyRootFilesystem") is not True:
        problems.append(f"{where}: root filesystem must be read-only")
    if security.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{where}: must not allow privilege escalation")
    if security.get("capabilities", {}).get("drop") != ["ALL"]:
        problems.append(f"{where}: must drop all capabilities")
    return problems


def _service_problems(objects: Objects, name: str, port: int) -> list[str]:
    problems = []
    deployment = objects.named("Deployment", name)
    if deployment is None:
        return [f"{name}: no Deployment"]
    template = deployment["spec"]["template"]
    labels = template["metadata"]["labels"]
    pod = template["spec"]
    if not pod.get("securityContext", {}).get("runAsNonRoot"):
        problems.append(f"Deployment/{name}: pods must run as non-root")
    (main,) = [c for c in pod["containers"] if c["name"] == name] or [{}]
    problems += _container_problems(f"Deployment/{name} container {name}", main, probes=True)
    if main.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/readyz":
        problems.append(f"Deployment/{name}: readiness must probe /readyz")
    if main.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/healthz":
        problems.append(f"Deployment/{name}: liveness must probe /healthz")
    migrate = [c for c in pod.get("initContainers", []) if c["name"] == "migrate"]
    if not migrate or migrate[0].get("args") != ["migrate", "--service", name]:
        problems.append(f"Deployment/{name}: needs the init container `migrate --service {name}` (one per release)")
    else:
        problems += _container_problems(f"Deployment/{name} init container migrate", migrate[0], probes=False)
    pdbs = [p for p in objects.by_kind.get("PodDisruptionBudget", []) if _selects(p["spec"]["selector"], labels)]
    if len(pdbs) != 1:
        problems.append(f"{name}: needs exactly one PodDisruptionBudget, has {len(pdbs)}")
    problems += _policy_problems(objects, name, port, labels)
    scaled = [s for s in objects.by_kind.get("ScaledObject", []) if s["spec"]["scaleTargetRef"]["name"] == name]
    if "ScaledObject" in objects.by_kind or any(o["kind"] == "ScaledObject" for o in objects.items):
        problems += _scaling_problems(name, scaled)
    return problems


def _policy_problems(objects: Objects, name: str, port: int, labels: dict[str, str]) -> list[str]:
    policies = [p for p in objects.by_kind.get("NetworkPolicy", []) if _selects(p["spec"]["podSelector"], labels)]
    if len(policies) != 1:
        return [f"{name}: needs exactly one NetworkPolicy, has {len(policies)}"]
    spec = policies[0]["spec"]
    problems = []
    if set(spec.get("policyTypes", [])) != {"Ingress", "Egress"}:
        problems.append(f"NetworkPolicy/{name}: must restrict both ingress and egress")
    for rule in spec.get("ingress", []):
        sources = rule.get("from", [])
        if not sources or any(set(s) != {"namespaceSelector"} or
                              s["namespaceSelector"].get("matchLabels") != {k8s.GATEWAY_NAMESPACE_LABEL: "true"}
                              for s in sources):
            problems.append(f"NetworkPolicy/{name}: ingress only from the gateway's namespace")
        if [p.get("port") for p in rule.get("ports", [])] != [port]:
            problems.append(f"NetworkPolicy/{name}: ingress only on port {port}")
    allowed = {53, 9092, 5432} | ({443} if name in k8s.PROVIDERS else set())
    for rule in spec.get("egress", []):
        ports = {p.get("port") for p in rule.get("ports", [])}
        if not ports or not ports <= allowed or not rule.get("to"):
            problems.append(f"NetworkPolicy/{name}: egress only to DNS, Kafka, PostgreSQL and its providers")
    return problems


def _scaling_problems(name: str, scaled: list[dict[str, Any]]) -> list[str]:
    if len(scaled) != 1:
        return [f"{name}: needs exactly one ScaledObject, has {len(scaled)}"]
    spec = scaled[0]["spec"]
    problems = []
    triggers = {
        (t["metadata"]["consumerGroup"], t["metadata"]["topic"]) for t in spec["triggers"] if t["type"] == "kafka"
    }
    subscribed = subscriptions()[name]
    if triggers != subscribed:
        problems.append(
            f"ScaledObject/{name}: kafka triggers {sorted(triggers)} differ from the service's subscriptions "
            f"{sorted(subscribed)}"
        )
    consumed = [PARTITIONS[topic] for _, topic in subscribed if topic in PARTITIONS]
    cap = max(consumed, default=1)
    if spec.get("maxReplicaCount", 100) > cap:
        problems.append(f"ScaledObject/{name}: maxReplicaCount {spec.get('maxReplicaCount')} is above {cap}, the "
                        "partition count of its largest consumed topic (more replicas would hold no partition)")
    if spec.get("minReplicaCount", 0) > spec.get("maxReplicaCount", 100):
        problems.append(f"ScaledObject/{name}: minReplicaCount above maxReplicaCount")
    return problems


def _route_problems(objects: Objects) -> list[str]:
    table = load()
    problems = []
    services = {
        o["metadata"]["name"]: [p["port"] for p in o["spec"]["ports"]] for o in objects.by_kind.get("Service", [])
    }
    for route in objects.by_kind.get("HTTPRoute", []):
        origin = route["spec"]["parentRefs"][0].get("sectionName")
        if route["spec"]["hostnames"] != [table.origins[origin].hostname] and origin in table.origins:
            problems.append(f"HTTPRoute/{route['metadata']['name']}: hostnames must be the {origin} origin's")
        for rule in route["spec"]["rules"]:
            for ref in rule["backendRefs"]:
                if ref["port"] not in services.get(ref["name"], []):
                    problems.append(f"HTTPRoute/{route['metadata']['name']}: no Service {ref['name']}:{ref['port']}")
            for match in rule["matches"]:
                entry = table.route_for(match["path"]["value"])
                if entry is None or entry.origin != origin:
                    problems.append(f"HTTPRoute/{route['metadata']['name']}: {match['path']['value']} not on {origin}")
    for ingress in objects.by_kind.get("Ingress", []):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                if backend["port"]["number"] not in services.get(backend["name"], []):
                    problems.append(f"Ingress/{ingress['metadata']['name']}: no Service {backend['name']}")
                entry = table.route_for(path["path"])
                if entry is None or entry.service != backend["name"]:
                    problems.append(f"Ingress/{ingress['metadata']['name']}: {path['path']} is not {backend['name']}'s")
    return problems


def structural(objects: list[dict[str, Any]]) -> list[str]:
    """What operators rely on, for a build that deploys the services (builds without Deployments: topics)."""
    found = Objects(objects)
    if not found.by_kind.get("Deployment"):
        return []
    problems = []
    for spec in ALL_SERVICES:
        problems += _service_problems(found, spec.name, spec.port)
    return problems + _route_problems(found)


def topic_problems(objects: list[dict[str, Any]]) -> list[str]:
    """A KafkaTopic bundle holds every topic of the registry and its dead-letter topic, as registered."""
    topics = {o["spec"]["topicName"]: o["spec"] for o in objects if o["kind"] == "KafkaTopic"}
    if not topics:
        return []
    problems = []
    for topic in ALL_TOPICS:
        spec = topics.get(topic.name)
        if spec is None or topic.dlq not in topics:
            problems.append(f"KafkaTopic for {topic.name} or its dead-letter topic is missing")
            continue
        if spec["partitions"] != topic.partitions:
            problems.append(f"KafkaTopic {topic.name}: {spec['partitions']} partitions, registry {topic.partitions}")
        if (spec.get("config", {}).get("cleanup.policy") == "compact") != topic.compacted:
            problems.append(f"KafkaTopic {topic.name}: compaction differs from the registry")
    return problems


def check_all() -> tuple[list[str], list[str]]:
    """(what was done, problems) for every kustomization and the generated files."""
    done: list[str] = []
    problems = [f"stale generated file {p.relative_to(REPO_ROOT)} (python -m tools.gateway.k8s)" for p in k8s.stale()]
    for path in kustomizations():
        where = path.relative_to(REPO_ROOT)
        try:
            built = build(path)
        except Exception as exc:
            problems.append(f"{where}: {exc}")
            continue
        found = [f"{where}: {p}" for p in validate(built.objects) + structural(built.objects) +
                 topic_problems(built.objects)]
        problems += found
        done.append(f"{where}: {len(built.objects)} objects built with {built.how}; "
                    f"{'OK' if not found else f'{len(found)} problems'}")
    if not done:
        problems.append("no kustomization found under deploy/k8s/overlays or deploy/k8s/topics")
    return done, problems


def main() -> int:
    done, problems = check_all()
    for line in done:
        print(line)
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    print(f"k8s-check: {len(done)} builds, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
