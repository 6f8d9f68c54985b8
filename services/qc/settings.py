"""QC service settings (env prefix `QC_`), read once in `__main__` and passed down.

Thresholds and the pick rule are `QcRules` (see the README); override one with e.g.
`QC_RULES__BLACK_MAX_SHARE=0.2` or all at once with `QC_RULES='{"review_below": 0.8}'`.
API keys are the project's `API_KEYS` ("key:tenant,..."), read by the same tenant directory
as intake's (`shared.tenants.TenantDirectory`: keys kept hashed, compared in constant time).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from services.qc.model import QcRules
from shared.settings import ServiceSettings, TenantSettings


class QcSettings(ServiceSettings, TenantSettings):
    model_config = SettingsConfigDict(
        env_prefix="QC_",
        env_nested_delimiter="__",
        extra="ignore",
        frozen=True,
        populate_by_name=True,
    )

    service_name: str = Field(
        validation_alias=AliasChoices("QC_SERVICE_NAME", "service_name"),
        default="qc",
        description="Name used in logs, metrics and events.",
    )
    metrics_port: int = Field(
        validation_alias=AliasChoices("QC_METRICS_PORT", "QC_HTTP_PORT", "metrics_port"),
        default=8087,
        description="Port of /metrics, /health, the review API and page (0 = none).",
    )
    clip_model_dir: Path | None = Field(
        None, description="Local CLIP ONNX export (see similarity.py); empty: the check is skipped."
    )
    clip_threads: int = Field(1, ge=1, le=8, description="ONNX Runtime threads for CLIP.")
    rules: QcRules = Field(default_factory=QcRules, description="Thresholds and the pick rule.")
    sweep_interval_s: float = Field(15.0, gt=0, description="Pause between two sweeps.")
    sweep_stale_s: float = Field(
        60.0, gt=0, description="A job untouched this long is finished by the sweep if it can be."
    )
    sweep_batch: int = Field(100, ge=1, description="Jobs looked at per sweep (bounded).")
    presign_expiry_s: int = Field(3600, ge=60, description="Lifetime of video links on the page.")
    work_dir: Path | None = Field(None, description="Where candidates are downloaded (temp dir).")
    reviews_collection: str = Field("reviews", description="MongoDB collection of the queue.")
