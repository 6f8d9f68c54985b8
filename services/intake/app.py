"""Composition root of the intake service: the only place real adapters are built."""

from __future__ import annotations

import httpx
from faststream import AckPolicy
from prometheus_client import CollectorRegistry

from services.intake.adapters import MongoWebhookIds, PgWebhookIds, WebhookIds
from services.intake.api import mount
from services.intake.handlers import IntakeDeps, on_request_job
from services.intake.live import LiveUpdates
from services.intake.settings import IntakeSettings
from shared.events import JobUpdated, RequestJob
from shared.messaging import consume
from shared.metrics import ServiceMetrics
from shared.providers.registry import build_provider
from shared.providers.settings import ProviderSettings
from shared.runtime import (
    ServiceProcess,
    blob_check,
    build_broker,
    connect_blobstore,
    kafka_check,
)
from shared.stores import JobStore, attach, open_job_store
from shared.tenants import TenantDirectory
from shared.topics import Topic


async def create_app(settings: IntakeSettings) -> ServiceProcess:
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry, settings.service_name)
    broker = build_broker(settings, registry)
    store = await open_job_store(settings)
    repo = store.repo
    blobs = await connect_blobstore(settings)
    provider_settings = ProviderSettings()
    http = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=5.0))
    deps = IntakeDeps(
        settings=settings,
        repo=repo,
        broker=broker,
        blobs=blobs,
        metrics=metrics,
        tenants=TenantDirectory(settings.api_keys),
        providers={p: build_provider(p, provider_settings, http) for p in settings.providers()},
        openai_base_url=provider_settings.openai_base_url,
        webhook_ids=webhook_ids_in(store),
    )
    live = LiveUpdates()
    wire_consumers(deps, live)
    process = ServiceProcess(
        settings,
        registry,
        broker=broker,
        checks={
            "kafka": kafka_check(broker),
            "s3": blob_check(blobs),
        },
    )
    attach(store, process)
    process.http.title = "Reelforge intake"
    mount(process.http, deps, live)

    async def close() -> None:
        await http.aclose()

    process.on_stop.append(close)
    return process


def webhook_ids_in(store: JobStore) -> WebhookIds:
    """The webhook replay guard lives in the job store's database (shared by replicas)."""
    if store.pool is not None:
        return PgWebhookIds(store.pool)
    assert store.mongo is not None and store.database is not None
    return MongoWebhookIds(store.mongo[store.database]["webhook_ids"])


def wire_consumers(deps: IntakeDeps, live: LiveUpdates) -> None:
    async def handle_request(command: RequestJob) -> None:
        await on_request_job(deps, command)

    consume(
        deps.broker,
        Topic.JOB_REQUESTS,
        group_id="intake",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        decode=RequestJob.model_validate_json,
        handle=handle_request,
        on_dead_letter=deps.metrics.dead_letter,
    )
    # Live streams are a broadcast: every replica must see every update for the streams it
    # holds, so no consumer group and nothing committed. At-most-once is right here: a missed
    # update only delays a stream until its next read of the job record.
    consume(
        deps.broker,
        Topic.JOB_UPDATES,
        group_id=None,
        ack_policy=AckPolicy.ACK_FIRST,
        decode=JobUpdated.model_validate_json,
        handle=live.publish,
        auto_offset_reset="latest",
    )
