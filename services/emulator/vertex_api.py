"""Vertex AI Veo (`/vertex/{v1|v1beta1}/...`): predictLongRunning and fetchPredictOperation.

Both the regional form (`projects/{p}/locations/{l}/publishers/google/models/{m}`) and the
express-mode form (`publishers/google/models/{m}`, API key) are served. Results are inline
`bytesBase64Encoded` without `storageUri`; with it, `gcsUri`s whose bytes the emulator serves at
`/vertex/gcs/{bucket}/{object}` (no auth: a stand-in for reading the bucket).
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Request, Response

from services.emulator.context import (
    EmulatorContext,
    NewTask,
    Reason,
    answer_of_create,
    bearer_token,
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
)
from services.emulator.tasks import Outcome, Phase, Task

PROVIDER = "vertex"
RESPONSE_TYPE = "type.googleapis.com/cloud.ai.large_models.vision.GenerateVideoResponse"
REGIONAL = (
    "/vertex/{version}/projects/{project}/locations/{location}/publishers/google/models/{model}"
)
EXPRESS = "/vertex/{version}/publishers/google/models/{model}"


def vertex_error(status: int, message: str, reason: Reason) -> Response:
    resp = google_error(status, message, reason)
    if reason is Reason.AUTH_MISSING:
        body = {"error": {"code": status, "message": message, "status": "UNAUTHENTICATED"}}
        return json_response(body, status)
    return resp


def resource_name(project: str | None, location: str | None, model: str) -> str:
    prefix = f"projects/{project}/locations/{location}/" if project else ""
    return f"{prefix}publishers/google/models/{model}"


def gcs_object(task: Task, index: int) -> str:
    return f"{task.extra['storage_uri'].rstrip('/')}/{task.id}/sample_{index}.mp4"


async def operation_body(ctx: EmulatorContext, task: Task) -> dict[str, Any]:
    body: dict[str, Any] = {"name": task.extra["name"]}
    if task.phase(ctx.clock.now()) not in (Phase.SUCCEEDED, Phase.FAILED):
        return body
    body["done"] = True
    if task.outcome is Outcome.INTERNAL:
        body["error"] = {
            "code": RPC_INTERNAL,
            "message": "Video generation failed (emulated).",
            "details": [],
        }
        return body
    result: dict[str, Any] = {"@type": RESPONSE_TYPE, "raiMediaFilteredCount": 0}
    if task.outcome is Outcome.MODERATION_OUTPUT:
        result.update(raiMediaFilteredCount=1, raiMediaFilteredReasons=[RAI_REASON])
    else:
        result["videos"] = [await _video(ctx, task, i) for i in range(task.extra["samples"])]
    body["response"] = result
    return body


async def _video(ctx: EmulatorContext, task: Task, index: int) -> dict[str, str]:
    if task.extra.get("storage_uri"):
        return {"gcsUri": gcs_object(task, index), "mimeType": "video/mp4"}
    rendered = await ctx.renderer.render(replace(task.spec, seed=task.spec.seed + index))
    encoded = base64.b64encode(rendered.video_path.read_bytes()).decode()
    return {"bytesBase64Encoded": encoded, "mimeType": "video/mp4"}


def build_router(ctx: EmulatorContext) -> APIRouter:
    router = APIRouter()

    def authorize(request: Request) -> Response | str:
        key = bearer_token(request) or api_key(request)
        if key is None:
            msg = (
                "Request is missing required authentication credential. "
                "Expected OAuth 2 access token or API key."
            )
            return vertex_error(401, msg, Reason.AUTH_MISSING)
        if key == ctx.settings.invalid_api_key:
            return vertex_error(
                401, "Request had invalid authentication credentials.", Reason.AUTH_INVALID
            )
        return key

    async def predict(
        request: Request, model: str, project: str | None, location: str | None
    ) -> Response:
        key = authorize(request)
        if isinstance(key, Response):
            return key
        begun = await begin_veo_create(
            ctx, request, provider=PROVIDER, owner=key, model=model, errors=vertex_error
        )
        if isinstance(begun, Response):
            return begun
        parsed, plan, triggers = begun
        op_id = str(uuid.uuid4())
        name = f"{resource_name(project, location, model)}/operations/{op_id}"
        extra = {"name": name, "samples": parsed.samples, "storage_uri": parsed.storage_uri}
        new = NewTask(
            PROVIDER,
            op_id,
            model,
            parsed.prompt,
            parsed.width,
            parsed.height,
            parsed.seconds,
            parsed.audio,
            key,
            parsed.seed,
            extra,
        )
        task = create_task(ctx, new, plan, triggers)
        return await answer_of_create(ctx, triggers, json_response({"name": task.extra["name"]}))

    async def fetch(
        request: Request, model: str, project: str | None, location: str | None
    ) -> Response:
        key = authorize(request)
        if isinstance(key, Response):
            return key
        if fault := await guard(ctx, PROVIDER, CallKind.STATUS, vertex_error):
            return fault
        try:
            op_name = str(json.loads(await request.body() or b"{}").get("operationName", ""))
        except (ValueError, AttributeError):
            return vertex_error(400, "operationName is required.", Reason.BAD_REQUEST)
        resource, _, op_id = op_name.rpartition("/operations/")
        task = ctx.store.get(PROVIDER, op_id)
        if task is None or not resource.endswith(f"publishers/google/models/{model}"):
            return vertex_error(404, f"Operation {op_name} not found.", Reason.NOT_FOUND)
        if task.malformed:
            return malformed_response()
        return json_response(await operation_body(ctx, task))

    @router.post(REGIONAL + ":predictLongRunning")
    async def predict_regional(
        version: str, project: str, location: str, model: str, request: Request
    ) -> Response:
        return await predict(request, model, project, location)

    @router.post(EXPRESS + ":predictLongRunning")
    async def predict_express(version: str, model: str, request: Request) -> Response:
        return await predict(request, model, None, None)

    @router.post(REGIONAL + ":fetchPredictOperation")
    async def fetch_regional(
        version: str, project: str, location: str, model: str, request: Request
    ) -> Response:
        return await fetch(request, model, project, location)

    @router.post(EXPRESS + ":fetchPredictOperation")
    async def fetch_express(version: str, model: str, request: Request) -> Response:
        return await fetch(request, model, None, None)

    @router.get("/vertex/gcs/{bucket}/{obj:path}")
    async def gcs_download(bucket: str, obj: str) -> Response:
        ctx.stats.count(PROVIDER, CallKind.DOWNLOAD)
        parts = obj.split("/")
        match = re.fullmatch(r"sample_(\d+)\.mp4", parts[-1])
        task = ctx.store.get(PROVIDER, parts[-2]) if len(parts) >= 2 else None
        missing = vertex_error(404, f"No such object: {bucket}/{obj}", Reason.NOT_FOUND)
        if task is None or match is None or task.phase(ctx.clock.now()) is not Phase.SUCCEEDED:
            return missing
        index = int(match.group(1))
        if (
            index >= task.extra["samples"]
            or task.outcome is not Outcome.SUCCESS
            or gcs_object(task, index) != f"gs://{bucket}/{obj}"
        ):
            return missing
        if task.expired:
            return vertex_error(404, f"No such object: {bucket}/{obj} (expired)", Reason.NOT_FOUND)
        rendered = await ctx.renderer.render(replace(task.spec, seed=task.spec.seed + index))
        return file_response(
            rendered.video_path, "video/mp4", ctx.faults.truncate_download(task.truncated)
        )

    return router
