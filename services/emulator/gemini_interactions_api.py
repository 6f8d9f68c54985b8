"""Gemini API Interactions (`/gemini/v1beta/interactions...`) for the `gemini-omni-*` video models.

Routes and shapes follow google-genai 3.6.1's generated interactions resource: create (POST),
get (GET), cancel (POST .../cancel), delete (DELETE). Only background video interactions are
emulated (`background: true`, a `{"type": "video"}` response format or none); streaming and
synchronous creates answer 400 with a reason that says so. The video is returned in the last
`model_output` step, inline base64 (`delivery: inline`, the default) or as a `uri`.

Guesses (not in the SDK): the error `code` strings, the `failed` shape of a safety block, the
`uri` form, and the static webhook payload (`interaction.completed` with `data.id`).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response

from services.emulator.context import (
    RETRY_IN_BODY,
    EmulatorContext,
    NewTask,
    Reason,
    answer_of_create,
    create_task,
    file_response,
    guard,
    json_response,
    malformed_response,
    plan_create,
)
from services.emulator.faults import CallKind
from services.emulator.gemini_interactions_request import OmniRequest, parse_create
from services.emulator.google_common import api_key, quota_details
from services.emulator.tasks import TERMINAL, Outcome, Phase, Task
from shared.webhooks import sign_headers

PROVIDER = "gemini-interactions"  # the emulator's store key; the wire provider is the Gemini API
_CODES = {
    Reason.AUTH_MISSING: "permission_denied",
    Reason.AUTH_INVALID: "invalid_argument",
    Reason.BAD_REQUEST: "invalid_argument",
    Reason.NOT_FOUND: "not_found",
    Reason.RATE_LIMITED: "resource_exhausted",
    Reason.SERVER_ERROR: "internal",
    Reason.MODERATION: "invalid_argument",
    Reason.NOT_READY: "failed_precondition",
    Reason.QUOTA_EXHAUSTED: "resource_exhausted",
}
PER_MINUTE = "GenerateRequestsPerMinutePerProjectPerModel"
PER_DAY = "GenerateRequestsPerDayPerProjectPerModel"
_ID = re.compile(r"^v1_[a-z0-9]{24}$")
SAFETY_MESSAGE = "The generated video was blocked by the (emulated) safety filter."


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_router(ctx: EmulatorContext) -> APIRouter:
    router = APIRouter(prefix="/gemini/v1beta")

    def errors(status: int, message: str, reason: Reason) -> Response:
        # The Interactions error envelope has a string `code`; a 429 says how long to wait in
        # `details` (QuotaFailure + RetryInfo), not in a Retry-After header.
        error: dict[str, Any] = {"code": _CODES[reason], "message": message}
        if reason is Reason.RATE_LIMITED:
            error["details"] = quota_details(PER_MINUTE, float(ctx.tunables.retry_after_seconds))
        elif reason is Reason.QUOTA_EXHAUSTED:
            error["details"] = quota_details(PER_DAY, None)
        return json_response({"error": error}, status)

    setattr(errors, RETRY_IN_BODY, True)

    async def checked(request: Request, kind: CallKind) -> Response | str:
        key = api_key(request)
        if key is None:
            return errors(403, "Method doesn't allow unregistered callers.", Reason.AUTH_MISSING)
        if key == ctx.settings.invalid_api_key:
            return errors(
                400, "API key not valid. Please pass a valid API key.", Reason.AUTH_INVALID
            )
        fault = await guard(ctx, PROVIDER, kind, errors)
        return key if fault is None else fault

    def lookup(interaction_id: str, key: str) -> Task | Response:
        task = ctx.store.get(PROVIDER, interaction_id) if _ID.match(interaction_id) else None
        if task is None or task.owner != key:
            return errors(404, f"Interaction {interaction_id} not found.", Reason.NOT_FOUND)
        return task

    async def owned(interaction_id: str, request: Request) -> Task | Response:
        """The caller's interaction, after the key check and the status-call faults."""
        key = await checked(request, CallKind.STATUS)
        return key if isinstance(key, Response) else lookup(interaction_id, key)

    @router.post("/interactions")
    async def create(request: Request) -> Response:
        key = await checked(request, CallKind.CREATE)
        if isinstance(key, Response):
            return key
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            return errors(400, "Invalid JSON payload received.", Reason.BAD_REQUEST)
        parsed = parse_create(body)
        if isinstance(parsed, tuple):
            status, message = parsed
            reason = Reason.NOT_FOUND if status == 404 else Reason.BAD_REQUEST
            return errors(status, message, reason)
        planned = plan_create(ctx, PROVIDER, key, parsed.prompt, errors)
        if isinstance(planned, Response):
            return planned
        plan, triggers = planned
        if plan.reject_input:
            msg = "The prompt was blocked: it violates the (emulated) safety policy."
            return errors(400, msg, Reason.MODERATION)
        task = create_task(ctx, _new_task(ctx, request, parsed, key), plan, triggers)
        return await answer_of_create(
            ctx, triggers, json_response(await interaction_body(ctx, task))
        )

    @router.get("/interactions/{interaction_id}")
    async def get(interaction_id: str, request: Request) -> Response:
        task = await owned(interaction_id, request)
        if isinstance(task, Response):
            return task
        if task.malformed:
            return malformed_response()
        return json_response(await interaction_body(ctx, task))

    @router.post("/interactions/{interaction_id}/cancel")
    async def cancel(interaction_id: str, request: Request) -> Response:
        task = await owned(interaction_id, request)
        if isinstance(task, Response):
            return task
        now = ctx.clock.now()
        if task.phase(now) in TERMINAL:
            msg = f"Interaction {interaction_id} has already finished and cannot be cancelled."
            return errors(400, msg, Reason.NOT_READY)
        task.cancelled_at = now
        return json_response(await interaction_body(ctx, task))

    @router.delete("/interactions/{interaction_id}")
    async def delete(interaction_id: str, request: Request) -> Response:
        task = await owned(interaction_id, request)
        if isinstance(task, Response):
            return task
        ctx.store.remove(PROVIDER, task.id)
        return json_response({})

    @router.get("/interactions/{interaction_id}/video:download")
    async def download(interaction_id: str, request: Request) -> Response:
        """Where this emulator's `uri` deliveries point (the real URI form is not verified)."""
        key = await checked(request, CallKind.DOWNLOAD)
        if isinstance(key, Response):
            return key
        task = lookup(interaction_id, key)
        if isinstance(task, Response):
            return task
        gone = task.expired or ctx.clock.now() >= task.natural_end + ctx.settings.result_ttl_seconds
        if not _has_video(ctx, task) or gone:
            return errors(404, f"No video for interaction {interaction_id}.", Reason.NOT_FOUND)
        rendered = await ctx.renderer.render(task.spec)
        return file_response(
            rendered.video_path, "video/mp4", ctx.faults.truncate_download(task.truncated)
        )

    ctx.notifier.register(PROVIDER, lambda task, phase: _notify(ctx, task, phase))
    return router


def _new_task(ctx: EmulatorContext, request: Request, parsed: OmniRequest, key: str) -> NewTask:
    interaction_id = "v1_" + "".join(
        secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(24)
    )
    return NewTask(
        provider=PROVIDER,
        task_id=interaction_id,
        model=parsed.model,
        prompt=parsed.prompt,
        width=parsed.width,
        height=parsed.height,
        seconds=parsed.seconds,
        audio=True,
        owner=key,
        extra={
            "base_url": ctx.base_url(request),
            "delivery": parsed.delivery,
            "input": parsed.input,
            "response_format": parsed.response_format,
        },
    )


def _has_video(ctx: EmulatorContext, task: Task) -> bool:
    return task.phase(ctx.clock.now()) is Phase.SUCCEEDED and task.outcome is Outcome.SUCCESS


_STATUS = {
    Phase.THROTTLED: "queued",
    Phase.QUEUED: "queued",
    Phase.RUNNING: "in_progress",
    Phase.SUCCEEDED: "completed",
    Phase.FAILED: "failed",
    Phase.CANCELLED: "cancelled",
}


async def interaction_body(ctx: EmulatorContext, task: Task) -> dict[str, Any]:
    now = ctx.clock.now()
    phase = task.phase(now)
    if phase is Phase.SUCCEEDED and task.outcome is not Outcome.SUCCESS:
        phase = Phase.FAILED
    body: dict[str, Any] = {
        "id": task.id,
        "object": "interaction",
        "model": task.model,
        "status": _STATUS[phase],
        "created": _iso(task.created_at),
        "updated": _iso(min(now, task.natural_end) if phase in TERMINAL else now),
        "response_format": task.extra["response_format"],
    }
    if phase is Phase.FAILED:
        message = SAFETY_MESSAGE
        code = "safety_blocked"
        if task.outcome is Outcome.INTERNAL:
            message, code = "Video generation failed (emulated).", "internal"
        body["errors"] = [{"code": code, "message": message}]
    if phase is Phase.SUCCEEDED:
        body["steps"] = [
            {"type": "user_input", "content": task.extra["input"]},
            {"type": "model_output", "content": [await _video_block(ctx, task)]},
        ]
        body["usage"] = {"output_tokens_by_modality": [{"modality": "video", "tokens": 57920}]}
    return body


async def _video_block(ctx: EmulatorContext, task: Task) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "video", "mime_type": "video/mp4"}
    if task.extra["delivery"] == "uri":
        block["uri"] = (
            f"{task.extra['base_url']}/gemini/v1beta/interactions/{task.id}/video:download"
        )
        return block
    rendered = await ctx.renderer.render(task.spec)
    block["data"] = base64.b64encode(rendered.video_path.read_bytes()).decode()
    return block


def _notify(ctx: EmulatorContext, task: Task, phase: Phase) -> None:
    """Static project webhook (Standard Webhooks); the payload shape is a guess."""
    url = ctx.settings.gemini_webhook_url
    if not url or phase not in TERMINAL:
        return
    kind = {Phase.SUCCEEDED: "completed", Phase.CANCELLED: "cancelled"}.get(phase, "failed")
    if phase is Phase.SUCCEEDED and task.outcome is not Outcome.SUCCESS:
        kind = "failed"
    event = {
        "id": "evt_" + secrets.token_hex(12),
        "type": f"interaction.{kind}",
        "created_at": int(time.time()),
        "data": {"id": task.id, "status": _STATUS[phase] if kind != "failed" else "failed"},
    }
    body = json.dumps(event, separators=(",", ":")).encode()
    ctx.sender.send(url, body, sign_headers(ctx.settings.gemini_webhook_secret, body))
