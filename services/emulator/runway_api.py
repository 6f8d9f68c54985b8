"""Runway API (`/runway/v1/...`): text_to_video, image_to_video, tasks; signed expiring outputs.

Every call needs `X-Runway-Version: 2024-11-06` (else 400 `{"error": ...}`) and a Bearer key.
Tasks beyond `runway_concurrency` active tasks per key stay THROTTLED until a slot frees.
SUCCEEDED `output` URLs live under `/runway/outputs/...` and expire after `result_ttl_seconds`
(403 after that; GET the task again for fresh ones). Input moderation surfaces, as on Runway,
as a task that FAILS at once with `SAFETY.INPUT.TEXT`.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response

from services.emulator.context import (
    EmulatorContext,
    NewTask,
    Reason,
    answer_of_create,
    bearer_token,
    create_task,
    fault_response,
    file_response,
    guard,
    json_response,
    malformed_response,
    plan_create,
)
from services.emulator.faults import CallKind
from services.emulator.tasks import Outcome, Phase, Task

PROVIDER = "runway"
API_VERSION = "2024-11-06"
CREDITS_PER_SECOND = 12
_RATIO = re.compile(r"^(\d{2,4}):(\d{2,4})$")
_STATUS = {
    Phase.THROTTLED: "THROTTLED",
    Phase.QUEUED: "PENDING",
    Phase.RUNNING: "RUNNING",
    Phase.SUCCEEDED: "SUCCEEDED",
    Phase.FAILED: "FAILED",
    Phase.CANCELLED: "CANCELLED",
}
_FAILURES = {
    Outcome.MODERATION_INPUT: (
        "SAFETY.INPUT.TEXT",
        "The prompt text did not pass content moderation.",
    ),
    Outcome.MODERATION_OUTPUT: (
        "SAFETY.OUTPUT.VIDEO",
        "The output did not pass content moderation.",
    ),
    Outcome.INTERNAL: (
        "INTERNAL.BAD_OUTPUT.CODE01",
        "An internal error occurred; retrying may succeed.",
    ),
}


def runway_error(status: int, message: str, reason: Reason) -> Response:
    return json_response({"error": message}, status)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def output_path(task: Task) -> str:
    return f"/runway/outputs/{task.id}/0.mp4"


def task_body(ctx: EmulatorContext, task: Task) -> dict[str, Any]:
    now = ctx.clock.now()
    phase = task.phase(now)
    credits = int(task.spec.seconds * CREDITS_PER_SECOND)
    body: dict[str, Any] = {
        "id": task.id,
        "createdAt": iso(task.created_at),
        "status": _STATUS[phase],
    }
    if phase in (Phase.THROTTLED, Phase.QUEUED, Phase.RUNNING):
        body["estimatedCost"] = {"credits": credits}
    if phase is Phase.RUNNING:
        body["progress"] = round(task.progress(now), 3)
    if phase is Phase.SUCCEEDED:
        expires = int(now) - 1 if task.expired else int(now + ctx.settings.result_ttl_seconds)
        body["output"] = [ctx.signer.sign(task.extra["base_url"], output_path(task), expires)]
        body["cost"] = {"credits": credits}
    if phase is Phase.FAILED:
        code, message = _FAILURES.get(task.outcome, _FAILURES[Outcome.INTERNAL])
        body.update(failure=message, failureCode=code, cost={"credits": 0})
    return body


def _validate(body: Any, image: bool) -> str | None:
    if not isinstance(body, dict):
        return "Request body must be a JSON object."
    if not isinstance(body.get("model"), str):
        return "model: Required"
    text = body.get("promptText")
    if not image and (not isinstance(text, str) or not text.strip()):
        return "promptText: Required"
    if isinstance(text, str) and len(text.encode("utf-16-le")) // 2 > 1000:
        return "promptText: must be at most 1000 characters"
    if image and not body.get("promptImage"):
        return "promptImage: Required"
    if not _RATIO.match(str(body.get("ratio", ""))):
        return "ratio: Invalid enum value"
    duration = body.get("duration", 5)
    if not isinstance(duration, int) or not 2 <= duration <= 10:
        return "duration: must be an integer from 2 to 10"
    return None


def build_router(ctx: EmulatorContext) -> APIRouter:
    router = APIRouter(prefix="/runway")

    def authorize(request: Request) -> Response | str:
        version = request.headers.get("x-runway-version")
        if version != API_VERSION:
            msg = f"Invalid or missing X-Runway-Version header; expected {API_VERSION}."
            return runway_error(400, msg, Reason.BAD_REQUEST)
        key = bearer_token(request)
        if key is None or key == ctx.settings.invalid_api_key:
            return runway_error(401, "Invalid API key.", Reason.AUTH_INVALID)
        return key

    async def create(request: Request, image: bool) -> Response:
        key = authorize(request)
        if isinstance(key, Response):
            return key
        if fault := await guard(ctx, PROVIDER, CallKind.CREATE, runway_error):
            return fault
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError:
            return runway_error(400, "Request body is not valid JSON.", Reason.BAD_REQUEST)
        if problem := _validate(body, image):
            return runway_error(400, problem, Reason.BAD_REQUEST)
        prompt = str(body.get("promptText") or "")
        planned = plan_create(ctx, PROVIDER, key, prompt, runway_error)
        if isinstance(planned, Response):
            return planned
        plan, triggers = planned
        if plan.reject_input:
            plan = replace(plan, reject_input=False, outcome=Outcome.MODERATION_INPUT)
        width, height = (int(v) for v in str(body["ratio"]).split(":"))
        model = str(body["model"])
        new = NewTask(
            provider=PROVIDER,
            task_id=str(uuid.uuid4()),
            model=model,
            prompt=prompt,
            width=width,
            height=height,
            seconds=float(body.get("duration", 8 if model.startswith("veo") else 5)),
            audio=bool(body.get("audio", model.startswith("veo3"))),
            owner=key,
            seed=int(body.get("seed") or 0),
            extra={"base_url": ctx.base_url(request), "image": image},
        )
        task = create_task(ctx, new, plan, triggers)
        credits = int(new.seconds * CREDITS_PER_SECOND)
        answer = json_response({"id": task.id, "estimatedCost": {"credits": credits}})
        return await answer_of_create(ctx, triggers, answer)

    @router.post("/v1/text_to_video")
    async def text_to_video(request: Request) -> Response:
        return await create(request, image=False)

    @router.post("/v1/image_to_video")
    async def image_to_video(request: Request) -> Response:
        return await create(request, image=True)

    @router.get("/v1/tasks/{task_id}")
    async def get_task(task_id: str, request: Request) -> Response:
        key = authorize(request)
        if isinstance(key, Response):
            return key
        if fault := await guard(ctx, PROVIDER, CallKind.STATUS, runway_error):
            return fault
        task = ctx.store.get(PROVIDER, task_id)
        if task is None or task.owner != key:
            return runway_error(404, "Task not found.", Reason.NOT_FOUND)
        if task.malformed:
            return malformed_response()
        return json_response(task_body(ctx, task))

    @router.delete("/v1/tasks/{task_id}")
    async def delete_task(task_id: str, request: Request) -> Response:
        key = authorize(request)
        if isinstance(key, Response):
            return key
        task = ctx.store.get(PROVIDER, task_id)
        if task is None or task.owner != key:
            return runway_error(404, "Task not found.", Reason.NOT_FOUND)
        ctx.store.remove(PROVIDER, task_id)
        return Response(status_code=204)

    @router.get("/outputs/{task_id}/{name}")
    async def output(task_id: str, name: str, expires: int = 0, sig: str = "") -> Response:
        ctx.stats.count(PROVIDER, CallKind.DOWNLOAD)
        task = ctx.store.get(PROVIDER, task_id)
        if task is None or name != "0.mp4" or task.phase(ctx.clock.now()) is not Phase.SUCCEEDED:
            return Response("Not Found", status_code=404, media_type="text/plain")
        if not ctx.signer.valid(output_path(task), expires, sig, ctx.clock.now()):
            return Response(
                "Request has expired or the signature is invalid",
                status_code=403,
                media_type="text/plain",
            )
        if fault := await ctx.faults.before_call(CallKind.DOWNLOAD):
            return fault_response(ctx, fault, runway_error)
        rendered = await ctx.renderer.render(task.spec)
        return file_response(
            rendered.video_path, "video/mp4", ctx.faults.truncate_download(task.truncated)
        )

    return router
