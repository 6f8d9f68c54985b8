"""Notifier settings: infra and `WEBHOOK_MASTER_SECRET` under their plain names (explicit
aliases in the base classes), the notifier's own knobs under `NOTIFIER_`."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import EgressSettings, ServiceSettings, TenantSettings

# 55.7 h (~2.3 days) in total: long enough to ride out a receiver's weekend outage.
DEFAULT_SCHEDULE_S = (5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800, 57600, 86400)


class NotifierSettings(ServiceSettings, TenantSettings, EgressSettings):
    model_config = SettingsConfigDict(
        env_prefix="NOTIFIER_", extra="ignore", frozen=True, populate_by_name=True
    )

    service_name: str = Field("notifier", description="Name used in logs, metrics and events.")
    admin_token: SecretStr = Field(
        SecretStr(""), description="Bearer token of the delivery log/replay API; empty = disabled."
    )
    retry_schedule_s: tuple[float, ...] = Field(
        DEFAULT_SCHEDULE_S, description="Waits between webhook attempts (JSON list); then dead."
    )
    retry_jitter: float = Field(0.2, ge=0, le=1, description="+/- fraction applied to each wait.")
    delivery_timeout_s: float = Field(
        10.0, gt=0, description="Connect/read/write timeout of one webhook POST (per operation)."
    )
    delivery_deadline_s: float = Field(
        30.0,
        gt=0,
        description="Total time one webhook attempt may take, whole response included "
        "(a receiver trickling bytes is cut off here); below the lease.",
    )
    delivery_batch: int = Field(20, ge=1, description="Deliveries claimed (and sent) per pass.")
    delivery_poll_s: float = Field(0.5, gt=0, description="Sleep when nothing is due.")
    delivery_lease_s: float = Field(
        60.0,
        gt=0,
        description="How long a claimed delivery is ours before another replica may retry it.",
    )

    @model_validator(mode="after")
    def _deadline_within_lease(self) -> NotifierSettings:
        if self.delivery_deadline_s >= self.delivery_lease_s:
            raise ValueError(
                "NOTIFIER_DELIVERY_DEADLINE_S must be below NOTIFIER_DELIVERY_LEASE_S "
                "(else another replica may send the same webhook while it still runs)"
            )
        return self
