"""Composition root: `create_app(settings)` builds everything; nothing is built at import."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from fastapi import FastAPI

from services.emulator import (
    admin,
    fal_api,
    gemini_api,
    gemini_interactions_api,
    kling_api,
    openai_api,
    replicate_api,
    runway_api,
    vertex_api,
)
from services.emulator.callbacks import CallbackSender, LifecycleNotifier
from services.emulator.context import EmulatorContext
from services.emulator.faults import FaultInjector, RateLimiter
from services.emulator.render import Renderer
from services.emulator.settings import EmulatorSettings
from services.emulator.tasks import Clock, SystemClock, TaskStore


def build_context(
    settings: EmulatorSettings,
    clock: Clock | None = None,
    callback_transport: httpx.AsyncBaseTransport | None = None,
) -> EmulatorContext:
    clock = clock or SystemClock()
    tunables = settings.tunables()
    data_dir = settings.data_dir or Path(tempfile.mkdtemp(prefix="reelforge-emulator-"))
    store = TaskStore(clock, concurrency={runway_api.PROVIDER: settings.runway_concurrency})
    return EmulatorContext(
        settings=settings,
        tunables=tunables,
        clock=clock,
        store=store,
        renderer=Renderer(data_dir, scale=settings.render_scale, workers=settings.render_workers),
        faults=FaultInjector(tunables, settings.seed),
        limiter=RateLimiter(tunables),
        sender=CallbackSender(
            settings.webhook_max_attempts,
            settings.webhook_retry_seconds,
            settings.webhook_timeout_seconds,
            transport=callback_transport,
        ),
        notifier=LifecycleNotifier(store, clock, settings.lifecycle_tick_seconds),
    )


def create_app(
    settings: EmulatorSettings,
    clock: Clock | None = None,
    callback_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """The emulator app. `clock` and `callback_transport` are seams for tests."""
    ctx = build_context(settings, clock, callback_transport)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        ctx.notifier.start()
        try:
            yield
        finally:
            await ctx.notifier.stop()
            await ctx.sender.close()
            ctx.renderer.close()

    app = FastAPI(title="Reelforge provider emulator", lifespan=lifespan)
    app.state.ctx = ctx
    surfaces = (
        openai_api,
        gemini_api,
        gemini_interactions_api,
        vertex_api,
        runway_api,
        kling_api,
        fal_api,
        replicate_api,
    )
    for module in (*surfaces, admin):
        app.include_router(module.build_router(ctx))
    return app
