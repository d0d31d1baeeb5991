from pydantic import Field, SecretStr

from shared.services import NOTIFIER
from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    """notifier's settings. A provider whose settings are missing is not used: its pushes or calls fail as
    "no provider configured" (visible in each delivery), never silently."""

    service_name: str = NOTIFIER.name
    http_port: int = NOTIFIER.port
    # A step talks to its provider inside its timer's transaction (so a crash resends rather than loses it):
    # with real providers at 50-100 ms an answer, two runners would cap pushes near 20-40 a second.
    timer_concurrency: int = Field(default=8, ge=1)
    db_pool_max: int = 20

    # APNs (iOS): token auth with a .p8 key; APNS_URL https://api.push.apple.com (sandbox:
    # https://api.sandbox.push.apple.com) or a local fake, whose CA is then APNS_CA_FILE.
    apns_url: str | None = None
    apns_key_id: str = ""
    apns_team_id: str = ""
    apns_key_file: str | None = None
    apns_topic: str = ""
    apns_ca_file: str | None = None

    # FCM HTTP v1 (Android): a service-account JSON file; FCM_URL https://fcm.googleapis.com or a local fake.
    fcm_service_account_file: str | None = None
    fcm_url: str = "https://fcm.googleapis.com"

    # Twilio (voice messages): TWILIO_API_URL https://api.twilio.com or a local fake. Twilio posts the key
    # pressed to PUBLIC_WEBHOOK_URL + /webhooks/twilio/..., the address the gateway serves notifier's webhooks on.
    twilio_account_sid: str = ""
    twilio_auth_token: SecretStr = SecretStr("")
    twilio_from_number: str = ""
    twilio_api_url: str = "https://api.twilio.com"
    public_webhook_url: str = "http://127.0.0.1:8084"

    # Proof of delivery: a critical page whose push no phone confirmed receiving within this many seconds is
    # followed by a voice call at once.
    proof_of_delivery_s: float = Field(default=30.0, gt=0, le=3600)

    # Retries of a push or call the provider refused for now (429, 5xx, timeouts): backoff with jitter from
    # the first delay, doubling to the cap, honouring Retry-After, for at most this many attempts.
    delivery_max_attempts: int = Field(default=8, ge=1)
    delivery_first_retry_s: float = Field(default=1.0, gt=0)
    delivery_max_retry_s: float = Field(default=60.0, gt=0)
