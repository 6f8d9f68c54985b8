"""Notifier handler: a job outcome -> a live-stream update and, if asked for, a queued webhook.

Idempotent under redelivery: the JobUpdated is ephemeral (a duplicate is harmless) and the
delivery record's id is `job_id:event type`, so a second insert finds it already queued.
Sending happens in the delivery loop (`delivery.py`), never in the consumer: a slow receiver
must not hold a Kafka partition.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from services.notifier import logic
from services.notifier.store import Delivery, DeliveryStore
from shared.egress import IPNetwork, url_problem
from shared.events import Envelope
from shared.jobs import now
from shared.messaging import PermanentError
from shared.metrics import ServiceMetrics
from shared.repository import JobRepository
from shared.topics import Topic

log = logging.getLogger(__name__)
Publish = Callable[[Topic, Envelope], Awaitable[None]]


@dataclass
class NotifierContext:
    repo: JobRepository
    store: DeliveryStore
    publish: Publish
    metrics: ServiceMetrics
    allow: tuple[IPNetwork, ...] = ()
    clock: Callable[[], datetime] = field(default=now)


async def on_job_outcome(ctx: NotifierContext, event: logic.JobOutcome) -> None:
    await ctx.publish(Topic.JOB_UPDATES, logic.job_updated(event))
    job = await ctx.repo.get(event.subject)
    if job is None:
        raise PermanentError(f"job {event.subject} does not exist")
    if job.request.callback_url is None:
        return
    url = str(job.request.callback_url)
    refused = url_problem(url, ctx.allow)
    if refused is not None:  # accepted before the egress policy, or the allow-list shrank
        log.warning("job %s: not queueing its webhook: %s", job.job_id, refused)
        ctx.metrics.webhook_deliveries.labels("refused").inc()
        return
    at = ctx.clock()
    queued = await ctx.store.insert(
        Delivery(
            id=logic.delivery_id(event.subject, event.type),
            job_id=event.subject,
            tenant_id=event.tenant_id,
            event_id=event.id,
            event_type=event.type,
            event_time=event.time,
            url=url,
            body=event.model_dump_json(),
            next_attempt_at=at,
            created_at=at,
        )
    )
    if not queued:
        log.info("webhook for %s %s already queued", event.subject, event.type)
