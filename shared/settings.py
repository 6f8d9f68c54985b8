"""Settings shared by every service, read once from the environment and passed down.

The defaults point at the real servers that `python -m deploy.localinfra up` starts on
127.0.0.1. Setting `KAFKA_BOOTSTRAP_SERVERS`, `MONGODB_URI` or `S3_ENDPOINT` (with
`S3_ACCESS_KEY` / `S3_SECRET_KEY`) points the same code at docker-compose or a real cluster.
Nothing outside a `settings.py` reads `os.environ`.
"""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.limits import MAX_BODY_BYTES


class InfraSettings(BaseSettings):
    """Where the broker, the job database and the object store are."""

    model_config = SettingsConfigDict(
        env_prefix="", extra="ignore", frozen=True, populate_by_name=True
    )

    reelforge_env: Literal["development", "production"] = Field(
        validation_alias=AliasChoices("REELFORGE_ENV", "reelforge_env"),
        default="development",
        description="production: refuse to start with any built-in secret or unsafe setting.",
    )
    kafka_bootstrap_servers: str = Field(
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers"),
        default="127.0.0.1:19092",
        description="Kafka bootstrap servers, comma separated.",
    )
    job_store_uri: str = Field(
        validation_alias=AliasChoices("JOB_STORE_URI", "job_store_uri"),
        default="postgresql://postgres@127.0.0.1:15432/reelforge",
        description="Where job state lives; the scheme picks the store: postgresql:// (the "
        "embedded default) or mongodb:// / mongodb+srv:// (production with MongoDB).",
    )
    mongodb_uri: str = Field(
        validation_alias=AliasChoices("MONGODB_URI", "mongodb_uri"),
        default="mongodb://127.0.0.1:27117/",
        description="A MongoDB-compatible server for the MongoDB adapter's own tests (local: "
        "FerretDB). Services use JOB_STORE_URI.",
    )
    mongodb_database: str = Field(
        validation_alias=AliasChoices("MONGODB_DATABASE", "mongodb_database"),
        default="reelforge",
        description="Database that holds job state when JOB_STORE_URI is a MongoDB URI.",
    )
    allow_non_atomic_store: bool = Field(
        validation_alias=AliasChoices("ALLOW_NON_ATOMIC_STORE", "allow_non_atomic_store"),
        default=False,
        description="Local tests only: start on a MongoDB-compatible server whose "
        "single-document updates are not atomic (FerretDB). Never in production.",
    )
    s3_endpoint: str = Field(
        validation_alias=AliasChoices("S3_ENDPOINT", "s3_endpoint"),
        default="http://127.0.0.1:19000",
        description="S3/MinIO endpoint URL.",
    )
    s3_access_key: SecretStr = Field(
        validation_alias=AliasChoices("S3_ACCESS_KEY", "s3_access_key"),
        default=SecretStr("reelforge"),
        description="S3 access key.",
    )
    s3_secret_key: SecretStr = Field(
        validation_alias=AliasChoices("S3_SECRET_KEY", "s3_secret_key"),
        default=SecretStr("reelforge-secret"),
        description="S3 secret key.",
    )
    s3_region: str = Field(
        validation_alias=AliasChoices("S3_REGION", "s3_region"),
        default="us-east-1",
        description="S3 region name.",
    )
    s3_bucket: str = Field(
        validation_alias=AliasChoices("S3_BUCKET", "s3_bucket"),
        default="reelforge-videos",
        description="Bucket that holds videos.",
    )
    prometheus_url: str = Field(
        validation_alias=AliasChoices("PROMETHEUS_URL", "prometheus_url"),
        default="http://127.0.0.1:19090",
        description="Prometheus HTTP API (the demo's live proof, the observability tests).",
    )
    connect_timeout_s: float = Field(
        validation_alias=AliasChoices("CONNECT_TIMEOUT_S", "connect_timeout_s"),
        default=10.0,
        description="How long a service waits for a server before failing with a clear error.",
    )


class TenantSettings(BaseSettings):
    """API keys and the master secret that tenant webhook secrets derive from."""

    model_config = SettingsConfigDict(
        env_prefix="", extra="ignore", frozen=True, populate_by_name=True
    )

    api_keys: str = Field(
        validation_alias=AliasChoices("API_KEYS", "api_keys"),
        default="demo-key:demo,other-key:other",
        description="Comma-separated 'api_key:tenant_id' pairs. Change the defaults in production.",
    )
    webhook_master_secret: SecretStr = Field(
        validation_alias=AliasChoices("WEBHOOK_MASTER_SECRET", "webhook_master_secret"),
        default=SecretStr("reelforge-dev-master-secret"),
        description="Master secret; each tenant's webhook secret is derived from it.",
    )


class EgressSettings(BaseSettings):
    """Which non-public addresses outbound requests to tenant- or provider-chosen URLs may
    reach (`shared/egress.py`): none unless listed; production mode refuses any entry."""

    model_config = SettingsConfigDict(
        env_prefix="", extra="ignore", frozen=True, populate_by_name=True
    )

    egress_allow: str = Field(
        validation_alias=AliasChoices("EGRESS_ALLOW", "egress_allow"),
        default="",
        description="Local development only: comma-separated CIDRs that webhooks and result "
        "downloads may reach although not public (e.g. 127.0.0.1/32,::1/128).",
    )

    @field_validator("egress_allow")
    @classmethod
    def _cidrs(cls, value: str) -> str:
        from shared.egress import parse_allow

        parse_allow(value)
        return value

    def egress_networks(self) -> tuple[IPv4Network | IPv6Network, ...]:
        from shared.egress import parse_allow

        return parse_allow(self.egress_allow)


class CallbackSettings(BaseSettings):
    """Where providers send callbacks (served by intake's /hooks) and the URL's secret part."""

    model_config = SettingsConfigDict(
        env_prefix="", extra="ignore", frozen=True, populate_by_name=True
    )

    callback_base_url: str = Field(
        validation_alias=AliasChoices("CALLBACK_BASE_URL", "callback_base_url"),
        default="http://127.0.0.1:8080",
        description="Public origin of the intake service, as providers must reach it.",
    )
    callback_token: str = Field(
        validation_alias=AliasChoices("CALLBACK_TOKEN", "callback_token"),
        default="dev-callback-token",
        description="Secret path segment of callback URLs (Kling signs nothing).",
    )

    def callback_url(self, provider: str) -> str:
        return f"{self.callback_base_url.rstrip('/')}/hooks/{provider}/{self.callback_token}"


class ServiceSettings(InfraSettings):
    """The settings every service process has; services subclass this with their own prefix."""

    service_name: str = Field(
        "reelforge",
        description="Name used in logs, metrics and events.",
    )
    metrics_host: str = Field(
        "127.0.0.1",
        description="Address of the /metrics and /health server.",
    )
    metrics_port: int = Field(
        0,
        description="Port of the /metrics and /health server (0 = none).",
    )
    log_level: str = Field(
        "INFO",
        description="Python log level.",
    )
    catalog_override_file: str | None = Field(
        validation_alias=AliasChoices("CATALOG_OVERRIDE_FILE", "catalog_override_file"),
        default=None,
        description="An operator's model catalog file, merged onto the bundled "
        "shared/providers/catalog.yaml at start (same format; see README, 'The model catalog').",
    )
    max_body_bytes: int = Field(
        MAX_BODY_BYTES,
        ge=1024,
        description="HTTP request bodies over this are refused with 413 before parsing.",
    )
