"""What the Gemini API and Vertex AI Veo surfaces share: errors, request parsing, sizes."""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response

from services.emulator.context import (
    RETRY_IN_BODY,
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
    Reason.QUOTA_EXHAUSTED: "RESOURCE_EXHAUSTED",
}
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"
HELP = "type.googleapis.com/google.rpc.Help"
QUOTA_METRIC = "generativelanguage.googleapis.com/predict_long_running_requests"
RATE_LIMITS_DOC = "https://ai.google.dev/gemini-api/docs/rate-limits"
# Models Google shut down (Gemini API changelog, 2026-06-15: off on 2026-06-30; Vertex the same
# day). The API then answers 404 NOT_FOUND for them, as for any unknown model.
RETIRED_MODELS = frozenset(
    {"veo-2.0-generate-001", "veo-3.0-generate-001", "veo-3.0-fast-generate-001"}
)
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


def google_error(
    status: int, message: str, reason: Reason, details: list[dict[str, Any]] | None = None
) -> Response:
    error: dict[str, Any] = {"code": status, "message": message, "status": _STATUS[reason]}
    if details is not None:
        error["details"] = details
    return json_response({"error": error}, status)


def quota_details(quota_id: str, retry_seconds: float | None) -> list[dict[str, Any]]:
    """`error.details` of a Google 429: the violated quota, a help link, and (for a
    per-minute limit) `RetryInfo.retryDelay` as a protobuf Duration ("32s")."""
    details: list[dict[str, Any]] = [
        {
            "@type": QUOTA_FAILURE,
            "violations": [
                {
                    "quotaMetric": QUOTA_METRIC,
                    "quotaId": quota_id,
                    "quotaValue": "10",
                }
            ],
        },
        {"@type": HELP, "links": [{"description": "Learn more", "url": RATE_LIMITS_DOC}]},
    ]
    if retry_seconds is not None:
        details.append({"@type": RETRY_INFO, "retryDelay": f"{retry_seconds:g}s"})
    return details


def google_errors(ctx: EmulatorContext, base: ErrorFn = google_error) -> ErrorFn:
    """The Google error function of one router: 429s carry QuotaFailure and RetryInfo in the
    body (Google sends no Retry-After header); everything else is `base`."""

    def errors(status: int, message: str, reason: Reason) -> Response:
        if reason is Reason.RATE_LIMITED:
            delay = float(ctx.tunables.retry_after_seconds)
            details = quota_details("GenerateRequestsPerMinutePerProjectPerModel", delay)
            # The Gemini API's per-minute wording; it talks about quota and billing even
            # though waiting `retryDelay` is all it takes.
            text = (
                "You exceeded your current quota, please check your plan and billing details. "
                f"For more information on this error, head to: {RATE_LIMITS_DOC}. "
                f"Please retry in {delay:g}s."
            )
            return google_error(status, text, reason, details)
        if reason is Reason.QUOTA_EXHAUSTED:
            details = quota_details("GenerateRequestsPerDayPerProjectPerModel", None)
            return google_error(status, message, reason, details)
        return base(status, message, reason)

    setattr(errors, RETRY_IN_BODY, True)
    return errors


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
    if not 1 <= samples <= 4:
        return "sampleCount must be 1-4."
    if problem := veo_limits(params, model, resolution, seconds, vertex, instance):
        return problem
    veo3 = not re.match(r"veo-2", model)
    audio = bool(params.get("generateAudio", veo3)) if vertex else veo3
    storage = params.get("storageUri") if vertex else None
    return VeoRequest(prompt, size[0], size[1], seconds, samples, seed, audio, storage)


def veo_limits(
    params: dict[str, Any],
    model: str,
    resolution: str,
    seconds: int,
    vertex: bool,
    instance: dict[str, Any],
) -> str | None:
    """Veo 3.x rules from the Gemini API and Vertex Veo docs: 4, 6 or 8 seconds; 1080p and 4k
    only at 8 seconds; 4k only on Veo 3.1; on the Gemini API, text-to-video takes
    personGeneration "allow_all" and image-to-video "allow_adult" only."""
    if seconds not in (4, 6, 8):
        return f"durationSeconds {seconds} is out of range; supported values are 4, 6 and 8."
    if resolution in ("1080p", "4k") and seconds != 8:
        return f"{resolution} output is only supported with durationSeconds 8."
    if resolution == "4k" and not model.startswith("veo-3.1"):
        return f"resolution 4k is not supported by {model}."
    person = params.get("personGeneration")
    if not vertex and person is not None:
        allowed = "allow_adult" if instance.get("image") else "allow_all"
        if person != allowed:
            return f"personGeneration {person!r} is not supported here; use {allowed!r}."
    return None


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
