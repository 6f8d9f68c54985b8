"""Gemini API Veo (`/gemini/v1beta/...`): predictLongRunning, operations, file download.

Operation names are `models/{model}/operations/{12 lowercase alnum}`; `done` is omitted until
finished. Output safety failures are `done` with a `generateVideoResponse` holding no samples
and `raiMediaFilteredCount` > 0; internal failures are `done` with a `google.rpc.Status` error.
Sample files are `files/{operation id}{sample index}`.
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
    RPC_INTERNAL,
    api_key,
    begin_veo_create,
    google_error,
    new_operation_id,
)
from services.emulator.tasks import Outcome, Phase, Task
from shared.webhooks import sign_headers

PROVIDER = "gemini"
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


def build_router(ctx: EmulatorContext) -> APIRouter:
    router = APIRouter(prefix="/gemini/v1beta")

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

    @router.post("/models/{model}:predictLongRunning")
    async def predict_long_running(model: str, request: Request) -> Response:
        key = authorize(request)
        if isinstance(key, Response):
            return key
        begun = await begin_veo_create(
            ctx, request, provider=PROVIDER, owner=key, model=model, errors=google_error
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

    @router.get("/models/{model}/operations/{op_id}")
    async def get_operation(model: str, op_id: str, request: Request) -> Response:
        key = authorize(request)
        if isinstance(key, Response):
            return key
        if fault := await guard(ctx, PROVIDER, CallKind.STATUS, google_error):
            return fault
        task = ctx.store.get(PROVIDER, op_id)
        if task is None or task.model != model:
            return google_error(
                404, f"Operation models/{model}/operations/{op_id} not found.", Reason.NOT_FOUND
            )
        if task.malformed:
            return malformed_response()
        return json_response(operation_body(ctx, task))

    @router.get("/files/{file_id}:download")
    async def download_file(file_id: str, request: Request) -> Response:
        key = authorize(request)
        if isinstance(key, Response):
            return key
        if fault := await guard(ctx, PROVIDER, CallKind.DOWNLOAD, google_error):
            return fault
        task = ctx.store.get(PROVIDER, file_id[:12])
        suffix = file_id[12:]
        index = int(suffix) if suffix.isdigit() else (0 if not suffix else -1)
        now = ctx.clock.now()
        if (
            task is None
            or not 0 <= index < task.extra["samples"]
            or task.phase(now) is not Phase.SUCCEEDED
        ):
            return google_error(404, f"File files/{file_id} not found.", Reason.NOT_FOUND)
        if task.outcome is not Outcome.SUCCESS:
            return google_error(404, f"File files/{file_id} not found.", Reason.NOT_FOUND)
        if task.expired or now >= task.natural_end + ctx.settings.result_ttl_seconds:
            return google_error(404, f"File files/{file_id} has expired.", Reason.NOT_FOUND)
        spec = replace(task.spec, seed=task.spec.seed + index)
        rendered = await ctx.renderer.render(spec)
        return file_response(
            rendered.video_path, "video/mp4", ctx.faults.truncate_download(task.truncated)
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
