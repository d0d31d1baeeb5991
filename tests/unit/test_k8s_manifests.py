"""`make k8s-check` inside `make test`: every overlay builds, every object validates offline (Kubernetes schemas
plus the vendored KEDA, Gateway API and Strimzi CRD schemas), and the structure operators rely on holds."""

from __future__ import annotations

import copy
import json
import re
import shutil
from functools import cache
from typing import Any

import pytest

from tools.gateway import check, k8s, kustomize

PRODUCTION = check.K8S / "overlays" / "production"


@cache
def _production() -> tuple[dict[str, Any], ...]:
    return tuple(check.build(PRODUCTION).objects)


def _objects() -> list[dict[str, Any]]:
    return copy.deepcopy(list(_production()))


def _one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def test_every_kustomization_builds_validates_and_has_the_structure_operators_rely_on() -> None:
    done, problems = check.check_all()
    assert problems == []
    assert len(done) == len(check.kustomizations()) >= 3
    how = "kubectl kustomize" if shutil.which("kubectl") else "pure-Python kustomize subset"
    assert all(how in line for line in done), done


def test_generated_manifests_are_current() -> None:
    assert k8s.stale() == [], "run `python -m tools.gateway.k8s`"


def test_without_kubectl_the_check_says_so_and_builds_in_python(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(check.shutil, "which", lambda _: None)
    built = check.build(PRODUCTION)
    assert "no kubectl" in built.how and "pure-Python" in built.how
    assert check.validate(built.objects) == [] and check.structural(built.objects) == []


def _normalized(objects: list[dict[str, Any]]) -> dict[tuple[str, str, str], Any]:
    # Generated names carry a content hash whose characters differ between the two builds; kubectl wraps
    # base64 at 76 columns.
    text = re.sub(r'"(oncall-[a-z-]+)-[a-z0-9]{10}"', r'"\1-HASH"', json.dumps(objects))
    found = {}
    for obj in json.loads(text):
        if obj["kind"] == "Secret":
            obj["data"] = {k: re.sub(r"\s", "", v) for k, v in obj.get("data", {}).items()}
        found[(obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])] = obj
    return found


@pytest.mark.parametrize("path", check.kustomizations(), ids=lambda p: p.name)
def test_the_python_build_is_kubectls(path: Any) -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("no kubectl on this machine to compare with (the check itself ran the Python build)")
    assert _normalized(kustomize.build(path)) == _normalized(check.build(path).objects)


def test_the_python_build_refuses_what_it_does_not_support(tmp_path: Any) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\nhelmCharts: []\n")
    with pytest.raises(kustomize.KustomizeError, match="helmCharts"):
        kustomize.build(tmp_path)


def test_a_missing_probe_or_writable_root_is_found() -> None:
    objects = _objects()
    container = _one(objects, "Deployment", "coverage")["spec"]["template"]["spec"]["containers"][0]
    del container["readinessProbe"]
    container["securityContext"]["readOnlyRootFilesystem"] = False
    problems = check.structural(objects)
    assert "Deployment/coverage container coverage: no readinessProbe" in problems
    assert "Deployment/coverage container coverage: root filesystem must be read-only" in problems


def test_a_scaledobject_that_misnames_a_group_or_outgrows_its_partitions_is_found() -> None:
    objects = _objects()
    spec = _one(objects, "ScaledObject", "notifier")["spec"]
    spec["triggers"][0]["metadata"]["consumerGroup"] = "notifier"
    spec["maxReplicaCount"] = 7
    problems = " ".join(check.structural(objects))
    assert "ScaledObject/notifier: kafka triggers" in problems
    assert "maxReplicaCount 7 is above 6" in problems


def test_maxreplicacount_is_checked_against_the_topic_registry() -> None:
    subscribed = check.subscriptions()
    for obj in _production():
        if obj["kind"] == "ScaledObject":
            name = obj["spec"]["scaleTargetRef"]["name"]
            cap = max(check.PARTITIONS[topic] for _, topic in subscribed[name])
            assert obj["spec"]["maxReplicaCount"] <= cap


def test_missing_pdb_networkpolicy_or_migration_is_found() -> None:
    objects = [o for o in _objects() if not (o["kind"] in ("PodDisruptionBudget", "NetworkPolicy")
                                             and o["metadata"]["name"] == "schedule")]
    pod = _one(objects, "Deployment", "schedule")["spec"]["template"]["spec"]
    pod["initContainers"] = []
    problems = check.structural(objects)
    assert "schedule: needs exactly one PodDisruptionBudget, has 0" in problems
    assert "schedule: needs exactly one NetworkPolicy, has 0" in problems
    assert any("migrate --service schedule" in p for p in problems)


def test_a_networkpolicy_open_to_more_than_the_gateway_and_its_providers_is_found() -> None:
    objects = _objects()
    spec = _one(objects, "NetworkPolicy", "coverage")["spec"]
    spec["egress"].append({"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"protocol": "TCP", "port": 443}]})
    spec["ingress"][0]["from"].append({"podSelector": {}})
    problems = check.structural(objects)
    assert "NetworkPolicy/coverage: egress only to DNS, Kafka, PostgreSQL and its providers" in problems
    assert "NetworkPolicy/coverage: ingress only from the gateway's namespace" in problems


def test_invalid_objects_are_named() -> None:
    objects = _objects()
    _one(objects, "HTTPRoute", "notifier-webhooks")["spec"]["rules"][0]["matches"][0]["path"]["type"] = "Prefix"
    _one(objects, "ScaledObject", "schedule")["spec"]["maxReplicas"] = 3
    problems = check.validate(objects)
    assert any(p.startswith("HTTPRoute/notifier-webhooks: spec.rules.0.matches.0.path.type") for p in problems)
    assert any(p.startswith("ScaledObject/schedule: spec:") and "maxReplicas" in p for p in problems)


def test_topics_match_the_registry() -> None:
    objects = check.build(check.K8S / "topics" / "strimzi").objects
    assert check.topic_problems(objects) == []
    objects[0]["spec"]["partitions"] += 1
    assert check.topic_problems(objects)
