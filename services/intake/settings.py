from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import SettingsConfigDict

from shared.limits import MAX_WEBHOOK_BODY_BYTES
from shared.settings import CallbackSettings, EgressSettings, ServiceSettings, TenantSettings
from shared.topics import PROVIDERS


class TenantLimits(BaseModel):
    """One tenant's limits; 0 means unlimited."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    requests_per_minute: int = Field(ge=0)
    max_active_jobs: int = Field(ge=0)


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
    max_webhook_body_bytes: int = Field(
        MAX_WEBHOOK_BODY_BYTES, ge=1024, description="Provider webhooks over this get 413."
    )
    hint_coalesce_s: float = Field(
        3.0, ge=0, description="At most one webhook hint per task is forwarded in this window."
    )
    webhook_tolerance_s: int = Field(
        300, ge=1, description="Standard Webhooks timestamp tolerance; ids are kept twice this."
    )
    default_requests_per_minute: int = Field(
        600, ge=0, description="Job requests (POST /v1/jobs) per tenant per minute; 0: no limit."
    )
    default_max_active_jobs: int = Field(
        200, ge=0, description="Jobs of one tenant not yet ended; 0: no limit."
    )
    tenant_limits: dict[str, TenantLimits] = Field(
        default_factory=dict,
        description='Per tenant, JSON: {"acme": {"requests_per_minute": 60, '
        '"max_active_jobs": 10}}; other tenants get the defaults.',
    )

    def providers(self) -> tuple[str, ...]:
        return tuple(p.strip() for p in self.enabled_providers.split(",") if p.strip())

    def limits_for(self, tenant_id: str) -> TenantLimits:
        return self.tenant_limits.get(tenant_id) or TenantLimits(
            requests_per_minute=self.default_requests_per_minute,
            max_active_jobs=self.default_max_active_jobs,
        )
