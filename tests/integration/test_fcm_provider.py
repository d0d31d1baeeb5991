"""FcmProvider against the local FCM fake: OAuth2 token from the fake's endpoint, sends, and every refusal."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from services.notifier.providers import Push
from services.notifier.providers.fcm import FcmProvider, fcm_message
from tools.fakes.fcm import FakeFcm


@pytest.fixture
async def fake() -> AsyncIterator[FakeFcm]:
    async with FakeFcm.running() as running:
        yield running


@pytest.fixture
async def provider(fake: FakeFcm) -> AsyncIterator[FcmProvider]:
    fcm = FcmProvider(fake.service_account_path, base_url=fake.url, timeout_s=2.0)
    yield fcm
    await fcm.close()


@pytest.fixture
async def impatient_provider(fake: FakeFcm) -> AsyncIterator[FcmProvider]:
    fcm = FcmProvider(fake.service_account_path, base_url=fake.url, timeout_s=0.3)
    yield fcm
    await fcm.close()


def push(token: str = "device-a", **overrides: object) -> Push:
    fields: dict[str, object] = {"token": token, "title": "Page", "body": "DB down", "collapse_id": "page-1"}
    return Push(**(fields | overrides))  # type: ignore[arg-type]


def test_the_generated_service_account_looks_like_google_s(fake: FakeFcm) -> None:
    info = json.loads(fake.service_account_path.read_text())

    assert info["type"] == "service_account"
    assert info["token_uri"] == f"{fake.url}/token"
    assert info["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    assert {"project_id", "private_key_id", "client_email"} <= info.keys()


async def test_a_push_is_sent_with_a_token_from_the_fake_which_is_then_reused(
    fake: FakeFcm, provider: FcmProvider
) -> None:
    first = await provider.send(push("device-a", critical=True, data={"page_id": "7"}))
    second = await provider.send(push("device-b"))

    assert first.result == "sent" and first.provider_id
    assert first.provider_id.startswith(f"projects/{fake.project_id}/messages/")
    assert second.result == "sent"
    assert fake.state.token_grants == 1
    [received] = fake.received("device-a")
    assert received["name"] == first.provider_id
    assert received["message"] == fcm_message(push("device-a", critical=True, data={"page_id": "7"}))["message"]


async def test_the_inspection_endpoint_shows_what_the_phone_received(fake: FakeFcm, provider: FcmProvider) -> None:
    await provider.send(push("device-a"))
    await provider.send(push("device-b"))

    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{fake.url}/_fake/messages", params={"token": "device-b"}) as answer,
    ):
        messages = (await answer.json())["messages"]

    assert [m["token"] for m in messages] == ["device-b"]


async def test_an_unregistered_token_is_gone(fake: FakeFcm, provider: FcmProvider) -> None:
    fake.program("device-a", "UNREGISTERED", times=None)

    outcome = await provider.send(push("device-a"))

    assert outcome.result == "gone"
    assert outcome.error and "UNREGISTERED" in outcome.error


async def test_a_malformed_token_is_gone(provider: FcmProvider) -> None:
    assert (await provider.send(push("not a token!"))).result == "gone"


async def test_quota_exceeded_is_retried_after_what_fcm_says(fake: FakeFcm, provider: FcmProvider) -> None:
    fake.program("device-a", "QUOTA_EXCEEDED", retry_after_s=30)

    throttled = await provider.send(push("device-a"))
    later = await provider.send(push("device-a"))

    assert (throttled.result, throttled.retry_after_s) == ("retry", 30.0)
    assert later.result == "sent"


@pytest.mark.parametrize("error", ["UNAVAILABLE", "INTERNAL"])
async def test_server_trouble_is_retried(fake: FakeFcm, provider: FcmProvider, error: str) -> None:
    fake.program("device-a", error)  # type: ignore[arg-type]

    assert (await provider.send(push("device-a"))).result == "retry"


async def test_a_slow_answer_is_retried(fake: FakeFcm, impatient_provider: FcmProvider) -> None:
    fake.program("device-a", None, delay_s=0.6)

    outcome = await impatient_provider.send(push("device-a"))

    assert outcome.result == "retry"
    assert outcome.error and "no answer" in outcome.error


async def test_an_expired_access_token_is_renewed_once_and_the_push_sent(fake: FakeFcm, provider: FcmProvider) -> None:
    assert (await provider.send(push("device-a"))).result == "sent"
    fake.expire_access_tokens()

    outcome = await provider.send(push("device-b"))

    assert outcome.result == "sent"
    assert fake.state.token_grants == 2
    assert [m["token"] for m in fake.messages] == ["device-a", "device-b"]


async def test_a_refused_fresh_token_fails_without_looping(
    fake: FakeFcm, provider: FcmProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every token the fake issues is forgotten at once, as if the account's access had been revoked.
    monkeypatch.setattr(fake.state, "access_tokens", RevokingTokens())

    outcome = await provider.send(push("device-a"))

    assert outcome.result == "failed"
    assert fake.state.token_grants == 2
    assert fake.messages == []


class RevokingTokens(dict[str, object]):
    def __setitem__(self, key: str, value: object) -> None:
        pass


async def test_a_payload_fcm_refuses_fails(fake: FakeFcm, provider: FcmProvider) -> None:
    outcome = await provider.send(push("device-a", ttl_s=60 * 24 * 3600))

    assert outcome.result == "failed"
    assert outcome.error and "INVALID_ARGUMENT" in outcome.error


async def test_the_fake_refuses_like_fcm(fake: FakeFcm, provider: FcmProvider) -> None:
    await provider.send(push("device-a"))
    token = next(iter(fake.state.access_tokens))
    send_url = f"{fake.url}/v1/projects/{fake.project_id}/messages:send"
    good = fcm_message(push("device-a"))
    unknown_field = {"message": good["message"] | {"android": {"priority": "high", "colour": "red"}}}
    number_in_data = {"message": good["message"] | {"data": {"count": 3}}}

    async with aiohttp.ClientSession() as session:

        async def status_of(body: object, bearer: str | None = token) -> tuple[int, dict[str, object]]:
            headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
            async with session.post(send_url, json=body, headers=headers) as answer:
                return answer.status, (await answer.json())["error"]

        assert (await status_of(good, bearer=None))[0] == 401
        assert (await status_of(good, bearer="ya29.forged"))[1]["status"] == "UNAUTHENTICATED"
        status, error = await status_of(unknown_field)
        assert (status, error["status"]) == (400, "INVALID_ARGUMENT")
        assert 'Unknown name "colour"' in str(error["message"])
        assert (await status_of(number_in_data))[0] == 400
        async with session.post(
            f"{fake.url}/token",
            data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": forged_assertion()},
        ) as answer:
            assert answer.status == 400
            assert (await answer.json())["error"] == "invalid_grant"


def forged_assertion() -> str:
    """A grant signed with a key that is not the service account's."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    claims = {
        "iss": "x@y.iam.gserviceaccount.com",
        "aud": "https://oauth2.googleapis.com/token",
        "iat": now,
        "exp": now + 3600,
        "scope": "https://www.googleapis.com/auth/firebase.messaging",
    }
    return jwt.encode(claims, key, algorithm="RS256")
