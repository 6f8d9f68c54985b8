"""Composition root of the dispatcher: the only place real adapters are built."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import httpx
from faststream import AckPolicy
from prometheus_client import CollectorRegistry

from services.dispatcher import logic
from services.dispatcher.handlers import DispatcherDeps, admit, on_job_accepted, on_task_failed
from services.dispatcher.settings import DispatcherSettings
from shared.events import JobAccepted, TaskFailed, TaskSucceeded
from shared.messaging import consume
from shared.metrics import ServiceMetrics
from shared.providers.registry import build_provider
from shared.providers.settings import ProviderSettings
from shared.runtime import ServiceProcess, build_broker, kafka_check
from shared.stores import attach, open_job_store
from shared.topics import Topic

log = logging.getLogger(__name__)


async def create_app(settings: DispatcherSettings) -> ServiceProcess:
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry, settings.service_name)
    broker = build_broker(settings, registry)
    store = await open_job_store(settings)
    repo = store.repo
    http = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=5.0))
    provider_settings = ProviderSettings()
    deps = DispatcherDeps(
        settings=settings,
        repo=repo,
        broker=broker,
        metrics=metrics,
        providers={p: build_provider(p, provider_settings, http) for p in settings.providers()},
        limits=logic.concurrency_limits(settings.concurrency, settings.providers()),
    )
    wire_consumers(deps)
    process = ServiceProcess(
        settings,
        registry,
        broker=broker,
        checks={"kafka": kafka_check(broker)},
    )
    attach(store, process)
    process.loops.append(lambda: admission_loop(deps))

    process.on_stop.append(http.aclose)
    return process


def wire_consumers(deps: DispatcherDeps) -> None:
    async def accepted(event: JobAccepted) -> None:
        await on_job_accepted(deps, event)

    async def failed(event: TaskFailed) -> None:
        await on_task_failed(deps, event)
        deps.kick.set()  # the failed attempt's slot is free

    consume(
        deps.broker,
        Topic.JOBS_ACCEPTED,
        group_id="dispatcher",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        decode=JobAccepted.model_validate_json,
        handle=accepted,
        on_dead_letter=deps.metrics.dead_letter,
    )

    async def task_ended(_: TaskSucceeded) -> None:
        deps.kick.set()  # a provider slot is free: admit now rather than at the next tick

    # Its own group (not storage's): every succeeded task is a freed slot for admission.
    consume(
        deps.broker,
        Topic.TASKS_SUCCEEDED,
        group_id="dispatcher-slots",
        ack_policy=AckPolicy.ACK,
        decode=TaskSucceeded.model_validate_json,
        handle=task_ended,
        auto_offset_reset="latest",
        on_dead_letter=deps.metrics.dead_letter,
    )
    consume(
        deps.broker,
        Topic.TASKS_FAILED,
        group_id="dispatcher",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        decode=TaskFailed.model_validate_json,
        handle=failed,
        on_dead_letter=deps.metrics.dead_letter,
    )


async def admission_loop(deps: DispatcherDeps) -> None:
    """Admit queued jobs whenever a job is queued (kick) or at least every interval; the
    queue itself is the job records, so a restart loses nothing."""
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(deps.kick.wait(), deps.settings.admission_interval_s)
        deps.kick.clear()
        try:
            await admit(deps)
        except Exception:  # a failed round is retried on the next tick; never kill the loop
            log.exception("admission round failed")
            await asyncio.sleep(1.0)
