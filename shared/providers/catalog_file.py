"""The schema of the catalog data file (`catalog.yaml`, `format_version: 1`), checked with
pydantic: strict (unknown keys are errors), dates as ISO dates, sources referenced by key."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.providers.base import AspectRatio, Confidence, LifecycleState, Resolution


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Source(_Strict):
    title: str = Field(min_length=1, description="Document name, e.g. 'Gemini API changelog'.")
    url: str | None = Field(None, description="Public URL; null when the source is not public.")


class Capabilities(_Strict):
    durations_s: tuple[int, ...] = Field(min_length=1)
    resolutions: tuple[Resolution, ...] = Field(min_length=1)
    aspect_ratios: tuple[AspectRatio, ...] = Field(min_length=1)
    text_to_video: bool = True
    image_to_video: bool = True
    audio: Literal["never", "optional", "always"] = "never"
    audio_resolutions: tuple[Resolution, ...] | None = None
    max_candidates_per_call: int = Field(1, ge=1)
    duration_for_resolution: dict[Resolution, int] = Field(default_factory=dict)
    source: str | None = Field(None, description="A key of `sources`, where these were read.")
    checked_on: date | None = None


class Limits(_Strict):
    concurrency_limit: int = Field(ge=1)
    result_ttl_s: int = Field(ge=1)
    typical_render_s: float = Field(gt=0)


class Scores(_Strict):
    quality: int = Field(ge=1, le=10)
    physics: int = Field(ge=1, le=10)
    consistency: int = Field(ge=1, le=10)


class _Sourced(_Strict):
    source: str = Field(description="A key of the file's `sources`.")
    checked_on: date
    confidence: Confidence


class Price(_Sourced):
    usd_per_second: float = Field(ge=0, description="List price per output second at 720p.")
    multipliers: dict[str, float] = Field(default_factory=dict)
    note: str = ""


class LifecycleEntry(_Sourced):
    stage: LifecycleState
    deprecated_on: date | None = None
    shutdown_on: date | None = None
    replacement: str | None = None
    note: str = ""

    @model_validator(mode="after")
    def _dates_agree(self) -> LifecycleEntry:
        if self.stage == "retired" and self.shutdown_on is None:
            raise ValueError("a retired model needs shutdown_on")
        if self.deprecated_on and self.shutdown_on and self.deprecated_on > self.shutdown_on:
            raise ValueError("deprecated_on is after shutdown_on")
        return self


class ModelEntry(_Strict):
    provider: str = Field(min_length=1)
    model: str = Field(min_length=1)
    enabled: bool = True
    capabilities: Capabilities
    limits: Limits
    scores: Scores
    price: Price
    lifecycle: LifecycleEntry


class CatalogFile(_Strict):
    format_version: Literal[1]
    sources: dict[str, Source] = Field(default_factory=dict)
    models: list[ModelEntry]

    @model_validator(mode="after")
    def _references_resolve(self) -> CatalogFile:
        for entry in self.models:
            cited = {
                "price": entry.price.source,
                "lifecycle": entry.lifecycle.source,
                "capabilities": entry.capabilities.source,
            }
            for kind, key in cited.items():
                if key is not None and key not in self.sources:
                    raise ValueError(
                        f"models[{entry.provider}/{entry.model}].{kind}.source: "
                        f"{key!r} is not a key of `sources`"
                    )
        return self
