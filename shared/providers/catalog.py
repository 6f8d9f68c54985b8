"""Every model Reelforge can route to: capabilities, list price, lifecycle and routing scores.

Prices are USD per output second at 720p, before the multipliers. Sources and confidence:
OpenAI and Google prices are from the providers' pages; Runway and Kling prices are
third-party conversions of credits/units and must be checked against your contract. The
quality / physics / consistency scores are editorial defaults used only by the routing
policies; override them per deployment.
"""

from __future__ import annotations

from shared.providers.aggregator_models import AGGREGATOR_MODELS
from shared.providers.base import Lifecycle, ModelSpec

GA = Lifecycle(stage="ga")
PREVIEW = Lifecycle(stage="preview")
SORA_RETIRED = Lifecycle(
    stage="retired",
    deprecated_on="2026-08-13",
    retires_on="2026-09-24",
    note="OpenAI shut down Sora 2 and /v1/videos on api.openai.com on 2026-09-24; "
    "still allowed through an OpenAI-compatible gateway (OPENAI_BASE_URL).",
)
DAY = 86_400


def _veo(provider: str, model: str, price: float, lifecycle: Lifecycle, **kw: object) -> ModelSpec:
    fast = "fast" in model
    fields: dict[str, object] = {
        "provider": provider,
        "model": model,
        "durations_s": (8,) if model == "veo-3.0-fast-generate-001" else (4, 6, 8),
        "resolutions": ("720p", "1080p"),
        "aspect_ratios": ("16:9", "9:16"),
        "audio": "always" if provider == "gemini" else "optional",
        "max_candidates_per_call": 4 if provider == "vertex" else 1,
        "price_per_second_usd": price,
        "price_multipliers": {"1080p": 1.0, "4k": 1.5},
        "lifecycle": lifecycle,
        "quality": 7 if fast else 9,
        "physics": 8 if fast else 9,
        "consistency": 6 if fast else 7,
        "typical_render_s": 45.0 if fast else 90.0,
        "result_ttl_s": 2 * DAY if provider == "gemini" else 7 * DAY,
        "concurrency_limit": 10,
        "duration_for_resolution": {"1080p": 8, "4k": 8},
    }
    fields.update(kw)
    return ModelSpec.model_validate(fields)


MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        provider="openai",
        model="sora-2",
        durations_s=(4, 8, 12),
        resolutions=("720p",),
        aspect_ratios=("16:9", "9:16"),
        image_to_video=True,
        audio="always",
        price_per_second_usd=0.10,
        lifecycle=SORA_RETIRED,
        quality=7,
        physics=8,
        consistency=7,
        typical_render_s=120.0,
        result_ttl_s=3600,
        concurrency_limit=5,
    ),
    ModelSpec(
        provider="openai",
        model="sora-2-pro",
        durations_s=(4, 8, 12),
        resolutions=("720p", "1080p"),
        aspect_ratios=("16:9", "9:16"),
        audio="always",
        price_per_second_usd=0.30,
        price_multipliers={"1080p": 1.67},
        lifecycle=SORA_RETIRED,
        quality=9,
        physics=9,
        consistency=8,
        typical_render_s=180.0,
        result_ttl_s=3600,
        concurrency_limit=3,
    ),
    _veo("gemini", "veo-3.1-generate-preview", 0.40, PREVIEW, resolutions=("720p", "1080p", "4k")),
    _veo(
        "gemini",
        "veo-3.1-fast-generate-preview",
        0.15,
        PREVIEW,
        resolutions=("720p", "1080p", "4k"),
    ),
    _veo("gemini", "veo-3.0-generate-001", 0.40, GA),
    _veo("gemini", "veo-3.0-fast-generate-001", 0.15, GA),
    _veo(
        "vertex",
        "veo-3.1-generate-001",
        0.20,
        GA,
        price_multipliers={"audio": 2.0, "4k": 1.5},
        resolutions=("720p", "1080p", "4k"),
    ),
    _veo(
        "vertex",
        "veo-3.1-fast-generate-001",
        0.10,
        GA,
        price_multipliers={"audio": 1.5, "4k": 1.5},
        resolutions=("720p", "1080p", "4k"),
    ),
    ModelSpec(
        provider="runway",
        model="gen4.5",
        durations_s=tuple(range(2, 11)),
        resolutions=("720p",),
        aspect_ratios=("16:9", "9:16"),
        audio="never",
        price_per_second_usd=0.12,
        lifecycle=GA,
        quality=8,
        physics=7,
        consistency=9,
        typical_render_s=60.0,
        result_ttl_s=DAY,
        concurrency_limit=2,
    ),
    ModelSpec(
        provider="runway",
        model="gen4_turbo",
        durations_s=tuple(range(2, 11)),
        resolutions=("720p",),
        aspect_ratios=("16:9", "9:16", "1:1"),
        text_to_video=False,
        audio="never",
        price_per_second_usd=0.05,
        lifecycle=GA,
        quality=6,
        physics=6,
        consistency=8,
        typical_render_s=30.0,
        result_ttl_s=DAY,
        concurrency_limit=2,
    ),
    ModelSpec(
        provider="kling",
        model="kling-v2-6",
        durations_s=(5, 10),
        resolutions=("720p", "1080p"),
        aspect_ratios=("16:9", "9:16", "1:1"),
        audio="optional",
        price_per_second_usd=0.042,
        price_multipliers={"1080p": 2.0, "audio": 1.5},
        lifecycle=GA,
        quality=7,
        physics=7,
        consistency=7,
        typical_render_s=120.0,
        result_ttl_s=30 * DAY,
        concurrency_limit=5,
    ),
    ModelSpec(
        provider="kling",
        model="kling-v3",
        durations_s=tuple(range(3, 16)),
        resolutions=("720p", "1080p"),
        aspect_ratios=("16:9", "9:16", "1:1"),
        audio="optional",
        price_per_second_usd=0.084,
        price_multipliers={"1080p": 2.0, "audio": 1.5},
        lifecycle=GA,
        quality=8,
        physics=8,
        consistency=8,
        typical_render_s=150.0,
        result_ttl_s=30 * DAY,
        concurrency_limit=5,
    ),
    *AGGREGATOR_MODELS,
)


def find_model(provider: str, model: str) -> ModelSpec | None:
    return next((m for m in MODELS if m.provider == provider and m.model == model), None)


def models_of(provider: str) -> tuple[ModelSpec, ...]:
    return tuple(m for m in MODELS if m.provider == provider)
