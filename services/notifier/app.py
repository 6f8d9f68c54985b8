"""Composition root of the notifier: the only place real adapters are built."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import httpx
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry
from pydantic import TypeAdapter

from services.notifier.adapters import MongoDeliveryStore
from services.notifier.api import delivery_routes
from services.notifier.delivery import Deliverer
from services.notifier.handlers import NotifierContext, on_job_outcome
from services.notifier.settings import NotifierSettings
from services.notifier.store import Delivery, DeliveryStore
from shared.egress import EgressGuard, guarded_transport
from shared.events import JOB_OUTCOME, Envelope
from shared.messaging import DlqRecord, consume, publish
from shared.metrics import ServiceMetrics
from shared.repository import JobRepository
from shared.runtime import ServiceProcess, build_broker, kafka_check
from shared.stores import attach, open_job_store
from shared.topics import TOPICS, Topic

GROUP_ID = "notifier"
DELIVERIES = "deliveries"


@dataclass
class Deps:
    """Adapters a test hands in instead of the real ones."""

    repo: JobRepository
    store: DeliveryStore
    transport: httpx.AsyncBaseTransport | None = None  # None: real network


async def create_app(settings: NotifierSettings, deps: Deps | None = None) -> ServiceProcess:
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry, settings.service_name)
    broker = build_broker(settings, registry)
    process = ServiceProcess(settings=settings, registry=registry, broker=broker)
    process.checks["kafka"] = kafka_check(broker)
    if deps is None:
        deps = await _real_deps(settings, process)

    async def publish_event(topic: Topic, event: Envelope) -> None:
        await publish(broker, topic, event)

    allow = settings.egress_networks()
    ctx = NotifierContext(
        repo=deps.repo, store=deps.store, publish=publish_event, metrics=metrics, allow=allow
    )
    consume(
        broker,
        Topic.JOBS_FINISHED,
        group_id=GROUP_ID,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        decode=JOB_OUTCOME.validate_json,
        handle=functools.partial(on_job_outcome, ctx),
        on_dead_letter=metrics.dead_letter,
    )
    # Every connection is vetted on the address actually connected to (shared/egress.py).
    client = httpx.AsyncClient(
        transport=deps.transport or guarded_transport(EgressGuard(allow)),
        follow_redirects=False,
        timeout=httpx.Timeout(settings.delivery_timeout_s, connect=5.0),
    )
    process.on_stop.append(client.aclose)
    deliverer = Deliverer(
        store=deps.store,
        client=client,
        dead_letter=functools.partial(_dead_letter, broker),
        metrics=metrics,
        master_secret=settings.webhook_master_secret.get_secret_value(),
        schedule=settings.retry_schedule_s,
        jitter=settings.retry_jitter,
        timeout_s=settings.delivery_timeout_s,
        deadline_s=settings.delivery_deadline_s,
        allow=allow,
        batch=settings.delivery_batch,
        poll_s=settings.delivery_poll_s,
        lease_s=settings.delivery_lease_s,
    )
    process.loops.append(deliverer.loop)
    process.http.include_router(
        delivery_routes(deps.store, settings.admin_token.get_secret_value())
    )
    return process


async def _dead_letter(broker: KafkaBroker, delivery: Delivery, reason: str) -> None:
    """A dead webhook goes to `jobs-finished-dlq` in the same record shape as a dead message
    (no partition/offset: it did not fail as a Kafka message)."""
    record = DlqRecord(
        topic=Topic.JOBS_FINISHED.value,
        partition=-1,
        offset=-1,
        key=delivery.job_id,
        reason=f"webhook delivery {delivery.id} to {delivery.url} failed: {reason}",
        error_type="WebhookDeliveryFailed",
        payload=delivery.body,
    )
    dlq = TOPICS[Topic.JOBS_FINISHED].dlq
    assert dlq is not None
    await broker.publish(
        TypeAdapter(DlqRecord).dump_json(record),
        dlq,
        key=delivery.job_id.encode(),
        headers={"reason": reason[:200]},
    )


async def _real_deps(settings: NotifierSettings, process: ServiceProcess) -> Deps:
    jobs = await open_job_store(settings)
    attach(jobs, process)
    store: DeliveryStore
    if jobs.pool is not None:
        from services.notifier.pg_store import PgDeliveryStore

        store = PgDeliveryStore(jobs.pool)
    else:
        mongo_store = MongoDeliveryStore(jobs.mongo[settings.mongodb_database][DELIVERIES])
        await mongo_store.ensure_indexes()
        store = mongo_store
    return Deps(repo=jobs.repo, store=store)
