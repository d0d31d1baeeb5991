"""Settings read from the environment: the only place a service reads it."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEV_JWT_SECRET = "dev-only-secret-change-me-in-production"


def _networks(value: Any) -> Any:
    """`TRUSTED_PROXIES=10.0.0.0/8,127.0.0.1`: comma-separated IPs or CIDRs, each checked."""
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        return value
    return tuple(str(ipaddress.ip_network(v, strict=False)) for v in items if v)


TrustedProxies = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_networks)]


class ServiceSettings(BaseSettings):
    """What every service needs; each service subclasses it with its own name and port."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    environment: Literal["local", "production"] = "local"
    service_name: str = "service"
    database_url: str = "postgresql://oncall@127.0.0.1:15432/oncall"
    db_pool_min: int = 1
    db_pool_max: int = 10
    kafka_bootstrap: str = "127.0.0.1:19092"
    kafka_session_timeout_ms: int = Field(default=10_000, ge=1_000)
    kafka_heartbeat_interval_ms: int = Field(default=1_000, ge=100)
    kafka_fetch_max_wait_ms: int = Field(default=50, ge=0)
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    # Peers (IPs or CIDRs) whose X-Forwarded-Proto/-Host/-Prefix a service believes: the gateway's. Empty: the
    # forwarded headers are ignored and webhook signatures are checked against the configured public URL.
    trusted_proxies: TrustedProxies = ()
    jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)
    jwt_algorithm: Literal["HS256", "RS256"] = "HS256"
    jwt_jwks_url: str | None = None
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"
    outbox_batch_size: int = Field(default=500, ge=1)
    outbox_poll_interval_s: float = Field(default=1.0, gt=0)
    timer_poll_interval_s: float = Field(default=1.0, gt=0)
    timer_max_attempts: int = Field(default=5, ge=1)
    timer_concurrency: int = Field(default=2, ge=1)
    # most due timers of one kind a batch handler (Service.timer(kind, batch=True)) fires in one transaction
    timer_batch_size: int = Field(default=100, ge=1)
    consumer_max_attempts: int = Field(default=5, ge=1)
    # batch subscribers (shared.kafka.batch_subscriber): at most this many records per batch, and how long an
    # idle consumer waits for records before it looks again
    consumer_batch_max_records: int = Field(default=500, ge=1)
    consumer_batch_timeout_ms: int = Field(default=50, ge=1)
    shutdown_grace_s: float = Field(default=20.0, gt=0)
    inbox_retention_days: int = Field(default=14, ge=1)
    # worker processes for CPU-heavy work such as resolving long schedule windows (shared.cpu); 0 runs it on
    # the event loop, which only the benchmark's peer should do
    cpu_workers: int = Field(default=2, ge=0, le=32)
    # How many real seconds one minute of a user-set delay lasts (escalation timeouts, notification steps): 60 in
    # production, shortened by the demo and the end-to-end tests.
    delay_minute_s: float = Field(default=60.0, gt=0, le=60)

    @model_validator(mode="after")
    def _no_dev_secret_in_production(self) -> ServiceSettings:
        if self.environment == "production" and self.jwt_algorithm == "HS256":
            if self.jwt_secret.get_secret_value() == DEV_JWT_SECRET or len(self.jwt_secret.get_secret_value()) < 32:
                raise ValueError("production needs JWT_SECRET (32+ bytes) or JWT_ALGORITHM=RS256 with JWT_JWKS_URL")
        return self

    @model_validator(mode="after")
    def _real_minutes_in_production(self) -> ServiceSettings:
        if self.environment == "production" and self.delay_minute_s != 60:
            raise ValueError("production runs user-set delays in real minutes: DELAY_MINUTE_S must be 60")
        return self
