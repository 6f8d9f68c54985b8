"""The provider registry and settings: every name builds an adapter; defaults stay local."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest

from shared.providers.registry import PROVIDER_NAMES, build_provider
from shared.providers.settings import ProviderSettings


async def test_every_provider_name_builds_an_adapter_with_that_name() -> None:
    async with httpx.AsyncClient() as client:
        for name in PROVIDER_NAMES:
            assert build_provider(name, ProviderSettings(), client).name == name


async def test_an_unknown_provider_name_is_refused() -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(ValueError, match="unknown provider"):
            build_provider("pika", ProviderSettings(), client)


def test_default_base_urls_point_at_the_local_emulator(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (
        "OPENAI_BASE_URL",
        "GEMINI_BASE_URL",
        "VERTEX_BASE_URL",
        "RUNWAY_BASE_URL",
        "KLING_BASE_URL",
        "VERTEX_GCS_BASE_URL",
    ):
        monkeypatch.delenv(var, raising=False)
    settings = ProviderSettings()
    urls = [
        settings.openai_base_url,
        settings.gemini_base_url,
        settings.vertex_base_url,
        settings.runway_base_url,
        settings.kling_base_url,
        settings.vertex_gcs_base_url,
    ]
    assert {urlsplit(u).hostname for u in urls} == {"127.0.0.1"}


def test_settings_read_the_sdk_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNWAYML_API_SECRET", "key_from_env")
    monkeypatch.setenv("KLING_BASE_URL", "http://127.0.0.1:9999/kling")
    settings = ProviderSettings()
    assert settings.runwayml_api_secret.get_secret_value() == "key_from_env"
    assert settings.kling_base_url == "http://127.0.0.1:9999/kling"
