from pydantic import Field, SecretStr

from shared.services import CALLROUTER
from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = CALLROUTER.name
    http_port: int = CALLROUTER.port
    # Dials, redirects and hang-ups are timers that wait on the provider's REST API (a dial also commits its
    # intent on a second connection): a burst of calls wants several at once, not the default two.
    timer_concurrency: int = Field(default=8, ge=1)
    db_pool_max: int = 20

    # Twilio: TWILIO_API_URL https://api.twilio.com or the local telephony simulator. The routing numbers'
    # voice URL is PUBLIC_WEBHOOK_URL + /webhooks/twilio/calls/incoming and their status callback
    # .../calls/status: the address the gateway serves callrouter's webhooks on, which Twilio signs.
    twilio_account_sid: str = ""
    twilio_auth_token: SecretStr = SecretStr("")
    twilio_api_url: str = "https://api.twilio.com"
    public_webhook_url: str = f"http://127.0.0.1:{CALLROUTER.port}"

    # How long a responder's phone rings before the next one is dialed.
    ring_timeout_s: int = Field(default=20, ge=5, le=120)
    # Played to a waiting caller when a routing number has no hold music of its own; empty: a spoken message.
    hold_music_url: str = ""
    # A responder's leg whose end never arrived (a lost status callback) counts as unanswered this long after its
    # ring timeout or its prompt.
    leg_deadline_s: float = Field(default=60.0, gt=0, le=600)
    voicemail_max_s: int = Field(default=120, ge=10, le=600)
    # A voicemail call's alert escalates at the latest this long after the caller was sent to voicemail.
    voicemail_deadline_s: float = Field(default=240.0, gt=0, le=3600)
