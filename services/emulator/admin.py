"""Emulator admin endpoints under `/_emulator` (not part of any provider contract)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import ValidationError

from services.emulator.context import EmulatorContext, json_response
from services.emulator.settings import Tunables


def task_summary(ctx: EmulatorContext, task: Any) -> dict[str, Any]:
    now = ctx.clock.now()
    return {
        "provider": task.provider,
        "id": task.id,
        "model": task.model,
        "owner_hint": task.owner[:4] + "...",
        "phase": task.phase(now).value,
        "progress": round(task.progress(now), 3),
        "outcome": task.outcome.value,
        "created_at": task.created_at,
        "start_at": task.start_at,
        "finish_at": task.natural_end,
        "expired": task.expired,
        # The caller's own id where the contract has one (Kling's external_task_id).
        "external_id": task.extra.get("external_task_id"),
    }


def build_router(ctx: EmulatorContext) -> APIRouter:
    router = APIRouter(prefix="/_emulator")

    @router.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/config")
    async def get_config() -> dict[str, Any]:
        return ctx.tunables.model_dump()

    @router.post("/config")
    async def set_config(request: Request) -> Response:
        """Merge the posted fields into the tunables; `{"reset": true}` restores the settings'."""
        body = await request.json()
        if body.pop("reset", False):
            merged = ctx.settings.tunables().model_dump()
        else:
            merged = ctx.tunables.model_dump()
        unknown = set(body) - set(Tunables.model_fields) - {"seed"}
        if unknown:
            return json_response({"error": f"unknown fields: {sorted(unknown)}"}, 400)
        seed = body.pop("seed", None)
        try:
            fresh = Tunables.model_validate({**merged, **body})
        except ValidationError as exc:
            return json_response({"error": str(exc)}, 400)
        for name in Tunables.model_fields:
            setattr(ctx.tunables, name, getattr(fresh, name))
        if seed is not None:
            ctx.faults.reseed(int(seed))
        return json_response(ctx.tunables.model_dump())

    @router.get("/stats")
    async def stats() -> dict[str, Any]:
        return {"calls": ctx.stats.as_dict(), "webhook_deliveries": len(ctx.sender.deliveries)}

    @router.post("/stats/reset")
    async def reset_stats() -> dict[str, str]:
        ctx.stats.reset()
        return {"status": "ok"}

    @router.get("/tasks")
    async def tasks(provider: str | None = None) -> dict[str, Any]:
        rows = [task_summary(ctx, t) for t in ctx.store.all() if provider in (None, t.provider)]
        return {"tasks": sorted(rows, key=lambda r: r["created_at"])}

    return router
