"""Storage handlers: TaskSucceeded -> stored video -> JobCompleted or CandidateStored.

Idempotent under redelivery: object keys are deterministic (a replay overwrites), state moves
are conditional updates, and an attempt already STORED only re-emits its downstream event
(the crash may have happened between the write and the publish). Provider-side deletes are
best effort and never fail the message.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from services.storage import logic
from services.storage.logic import Plan
from services.storage.rehost import Rehoster
from shared import media
from shared.events import Envelope, TaskSucceeded
from shared.jobs import Attempt, Job, JobState, StoredVideo, now
from shared.messaging import PermanentError, TransientError
from shared.metrics import ServiceMetrics
from shared.providers.base import Failure, TaskRef, VideoProvider
from shared.providers.errors import FailureClass, ProviderError
from shared.repository import JobRepository
from shared.topics import Topic

log = logging.getLogger(__name__)
Publish = Callable[[Topic, Envelope], Awaitable[None]]


@dataclass
class StorageContext:
    """Everything a handler touches, built by `create_app` (or by a test, with fakes)."""

    repo: JobRepository
    rehoster: Rehoster
    providers: Mapping[str, VideoProvider]
    publish: Publish
    metrics: ServiceMetrics
    delete_provider_copy: bool = True
    max_download_tries: int = 3
    # Transient download failures per attempt, in this process: after `max_download_tries`
    # the attempt fails (dispatcher: retry, fall back or refund) instead of blocking the
    # partition until the job's deadline. A restart starts the count again (still bounded).
    download_failures: dict[str, int] = field(default_factory=dict)


async def on_task_succeeded(ctx: StorageContext, event: TaskSucceeded) -> None:
    job = await ctx.repo.get(event.subject)
    if job is None:
        raise PermanentError(f"job {event.subject} does not exist")
    attempt = job.attempts.get(event.attempt_id)
    if attempt is None:
        raise PermanentError(f"job {job.job_id} has no attempt {event.attempt_id}")
    if not event.outputs:
        raise PermanentError(f"TaskSucceeded for {event.attempt_id} carries no output")
    plan = logic.plan_for(job, attempt)
    if plan is Plan.REPLAY:
        assert attempt.video is not None
        await _finish(ctx, job, attempt, attempt.video)
        await _delete_provider_copy(ctx, event.task)
    elif plan is Plan.DISCARD:
        log.info("job %s is %s: not storing attempt %s", job.job_id, job.state, attempt.attempt_id)
        await _delete_provider_copy(ctx, event.task)
    elif plan is Plan.WAIT:
        raise TransientError(f"job {job.job_id} is {job.state.value}, not running yet")
    else:
        await _store(ctx, job, attempt, event)


async def _store(ctx: StorageContext, job: Job, attempt: Attempt, event: TaskSucceeded) -> None:
    job_now = await _start_storing(ctx, job)
    if job_now is None:
        await _delete_provider_copy(ctx, event.task)
        return
    video = await _rehost_or_report(ctx, job_now, event)
    if video is None:
        return

    def candidate(after: Job) -> list[tuple[Topic, Envelope]]:
        if logic.completes_job(after):
            return []  # the completion below announces it
        kept = after.attempts[attempt.attempt_id]
        return [(Topic.CANDIDATES_STORED, logic.candidate_stored(after, kept, video))]

    stored = await ctx.repo.update(
        job.job_id,
        logic.stored_changes(attempt.attempt_id, video, now()),
        expected_states={JobState.STORING, JobState.SCORING},
        announce=candidate,
    )
    if stored is None:  # cancelled or failed while we copied: keep nothing
        log.info("job %s ended during the re-host of %s", job.job_id, attempt.attempt_id)
        await ctx.rehoster.remove(job, attempt.attempt_id)
    elif logic.completes_job(stored):
        await _complete(ctx, stored, stored.attempts[attempt.attempt_id], video)
    await _delete_provider_copy(ctx, event.task)


async def _start_storing(ctx: StorageContext, job: Job) -> Job | None:
    """The job in STORING (or SCORING: another candidate got there first); None if it ended."""
    if job.state in (JobState.RUNNING, JobState.SUBMITTING):
        moved = await ctx.repo.transition(
            job.job_id,
            JobState.STORING,
            expected={JobState.RUNNING, JobState.SUBMITTING},
            announce=lambda after: [
                (Topic.JOB_UPDATES, logic.job_updated(after, JobState.STORING))
            ],
        )
        if moved is not None:
            ctx.metrics.job_transitions.labels("storing", _provider(job)).inc()
            return moved
    current = await ctx.repo.get(job.job_id)
    if current is None:
        raise PermanentError(f"job {job.job_id} disappeared")
    if current.state in (JobState.STORING, JobState.SCORING):
        return current
    if current.state.terminal:
        return None
    raise TransientError(f"job {job.job_id} moved to {current.state.value} meanwhile")


async def _rehost_or_report(
    ctx: StorageContext, job: Job, event: TaskSucceeded
) -> StoredVideo | None:
    """The stored video, or None after reporting a lost/invalid result as TaskFailed."""
    provider = ctx.providers.get(event.task.provider)
    if provider is None:
        raise PermanentError(f"no adapter for provider {event.task.provider!r} in this process")
    key = f"{job.job_id}/{event.attempt_id}"
    try:
        video = await ctx.rehoster.rehost(provider, job, event)
        ctx.download_failures.pop(key, None)
        return video
    except ProviderError as exc:
        tries = ctx.download_failures.get(key, 0) + 1
        if exc.transient and tries < ctx.max_download_tries:
            ctx.download_failures[key] = tries
            raise TransientError(
                f"download failed ({tries}/{ctx.max_download_tries}): {exc}"
            ) from exc
        ctx.download_failures.pop(key, None)
        if exc.failure_class in logic.LOST_RESULT:
            ctx.metrics.url_expiry_misses.labels(event.task.provider).inc()
        message = (
            f"download failed {tries} times; last: {exc.message}" if exc.transient else exc.message
        )
        failure = Failure(
            failure_class=exc.failure_class, message=message, provider_code=exc.provider_code
        )
    except media.InvalidMedia as exc:
        failure = Failure(
            failure_class=FailureClass.GENERATION_FAILED,
            message=f"the result is not a playable video: {exc}",
        )
    log.warning(
        "job %s attempt %s: result lost (%s)", job.job_id, event.attempt_id, failure.message
    )
    await ctx.publish(Topic.TASKS_FAILED, logic.task_failed(job, event.attempt_id, failure))
    return None


async def _finish(ctx: StorageContext, job: Job, attempt: Attempt, video: StoredVideo) -> None:
    """A replayed TaskSucceeded of an attempt stored before: complete the job if that step
    was missed, else re-send the events stored with it, under the same ids."""
    if job.state is JobState.COMPLETED:
        if job.picked_attempt == attempt.attempt_id:
            await _publish_completed(ctx, job, attempt, video)
        return
    if not logic.completes_job(job):
        await ctx.publish(Topic.CANDIDATES_STORED, logic.candidate_stored(job, attempt, video))
        return
    await _complete(ctx, job, attempt, video)


async def _complete(ctx: StorageContext, job: Job, attempt: Attempt, video: StoredVideo) -> None:
    """Complete a single-candidate job; its outcome goes out through the outbox."""

    done = await ctx.repo.transition(
        job.job_id,
        JobState.COMPLETED,
        logic.completion_changes(attempt.attempt_id, video),
        expected={JobState.STORING},
        announce=lambda after: _completion_events(after, after.attempts[attempt.attempt_id], video),
    )
    if done is None:  # a concurrent replay completed it, or it ended: re-read and re-emit
        current = await ctx.repo.get(job.job_id)
        if current is not None and current.state is JobState.COMPLETED:
            await _finish(ctx, current, attempt, video)
        return
    _count_completion(ctx, done, attempt, video)


def _completion_events(
    job: Job, attempt: Attempt, video: StoredVideo
) -> list[tuple[Topic, Envelope]]:
    """What a completed single-candidate job announces (stored with the completion; re-sent
    under the same ids on a replay)."""
    return [
        (Topic.JOBS_FINISHED, logic.job_completed(job, attempt, video)),
        (Topic.JOB_UPDATES, logic.job_updated(job, JobState.COMPLETED)),
    ]


async def _publish_completed(
    ctx: StorageContext, job: Job, attempt: Attempt, video: StoredVideo
) -> None:
    for topic, event in _completion_events(job, attempt, video):
        await ctx.publish(topic, event)


def _count_completion(ctx: StorageContext, job: Job, attempt: Attempt, video: StoredVideo) -> None:
    m = ctx.metrics
    m.job_transitions.labels("completed", attempt.provider).inc()
    total_s = (now() - job.created_at).total_seconds()
    m.job_duration.labels("completed").observe(total_s)
    if attempt.submitted_at and attempt.finished_at:  # the rest was queueing, routing, re-hosting
        at_provider_s = (attempt.finished_at - attempt.submitted_at).total_seconds()
        m.pipeline_overhead.observe(max(0.0, total_s - at_provider_s))
    m.job_cost.labels("completed").observe(logic.cost_of(job, attempt))
    m.cost_usd.labels(attempt.provider, attempt.model, "kept").inc(attempt.cost_usd)
    if video.duration_s:
        m.accepted_video_seconds.labels(attempt.provider, attempt.model).inc(video.duration_s)


async def _delete_provider_copy(ctx: StorageContext, task: TaskRef) -> None:
    provider = ctx.providers.get(task.provider)
    if not ctx.delete_provider_copy or provider is None or not provider.capabilities.delete:
        return
    try:
        deleted = await provider.delete(task)
        outcome = "ok" if deleted else "refused"
    except Exception as exc:  # best effort by contract: the copy expires at the provider anyway
        log.warning("could not delete %s task %s: %s", task.provider, task.task_id, exc)
        outcome = "error"
    ctx.metrics.provider_requests.labels(task.provider, "delete", outcome).inc()


def _provider(job: Job) -> str:
    return job.route[0].provider if job.route else "unknown"
