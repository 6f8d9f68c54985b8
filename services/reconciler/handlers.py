"""One sweep over jobs that stopped moving: re-drive them, or fail them past their deadline."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from faststream.kafka import KafkaBroker

from services.reconciler.logic import Action, verdict
from services.reconciler.settings import ReconcilerSettings
from shared import attempts
from shared.events import JobAccepted, TaskSubmitted, TaskSucceeded, event_about, job_failed
from shared.jobs import Attempt, Job, JobState, now
from shared.messaging import publish
from shared.metrics import ServiceMetrics
from shared.providers.base import Failure, VideoProvider
from shared.providers.catalog import find_model
from shared.providers.errors import FailureClass, ProviderError
from shared.repository import JobRepository
from shared.routing import generation_request, price
from shared.topics import Topic, provider_topic

log = logging.getLogger(__name__)


@dataclass
class ReconcilerDeps:
    settings: ReconcilerSettings
    repo: JobRepository
    broker: KafkaBroker
    metrics: ServiceMetrics
    clock: Callable[[], datetime] = field(default=now)
    providers: Mapping[str, VideoProvider] = field(default_factory=dict)


async def sweep(deps: ReconcilerDeps) -> dict[str, int]:
    """One read of the store per active state (up to `batch` jobs stale for that state's own
    grace, oldest first), then the counts by state. Per state, so that no state can starve
    another: a single read across states, oldest first, let 200 stale accepted jobs (or
    queued jobs waiting for a slot, stale for the shortest grace but not their own) fill
    every batch while overdue running jobs were never failed."""
    s, at = deps.settings, deps.clock()
    graces = {
        JobState.ACCEPTED: s.accepted_grace_s,
        JobState.SUBMITTING: s.submitting_grace_s,
        JobState.RUNNING: s.tracking_grace_s,
        JobState.STORING: s.storing_grace_s,
        JobState.QUEUED: s.storing_grace_s,
        JobState.SCORING: s.storing_grace_s,
    }
    stale: list[Job] = []
    for state, grace in graces.items():  # read everything first: an action moves a job on
        stale += await deps.repo.find_stale([state], at - timedelta(seconds=grace), s.batch)
    counts: dict[str, int] = {}
    for job in stale:
        action = await reconcile(deps, job, at)
        counts[action] = counts.get(action, 0) + 1
    # Active states only: totals of terminal states grow forever and are counters already
    # (reelforge_job_transitions_total), not something to re-count every sweep.
    for state, n in (await deps.repo.count_by_state(list(graces))).items():
        deps.metrics.jobs_in_state.labels(state.value).set(n)
    return counts


async def reconcile(deps: ReconcilerDeps, job: Job, at: datetime) -> str:
    v = verdict(job, at)
    if v.action is not Action.NOTHING:
        log.info("job %s: %s (%s)", job.job_id, v.action, v.reason)
    if v.action is Action.RESOLVE:
        for attempt in v.attempts:
            await resolve_unanswered(deps, job, attempt, at)
        await deps.repo.update(job.job_id, {}, expected_states=[job.state])  # touch
    if v.action is Action.FAIL_DEADLINE:
        for attempt in v.attempts:
            await resolve_unanswered(deps, job, attempt, at)
        failure = Failure(failure_class=FailureClass.TIMEOUT, message=v.reason)
        await deps.repo.transition(
            job.job_id,
            JobState.FAILED,
            {"failure": failure},
            expected=[job.state],
            announce=lambda after: [
                (Topic.JOBS_FINISHED, job_failed(after, failure, "reconciler"))
            ],
        )
    elif v.action is Action.ANNOUNCE:
        # Intake stored the JobAccepted with the job; this re-sends the same event (same id)
        # in case the dispatcher dead-lettered or skipped it.
        await publish(deps.broker, Topic.JOBS_ACCEPTED, event_about(JobAccepted, job, "reconciler"))
        await deps.repo.update(job.job_id, {}, expected_states=[job.state])  # touch
    elif v.action is Action.REQUEUE:
        await deps.repo.transition(
            job.job_id, JobState.QUEUED, {"queued_at": at}, expected=[JobState.SUBMITTING]
        )
    elif v.action is Action.RETRACK:
        for attempt in v.attempts:
            assert attempt.task is not None
            spec = find_model(attempt.provider, attempt.model)
            await publish(
                deps.broker,
                provider_topic(attempt.provider),
                event_about(
                    TaskSubmitted,
                    job,
                    "reconciler",
                    attempt=attempt.attempt_id,
                    task=attempt.task,
                    deadline_at=job.deadline_at or at,
                    expected_render_s=spec.typical_render_s if spec else 60.0,
                    submitted_at=attempt.submitted_at or attempt.created_at,
                ),
            )
        await deps.repo.update(job.job_id, {}, expected_states=[job.state])  # touch
    elif v.action is Action.RESEND_RESULT:
        for attempt in v.attempts:
            assert attempt.task is not None
            await publish(
                deps.broker,
                Topic.TASKS_SUCCEEDED,
                event_about(
                    TaskSucceeded,
                    job,
                    "reconciler",
                    attempt=attempt.attempt_id,
                    task=attempt.task,
                    outputs=attempt.outputs,
                    provider_finished_at=attempt.finished_at,
                ),
            )
        await deps.repo.update(job.job_id, {}, expected_states=[job.state])  # touch
    return v.action.value


async def resolve_unanswered(deps: ReconcilerDeps, job: Job, attempt: Attempt, at: datetime) -> str:
    """Settle one create whose answer was never recorded: look the task up by our id where
    the provider can (record it, or close the attempt as never created); else close it as
    unknown and charge it ("possibly billed": no id to look it up or cancel it by)."""
    spec = find_model(attempt.provider, attempt.model)
    cost = price(job.request, spec) if spec is not None else 0.0
    provider = deps.providers.get(attempt.provider)
    if provider is None or not provider.capabilities.find_by_external_id:
        message = "create outcome unknown, possibly billed: its answer was never recorded"
        if await attempts.close_unknown(deps.repo, job, attempt.attempt_id, cost, message, at):
            deps.metrics.unknown_creates.labels(attempt.provider).inc()
        return "unknown"
    request = generation_request(job, attempt.attempt_id, None)
    try:
        ref = await provider.find_created(request, attempt.model)
    except ProviderError as exc:  # asked again on the next sweep
        log.warning("job %s: looking up %s failed: %s", job.job_id, attempt.attempt_id, exc)
        return "lookup_failed"
    if ref is None:
        await attempts.close_never_created(deps.repo, job, attempt.attempt_id, provider.name, at)
        return "never_created"
    submitted = attempts.submitted_event(
        job,
        "reconciler",
        attempt.attempt_id,
        ref,
        deadline_at=job.deadline_at or at,
        expected_render_s=spec.typical_render_s if spec else 60.0,
        at=at,
    )
    await attempts.record_task(deps.repo, job, attempt.attempt_id, ref, cost, submitted, at)
    return "recorded"
