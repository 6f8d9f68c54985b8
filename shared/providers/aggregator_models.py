"""Models reached through the two aggregators (fal, Replicate): catalog entries and the wire
dialect of each model's input (fal and Replicate pass the model's own input schema through).

Kept apart from `catalog.py` so the entries move easily into the catalog data file. Every entry
names its public model page and the date it was read in `SOURCES`; `confidence="unverified"`
marks prices and limits that could not be re-read at the source while writing them (the pages
were not reachable from the build machine) and must be checked before billing relies on them.

Prices are USD per output second at 720p (or at the model's lowest listed resolution when it
has no 720p), as `ModelSpec` expects; token-priced models (Seedance) are converted at 24 fps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared.providers.base import Lifecycle, ModelSpec

GA = Lifecycle(stage="ga")
PREVIEW = Lifecycle(stage="preview")
HOUR = 3600
DAY = 86_400


@dataclass(frozen=True)
class Wire:
    """How one catalog model's request is spelled on the aggregator.

    `text` / `image` are the fal endpoint ids or Replicate `owner/name` used for text-to-video and
    image-to-video (None: that mode does not exist). `duration` formats seconds the way the
    model's schema wants them; `resolution` maps our resolution to the model's value (absent: the
    field is not sent)."""

    text: str | None
    image: str | None
    image_field: str = "image_url"
    duration: Callable[[int], Any] = str
    resolution: dict[str, str] = field(default_factory=dict)
    resolution_field: str = "resolution"
    aspect_ratio: bool = True
    audio_field: str | None = None
    negative_prompt: bool = False


@dataclass(frozen=True)
class Source:
    url: str
    checked_on: str
    confidence: str  # "verified" | "unverified"
    note: str = ""


def seconds_suffix(seconds: int) -> str:
    return f"{seconds}s"


def as_int(seconds: int) -> int:
    return seconds


_P = {"480p": "480p", "720p": "720p", "1080p": "1080p"}

FAL_WIRES: dict[str, Wire] = {
    "fal-ai/bytedance/seedance/v1/pro": Wire(
        "fal-ai/bytedance/seedance/v1/pro/text-to-video",
        "fal-ai/bytedance/seedance/v1/pro/image-to-video",
        resolution=_P,
    ),
    "fal-ai/bytedance/seedance/v1/lite": Wire(
        "fal-ai/bytedance/seedance/v1/lite/text-to-video",
        "fal-ai/bytedance/seedance/v1/lite/image-to-video",
        resolution=_P,
    ),
    "fal-ai/wan-25-preview": Wire(
        "fal-ai/wan-25-preview/text-to-video",
        "fal-ai/wan-25-preview/image-to-video",
        resolution=_P,
        negative_prompt=True,
    ),
    "fal-ai/minimax/hailuo-02/standard": Wire(
        "fal-ai/minimax/hailuo-02/standard/text-to-video",
        "fal-ai/minimax/hailuo-02/standard/image-to-video",
        resolution={"720p": "768P"},
        aspect_ratio=False,
    ),
    "fal-ai/minimax/hailuo-02/pro": Wire(
        "fal-ai/minimax/hailuo-02/pro/text-to-video",
        "fal-ai/minimax/hailuo-02/pro/image-to-video",
        aspect_ratio=False,
    ),
    "fal-ai/luma-dream-machine/ray-2": Wire(
        "fal-ai/luma-dream-machine/ray-2",
        "fal-ai/luma-dream-machine/ray-2/image-to-video",
        duration=seconds_suffix,
        resolution=_P,
    ),
}

REPLICATE_WIRES: dict[str, Wire] = {
    "bytedance/seedance-1-pro": Wire(
        "bytedance/seedance-1-pro",
        "bytedance/seedance-1-pro",
        image_field="image",
        duration=as_int,
        resolution=_P,
    ),
    "bytedance/seedance-1-lite": Wire(
        "bytedance/seedance-1-lite",
        "bytedance/seedance-1-lite",
        image_field="image",
        duration=as_int,
        resolution=_P,
    ),
    "wan-video/wan-2.5": Wire(
        "wan-video/wan-2.5-t2v",
        "wan-video/wan-2.5-i2v",
        image_field="image",
        duration=as_int,
        resolution={"480p": "832*480", "720p": "1280*720", "1080p": "1920*1080"},
        resolution_field="size",
        aspect_ratio=False,
        negative_prompt=True,
    ),
    "minimax/hailuo-02": Wire(
        "minimax/hailuo-02",
        "minimax/hailuo-02",
        image_field="first_frame_image",
        duration=as_int,
        resolution={"720p": "768p", "1080p": "1080p"},
        aspect_ratio=False,
    ),
    "luma/ray-2-720p": Wire(
        "luma/ray-2-720p",
        "luma/ray-2-720p",
        image_field="start_image_url",
        duration=as_int,
    ),
}


def _spec(provider: str, model: str, **fields: Any) -> ModelSpec:
    base: dict[str, Any] = {
        "provider": provider,
        "model": model,
        "aspect_ratios": ("16:9", "9:16", "1:1"),
        "lifecycle": GA,
        "quality": 7,
        "physics": 7,
        "consistency": 7,
        "typical_render_s": 90.0,
        "concurrency_limit": 10 if provider == "fal" else 5,
        # fal keeps generated files on its CDN for days; Replicate deletes API prediction
        # outputs after one hour (its data-retention page).
        "result_ttl_s": 7 * DAY if provider == "fal" else HOUR,
    }
    base.update(fields)
    return ModelSpec.model_validate(base)


_SEEDANCE_PRO = {"480p": 0.44, "1080p": 2.25}  # token pricing scales with pixels
_WAN_25 = {"480p": 0.5, "1080p": 1.5}

AGGREGATOR_MODELS: tuple[ModelSpec, ...] = (
    _spec(
        "fal",
        "fal-ai/bytedance/seedance/v1/pro",
        durations_s=(5, 10),
        resolutions=("480p", "720p", "1080p"),
        price_per_second_usd=0.054,
        price_multipliers=_SEEDANCE_PRO,
        quality=8,
        physics=8,
        consistency=8,
    ),
    _spec(
        "fal",
        "fal-ai/bytedance/seedance/v1/lite",
        durations_s=(5, 10),
        resolutions=("480p", "720p", "1080p"),
        price_per_second_usd=0.039,
        price_multipliers=_SEEDANCE_PRO,
        quality=6,
        physics=6,
    ),
    _spec(
        "fal",
        "fal-ai/wan-25-preview",
        durations_s=(5, 10),
        resolutions=("480p", "720p", "1080p"),
        audio="always",
        price_per_second_usd=0.10,
        price_multipliers=_WAN_25,
        lifecycle=PREVIEW,
    ),
    _spec(
        "fal",
        "fal-ai/minimax/hailuo-02/standard",
        durations_s=(6, 10),
        resolutions=("720p",),
        aspect_ratios=("16:9",),
        price_per_second_usd=0.045,
        physics=8,
    ),
    _spec(
        "fal",
        "fal-ai/minimax/hailuo-02/pro",
        durations_s=(6,),
        resolutions=("1080p",),
        aspect_ratios=("16:9",),
        price_per_second_usd=0.08,
        quality=8,
        physics=8,
    ),
    _spec(
        "fal",
        "fal-ai/luma-dream-machine/ray-2",
        durations_s=(5, 9),
        resolutions=("720p", "1080p"),
        price_per_second_usd=0.20,
        price_multipliers={"1080p": 2.0},
        quality=8,
    ),
    _spec(
        "replicate",
        "bytedance/seedance-1-pro",
        durations_s=tuple(range(2, 13)),
        resolutions=("480p", "720p", "1080p"),
        price_per_second_usd=0.06,
        price_multipliers={"480p": 0.5, "1080p": 2.5},
        quality=8,
        physics=8,
        consistency=8,
    ),
    _spec(
        "replicate",
        "bytedance/seedance-1-lite",
        durations_s=tuple(range(2, 13)),
        resolutions=("480p", "720p", "1080p"),
        price_per_second_usd=0.036,
        price_multipliers={"480p": 0.5, "1080p": 2.0},
        quality=6,
        physics=6,
    ),
    _spec(
        "replicate",
        "wan-video/wan-2.5",
        durations_s=(5, 10),
        resolutions=("480p", "720p", "1080p"),
        aspect_ratios=("16:9",),
        audio="always",
        price_per_second_usd=0.10,
        price_multipliers=_WAN_25,
        lifecycle=PREVIEW,
    ),
    _spec(
        "replicate",
        "minimax/hailuo-02",
        durations_s=(6, 10),
        resolutions=("720p", "1080p"),
        aspect_ratios=("16:9",),
        price_per_second_usd=0.045,
        price_multipliers={"1080p": 1.78},
        physics=8,
        duration_for_resolution={"1080p": 6},
    ),
    _spec(
        "replicate",
        "luma/ray-2-720p",
        durations_s=(5, 9),
        resolutions=("720p",),
        price_per_second_usd=0.18,
        quality=8,
    ),
)

_UNVERIFIED = "price and limits from the public model page as remembered; page not re-read"
SOURCES: dict[tuple[str, str], Source] = {
    ("fal", m.model): Source(
        f"https://fal.ai/models/{FAL_WIRES[m.model].text}", "2026-12-01", "unverified", _UNVERIFIED
    )
    for m in AGGREGATOR_MODELS
    if m.provider == "fal"
} | {
    ("replicate", m.model): Source(
        f"https://replicate.com/{REPLICATE_WIRES[m.model].text}",
        "2026-12-01",
        "unverified",
        _UNVERIFIED,
    )
    for m in AGGREGATOR_MODELS
    if m.provider == "replicate"
}


def model_input(
    wire: Wire,
    *,
    prompt: str,
    duration_s: int,
    resolution: str,
    aspect_ratio: str,
    image_url: str | None,
    seed: int | None,
    negative_prompt: str | None,
    audio: bool,
) -> dict[str, Any]:
    """The model's input object (fal: the request body; Replicate: `input`)."""
    body: dict[str, Any] = {"prompt": prompt, "duration": wire.duration(duration_s)}
    if wire.resolution:
        body[wire.resolution_field] = wire.resolution[resolution]
    if wire.aspect_ratio and not image_url:
        body["aspect_ratio"] = aspect_ratio
    if image_url:
        body[wire.image_field] = image_url
    if seed is not None:
        body["seed"] = seed
    if negative_prompt and wire.negative_prompt:
        body["negative_prompt"] = negative_prompt
    if wire.audio_field:
        body[wire.audio_field] = audio
    return body
