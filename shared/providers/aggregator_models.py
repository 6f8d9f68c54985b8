"""How each model reached through the two aggregators (fal, Replicate) spells its request.

fal and Replicate pass each model's own input schema through, so the field names, duration
format and resolution values differ per model. The models' capabilities, prices, lifecycle
and sources are in the catalog data file (`catalog.yaml`); this module only maps a catalog
model id to its endpoint(s) and input dialect.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


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
    "fal-ai/bytedance/seedance/v1.5/pro": Wire(
        "fal-ai/bytedance/seedance/v1.5/pro/text-to-video",
        None,
        resolution=_P,
        audio_field="generate_audio",
    ),
    "bytedance/seedance-2.0/fast": Wire(
        "bytedance/seedance-2.0/fast/text-to-video",
        None,
        resolution={"480p": "480p", "720p": "720p"},
        audio_field="generate_audio",
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
        aspect_ratio=False,  # 768P is the default resolution; the text endpoint takes none
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
