"""DELAY_MINUTE_S: the minutes users set (escalation timeouts, notification steps) last that many real seconds,
60 unless a demo or an end-to-end test shortens them; production refuses anything else."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from pydantic import SecretStr, ValidationError

from services.callrouter.domain import Policy, Rule, escalation_step
from services.notifier.domain import Step, step_due
from shared.settings import ServiceSettings

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ALICE, BOB = UUID(int=1), UUID(int=2)
PRODUCTION_SECRET = SecretStr("x" * 40)


def test_an_escalation_timeout_lasts_its_minutes_in_the_given_minute() -> None:
    policy = Policy(UUID(int=9), "Ops", 0, (Rule(2, (ALICE,), ()), Rule(2, (BOB,), ())))
    shortened = escalation_step(policy, 0, 0, {}, NOW, timedelta(seconds=1))
    assert shortened is not None and shortened.next_at == NOW + timedelta(seconds=2)
    real = escalation_step(policy, 0, 0, {}, NOW)
    assert real is not None and real.next_at == NOW + timedelta(minutes=2)
    last = escalation_step(policy, 0, 1, {}, NOW, timedelta(seconds=1))
    assert last is not None and last.next_at is None


def test_a_notification_step_falls_due_after_its_minutes_in_the_given_minute() -> None:
    call = Step("voice", timedelta(minutes=2))
    assert step_due(NOW, call, timedelta(seconds=3)) == NOW + timedelta(seconds=6)
    assert step_due(NOW, call) == NOW + timedelta(minutes=2)
    assert step_due(NOW, Step("push", timedelta(0)), timedelta(seconds=3)) == NOW


def test_the_minute_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ServiceSettings().delay_minute_s == 60
    monkeypatch.setenv("DELAY_MINUTE_S", "3")
    assert ServiceSettings().delay_minute_s == 3
    for bad in ("0", "-1", "61"):
        monkeypatch.setenv("DELAY_MINUTE_S", bad)
        with pytest.raises(ValidationError):
            ServiceSettings()


def test_production_refuses_shortened_minutes() -> None:
    with pytest.raises(ValidationError, match="DELAY_MINUTE_S"):
        ServiceSettings(environment="production", jwt_secret=PRODUCTION_SECRET, delay_minute_s=5)
    assert ServiceSettings(environment="production", jwt_secret=PRODUCTION_SECRET).delay_minute_s == 60
    assert ServiceSettings(environment="local", delay_minute_s=5).delay_minute_s == 5
