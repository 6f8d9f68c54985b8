"""The `VideoProvider` port: one interface over every hosted video model.

The shape follows Vercel AI SDK's start / status / webhook split:

* `submit(request, model)` starts a render and returns a `TaskRef`: opaque, JSON-storable,
  enough for *any* process to resume tracking the task later (the dispatcher writes it to the
  job record before and right after the call, the poller reads it back after a restart).
* `status(ref)` asks the provider once and returns a normalised `TaskStatus` that always keeps
  the raw provider status and progress. It never sleeps and never loops: scheduling belongs
  to the poller. An unknown raw status maps to `TaskState.UNKNOWN` (keep polling until the
  task's deadline), never to a failure.
* `download(ref, output)` streams the result bytes; it never buffers a whole video.
* `cancel(ref)` / `delete(ref)` where the provider has them (`capabilities` says which).
* `find_created(request, model)` finds the task an earlier create of the same request made,
  by the caller's id the provider stored with it (`request.external_id`), or returns None
  when the provider has none. Only providers whose `capabilities.find_by_external_id` is true
  can answer, and they must also refuse a second create with the same id (so a create sent
  after "not found" cannot pay twice); the others return None. This is how an ambiguous
  create (sent, answer lost: `ProviderError.outcome_unknown`) is resolved without paying
  twice. Sources: Kling stores `external_task_id` (echoed in `task_info`) and its
  "Query Task (Single)", `GET /v1/videos/text2video/{id}`, takes either the task id or the
  external_task_id in the path ("choose one of the two"; Kling API reference, read through
  its public mirrors since the official site is not machine-readable). OpenAI's `/v1/videos` and
  Runway's creates take no client id, and their SDKs send no `Idempotency-Key` (the Stainless
  base client only adds one when the generated client sets `_idempotency_header`, which
  openai-python's `OpenAI` and runwayml `sdk-python`'s `RunwayML` do not). Google's
  `predictLongRunning` (Gemini API and Vertex AI) takes no request id either.
* `parse_webhook(headers, body)` verifies a provider webhook and turns it into a hint
  (which task to re-check). A hint is never trusted as a result: the poller confirms it with
  `status()`.

Every adapter raises only `shared.providers.errors.ProviderError` subclasses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from shared.providers.errors import FailureClass

Resolution = Literal["480p", "720p", "1080p", "4k"]
AspectRatio = Literal["16:9", "9:16", "1:1"]


class TaskState(StrEnum):
    QUEUED = "queued"
    THROTTLED = "throttled"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    UNKNOWN = "unknown"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL_TASK_STATES


_TERMINAL_TASK_STATES = frozenset(
    {TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED, TaskState.EXPIRED}
)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GenerationRequest(_Frozen):
    """What one provider call should render: already validated against the model's capabilities."""

    prompt: str = Field(min_length=1, max_length=4000)
    negative_prompt: str | None = None
    duration_s: int = Field(ge=1, le=60)
    resolution: Resolution = "720p"
    aspect_ratio: AspectRatio = "16:9"
    fps: int | None = Field(None, ge=1, le=60)
    audio: bool = False
    image_url: str | None = Field(None, description="First frame (https URL or data: URI).")
    seed: int | None = None
    callback_url: str | None = Field(
        None, description="Per-request webhook for providers that take one (Kling, Gemini)."
    )
    external_id: str | None = Field(None, description="Our id, echoed where the provider can.")


class TaskRef(_Frozen):
    """Opaque handle of one provider task; JSON round-trips through the job record."""

    provider: str
    model: str
    task_id: str = Field(description="The provider's id (operation name for Google).")
    extra: dict[str, str] = Field(default_factory=dict, description="Adapter-private routing data.")


class VideoOutput(_Frozen):
    """One result of a succeeded task: where to fetch it and until when."""

    index: int = 0
    url: str | None = Field(None, description="Download URL; None when the bytes are inline.")
    expires_at: datetime | None = Field(None, description="When the provider's copy expires.")
    mime_type: str = "video/mp4"


class Failure(_Frozen):
    failure_class: FailureClass
    message: str
    provider_code: str | None = None


class TaskStatus(_Frozen):
    """One normalised answer to `status()`; `raw_status` keeps what the provider said."""

    state: TaskState
    raw_status: str
    progress: float | None = Field(None, ge=0.0, le=1.0)
    outputs: tuple[VideoOutput, ...] = ()
    failure: Failure | None = None
    poll_after_s: float | None = Field(None, description="Provider's hint for the next poll.")
    raw: dict[str, Any] = Field(default_factory=dict, description="Trimmed provider payload.")


class WebhookHint(_Frozen):
    """A verified webhook/callback: re-check this task soon. Never a result by itself."""

    provider: str
    task_id: str
    event_type: str
    raw_status: str | None = None


class Lifecycle(_Frozen):
    stage: Literal["preview", "ga", "deprecated", "retired"]
    deprecated_on: str | None = Field(None, description="ISO date the provider deprecated it.")
    retires_on: str | None = Field(None, description="ISO date the provider shuts it down.")
    note: str = ""


class ModelSpec(_Frozen):
    """Capabilities, price, lifecycle and routing scores of one model on one provider."""

    provider: str
    model: str
    durations_s: tuple[int, ...]
    resolutions: tuple[Resolution, ...]
    aspect_ratios: tuple[AspectRatio, ...]
    text_to_video: bool = True
    image_to_video: bool = True
    audio: Literal["never", "optional", "always"] = "never"
    max_candidates_per_call: int = 1
    price_per_second_usd: float = Field(description="List price per output second at 720p.")
    price_multipliers: dict[str, float] = Field(
        default_factory=dict, description="Multipliers by resolution or 'audio'."
    )
    lifecycle: Lifecycle
    quality: int = Field(ge=1, le=10, description="Relative visual quality, for best_quality.")
    physics: int = Field(ge=1, le=10, description="Relative motion realism, for best_physics.")
    consistency: int = Field(ge=1, le=10, description="Character consistency, for that policy.")
    typical_render_s: float = Field(description="Expected render time, seeds the poll schedule.")
    result_ttl_s: int = Field(description="How long the provider keeps the result.")
    concurrency_limit: int = Field(description="Default in-flight tasks allowed per account.")
    duration_for_resolution: dict[str, int] = Field(
        default_factory=dict, description="Resolutions that force one duration (Veo: 1080p -> 8)."
    )


class ProviderCapabilities(_Frozen):
    cancel: bool
    delete: bool
    webhooks: bool
    per_request_callback: bool
    find_by_external_id: bool = False


class VideoProvider(Protocol):
    """A hosted video provider. Implementations are async, stateless between calls and safe to
    share across tasks; they own an `httpx.AsyncClient` passed in by the composition root."""

    name: str
    capabilities: ProviderCapabilities

    async def submit(self, request: GenerationRequest, model: str) -> TaskRef: ...

    async def status(self, ref: TaskRef) -> TaskStatus: ...

    def download(self, ref: TaskRef, output: VideoOutput) -> AsyncIterator[bytes]: ...

    async def find_created(self, request: GenerationRequest, model: str) -> TaskRef | None: ...

    async def cancel(self, ref: TaskRef) -> bool: ...

    async def delete(self, ref: TaskRef) -> bool: ...

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookHint: ...
