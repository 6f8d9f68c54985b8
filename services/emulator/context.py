"""What every provider router shares: the context built by `create_app`, and small helpers.

Each router gets an `EmulatorContext` and an `ErrorFn` that renders its provider's own error
envelope; `guard` applies the random/forced transport faults before a handler does any work.
"""

from __future__ import annotations

import asyncio
import base64
import email.parser
import email.policy
import hashlib
import hmac
import json
import secrets
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from fastapi import Request, Response
from starlette.responses import StreamingResponse

from services.emulator.callbacks import CallbackSender, LifecycleNotifier
from services.emulator.faults import (
    CallKind,
    CreationPlan,
    Fault,
    FaultInjector,
    RateLimiter,
    Triggers,
)
from services.emulator.render import Renderer, RenderSpec
from services.emulator.settings import EmulatorSettings, Tunables
from services.emulator.tasks import Clock, Outcome, Task, TaskStore


class Reason(StrEnum):
    AUTH_MISSING = "auth_missing"
    AUTH_INVALID = "auth_invalid"
    BAD_REQUEST = "bad_request"
    NOT_FOUND = "not_found"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    MODERATION = "moderation"
    NOT_READY = "not_ready"


ErrorFn = Callable[[int, str, Reason], Response]


class Stats:
    """Calls per provider and kind (create/status/download); benchmarks read these."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()

    def count(self, provider: str, kind: CallKind) -> None:
        self.counts[(provider, kind.value)] += 1

    def as_dict(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for (provider, kind), n in sorted(self.counts.items()):
            out.setdefault(provider, {k.value: 0 for k in CallKind})[kind] = n
        return out

    def reset(self) -> None:
        self.counts.clear()


class UrlSigner:
    """HMAC-signed, expiring download URLs (`?expires=<unix>&sig=<b64url>`)."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def _sig(self, path: str, expires: int) -> str:
        mac = hmac.new(self._key, f"{path}|{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac[:18]).decode().rstrip("=")

    def sign(self, base: str, path: str, expires: int) -> str:
        return f"{base}{path}?expires={expires}&sig={self._sig(path, expires)}"

    def valid(self, path: str, expires: int, sig: str, now: float) -> bool:
        return hmac.compare_digest(self._sig(path, expires), sig) and now < expires


@dataclass
class EmulatorContext:
    settings: EmulatorSettings
    tunables: Tunables
    clock: Clock
    store: TaskStore
    renderer: Renderer
    faults: FaultInjector
    limiter: RateLimiter
    sender: CallbackSender
    notifier: LifecycleNotifier
    signer: UrlSigner = field(default_factory=UrlSigner)
    stats: Stats = field(default_factory=Stats)

    def base_url(self, request: Request) -> str:
        return (self.settings.public_base_url or str(request.base_url)).rstrip("/")


def bearer_token(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


async def guard(
    ctx: EmulatorContext, provider: str, kind: CallKind, errors: ErrorFn
) -> Response | None:
    """Count the call and maybe inject a transport fault; returns the fault response if any."""
    ctx.stats.count(provider, kind)
    fault = await ctx.faults.before_call(kind)
    return fault_response(ctx, fault, errors) if fault else None


def fault_response(ctx: EmulatorContext, fault: Fault, errors: ErrorFn) -> Response:
    if fault is Fault.RATE_LIMITED:
        resp = errors(429, "Rate limit exceeded (emulated). Retry later.", Reason.RATE_LIMITED)
        resp.headers["Retry-After"] = str(ctx.tunables.retry_after_seconds)
        return resp
    if fault is Fault.SERVER_ERROR:
        return errors(500, "Internal error (emulated).", Reason.SERVER_ERROR)
    return malformed_response()


async def answer_of_create(ctx: EmulatorContext, triggers: Triggers, answer: Response) -> Response:
    """The create's answer, unless the fault "created, answer lost" is armed for it: the task
    already exists, then the caller waits `answer_lost_seconds` and gets a cut-off body."""
    if not ctx.faults.lose_answer(triggers):
        return answer
    if ctx.tunables.answer_lost_seconds > 0:
        await asyncio.sleep(ctx.tunables.answer_lost_seconds)
    return malformed_response()


def malformed_response() -> Response:
    return Response(b'{"id": "trunc', status_code=200, media_type="application/json")


def json_response(
    body: object, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    raw = json.dumps(body, separators=(",", ":")).encode()
    return Response(raw, status_code=status_code, media_type="application/json", headers=headers)


def file_response(path: Path, media_type: str, truncated: bool) -> Response:
    """The file; when `truncated`, Content-Length promises more than is sent, then EOF."""
    data = path.read_bytes()
    if not truncated:
        return Response(data, media_type=media_type)
    part = data[: max(1, len(data) // 3)]

    def body() -> Iterator[bytes]:
        yield part

    headers = {"content-length": str(len(data))}
    return StreamingResponse(body(), media_type=media_type, headers=headers)


@dataclass(frozen=True)
class NewTask:
    """What a provider router extracted from a create request."""

    provider: str
    task_id: str
    model: str
    prompt: str
    width: int
    height: int
    seconds: float
    audio: bool
    owner: str
    seed: int = 0
    extra: dict[str, object] = field(default_factory=dict)


def create_task(ctx: EmulatorContext, new: NewTask, plan: CreationPlan, triggers: Triggers) -> Task:
    """Store the task (state then follows the clock) and start rendering it in the background."""
    spec = RenderSpec(
        prompt=new.prompt,
        width=new.width,
        height=new.height,
        seconds=new.seconds,
        fps=ctx.settings.fps,
        audio=new.audio,
        face=triggers.wants_face(new.prompt),
        seed=new.seed,
    )
    instant = plan.outcome is Outcome.MODERATION_INPUT
    task = Task(
        id=new.task_id,
        provider=new.provider,
        model=new.model,
        prompt=new.prompt,
        spec=spec,
        owner=new.owner,
        created_at=ctx.clock.now(),
        queue_seconds=0.0 if instant else _pick(triggers.queue_seconds, ctx.tunables.queue_seconds),
        render_seconds=0.0
        if instant
        else _pick(triggers.render_seconds, ctx.tunables.render_seconds),
        outcome=plan.outcome,
        expired=plan.expired,
        truncated=plan.truncated,
        malformed=plan.malformed,
        extra=dict(new.extra),
    )
    ctx.store.add(task)
    task.notified = task.phase(ctx.clock.now())
    if plan.outcome is Outcome.SUCCESS:
        ctx.renderer.prefetch(spec)
    return task


def _pick(forced: float | None, default: float) -> float:
    return default if forced is None else forced


def plan_create(
    ctx: EmulatorContext, provider: str, owner: str, prompt: str, errors: ErrorFn
) -> Response | tuple[CreationPlan, Triggers]:
    """Forced create faults, the per-key create rate limit, then the task's fate."""
    triggers = Triggers.parse(prompt, provider)
    forced = ctx.faults.forced_create_fault(triggers)
    if forced is not None:
        return fault_response(ctx, forced, errors)
    if not ctx.limiter.allow(provider, owner, ctx.clock.now()):
        return fault_response(ctx, Fault.RATE_LIMITED, errors)
    return ctx.faults.plan(triggers), triggers


async def read_fields(request: Request) -> dict[str, Any]:
    """JSON or multipart/form-data fields; file parts come back as bytes."""
    ctype = request.headers.get("content-type", "")
    raw = await request.body()
    if ctype.startswith("multipart/form-data"):
        head = b"Content-Type: " + ctype.encode() + b"\r\n\r\n"
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
        fields: dict[str, Any] = {}
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            data = payload if isinstance(payload, bytes) else b""
            fields[str(name)] = data if part.get_filename() else data.decode()
        return fields
    parsed = json.loads(raw) if raw.strip() else {}
    if not isinstance(parsed, dict):
        raise ValueError("body must be an object")
    return parsed
