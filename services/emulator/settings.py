"""Emulator settings (env prefix `EMULATOR_`), read once in `__main__` and passed down.

The tunables in `Tunables` (render time, fault rates, ...) start from these settings and can be
changed at run time through `POST /_emulator/config`; everything else is fixed per process.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

Rate = float


class Tunables(BaseModel):
    """Values tests may change at run time. Rates are probabilities in [0, 1]."""

    render_seconds: float = Field(4.0, ge=0)
    queue_seconds: float = Field(0.5, ge=0)
    rate_429: Rate = Field(0.0, ge=0, le=1)
    rate_5xx: Rate = Field(0.0, ge=0, le=1)
    rate_moderation_input: Rate = Field(0.0, ge=0, le=1)
    rate_moderation_output: Rate = Field(0.0, ge=0, le=1)
    rate_slow: Rate = Field(0.0, ge=0, le=1)
    slow_seconds: float = Field(2.0, ge=0)
    rate_malformed: Rate = Field(0.0, ge=0, le=1)
    rate_truncated_download: Rate = Field(0.0, ge=0, le=1)
    rate_expired: Rate = Field(0.0, ge=0, le=1)
    rate_answer_lost: Rate = Field(0.0, ge=0, le=1)
    answer_lost_seconds: float = Field(0.0, ge=0)
    retry_after_seconds: int = Field(1, ge=1)
    create_rpm: int = Field(0, ge=0, description="creates per minute per provider and key; 0 = off")
    openai_poll_after_ms: int = Field(1000, ge=0)


class EmulatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EMULATOR_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = 8090
    data_dir: Path | None = None  # None: a fresh temp dir per process
    public_base_url: str | None = None  # None: taken from each request's base URL
    seed: int = 0
    fps: int = 24
    render_scale: float = Field(1.0, gt=0, le=1)
    render_workers: int = Field(1, ge=1, le=4)
    result_ttl_seconds: float = 3600.0

    render_seconds: float = Field(4.0, ge=0)
    queue_seconds: float = Field(0.5, ge=0)
    rate_429: Rate = 0.0
    rate_5xx: Rate = 0.0
    rate_moderation_input: Rate = 0.0
    rate_moderation_output: Rate = 0.0
    rate_slow: Rate = 0.0
    slow_seconds: float = 2.0
    rate_malformed: Rate = 0.0
    rate_truncated_download: Rate = 0.0
    rate_expired: Rate = 0.0
    rate_answer_lost: Rate = 0.0
    answer_lost_seconds: float = 0.0
    retry_after_seconds: int = 1
    create_rpm: int = 0
    openai_poll_after_ms: int = 1000

    invalid_api_key: str = "invalid"  # this exact key is rejected as invalid by every provider
    runway_concurrency: int = Field(2, ge=1)
    kling_access_key: str = "emulator-ak"
    kling_secret_key: str = "emulator-sk-reelforge-local-hs256-key"  # >= 32 bytes
    openai_webhook_url: str | None = None
    openai_webhook_secret: str = "whsec_ZW11bGF0b3Itb3BlbmFpLXdlYmhvb2stc2VjcmV0"
    gemini_webhook_url: str | None = None
    gemini_webhook_secret: str = "whsec_ZW11bGF0b3ItZ2VtaW5pLXdlYmhvb2stc2VjcmV0"
    webhook_max_attempts: int = Field(3, ge=1)
    webhook_retry_seconds: float = 0.5
    webhook_timeout_seconds: float = 5.0
    lifecycle_tick_seconds: float = 0.2

    def tunables(self) -> Tunables:
        return Tunables.model_validate(self.model_dump(include=set(Tunables.model_fields)))
