"""`RunwayProvider`: Runway's developer API (runwayml-python `resources/`, `types/`).

Create with `POST /v1/text_to_video` or `/v1/image_to_video` (camelCase body, discriminated on
`model`), poll `GET /v1/tasks/{id}`, cancel-or-delete with `DELETE /v1/tasks/{id}`. Every call
carries `X-Runway-Version: 2024-11-06`. Result URLs are signed and expire (24-48 h); a fresh
GET of the task signs them again, so a refused download re-fetches the task once.
Runway asks clients not to poll a task more often than every 5 s.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
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
from shared.providers.catalog import find_model
from shared.providers.errors import (
    FailureClass,
    ProviderRejected,
    ProviderUnavailable,
)
from shared.providers.http import Clock, HttpEdge, trim_raw

API_VERSION = "2024-11-06"
MIN_POLL_S = 5.0
DEFAULT_RESULT_TTL_S = 86_400

_STATES = {
    "PENDING": TaskState.QUEUED,
    "THROTTLED": TaskState.THROTTLED,
    "RUNNING": TaskState.RUNNING,
    "SUCCEEDED": TaskState.SUCCEEDED,
    "FAILED": TaskState.FAILED,
    "CANCELLED": TaskState.CANCELLED,
}
_RATIOS = {"16:9": "1280:720", "9:16": "720:1280", "1:1": "960:960"}
_FAILURE_PREFIXES: tuple[tuple[str, FailureClass], ...] = (
    ("SAFETY.INPUT", FailureClass.MODERATION_INPUT),
    ("SAFETY.OUTPUT", FailureClass.MODERATION_OUTPUT),
    ("INTERNAL.BAD_OUTPUT", FailureClass.GENERATION_FAILED),
    ("ASSET.INVALID", FailureClass.INVALID_INPUT),
    ("INPUT_PREPROCESSING", FailureClass.INVALID_INPUT),
)


def failure_class_for(code: str | None) -> FailureClass:
    for prefix, failure_class in _FAILURE_PREFIXES:
        if code and code.upper().startswith(prefix):
            return failure_class
    return FailureClass.GENERATION_FAILED


def create_body(request: GenerationRequest, model: str) -> tuple[str, dict[str, Any]]:
    """(path, body) of the create call."""
    ratio = _RATIOS.get(request.aspect_ratio)
    if (
        request.resolution != "720p"
        or ratio is None
        or (request.aspect_ratio == "1:1" and not request.image_url)
    ):
        raise ProviderRejected(
            FailureClass.INVALID_INPUT,
            f"runway: {model} has no {request.resolution} {request.aspect_ratio} output",
        )
    body: dict[str, Any] = {
        "model": model,
        "promptText": request.prompt,
        "ratio": ratio,
        "duration": request.duration_s,
    }
    if request.seed is not None:
        body["seed"] = request.seed
    if request.image_url:
        body["promptImage"] = request.image_url
        return "/v1/image_to_video", body
    return "/v1/text_to_video", body


class RunwayProvider:
    name = "runway"
    capabilities = ProviderCapabilities(
        cancel=True, delete=True, webhooks=False, per_request_callback=False
    )

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        api_key: str,
        base_url: str,
        clock: Clock = time.time,
    ) -> None:
        self._edge = HttpEdge(client, self.name, clock=clock)
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}", "X-Runway-Version": API_VERSION}
        self._clock = clock

    async def submit(self, request: GenerationRequest, model: str) -> TaskRef:
        path, body = create_body(request, model)
        data, _ = await self._edge.call_json(
            "POST", self._base + path, headers=self._headers, json_body=body
        )
        task_id = data.get("id")
        if not isinstance(task_id, str) or not task_id:
            raise ProviderUnavailable(
                FailureClass.PROVIDER_ERROR, "runway: create answered no id", outcome_unknown=True
            )
        return TaskRef(provider=self.name, model=model, task_id=task_id)

    async def _task(self, ref: TaskRef) -> dict[str, Any]:
        data, _ = await self._edge.call_json(
            "GET", f"{self._base}/v1/tasks/{quote(ref.task_id, safe='')}", headers=self._headers
        )
        return data

    async def status(self, ref: TaskRef) -> TaskStatus:
        return self.to_status(await self._task(ref), ref)

    def to_status(self, data: dict[str, Any], ref: TaskRef) -> TaskStatus:
        raw_status = str(data.get("status"))
        state = _STATES.get(raw_status, TaskState.UNKNOWN)
        progress = data.get("progress")
        if isinstance(progress, int | float):
            # The SDK types it as a float; treat values above 1 as a percentage to be safe.
            progress = min(max(progress / 100 if progress > 1 else progress, 0.0), 1.0)
        else:
            progress = None
        failure = None
        if state is TaskState.FAILED:
            code = data.get("failureCode")
            failure = Failure(
                failure_class=failure_class_for(code),
                message=str(data.get("failure") or "task failed"),
                provider_code=code,
            )
        elif state is TaskState.CANCELLED:
            failure = Failure(failure_class=FailureClass.CANCELLED, message="task was cancelled")
        return TaskStatus(
            state=state,
            raw_status=raw_status,
            progress=1.0 if state is TaskState.SUCCEEDED else progress,
            outputs=self._outputs(data, ref) if state is TaskState.SUCCEEDED else (),
            failure=failure,
            poll_after_s=None if state.terminal else MIN_POLL_S,
            raw=trim_raw(data),
        )

    def _outputs(self, data: dict[str, Any], ref: TaskRef) -> tuple[VideoOutput, ...]:
        spec = find_model(self.name, ref.model)
        ttl = spec.result_ttl_s if spec else DEFAULT_RESULT_TTL_S
        # URLs are signed when the task is fetched, so they live `ttl` from now at the earliest.
        expires = datetime.fromtimestamp(self._clock(), tz=UTC) + timedelta(seconds=ttl)
        return tuple(
            VideoOutput(index=i, url=url, expires_at=expires)
            for i, url in enumerate(data.get("output") or [])
            if isinstance(url, str)
        )

    async def download(self, ref: TaskRef, output: VideoOutput) -> AsyncIterator[bytes]:
        url = output.url
        for attempt in (1, 2):
            if url is None:
                break
            try:
                async for chunk in self._edge.stream(url, signed_url=True):
                    yield chunk
                return
            except ProviderRejected as exc:
                if exc.failure_class is not FailureClass.RESULT_EXPIRED or attempt == 2:
                    raise
            url = await self._fresh_url(ref, output.index)
        raise ProviderRejected(
            FailureClass.RESULT_EXPIRED, "runway: task no longer has that output"
        )

    async def _fresh_url(self, ref: TaskRef, index: int) -> str | None:
        try:
            outputs = (await self._task(ref)).get("output") or []
        except ProviderRejected as exc:
            if exc.failure_class is FailureClass.NOT_FOUND:
                return None
            raise
        return outputs[index] if index < len(outputs) else None

    async def find_created(self, request: GenerationRequest, model: str) -> TaskRef | None:
        return None  # the create takes no idempotency key or client id (see base.py)

    async def cancel(self, ref: TaskRef) -> bool:
        """DELETE cancels a pending/running task and deletes a finished one."""
        response = await self._edge.call(
            "DELETE",
            f"{self._base}/v1/tasks/{quote(ref.task_id, safe='')}",
            headers={**self._headers, "Accept": "*/*"},
            allow_statuses=(404,),
        )
        return response.status_code < 400

    async def delete(self, ref: TaskRef) -> bool:
        return await self.cancel(ref)

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookHint:
        raise ProviderRejected(FailureClass.INVALID_INPUT, "runway: Runway sends no webhooks")
