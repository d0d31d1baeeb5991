"""The URL a Twilio signature is checked against: forwarded scheme/host/prefix only from trusted proxies."""

from __future__ import annotations

from unittest import mock

import pytest
from aiohttp.test_utils import make_mocked_request

from shared.settings import ServiceSettings
from shared.webhooks import TwilioWebhook

PUBLIC = "https://hooks.oncall.example.com"
PATH = "/webhooks/twilio/voice/7f6d?attempt=2"
FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "voice.example.org", "X-Forwarded-Prefix": "/edge"}


def _request(peer: str, headers: dict[str, str]) -> object:
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (peer, 40000) if name == "peername" else default
    return make_mocked_request("POST", PATH, headers=headers, transport=transport)


def test_without_trusted_proxies_forwarded_headers_are_ignored() -> None:
    webhook = TwilioWebhook("token", PUBLIC)
    assert webhook.signed_url(_request("10.1.2.3", FORWARDED)) == PUBLIC + PATH  # type: ignore[arg-type]


def test_an_untrusted_peer_cannot_choose_the_signed_url() -> None:
    webhook = TwilioWebhook.behind("token", PUBLIC, ["10.0.0.0/8"])
    assert webhook.signed_url(_request("192.0.2.7", FORWARDED)) == PUBLIC + PATH  # type: ignore[arg-type]


def test_a_trusted_proxy_forwards_scheme_host_and_prefix() -> None:
    webhook = TwilioWebhook.behind("token", PUBLIC, ["10.0.0.0/8", "::1"])
    url = webhook.signed_url(_request("10.1.2.3", FORWARDED))  # type: ignore[arg-type]
    assert url == "https://voice.example.org/edge" + PATH
    assert webhook.signed_url(_request("::1", FORWARDED)) == url  # type: ignore[arg-type]


def test_a_proxy_chain_is_read_from_its_client_side_value() -> None:
    webhook = TwilioWebhook.behind("token", PUBLIC, ["127.0.0.1"])
    headers = {"X-Forwarded-Proto": "http, https", "X-Forwarded-Host": "127.0.0.1:8090, internal:80"}
    assert webhook.signed_url(_request("127.0.0.1", headers)) == "http://127.0.0.1:8090" + PATH  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-Host": "evil.example/path"},
        {"X-Forwarded-Host": "a b"},
        {"X-Forwarded-Proto": "javascript"},
        {"X-Forwarded-Prefix": "no-slash"},
        {},
    ],
)
def test_malformed_or_missing_forwarded_values_fall_back_to_the_public_url(headers: dict[str, str]) -> None:
    webhook = TwilioWebhook.behind("token", PUBLIC, ["127.0.0.1"])
    assert webhook.signed_url(_request("127.0.0.1", headers)) == PUBLIC + PATH  # type: ignore[arg-type]


def test_trusted_proxies_setting_reads_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1 ,fd00::/8")
    assert ServiceSettings().trusted_proxies == ("10.0.0.0/8", "127.0.0.1/32", "fd00::/8")
    monkeypatch.setenv("TRUSTED_PROXIES", "")
    assert ServiceSettings().trusted_proxies == ()
    monkeypatch.setenv("TRUSTED_PROXIES", "not-an-ip")
    with pytest.raises(ValueError, match="not-an-ip"):
        ServiceSettings()
