"""Intake use cases shared by the HTTP API and the `job-requests` consumer."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from faststream.kafka import KafkaBroker

from services.intake import logic
from services.intake.logic import Idempotency
from services.intake.settings import IntakeSettings
from shared.blobstore import BlobStore
from shared.events import (
    Envelope,
    JobAccepted,
    JobCancelled,
    RequestJob,
    TaskHinted,
    envelope_of,
    event_about,
)
from shared.faultpoints import reach
from shared.jobs import Job, JobRequest, JobState, new_job_id, now
from shared.logs import log_context, trace_id_of
from shared.messaging import PermanentError, publish
from shared.metrics import ServiceMetrics
from shared.providers.base import VideoProvider
from shared.providers.catalog import MODELS
from shared.providers.errors import ProviderError
from shared.repository import JobRepository
from shared.routing import NoRoute, RoutePlan, plan
from shared.tenants import TenantDirectory
from shared.topics import Topic, provider_topic
from shared.tracing import new_traceparent

log = logging.getLogger(__name__)


@dataclass
class IntakeDeps:
    settings: IntakeSettings
    repo: JobRepository
    broker: KafkaBroker
    blobs: BlobStore
    metrics: ServiceMetrics
    tenants: TenantDirectory
    providers: Mapping[str, VideoProvider]
    openai_base_url: str
    clock: Callable[[], datetime] = field(default=now)


class IdempotencyConflict(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(f"Idempotency-Key {key!r} was already used with a different request body")


@dataclass(frozen=True)
class Submitted:
    job: Job
    created: bool


def route(deps: IntakeDeps, request: JobRequest) -> RoutePlan:
    """Validate against every enabled model and quote; raises NoRoute with reasons."""
    return plan(
        request,
        MODELS,
        today=logic.today_of(deps.clock()),
        enabled_providers=deps.settings.providers(),
        retired_allowed=logic.retired_allowed(deps.openai_base_url),
    )


async def submit_job(
    deps: IntakeDeps,
    tenant_id: str,
    request: JobRequest,
    *,
    idempotency_key: str | None,
    source: str,
    traceparent: str | None = None,
) -> Submitted:
    """Validate and quote, then write the job record and its `JobAccepted` in one atomic write
    (the outbox relay publishes it)."""
    route_plan = route(deps, request)
    if idempotency_key:
        existing = await deps.repo.find_by_idempotency_key(tenant_id, idempotency_key)
        if existing is not None:
            return await _replay(deps, existing, request, idempotency_key)
    job = logic.new_job(
        job_id=new_job_id(),
        tenant_id=tenant_id,
        request=request,
        idempotency_key=idempotency_key,
        plan=route_plan,
        at=deps.clock(),
        source=source,
        trace_parent=traceparent or new_traceparent(),
    )
    created = await deps.repo.create(job, announce=_accepted)
    reach("intake.after_create")
    if not created.created:
        assert idempotency_key is not None
        return await _replay(deps, created.job, request, idempotency_key)
    deps.metrics.jobs_created.labels(source).inc()
    with log_context(
        job_id=job.job_id, tenant_id=tenant_id, trace_id=trace_id_of(job.trace_parent)
    ):
        log.info("job accepted: %s, quote %.2f USD", route_plan.quote.model, job.quote_usd)
    return Submitted(job, True)


async def _replay(deps: IntakeDeps, existing: Job, request: JobRequest, key: str) -> Submitted:
    if logic.idempotency_outcome(existing, request.fingerprint()) is Idempotency.CONFLICT:
        raise IdempotencyConflict(key)
    return Submitted(existing, False)


def _accepted(job: Job) -> list[tuple[Topic, Envelope]]:
    return [(Topic.JOBS_ACCEPTED, event_about(JobAccepted, job, "intake"))]


def _cancelled(job: Job) -> list[tuple[Topic, Envelope]]:
    """The outcome event, and a cancel hint to the poller of every task still in flight."""
    events: list[tuple[Topic, Envelope]] = [
        (
            Topic.JOBS_FINISHED,
            event_about(JobCancelled, job, "intake", metadata=job.request.metadata),
        )
    ]
    for attempt in job.attempts.values():
        if attempt.task is not None and attempt.active:
            hint = event_about(
                TaskHinted,
                job,
                "intake",
                attempt=attempt.attempt_id,
                seq="cancel",
                task_id=attempt.task.task_id,
                hint="cancel",
            )
            events.append((provider_topic(attempt.provider), hint))
    return events


async def cancel_job(deps: IntakeDeps, job: Job) -> Job | None:
    """Cancel an active job; None if it already ended. Provider tasks are cancelled by their
    pollers, told through a `cancel` hint on the provider topic."""
    return await deps.repo.transition(job.job_id, JobState.CANCELLED, announce=_cancelled)


async def queue_position(deps: IntakeDeps, job: Job) -> int | None:
    if job.state is not JobState.QUEUED or not job.active_provider or job.queued_at is None:
        return None
    return await deps.repo.count_queued_before(job.active_provider, job.queued_at) + 1


async def ingest_webhook(
    deps: IntakeDeps, provider_name: str, headers: Mapping[str, str], body: bytes
) -> str:
    """Verify a provider webhook and forward it to the owning poller as a hint. Returns the
    outcome label. A hint is never trusted as a result: the poller confirms it by polling."""
    provider = deps.providers.get(provider_name)
    if provider is None:
        return "unknown_provider"
    try:
        hint = provider.parse_webhook(headers, body)
    except ProviderError as exc:
        log.warning("rejected %s webhook: %s", provider_name, exc)
        return "invalid"
    job = await deps.repo.find_by_task(provider_name, hint.task_id)
    attempt = (
        next((a for a in job.attempts.values() if a.task and a.task.task_id == hint.task_id), None)
        if job
        else None
    )
    if job is None or attempt is None:
        return "unknown_task"
    await publish(
        deps.broker,
        provider_topic(provider_name),
        TaskHinted(
            **envelope_of(job, "intake"),
            attempt_id=attempt.attempt_id,
            task_id=hint.task_id,
            hint=hint.event_type,
        ),
    )
    return "forwarded"


async def on_request_job(deps: IntakeDeps, command: RequestJob) -> None:
    """A job published on `job-requests`: the same path as HTTP. Bad input is dead-lettered
    with the reason (there is no caller to answer)."""
    if not deps.tenants.known(command.tenant_id):
        raise PermanentError(f"unknown tenant {command.tenant_id!r}")
    try:
        await submit_job(
            deps,
            command.tenant_id,
            command.request,
            idempotency_key=command.subject,
            source="kafka",
            traceparent=command.traceparent,
        )
    except NoRoute as exc:
        deps.metrics.jobs_rejected.labels("no_route").inc()
        details = "; ".join(f"{k}: {v}" for k, v in list(exc.reasons.items())[:8])
        raise PermanentError(f"{exc}" + (f" ({details})" if details else "")) from exc
    except IdempotencyConflict as exc:
        deps.metrics.jobs_rejected.labels("idempotency_conflict").inc()
        raise PermanentError(str(exc)) from exc
