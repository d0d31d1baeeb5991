"""The vendor fakes as `make up` runs them: their CLIs start, write what notifier needs, are re-attached by a
second `up` and stopped by `down`. No broker, no database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools import devstack
from tools.infra import free_port
from tools.procs import group_members, http_status


@pytest.fixture
def run_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    devstack.fakes_down(tmp_path)


def free_ports() -> dict[str, dict[str, int]]:
    apns, admin = free_port(), free_port()
    while admin == apns:
        admin = free_port()
    return {"fake-apns": {"port": apns, "admin_port": admin}, "fake-fcm": {"port": free_port()},
            "fake-twilio": {"port": free_port()}}


def test_fakes_start_describe_themselves_reattach_and_stop(run_dir: Path) -> None:
    fakes = devstack.fakes_up(run_dir, free_ports())
    assert set(fakes) == set(devstack.FAKES)

    apns = fakes["fake-apns"]
    described = json.loads((apns.state_dir / "fake-apns.json").read_text())
    assert described["url"] == apns.url and described["admin_url"] == apns.inspect_url
    assert Path(described["ca_path"]).exists() and Path(described["key_path"]).exists()
    account = json.loads((fakes["fake-fcm"].state_dir / "service-account.json").read_text())
    assert account["token_uri"] == f"{fakes['fake-fcm'].url}/token"
    for fake in fakes.values():
        assert fake.state_dir == run_dir / "fakes" / fake.name
        assert http_status(fake.inspect_url + fake.spec.inbox + "nobody") == 200
        assert fake.log_path.exists()

    env = devstack.notifier_provider_env(fakes)
    assert env["APNS_URL"] == apns.url and env["APNS_KEY_ID"] == described["key_id"]
    assert env["FCM_URL"] == fakes["fake-fcm"].url and env["TWILIO_API_URL"] == fakes["fake-twilio"].url
    assert all(env[key] for key in ("APNS_TEAM_ID", "APNS_CA_FILE", "APNS_TOPIC", "FCM_SERVICE_ACCOUNT_FILE",
                                    "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM_NUMBER"))

    again = devstack.fakes_up(run_dir)  # a second `make up` keeps what runs, on the same ports
    assert {n: (f.pid, f.ports) for n, f in again.items()} == {n: (f.pid, f.ports) for n, f in fakes.items()}

    stopped = devstack.fakes_down(run_dir)
    assert len(stopped) == len(devstack.FAKES)
    assert all(not group_members(fake.pid) for fake in fakes.values())
    assert devstack.load_fakes(run_dir) == {}


def test_a_dead_fake_is_restarted_with_its_keys(run_dir: Path) -> None:
    fakes = devstack.fakes_up(run_dir, free_ports())
    key_id = json.loads((fakes["fake-apns"].state_dir / "fake-apns.json").read_text())["key_id"]
    proc = fakes["fake-apns"].attach()
    assert proc is not None
    proc.terminate()

    again = devstack.fakes_up(run_dir)
    assert again["fake-apns"].pid != fakes["fake-apns"].pid
    assert again["fake-fcm"].pid == fakes["fake-fcm"].pid
    assert json.loads((again["fake-apns"].state_dir / "fake-apns.json").read_text())["key_id"] == key_id
