"""`OpenAIVideosProvider`: OpenAI's Videos API (Sora 2) or any OpenAI-compatible gateway.

Wire contract (openai-python `resources/videos.py`, spec `CreateVideoJsonBody`): POST /videos
with a JSON body (`seconds` and `size` are string enums, `input_reference` is
`{"image_url": ...}`), GET /videos/{id}, GET /videos/{id}/content for the bytes (an
authenticated endpoint, not a signed URL), DELETE /videos/{id} for completed or failed videos.
There is no cancel. The poll hint comes in the `openai-poll-after-ms` header.

OpenAI shut Sora 2 and /v1/videos down on api.openai.com on 2026-09-24, so `submit` refuses
`sora-2*` there with MODEL_RETIRED; other base URLs (gateways, the emulator) are allowed.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

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
from shared.providers.http import Clock, HttpEdge, from_unix, trim_raw, verified_event

RETIRED_HOST = "api.openai.com"
RETIRED_ON = "2026-09-24"
WEBHOOK_EVENTS = frozenset({"video.completed", "video.failed"})

_STATES = {
    "queued": TaskState.QUEUED,
    "in_progress": TaskState.RUNNING,
    "completed": TaskState.SUCCEEDED,
    "failed": TaskState.FAILED,
}
_SIZES = {
    ("720p", "16:9"): "1280x720",
    ("720p", "9:16"): "720x1280",
    ("1080p", "16:9"): "1920x1080",
    ("1080p", "9:16"): "1080x1920",
}
_MODERATION_HINTS = ("moderation", "safety", "policy", "blocked", "content_filter")


def video_size(request: GenerationRequest, model: str) -> str:
    size = _SIZES.get((request.resolution, request.aspect_ratio))
    if size is None:
        raise ProviderRejected(
            FailureClass.INVALID_INPUT,
            f"openai: no size for {request.resolution} {request.aspect_ratio}",
        )
    if request.resolution == "1080p" and not model.startswith("sora-2-pro"):
        raise ProviderRejected(FailureClass.INVALID_INPUT, f"openai: {model} has no 1080p size")
    return size


def failure_from_error(error: Mapping[str, Any] | None) -> Failure:
    code = str((error or {}).get("code") or "unknown")
    message = str((error or {}).get("message") or "video generation failed")
    words = f"{code} {message}".lower()
    failure_class = (
        FailureClass.MODERATION_OUTPUT
        if any(hint in words for hint in _MODERATION_HINTS)
        else FailureClass.GENERATION_FAILED
    )
    return Failure(failure_class=failure_class, message=message, provider_code=code)


class OpenAIVideosProvider:
    name = "openai"
    capabilities = ProviderCapabilities(
        cancel=False, delete=True, webhooks=True, per_request_callback=False
    )

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        api_key: str,
        base_url: str,
        organization: str | None = None,
        project: str | None = None,
        webhook_secret: str | None = None,
        clock: Clock = time.time,
    ) -> None:
        self._edge = HttpEdge(client, self.name, clock=clock)
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"}
        if organization:
            self._headers["OpenAI-Organization"] = organization
        if project:
            self._headers["OpenAI-Project"] = project
        self._webhook_secret = webhook_secret
        self._clock = clock

    def _url(self, video_id: str, suffix: str = "") -> str:
        return f"{self._base}/videos/{quote(video_id, safe='')}{suffix}"

    def _check_retirement(self, model: str) -> None:
        if urlsplit(self._base).hostname == RETIRED_HOST and model.startswith("sora-2"):
            raise ProviderRejected(
                FailureClass.MODEL_RETIRED,
                f"openai: {model} and the Videos API were shut down on {RETIRED_HOST} on "
                f"{RETIRED_ON}; point OPENAI_BASE_URL at an OpenAI-compatible gateway instead",
            )

    async def submit(self, request: GenerationRequest, model: str) -> TaskRef:
        self._check_retirement(model)
        body: dict[str, Any] = {
            "prompt": request.prompt,
            "model": model,
            "seconds": str(request.duration_s),
            "size": video_size(request, model),
        }
        if request.image_url:
            body["input_reference"] = {"image_url": request.image_url}
        data, _ = await self._edge.call_json(
            "POST", f"{self._base}/videos", headers=self._headers, json_body=body
        )
        video_id = data.get("id")
        if not isinstance(video_id, str) or not video_id:
            raise ProviderUnavailable(
                FailureClass.PROVIDER_ERROR, "openai: create answered no id", outcome_unknown=True
            )
        return TaskRef(provider=self.name, model=model, task_id=video_id)

    async def status(self, ref: TaskRef) -> TaskStatus:
        data, response = await self._edge.call_json(
            "GET", self._url(ref.task_id), headers=self._headers
        )
        return self.to_status(data, ref, response.headers.get("openai-poll-after-ms"))

    def to_status(
        self, data: dict[str, Any], ref: TaskRef, poll_after_ms: str | None
    ) -> TaskStatus:
        raw_status = str(data.get("status"))
        state = _STATES.get(raw_status, TaskState.UNKNOWN)
        progress = data.get("progress")
        outputs: tuple[VideoOutput, ...] = ()
        if state is TaskState.SUCCEEDED:
            outputs = (
                VideoOutput(
                    url=self._url(ref.task_id, "/content"),
                    expires_at=from_unix(data.get("expires_at")),
                ),
            )
        return TaskStatus(
            state=state,
            raw_status=raw_status,
            progress=None if progress is None else min(max(float(progress) / 100, 0.0), 1.0),
            outputs=outputs,
            failure=failure_from_error(data.get("error")) if state is TaskState.FAILED else None,
            poll_after_s=(
                int(poll_after_ms) / 1000 if poll_after_ms and poll_after_ms.isdigit() else None
            ),
            raw=trim_raw(data),
        )

    async def download(self, ref: TaskRef, output: VideoOutput) -> AsyncIterator[bytes]:
        url = output.url or self._url(ref.task_id, "/content")
        headers = {**self._headers, "Accept": "application/binary"}
        async for chunk in self._edge.stream(url, headers=headers, expires_at=output.expires_at):
            yield chunk

    async def find_created(self, request: GenerationRequest, model: str) -> TaskRef | None:
        return None  # POST /videos takes no idempotency key or client id (see base.py)

    async def cancel(self, ref: TaskRef) -> bool:
        return False  # the Videos API has no cancel; DELETE only works on finished videos

    async def delete(self, ref: TaskRef) -> bool:
        response = await self._edge.call(
            "DELETE", self._url(ref.task_id), headers=self._headers, allow_statuses=(404,)
        )
        return response.status_code < 400

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookHint:
        event = verified_event(self.name, self._webhook_secret, headers, body, self._clock)
        event_type = str(event.get("type"))
        task_id = (event.get("data") or {}).get("id")
        if event_type not in WEBHOOK_EVENTS or not isinstance(task_id, str):
            raise ProviderRejected(
                FailureClass.INVALID_INPUT, f"openai: ignored webhook event {event_type!r}"
            )
        return WebhookHint(provider=self.name, task_id=task_id, event_type=event_type)
