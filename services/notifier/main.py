"""Process entry point: `python -m services.notifier.main`."""

import dataclasses
from datetime import timedelta
from pathlib import Path

import asyncpg

from services.notifier import consumers
from services.notifier.api import api
from services.notifier.providers import PushProvider
from services.notifier.providers.apns import ApnsCredentials, ApnsProvider
from services.notifier.providers.fcm import FcmProvider
from services.notifier.providers.twilio_voice import TwilioVoice
from services.notifier.service import deliveries
from services.notifier.settings import Settings
from shared.logs import get_logger
from shared.messages import utcnow
from shared.runtime import Service
from shared.timers import Timer
from shared.topics import DELIVERIES, NOTIFICATION_COMMANDS, USERS
from shared.webhooks import TWILIO_WEBHOOK, TwilioWebhook

log = get_logger(__name__)


def channels(s: Settings) -> deliveries.Channels:
    """The providers the settings configure; each one missing is logged, and its deliveries fail visibly."""
    push: dict[str, PushProvider] = {}
    if s.apns_url and s.apns_key_file:
        key = Path(s.apns_key_file).read_text(encoding="utf-8")
        push["ios"] = ApnsProvider(
            ApnsCredentials(s.apns_key_id, s.apns_team_id, key, s.apns_topic),
            base_url=s.apns_url,
            ca_path=s.apns_ca_file,
        )
    if s.fcm_service_account_file:
        push["android"] = FcmProvider(s.fcm_service_account_file, base_url=s.fcm_url)
    token = s.twilio_auth_token.get_secret_value()
    voice = TwilioVoice(s.twilio_account_sid, token, base_url=s.twilio_api_url) if s.twilio_account_sid else None
    missing = [
        name for name, there in (("ios", "ios" in push), ("android", "android" in push), ("voice", voice)) if not there
    ]
    if missing:
        log.warning("providers not configured; their deliveries will fail", missing=missing)
    return deliveries.Channels(
        push=push,
        voice=voice,
        from_number=s.twilio_from_number,
        webhook_url=s.public_webhook_url,
        max_attempts=s.delivery_max_attempts,
        first_retry_s=s.delivery_first_retry_s,
        max_retry_s=s.delivery_max_retry_s,
    )


def build(settings: Settings | None = None) -> Service:
    settings = settings or Settings()
    svc = Service(settings, api, publishes=[DELIVERIES], consumes=[USERS, NOTIFICATION_COMMANDS])
    consumers.register(
        svc, timedelta(seconds=settings.proof_of_delivery_s), timedelta(seconds=settings.delay_minute_s)
    )
    senders = dataclasses.replace(channels(settings), pool=lambda: svc.pool)
    svc.provide(
        TWILIO_WEBHOOK,
        TwilioWebhook.behind(
            settings.twilio_auth_token.get_secret_value(), settings.public_webhook_url, settings.trusted_proxies
        ),
    )

    @svc.timer(deliveries.STEP, batch=True)
    async def step(conn: asyncpg.Connection, due: list[Timer]) -> None:
        await deliveries.fire_steps(conn, due, senders, utcnow())

    @svc.timer(deliveries.PROOF)
    async def proof(conn: asyncpg.Connection, timer: Timer) -> None:
        await deliveries.check_proof(conn, timer, utcnow())

    async def close() -> None:
        for provider in senders.push.values():
            await provider.close()
        if senders.voice is not None:
            await senders.voice.close()

    svc.on_stop(close)
    return svc


if __name__ == "__main__":
    build().run()
