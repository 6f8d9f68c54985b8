"""Composition root of the reconciler (watchdog): no consumer, one periodic sweep. Several
replicas are safe: every change is a conditional update and every event an idempotent replay."""

from __future__ import annotations

import asyncio
import logging

import httpx
from prometheus_client import CollectorRegistry

from services.reconciler.handlers import ReconcilerDeps, sweep
from services.reconciler.lag import LagMonitor, lag_loop
from services.reconciler.settings import ReconcilerSettings
from shared.metrics import ServiceMetrics
from shared.providers.registry import build_provider
from shared.providers.settings import ProviderSettings
from shared.runtime import ServiceProcess, build_broker, kafka_check
from shared.stores import attach, open_job_store
from shared.topics import PROVIDERS

log = logging.getLogger(__name__)


async def create_app(settings: ReconcilerSettings) -> ServiceProcess:
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry, settings.service_name)
    broker = build_broker(settings, registry)
    store = await open_job_store(settings)
    repo = store.repo
    # Providers only to settle creates whose answer was lost (lookups by our id).
    http = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=5.0))
    provider_settings = ProviderSettings()
    deps = ReconcilerDeps(
        settings=settings,
        repo=repo,
        broker=broker,
        metrics=metrics,
        providers={p: build_provider(p, provider_settings, http) for p in PROVIDERS},
    )
    process = ServiceProcess(
        settings,
        registry,
        broker=broker,
        checks={"kafka": kafka_check(broker)},
    )

    async def sweeping() -> None:
        while True:
            try:
                counts = await sweep(deps)
                if any(k != "nothing" for k in counts):
                    log.info("sweep: %s", counts)
            except Exception:  # the next sweep retries; a watchdog must not die of one error
                log.exception("sweep failed")
            await asyncio.sleep(settings.interval_s)

    process.loops.append(sweeping)

    async def consumer_lag() -> None:
        await lag_loop(LagMonitor(settings.kafka_bootstrap_servers, metrics), settings.interval_s)

    process.loops.append(consumer_lag)
    attach(store, process)
    process.on_stop.append(http.aclose)
    return process
