"""Google Veo through the Gemini API (`VeoProvider`) and through Vertex AI (`VertexVeoProvider`).

Both start a long-running operation with `:predictLongRunning` and share the operation mapping
(google-genai `models.py` / `operations.py`): `done` absent means running; `done` with `error`
is a `google.rpc.Status` (numeric gRPC code); `done` with a response holds the videos, or none
plus `raiMediaFilteredCount` / `raiMediaFilteredReasons` when the safety filter dropped them.

* Gemini: `x-goog-api-key`; poll `GET /v1beta/{operation name}`; results are file URIs
  downloaded with the key (redirects followed, the key is not sent to another origin).
* Vertex: Bearer token; poll `POST {resource}:fetchPredictOperation {"operationName"}`;
  results are `gcsUri`s (when `storageUri` was given) or inline `bytesBase64Encoded`.
"""

from __future__ import annotations

import base64
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
from shared.providers.http import (
    Clock,
    HttpEdge,
    iter_b64_chunks,
    same_origin,
    trim_raw,
    verified_event,
)

# google.rpc.Code -> failure class of a failed operation.
GRPC_FAILURES: dict[int, FailureClass] = {
    1: FailureClass.CANCELLED,
    2: FailureClass.GENERATION_FAILED,
    3: FailureClass.INVALID_INPUT,
    4: FailureClass.TIMEOUT,
    5: FailureClass.NOT_FOUND,
    7: FailureClass.AUTH,
    8: FailureClass.RATE_LIMITED,
    9: FailureClass.INVALID_INPUT,
    11: FailureClass.INVALID_INPUT,
    13: FailureClass.PROVIDER_ERROR,
    14: FailureClass.PROVIDER_ERROR,
    16: FailureClass.AUTH,
}
WEBHOOK_EVENTS = frozenset({"video.generated"})


def image_instance(image_url: str, provider: str) -> dict[str, str]:
    """`{bytesBase64Encoded, mimeType}` from a data: URI; remote URLs are not fetched here."""
    if not image_url.startswith("data:"):
        raise ProviderRejected(
            FailureClass.INVALID_INPUT,
            f"{provider}: Veo takes the first frame as inline bytes; pass a data: URI "
            "(http(s) image URLs are not downloaded by this adapter)",
        )
    header, _, payload = image_url[5:].partition(",")
    mime, _, encoding = header.partition(";")
    if encoding != "base64" or not payload:
        raise ProviderRejected(
            FailureClass.INVALID_INPUT, f"{provider}: image data: URI must be base64-encoded"
        )
    return {"bytesBase64Encoded": payload, "mimeType": mime or "image/png"}


def base_parameters(request: GenerationRequest) -> dict[str, Any]:
    params: dict[str, Any] = {
        "sampleCount": 1,
        "durationSeconds": request.duration_s,
        "aspectRatio": request.aspect_ratio,
        "resolution": request.resolution,
        # allow_all is the text-to-video value; the docs list allow_adult for image-to-video.
        "personGeneration": "allow_adult" if request.image_url else "allow_all",
    }
    if request.negative_prompt:
        params["negativePrompt"] = request.negative_prompt
    return params


def grpc_failure(error: Mapping[str, Any]) -> Failure:
    code = error.get("code")
    failure_class = (
        GRPC_FAILURES.get(code, FailureClass.GENERATION_FAILED)
        if isinstance(code, int)
        else FailureClass.GENERATION_FAILED
    )
    message = str(error.get("message") or "operation failed")
    if failure_class is FailureClass.INVALID_INPUT and "safety" in message.lower():
        failure_class = FailureClass.MODERATION_INPUT
    return Failure(failure_class=failure_class, message=message, provider_code=str(code))


def filtered_failure(response: Mapping[str, Any]) -> Failure | None:
    count = response.get("raiMediaFilteredCount") or 0
    reasons = [str(r) for r in response.get("raiMediaFilteredReasons") or []]
    if not count and not reasons:
        return None
    return Failure(
        failure_class=FailureClass.MODERATION_OUTPUT,
        message="; ".join(reasons) or f"{count} video(s) removed by the safety filter",
        provider_code="RAI_FILTERED",
    )


def operation_status(
    op: dict[str, Any], outputs: tuple[VideoOutput, ...], result: Any
) -> TaskStatus:
    """Map one operation; `outputs` are the videos the caller found in `result`."""
    raw = trim_raw(op)
    if not op.get("done"):
        return TaskStatus(state=TaskState.RUNNING, raw_status="running", raw=raw)
    error = op.get("error")
    if isinstance(error, dict):
        return TaskStatus(
            state=TaskState.FAILED, raw_status="done:error", failure=grpc_failure(error), raw=raw
        )
    if outputs:
        return TaskStatus(state=TaskState.SUCCEEDED, raw_status="done", outputs=outputs, raw=raw)
    failure = filtered_failure(result if isinstance(result, dict) else {}) or Failure(
        failure_class=FailureClass.GENERATION_FAILED,
        message="operation finished without videos",
    )
    return TaskStatus(state=TaskState.FAILED, raw_status="done:no_videos", failure=failure, raw=raw)


def operation_name(data: Mapping[str, Any], provider: str) -> str:
    name = data.get("name")
    if not isinstance(name, str) or "/operations/" not in name:
        raise ProviderUnavailable(
            FailureClass.PROVIDER_ERROR,
            f"{provider}: create answered no operation name",
            outcome_unknown=True,
        )
    return name


class VeoProvider:
    """Veo on the Gemini Developer API (`generativelanguage.googleapis.com`)."""

    name = "gemini"
    capabilities = ProviderCapabilities(
        cancel=False, delete=False, webhooks=True, per_request_callback=True
    )

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        api_key: str,
        base_url: str,
        webhook_secret: str | None = None,
        clock: Clock = time.time,
    ) -> None:
        self._edge = HttpEdge(client, self.name, clock=clock)
        self._base = base_url.rstrip("/")
        self._headers = {"x-goog-api-key": api_key}
        self._webhook_secret = webhook_secret
        self._clock = clock

    async def submit(self, request: GenerationRequest, model: str) -> TaskRef:
        instance: dict[str, Any] = {"prompt": request.prompt}
        if request.image_url:
            instance["image"] = image_instance(request.image_url, self.name)
        body: dict[str, Any] = {"instances": [instance], "parameters": base_parameters(request)}
        if request.callback_url:
            body["webhookConfig"] = {"uris": [request.callback_url]}
            if request.external_id:
                body["webhookConfig"]["user_metadata"] = {"external_id": request.external_id}
        url = f"{self._base}/v1beta/models/{quote(model, safe='')}:predictLongRunning"
        data, _ = await self._edge.call_json("POST", url, headers=self._headers, json_body=body)
        return TaskRef(provider=self.name, model=model, task_id=operation_name(data, self.name))

    async def status(self, ref: TaskRef) -> TaskStatus:
        url = f"{self._base}/v1beta/{quote(ref.task_id, safe='/')}"
        op, _ = await self._edge.call_json("GET", url, headers=self._headers)
        result = (op.get("response") or {}).get("generateVideoResponse") or {}
        outputs = tuple(
            VideoOutput(
                index=i,
                url=sample["video"]["uri"],
                mime_type=sample["video"].get("mimeType", "video/mp4"),
            )
            for i, sample in enumerate(result.get("generatedSamples") or [])
            if isinstance(sample, dict) and (sample.get("video") or {}).get("uri")
        )
        return operation_status(op, outputs, result)

    async def download(self, ref: TaskRef, output: VideoOutput) -> AsyncIterator[bytes]:
        if not output.url:
            raise ProviderRejected(FailureClass.INVALID_INPUT, "gemini: output has no file URI")
        # The key goes only to the API's own origin, never to a URI on another host.
        headers = self._headers if same_origin(output.url, self._base) else {}
        async for chunk in self._edge.stream(
            output.url, headers=headers, expires_at=output.expires_at
        ):
            yield chunk

    async def find_created(self, request: GenerationRequest, model: str) -> TaskRef | None:
        return None  # predictLongRunning takes no request id: a lost answer cannot be found

    async def cancel(self, ref: TaskRef) -> bool:
        return False

    async def delete(self, ref: TaskRef) -> bool:
        return False  # generated files expire on their own after about two days

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookHint:
        """Static project webhooks, signed with Standard Webhooks. The operation name is read
        from `data.operation_name` / `data.operation` / `data.name` / `data.id` (the payload is
        only described by third parties). Per-request deliveries (`webhookConfig`) are RS256 JWTs
        checked against Google's JWKS, which this adapter does not fetch: the receiver should
        authenticate those by a secret token in the callback URL, and the poller confirms."""
        event = verified_event(self.name, self._webhook_secret, headers, body, self._clock)
        event_type = str(event.get("type"))
        data = event.get("data") or {}
        task_id = next(
            (data[k] for k in ("operation_name", "operation", "name", "id") if data.get(k)), None
        )
        if event_type not in WEBHOOK_EVENTS or not isinstance(task_id, str):
            raise ProviderRejected(
                FailureClass.INVALID_INPUT, f"gemini: ignored webhook event {event_type!r}"
            )
        return WebhookHint(provider=self.name, task_id=task_id, event_type=event_type)


class VertexVeoProvider:
    """Veo on Vertex AI. Auth is a static OAuth access token from settings; Application Default
    Credentials (google-auth `default()` + refresh) would plug in where `_headers` is built."""

    name = "vertex"
    capabilities = ProviderCapabilities(
        cancel=False, delete=False, webhooks=False, per_request_callback=False
    )

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        project: str,
        location: str,
        access_token: str,
        base_url: str,
        gcs_base_url: str,
        storage_uri: str | None = None,
        generate_audio: bool | None = None,
        clock: Clock = time.time,
    ) -> None:
        self._edge = HttpEdge(client, self.name, clock=clock)
        self._base = base_url.rstrip("/")
        self._gcs = gcs_base_url.rstrip("/")
        self._resource = f"projects/{project}/locations/{location}/publishers/google/models"
        self._headers = {"Authorization": f"Bearer {access_token}"}
        self._storage_uri = storage_uri
        self._generate_audio = generate_audio

    async def submit(self, request: GenerationRequest, model: str) -> TaskRef:
        instance: dict[str, Any] = {"prompt": request.prompt}
        if request.image_url:
            instance["image"] = image_instance(request.image_url, self.name)
        params = base_parameters(request)
        params["personGeneration"] = "allow_adult"  # Vertex lists only dont_allow / allow_adult
        params["generateAudio"] = (
            request.audio if self._generate_audio is None else self._generate_audio
        )
        if request.seed is not None:
            params["seed"] = request.seed
        if request.fps is not None:
            params["fps"] = request.fps
        if self._storage_uri:
            params["storageUri"] = self._storage_uri
        url = f"{self._base}/v1/{self._resource}/{quote(model, safe='')}:predictLongRunning"
        body = {"instances": [instance], "parameters": params}
        data, _ = await self._edge.call_json("POST", url, headers=self._headers, json_body=body)
        return TaskRef(provider=self.name, model=model, task_id=operation_name(data, self.name))

    async def _fetch(self, ref: TaskRef) -> dict[str, Any]:
        resource = ref.task_id.rpartition("/operations/")[0]
        url = f"{self._base}/v1/{quote(resource, safe='/')}:fetchPredictOperation"
        op, _ = await self._edge.call_json(
            "POST", url, headers=self._headers, json_body={"operationName": ref.task_id}
        )
        return op

    async def status(self, ref: TaskRef) -> TaskStatus:
        op = await self._fetch(ref)
        result = op.get("response") or {}
        outputs = tuple(
            VideoOutput(
                index=i, url=video.get("gcsUri"), mime_type=video.get("mimeType") or "video/mp4"
            )
            for i, video in enumerate(result.get("videos") or [])
            if isinstance(video, dict) and (video.get("gcsUri") or video.get("bytesBase64Encoded"))
        )
        return operation_status(op, outputs, result)

    def gcs_url(self, gcs_uri: str) -> str:
        """`gs://bucket/object` -> `{gcs base}/bucket/object`, the GCS XML API path that
        https://storage.googleapis.com serves with a Bearer token (and the emulator serves)."""
        parts = urlsplit(gcs_uri)
        if parts.scheme != "gs" or not parts.netloc:
            raise ProviderRejected(
                FailureClass.INVALID_INPUT, f"vertex: not a gs:// URI: {gcs_uri}"
            )
        return f"{self._gcs}/{parts.netloc}/{quote(parts.path.lstrip('/'), safe='/')}"

    async def download(self, ref: TaskRef, output: VideoOutput) -> AsyncIterator[bytes]:
        if output.url:
            stream = self._edge.stream(self.gcs_url(output.url), headers=self._headers)
            async for chunk in stream:
                yield chunk
            return
        # Inline results arrive whole in one JSON body; we re-fetch the operation and decode it
        # in slices so at least the decoded copy is never held twice.
        videos = ((await self._fetch(ref)).get("response") or {}).get("videos") or []
        if output.index >= len(videos) or not videos[output.index].get("bytesBase64Encoded"):
            raise ProviderRejected(
                FailureClass.RESULT_EXPIRED, f"vertex: inline video {output.index} is gone"
            )
        for piece in iter_b64_chunks(videos[output.index]["bytesBase64Encoded"]):
            yield base64.b64decode(piece)

    async def find_created(self, request: GenerationRequest, model: str) -> TaskRef | None:
        return None  # predictLongRunning takes no request id: a lost answer cannot be found

    async def cancel(self, ref: TaskRef) -> bool:
        return False

    async def delete(self, ref: TaskRef) -> bool:
        return False

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookHint:
        raise ProviderRejected(
            FailureClass.INVALID_INPUT,
            "vertex: Veo on Vertex reports through Pub/Sub, not webhooks",
        )
