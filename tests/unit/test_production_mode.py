"""Production mode (issue 12): no built-in secret survives `REELFORGE_ENV=production`, and
the QC review API reads API keys through the same tenant directory as intake."""

from __future__ import annotations

from collections.abc import Sequence

import httpx
import pytest
from prometheus_client import CollectorRegistry
from pydantic_settings import BaseSettings

from services.dispatcher.settings import DispatcherSettings
from services.intake.settings import IntakeSettings
from services.notifier.settings import NotifierSettings
from services.poller.settings import PollerSettings
from services.qc.app import wire
from services.qc.settings import QcSettings
from services.reconciler.settings import ReconcilerSettings
from services.storage.settings import StorageSettings
from shared.errors import ConfigurationError
from shared.production import (
    PRODUCTION_CHECKS,
    production_check,
    production_problems,
    refuse_to_start_if_unsafe,
)
from shared.runtime import ServiceProcess, production_settings
from shared.settings import ServiceSettings
from shared.tenants import TenantDirectory
from tests.fakes import FakeBlobStore, FakeJobRepository
from tests.qc_fakes import FakeReviewStore

SAFE_ENV = {
    "API_KEYS": "k-7f3a:acme",
    "WEBHOOK_MASTER_SECRET": "a-real-master-secret",
    "CALLBACK_TOKEN": "a-real-callback-token",
    "S3_ACCESS_KEY": "prod-access",
    "S3_SECRET_KEY": "prod-secret",
    "OPENAI_API_KEY": "sk-real",
    "OPENAI_WEBHOOK_SECRET": "whsec_cmVhbA==",
    "GEMINI_API_KEY": "g-real",
    "GEMINI_WEBHOOK_SECRET": "whsec_cmVhbDI=",
    "VERTEX_ACCESS_TOKEN": "ya29.real",
    "RUNWAYML_API_SECRET": "key_real",
    "KLING_ACCESS_KEY": "ak-real",
    "KLING_SECRET_KEY": "sk-real-kling-secret",
    "FAL_KEY": "fal-real:key",
    "REPLICATE_API_TOKEN": "r8_real",
    "REPLICATE_WEBHOOK_SECRET": "whsec_cmVhbDM=",
}
SERVICES: list[type[ServiceSettings]] = [
    IntakeSettings,
    DispatcherSettings,
    PollerSettings,
    StorageSettings,
    NotifierSettings,
    QcSettings,
    ReconcilerSettings,
]


def checked(settings: ServiceSettings) -> list[BaseSettings]:
    return [settings, *production_settings(settings)]


@pytest.fixture
def production(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("REELFORGE_ENV", "production")
    return monkeypatch


def test_intake_names_every_builtin_secret_one_per_line(production: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError) as refused:
        refuse_to_start_if_unsafe(checked(IntakeSettings()))
    lines = str(refused.value).splitlines()[1:]
    for setting in ("API_KEYS", "WEBHOOK_MASTER_SECRET", "CALLBACK_TOKEN", "S3_SECRET_KEY"):
        assert sum(line.strip().startswith(setting + " ") for line in lines) == 1, lines
    assert any(line.strip().startswith("KLING_SECRET_KEY") for line in lines)


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.__name__)
def test_every_service_refuses_its_defaults_and_starts_with_real_secrets(
    production: pytest.MonkeyPatch, service: type[ServiceSettings]
) -> None:
    with pytest.raises(ConfigurationError, match="S3_ACCESS_KEY still has its built-in default"):
        refuse_to_start_if_unsafe(checked(service()))
    for name, value in SAFE_ENV.items():
        production.setenv(name, value)
    refuse_to_start_if_unsafe(checked(service()))  # nothing left to refuse


def test_demo_keys_inside_a_changed_list_are_refused(production: pytest.MonkeyPatch) -> None:
    for name, value in SAFE_ENV.items():
        production.setenv(name, value)
    production.setenv("API_KEYS", "k-7f3a:acme,demo-key:demo")
    assert production_problems(checked(QcSettings())) == [
        "API_KEYS contains the demo key 'demo-key'"
    ]


def test_only_the_providers_a_process_uses_need_credentials(
    production: pytest.MonkeyPatch,
) -> None:
    for name, value in SAFE_ENV.items():
        if not name.startswith(("GEMINI", "VERTEX")):
            production.setenv(name, value)
    poller = PollerSettings(provider="kling")
    assert production_problems(checked(poller)) == []
    poller = PollerSettings(provider="gemini")
    assert production_problems(checked(poller)) == [
        "GEMINI_API_KEY still has its built-in default",
        "GEMINI_WEBHOOK_SECRET still has its built-in default",
    ]


def test_development_mode_starts_with_the_demo_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REELFORGE_ENV", raising=False)
    refuse_to_start_if_unsafe(checked(IntakeSettings()))


def test_other_modules_can_add_a_production_check(production: pytest.MonkeyPatch) -> None:
    def egress_allow_list(settings: Sequence[BaseSettings]) -> list[str]:
        return ["EGRESS_ALLOW: a hook for the egress policy"]

    production_check(egress_allow_list)
    try:
        assert "EGRESS_ALLOW: a hook for the egress policy" in production_problems(
            checked(ReconcilerSettings())
        )
    finally:
        PRODUCTION_CHECKS.remove(egress_allow_list)


def test_the_review_api_refuses_a_malformed_key_list_as_intake_does() -> None:
    settings = QcSettings(api_keys="demo-key:demo,justakey", metrics_port=0)
    with pytest.raises(ConfigurationError, match="API_KEYS"):
        TenantDirectory(IntakeSettings(api_keys=settings.api_keys).api_keys)
    process = ServiceProcess(settings=settings, registry=CollectorRegistry())
    with pytest.raises(ConfigurationError, match="API_KEYS"):  # main ignored the bad entry
        wire(process, settings, FakeJobRepository(), FakeBlobStore(), FakeReviewStore(), None)  # type: ignore[arg-type]


async def test_the_review_api_resolves_the_same_keys_as_intake() -> None:
    settings = QcSettings(api_keys="k-demo:demo", metrics_port=0)
    process = ServiceProcess(settings=settings, registry=CollectorRegistry())
    wire(process, settings, FakeJobRepository(), FakeBlobStore(), FakeReviewStore(), None)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=process.http)
    async with httpx.AsyncClient(transport=transport, base_url="http://qc") as qc:
        ok = await qc.get("/v1/reviews", headers={"Authorization": "Bearer k-demo"})
        unknown = await qc.get("/v1/reviews", headers={"Authorization": "Bearer k-demo2"})
    assert ok.status_code == 200
    assert unknown.status_code == 401 and unknown.json()["detail"] == "missing or unknown API key"
