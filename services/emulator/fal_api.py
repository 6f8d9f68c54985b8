"""fal queue API (`/fal/queue/...`): submit, status, result, cancel; ED25519-signed webhooks.

Submit is `POST /fal/queue/{endpoint_id}` (`Authorization: Key <key>`, the model input as the
body, optional `?fal_webhook=`); status, result and cancel live under the app id (the first two
segments of the endpoint id): `GET .../requests/{id}/status` (202 while IN_QUEUE or
IN_PROGRESS, 200 when COMPLETED), `GET .../requests/{id}` (400 while pending, the stored error's
status for a failed request), `PUT .../requests/{id}/cancel` (202 CANCELLATION_REQUESTED, 400
ALREADY_COMPLETED, 404 NOT_FOUND). Inputs are checked against the catalog's limits and answered
with fal's 422 `detail` list. Input moderation is a 422 `content_policy_violation` at
`["body", "prompt"]`; output moderation the same type at `["body"]` with the `model_moderated`
category (how fal tells the model's own check apart is not documented: an emulator choice).
Webhooks are signed with the emulator's key, published at `/fal/.well-known/jwks.json`.
Result files are public URLs under `/fal/files/...` (404 once expired).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any
from urllib.parse import quote

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import APIRouter, Request, Response

from services.emulator.context import (
    EmulatorContext,
    NewTask,
    Reason,
    answer_of_create,
    create_task,
    fault_response,
    file_response,
    guard,
    json_response,
    malformed_response,
    plan_create,
)
from services.emulator.faults import CallKind
from services.emulator.tasks import TERMINAL, Outcome, Phase, Task
from shared.providers.aggregator_models import FAL_WIRES, Wire
from shared.providers.catalog import find_model
from shared.providers.fal_webhooks import jwks_of, sign

PROVIDER = "fal"
USER_ID = "emulator-user"
KEY_ID = "emulator-fal-1"
SIZES = {
    ("480p", "16:9"): (854, 480), ("480p", "9:16"): (480, 854), ("480p", "1:1"): (480, 480),
    ("720p", "16:9"): (1280, 720), ("720p", "9:16"): (720, 1280), ("720p", "1:1"): (720, 720),
    ("1080p", "16:9"): (1920, 1080), ("1080p", "9:16"): (1080, 1920),
    ("1080p", "1:1"): (1080, 1080),
}  # fmt: skip
_ENDPOINTS: dict[str, tuple[str, Wire, bool]] = {
    endpoint: (model, wire, endpoint == wire.image)
    for model, wire in FAL_WIRES.items()
    for endpoint in (wire.text, wire.image)
    if endpoint
}


def fal_error(status: int, message: str, reason: Reason) -> Response:
    return json_response({"detail": message}, status)


def private_key(seed: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(seed.encode()[:32].ljust(32, b"\0"))


def _invalid(field: str, message: str, kind: str) -> Response:
    return json_response({"detail": [{"loc": ["body", field], "msg": message, "type": kind}]}, 422)


def validate(body: Any, model: str, wire: Wire, image: bool) -> Response | tuple[int, int, float]:
    """(width, height, seconds) of a valid input, else fal's 422."""
    if not isinstance(body, dict):
        return _invalid("body", "Input should be a valid dictionary", "dict_type")
    if not isinstance(body.get("prompt"), str) or not body["prompt"].strip():
        return _invalid("prompt", "Field required", "missing")
    if image and not isinstance(body.get(wire.image_field), str):
        return _invalid(wire.image_field, "Field required", "missing")
    spec = find_model(PROVIDER, model)
    durations = spec.durations_s if spec else (5,)
    allowed = {wire.duration(d): d for d in durations}
    duration = body.get("duration", wire.duration(durations[0]))
    if duration not in allowed:
        options = " or ".join(repr(v) for v in allowed)
        return _invalid("duration", f"Input should be {options}", "literal_error")
    ours = {v: k for k, v in wire.resolution.items()}
    resolution = body.get(wire.resolution_field)
    if wire.resolution and resolution is not None and resolution not in ours:
        options = " or ".join(repr(v) for v in ours)
        return _invalid(wire.resolution_field, f"Input should be {options}", "literal_error")
    ratio = str(body.get("aspect_ratio", "16:9"))
    default_res = spec.resolutions[0] if spec else "720p"
    size = SIZES.get((ours.get(str(resolution), default_res), ratio))
    if size is None:
        return _invalid("aspect_ratio", "Input should be '16:9', '9:16' or '1:1'", "literal_error")
    return size[0], size[1], float(allowed[duration])


def _key(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "key" else None


def status_code_and_error(task: Task, now: float) -> tuple[int, dict[str, Any]] | None:
    """(HTTP status, stored error body) of a failed or cancelled request, else None."""
    phase = task.phase(now)
    if phase is Phase.CANCELLED:
        return 400, {"detail": "Request was cancelled", "error_type": "client_cancelled"}
    if phase is not Phase.FAILED:
        return None
    if task.outcome is Outcome.MODERATION_INPUT:
        loc, categories = ["body", "prompt"], ["sexual"]
    elif task.outcome is Outcome.MODERATION_OUTPUT:
        loc, categories = ["body"], ["model_moderated"]
    else:
        return 500, {"detail": "Runner failed (emulated).", "error_type": "runner_server_error"}
    error = {
        "loc": loc,
        "msg": "The content was flagged by a content checker.",
        "type": "content_policy_violation",
        "url": "https://docs.fal.ai/errors#content_policy_violation",
        "categories": categories,
    }
    return 422, {"detail": [error]}


def queue_urls(base: str, app: str, request_id: str) -> dict[str, str]:
    root = f"{base}/fal/queue/{app}/requests/{quote(request_id)}"
    return {"response_url": root, "status_url": f"{root}/status", "cancel_url": f"{root}/cancel"}


class FalSurface:
    def __init__(self, ctx: EmulatorContext) -> None:
        self.ctx = ctx
        self.key = private_key(ctx.settings.fal_webhook_key_seed)

    def status_body(self, task: Task, logs: bool) -> tuple[int, dict[str, Any]]:
        now = self.ctx.clock.now()
        phase = task.phase(now)
        base = queue_urls(str(task.extra["base_url"]), str(task.extra["app"]), task.id)
        if phase in (Phase.THROTTLED, Phase.QUEUED):
            return 202, {"status": "IN_QUEUE", "queue_position": 0, **base}
        log_lines: list[dict[str, str]] | None = [] if logs else None
        if phase is Phase.RUNNING:
            return 202, {"status": "IN_PROGRESS", "logs": log_lines, **base}
        body: dict[str, Any] = {
            "status": "COMPLETED",
            "logs": log_lines,
            "metrics": {"inference_time": task.render_seconds},
            **base,
        }
        failed = status_code_and_error(task, now)
        if failed is not None:
            body["error"] = f"Request failed with status {failed[0]}"
            body["error_type"] = failed[1].get("error_type", "content_policy_violation")
        return 200, body

    def result(self, task: Task) -> Response:
        now = self.ctx.clock.now()
        if task.phase(now) not in TERMINAL:
            return fal_error(400, "Request is still in progress", Reason.NOT_READY)
        failed = status_code_and_error(task, now)
        if failed is not None:
            headers = {}
            if "error_type" in failed[1]:
                headers["x-fal-error-type"] = str(failed[1]["error_type"])
            return json_response(failed[1], failed[0], headers)
        return json_response(self.payload(task))

    def payload(self, task: Task) -> dict[str, Any]:
        url = f"{task.extra['base_url']}/fal/files/{task.id}/output.mp4"
        video = {"url": url, "content_type": "video/mp4", "file_name": "output.mp4"}
        return {"video": video, "seed": task.spec.seed}

    def notify(self, task: Task, phase: Phase) -> None:
        url = task.extra.get("webhook")
        if not url or phase not in TERMINAL:
            return
        failed = status_code_and_error(task, self.ctx.clock.now())
        event: dict[str, Any] = {"request_id": task.id, "gateway_request_id": task.id}
        if failed is None:
            event.update(status="OK", payload=self.payload(task))
        else:
            error = f"Invalid status code: {failed[0]}"
            event.update(status="ERROR", error=error, payload=failed[1])
        body = json.dumps(event, separators=(",", ":")).encode()
        headers = sign(self.key, task.id, USER_ID, int(self.ctx.clock.now()), body)
        self.ctx.sender.send(str(url), body, headers)


def build_router(ctx: EmulatorContext) -> APIRouter:
    router = APIRouter(prefix="/fal")
    surface = FalSurface(ctx)

    def authorized(request: Request) -> Response | str:
        key = _key(request)
        if key is None:
            return fal_error(
                401, "Missing authorization header (Key <FAL_KEY>).", Reason.AUTH_MISSING
            )
        if key == ctx.settings.invalid_api_key:
            return fal_error(401, "Invalid API key.", Reason.AUTH_INVALID)
        return key

    def owned(request: Request, app: str, request_id: str) -> Response | Task:
        key = authorized(request)
        if isinstance(key, Response):
            return key
        task = ctx.store.get(PROVIDER, request_id)
        if task is None or task.owner != key or task.extra.get("app") != app:
            return fal_error(404, f"Request {request_id} not found", Reason.NOT_FOUND)
        return task

    @router.get("/.well-known/jwks.json")
    async def jwks() -> Response:
        return json_response(jwks_of(surface.key, KEY_ID))

    @router.get("/queue/{owner}/{alias}/requests/{request_id}/status")
    async def status(owner: str, alias: str, request_id: str, request: Request) -> Response:
        if fault := await guard(ctx, PROVIDER, CallKind.STATUS, fal_error):
            return fault
        task = owned(request, f"{owner}/{alias}", request_id)
        if isinstance(task, Response):
            return task
        if task.malformed:
            return malformed_response()
        code, body = surface.status_body(task, request.query_params.get("logs") == "1")
        return json_response(body, code)

    @router.get("/queue/{owner}/{alias}/requests/{request_id}")
    async def result(owner: str, alias: str, request_id: str, request: Request) -> Response:
        if fault := await guard(ctx, PROVIDER, CallKind.STATUS, fal_error):
            return fault
        task = owned(request, f"{owner}/{alias}", request_id)
        return task if isinstance(task, Response) else surface.result(task)

    @router.put("/queue/{owner}/{alias}/requests/{request_id}/cancel")
    async def cancel(owner: str, alias: str, request_id: str, request: Request) -> Response:
        task = owned(request, f"{owner}/{alias}", request_id)
        if isinstance(task, Response):
            return json_response({"status": "NOT_FOUND"}, 404) if task.status_code == 404 else task
        now = ctx.clock.now()
        if task.phase(now) in TERMINAL:
            return json_response({"status": "ALREADY_COMPLETED"}, 400)
        task.cancelled_at = now
        return json_response({"status": "CANCELLATION_REQUESTED"}, 202)

    @router.post("/queue/{endpoint_id:path}")
    async def submit(endpoint_id: str, request: Request) -> Response:
        return await _submit(ctx, endpoint_id, request, authorized)

    @router.get("/files/{request_id}/{name}")
    async def files(request_id: str, name: str) -> Response:
        ctx.stats.count(PROVIDER, CallKind.DOWNLOAD)
        task = ctx.store.get(PROVIDER, request_id)
        now = ctx.clock.now()
        if task is None or name != "output.mp4" or task.phase(now) is not Phase.SUCCEEDED:
            return Response("Not Found", status_code=404, media_type="text/plain")
        if task.expired or now > (task.completed_at(now) or now) + ctx.settings.result_ttl_seconds:
            return Response("Not Found", status_code=404, media_type="text/plain")
        if fault := await ctx.faults.before_call(CallKind.DOWNLOAD):
            return fault_response(ctx, fault, fal_error)
        rendered = await ctx.renderer.render(task.spec)
        return file_response(
            rendered.video_path, "video/mp4", ctx.faults.truncate_download(task.truncated)
        )

    ctx.notifier.register(PROVIDER, surface.notify)
    return router


async def _submit(
    ctx: EmulatorContext,
    endpoint_id: str,
    request: Request,
    authorized: Callable[[Request], Response | str],
) -> Response:
    key = authorized(request)
    if isinstance(key, Response):
        return key
    if fault := await guard(ctx, PROVIDER, CallKind.CREATE, fal_error):
        return fault
    known = _ENDPOINTS.get(endpoint_id)
    if known is None:
        return fal_error(404, f"Application '{endpoint_id}' not found", Reason.NOT_FOUND)
    model, wire, image = known
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        return _invalid("body", "JSON decode error", "json_invalid")
    checked = validate(body, model, wire, image)
    if isinstance(checked, Response):
        return checked
    width, height, seconds = checked
    prompt = str(body["prompt"])
    planned = plan_create(ctx, PROVIDER, key, prompt, fal_error)
    if isinstance(planned, Response):
        return planned
    plan, triggers = planned
    if plan.reject_input:
        plan = replace(plan, reject_input=False, outcome=Outcome.MODERATION_INPUT)
    app = "/".join(endpoint_id.split("/")[:2])
    base = ctx.base_url(request)
    new = NewTask(
        provider=PROVIDER,
        task_id=str(uuid.uuid4()),
        model=model,
        prompt=prompt,
        width=width,
        height=height,
        seconds=seconds,
        audio=False,
        owner=key,
        seed=int(body.get("seed") or 0),
        extra={"base_url": base, "app": app, "webhook": request.query_params.get("fal_webhook")},
    )
    task = create_task(ctx, new, plan, triggers)
    urls = queue_urls(base, app, task.id)
    answer = json_response(
        {
            "status": "IN_QUEUE",
            "request_id": task.id,
            "gateway_request_id": task.id,
            "queue_position": 0,
            **urls,
        }
    )
    return await answer_of_create(ctx, triggers, answer)
