from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class ReconcilerSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="RECONCILER_", extra="ignore", frozen=True, populate_by_name=True
    )

    service_name: str = "reconciler"
    metrics_port: int = 8086
    interval_s: float = Field(5.0, description="Time between sweeps.")
    accepted_grace_s: float = Field(30.0, description="Re-announce jobs accepted this long ago.")
    submitting_grace_s: float = Field(120.0, description="Re-drive jobs stuck submitting.")
    tracking_grace_s: float = Field(60.0, description="Re-announce tasks not updated this long.")
    storing_grace_s: float = Field(300.0, description="Re-send results stuck before storage.")
    batch: int = Field(200, description="Jobs examined per state per sweep.")
