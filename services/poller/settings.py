from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class PollerSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="POLLER_", extra="ignore", frozen=True, populate_by_name=True
    )

    service_name: str = "poller"
    provider: str = Field("runway", description="The one provider this process polls.")
    metrics_port: int = 8082
    max_concurrent_polls: int = Field(32, description="Status calls in flight at once.")
    min_interval_s: float = Field(1.0, description="Never poll one task more often than this.")
    max_interval_s: float = Field(60.0, description="Never leave a task unpolled longer.")
    expected_render_s: float | None = Field(
        None, description="Override the catalog's expected render time (e.g. for the emulator)."
    )
    progress_step: float = Field(0.05, description="Publish progress when it moved this much.")
