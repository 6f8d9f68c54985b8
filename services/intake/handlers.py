"""Intake use cases shared by the HTTP API and the `job-requests` consumer."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from faststream.kafka import KafkaBroker

from services.intake import logic
from services.intake.adapters import WebhookIds
from services.intake.logic import HintGate, Idempotency, TenantRate
from services.intake.settings import IntakeSettings
from shared.blobstore import BlobStore
from shared.egress import EgressRefused, check_url
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
from shared.limits import storable_text
from shared.logs import log_context, trace_id_of
from shared.messaging import PermanentError, publish
from shared.metrics import ServiceMetrics
from shared.providers.base import VideoProvider
from shared.providers.catalog import all_models
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
    webhook_ids: WebhookIds
    clock: Callable[[], datetime] = field(default=now)
    ticks: Callable[[], float] = field(default=time.monotonic)
    hints: HintGate = field(default_factory=lambda: HintGate(3.0))
    rates: TenantRate = field(default_factory=TenantRate)

    def __post_init__(self) -> None:
        self.hints.window_s = self.settings.hint_coalesce_s


class TenantLimited(Exception):
    """A per-tenant limit is reached: HTTP 429 with `Retry-After`."""

    def __init__(self, limit: str, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.limit = limit
        self.retry_after = retry_after


class IdempotencyConflict(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(f"Idempotency-Key {key!r} was already used with a different request body")


@dataclass(frozen=True)
class Submitted:
    job: Job
    created: bool
    warnings: Mapping[str, str] = field(default_factory=dict)


async def admit(deps: IntakeDeps, tenant_id: str, idempotency_key: str | None = None) -> None:
    """Per-tenant limits of job creation, from settings: requests per minute (per intake
    replica) and jobs not yet ended (counted in the store, so across replicas). A retry with
    the key of an existing job creates nothing, so it passes (it gets its job back)."""
    if idempotency_key and await deps.repo.find_by_idempotency_key(tenant_id, idempotency_key):
        return
    limits = deps.settings.limits_for(tenant_id)
    wait = deps.rates.admit(tenant_id, limits.requests_per_minute, deps.ticks())
    if wait:
        deps.metrics.tenant_limited.labels(tenant_id, "requests_per_minute").inc()
        raise TenantLimited(
            "requests_per_minute",
            f"tenant {tenant_id!r} is over {limits.requests_per_minute} job requests per minute",
            wait,
        )
    if limits.max_active_jobs:
        active = await deps.repo.count_active(tenant_id, limits.max_active_jobs)
        deps.metrics.tenant_active_jobs.labels(tenant_id).set(active)
        if active >= limits.max_active_jobs:
            deps.metrics.tenant_limited.labels(tenant_id, "max_active_jobs").inc()
            raise TenantLimited(
                "max_active_jobs",
                f"tenant {tenant_id!r} has {active} jobs not yet ended "
                f"(at most {limits.max_active_jobs}); retry when one ends",
                30,
            )


def route(deps: IntakeDeps, request: JobRequest) -> RoutePlan:
    """Validate against every enabled model and quote; raises NoRoute with reasons, and
    EgressRefused when `callback_url` points where webhooks may not go."""
    if request.callback_url is not None:
        check_url(str(request.callback_url), deps.settings.egress_networks(), "callback_url")
    return plan(
        request,
        all_models(),
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
            replayed = await _replay(deps, existing, request, idempotency_key)
            return replace(replayed, warnings=route_plan.warnings)
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
        replayed = await _replay(deps, created.job, request, idempotency_key)
        return replace(replayed, warnings=route_plan.warnings)
    deps.metrics.jobs_created.labels(source).inc()
    with log_context(
        job_id=job.job_id, tenant_id=tenant_id, trace_id=trace_id_of(job.trace_parent)
    ):
        log.info("job accepted: %s, quote %.2f USD", route_plan.quote.model, job.quote_usd)
    return Submitted(job, True, route_plan.warnings)


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
        storable_text(hint.task_id)
    except (ProviderError, ValueError) as exc:
        log.warning("rejected %s webhook: %s", provider_name, exc)
        return "invalid"
    if not await _first_delivery(deps, provider_name, headers):
        return "replayed"
    if not deps.hints.admit(provider_name, hint.task_id, deps.ticks()):
        return "coalesced"
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


async def _first_delivery(deps: IntakeDeps, provider: str, headers: Mapping[str, str]) -> bool:
    """A signed webhook's id may be used once while its timestamp is within tolerance (the
    signature covers the id, so a replay must reuse it). Unsigned providers have no id."""
    webhook_id = next((v for k, v in headers.items() if k.lower() == "webhook-id"), None)
    if not webhook_id:
        return True
    at = deps.clock()
    keep = timedelta(seconds=2 * deps.settings.webhook_tolerance_s)
    return await deps.webhook_ids.remember(provider, webhook_id[:256], at + keep, at)


async def on_request_job(deps: IntakeDeps, command: RequestJob) -> None:
    """A job published on `job-requests`: the same path as HTTP. Bad input is dead-lettered
    with the reason (there is no caller to answer)."""
    if not deps.tenants.known(command.tenant_id):
        raise PermanentError(f"unknown tenant {command.tenant_id[:100]!r}")
    try:
        logic.check_idempotency_key(command.subject)
    except ValueError as exc:
        raise PermanentError(f"subject (the idempotency key): {exc}") from exc
    if command.traceparent is not None and not logic.valid_traceparent(command.traceparent):
        raise PermanentError("traceparent: not a W3C trace context (version-traceid-spanid-flags)")
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
    except EgressRefused as exc:
        deps.metrics.jobs_rejected.labels("callback_refused").inc()
        raise PermanentError(exc.reason) from exc
