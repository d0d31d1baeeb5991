"""The FCM HTTP v1 body a push becomes, and what FCM's answers mean."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from services.notifier.providers import Push
from services.notifier.providers.fcm import CRITICAL_CHANNEL_ID, fcm_message, outcome_of_answer, retry_after_seconds

PUSH = Push(
    token="dev-token-1",
    title="Coverage request",
    body="Ana asks you to cover Saturday",
    collapse_id="coverage-42",
    data={"kind": "coverage_request", "request_id": "42"},
    ttl_s=900,
)


def test_a_normal_push_carries_the_documented_fields() -> None:
    message = fcm_message(PUSH)["message"]

    assert message["token"] == "dev-token-1"
    assert message["notification"] == {"title": "Coverage request", "body": "Ana asks you to cover Saturday"}
    assert message["data"] == {"kind": "coverage_request", "request_id": "42"}
    android = message["android"]
    assert android["priority"] == "high"
    assert android["collapse_key"] == "coverage-42"
    assert android["ttl"] == "900s"
    assert android["notification"] == {"tag": "coverage-42"}


def test_a_critical_push_uses_the_dnd_bypassing_channel_at_maximum_priority() -> None:
    push = Push(token="t", title="Page", body="DB down", collapse_id="page-7", critical=True, badge=3)

    notification = fcm_message(push)["message"]["android"]["notification"]

    assert notification == {
        "tag": "page-7",
        "channel_id": CRITICAL_CHANNEL_ID,
        "notification_priority": "PRIORITY_MAX",
        "visibility": "PUBLIC",
        "default_sound": True,
        "notification_count": 3,
    }


def test_a_time_sensitive_push_is_high_priority_on_the_default_channel() -> None:
    push = Push(token="t", title="t", body="b", collapse_id="c", time_sensitive=True)

    notification = fcm_message(push)["message"]["android"]["notification"]

    assert notification["notification_priority"] == "PRIORITY_HIGH"
    assert "channel_id" not in notification


def test_data_values_stay_strings_and_the_body_is_json() -> None:
    body = json.loads(json.dumps(fcm_message(PUSH)))

    assert all(isinstance(value, str) for value in body["message"]["data"].values())


def error(code: int, status: str, fcm_code: str | None, message: str = "m", field: str | None = None) -> str:
    details: list[dict[str, object]] = []
    if fcm_code:
        details.append({"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": fcm_code})
    if field:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": field, "description": message}],
            }
        )
    return json.dumps({"error": {"code": code, "message": message, "status": status, "details": details}})


def test_answers_map_to_outcomes() -> None:
    assert outcome_of_answer(200, '{"name": "projects/p/messages/1"}').provider_id == "projects/p/messages/1"
    assert outcome_of_answer(404, error(404, "NOT_FOUND", "UNREGISTERED")).result == "gone"
    assert (
        outcome_of_answer(400, error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", field="message.token")).result
        == "gone"
    )
    assert (
        outcome_of_answer(400, error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", field="message.android.ttl")).result
        == "failed"
    )
    throttled = outcome_of_answer(429, error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED"), "12")
    assert (throttled.result, throttled.retry_after_s) == ("retry", 12.0)
    assert outcome_of_answer(503, error(503, "UNAVAILABLE", "UNAVAILABLE")).result == "retry"
    assert outcome_of_answer(502, "<html>bad gateway</html>").result == "retry"
    assert outcome_of_answer(403, error(403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH")).result == "failed"


def test_retry_after_takes_seconds_or_an_http_date() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("30", now) == 30.0
    assert retry_after_seconds("Wed, 01 Jan 2025 12:01:00 GMT", now) == 60.0
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None
