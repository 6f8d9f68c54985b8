from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import CallbackSettings, EgressSettings, ServiceSettings, TenantSettings
from shared.topics import PROVIDERS


class IntakeSettings(ServiceSettings, TenantSettings, CallbackSettings, EgressSettings):
    model_config = SettingsConfigDict(
        env_prefix="INTAKE_", extra="ignore", frozen=True, populate_by_name=True
    )

    service_name: str = "intake"
    metrics_port: int = 8080
    enabled_providers: str = Field(
        ",".join(PROVIDERS), description="Comma-separated providers the router may use."
    )
    sse_max_seconds: int = Field(3600, description="A live stream ends after this; reconnect.")
    sse_refresh_seconds: float = Field(2.0, description="Re-read the job record this often.")
    presign_seconds: int = Field(3600, description="Lifetime of video download URLs.")

    def providers(self) -> tuple[str, ...]:
        return tuple(p.strip() for p in self.enabled_providers.split(",") if p.strip())
