from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import CallbackSettings, ServiceSettings
from shared.topics import PROVIDERS


class DispatcherSettings(ServiceSettings, CallbackSettings):
    model_config = SettingsConfigDict(
        env_prefix="DISPATCHER_", extra="ignore", frozen=True, populate_by_name=True
    )

    service_name: str = "dispatcher"
    metrics_port: int = 8081
    enabled_providers: str = Field(",".join(PROVIDERS), description="Providers to admit jobs to.")
    concurrency: str = Field(
        "", description="Per-provider in-flight limits, e.g. 'runway:2,kling:5' (default: catalog)."
    )
    expected_render_s: float | None = Field(
        None, description="Override the catalog's expected render time (e.g. for the emulator)."
    )
    admission_interval_s: float = Field(
        2.0,
        description="Admission also runs this often (it runs at once when a job is queued or "
        "a task ends).",
    )
    admission_batch: int = Field(500, description="Queued jobs read per admission round.")
    submit_concurrency: int = Field(
        16, ge=1, description="Provider submit calls this replica makes at once."
    )
    submit_retries: int = Field(2, description="In-place retries of a transient submit error.")
    max_requeues: int = Field(3, description="Requeues on one provider before falling back.")
    same_provider_retries: int = Field(
        1,
        description="Re-renders on the same model after a "
        "retryable async failure, before falling back.",
    )

    def providers(self) -> tuple[str, ...]:
        return tuple(p.strip() for p in self.enabled_providers.split(",") if p.strip())
