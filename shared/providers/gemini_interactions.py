"""Video models on the Gemini API's Interactions API (`gemini-omni-*`), `InteractionsVideo`.

The wire contract, as far as it is verified (google-genai 3.6.1, `google/genai/_gaos`: the
generated `interactions` resource and its types; see services/emulator/README.md for the list
of what is and is not verified):

* create: `POST {base}/v1beta/interactions` with `x-goog-api-key`; body `model`, `input` (a
  string, or content blocks `{"type": "text"|"image", ...}`), `background: true` (run as a
  stored background interaction, answered at once with its `id` and `status`),
  `response_format: {"type": "video", aspect_ratio, resolution, duration, delivery}` and
  `webhook_config: {uris, user_metadata}`.
* poll: `GET {base}/v1beta/interactions/{id}`; `status` is one of queued, in_progress,
  completed, failed, cancelled, incomplete, budget_exceeded, requires_action,
  requires_continuation, idle. The video is the `{"type": "video"}` block of the last
  `model_output` step: inline base64 `data` or a `uri`. Failures are in `errors[]` (`code` is a
  string, `message`) or in the step's `error` (a `google.rpc.Status`).
* cancel: `POST .../interactions/{id}/cancel`; delete: `DELETE .../interactions/{id}`.
* errors: `{"error": {"code": <string>, "message": ...}}`. A 429 may carry
  `google.rpc.RetryInfo` in `error.details` (Google's convention; parsed when present).
"""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal
from urllib.parse import quote

import httpx

from shared.providers.base import (
    Failure,
    GenerationRequest,
    ProviderCapabilities,
    TaskRef,
    TaskState,
    TaskStatus,
    VideoOutput,
    WebhookHint,
)
from shared.providers.errors import FailureClass, ProviderRejected, ProviderUnavailable
from shared.providers.http import (
    Clock,
    HttpEdge,
    decode_json,
    iter_b64_chunks,
    same_origin,
    trim_raw,
    verified_event,
)
from shared.providers.veo import grpc_failure, image_instance

SURFACE = "interactions"
Delivery = Literal["inline", "uri"]

STATES: dict[str, TaskState] = {
    "queued": TaskState.QUEUED,
    "in_progress": TaskState.RUNNING,
    "completed": TaskState.SUCCEEDED,
    "failed": TaskState.FAILED,
    "cancelled": TaskState.CANCELLED,
    "incomplete": TaskState.FAILED,
    "budget_exceeded": TaskState.FAILED,
}
WEBHOOK_EVENTS = frozenset({"interaction.completed", "interaction.failed", "interaction.cancelled"})
_SAFETY_WORDS = ("safety", "policy", "blocked", "prohibited", "responsible ai", "rai")
_INPUT_WORDS = ("prompt", "input", "image", "request")


def is_interactions_model(model: str) -> bool:
    """Gemini API video models served only by the Interactions API (not predictLongRunning)."""
    return model.startswith("gemini-omni")


def request_body(request: GenerationRequest, model: str, delivery: Delivery) -> dict[str, Any]:
    video_format: dict[str, Any] = {
        "type": "video",
        "aspect_ratio": request.aspect_ratio,
        "resolution": request.resolution,
        # google.protobuf.Duration's JSON form; the SDK types this field only as a string.
        "duration": f"{request.duration_s}s",
        "delivery": delivery,
    }
    content: str | list[dict[str, str]] = request.prompt
    if request.image_url:
        image = image_instance(request.image_url, "gemini")
        content = [
            {"type": "text", "text": request.prompt},
            {"type": "image", "data": image["bytesBase64Encoded"], "mime_type": image["mimeType"]},
        ]
    body: dict[str, Any] = {
        "model": model,
        "input": content,
        "background": True,
        "response_format": video_format,
    }
    if request.callback_url:
        body["webhook_config"] = {"uris": [request.callback_url]}
        if request.external_id:
            body["webhook_config"]["user_metadata"] = {"external_id": request.external_id}
    return body


def video_blocks(interaction: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The video blocks of the last model_output steps after the last user_input (the SDK's
    `output_video` takes the last of these)."""
    found: list[dict[str, Any]] = []
    for step in reversed(interaction.get("steps") or []):
        if not isinstance(step, dict) or step.get("type") == "user_input":
            break
        if step.get("type") != "model_output":
            continue
        blocks = [c for c in step.get("content") or [] if isinstance(c, dict)]
        found[:0] = [c for c in blocks if c.get("type") == "video"]
    return [b for b in found if b.get("data") or b.get("uri")]


def interaction_failure(interaction: Mapping[str, Any], raw_status: str) -> Failure:
    for step in interaction.get("steps") or []:
        if isinstance(step, dict) and isinstance(step.get("error"), dict):
            return grpc_failure(step["error"])
    errors = [e for e in interaction.get("errors") or [] if isinstance(e, dict)]
    message = "; ".join(str(e.get("message") or e.get("code")) for e in errors)
    code = next((str(e["code"]) for e in errors if e.get("code")), raw_status)
    lowered = f"{message} {code}".lower()
    if any(word in lowered for word in _SAFETY_WORDS):
        input_side = any(word in lowered for word in _INPUT_WORDS)
        failure_class = (
            FailureClass.MODERATION_INPUT if input_side else (FailureClass.MODERATION_OUTPUT)
        )
    else:
        failure_class = FailureClass.GENERATION_FAILED
    return Failure(
        failure_class=failure_class,
        message=message or f"interaction ended {raw_status} without a video",
        provider_code=code,
    )


def interaction_status(interaction: dict[str, Any]) -> TaskStatus:
    raw_status = str(interaction.get("status") or "")
    state = STATES.get(raw_status, TaskState.UNKNOWN)
    raw = trim_raw(interaction)
    if state is TaskState.SUCCEEDED:
        outputs = tuple(
            VideoOutput(
                index=i, url=block.get("uri"), mime_type=block.get("mime_type", "video/mp4")
            )
            for i, block in enumerate(video_blocks(interaction))
        )
        if outputs:
            return TaskStatus(state=state, raw_status=raw_status, outputs=outputs, raw=raw)
        state = TaskState.FAILED
    if state is TaskState.FAILED:
        failure = interaction_failure(interaction, raw_status)
        return TaskStatus(state=state, raw_status=raw_status, failure=failure, raw=raw)
    return TaskStatus(state=state, raw_status=raw_status, raw=raw)


class InteractionsVideo:
    """`gemini-omni-*` video on the Gemini Developer API's Interactions API."""

    name = "gemini"
    capabilities = ProviderCapabilities(
        cancel=True, delete=True, webhooks=True, per_request_callback=True
    )

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        api_key: str,
        base_url: str,
        webhook_secret: str | None = None,
        delivery: Delivery = "inline",
        clock: Clock = time.time,
    ) -> None:
        self._edge = HttpEdge(client, self.name, clock=clock)
        self._base = base_url.rstrip("/")
        self._headers = {"x-goog-api-key": api_key}
        self._webhook_secret = webhook_secret
        self._delivery: Delivery = delivery
        self._clock = clock

    def _url(self, interaction_id: str = "", suffix: str = "") -> str:
        path = f"/{quote(interaction_id, safe='')}" if interaction_id else ""
        return f"{self._base}/v1beta/interactions{path}{suffix}"

    async def _call(self, method: str, url: str, json_body: Any = None) -> httpx.Response:
        # Error statuses are classified by HttpEdge; a Google 429's wait comes from the body's
        # google.rpc.RetryInfo there (Google sends no Retry-After header).
        return await self._edge.call(method, url, headers=self._headers, json_body=json_body)

    async def _get(self, ref: TaskRef) -> dict[str, Any]:
        response = await self._call("GET", self._url(ref.task_id))
        return _json_object(response)

    async def submit(self, request: GenerationRequest, model: str) -> TaskRef:
        body = request_body(request, model, self._delivery)
        data = _json_object(await self._call("POST", self._url(), body))
        interaction_id = data.get("id")
        if not isinstance(interaction_id, str) or not interaction_id:
            raise ProviderUnavailable(
                FailureClass.PROVIDER_ERROR, "gemini: create answered no interaction id"
            )
        return TaskRef(
            provider=self.name, model=model, task_id=interaction_id, extra={"surface": SURFACE}
        )

    async def status(self, ref: TaskRef) -> TaskStatus:
        return interaction_status(await self._get(ref))

    async def download(self, ref: TaskRef, output: VideoOutput) -> AsyncIterator[bytes]:
        if output.url:
            # The key goes only to the API's own origin, never to a URI on another host.
            headers = self._headers if same_origin(output.url, self._base) else {}
            async for chunk in self._edge.stream(
                output.url, headers=headers, expires_at=output.expires_at
            ):
                yield chunk
            return
        # Inline results come whole in the interaction; decode in slices so the decoded copy
        # is never held in one piece.
        blocks = video_blocks(await self._get(ref))
        if output.index >= len(blocks) or not blocks[output.index].get("data"):
            raise ProviderRejected(
                FailureClass.RESULT_EXPIRED, f"gemini: inline video {output.index} is gone"
            )
        for piece in iter_b64_chunks(str(blocks[output.index]["data"])):
            yield base64.b64decode(piece)

    async def find_created(self, request: GenerationRequest, model: str) -> TaskRef | None:
        return None  # interactions take no client request id: a lost answer cannot be found

    async def cancel(self, ref: TaskRef) -> bool:
        await self._call("POST", self._url(ref.task_id, "/cancel"))
        return True

    async def delete(self, ref: TaskRef) -> bool:
        try:
            await self._call("DELETE", self._url(ref.task_id))
        except ProviderRejected as exc:
            if exc.failure_class is FailureClass.NOT_FOUND:
                return True
            raise
        return True

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookHint:
        """Static project webhooks, signed with Standard Webhooks (the SDK lists the events
        `interaction.completed` / `interaction.failed`). The payload is not in the SDK: the id
        is read from `data.id` / `data.interaction_id` / `data.name`, and the poller confirms."""
        event = verified_event(self.name, self._webhook_secret, headers, body, self._clock)
        return interaction_hint(event)


def interaction_hint(event: Mapping[str, Any]) -> WebhookHint:
    event_type = str(event.get("type"))
    data = event.get("data") or {}
    task_id = next(
        (
            data[k]
            for k in ("id", "interaction_id", "name")
            if isinstance(data, dict) and data.get(k)
        ),
        None,
    )
    if event_type not in WEBHOOK_EVENTS or not isinstance(task_id, str):
        raise ProviderRejected(
            FailureClass.INVALID_INPUT, f"gemini: ignored webhook event {event_type!r}"
        )
    task_id = task_id.removeprefix("interactions/")
    return WebhookHint(
        provider="gemini",
        task_id=task_id,
        event_type=event_type,
        raw_status=event_type.partition(".")[2],
    )


def _json_object(response: httpx.Response) -> dict[str, Any]:
    return decode_json(response, "gemini")
