"""The APNs request built for a push, and what APNs answers mean, against Apple's documented fields."""

from __future__ import annotations

import hashlib
import json

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from services.notifier.providers import Push
from services.notifier.providers.apns import (
    ApnsCredentials,
    ProviderToken,
    apns_headers,
    apns_payload,
    outcome_of,
    retry_after_s,
)

NOW = 1_800_000_000.0
APNS_ID = "3f1a8c52-8d1e-4a51-9e0c-0c7bd1f1b7a2"


def a_push(**changes: object) -> Push:
    fields: dict[str, object] = {
        "token": "ab" * 32,
        "title": "Payments API is down",
        "body": "Accept by 14:05",
        "collapse_id": "req-42:step-1",
    }
    return Push(**{**fields, **changes})  # type: ignore[arg-type]


def p256_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return pem.decode()


def test_a_normal_push_is_an_active_alert_with_the_default_sound() -> None:
    payload = apns_payload(a_push(badge=3, data={"coverage_request_id": "r-1"}))

    assert payload == {
        "aps": {
            "alert": {"title": "Payments API is down", "body": "Accept by 14:05"},
            "sound": "default",
            "badge": 3,
            "interruption-level": "active",
        },
        "coverage_request_id": "r-1",
    }


def test_without_a_badge_the_badge_is_left_alone() -> None:
    assert "badge" not in apns_payload(a_push())["aps"]


def test_a_time_sensitive_push_says_so() -> None:
    aps = apns_payload(a_push(time_sensitive=True))["aps"]

    assert aps["interruption-level"] == "time-sensitive"
    assert aps["sound"] == "default"


def test_a_critical_push_uses_the_critical_sound_and_interruption_level() -> None:
    aps = apns_payload(a_push(critical=True, time_sensitive=True))["aps"]

    assert aps["interruption-level"] == "critical"
    assert aps["sound"] == {"critical": 1, "name": "default", "volume": 1.0}


def test_custom_data_cannot_replace_aps() -> None:
    payload = apns_payload(a_push(data={"aps": "nope", "k": "v"}))

    assert payload["aps"]["alert"]["title"] == "Payments API is down"
    assert payload["k"] == "v"


def test_the_payload_is_json_within_apples_size_limit() -> None:
    encoded = json.dumps(apns_payload(a_push(critical=True, badge=1, data={"a": "b"}))).encode()
    assert len(encoded) <= 4096


def test_headers_carry_topic_type_priority_expiration_and_collapse_id() -> None:
    headers = apns_headers(a_push(ttl_s=600), topic="com.example.oncall", apns_id=APNS_ID, now=NOW)

    assert headers == {
        "apns-id": APNS_ID,
        "apns-topic": "com.example.oncall",
        "apns-push-type": "alert",
        "apns-priority": "10",
        "apns-expiration": str(int(NOW) + 600),
        "apns-collapse-id": "req-42:step-1",
    }


@pytest.mark.parametrize("push", [a_push(critical=True), a_push(time_sensitive=True)])
def test_urgent_pushes_are_sent_at_priority_10(push: Push) -> None:
    assert apns_headers(push, topic="t", apns_id=APNS_ID, now=NOW)["apns-priority"] == "10"


def test_a_zero_ttl_means_deliver_now_or_never() -> None:
    assert apns_headers(a_push(ttl_s=0), topic="t", apns_id=APNS_ID, now=NOW)["apns-expiration"] == "0"


def test_a_collapse_id_over_64_bytes_becomes_a_stable_digest() -> None:
    long_id = "r" * 65
    first = apns_headers(a_push(collapse_id=long_id), topic="t", apns_id=APNS_ID, now=NOW)
    again = apns_headers(a_push(collapse_id=long_id), topic="t", apns_id=APNS_ID, now=NOW + 60)

    assert first["apns-collapse-id"] == again["apns-collapse-id"] == hashlib.sha256(long_id.encode()).hexdigest()
    assert len(first["apns-collapse-id"].encode()) == 64


def test_the_provider_token_is_an_es256_jwt_with_key_id_and_team_reused_for_a_while() -> None:
    pem = p256_pem()
    clock = [NOW]
    token = ProviderToken(ApnsCredentials("KEY1234567", "TEAM123456", pem, "com.example.oncall"), lambda: clock[0])

    header = token.header()
    scheme, _, jwt_text = header.partition(" ")
    public = serialization.load_pem_private_key(pem.encode(), None).public_key()
    claims = jwt.decode(jwt_text, public, algorithms=["ES256"], options={"verify_iat": False})  # type: ignore[arg-type]

    assert scheme == "bearer"
    assert jwt.get_unverified_header(jwt_text) == {"alg": "ES256", "kid": "KEY1234567", "typ": "JWT"}
    assert claims == {"iss": "TEAM123456", "iat": int(NOW)}
    clock[0] += 20 * 60
    assert token.header() == header
    clock[0] += 40 * 60
    assert token.header() != header


def test_a_key_that_is_not_p256_is_refused() -> None:
    other = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ValueError, match="P-256"):
        ProviderToken(ApnsCredentials("K", "T", other.decode(), "t"))


@pytest.mark.parametrize(
    ("status", "reason", "result"),
    [
        (410, "Unregistered", "gone"),
        (410, "ExpiredToken", "gone"),
        (400, "BadDeviceToken", "gone"),
        (400, "DeviceTokenNotForTopic", "gone"),
        (400, "BadCollapseId", "failed"),
        (403, "InvalidProviderToken", "failed"),
        (413, "PayloadTooLarge", "failed"),
        (429, "TooManyRequests", "retry"),
        (500, "InternalServerError", "retry"),
        (503, "ServiceUnavailable", "retry"),
    ],
)
def test_apns_errors_map_to_outcomes(status: int, reason: str, result: str) -> None:
    outcome = outcome_of(status, {"apns-id": APNS_ID}, json.dumps({"reason": reason}).encode(), NOW)

    assert (outcome.result, outcome.error) == (result, reason)


def test_200_is_sent_with_the_apns_id() -> None:
    assert outcome_of(200, {"apns-id": APNS_ID}, b"", NOW).provider_id == APNS_ID


def test_retry_after_is_read_as_seconds_or_an_http_date() -> None:
    assert retry_after_s("30", NOW) == 30.0
    assert retry_after_s("Fri, 15 Jan 2027 08:00:30 GMT", 1_800_000_000.0) == pytest.approx(30.0)
    assert retry_after_s(None, NOW) is None
    assert retry_after_s("soon", NOW) is None
    assert outcome_of(429, {"retry-after": "5"}, b'{"reason":"TooManyRequests"}', NOW).retry_after_s == 5.0
