"""`ReplicateProvider`: Replicate's predictions API (replicate.com/docs: HTTP API reference,
"Create a prediction", "Webhooks", "Verify webhooks", "Rate limits", "Data retention";
replicate-python 1.0.7 `prediction.py`, `model.py`, `webhook.py`).

Official models are run with `POST /v1/models/{owner}/{name}/predictions` `{"input": ...}`; a
pinned version (`owner/name:version`) with `POST /v1/predictions` `{"version", "input"}`. Both
take `webhook` and `webhook_events_filter`; auth is `Authorization: Bearer <token>`. Poll with
`GET /v1/predictions/{id}` (`starting`, `processing`, `succeeded`, `failed`, `canceled`;
`aborted` when it ended before starting), cancel with `POST /v1/predictions/{id}/cancel`.
`output` is a URL or a list of URLs on replicate.delivery; API prediction data (outputs
included) is removed after one hour (`data_removed: true`). Errors are problem details
(`{"title", "detail", "status"}`): 422 invalid input, 402 insufficient credit, 429
`Request was throttled. Your rate limit resets in ~30s.` Webhooks use Standard Webhooks; the
signing secret is `GET /v1/webhooks/default/secret` -> `{"key": "whsec_..."}`.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx

from shared.providers.aggregator_models import REPLICATE_WIRES, model_input
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
from shared.providers.errors import (
    FailureClass,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
)
from shared.providers.http import (
    Clock,
    HttpEdge,
    classify_response,
    decode_json,
    error_details,
    trim_raw,
    verified_event,
)

RESULT_TTL = timedelta(hours=1)
POLL_S = 3.0

_STATES = {
    "starting": TaskState.QUEUED,
    "processing": TaskState.RUNNING,
    "succeeded": TaskState.SUCCEEDED,
    "failed": TaskState.FAILED,
    "canceled": TaskState.CANCELLED,
    "aborted": TaskState.FAILED,
}
_RESETS_IN = re.compile(r"(?:resets in|available in)\s*~?\s*(\d+(?:\.\d+)?)\s*(s|second)", re.I)
_MODERATION = ("nsfw", "sensitive", "e005", "content policy", "safety", "moderation")


def retry_hint(message: str) -> float | None:
    """Seconds from Replicate's 429 wording when no Retry-After header came with it."""
    match = _RESETS_IN.search(message)
    return float(match.group(1)) if match else None


def prediction_failure(error: str | None, status: str) -> Failure:
    """Failure class of a failed prediction from its `error` text (Replicate has no codes in
    the body except the `(E###)` suffix some errors carry)."""
    text = error or f"prediction {status}"
    lowered = text.lower()
    if status == "aborted":
        return Failure(failure_class=FailureClass.PROVIDER_ERROR, message=text)
    if any(word in lowered for word in _MODERATION):
        # E005 says "input or output": treated as input (a re-roll would be paid for and fail
        # again). A model's own output checker ("NSFW content detected. Try running it
        # again...") or a message naming the output alone allows a re-roll.
        output_only = "running it again" in lowered or (
            "output" in lowered and "input" not in lowered
        )
        failure_class = (
            FailureClass.MODERATION_OUTPUT if output_only else FailureClass.MODERATION_INPUT
        )
        return Failure(failure_class=failure_class, message=text, provider_code=_code(text))
    if "timed out" in lowered or "timeout" in lowered:
        return Failure(failure_class=FailureClass.TIMEOUT, message=text, provider_code=_code(text))
    return Failure(
        failure_class=FailureClass.GENERATION_FAILED, message=text, provider_code=_code(text)
    )


def _code(text: str) -> str | None:
    match = re.search(r"\((E\d{3,5})\)", text)
    return match.group(1) if match else None


def _output_urls(output: Any) -> list[str]:
    if isinstance(output, str):
        return [output]
    if isinstance(output, list):
        return [u for u in output if isinstance(u, str)]
    return []


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


class ReplicateProvider:
    name = "replicate"
    capabilities = ProviderCapabilities(
        cancel=True, delete=False, webhooks=True, per_request_callback=True
    )

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        api_token: str,
        base_url: str,
        webhook_secret: str | None = None,
        clock: Clock = time.time,
    ) -> None:
        self._edge = HttpEdge(client, self.name, clock=clock)
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_token}"}
        self._webhook_secret = webhook_secret
        self._clock = clock

    async def _call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        response = await self._edge.call(
            method,
            self._base + path,
            headers=self._headers,
            json_body=body,
            allow_statuses=(402, 429),
        )
        if response.status_code >= 400:
            raise self._error(response)
        return decode_json(response, self.name)

    def _error(self, response: httpx.Response) -> ProviderError:
        try:
            message, _ = error_details(response.json())
        except ValueError:
            message = response.text[:300]
        if response.status_code == 402:
            return ProviderRejected(
                FailureClass.QUOTA_EXHAUSTED, f"replicate: HTTP 402: {message}", provider_code="402"
            )
        error = classify_response(response, self.name)
        if isinstance(error, ProviderUnavailable) and error.retry_after is None:
            error.retry_after = retry_hint(message)
        return error

    def create_request(self, request: GenerationRequest, model: str) -> tuple[str, dict[str, Any]]:
        """(path, body) of the create call."""
        wire = REPLICATE_WIRES.get(model)
        target = None if wire is None else (wire.image if request.image_url else wire.text)
        if wire is None or target is None:
            raise ProviderRejected(
                FailureClass.INVALID_INPUT, f"replicate: no model for {model} with this input"
            )
        if wire.resolution and request.resolution not in wire.resolution:
            raise ProviderRejected(
                FailureClass.INVALID_INPUT, f"replicate: {model} has no {request.resolution}"
            )
        body: dict[str, Any] = {
            "input": model_input(
                wire,
                prompt=request.prompt,
                duration_s=request.duration_s,
                resolution=request.resolution,
                aspect_ratio=request.aspect_ratio,
                image_url=request.image_url,
                seed=request.seed,
                negative_prompt=request.negative_prompt,
                audio=request.audio,
            )
        }
        if request.callback_url:
            body["webhook"] = request.callback_url
            body["webhook_events_filter"] = ["completed"]
        owner_name, _, version = target.partition(":")
        if version:
            return "/v1/predictions", {"version": version, **body}
        return f"/v1/models/{owner_name}/predictions", body

    async def submit(self, request: GenerationRequest, model: str) -> TaskRef:
        path, body = self.create_request(request, model)
        data = await self._call("POST", path, body)
        prediction_id = data.get("id")
        if not isinstance(prediction_id, str) or not prediction_id:
            raise ProviderUnavailable(FailureClass.PROVIDER_ERROR, "replicate: create gave no id")
        return TaskRef(provider=self.name, model=model, task_id=prediction_id)

    async def status(self, ref: TaskRef) -> TaskStatus:
        data = await self._call("GET", f"/v1/predictions/{quote(ref.task_id, safe='')}")
        return self.to_status(data)

    def to_status(self, data: Mapping[str, Any]) -> TaskStatus:
        raw_status = str(data.get("status"))
        state = _STATES.get(raw_status, TaskState.UNKNOWN)
        failure: Failure | None = None
        outputs: tuple[VideoOutput, ...] = ()
        if state is TaskState.SUCCEEDED:
            urls = _output_urls(data.get("output"))
            if data.get("data_removed") or not urls:
                state = TaskState.EXPIRED
                failure = Failure(
                    failure_class=FailureClass.RESULT_EXPIRED,
                    message="replicate: prediction output was removed (kept one hour)",
                )
            else:
                done = _parse_time(data.get("completed_at"))
                expires = done + RESULT_TTL if done else None
                outputs = tuple(
                    VideoOutput(index=i, url=u, expires_at=expires) for i, u in enumerate(urls)
                )
        elif state is TaskState.FAILED:
            failure = prediction_failure(data.get("error"), raw_status)
        elif state is TaskState.CANCELLED:
            failure = Failure(failure_class=FailureClass.CANCELLED, message="prediction canceled")
        return TaskStatus(
            state=state,
            raw_status=raw_status,
            progress=1.0 if state is TaskState.SUCCEEDED else None,
            outputs=outputs,
            failure=failure,
            poll_after_s=None if state.terminal else POLL_S,
            raw=trim_raw(dict(data)),
        )

    async def download(self, ref: TaskRef, output: VideoOutput) -> AsyncIterator[bytes]:
        if not output.url:
            raise ProviderRejected(FailureClass.INVALID_INPUT, "replicate: output has no URL")
        # replicate.delivery URLs are public until the prediction's data is removed.
        async for chunk in self._edge.stream(output.url, expires_at=output.expires_at):
            yield chunk

    async def find_created(self, request: GenerationRequest, model: str) -> TaskRef | None:
        return None  # predictions take no client request id: a lost answer cannot be found

    async def cancel(self, ref: TaskRef) -> bool:
        try:
            await self._call("POST", f"/v1/predictions/{quote(ref.task_id, safe='')}/cancel")
        except ProviderRejected as exc:
            if exc.failure_class is FailureClass.NOT_FOUND:
                return False
            raise
        return True

    async def delete(self, ref: TaskRef) -> bool:
        return False  # the API removes prediction data itself after an hour

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookHint:
        event = verified_event(self.name, self._webhook_secret, headers, body, self._clock)
        prediction_id = event.get("id")
        if not isinstance(prediction_id, str) or not prediction_id:
            raise ProviderRejected(FailureClass.INVALID_INPUT, "replicate: webhook has no id")
        raw_status = str(event.get("status"))
        return WebhookHint(
            provider=self.name,
            task_id=prediction_id,
            event_type=f"prediction.{raw_status}",
            raw_status=raw_status,
        )
