"""The provider registry: one adapter per provider name, built by the composition root.

Nothing is built at import time; `build_provider` takes the settings and the shared
`httpx.AsyncClient` the process owns (and closes).
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from shared.providers.base import VideoProvider
from shared.providers.fal import FalProvider
from shared.providers.gemini import GeminiProvider
from shared.providers.kling import KlingProvider
from shared.providers.openai_videos import OpenAIVideosProvider
from shared.providers.replicate import ReplicateProvider
from shared.providers.runway import RunwayProvider
from shared.providers.settings import ProviderSettings, secret
from shared.providers.veo import VertexVeoProvider

Builder = Callable[[ProviderSettings, httpx.AsyncClient], VideoProvider]


def _openai(s: ProviderSettings, client: httpx.AsyncClient) -> VideoProvider:
    return OpenAIVideosProvider(
        client,
        api_key=s.openai_api_key.get_secret_value(),
        base_url=s.openai_base_url,
        organization=s.openai_organization,
        project=s.openai_project,
        webhook_secret=secret(s.openai_webhook_secret),
    )


def _gemini(s: ProviderSettings, client: httpx.AsyncClient) -> VideoProvider:
    return GeminiProvider(
        client,
        api_key=s.gemini_api_key.get_secret_value(),
        base_url=s.gemini_base_url,
        webhook_secret=secret(s.gemini_webhook_secret),
        delivery=s.gemini_video_delivery,
    )


def _vertex(s: ProviderSettings, client: httpx.AsyncClient) -> VideoProvider:
    return VertexVeoProvider(
        client,
        project=s.vertex_project,
        location=s.vertex_location,
        access_token=s.vertex_access_token.get_secret_value(),
        base_url=s.vertex_base_url,
        gcs_base_url=s.vertex_gcs_base_url,
        storage_uri=s.vertex_storage_uri,
        generate_audio=s.vertex_generate_audio,
    )


def _runway(s: ProviderSettings, client: httpx.AsyncClient) -> VideoProvider:
    return RunwayProvider(
        client, api_key=s.runwayml_api_secret.get_secret_value(), base_url=s.runway_base_url
    )


def _kling(s: ProviderSettings, client: httpx.AsyncClient) -> VideoProvider:
    return KlingProvider(
        client,
        access_key=s.kling_access_key.get_secret_value(),
        secret_key=s.kling_secret_key.get_secret_value(),
        base_url=s.kling_base_url,
    )


def _fal(s: ProviderSettings, client: httpx.AsyncClient) -> VideoProvider:
    return FalProvider(
        client,
        api_key=s.fal_key.get_secret_value(),
        queue_base_url=s.fal_queue_base_url,
        webhook_jwks=s.fal_webhook_jwks,
    )


def _replicate(s: ProviderSettings, client: httpx.AsyncClient) -> VideoProvider:
    return ReplicateProvider(
        client,
        api_token=s.replicate_api_token.get_secret_value(),
        base_url=s.replicate_base_url,
        webhook_secret=secret(s.replicate_webhook_secret),
    )


_BUILDERS: dict[str, Builder] = {
    "openai": _openai,
    "gemini": _gemini,
    "vertex": _vertex,
    "runway": _runway,
    "kling": _kling,
    "fal": _fal,
    "replicate": _replicate,
}
PROVIDER_NAMES: tuple[str, ...] = tuple(_BUILDERS)


def build_provider(
    name: str, settings: ProviderSettings, client: httpx.AsyncClient
) -> VideoProvider:
    try:
        builder = _BUILDERS[name]
    except KeyError:
        raise ValueError(f"unknown provider {name!r}; known: {', '.join(PROVIDER_NAMES)}") from None
    return builder(settings, client)
