"""OpenAI Videos API (`/openai/v1/videos...`), as the openai SDK and the spec define it.

Create takes multipart (what the SDK sends) or JSON. Failed videos carry
`error.code` = `moderation_blocked` (output safety) or `internal_error`; the real code list is
undocumented. Content before completion answers 400 `video_not_ready`; after `expires_at`, 404.
"""

from __future__ import annotations

import json
import secrets
import time
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
    plan_create,
    read_fields,
)
from services.emulator.faults import CallKind
from services.emulator.tasks import Outcome, Phase, Task
from shared.webhooks import sign_headers

PROVIDER = "openai"
SECONDS = {"4", "8", "12", "16", "20"}
SIZES = {"720x1280", "1280x720", "1024x1792", "1792x1024", "1920x1080", "1080x1920"}
_TYPES = {
    Reason.AUTH_MISSING: ("invalid_request_error", None),
    Reason.AUTH_INVALID: ("invalid_request_error", "invalid_api_key"),
    Reason.BAD_REQUEST: ("invalid_request_error", None),
    Reason.NOT_FOUND: ("invalid_request_error", "not_found"),
    Reason.RATE_LIMITED: ("rate_limit_exceeded", "rate_limit_exceeded"),
    Reason.SERVER_ERROR: ("server_error", "server_error"),
    Reason.MODERATION: ("invalid_request_error", "moderation_blocked"),
    Reason.NOT_READY: ("invalid_request_error", "video_not_ready"),
}


def openai_error(status: int, message: str, reason: Reason, param: str | None = None) -> Response:
    err_type, code = _TYPES[reason]
    body = {"error": {"message": message, "type": err_type, "param": param, "code": code}}
    return json_response(body, status)


def video_object(ctx: EmulatorContext, task: Task) -> dict[str, Any]:
    now = ctx.clock.now()
    phase = task.phase(now)
    status = {
        Phase.QUEUED: "queued",
        Phase.RUNNING: "in_progress",
        Phase.SUCCEEDED: "completed",
        Phase.FAILED: "failed",
    }.get(phase, "queued")
    completed = task.completed_at(now)
    expires = _expires_at(ctx, task, completed) if phase is Phase.SUCCEEDED else None
    error = None
    if phase is Phase.FAILED:
        error = (
            {
                "code": "moderation_blocked",
                "message": "The generated video was blocked by moderation.",
            }
            if task.outcome is Outcome.MODERATION_OUTPUT
            else {
                "code": "internal_error",
                "message": "Video generation failed (emulated internal error).",
            }
        )
    return {
        "id": task.id,
        "object": "video",
        "model": task.model,
        "status": status,
        "progress": int(task.progress(now) * 100),
        "created_at": int(task.created_at),
        "completed_at": int(completed) if completed is not None else None,
        "expires_at": expires,
        "prompt": task.prompt,
        "size": task.extra["size"],
        "seconds": task.extra["seconds"],
        "remixed_from_video_id": task.extra.get("remixed_from"),
        "error": error,
    }


def _expires_at(ctx: EmulatorContext, task: Task, completed: float | None) -> int:
    done = completed or task.natural_end
    return int(done) if task.expired else int(done + ctx.settings.result_ttl_seconds)


def _validate(fields: dict[str, Any]) -> tuple[str, str] | None:
    """(param, message) of the first invalid field, or None."""
    prompt = fields.get("prompt")
    if not isinstance(prompt, str) or not 1 <= len(prompt) <= 32000:
        return "prompt", "prompt is required (1-32000 characters)."
    if str(fields.get("seconds", "4")) not in SECONDS:
        return "seconds", f"Invalid seconds; expected one of {sorted(SECONDS, key=int)}."
    if str(fields.get("size", "720x1280")) not in SIZES:
        return "size", f"Invalid size; expected one of {sorted(SIZES)}."
    return None


def build_router(ctx: EmulatorContext) -> APIRouter:
    router = APIRouter(prefix="/openai/v1")

    def authorize(request: Request) -> Response | str:
        key = bearer_token(request)
        if key is None:
            msg = "You didn't provide an API key. Provide it as 'Authorization: Bearer YOUR_KEY'."
            return openai_error(401, msg, Reason.AUTH_MISSING)
        if key == ctx.settings.invalid_api_key:
            return openai_error(401, "Incorrect API key provided.", Reason.AUTH_INVALID)
        return key

    def lookup(video_id: str) -> Task | Response:
        task = ctx.store.get(PROVIDER, video_id)
        if task is None:
            return openai_error(
                404, f"Video with id '{video_id}' not found.", Reason.NOT_FOUND, "video_id"
            )
        return task

    async def start(
        request: Request, fields: dict[str, Any], key: str, remix_of: Task | None
    ) -> Response:
        prompt = str(fields["prompt"])
        planned = plan_create(ctx, PROVIDER, key, prompt, openai_error)
        if isinstance(planned, Response):
            return planned
        plan, triggers = planned
        if plan.reject_input:
            return openai_error(
                400,
                "Your request was blocked by our moderation system.",
                Reason.MODERATION,
                "prompt",
            )
        source = remix_of.extra if remix_of else fields
        size, seconds = str(source.get("size", "720x1280")), str(source.get("seconds", "4"))
        width, height = (int(v) for v in size.split("x"))
        new = NewTask(
            provider=PROVIDER,
            task_id="video_" + secrets.token_hex(16),
            model=str(remix_of.model if remix_of else fields.get("model", "sora-2")),
            prompt=prompt,
            width=width,
            height=height,
            seconds=float(seconds),
            audio=True,  # Sora 2 clips always carry sound
            owner=key,
            extra={
                "size": size,
                "seconds": seconds,
                "remixed_from": remix_of.id if remix_of else None,
            },
        )
        task = create_task(ctx, new, plan, triggers)
        return await answer_of_create(ctx, triggers, json_response(video_object(ctx, task)))

    @router.post("/videos")
    async def create_video(request: Request) -> Response:
        key = authorize(request)
        if isinstance(key, Response):
            return key
        if fault := await guard(ctx, PROVIDER, CallKind.CREATE, openai_error):
            return fault
        try:
            fields = await read_fields(request)
        except ValueError:
            return openai_error(400, "Could not parse the request body.", Reason.BAD_REQUEST)
        if invalid := _validate(fields):
            return openai_error(400, invalid[1], Reason.BAD_REQUEST, invalid[0])
        return await start(request, fields, key, None)

    @router.post("/videos/{video_id}/remix")
    async def remix_video(video_id: str, request: Request) -> Response:
        key = authorize(request)
        if isinstance(key, Response):
            return key
        if fault := await guard(ctx, PROVIDER, CallKind.CREATE, openai_error):
            return fault
        found = lookup(video_id)
        if isinstance(found, Response):
            return found
        if found.phase(ctx.clock.now()) is not Phase.SUCCEEDED:
            return openai_error(
                400, "Only completed videos can be remixed.", Reason.BAD_REQUEST, "video_id"
            )
        try:
            fields = await read_fields(request)
        except ValueError:
            return openai_error(400, "Could not parse the request body.", Reason.BAD_REQUEST)
        if not isinstance(fields.get("prompt"), str) or not fields["prompt"]:
            return openai_error(400, "prompt is required.", Reason.BAD_REQUEST, "prompt")
        return await start(request, fields, key, found)

    @router.get("/videos")
    async def list_videos(
        request: Request, after: str | None = None, limit: int = 20, order: str = "desc"
    ) -> Response:
        key = authorize(request)
        if isinstance(key, Response):
            return key
        if fault := await guard(ctx, PROVIDER, CallKind.STATUS, openai_error):
            return fault
        if not 0 <= limit <= 100 or order not in ("asc", "desc"):
            return openai_error(
                400, "limit must be 0-100 and order asc|desc.", Reason.BAD_REQUEST, "limit"
            )
        tasks = [t for t in ctx.store.list(PROVIDER) if t.owner == key]
        if order == "desc":
            tasks.reverse()
        ids = [t.id for t in tasks]
        if after is not None:
            tasks = tasks[ids.index(after) + 1 :] if after in ids else []
        page = tasks[:limit]
        data = [video_object(ctx, t) for t in page]
        return json_response(
            {
                "object": "list",
                "data": data,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
                "has_more": len(tasks) > len(page),
            }
        )

    @router.get("/videos/{video_id}")
    async def retrieve_video(video_id: str, request: Request) -> Response:
        key = authorize(request)
        if isinstance(key, Response):
            return key
        if fault := await guard(ctx, PROVIDER, CallKind.STATUS, openai_error):
            return fault
        found = lookup(video_id)
        if isinstance(found, Response):
            return found
        if found.malformed:
            return malformed_response()
        headers = {"openai-poll-after-ms": str(ctx.tunables.openai_poll_after_ms)}
        return json_response(video_object(ctx, found), headers=headers)

    @router.delete("/videos/{video_id}")
    async def delete_video(video_id: str, request: Request) -> Response:
        key = authorize(request)
        if isinstance(key, Response):
            return key
        found = lookup(video_id)
        if isinstance(found, Response):
            return found
        if found.phase(ctx.clock.now()) not in (Phase.SUCCEEDED, Phase.FAILED):
            return openai_error(
                400, "Only completed or failed videos can be deleted.", Reason.BAD_REQUEST
            )
        ctx.store.remove(PROVIDER, video_id)
        return json_response({"id": video_id, "object": "video.deleted", "deleted": True})

    @router.get("/videos/{video_id}/content")
    async def download_video(video_id: str, request: Request, variant: str = "video") -> Response:
        key = authorize(request)
        if isinstance(key, Response):
            return key
        if fault := await guard(ctx, PROVIDER, CallKind.DOWNLOAD, openai_error):
            return fault
        found = lookup(video_id)
        if isinstance(found, Response):
            return found
        if variant not in ("video", "thumbnail"):
            return openai_error(
                400,
                f"variant '{variant}' is not supported by the emulator.",
                Reason.BAD_REQUEST,
                "variant",
            )
        now = ctx.clock.now()
        if found.phase(now) is not Phase.SUCCEEDED:
            return openai_error(
                400, "Video is not ready for download.", Reason.NOT_READY, "video_id"
            )
        if now >= _expires_at(ctx, found, found.completed_at(now)):
            return openai_error(404, "The video assets have expired.", Reason.NOT_FOUND, "video_id")
        rendered = await ctx.renderer.render(found.spec)
        truncated = ctx.faults.truncate_download(found.truncated)
        if variant == "thumbnail":
            return file_response(rendered.thumbnail_path, "image/webp", truncated)
        return file_response(rendered.video_path, "video/mp4", truncated)

    ctx.notifier.register(PROVIDER, lambda task, phase: _notify(ctx, task, phase))
    return router


def _notify(ctx: EmulatorContext, task: Task, phase: Phase) -> None:
    """Account webhook `video.completed` / `video.failed`, Standard Webhooks signed."""
    url = ctx.settings.openai_webhook_url
    if not url or phase not in (Phase.SUCCEEDED, Phase.FAILED):
        return
    event = {
        "id": "evt_" + secrets.token_hex(16),
        "object": "event",
        "created_at": int(time.time()),
        "type": "video.completed" if phase is Phase.SUCCEEDED else "video.failed",
        "data": {"id": task.id},
    }
    body = json.dumps(event, separators=(",", ":")).encode()
    ctx.sender.send(url, body, sign_headers(ctx.settings.openai_webhook_secret, body))
