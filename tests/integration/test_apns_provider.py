"""The APNs provider against the local fake of APNs, over real TLS and HTTP/2 (no broker or database needed)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import aiohttp
import pytest

from services.notifier.providers import Push
from services.notifier.providers.apns import ApnsCredentials, ApnsProvider
from tools.fakes.apns import FakeApns, ProviderKey

TOPIC = "com.example.oncall"


@pytest.fixture(scope="module")
async def fake() -> AsyncIterator[FakeApns]:
    async with FakeApns.running(topics=frozenset({TOPIC})) as running:
        yield running


def credentials_for(key: ProviderKey) -> ApnsCredentials:
    return ApnsCredentials(key.key_id, key.team_id, key.private_key_pem, TOPIC)


@pytest.fixture
async def provider(fake: FakeApns) -> AsyncIterator[ApnsProvider]:
    apns = ApnsProvider(credentials_for(fake.credentials), base_url=fake.url, ca_path=fake.ca_path, timeout_s=2.0)
    yield apns
    await apns.close()


def a_push(**changes: object) -> Push:
    fields: dict[str, object] = {
        "token": secrets.token_hex(32),
        "title": "Payments API is down",
        "body": "Accept by 14:05",
        "collapse_id": f"req-{secrets.token_hex(4)}:step-1",
    }
    return Push(**{**fields, **changes})  # type: ignore[arg-type]


async def test_an_accepted_push_is_sent_with_its_apns_id(fake: FakeApns, provider: ApnsProvider) -> None:
    push = a_push(badge=2, data={"coverage_request_id": "r-1"})

    outcome = await provider.send(push)

    [received] = fake.pushes_to(push.token)
    assert (outcome.result, outcome.provider_id) == ("sent", received.apns_id)
    assert received.http_version == "2"
    assert received.headers["apns-topic"] == TOPIC
    assert received.headers["apns-push-type"] == "alert"
    assert received.headers["apns-priority"] == "10"
    assert received.aps["alert"] == {"title": "Payments API is down", "body": "Accept by 14:05"}
    assert received.aps["badge"] == 2
    assert received.aps["interruption-level"] == "active"
    assert received.payload["coverage_request_id"] == "r-1"


async def test_the_collapse_id_reaches_the_phone(fake: FakeApns, provider: ApnsProvider) -> None:
    push = a_push(collapse_id="req-7:step-2")

    await provider.send(push)
    await provider.send(push)

    assert [received.collapse_id for received in fake.pushes_to(push.token)] == ["req-7:step-2", "req-7:step-2"]


async def test_a_critical_push_arrives_with_the_critical_fields(fake: FakeApns, provider: ApnsProvider) -> None:
    push = a_push(critical=True)

    assert (await provider.send(push)).result == "sent"

    [received] = fake.pushes_to(push.token)
    assert received.aps["interruption-level"] == "critical"
    assert received.aps["sound"] == {"critical": 1, "name": "default", "volume": 1.0}


async def test_an_unregistered_token_is_gone(fake: FakeApns, provider: ApnsProvider) -> None:
    push = a_push()
    fake.program(push.token, gone=True)

    outcome = await provider.send(push)

    assert (outcome.result, outcome.error) == ("gone", "Unregistered")
    assert fake.pushes_to(push.token) == []


@pytest.mark.parametrize("program", [{"bad": True}, {"topic": "com.example.other"}])
async def test_a_bad_device_token_is_gone(fake: FakeApns, provider: ApnsProvider, program: dict[str, object]) -> None:
    push = a_push()
    fake.program(push.token, **program)

    outcome = await provider.send(push)

    assert outcome.result == "gone"
    assert outcome.error in {"BadDeviceToken", "DeviceTokenNotForTopic"}


async def test_throttling_is_retried_after_the_time_given(fake: FakeApns, provider: ApnsProvider) -> None:
    push = a_push()
    fake.program(push.token, throttled=1, retry_after_s=7)

    outcome = await provider.send(push)

    assert (outcome.result, outcome.error, outcome.retry_after_s) == ("retry", "TooManyRequests", 7.0)


async def test_server_errors_are_retried_until_apns_accepts(fake: FakeApns, provider: ApnsProvider) -> None:
    push = a_push()
    fake.program(push.token, failures=2, failure_status=500)

    outcomes = [await provider.send(push) for _ in range(3)]

    assert [o.result for o in outcomes] == ["retry", "retry", "sent"]
    assert outcomes[0].error == "InternalServerError"
    assert [a.status for a in fake.attempts_at(push.token)] == [500, 500, 200]
    assert len(fake.pushes_to(push.token)) == 1


async def test_a_provider_token_apns_does_not_know_fails(fake: FakeApns) -> None:
    stranger = ApnsProvider(
        credentials_for(ProviderKey.generate(key_id="OTHERKEY01")), base_url=fake.url, ca_path=fake.ca_path
    )
    try:
        outcome = await stranger.send(a_push())
    finally:
        await stranger.close()

    assert (outcome.result, outcome.error) == ("failed", "InvalidProviderToken")


async def test_a_push_to_a_topic_the_team_may_not_use_fails(fake: FakeApns) -> None:
    other_app = ApnsCredentials(fake.credentials.key_id, fake.credentials.team_id,
                                fake.credentials.private_key_pem, "com.example.elsewhere")
    provider = ApnsProvider(other_app, base_url=fake.url, ca_path=fake.ca_path)
    try:
        outcome = await provider.send(a_push())
    finally:
        await provider.close()

    assert (outcome.result, outcome.error) == ("failed", "TopicDisallowed")


async def test_a_payload_over_4096_bytes_fails(provider: ApnsProvider) -> None:
    outcome = await provider.send(a_push(body="x" * 4100))

    assert (outcome.result, outcome.error) == ("failed", "PayloadTooLarge")


async def test_an_answer_slower_than_the_timeout_is_retried(fake: FakeApns) -> None:
    impatient = ApnsProvider(credentials_for(fake.credentials), base_url=fake.url, ca_path=fake.ca_path,
                             timeout_s=0.3)
    slow, normal = a_push(), a_push()
    fake.program(slow.token, delay_s=1.0)
    try:
        timed_out = await impatient.send(slow)
        after = await impatient.send(normal)
    finally:
        await impatient.close()

    assert timed_out.result == "retry"
    assert after.result == "sent"


async def test_a_slow_stream_times_out_alone_among_busy_ones(fake: FakeApns, provider: ApnsProvider) -> None:
    slow, others = a_push(), [a_push() for _ in range(50)]
    fake.program(slow.token, delay_s=3.0)

    async def trickle(push: Push) -> str:
        await asyncio.sleep(secrets.randbelow(2000) / 1000)
        return (await provider.send(push)).result

    slow_send = asyncio.create_task(provider.send(slow))
    other_results = await asyncio.gather(*(trickle(p) for p in others))
    slow_outcome = await slow_send

    assert slow_outcome.result == "retry"
    assert set(other_results) == {"sent"}
    assert (await provider.send(a_push())).result == "sent"
    assert len({p.peer for push in others for p in fake.pushes_to(push.token)}) == 1


async def test_an_unreachable_apns_is_retried(fake: FakeApns) -> None:
    closed_port = ApnsProvider(credentials_for(fake.credentials), base_url="https://127.0.0.1:1",
                               ca_path=fake.ca_path, timeout_s=2.0)
    try:
        outcome = await closed_port.send(a_push())
    finally:
        await closed_port.close()

    assert outcome.result == "retry"
    assert outcome.error


async def test_concurrent_sends_share_one_connection(fake: FakeApns, provider: ApnsProvider) -> None:
    pushes = [a_push() for _ in range(200)]

    outcomes = await asyncio.gather(*(provider.send(push) for push in pushes))

    assert {o.result for o in outcomes} == {"sent"}
    received = [p for push in pushes for p in fake.pushes_to(push.token)]
    assert len(received) == 200
    assert len({p.peer for p in received}) == 1
    assert {p.apns_id for p in received} == {o.provider_id for o in outcomes}


async def test_the_admin_api_programs_tokens_and_shows_pushes(fake: FakeApns, provider: ApnsProvider) -> None:
    gone, delivered = a_push(), a_push(title="Shift starts")
    async with aiohttp.ClientSession(fake.admin_url) as admin:
        async with admin.post(f"/_fake/tokens/{gone.token}", json={"gone": True}) as response:
            assert response.status == 200

        assert (await provider.send(gone)).result == "gone"
        assert (await provider.send(delivered)).result == "sent"

        async with admin.get("/_fake/pushes", params={"token": delivered.token}) as response:
            [shown] = (await response.json())["pushes"]
        async with admin.get("/_fake", params={}) as response:
            info = await response.json()

    assert shown["payload"]["aps"]["alert"]["title"] == "Shift starts"
    assert "authorization" not in shown["headers"]
    assert (info["url"], info["key_id"]) == (fake.url, fake.credentials.key_id)
