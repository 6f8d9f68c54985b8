"""Composition root of the storage service: the only place real adapters are built."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import httpx
from faststream import AckPolicy
from prometheus_client import CollectorRegistry

from services.storage.handlers import StorageContext, on_task_succeeded
from services.storage.rehost import DownloadLimits, Prober, Rehoster, probe_stored
from services.storage.retention import Retention
from services.storage.settings import StorageSettings
from shared.blobstore import BlobStore
from shared.egress import EgressGuard, guarded_transport
from shared.events import Envelope, TaskSucceeded
from shared.messaging import consume, decoder_for, publish
from shared.metrics import ServiceMetrics
from shared.providers.base import VideoProvider
from shared.providers.registry import build_provider
from shared.repository import JobRepository
from shared.runtime import (
    ServiceProcess,
    blob_check,
    build_broker,
    connect_blobstore,
    kafka_check,
)
from shared.stores import attach, open_job_store
from shared.topics import Topic

GROUP_ID = "storage"


@dataclass
class Deps:
    """Adapters a test hands in instead of the real ones."""

    repo: JobRepository
    blob: BlobStore
    providers: Mapping[str, VideoProvider]
    probe: Prober = probe_stored


async def create_app(settings: StorageSettings, deps: Deps | None = None) -> ServiceProcess:
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry, settings.service_name)
    broker = build_broker(settings, registry)
    process = ServiceProcess(settings=settings, registry=registry, broker=broker)
    process.checks["kafka"] = kafka_check(broker)
    if deps is None:
        deps = await _real_deps(settings, process)

    async def publish_event(topic: Topic, event: Envelope) -> None:
        await publish(broker, topic, event)

    ctx = StorageContext(
        repo=deps.repo,
        rehoster=Rehoster(
            deps.blob,
            metrics,
            deps.probe,
            limits=DownloadLimits(settings.download_max_bytes, settings.download_total_s),
        ),
        providers=deps.providers,
        publish=publish_event,
        metrics=metrics,
        delete_provider_copy=settings.delete_provider_copy,
        max_download_tries=settings.download_max_tries,
    )
    consume(
        broker,
        Topic.TASKS_SUCCEEDED,
        group_id=GROUP_ID,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        decode=decoder_for(TaskSucceeded),
        handle=functools.partial(on_task_succeeded, ctx),
        on_dead_letter=metrics.dead_letter,
    )
    retention = Retention(
        deps.repo,
        deps.blob,
        timedelta(days=settings.retention_days),
        settings.retention_interval_s,
        settings.retention_batch,
    )
    process.loops.append(retention.loop)
    return process


async def _real_deps(settings: StorageSettings, process: ServiceProcess) -> Deps:
    store = await open_job_store(settings)
    blob = await connect_blobstore(settings)
    # One client for every provider; the per-chunk read timeout bounds a stalled read, the
    # Rehoster's DownloadLimits the whole transfer. Redirects are followed by the adapters, and
    # every connection (redirect targets included) goes through the egress guard.
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=16)
    client = httpx.AsyncClient(
        transport=guarded_transport(EgressGuard(settings.egress_networks()), limits=limits),
        timeout=httpx.Timeout(
            connect=10.0, read=settings.download_timeout_s, write=30.0, pool=30.0
        ),
    )
    providers = {
        name: build_provider(name, settings.provider_settings, client)
        for name in settings.provider_names()
    }
    process.checks["s3"] = blob_check(blob)
    process.on_stop.append(client.aclose)
    attach(store, process)
    return Deps(repo=store.repo, blob=blob, providers=providers)
