"""Service names and ports are defined once, in shared.services. Python code imports that table; the files
that cannot import it (compose, Kubernetes, the container entrypoint, Dockerfile, README) are checked here."""

import importlib
import importlib.util
import re
import runpy
from pathlib import Path

import pytest
import yaml

from shared import services, topics
from shared.services import ALL_SERVICES, DEFAULT_PORTS, SERVICE_NAMES, ServiceSpec

ROOT = Path(__file__).resolve().parents[2]
K8S_BASE = ROOT / "deploy" / "k8s" / "base"


def test_the_table_has_unique_names_and_ports() -> None:
    assert len(set(SERVICE_NAMES)) == len(ALL_SERVICES)
    assert len(set(DEFAULT_PORTS.values())) == len(ALL_SERVICES)


def test_every_service_package_is_in_the_table_and_every_entry_runs() -> None:
    packages = {path.parent.name for path in (ROOT / "services").glob("*/main.py")}
    assert packages == set(SERVICE_NAMES)
    for spec in ALL_SERVICES:
        assert importlib.util.find_spec(spec.module) is not None, spec.module


def test_topic_registry_names_the_same_services() -> None:
    assert tuple(topics.SERVICES) == SERVICE_NAMES


def test_unknown_service_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="schedule, coverage, callrouter, notifier"):
        services.service("billing")


@pytest.mark.parametrize("spec", ALL_SERVICES, ids=SERVICE_NAMES)
def test_service_settings_default_to_the_table(spec: ServiceSpec, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HTTP_PORT", raising=False)
    monkeypatch.delenv("SERVICE_NAME", raising=False)
    settings = importlib.import_module(f"services.{spec.name}.settings").Settings()
    assert (settings.service_name, settings.http_port) == (spec.name, spec.port)


def test_docker_compose_runs_each_service_on_its_port() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    app_services = {name for name, svc in compose.items() if svc.get("command", [None])[0] in SERVICE_NAMES}
    assert app_services == set(SERVICE_NAMES)
    for spec in ALL_SERVICES:
        svc = compose[spec.name]
        assert svc["command"] == [spec.name]
        assert int(svc["environment"]["HTTP_PORT"]) == spec.port
        assert [mapping.rsplit(":", 1)[1] for mapping in svc["ports"]] == [str(spec.port)]


def _containers(deployment: dict) -> list[dict]:
    return deployment["spec"]["template"]["spec"]["containers"]


def test_kubernetes_base_has_each_service_on_its_port() -> None:
    assert {path.name for path in K8S_BASE.iterdir() if path.is_dir()} == set(SERVICE_NAMES)
    resources = yaml.safe_load((K8S_BASE / "kustomization.yaml").read_text())["resources"]
    for spec in ALL_SERVICES:
        assert f"{spec.name}/deployment.yaml" in resources and f"{spec.name}/service.yaml" in resources
        deployment = yaml.safe_load((K8S_BASE / spec.name / "deployment.yaml").read_text())
        template = deployment["spec"]["template"]
        assert template["metadata"]["annotations"]["prometheus.io/port"] == str(spec.port)
        (container,) = [c for c in _containers(deployment) if c["name"] == spec.name]
        assert container["args"] == [spec.name]
        assert [p["containerPort"] for p in container["ports"]] == [spec.port]
        assert {e["name"]: e.get("value") for e in container["env"]}["HTTP_PORT"] == str(spec.port)
        service = yaml.safe_load((K8S_BASE / spec.name / "service.yaml").read_text())
        assert [p["port"] for p in service["spec"]["ports"]] == [spec.port]


def test_container_entrypoint_and_image_know_the_services() -> None:
    entrypoint = (ROOT / "deploy" / "docker" / "entrypoint.sh").read_text()
    case = re.search(r"^\s*([a-z]+(?:\s*\|\s*[a-z]+)+)\)\s*$", entrypoint, re.MULTILINE)
    assert case is not None
    assert tuple(name.strip() for name in case.group(1).split("|")) == SERVICE_NAMES
    expose = re.search(r"^EXPOSE\s+(.+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert expose is not None
    assert sorted(int(port) for port in expose.group(1).split()) == sorted(DEFAULT_PORTS.values())


def test_container_healthcheck_probes_the_services_own_port_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HTTP_PORT", raising=False)
    healthcheck = runpy.run_path(str(ROOT / "deploy" / "docker" / "healthcheck.py"))
    for spec in ALL_SERVICES:
        monkeypatch.setenv("SERVICE", spec.name)
        ports = healthcheck["candidate_ports"]()
        assert ports[0] == spec.port and sorted(ports) == sorted(DEFAULT_PORTS.values())


def test_readme_table_of_make_up_lists_each_service_on_its_port() -> None:
    readme = (ROOT / "README.md").read_text()
    rows = dict(re.findall(r"^\| ([a-z]+) \| `http://127\.0\.0\.1:(\d+)` \|", readme, re.MULTILINE))
    assert {name: int(port) for name, port in rows.items()} == DEFAULT_PORTS
