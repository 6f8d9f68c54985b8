"""What the Gemini API and Vertex AI Veo surfaces share: errors, request parsing, sizes."""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response

from services.emulator.context import (
    EmulatorContext,
    ErrorFn,
    Reason,
    guard,
    json_response,
    plan_create,
)
from services.emulator.faults import CallKind, CreationPlan, Triggers

_STATUS = {
    Reason.AUTH_MISSING: "PERMISSION_DENIED",
    Reason.AUTH_INVALID: "INVALID_ARGUMENT",
    Reason.BAD_REQUEST: "INVALID_ARGUMENT",
    Reason.NOT_FOUND: "NOT_FOUND",
    Reason.RATE_LIMITED: "RESOURCE_EXHAUSTED",
    Reason.SERVER_ERROR: "INTERNAL",
    Reason.MODERATION: "INVALID_ARGUMENT",
    Reason.NOT_READY: "FAILED_PRECONDITION",
}
RPC_INTERNAL = 13
RAI_REASON = (
    "Your video could not be generated because it violates the emulated safety policy "
    "(raiMediaFilteredReasons is an emulation)."
)
_SIZES = {
    ("720p", "16:9"): (1280, 720),
    ("720p", "9:16"): (720, 1280),
    ("1080p", "16:9"): (1920, 1080),
    ("1080p", "9:16"): (1080, 1920),
    ("4k", "16:9"): (3840, 2160),
    ("4k", "9:16"): (2160, 3840),
}


def google_error(status: int, message: str, reason: Reason) -> Response:
    body = {"error": {"code": status, "message": message, "status": _STATUS[reason]}}
    return json_response(body, status)


def camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def camelize(value: Any) -> Any:
    """Proto-JSON accepts snake_case and camelCase; normalise to camelCase."""
    if isinstance(value, dict):
        return {camel(k): camelize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [camelize(v) for v in value]
    return value


def api_key(request: Request) -> str | None:
    return request.headers.get("x-goog-api-key") or request.query_params.get("key") or None


def new_operation_id(length: int = 12) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(length))


@dataclass(frozen=True)
class VeoRequest:
    prompt: str
    width: int
    height: int
    seconds: int
    samples: int
    seed: int
    audio: bool
    storage_uri: str | None


def parse_veo_request(body: Any, model: str, vertex: bool) -> VeoRequest | str:
    """The request, or the INVALID_ARGUMENT message explaining what is wrong."""
    body = camelize(body)
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("instances"), list)
        or not body["instances"]
    ):
        return "instances[0] is required."
    instance, params = body["instances"][0], body.get("parameters") or {}
    prompt = instance.get("prompt") or ""
    if not prompt and not (instance.get("image") or instance.get("video")):
        return "A prompt, image or video is required."
    try:
        seconds = int(params.get("durationSeconds", 8))
        samples = int(params.get("sampleCount", 1))
        seed = int(params.get("seed", 0))
    except (TypeError, ValueError):
        return "durationSeconds, sampleCount and seed must be integers."
    resolution = str(params.get("resolution", "720p")).lower()
    size = _SIZES.get((resolution, str(params.get("aspectRatio", "16:9"))))
    if size is None:
        return "Unsupported aspectRatio/resolution (16:9|9:16 and 720p|1080p|4k)."
    if not 4 <= seconds <= 8 or not 1 <= samples <= 4:
        return "durationSeconds must be 4-8 and sampleCount 1-4."
    veo3 = not re.match(r"veo-2", model)
    audio = bool(params.get("generateAudio", veo3)) if vertex else veo3
    storage = params.get("storageUri") if vertex else None
    return VeoRequest(prompt, size[0], size[1], seconds, samples, seed, audio, storage)


async def begin_veo_create(
    ctx: EmulatorContext,
    request: Request,
    *,
    provider: str,
    owner: str,
    model: str,
    errors: ErrorFn,
) -> Response | tuple[VeoRequest, CreationPlan, Triggers]:
    """The checks both Veo surfaces (Gemini API and Vertex) run before creating an operation:
    injected faults, the JSON body, the request fields, the create plan, input moderation."""
    if fault := await guard(ctx, provider, CallKind.CREATE, errors):
        return fault
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        return errors(400, "Invalid JSON payload received.", Reason.BAD_REQUEST)
    parsed = parse_veo_request(body, model, vertex=provider == "vertex")
    if isinstance(parsed, str):
        return errors(400, parsed, Reason.BAD_REQUEST)
    planned = plan_create(ctx, provider, owner, parsed.prompt, errors)
    if isinstance(planned, Response):
        return planned
    plan, triggers = planned
    if plan.reject_input:
        msg = "The prompt could not be submitted: it violates the (emulated) usage guidelines."
        return errors(400, msg, Reason.MODERATION)
    return parsed, plan, triggers
