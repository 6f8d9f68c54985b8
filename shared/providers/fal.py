"""`FalProvider`: fal's queue API (docs.fal.ai "Queue", "Webhooks", "Model Errors", "Request
Error Types"; fal-client 1.0.3 `client.py`).

Submit with `POST {queue}/{endpoint_id}` (`Authorization: Key <key>`, the body is the model's
input, an optional `?fal_webhook=<url>`); the answer carries `request_id`. Status, result and
cancel live under the app id (the first two segments of the endpoint id, no subpath):
`GET {queue}/{app}/requests/{id}/status` answers `IN_QUEUE` (with `queue_position`),
`IN_PROGRESS` or `COMPLETED` (with `error` / `error_type` when it failed);
`GET {queue}/{app}/requests/{id}` is the result (`{"video": {"url": ...}}`), or the stored
error with its status code; `PUT .../cancel` answers 202 `CANCELLATION_REQUESTED` or 400
`ALREADY_COMPLETED`. Errors are `{"detail": [ {loc, msg, type} ]}` (model errors, 422 for
`content_policy_violation`) or `{"detail": str, "error_type": str}` (request errors, also in
`X-Fal-Error-Type`). Webhooks are signed with ED25519 keys published as a JWKS.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from shared.providers.aggregator_models import FAL_WIRES, model_input
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
from shared.providers.errors import FailureClass, ProviderRejected, ProviderUnavailable
from shared.providers.fal_webhooks import FalWebhookVerifier
from shared.providers.http import Clock, HttpEdge, classify_response, decode_json, trim_raw

DEFAULT_RESULT_TTL_S = 7 * 86_400
POLL_QUEUED_S = 5.0
POLL_RUNNING_S = 3.0

# A failed request's result answers with the stored error's status (fal docs, "Model Errors").
_STORED_ERRORS = (400, 422, 500, 502, 503, 504)
_STATES = {
    "IN_QUEUE": TaskState.QUEUED,
    "IN_PROGRESS": TaskState.RUNNING,
}
# error_type (request errors, model errors) -> failure class
_ERROR_TYPES: dict[str, FailureClass] = {
    "request_timeout": FailureClass.TIMEOUT,
    "startup_timeout": FailureClass.TIMEOUT,
    "runner_scheduling_failure": FailureClass.PROVIDER_ERROR,
    "runner_connection_timeout": FailureClass.PROVIDER_ERROR,
    "runner_disconnected": FailureClass.PROVIDER_ERROR,
    "runner_connection_refused": FailureClass.PROVIDER_ERROR,
    "runner_connection_error": FailureClass.PROVIDER_ERROR,
    "runner_incomplete_response": FailureClass.PROVIDER_ERROR,
    "runner_server_error": FailureClass.GENERATION_FAILED,
    "internal_error": FailureClass.PROVIDER_ERROR,
    "client_cancelled": FailureClass.CANCELLED,
    "client_disconnected": FailureClass.CANCELLED,
    "bad_request": FailureClass.INVALID_INPUT,
}


def app_id(endpoint_id: str) -> str:
    """`fal-ai/minimax/hailuo-02/pro/text-to-video` -> `fal-ai/minimax` (status/result path)."""
    return "/".join(endpoint_id.split("/")[:2])


def detail_errors(body: Any) -> list[dict[str, Any]]:
    detail = body.get("detail") if isinstance(body, dict) else None
    return [d for d in detail if isinstance(d, dict)] if isinstance(detail, list) else []


def classify_detail(body: Any, status: int, error_type: str | None) -> tuple[FailureClass, str]:
    """(failure class, message) of a failed request's stored error body."""
    errors = detail_errors(body)
    for err in errors:
        if err.get("type") == "content_policy_violation":
            loc = err.get("loc") or []
            # loc ["body", <field>] names an input; anything else is the model's own output
            # check ("model_moderated" output filtering).
            output = "model_moderated" in (err.get("categories") or []) or (
                not loc or loc[0] != "body"
            )
            kind = FailureClass.MODERATION_OUTPUT if output else FailureClass.MODERATION_INPUT
            return kind, str(err.get("msg") or "content policy violation")
    message = "; ".join(str(e.get("msg")) for e in errors) or (
        str(body.get("detail")) if isinstance(body, dict) and body.get("detail") else "failed"
    )
    if error_type in _ERROR_TYPES:
        return _ERROR_TYPES[error_type], message
    if errors or status == 422:
        return FailureClass.INVALID_INPUT, message
    return FailureClass.GENERATION_FAILED, message


def locked_account(exc: ProviderRejected) -> ProviderRejected:
    """fal answers 403 "User is locked. Reason: Exhausted balance..." when the prepaid balance is
    used up: that is quota, not a credentials problem (both fall back; only the label differs,
    and the label is what an operator alerts on)."""
    if exc.failure_class is FailureClass.AUTH and "balance" in exc.message.lower():
        return ProviderRejected(
            FailureClass.QUOTA_EXHAUSTED, exc.message, provider_code=exc.provider_code
        )
    return exc


class FalProvider:
    name = "fal"
    capabilities = ProviderCapabilities(
        cancel=True, delete=False, webhooks=True, per_request_callback=True
    )

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        api_key: str,
        queue_base_url: str,
        webhook_jwks: str | None = None,
        clock: Clock = time.time,
    ) -> None:
        self._edge = HttpEdge(client, self.name, clock=clock)
        self._base = queue_base_url.rstrip("/")
        self._headers = {"Authorization": f"Key {api_key}"}
        self._clock = clock
        self._verifier = FalWebhookVerifier(webhook_jwks, clock)

    def _request_url(self, ref: TaskRef, suffix: str = "") -> str:
        app = ref.extra.get("app") or app_id(ref.model)
        return f"{self._base}/{app}/requests/{quote(ref.task_id, safe='')}{suffix}"

    async def submit(self, request: GenerationRequest, model: str) -> TaskRef:
        wire = FAL_WIRES.get(model)
        endpoint = None if wire is None else (wire.image if request.image_url else wire.text)
        if wire is None or endpoint is None:
            raise ProviderRejected(
                FailureClass.INVALID_INPUT, f"fal: no endpoint for {model} with this input"
            )
        if request.resolution not in wire.resolution and wire.resolution:
            raise ProviderRejected(
                FailureClass.INVALID_INPUT, f"fal: {model} has no {request.resolution} output"
            )
        body = model_input(
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
        url = f"{self._base}/{endpoint}"
        if request.callback_url:
            url += "?" + urlencode({"fal_webhook": request.callback_url})
        try:
            data, _ = await self._edge.call_json("POST", url, headers=self._headers, json_body=body)
        except ProviderRejected as exc:
            raise locked_account(exc) from exc
        request_id = data.get("request_id")
        if not isinstance(request_id, str) or not request_id:
            raise ProviderUnavailable(FailureClass.PROVIDER_ERROR, "fal: submit gave no request_id")
        return TaskRef(
            provider=self.name,
            model=model,
            task_id=request_id,
            extra={"app": app_id(endpoint), "endpoint": endpoint},
        )

    async def status(self, ref: TaskRef) -> TaskStatus:
        data, _ = await self._edge.call_json(
            "GET", self._request_url(ref, "/status"), headers=self._headers
        )
        raw_status = str(data.get("status"))
        if raw_status != "COMPLETED":
            state = _STATES.get(raw_status, TaskState.UNKNOWN)
            return TaskStatus(
                state=state,
                raw_status=raw_status,
                poll_after_s=POLL_QUEUED_S if state is TaskState.QUEUED else POLL_RUNNING_S,
                raw=trim_raw(data),
            )
        return await self._completed(ref, data)

    async def _completed(self, ref: TaskRef, status_data: dict[str, Any]) -> TaskStatus:
        response = await self._edge.call(
            "GET", self._request_url(ref), headers=self._headers, allow_statuses=_STORED_ERRORS
        )
        failed = bool(status_data.get("error"))
        if response.status_code >= 500 and not failed:
            raise classify_response(response, self.name)  # the gateway itself failed: retry
        if response.status_code >= 400 or failed:
            return self._failed(status_data, response)
        result = decode_json(response, self.name)
        return TaskStatus(
            state=TaskState.SUCCEEDED,
            raw_status="COMPLETED",
            progress=1.0,
            outputs=self._outputs(result, ref),
            raw=trim_raw(result),
        )

    def _failed(self, status_data: dict[str, Any], response: httpx.Response) -> TaskStatus:
        error_type = status_data.get("error_type") or response.headers.get("x-fal-error-type")
        try:
            body: Any = json.loads(response.content) if response.status_code >= 400 else {}
        except ValueError:
            body = {"detail": response.text[:300]}
        failure_class, message = classify_detail(body, response.status_code, error_type)
        cancelled = failure_class is FailureClass.CANCELLED
        return TaskStatus(
            state=TaskState.CANCELLED if cancelled else TaskState.FAILED,
            raw_status="COMPLETED",
            failure=Failure(
                failure_class=failure_class,
                message=f"fal: {status_data.get('error') or message}",
                provider_code=error_type,
            ),
            raw=trim_raw({"status": status_data, "result": body}),
        )

    def _outputs(self, result: dict[str, Any], ref: TaskRef) -> tuple[VideoOutput, ...]:
        video = result.get("video")
        if not isinstance(video, dict) or not isinstance(video.get("url"), str):
            raise ProviderUnavailable(FailureClass.PROVIDER_ERROR, "fal: result has no video.url")
        spec = find_model(self.name, ref.model)
        ttl = spec.result_ttl_s if spec else DEFAULT_RESULT_TTL_S
        expires = datetime.fromtimestamp(self._clock(), tz=UTC) + timedelta(seconds=ttl)
        mime = str(video.get("content_type") or "video/mp4")
        return (VideoOutput(index=0, url=video["url"], expires_at=expires, mime_type=mime),)

    async def download(self, ref: TaskRef, output: VideoOutput) -> AsyncIterator[bytes]:
        if not output.url:
            raise ProviderRejected(FailureClass.INVALID_INPUT, "fal: output has no URL")
        # fal CDN files are public URLs: no credentials are sent with the download.
        async for chunk in self._edge.stream(output.url, expires_at=output.expires_at):
            yield chunk

    async def find_created(self, request: GenerationRequest, model: str) -> TaskRef | None:
        return None  # the queue API takes no client request id: a lost answer cannot be found

    async def cancel(self, ref: TaskRef) -> bool:
        response = await self._edge.call(
            "PUT",
            self._request_url(ref, "/cancel"),
            headers=self._headers,
            allow_statuses=(400, 404),
        )
        return response.status_code < 400

    async def delete(self, ref: TaskRef) -> bool:
        return False

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookHint:
        event = self._verifier.verify(headers, body)
        request_id = event.get("request_id")
        if not isinstance(request_id, str) or not request_id:
            raise ProviderRejected(FailureClass.INVALID_INPUT, "fal: webhook has no request_id")
        raw_status = str(event.get("status"))
        return WebhookHint(
            provider=self.name,
            task_id=request_id,
            event_type=f"request.{raw_status.lower()}",
            raw_status=raw_status,
        )
