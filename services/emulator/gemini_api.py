"""Gemini API Veo (`/gemini/v1beta/...`): predictLongRunning, operations, file download.

Operation names are `models/{model}/operations/{12 lowercase alnum}`; `done` is omitted until
finished. Output safety failures are `done` with a `generateVideoResponse` holding no samples
and `raiMediaFilteredCount` > 0; internal failures are `done` with a `google.rpc.Status` error.
Sample files are `files/{operation id}{sample index}`; their `:download?alt=media` answers a 302
to a signed `/gemini/blobs/...` URL (no key needed), as the real Files API redirects to storage.
Shut-down models (`RETIRED_MODELS`) answer 404 NOT_FOUND; 429s carry QuotaFailure + RetryInfo.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Request, Response

from services.emulator.context import (
    EmulatorContext,
    NewTask,
    Reason,
    answer_of_create,
    create_task,
    file_response,
    guard,
    json_response,
    malformed_response,
)
from services.emulator.faults import CallKind
from services.emulator.google_common import (
    RAI_REASON,
    RETIRED_MODELS,
    RPC_INTERNAL,
    api_key,
    begin_veo_create,
    google_error,
    google_errors,
    new_operation_id,
)
from services.emulator.tasks import Outcome, Phase, Task
from shared.webhooks import sign_headers

PROVIDER = "gemini"
SIGNED_URL_SECONDS = 600
RESPONSE_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse"


def file_uri(base: str, task: Task, index: int) -> str:
    return f"{base}/gemini/v1beta/files/{task.id}{index}:download?alt=media"


def operation_body(ctx: EmulatorContext, task: Task) -> dict[str, Any]:
    now = ctx.clock.now()
    phase = task.phase(now)
    body: dict[str, Any] = {"name": task.extra["name"]}
    if phase not in (Phase.SUCCEEDED, Phase.FAILED):
        return body
    body["done"] = True
    if task.outcome is Outcome.INTERNAL:
        body["error"] = {
            "code": RPC_INTERNAL,
            "message": "Video generation failed (emulated).",
            "details": [],
        }
        return body
    result: dict[str, Any] = {"raiMediaFilteredCount": 0, "raiMediaFilteredReasons": []}
    if task.outcome is Outcome.MODERATION_OUTPUT:
        result = {"raiMediaFilteredCount": 1, "raiMediaFilteredReasons": [RAI_REASON]}
    else:
        base = task.extra["base_url"]
        samples = [
            {"video": {"uri": file_uri(base, task, i)}} for i in range(task.extra["samples"])
        ]
        result = {"generatedSamples": samples, **result}
    body["response"] = {"@type": RESPONSE_TYPE, "generateVideoResponse": result}
    return body


def blob_path(file_id: str) -> str:
    return f"/gemini/blobs/{file_id}"


def build_router(ctx: EmulatorContext) -> APIRouter:
    router = APIRouter(prefix="/gemini")
    errors = google_errors(ctx)

    def authorize(request: Request) -> Response | str:
        key = api_key(request)
        if key is None:
            msg = (
                "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity."
            )
            return google_error(403, msg, Reason.AUTH_MISSING)
        if key == ctx.settings.invalid_api_key:
            return google_error(
                400, "API key not valid. Please pass a valid API key.", Reason.AUTH_INVALID
            )
        return key

    @router.post("/v1beta/models/{model}:predictLongRunning")
    async def predict_long_running(model: str, request: Request) -> Response:
        key = authorize(request)
        if isinstance(key, Response):
            return key
        if model in RETIRED_MODELS:
            msg = (
                f"models/{model} is not found for API version v1beta, or is not supported for "
                "predictLongRunning. Call ListModels to see the list of available models and "
                "their supported methods."
            )
            return google_error(404, msg, Reason.NOT_FOUND)
        begun = await begin_veo_create(
            ctx, request, provider=PROVIDER, owner=key, model=model, errors=errors
        )
        if isinstance(begun, Response):
            return begun
        parsed, plan, triggers = begun
        op_id = new_operation_id()
        name = f"models/{model}/operations/{op_id}"
        new = NewTask(
            provider=PROVIDER,
            task_id=op_id,
            model=model,
            prompt=parsed.prompt,
            width=parsed.width,
            height=parsed.height,
            seconds=parsed.seconds,
            audio=parsed.audio,
            owner=key,
            seed=parsed.seed,
            extra={"name": name, "samples": parsed.samples, "base_url": ctx.base_url(request)},
        )
        task = create_task(ctx, new, plan, triggers)
        return await answer_of_create(ctx, triggers, json_response(operation_body(ctx, task)))

    @router.get("/v1beta/models/{model}/operations/{op_id}")
    async def get_operation(model: str, op_id: str, request: Request) -> Response:
        key = authorize(request)
        if isinstance(key, Response):
            return key
        if fault := await guard(ctx, PROVIDER, CallKind.STATUS, errors):
            return fault
        task = ctx.store.get(PROVIDER, op_id)
        if task is None or task.model != model:
            return google_error(
                404, f"Operation models/{model}/operations/{op_id} not found.", Reason.NOT_FOUND
            )
        if task.malformed:
            return malformed_response()
        return json_response(operation_body(ctx, task))

    def downloadable(file_id: str) -> Task | Response:
        task = ctx.store.get(PROVIDER, file_id[:12])
        suffix = file_id[12:]
        index = int(suffix) if suffix.isdigit() else (0 if not suffix else -1)
        now = ctx.clock.now()
        if (
            task is None
            or not 0 <= index < task.extra["samples"]
            or task.phase(now) is not Phase.SUCCEEDED
            or task.outcome is not Outcome.SUCCESS
        ):
            return google_error(404, f"File files/{file_id} not found.", Reason.NOT_FOUND)
        if task.expired or now >= task.natural_end + ctx.settings.result_ttl_seconds:
            return google_error(404, f"File files/{file_id} has expired.", Reason.NOT_FOUND)
        return task

    @router.get("/v1beta/files/{file_id}:download")
    async def download_file(file_id: str, request: Request) -> Response:
        """As on the real Files API, the authenticated download answers a redirect to a
        short-lived signed URL that needs no key."""
        key = authorize(request)
        if isinstance(key, Response):
            return key
        if fault := await guard(ctx, PROVIDER, CallKind.DOWNLOAD, errors):
            return fault
        found = downloadable(file_id)
        if isinstance(found, Response):
            return found
        expires = int(ctx.clock.now() + SIGNED_URL_SECONDS)
        location = ctx.signer.sign(ctx.base_url(request), blob_path(file_id), expires)
        return Response(status_code=302, headers={"location": location})

    @router.get("/blobs/{file_id}")
    async def download_blob(file_id: str, expires: int = 0, sig: str = "") -> Response:
        if not ctx.signer.valid(blob_path(file_id), expires, sig, ctx.clock.now()):
            return Response("Forbidden", status_code=403, media_type="text/plain")
        found = downloadable(file_id)
        if isinstance(found, Response):
            return found
        index = int(file_id[12:] or 0)
        rendered = await ctx.renderer.render(replace(found.spec, seed=found.spec.seed + index))
        return file_response(
            rendered.video_path, "video/mp4", ctx.faults.truncate_download(found.truncated)
        )

    ctx.notifier.register(PROVIDER, lambda task, phase: _notify(ctx, task, phase))
    return router


def _notify(ctx: EmulatorContext, task: Task, phase: Phase) -> None:
    """Static project webhook `video.generated` (Standard Webhooks); payload shape is a guess."""
    url = ctx.settings.gemini_webhook_url
    if not url or phase not in (Phase.SUCCEEDED, Phase.FAILED):
        return
    op = operation_body(ctx, task)
    samples = op.get("response", {}).get("generateVideoResponse", {}).get("generatedSamples", [])
    event = {
        "id": "evt_" + secrets.token_hex(12),
        "type": "video.generated",
        "created_at": int(time.time()),
        "data": {
            "operation_name": task.extra["name"],
            "video_uri": samples[0]["video"]["uri"] if samples else None,
            "done": True,
            "error": op.get("error"),
        },
    }
    body = json.dumps(event, separators=(",", ":")).encode()
    ctx.sender.send(url, body, sign_headers(ctx.settings.gemini_webhook_secret, body))
