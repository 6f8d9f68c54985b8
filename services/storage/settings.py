"""Storage settings.

Infra (`KAFKA_BOOTSTRAP_SERVERS`, `MONGODB_URI`, `S3_*`) keeps its plain names (the base class
gives those fields explicit aliases, which no prefix touches); the service's own knobs and the
per-process ones inherited from `ServiceSettings` (`STORAGE_METRICS_PORT`, `STORAGE_LOG_LEVEL`)
carry the `STORAGE_` prefix. Provider credentials (`OPENAI_API_KEY`, ...) are a nested
`ProviderSettings`, read with its own plain names when this object is built.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.providers.settings import ProviderSettings
from shared.settings import EgressSettings, ServiceSettings
from shared.topics import PROVIDERS


class StorageSettings(ServiceSettings, EgressSettings):
    model_config = SettingsConfigDict(
        env_prefix="STORAGE_", extra="ignore", frozen=True, populate_by_name=True
    )

    service_name: str = Field("storage", description="Name used in logs, metrics and events.")
    retention_days: float = Field(
        30.0, gt=0, description="Delete stored videos and thumbnails older than this."
    )
    retention_interval_s: float = Field(3600.0, gt=0, description="Pause between retention passes.")
    retention_batch: int = Field(
        500, ge=1, description="Most objects one retention pass deletes (the next one continues)."
    )
    download_timeout_s: float = Field(
        60.0, gt=0, description="Read timeout of one chunk from a provider (not of the download)."
    )
    download_total_s: float = Field(
        900.0, gt=0, description="Total time one result download may take, whatever its pace."
    )
    download_max_bytes: int = Field(
        2 << 30, gt=0, description="Largest result accepted; a larger one fails its attempt."
    )
    download_max_tries: int = Field(
        3,
        ge=1,
        description="Transient download failures of one result before its attempt fails "
        "(the dispatcher then retries, falls back or refunds).",
    )
    delete_provider_copy: bool = Field(
        True, description="Delete the provider-side result once re-hosted, where the API allows."
    )
    enabled_providers: str = Field(
        ",".join(PROVIDERS),
        description="Comma-separated providers whose results this process downloads.",
    )
    provider_settings: ProviderSettings = Field(
        default_factory=ProviderSettings, description="Provider keys and endpoints (plain names)."
    )

    def provider_names(self) -> list[str]:
        return [p.strip() for p in self.enabled_providers.split(",") if p.strip()]
