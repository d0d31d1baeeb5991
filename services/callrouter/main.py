"""Process entry point: `python -m services.callrouter.main`."""

import dataclasses
from datetime import timedelta

from services.callrouter import consumers
from services.callrouter.api import api
from services.callrouter.api.webhooks import DESK
from services.callrouter.providers.twilio_calls import TwilioCalls
from services.callrouter.service.calls import Desk, Urls
from services.callrouter.settings import Settings
from shared.logs import get_logger
from shared.runtime import Service
from shared.topics import CALL_ALERTS, DELIVERIES, NOTIFICATION_COMMANDS, POLICIES, SUPPORT_HOURS, TIMELINES, USERS
from shared.webhooks import TWILIO_WEBHOOK, TwilioWebhook

log = get_logger(__name__)


def desk(s: Settings) -> Desk:
    token = s.twilio_auth_token.get_secret_value()
    telephony = TwilioCalls(s.twilio_account_sid, token, base_url=s.twilio_api_url) if s.twilio_account_sid else None
    if telephony is None:
        log.warning("no telephony provider configured (TWILIO_ACCOUNT_SID): responders cannot be dialed")
    return Desk(
        Urls(s.public_webhook_url),
        telephony,
        ring_timeout_s=s.ring_timeout_s,
        hold_music_url=s.hold_music_url or None,
        voicemail_max_s=s.voicemail_max_s,
        voicemail_deadline=timedelta(seconds=s.voicemail_deadline_s),
        leg_deadline=timedelta(seconds=s.leg_deadline_s),
    )


def build(settings: Settings | None = None) -> Service:
    settings = settings or Settings()
    svc = Service(
        settings,
        api,
        publishes=[NOTIFICATION_COMMANDS, CALL_ALERTS],
        consumes=[USERS, POLICIES, SUPPORT_HOURS, TIMELINES, DELIVERIES],
    )
    calls_desk = dataclasses.replace(desk(settings), caught_up=svc.projections_caught_up)
    consumers.register(svc, calls_desk, timedelta(seconds=settings.delay_minute_s))
    svc.provide(DESK, calls_desk)
    svc.provide(
        TWILIO_WEBHOOK,
        TwilioWebhook.behind(
            settings.twilio_auth_token.get_secret_value(), settings.public_webhook_url, settings.trusted_proxies
        ),
    )
    if calls_desk.telephony is not None:
        svc.on_stop(calls_desk.telephony.close)
    return svc


if __name__ == "__main__":
    build().run()
