"""`KlingProvider`: Kling AI's video API (docs mirror `apiReference/commonInfo`,
`callbackProtocol`; no official machine-readable spec exists).

Auth is a short-lived HS256 JWT `{"iss": access key, "exp": now+1800, "nbf": now-5}` signed
with the secret key, cached until a minute before it expires. Every answer is an envelope
`{code, message, request_id, data}`; a non-zero `code` is an error even under HTTP 200, and
the code (not the HTTP status) decides the failure class. Tasks live under
`/v1/videos/{text2video|image2video}/{task_id}`, so the kind is kept in `TaskRef.extra`.
Timestamps are Unix milliseconds; result URLs are kept for 30 days.
"""

from __future__ import annotations

import json
import threading
import time
import warnings
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import jwt
from jwt.warnings import InsecureKeyLengthWarning

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
    parse_retry_after,
    trim_raw,
)

TOKEN_TTL_S = 1800
TOKEN_REFRESH_MARGIN_S = 60
RESULT_TTL = timedelta(days=30)

_STATES = {
    "submitted": TaskState.QUEUED,
    "processing": TaskState.RUNNING,
    "succeed": TaskState.SUCCEEDED,
    "failed": TaskState.FAILED,
}
_MODES = {"720p": "std", "1080p": "pro"}
_MODERATION_WORDS = ("risk", "safety", "sensitive", "moderation", "policy")

# Envelope code -> (failure class, transient?)
_CODES: dict[int, tuple[FailureClass, bool]] = {
    **{c: (FailureClass.AUTH, False) for c in (1000, 1001, 1002, 1003, 1004, 1100, 1103, 1304)},
    1101: (FailureClass.QUOTA_EXHAUSTED, False),
    1102: (FailureClass.QUOTA_EXHAUSTED, False),
    1200: (FailureClass.INVALID_INPUT, False),
    1201: (FailureClass.INVALID_INPUT, False),
    1202: (FailureClass.INVALID_INPUT, False),
    1203: (FailureClass.NOT_FOUND, False),
    1300: (FailureClass.MODERATION_INPUT, False),
    1301: (FailureClass.MODERATION_INPUT, False),
    1302: (FailureClass.RATE_LIMITED, True),
    1303: (FailureClass.RATE_LIMITED, True),
    5000: (FailureClass.PROVIDER_ERROR, True),
    5001: (FailureClass.PROVIDER_ERROR, True),
    5002: (FailureClass.TIMEOUT, True),
}


class KlingTokenSource:
    """Signs the Kling JWT and reuses it until `TOKEN_REFRESH_MARGIN_S` before it expires."""

    def __init__(self, access_key: str, secret_key: str, clock: Clock = time.time) -> None:
        self._access_key = access_key
        self._secret_key = secret_key
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires = 0

    def token(self) -> str:
        with self._lock:
            now = int(self._clock())
            if self._token is None or now >= self._expires - TOKEN_REFRESH_MARGIN_S:
                self._expires = now + TOKEN_TTL_S
                claims = {"iss": self._access_key, "exp": self._expires, "nbf": now - 5}
                with warnings.catch_warnings():
                    # Kling issues the secret key; its length is not ours to choose.
                    warnings.simplefilter("ignore", InsecureKeyLengthWarning)
                    self._token = jwt.encode(
                        claims, self._secret_key, algorithm="HS256", headers={"typ": "JWT"}
                    )
            return self._token


def envelope_error(body: Mapping[str, Any], response: httpx.Response) -> ProviderError:
    code = body.get("code")
    text = f"kling: code {code}: {body.get('message') or 'error'}"
    known = _CODES.get(code) if isinstance(code, int) else None
    if known is None:
        return classify_response(response, "kling")
    failure_class, transient = known
    if transient:
        return ProviderUnavailable(
            failure_class,
            text,
            provider_code=str(code),
            retry_after=parse_retry_after(response.headers),
        )
    return ProviderRejected(failure_class, text, provider_code=str(code))


def task_failure(message: str | None) -> Failure:
    text = message or "task failed"
    moderated = any(word in text.lower() for word in _MODERATION_WORDS)
    return Failure(
        failure_class=FailureClass.MODERATION_OUTPUT
        if moderated
        else FailureClass.GENERATION_FAILED,
        message=text,
    )


def to_status(data: Mapping[str, Any]) -> TaskStatus:
    raw_status = str(data.get("task_status"))
    state = _STATES.get(raw_status, TaskState.UNKNOWN)
    outputs: tuple[VideoOutput, ...] = ()
    if state is TaskState.SUCCEEDED:
        finished_ms = data.get("updated_at") or data.get("created_at")
        expires = (
            datetime.fromtimestamp(finished_ms / 1000, tz=UTC) + RESULT_TTL
            if isinstance(finished_ms, int | float)
            else None
        )
        videos = (data.get("task_result") or {}).get("videos") or []
        outputs = tuple(
            VideoOutput(index=i, url=video["url"], expires_at=expires)
            for i, video in enumerate(videos)
            if isinstance(video, dict) and isinstance(video.get("url"), str)
        )
    return TaskStatus(
        state=state,
        raw_status=raw_status,
        progress=1.0 if state is TaskState.SUCCEEDED else None,
        outputs=outputs,
        failure=task_failure(data.get("task_status_msg")) if state is TaskState.FAILED else None,
        raw=trim_raw(dict(data)),
    )


def create_body(request: GenerationRequest, model: str) -> dict[str, Any]:
    mode = _MODES.get(request.resolution)
    if mode is None:
        raise ProviderRejected(
            FailureClass.INVALID_INPUT, f"kling: no mode for {request.resolution}"
        )
    body: dict[str, Any] = {
        "model_name": model,
        "prompt": request.prompt,
        "duration": str(request.duration_s),
        "aspect_ratio": request.aspect_ratio,
        "mode": mode,
        "sound": "on" if request.audio else "off",
    }
    if request.negative_prompt:
        body["negative_prompt"] = request.negative_prompt
    if request.callback_url:
        body["callback_url"] = request.callback_url
    if request.external_id:
        body["external_task_id"] = request.external_id
    if request.image_url:
        # Kling takes a URL or raw base64 without the data: prefix.
        body["image"] = (
            request.image_url.partition(",")[2]
            if request.image_url.startswith("data:")
            else request.image_url
        )
    return body


class KlingProvider:
    name = "kling"
    capabilities = ProviderCapabilities(
        cancel=False,
        delete=False,
        webhooks=True,
        per_request_callback=True,
        find_by_external_id=True,
    )

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        access_key: str,
        secret_key: str,
        base_url: str,
        clock: Clock = time.time,
    ) -> None:
        self._edge = HttpEdge(client, self.name, clock=clock)
        self._base = base_url.rstrip("/")
        self.tokens = KlingTokenSource(access_key, secret_key, clock)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens.token()}"}

    async def _call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        response = await self._edge.call(
            method,
            self._base + path,
            headers=self._headers(),
            json_body=body,
            allow_statuses=tuple(range(400, 600)),
        )
        try:
            envelope = decode_json(response, self.name)
        except ProviderUnavailable:
            if response.status_code >= 400:
                raise classify_response(response, self.name) from None
            raise
        if response.status_code >= 400 or envelope.get("code") not in (0, None):
            raise envelope_error(envelope, response)
        data = envelope.get("data")
        if not isinstance(data, dict):
            raise ProviderUnavailable(FailureClass.PROVIDER_ERROR, "kling: envelope has no data")
        return data

    async def submit(self, request: GenerationRequest, model: str) -> TaskRef:
        kind = "image2video" if request.image_url else "text2video"
        try:
            data = await self._call("POST", f"/v1/videos/{kind}", create_body(request, model))
        except ProviderRejected as exc:
            if request.external_id and "external_task_id" in exc.message:
                # Our id is taken: an earlier create of this very attempt got through.
                raise ProviderUnavailable(
                    FailureClass.PROVIDER_ERROR,
                    f"kling: a task with external_task_id {request.external_id} exists already",
                    provider_code=exc.provider_code,
                    outcome_unknown=True,
                ) from exc
            raise
        task_id = data.get("task_id")
        if not task_id:
            raise ProviderUnavailable(
                FailureClass.PROVIDER_ERROR, "kling: create gave no task_id", outcome_unknown=True
            )
        return TaskRef(provider=self.name, model=model, task_id=str(task_id), extra={"kind": kind})

    async def find_created(self, request: GenerationRequest, model: str) -> TaskRef | None:
        """The task created with `external_task_id = request.external_id`, if any: the
        single-task query takes either id in its path."""
        if not request.external_id:
            return None
        kind = "image2video" if request.image_url else "text2video"
        try:
            data = await self._call(
                "GET", f"/v1/videos/{kind}/{quote(request.external_id, safe='')}"
            )
        except ProviderRejected as exc:
            if exc.failure_class is FailureClass.NOT_FOUND:
                return None
            raise
        echoed = (data.get("task_info") or {}).get("external_task_id")
        if not data.get("task_id") or echoed not in (None, request.external_id):
            return None
        return TaskRef(
            provider=self.name, model=model, task_id=str(data["task_id"]), extra={"kind": kind}
        )

    async def status(self, ref: TaskRef) -> TaskStatus:
        kind = ref.extra.get("kind", "text2video")
        data = await self._call("GET", f"/v1/videos/{kind}/{quote(ref.task_id, safe='')}")
        return to_status(data)

    async def download(self, ref: TaskRef, output: VideoOutput) -> AsyncIterator[bytes]:
        if not output.url:
            raise ProviderRejected(FailureClass.INVALID_INPUT, "kling: output has no URL")
        async for chunk in self._edge.stream(
            output.url, expires_at=output.expires_at, signed_url=True
        ):
            yield chunk

    async def cancel(self, ref: TaskRef) -> bool:
        return False

    async def delete(self, ref: TaskRef) -> bool:
        return False  # results are deleted by Kling after 30 days

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookHint:
        """Kling POSTs the bare `data` object and signs nothing: the HTTP receiver checks the
        secret token it put in `callback_url`, and the poller confirms with `status()`."""
        try:
            data = json.loads(body)
            task_id, raw_status = str(data["task_id"]), str(data.get("task_status"))
        except (ValueError, KeyError, TypeError) as exc:
            raise ProviderRejected(
                FailureClass.INVALID_INPUT, "kling: callback has no task_id"
            ) from exc
        return WebhookHint(
            provider=self.name,
            task_id=task_id,
            event_type=f"task.{raw_status}",
            raw_status=raw_status,
        )
