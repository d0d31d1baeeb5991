"""How the test session picks its infrastructure (TEST_INFRA) and gives tier markers. The Docker check is
replaced where a test needs one answer or the other; testcontainers itself is never touched here."""

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests import conftest
from tools import infra as local

ROOT = Path(__file__).resolve().parents[2]


def no_docker() -> str:
    return "FileNotFoundError: /var/run/docker.sock"


def docker_answers() -> None:
    return None


def never_called() -> None:
    raise AssertionError("the Docker engine was asked although TEST_INFRA does not want containers")


@pytest.mark.parametrize("environ", [{}, {"TEST_INFRA": ""}, {"TEST_INFRA": "local"}])
def test_local_binaries_are_the_default_and_need_no_docker(environ: dict[str, str]) -> None:
    assert local.select_test_infra(environ, never_called) == "local"


def test_containers_are_picked_when_asked_and_docker_answers() -> None:
    assert local.select_test_infra({"TEST_INFRA": "containers"}, docker_answers) == "containers"


def test_containers_without_docker_fail_with_the_reason_and_the_way_out() -> None:
    with pytest.raises(local.InfraError) as raised:
        local.select_test_infra({"TEST_INFRA": "containers"}, no_docker)
    message = str(raised.value)
    assert "TEST_INFRA=containers needs a Docker engine" in message
    assert "/var/run/docker.sock" in message
    assert "unset TEST_INFRA" in message


def test_an_unknown_choice_is_refused() -> None:
    with pytest.raises(local.InfraError, match="'kubernetes' is not one of local, containers"):
        local.select_test_infra({"TEST_INFRA": "kubernetes"}, docker_answers)


def test_the_session_fails_at_start_when_containers_find_no_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    @dataclass
    class Config:
        stash: pytest.Stash = field(default_factory=pytest.Stash)

    monkeypatch.setenv("TEST_INFRA", "containers")
    monkeypatch.setattr(local, "docker_problem", no_docker)
    with pytest.raises(pytest.UsageError, match="needs a Docker engine"):
        conftest.pytest_configure(Config())  # type: ignore[arg-type]
    monkeypatch.setattr(local, "docker_problem", docker_answers)
    config = Config()
    conftest.pytest_configure(config)  # type: ignore[arg-type]
    assert config.stash[conftest.BACKEND] == "containers"


@dataclass
class Started:
    address: str
    log: list[str]

    @property
    def url(self) -> str:
        return self.address

    @property
    def bootstrap(self) -> str:
        return self.address

    def stop(self) -> None:
        self.log.append(f"stopped {self.address}")

    remove = stop


def refuse(what: str):  # type: ignore[no-untyped-def]
    def start(*_: object, **__: object) -> None:
        raise AssertionError(f"{what} started on the wrong backend")

    return start


@pytest.fixture
def starters(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    log: list[str] = []
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.setattr(conftest, "apply_migrations", lambda url: log.append(f"migrated {url}"))
    monkeypatch.setattr(local, "start_postgres_container", lambda: Started("pg-container", log))
    monkeypatch.setattr(local, "start_kafka_container", lambda: Started("kafka-container", log))
    monkeypatch.setattr(local, "start_postgres", lambda *a, **k: Started("pg-local", log))
    monkeypatch.setattr(local, "start_tansu", lambda *a, **k: Started("tansu-local", log))
    return log


def test_containers_backend_starts_containers_and_removes_them(
    starters: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(local, "start_postgres", refuse("local PostgreSQL"))
    monkeypatch.setattr(local, "start_tansu", refuse("Tansu"))
    with conftest.session_infra(tmp_path, "containers") as got:
        assert (got.database_url, got.kafka_bootstrap, got.backend) == ("pg-container", "kafka-container", "containers")
    assert starters == ["migrated pg-container", "stopped kafka-container", "stopped pg-container"]


def test_local_backend_starts_the_local_binaries(
    starters: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(local, "start_postgres_container", refuse("a PostgreSQL container"))
    monkeypatch.setattr(local, "start_kafka_container", refuse("a Kafka container"))
    with conftest.session_infra(tmp_path, "local") as got:
        assert (got.database_url, got.kafka_bootstrap, got.backend) == ("pg-local", "tansu-local", "local")
    assert starters[-2:] == ["stopped tansu-local", "stopped pg-local"]


def test_given_addresses_win_over_either_backend(
    starters: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://elsewhere/oncall")
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "elsewhere:9092")
    with conftest.session_infra(tmp_path, "containers") as got:
        assert (got.database_url, got.kafka_bootstrap) == ("postgresql://elsewhere/oncall", "elsewhere:9092")
    assert starters == ["migrated postgresql://elsewhere/oncall"]


def test_containers_use_the_images_of_docker_compose() -> None:
    import yaml

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert local.compose_image("kafka") == compose["kafka"]["image"]
    assert local.compose_image("postgres") == compose["postgres"]["image"]
    with pytest.raises(local.InfraError, match="no image for service 'zookeeper'"):
        local.compose_image("zookeeper")


# ---------------------------------------------------------------------------------------- tier markers


def test_tier_markers_follow_the_fixtures_a_test_uses() -> None:
    tests = Path("/repo/tests")
    assert conftest.tier_markers(tests / "integration/test_x.py", ["db", "infra", "run_dir"]) == ["integration"]
    assert conftest.tier_markers(tests / "e2e/test_x.py", ["stack", "infra"]) == ["integration", "e2e"]
    assert conftest.tier_markers(tests / "e2e/test_x.py", ["processes", "infra"]) == ["integration", "e2e"]
    assert conftest.tier_markers(tests / "api/test_x.py", ["infra"]) == ["integration", "api"]
    assert conftest.tier_markers(tests / "unit/test_x.py", ["tmp_path"]) == []


def run_collection(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Collect the tests under `root` with this project's conftest as a plugin, in a fresh interpreter."""
    env = {key: value for key, value in os.environ.items() if key != "TEST_INFRA"}
    argv = [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider", "--collect-only"]
    argv += ["-q", "--rootdir", str(root), "-c", str(root / "pytest.ini"), *args, str(root)]
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def write_tier(root: Path, tier: str, source: str) -> None:
    (root / "tests" / tier).mkdir(parents=True, exist_ok=True)
    (root / "tests" / tier / f"test_{tier}_sample.py").write_text(source)


INDIRECT = """
import pytest

@pytest.fixture
def pool(infra):
    return infra

def test_uses_the_database(pool):
    pass

def test_pure():
    pass
"""


def test_collection_marks_infra_users_integration_and_process_users_e2e(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    write_tier(tmp_path, "integration", INDIRECT)
    write_tier(tmp_path, "e2e", "def test_flow(processes):\n    pass\n")
    integration = run_collection(tmp_path, "-m", "integration")
    assert integration.returncode == 0, integration.stdout + integration.stderr
    assert "test_uses_the_database" in integration.stdout and "test_flow" in integration.stdout
    assert "test_pure" not in integration.stdout
    e2e = run_collection(tmp_path, "-m", "e2e")
    assert "test_flow" in e2e.stdout and "test_uses_the_database" not in e2e.stdout


def test_collection_refuses_a_unit_test_that_uses_infra(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    write_tier(tmp_path, "unit", INDIRECT)
    done = run_collection(tmp_path)
    assert done.returncode != 0
    refusal = done.stderr.partition("tests/unit is pure and fast")[2]
    assert "test_unit_sample.py::test_uses_the_database" in refusal
    assert "test_pure" not in refusal
