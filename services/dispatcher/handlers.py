"""Dispatcher use cases: queue accepted jobs, admit them per provider, submit, and decide what
happens after a failure (retry, fall back, or fail the job)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from faststream.kafka import KafkaBroker

from services.dispatcher import logic
from services.dispatcher.logic import Next
from services.dispatcher.settings import DispatcherSettings
from shared import attempts
from shared.events import (
    Envelope,
    JobAccepted,
    JobUpdated,
    TaskFailed,
    event_about,
    job_failed,
)
from shared.faultpoints import reach
from shared.jobs import Attempt, AttemptState, Job, JobState, now
from shared.logs import log_context, trace_id_of
from shared.messaging import PermanentError
from shared.metrics import ServiceMetrics
from shared.providers.base import Failure, GenerationRequest, TaskRef, VideoProvider
from shared.providers.errors import (
    FailureClass,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
)
from shared.repository import JobRepository
from shared.routing import price
from shared.topics import Topic

log = logging.getLogger(__name__)
# Attempts a TaskFailed may still fail: a succeeded one too (storage reports a lost result).
FAILABLE = (
    AttemptState.PENDING,
    AttemptState.SUBMITTED,
    AttemptState.RUNNING,
    AttemptState.SUCCEEDED,
)


@dataclass
class DispatcherDeps:
    settings: DispatcherSettings
    repo: JobRepository
    broker: KafkaBroker
    metrics: ServiceMetrics
    providers: Mapping[str, VideoProvider]
    limits: dict[str, int]
    clock: Callable[[], datetime] = field(default=now)
    kick: asyncio.Event = field(default_factory=asyncio.Event)
    waiting_counted_at: datetime | None = None


async def on_job_accepted(deps: DispatcherDeps, event: JobAccepted) -> None:
    job = await deps.repo.get(event.subject)
    if job is None:
        raise PermanentError(f"job {event.subject} does not exist")
    if job.state is not JobState.ACCEPTED:
        return  # replayed: already queued or beyond
    await _enqueue(deps, job, JobState.ACCEPTED, job.route_index, delay=None)


async def _enqueue(
    deps: DispatcherDeps,
    job: Job,
    expected: JobState,
    route_index: int,
    delay: timedelta | None,
) -> Job | None:
    provider = job.route[route_index].provider
    at = deps.clock()
    queued = await deps.repo.transition(
        job.job_id,
        JobState.QUEUED,
        {
            "route_index": route_index,
            "active_provider": provider,
            "queued_at": at,
            "not_before": at + delay if delay else None,
        },
        expected=[expected],
        announce=lambda after: [_update(after, f"waiting for a {provider} slot")],
    )
    if queued is not None:
        deps.metrics.job_transitions.labels("queued", provider).inc()
        deps.kick.set()
    return queued


async def admit(deps: DispatcherDeps) -> int:
    """One admission round: the store moves each provider's oldest due queued jobs to
    SUBMITTING while their candidates fit in its free slots (atomically across replicas), and
    this replica submits what it claimed, `submit_concurrency` jobs at a time."""
    claimed = await deps.repo.claim_queued(deps.limits, deps.settings.admission_batch, deps.clock())
    gate = asyncio.Semaphore(deps.settings.submit_concurrency)

    async def submit_one(job: Job) -> None:
        async with gate:
            if logic.past_deadline(job, deps.clock()):
                await _fail_past_deadline(deps, job)
            else:
                await submit(deps, job)

    await asyncio.gather(*(submit_one(job) for job in claimed))
    await _count_waiting(deps)
    return len(claimed)


async def _fail_past_deadline(deps: DispatcherDeps, job: Job) -> None:
    assert job.deadline_at is not None
    message = (
        f"deadline {job.deadline_at.isoformat()} passed while waiting for a"
        f" {job.active_provider} slot; nothing was submitted"
    )
    await fail_job(deps, job, Failure(failure_class=FailureClass.TIMEOUT, message=message))


async def _count_waiting(deps: DispatcherDeps) -> None:
    """The waiting-jobs gauge, at most once a second (one indexed count per provider)."""
    at = deps.clock()
    if deps.waiting_counted_at is not None and at - deps.waiting_counted_at < timedelta(seconds=1):
        return
    deps.waiting_counted_at = at
    far = at + timedelta(days=3650)
    for provider in deps.limits:
        waiting = await deps.repo.count_queued_before(provider, far)
        deps.metrics.admission_waiting.labels(provider).set(waiting)


async def submit(deps: DispatcherDeps, job: Job) -> None:
    """Submit every missing candidate of a job in SUBMITTING; record each task before and
    right after the provider call, so no paid task exists without a record."""
    with log_context(
        job_id=job.job_id, tenant_id=job.tenant_id, trace_id=trace_id_of(job.trace_parent)
    ):
        spec = logic.current_spec(job)
        provider = deps.providers[spec.provider]
        callback = (
            deps.settings.callback_url(spec.provider)
            if provider.capabilities.per_request_callback
            else None
        )
        errors: list[ProviderError] = []
        for candidate, attempt_id in logic.attempts_to_submit(job):
            error = await _submit_one(deps, job, provider, candidate, attempt_id, callback)
            if error is not None:
                errors.append(error)
        latest = await deps.repo.get(job.job_id)
        if latest is None or latest.state is not JobState.SUBMITTING:
            return  # cancelled meanwhile: the pollers cancel the tasks on the cancel hint
        if any(a.task is not None for a in latest.active_attempts()):
            detail = f"rendering on {spec.provider}/{spec.model}"
            running = await deps.repo.transition(
                job.job_id,
                JobState.RUNNING,
                expected=[JobState.SUBMITTING],
                announce=lambda after: [_update(after, detail)],
            )
            if running is not None:
                deps.metrics.job_transitions.labels("running", spec.provider).inc()
        elif errors:
            await _after_submit_errors(deps, latest, errors[-1])


async def _submit_one(
    deps: DispatcherDeps,
    job: Job,
    provider: VideoProvider,
    candidate: int,
    attempt_id: str,
    callback: str | None,
) -> ProviderError | None:
    """Create one attempt's task. A create whose answer was lost is never sent again blind:
    the task is looked up by our id where the provider can, else the attempt is closed as
    unknown and charged (`_find_or_close`)."""
    spec = logic.current_spec(job)
    request = logic.generation_request(job, attempt_id, callback)
    cost = price(job.request, spec)
    if attempt_id in job.attempts:
        # Written ahead by an earlier round that never recorded an answer (it died, or its
        # claim was requeued): its create may have gone through.
        why = "an earlier create of this attempt was not recorded"
        found = await _find_or_close(deps, job, provider, request, attempt_id, cost, why)
        if not isinstance(found, _Absent):
            return found
    else:
        ahead = Attempt(
            attempt_id=attempt_id, candidate=candidate, provider=spec.provider, model=spec.model
        )
        await deps.repo.update(job.job_id, {f"attempts.{attempt_id}": ahead})
    for attempt in range(deps.settings.submit_retries + 1):
        started = deps.clock()
        try:
            ref = await provider.submit(request, spec.model)
            reach("dispatcher.after_create_accepted")
        except ProviderError as exc:
            labels = (spec.provider, "submit", exc.failure_class.value)
            deps.metrics.provider_requests.labels(*labels).inc()
            if exc.outcome_unknown:
                found = await _find_or_close(
                    deps, job, provider, request, attempt_id, cost, exc.message
                )
                if not isinstance(found, _Absent):
                    return found
            if not exc.transient or attempt == deps.settings.submit_retries:
                await _record_submit_failure(deps, job, attempt_id, exc)
                return exc
            await asyncio.sleep(min(exc.retry_after or 0.5 * 2**attempt, 10.0))
            continue
        deps.metrics.provider_requests.labels(spec.provider, "submit", "ok").inc()
        deps.metrics.provider_request_seconds.labels(spec.provider, "submit").observe(
            (deps.clock() - started).total_seconds()
        )
        await _record_task(deps, job, attempt_id, ref, cost)
        return None
    return None


class _Absent:
    """The provider says no task of this attempt exists: sending the create is safe."""


_ABSENT = _Absent()


async def _find_or_close(
    deps: DispatcherDeps,
    job: Job,
    provider: VideoProvider,
    request: GenerationRequest,
    attempt_id: str,
    cost: float,
    why: str,
) -> ProviderError | _Absent | None:
    """An earlier create of this attempt may have made a paid task. Where the provider can
    find it by our id: record it (None) or learn it does not exist (`_ABSENT`); a failed
    lookup leaves the attempt pending for the next round (a transient error). Elsewhere:
    close the attempt as unknown, charged (a permanent error: retry or fall back within
    the budget, never resend this one)."""
    if not provider.capabilities.find_by_external_id:
        return await _record_unknown(deps, job, attempt_id, cost, why)
    try:
        ref = await provider.find_created(request, logic.current_spec(job).model)
    except ProviderError as exc:
        return ProviderUnavailable(
            exc.failure_class,
            f"{why}; looking it up failed: {exc.message}",
            retry_after=exc.retry_after,
        )
    if ref is None:
        return _ABSENT
    await _record_task(deps, job, attempt_id, ref, cost)
    return None


async def _record_unknown(
    deps: DispatcherDeps, job: Job, attempt_id: str, cost: float, why: str
) -> ProviderError:
    provider = logic.current_spec(job).provider
    message = f"create outcome unknown, possibly billed ({provider} has no id to find it): {why}"
    closed = await attempts.close_unknown(deps.repo, job, attempt_id, cost, message, deps.clock())
    if closed is not None:
        deps.metrics.unknown_creates.labels(provider).inc()
        log.warning("job %s attempt %s: %s", job.job_id, attempt_id, message)
    return ProviderRejected(FailureClass.TIMEOUT, message, outcome_unknown=True)


async def _record_task(
    deps: DispatcherDeps, job: Job, attempt_id: str, ref: TaskRef, cost: float
) -> None:
    at = deps.clock()
    override = deps.settings.expected_render_s
    expected = override if override is not None else logic.current_spec(job).typical_render_s
    submitted = attempts.submitted_event(
        job,
        "dispatcher",
        attempt_id,
        ref,
        deadline_at=logic.deadline_for(job, at),
        expected_render_s=expected,
        at=at,
    )
    # Unconditional on the job's state: a paid task is recorded even if the job was cancelled
    # (its poller then cancels it). No paid task without a record, no record without a poller.
    await attempts.record_task(deps.repo, job, attempt_id, ref, cost, submitted, at)


async def _record_submit_failure(
    deps: DispatcherDeps, job: Job, attempt_id: str, exc: ProviderError
) -> None:
    failure = Failure(
        failure_class=exc.failure_class, message=exc.message, provider_code=exc.provider_code
    )
    await deps.repo.update(
        job.job_id,
        {
            f"attempts.{attempt_id}.state": AttemptState.FAILED,
            f"attempts.{attempt_id}.failure": failure,
            f"attempts.{attempt_id}.finished_at": deps.clock(),
        },
    )
    deps.metrics.provider_failures.labels(
        job.route[job.route_index].provider,
        job.route[job.route_index].model or "",
        exc.failure_class.value,
    ).inc()


async def _after_submit_errors(deps: DispatcherDeps, job: Job, exc: ProviderError) -> None:
    """Nothing could be submitted: wait and requeue (transient), fall back, or fail."""
    requeues = sum(
        1 for a in job.attempts.values() if a.task is None and a.state is AttemptState.FAILED
    )
    if exc.transient and requeues <= deps.settings.max_requeues:
        await _enqueue(
            deps,
            job,
            JobState.SUBMITTING,
            job.route_index,
            delay=logic.requeue_delay(requeues, exc.retry_after),
        )
        return
    failure = Failure(
        failure_class=exc.failure_class, message=exc.message, provider_code=exc.provider_code
    )
    await _decide(deps, job, failure, JobState.SUBMITTING)


async def on_task_failed(deps: DispatcherDeps, event: TaskFailed) -> None:
    job = await deps.repo.get(event.subject)
    if job is None:
        raise PermanentError(f"job {event.subject} does not exist")
    attempt = job.attempts.get(event.attempt_id)
    if attempt is None:
        raise PermanentError(f"job {job.job_id} has no attempt {event.attempt_id}")
    if job.state.terminal or attempt.state not in FAILABLE:
        return  # replayed, the job already ended, or a late report on a stored result
    refund = logic.refund(attempt, event.failure)
    failed = await deps.repo.update(
        job.job_id,
        {
            f"attempts.{attempt.attempt_id}.state": AttemptState.FAILED,
            f"attempts.{attempt.attempt_id}.failure": event.failure,
            f"attempts.{attempt.attempt_id}.finished_at": deps.clock(),
            f"attempts.{attempt.attempt_id}.cost_usd": attempt.cost_usd - refund,
        },
        attempt_in=(attempt.attempt_id, FAILABLE),  # one writer wins, one refund
        inc={"spent_usd": -refund},
    )
    if failed is None:
        return
    deps.metrics.provider_failures.labels(
        attempt.provider, attempt.model, event.failure.failure_class.value
    ).inc()
    await _decide(deps, failed, event.failure, failed.state)


async def _decide(deps: DispatcherDeps, job: Job, failure: Failure, current: JobState) -> None:
    decision = logic.after_failure(job, failure, deps.settings.same_provider_retries)
    log.info(
        "job %s after %s: %s (%s)",
        job.job_id,
        failure.failure_class,
        decision.next,
        decision.reason,
    )
    if decision.next is Next.WAIT:
        return
    if decision.next in (Next.RETRY_SAME, Next.FALLBACK):
        await _enqueue(deps, job, current, decision.route_index, delay=None)
        return
    await fail_job(
        deps,
        job,
        Failure(
            failure_class=failure.failure_class,
            message=decision.reason,
            provider_code=failure.provider_code,
        ),
    )


async def fail_job(deps: DispatcherDeps, job: Job, failure: Failure) -> None:
    failed = await deps.repo.transition(
        job.job_id,
        JobState.FAILED,
        {"failure": failure},
        announce=lambda after: [(Topic.JOBS_FINISHED, job_failed(after, failure, "dispatcher"))],
    )
    if failed is None:
        return
    deps.metrics.job_transitions.labels("failed", failed.active_provider or "").inc()
    deps.metrics.job_duration.labels("failed").observe(
        (deps.clock() - failed.created_at).total_seconds()
    )


def _update(job: Job, detail: str) -> tuple[Topic, Envelope]:
    """A progress event about the job as written (one per job version)."""
    update = event_about(
        JobUpdated,
        job,
        "dispatcher",
        seq=job.version,
        state=job.state,
        progress=job.progress,
        detail=detail,
    )
    return Topic.JOB_UPDATES, update
