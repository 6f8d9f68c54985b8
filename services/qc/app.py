"""Composition root of the QC service: the only place real adapters are built."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from services.qc import handlers
from services.qc.adapters import MongoReviewStore
from services.qc.api import build_router
from services.qc.desk import ReviewDesk
from services.qc.pipeline import Publish, QcPipeline
from services.qc.reviews import ReviewStore
from services.qc.settings import QcSettings
from services.qc.similarity import load_prompt_scorer
from shared.blobstore import BlobStore
from shared.events import Envelope
from shared.messaging import publish
from shared.metrics import ServiceMetrics
from shared.repository import JobRepository
from shared.runtime import (
    ServiceProcess,
    blob_check,
    build_broker,
    connect_blobstore,
    kafka_check,
)
from shared.stores import attach, open_job_store
from shared.tenants import TenantDirectory
from shared.topics import Topic


async def create_app(settings: QcSettings) -> ServiceProcess:
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry, settings.service_name)
    broker = build_broker(settings, registry)
    store = await open_job_store(settings)
    repo = store.repo
    reviews: ReviewStore
    if store.pool is not None:
        from services.qc.pg_reviews import PgReviewStore

        reviews = PgReviewStore(store.pool)
    else:
        reviews = MongoReviewStore.from_client(
            store.mongo, settings.mongodb_database, settings.reviews_collection
        )
        await reviews.ensure_indexes()
    blobs = await connect_blobstore(settings)

    async def send(topic: Topic, event: Envelope) -> None:
        await publish(broker, topic, event)

    process = ServiceProcess(settings=settings, registry=registry, broker=broker)
    pipeline = wire(process, settings, repo, blobs, reviews, send, metrics)
    handlers.register(broker, pipeline, metrics)
    process.loops.append(
        handlers.sweep_loop(
            pipeline, settings.sweep_interval_s, settings.sweep_stale_s, settings.sweep_batch
        )
    )
    process.checks.update(s3=blob_check(blobs), kafka=kafka_check(broker))
    attach(store, process)
    return process


def wire(
    process: ServiceProcess,
    settings: QcSettings,
    repo: JobRepository,
    blobs: BlobStore,
    reviews: ReviewStore,
    send: Publish,
    metrics: ServiceMetrics | None = None,
) -> QcPipeline:
    """Build the pipeline and mount the review API on `process.http` (no servers touched)."""
    pipeline = QcPipeline(
        repo=repo,
        blobs=blobs,
        reviews=reviews,
        publish=send,
        rules=settings.rules,
        prompt_scorer=load_prompt_scorer(settings.clip_model_dir, settings.clip_threads),
        metrics=metrics,
        work_dir=Path(settings.work_dir) if settings.work_dir else None,
    )
    desk = ReviewDesk(repo=repo, reviews=reviews, publish=send)
    process.http.include_router(
        build_router(
            desk,
            reviews,
            repo,
            blobs,
            TenantDirectory(settings.api_keys),
            settings.presign_expiry_s,
        )
    )
    return pipeline
