"""Replicate predictions API (`/replicate/v1/...`) with Standard Webhooks deliveries.

`POST /v1/models/{owner}/{name}/predictions` (official models) and `POST /v1/predictions`
(`version` = `owner/name` or `owner/name:<id>`) take `{"input", "webhook",
"webhook_events_filter"}` and a Bearer token; `Prefer: wait[=n]` holds the create open until
the prediction ends (at most n, capped at 60, seconds). `GET /v1/predictions/{id}`,
`POST /v1/predictions/{id}/cancel`, `GET /v1/webhooks/default/secret`. Errors are problem
details (`title`, `detail`, `status`); invalid input is 422 with `invalid_fields`. Moderation
fails the prediction: input with Replicate's E005 text (which does not say input or output),
output with the "NSFW content detected" text that models' own output checkers raise. Outputs are
public URLs under `/replicate/delivery/...`; after `result_ttl_seconds` (one hour on Replicate)
the prediction reads `data_removed: true`, `output: null` and the file answers 404.
"""

from __future__ import annotations

import asyncio
import hashlib
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
from services.emulator.fal_api import SIZES
from services.emulator.faults import CallKind
from services.emulator.tasks import TERMINAL, Outcome, Phase, Task
from shared.providers.aggregator_models import REPLICATE_WIRES, Wire
from shared.providers.catalog import find_model
from shared.webhooks import sign_headers

PROVIDER = "replicate"
MAX_WAIT_S = 60
NSFW_OUTPUT = "NSFW content detected. Try running it again, or try a different prompt."
E005 = (
    "The input or output was flagged as sensitive. Please try again with different inputs. (E005)"
)
_STATUS = {
    Phase.THROTTLED: "starting",
    Phase.QUEUED: "starting",
    Phase.RUNNING: "processing",
    Phase.SUCCEEDED: "succeeded",
    Phase.FAILED: "failed",
    Phase.CANCELLED: "canceled",
}
_TITLES = {401: "Unauthenticated", 404: "Not found", 429: "Too many requests"}
_MODELS: dict[str, tuple[str, Wire, bool]] = {
    target: (model, wire, target == wire.image and wire.image != wire.text)
    for model, wire in REPLICATE_WIRES.items()
    for target in (wire.text, wire.image)
    if target
}


def replicate_error(status: int, message: str, reason: Reason) -> Response:
    if status == 429:
        message = "Request was throttled. Your rate limit resets in ~1s."
    title = _TITLES.get(status, "Internal server error" if status >= 500 else "Bad request")
    return json_response({"title": title, "detail": message, "status": status}, status)


def _invalid(description: str) -> Response:
    body = {
        "title": "Input validation failed",
        "detail": f"- input: {description}",
        "status": 422,
        "invalid_fields": [{"type": "invalid", "field": "input", "description": description}],
    }
    return json_response(body, 422)


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def validate(inputs: Any, model: str, wire: Wire, image: bool) -> Response | tuple[int, int, float]:
    if not isinstance(inputs, dict):
        return _invalid("input must be an object")
    if not isinstance(inputs.get("prompt"), str) or not inputs["prompt"].strip():
        return _invalid("prompt is required")
    if image and not isinstance(inputs.get(wire.image_field), str):
        return _invalid(f"{wire.image_field} is required")
    spec = find_model(PROVIDER, model)
    durations = spec.durations_s if spec else (5,)
    duration = inputs.get("duration", durations[0])
    if duration not in durations:
        return _invalid(f"duration must be one of {list(durations)}")
    ours = {v: k for k, v in wire.resolution.items()}
    value = inputs.get(wire.resolution_field)
    if wire.resolution and value is not None and value not in ours:
        return _invalid(f"{wire.resolution_field} must be one of {list(ours)}")
    default = spec.resolutions[0] if spec else "720p"
    size = SIZES.get((ours.get(str(value), default), str(inputs.get("aspect_ratio", "16:9"))))
    if size is None:
        return _invalid("aspect_ratio must be one of ['16:9', '9:16', '1:1']")
    return size[0], size[1], float(duration)


class ReplicateSurface:
    def __init__(self, ctx: EmulatorContext) -> None:
        self.ctx = ctx

    def expired(self, task: Task, now: float) -> bool:
        done = task.completed_at(now)
        return task.expired or (
            done is not None and now > done + self.ctx.settings.result_ttl_seconds
        )

    def prediction(self, task: Task) -> dict[str, Any]:
        now = self.ctx.clock.now()
        phase = task.phase(now)
        base = str(task.extra["base_url"])
        started = task.start_at + task.queue_seconds
        body: dict[str, Any] = {
            "id": task.id,
            "model": task.extra["target"],
            "version": str(task.extra["version"]),
            "input": task.extra["input"],
            "logs": "",
            "output": None,
            "data_removed": False,
            "error": None,
            "status": _STATUS[phase],
            "created_at": iso(task.created_at),
            "started_at": iso(started) if now >= started else None,
            "completed_at": iso(task.completed_at(now) or task.cancelled_at),
            "urls": {
                "get": f"{base}/replicate/v1/predictions/{task.id}",
                "cancel": f"{base}/replicate/v1/predictions/{task.id}/cancel",
                "web": f"https://replicate.com/p/{task.id}",
            },
        }
        if phase is Phase.SUCCEEDED:
            body["metrics"] = {"predict_time": task.render_seconds}
            if self.expired(task, now):
                body["data_removed"] = True
            else:
                body["output"] = f"{base}/replicate/delivery/{task.id}/output.mp4"
        if phase is Phase.FAILED:
            body["error"] = {
                Outcome.MODERATION_INPUT: E005,
                Outcome.MODERATION_OUTPUT: NSFW_OUTPUT,
            }.get(task.outcome, "Prediction failed (emulated internal error).")
        return body

    def notify(self, task: Task, phase: Phase) -> None:
        url = task.extra.get("webhook")
        events = task.extra.get("events") or ["start", "output", "logs", "completed"]
        wanted = "completed" if phase in TERMINAL else "start"
        if not url or wanted not in events or phase is Phase.THROTTLED:
            return
        body = json.dumps(self.prediction(task), separators=(",", ":")).encode()
        secret = self.ctx.settings.replicate_webhook_secret
        headers = sign_headers(secret, body, timestamp=int(self.ctx.clock.now()))
        self.ctx.sender.send(str(url), body, headers)


def _wait_seconds(prefer: str | None) -> float | None:
    match = re.fullmatch(r"\s*wait(?:=(\d+))?\s*", prefer or "")
    if match is None:
        return None
    return float(min(int(match.group(1) or MAX_WAIT_S), MAX_WAIT_S))


def build_router(ctx: EmulatorContext) -> APIRouter:
    router = APIRouter(prefix="/replicate")
    surface = ReplicateSurface(ctx)

    def authorized(request: Request) -> Response | str:
        token = bearer_token(request)
        if token is None or token == ctx.settings.invalid_api_key:
            msg = "You did not pass a valid authentication token"
            return replicate_error(401, msg, Reason.AUTH_INVALID)
        return token

    def owned(request: Request, prediction_id: str) -> Response | Task:
        token = authorized(request)
        if isinstance(token, Response):
            return token
        task = ctx.store.get(PROVIDER, prediction_id)
        if task is None or task.owner != token:
            msg = "The requested resource could not be found."
            return replicate_error(404, msg, Reason.NOT_FOUND)
        return task

    async def create(request: Request, target: str, version: str | None) -> Response:
        token = authorized(request)
        if isinstance(token, Response):
            return token
        if fault := await guard(ctx, PROVIDER, CallKind.CREATE, replicate_error):
            return fault
        known = _MODELS.get(target)
        if known is None:
            msg = "The requested resource could not be found."
            return replicate_error(404, msg, Reason.NOT_FOUND)
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError:
            return replicate_error(400, "Request body is not valid JSON.", Reason.BAD_REQUEST)
        inputs = body.get("input") if isinstance(body, dict) else None
        model, wire, image = known
        checked = validate(inputs, model, wire, image)
        if isinstance(checked, Response):
            return checked
        assert isinstance(inputs, dict)
        planned = plan_create(ctx, PROVIDER, token, str(inputs["prompt"]), replicate_error)
        if isinstance(planned, Response):
            return planned
        plan, triggers = planned
        if plan.reject_input:
            plan = replace(plan, reject_input=False, outcome=Outcome.MODERATION_INPUT)
        width, height, seconds = checked
        digest = hashlib.sha256(target.encode()).hexdigest()
        new = NewTask(
            provider=PROVIDER,
            task_id=uuid.uuid4().hex[:26],
            model=model,
            prompt=str(inputs["prompt"]),
            width=width,
            height=height,
            seconds=seconds,
            audio=False,
            owner=token,
            seed=int(inputs.get("seed") or 0),
            extra={
                "base_url": ctx.base_url(request),
                "target": target,
                "version": version or digest,
                "input": inputs,
                "webhook": body.get("webhook"),
                "events": body.get("webhook_events_filter"),
            },
        )
        task = create_task(ctx, new, plan, triggers)
        wait = _wait_seconds(request.headers.get("prefer"))
        if wait:
            await _hold(ctx, task, wait)
        return await answer_of_create(ctx, triggers, json_response(surface.prediction(task), 201))

    @router.post("/v1/models/{owner}/{name}/predictions")
    async def create_for_model(owner: str, name: str, request: Request) -> Response:
        return await create(request, f"{owner}/{name}", None)

    @router.post("/v1/predictions")
    async def create_prediction(request: Request) -> Response:
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError:
            return replicate_error(400, "Request body is not valid JSON.", Reason.BAD_REQUEST)
        version = str(body.get("version", "")) if isinstance(body, dict) else ""
        target, _, version_id = version.partition(":")
        return await create(request, target, version_id or None)

    @router.get("/v1/predictions/{prediction_id}")
    async def get_prediction(prediction_id: str, request: Request) -> Response:
        if fault := await guard(ctx, PROVIDER, CallKind.STATUS, replicate_error):
            return fault
        task = owned(request, prediction_id)
        if isinstance(task, Response):
            return task
        if task.malformed:
            return malformed_response()
        return json_response(surface.prediction(task))

    @router.post("/v1/predictions/{prediction_id}/cancel")
    async def cancel(prediction_id: str, request: Request) -> Response:
        task = owned(request, prediction_id)
        if isinstance(task, Response):
            return task
        now = ctx.clock.now()
        if task.phase(now) not in TERMINAL:
            task.cancelled_at = now
        return json_response(surface.prediction(task))

    @router.get("/v1/webhooks/default/secret")
    async def webhook_secret(request: Request) -> Response:
        token = authorized(request)
        if isinstance(token, Response):
            return token
        return json_response({"key": ctx.settings.replicate_webhook_secret})

    @router.get("/delivery/{prediction_id}/{name}")
    async def delivery(prediction_id: str, name: str) -> Response:
        ctx.stats.count(PROVIDER, CallKind.DOWNLOAD)
        task = ctx.store.get(PROVIDER, prediction_id)
        now = ctx.clock.now()
        if (
            task is None
            or name != "output.mp4"
            or task.phase(now) is not Phase.SUCCEEDED
            or surface.expired(task, now)
        ):
            return Response("Not Found", status_code=404, media_type="text/plain")
        if fault := await ctx.faults.before_call(CallKind.DOWNLOAD):
            return fault_response(ctx, fault, replicate_error)
        rendered = await ctx.renderer.render(task.spec)
        return file_response(
            rendered.video_path, "video/mp4", ctx.faults.truncate_download(task.truncated)
        )

    ctx.notifier.register(PROVIDER, surface.notify)
    return router


async def _hold(ctx: EmulatorContext, task: Task, seconds: float) -> None:
    """`Prefer: wait`: answer once the prediction ends, or after `seconds`."""
    deadline = ctx.clock.now() + seconds
    for _ in range(int(seconds / 0.1) + 1):  # bounded even if the clock does not move
        if task.phase(ctx.clock.now()) in TERMINAL or ctx.clock.now() >= deadline:
            return
        await asyncio.sleep(0.1)
