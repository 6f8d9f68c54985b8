"""Kling API (`/kling/v1/videos/{text2video|image2video}`), `{code,message,request_id,data}`.

Auth is Kling's recipe: `Authorization: Bearer <JWT HS256>` signed with the secret key, with
`iss` = access key, `exp` and `nbf` checked against the emulator clock (401 codes 1001-1004).
`callback_url` receives the bare `data` object (unsigned, as on Kling) on every status change.
"""

from __future__ import annotations

import json
import secrets
import uuid
from typing import Any

import jwt
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

PROVIDER = "kling"
KINDS = ("text2video", "image2video")
_CODES = {
    Reason.AUTH_MISSING: 1001,
    Reason.AUTH_INVALID: 1002,
    Reason.BAD_REQUEST: 1201,
    Reason.NOT_FOUND: 1203,
    Reason.RATE_LIMITED: 1302,
    Reason.SERVER_ERROR: 5000,
    Reason.MODERATION: 1301,
    Reason.NOT_READY: 1201,
}
_STATUS = {
    Phase.THROTTLED: "submitted",
    Phase.QUEUED: "submitted",
    Phase.RUNNING: "processing",
    Phase.SUCCEEDED: "succeed",
    Phase.FAILED: "failed",
}
_SIZES = {"16:9": (1280, 720), "9:16": (720, 1280), "1:1": (720, 720)}


def envelope(data: Any, code: int = 0, message: str = "SUCCEED", status: int = 200) -> Response:
    body = {"code": code, "message": message, "request_id": str(uuid.uuid4()), "data": data}
    return json_response(body, status)


def kling_error(status: int, message: str, reason: Reason, code: int | None = None) -> Response:
    return envelope(None, code or _CODES[reason], message, status)


def check_jwt(token: str | None, access_key: str, secret_key: str, now: float) -> Response | None:
    """None when the token is valid; otherwise the 401 answer (codes 1001-1004)."""
    if not token:
        return kling_error(401, "Authorization is empty", Reason.AUTH_MISSING)
    try:
        claims = jwt.decode(
            token,
            secret_key,
            algorithms=["HS256"],
            options={"verify_exp": False, "verify_nbf": False},
        )
    except jwt.InvalidTokenError:
        return kling_error(401, "Authorization is invalid", Reason.AUTH_INVALID)
    if claims.get("iss") != access_key:
        return kling_error(
            401, "Authorization is invalid (unknown access key)", Reason.AUTH_INVALID
        )
    if not isinstance(claims.get("exp"), int | float) or not isinstance(
        claims.get("nbf"), int | float
    ):
        return kling_error(
            401, "Authorization is invalid (exp and nbf are required)", Reason.AUTH_INVALID
        )
    if now < claims["nbf"]:
        return kling_error(401, "Authorization is not yet valid", Reason.AUTH_INVALID, code=1003)
    if now >= claims["exp"]:
        return kling_error(401, "Authorization has expired", Reason.AUTH_INVALID, code=1004)
    return None


def _ms(ts: float) -> int:
    return int(ts * 1000)


def task_data(ctx: EmulatorContext, task: Task) -> dict[str, Any]:
    now = ctx.clock.now()
    phase = task.phase(now)
    changed = {
        Phase.RUNNING: task.start_at + task.queue_seconds,
        Phase.SUCCEEDED: task.natural_end,
        Phase.FAILED: task.natural_end,
    }.get(phase, task.created_at)
    data: dict[str, Any] = {
        "task_id": task.id,
        "task_status": _STATUS.get(phase, "failed"),
        "task_status_msg": "",
        "task_info": {"external_task_id": task.extra.get("external_task_id")},
        "created_at": _ms(task.created_at),
        "updated_at": _ms(changed),
    }
    if phase is Phase.FAILED:
        moderated = task.outcome is Outcome.MODERATION_OUTPUT
        data["task_status_msg"] = (
            "Failure to pass the risk control system" if moderated else "Internal error"
        )
    if phase is Phase.SUCCEEDED:
        expires = int(task.natural_end + (0 if task.expired else ctx.settings.result_ttl_seconds))
        video_id = task.extra["video_id"]
        url = ctx.signer.sign(
            task.extra["base_url"], f"/kling/outputs/{task.id}/{video_id}.mp4", expires
        )
        data["task_result"] = {
            "videos": [{"id": video_id, "url": url, "duration": f"{task.spec.seconds:.1f}"}]
        }
        data["final_unit_deduction"] = str(task.spec.seconds / 5)
    return data


def _parse(body: Any, kind: str) -> dict[str, Any] | str:
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    prompt = body.get("prompt") or ""
    if kind == "text2video" and not prompt:
        return "prompt is required"
    if kind == "image2video" and not body.get("image"):
        return "image is required"
    if len(prompt) > 2500 or len(body.get("negative_prompt") or "") > 2500:
        return "prompt and negative_prompt must be at most 2500 characters"
    duration = str(body.get("duration", "5"))
    ratio = str(body.get("aspect_ratio", "16:9"))
    if not duration.isdigit() or not 3 <= int(duration) <= 15 or ratio not in _SIZES:
        return "invalid duration or aspect_ratio"
    if str(body.get("mode", "std")) not in ("std", "pro"):
        return "mode must be std or pro"
    return body


def build_router(ctx: EmulatorContext) -> APIRouter:
    router = APIRouter(prefix="/kling")
    settings = ctx.settings

    def authorize(request: Request) -> Response | str:
        token = bearer_token(request)
        denied = check_jwt(
            token, settings.kling_access_key, settings.kling_secret_key, ctx.clock.now()
        )
        return denied or settings.kling_access_key

    def lookup(kind: str, ident: str, owner: str) -> Task | None:
        task = ctx.store.get(PROVIDER, ident) or ctx.store.find(PROVIDER, "external_task_id", ident)
        return task if task and task.extra["kind"] == kind and task.owner == owner else None

    @router.post("/v1/videos/{kind}")
    async def create(kind: str, request: Request) -> Response:
        owner = authorize(request)
        if isinstance(owner, Response):
            return owner
        if kind not in KINDS:
            return kling_error(404, "invalid method", Reason.NOT_FOUND, code=1202)
        if fault := await guard(ctx, PROVIDER, CallKind.CREATE, kling_error):
            return fault
        try:
            parsed = _parse(json.loads(await request.body() or b"null"), kind)
        except ValueError:
            parsed = "request body is not valid JSON"
        if isinstance(parsed, str):
            return kling_error(400, parsed, Reason.BAD_REQUEST)
        external = parsed.get("external_task_id")
        if external and ctx.store.find(PROVIDER, "external_task_id", external):
            return kling_error(400, "external_task_id already exists", Reason.BAD_REQUEST)
        prompt = str(parsed.get("prompt") or "")
        planned = plan_create(ctx, PROVIDER, owner, prompt, kling_error)
        if isinstance(planned, Response):
            return planned
        plan, triggers = planned
        if plan.reject_input:
            return kling_error(400, "Failure to pass the risk control system", Reason.MODERATION)
        width, height = _SIZES[str(parsed.get("aspect_ratio", "16:9"))]
        scale = 1.5 if parsed.get("mode") == "pro" else 1.0
        new = NewTask(
            provider=PROVIDER,
            task_id=str(10**17 + secrets.randbelow(9 * 10**17)),
            model=str(parsed.get("model_name") or parsed.get("model") or "kling-v1"),
            prompt=prompt,
            width=int(width * scale),
            height=int(height * scale),
            seconds=float(str(parsed.get("duration", "5"))),
            audio=parsed.get("sound") == "on",
            owner=owner,
            extra={
                "kind": kind,
                "external_task_id": external,
                "callback_url": parsed.get("callback_url"),
                "base_url": ctx.base_url(request),
                "video_id": str(uuid.uuid4()),
            },
        )
        task = create_task(ctx, new, plan, triggers)
        return await answer_of_create(ctx, triggers, envelope(task_data(ctx, task)))

    @router.get("/v1/videos/{kind}/{ident}")
    async def query(kind: str, ident: str, request: Request) -> Response:
        owner = authorize(request)
        if isinstance(owner, Response):
            return owner
        if fault := await guard(ctx, PROVIDER, CallKind.STATUS, kling_error):
            return fault
        task = lookup(kind, ident, owner)
        if task is None:
            return kling_error(404, "task not found", Reason.NOT_FOUND)
        if task.malformed:
            return malformed_response()
        return envelope(task_data(ctx, task))

    @router.get("/v1/videos/{kind}")
    async def list_tasks(
        kind: str, request: Request, pageNum: int = 1, pageSize: int = 30
    ) -> Response:
        owner = authorize(request)
        if isinstance(owner, Response):
            return owner
        if fault := await guard(ctx, PROVIDER, CallKind.STATUS, kling_error):
            return fault
        if not 1 <= pageNum <= 1000 or not 1 <= pageSize <= 500:
            return kling_error(400, "pageNum must be 1-1000 and pageSize 1-500", Reason.BAD_REQUEST)
        tasks = [
            t
            for t in reversed(ctx.store.list(PROVIDER))
            if t.extra["kind"] == kind and t.owner == owner
        ]
        page = tasks[(pageNum - 1) * pageSize : pageNum * pageSize]
        return envelope([task_data(ctx, t) for t in page])

    @router.get("/outputs/{task_id}/{name}")
    async def output(task_id: str, name: str, expires: int = 0, sig: str = "") -> Response:
        ctx.stats.count(PROVIDER, CallKind.DOWNLOAD)
        task = ctx.store.get(PROVIDER, task_id)
        now = ctx.clock.now()
        if (
            task is None
            or name != f"{task.extra['video_id']}.mp4"
            or task.phase(now) is not Phase.SUCCEEDED
        ):
            return Response("Not Found", status_code=404, media_type="text/plain")
        if not ctx.signer.valid(f"/kling/outputs/{task_id}/{name}", expires, sig, now):
            return Response("Request has expired", status_code=403, media_type="text/plain")
        if fault := await ctx.faults.before_call(CallKind.DOWNLOAD):
            return fault_response(ctx, fault, kling_error)
        rendered = await ctx.renderer.render(task.spec)
        return file_response(
            rendered.video_path, "video/mp4", ctx.faults.truncate_download(task.truncated)
        )

    ctx.notifier.register(PROVIDER, lambda task, phase: _notify(ctx, task))
    return router


def _notify(ctx: EmulatorContext, task: Task) -> None:
    url = task.extra.get("callback_url")
    if url:
        body = json.dumps(task_data(ctx, task), separators=(",", ":")).encode()
        ctx.sender.send(str(url), body, {"content-type": "application/json"})
