"""Parsing and checking a create-interaction body for the emulated `gemini-omni-*` models.

Field names and enums are google-genai 3.6.1's (`CreateModelInteraction`,
`VideoResponseFormat`: aspect_ratio 16:9 | 9:16, resolution 360p | 720p | 1080p | 4k,
delivery inline | uri, duration a string). Per-model limits: the preview is 720p only and up to
10 s (Google Cloud's model page); 1.1 / 1.2 are given the SDK's resolutions and the same 3-10 s.
The rejection messages are the emulator's own wording.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

ALL_RESOLUTIONS = frozenset({"360p", "720p", "1080p", "4k"})
MODELS: dict[str, frozenset[str]] = {
    "gemini-omni-flash-preview": frozenset({"720p"}),
    "gemini-omni-1.1-flash": ALL_RESOLUTIONS,
    "gemini-omni-1.2-flash": ALL_RESOLUTIONS,
}
MIN_SECONDS, MAX_SECONDS, DEFAULT_SECONDS = 3, 10, 8
_SIZES = {
    "360p": (640, 360),
    "720p": (1280, 720),
    "1080p": (1920, 1080),
    "4k": (3840, 2160),
}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)s$")
Rejection = tuple[int, str]


@dataclass(frozen=True)
class OmniRequest:
    model: str
    prompt: str
    width: int
    height: int
    seconds: int
    delivery: str
    input: list[dict[str, Any]]
    response_format: dict[str, Any]


def _content(raw: Any) -> list[dict[str, Any]] | Rejection:
    if isinstance(raw, str):
        return [{"type": "text", "text": raw}]
    if not isinstance(raw, list) or not all(isinstance(b, dict) and b.get("type") for b in raw):
        return (400, "input must be a string or a list of content blocks with a `type`.")
    blocks = []
    for block in raw:
        if block["type"] == "image" and not (block.get("data") or block.get("uri")):
            return (400, "An image content block needs `data` or `uri`.")
        # Keep the image's metadata, not its bytes, in the echoed input.
        blocks.append({k: v for k, v in block.items() if k != "data"})
    return blocks


def _video_format(body: dict[str, Any]) -> dict[str, Any] | Rejection:
    formats = body.get("response_format")
    if formats is None:
        return {"type": "video"}
    listed = formats if isinstance(formats, list) else [formats]
    videos = [f for f in listed if isinstance(f, dict) and f.get("type") == "video"]
    if not videos:
        return (400, "This model only generates video: response_format needs a `video` entry.")
    return dict(videos[0])


def _seconds(value: Any) -> int | Rejection:
    if value is None:
        return DEFAULT_SECONDS
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match is None:
        return (400, f'Invalid duration {value!r}: expected a Duration such as "8s".')
    seconds = float(match.group(1))
    if not MIN_SECONDS <= seconds <= MAX_SECONDS or seconds != int(seconds):
        return (400, f"duration must be whole seconds from {MIN_SECONDS}s to {MAX_SECONDS}s.")
    return int(seconds)


def parse_create(body: Any) -> OmniRequest | Rejection:
    """The request, or (HTTP status, message) saying why the API refuses it."""
    if not isinstance(body, dict):
        return (400, "The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return (400, "model is required.")
    if model not in MODELS:
        return (404, f"models/{model} is not found for the video Interactions emulation.")
    if body.get("stream") is True or body.get("background") is not True:
        return (
            400,
            "The emulator serves video interactions only with background=true and no streaming.",
        )
    content = _content(body.get("input"))
    if isinstance(content, tuple):
        return content
    prompt = " ".join(str(b.get("text", "")) for b in content if b["type"] == "text").strip()
    if not prompt and not any(b["type"] == "image" for b in content):
        return (400, "input needs text or an image.")
    fmt = _video_format(body)
    if isinstance(fmt, tuple):
        return fmt
    aspect = fmt.get("aspect_ratio", "16:9")
    resolution = fmt.get("resolution", "720p")
    delivery = fmt.get("delivery", "inline")
    if aspect not in ("16:9", "9:16"):
        return (400, f"Unsupported aspect_ratio {aspect!r} (16:9 or 9:16).")
    if resolution not in MODELS[model]:
        allowed = ", ".join(sorted(MODELS[model]))
        return (400, f"Unsupported resolution {resolution!r} for {model} ({allowed}).")
    if delivery not in ("inline", "uri"):
        return (400, f"Unsupported delivery {delivery!r} (inline or uri).")
    seconds = _seconds(fmt.get("duration"))
    if isinstance(seconds, tuple):
        return seconds
    width, height = _SIZES[resolution]
    if aspect == "9:16":
        width, height = height, width
    return OmniRequest(model, prompt, width, height, seconds, delivery, content, fmt)
