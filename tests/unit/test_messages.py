from datetime import datetime, timedelta, timezone
from uuid import uuid4

import pytest
from pydantic import TypeAdapter, ValidationError

from shared.messages import CoverageRequestAccepted, SendNotification, UserSnapshot, WithdrawNotifications
from shared.topics import ALL_TOPICS, NOTIFICATION_COMMANDS, USERS, topic_for


def a_snapshot(**overrides: object) -> UserSnapshot:
    fields: dict[str, object] = {
        "user_id": uuid4(),
        "version": 1,
        "name": "Ada",
        "email": "a@b.io",
        "time_zone": "UTC",
        "language": "en",
        "role": "admin",
        "active": True,
    }
    return UserSnapshot(**(fields | overrides))  # type: ignore[arg-type]


def test_envelope_fields_are_filled_and_in_utc() -> None:
    berlin = timezone(timedelta(hours=1))
    snap = a_snapshot(occurred_at=datetime(2026, 3, 29, 3, 0, tzinfo=berlin))
    assert snap.type == "UserSnapshot" and snap.schema_version == 1
    assert snap.occurred_at.utcoffset() == timedelta(0)
    assert snap.occurred_at.hour == 2


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValidationError):
        a_snapshot(occurred_at=datetime(2026, 1, 1, 12, 0))


def test_round_trip_through_json_is_lossless() -> None:
    snap = a_snapshot(phone="+14155550100")
    assert UserSnapshot.model_validate_json(snap.model_dump_json()) == snap


def test_messages_are_keyed_by_their_entity() -> None:
    snap = a_snapshot()
    command = SendNotification(user_id=snap.user_id, idempotency_key="k", title="t", body="b")
    assert snap.key == command.key == str(snap.user_id)
    assert topic_for(snap) is USERS and topic_for(command) is NOTIFICATION_COMMANDS


def test_a_notification_command_parses_as_the_command_its_type_names() -> None:
    """notifier's batch subscriber parses each record of its topic as one of the topic's messages, by `type`."""
    commands = TypeAdapter(NOTIFICATION_COMMANDS.schema)
    user = uuid4()
    withdraw = WithdrawNotifications(user_id=user, key_prefix="call-alert:a1:", reason="acknowledged by Bo")
    send = SendNotification(user_id=user, idempotency_key="call-alert:a1:0:0:u", title="t", body="b")
    assert commands.validate_json(withdraw.model_dump_json()) == withdraw
    assert commands.validate_json(send.model_dump_json()) == send
    assert withdraw.key == str(user) and topic_for(withdraw) is NOTIFICATION_COMMANDS
    as_sent = withdraw.model_dump(mode="json")
    for bad in (
        as_sent | {"type": "SomethingElse"},
        as_sent | {"key_prefix": ""},
        as_sent | {"key_prefix": "k" * 201},
        as_sent | {"reason": "r" * 201},
        as_sent | {"idempotency_key": "call-alert:a1:0:0:u"},  # a withdrawal's fields only
        {k: v for k, v in as_sent.items() if k != "user_id"},
    ):
        with pytest.raises(ValidationError):
            commands.validate_python(bad)


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError):
        UserSnapshot.model_validate(a_snapshot().model_dump() | {"surprise": 1})


def test_topics_are_versioned_and_have_dead_letter_topics() -> None:
    for topic in ALL_TOPICS:
        assert topic.name.endswith(".v1")
        assert topic.dlq == topic.name + ".dlq"


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("9999-12-01T00:00:00Z", "9999-12-31T00:00:00Z"),
        ("0001-01-01T00:00:00Z", "0001-01-02T00:00:00Z"),
        ("2026-01-01T00:00:00Z", "2027-06-01T00:00:00Z"),
    ],
)
def test_a_coverage_record_with_instants_past_the_platforms_range_is_poison(start: str, end: str) -> None:
    """Refused when parsed, so the guard parks it at once instead of retrying a resolution that overflows."""
    record = {
        "type": "CoverageRequestAccepted", "request_id": str(uuid4()), "requester_id": str(uuid4()),
        "covering_user_id": str(uuid4()), "shifts": [{"schedule_id": str(uuid4()), "start": start, "end": end}],
    }
    with pytest.raises(ValidationError):
        CoverageRequestAccepted.model_validate(record)
