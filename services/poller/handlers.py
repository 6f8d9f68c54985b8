"""Poller use cases: track tasks, poll them, and turn answers into job updates and events."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from faststream.kafka import KafkaBroker

from services.poller import logic
from services.poller.logic import RenderTimes, ScheduleConfig
from services.poller.settings import PollerSettings
from services.poller.tracker import Tracked, Tracker, delay_after_error, delay_after_status
from shared.events import (
    JobUpdated,
    TaskFailed,
    TaskHinted,
    TaskSubmitted,
    TaskSucceeded,
    event_about,
)
from shared.faultpoints import reach
from shared.jobs import ACTIVE_TASK_STATES, AttemptState, Job, JobState, now
from shared.messaging import publish
from shared.metrics import ServiceMetrics
from shared.providers.base import Failure, TaskState, TaskStatus, VideoProvider
from shared.providers.catalog import find_model
from shared.providers.errors import FailureClass, ProviderError
from shared.repository import JobRepository
from shared.topics import TOPICS, Topic, provider_topic

# Attempt states a poll may still change; any later state was written by whoever saw the end.
IN_FLIGHT = (AttemptState.SUBMITTED, AttemptState.RUNNING)

log = logging.getLogger(__name__)


@dataclass
class PollerDeps:
    settings: PollerSettings
    repo: JobRepository
    broker: KafkaBroker
    metrics: ServiceMetrics
    provider: VideoProvider
    cfg: ScheduleConfig
    render_times: RenderTimes = field(default_factory=RenderTimes)
    tracker: Tracker | None = None

    @property
    def name(self) -> str:
        return self.settings.provider

    @property
    def partitions(self) -> int:
        return TOPICS[provider_topic(self.settings.provider)].partitions

    def track(self) -> Tracker:
        assert self.tracker is not None
        return self.tracker


def envelope(deps: PollerDeps, task: Tracked) -> dict[str, Any]:
    """The envelope fields of an event about a tracked task (cf. shared.events.envelope_of)."""
    return {
        "subject": task.job_id,
        "tenant_id": task.tenant_id,
        "traceparent": task.traceparent,
        "source": f"poller-{deps.name}",
    }


def count_inflight(deps: PollerDeps) -> None:
    deps.metrics.inflight_tasks.labels(deps.name).set(len(deps.track().tasks))


def tracked_from_submission(deps: PollerDeps, event: TaskSubmitted) -> Tracked:
    return Tracked(
        job_id=event.subject,
        tenant_id=event.tenant_id,
        attempt_id=event.attempt_id,
        ref=event.task,
        submitted_at=event.submitted_at or event.time,
        deadline_at=event.deadline_at,
        expected_s=deps.render_times.expected(event.task.model, event.expected_render_s),
        partition=logic.partition_of(event.subject, deps.partitions),
        traceparent=event.traceparent,
    )


async def on_task_event(deps: PollerDeps, event: TaskSubmitted | TaskHinted) -> None:
    tracker = deps.track()
    if isinstance(event, TaskSubmitted):
        tracker.track(tracked_from_submission(deps, event))
        count_inflight(deps)
        return
    key = (event.subject, event.attempt_id)
    if event.hint == "cancel":
        await cancel_task(deps, key)
        return
    deps.metrics.webhook_hints.labels(deps.name, "hint").inc()
    if key not in tracker.tasks:
        await resume_job(deps, event.subject)
    task = tracker.tasks.get(key)
    if task is not None:
        task.hinted_at = event.received_at
        tracker.poll_now(key)


async def resume_job(deps: PollerDeps, job_id: str) -> None:
    job = await deps.repo.get(job_id)
    if job is not None:
        track_job(deps, job)


def track_job(deps: PollerDeps, job: Job) -> int:
    added = 0
    for attempt in job.attempts.values():
        if attempt.task is None or attempt.provider != deps.name:
            continue
        if attempt.state not in IN_FLIGHT:
            continue
        spec = find_model(deps.name, attempt.model)
        override = deps.settings.expected_render_s
        prior = override if override is not None else (spec.typical_render_s if spec else 60.0)
        deps.track().track(
            Tracked(
                job_id=job.job_id,
                tenant_id=job.tenant_id,
                attempt_id=attempt.attempt_id,
                ref=attempt.task,
                submitted_at=attempt.submitted_at or attempt.created_at,
                deadline_at=job.deadline_at or now(),
                partition=logic.partition_of(job.job_id, deps.partitions),
                expected_s=deps.render_times.expected(attempt.model, prior),
                traceparent=job.trace_parent,
                progress=attempt.progress,
                running_seen=attempt.state is AttemptState.RUNNING,
            )
        )
        added += 1
    return added


async def on_assigned(deps: PollerDeps, partitions: set[int], owned: set[int]) -> int:
    """Kafka gave this replica `partitions`: resume every active task of their jobs. Runs in the
    background (not in the rebalance callback: loading thousands of records there would outlast
    the group's session timeout); `owned` is re-checked per job, as a revocation may come first."""
    added = 0
    for job in await deps.repo.with_active_tasks(deps.name):
        partition = logic.partition_of(job.job_id, deps.partitions)
        if partition in partitions and partition in owned:
            added += track_job(deps, job)
    count_inflight(deps)
    log.info("assigned partitions %s: resumed %d tasks", sorted(partitions), added)
    return added


def on_revoked(deps: PollerDeps, partitions: set[int]) -> None:
    dropped = deps.track().forget_partitions(partitions)
    count_inflight(deps)
    log.info("revoked partitions %s: handed over %d tasks", sorted(partitions), dropped)


async def poll(deps: PollerDeps, task: Tracked) -> float | None:
    """One status call; returns the delay before the next, or None when the task is done."""
    at = now()
    if at > task.deadline_at:
        await _cancel_at_provider(deps, task)
        await _finish_failed(
            deps,
            task,
            Failure(
                failure_class=FailureClass.TIMEOUT,
                message=f"no result before the job's deadline ({task.deadline_at.isoformat()})",
            ),
        )
        return None
    task.polls += 1
    task.previous_poll_at, task.last_poll_at = task.last_poll_at, at
    try:
        status = await deps.provider.status(task.ref)
    except ProviderError as exc:
        deps.metrics.poll_calls.labels(deps.name, exc.failure_class.value).inc()
        if exc.transient:
            task.errors += 1
            return delay_after_error(task, exc, deps.cfg)
        await _finish_failed(
            deps,
            task,
            Failure(
                failure_class=exc.failure_class,
                message=exc.message,
                provider_code=exc.provider_code,
            ),
        )
        return None
    task.errors = 0
    deps.metrics.poll_calls.labels(deps.name, "ok").inc()
    if status.state is TaskState.SUCCEEDED:
        await _finish_succeeded(deps, task, status)
        return None
    if status.state.terminal:
        failure = status.failure or Failure(
            failure_class=FailureClass.GENERATION_FAILED,
            message=f"provider ended the task as {status.raw_status}",
        )
        await _finish_failed(deps, task, failure)
        return None
    if not await _record_progress(deps, task, status):
        return None
    expected = deps.render_times.expected(task.ref.model, task.expected_s)
    return delay_after_status(task, status, expected, deps.cfg)


async def _record_progress(deps: PollerDeps, task: Tracked, status: TaskStatus) -> bool:
    started = status.state is TaskState.RUNNING and not task.running_seen
    if started:
        task.running_seen = True
        deps.metrics.provider_queue_seconds.labels(deps.name, task.ref.model).observe(
            logic.seconds_between(task.submitted_at, now())
        )
    if not (
        started
        or logic.progress_changed(task.progress, status.progress, deps.settings.progress_step)
    ):
        return True
    task.progress, task.raw_status = status.progress, status.raw_status
    changes: dict[str, object] = {
        f"attempts.{task.attempt_id}.raw_status": status.raw_status,
        f"attempts.{task.attempt_id}.progress": status.progress,
    }
    if status.state is TaskState.RUNNING:
        changes[f"attempts.{task.attempt_id}.state"] = AttemptState.RUNNING
    if status.progress is not None:
        changes["progress"] = round(status.progress, 3)
    # Other candidates of the same job may already be storing or scoring: still active. The
    # attempt must still be in flight: an answer that left the provider before the task
    # finished must not move a succeeded or stored attempt backwards.
    source = f"poller-{deps.name}"
    job = await deps.repo.update(
        task.job_id,
        changes,
        expected_states=ACTIVE_TASK_STATES,
        attempt_in=(task.attempt_id, IN_FLIGHT),
        announce=lambda after: [
            (
                Topic.JOB_UPDATES,
                event_about(
                    JobUpdated,
                    after,
                    source,
                    seq=after.version,
                    state=after.state,
                    progress=after.progress,
                    detail=status.raw_status,
                ),
            )
        ],
    )
    if job is None:
        await _job_ended(deps, task)
        return False
    return True


async def _finish_succeeded(deps: PollerDeps, task: Tracked, status: TaskStatus) -> None:
    at = now()

    def succeeded(after: Job) -> list[tuple[Topic, TaskSucceeded]]:
        event = event_about(
            TaskSucceeded,
            after,
            f"poller-{deps.name}",
            attempt=task.attempt_id,
            task=task.ref,
            outputs=status.outputs,
            provider_finished_at=at,
        )
        return [(Topic.TASKS_SUCCEEDED, event)]

    # The success and the event storage acts on are one write: storage cannot miss it.
    job = await deps.repo.update(
        task.job_id,
        {
            f"attempts.{task.attempt_id}.state": AttemptState.SUCCEEDED,
            f"attempts.{task.attempt_id}.outputs": list(status.outputs),
            f"attempts.{task.attempt_id}.raw_status": status.raw_status,
            f"attempts.{task.attempt_id}.progress": 1.0,
            f"attempts.{task.attempt_id}.finished_at": at,
        },
        expected_states=ACTIVE_TASK_STATES,
        attempt_in=(task.attempt_id, IN_FLIGHT),  # else another poll got there first
        announce=succeeded,
    )
    reach("poller.after_success")
    deps.track().forget(task.key)
    if job is None:
        await _job_ended(deps, task)
        return
    render = logic.seconds_between(task.submitted_at, at)
    # The task finished after the previous look and before this one: learn the middle, not
    # this poll's time, or the poller's own lag feeds back into its schedule (a late poll
    # would teach a longer render, which delays the next first polls further).
    since = task.previous_poll_at or task.submitted_at
    deps.render_times.observe(
        task.ref.model,
        logic.seconds_between(task.submitted_at, since) + (logic.seconds_between(since, at) / 2),
    )
    deps.metrics.provider_render_seconds.labels(deps.name, task.ref.model).observe(render)
    _observe_detection(deps, task, at)
    count_inflight(deps)


def _observe_detection(deps: PollerDeps, task: Tracked, at: datetime) -> None:
    if task.hinted_at is not None:
        deps.metrics.detection_delay.labels(deps.name, "webhook").observe(
            logic.seconds_between(task.hinted_at, at)
        )
    else:  # it finished after the previous poll: record that upper bound (conservative)
        since = task.previous_poll_at or task.submitted_at
        deps.metrics.detection_delay.labels(deps.name, "poll").observe(
            logic.seconds_between(since, at)
        )


async def _finish_failed(deps: PollerDeps, task: Tracked, failure: Failure) -> None:
    deps.track().forget(task.key)
    await publish(
        deps.broker,
        Topic.TASKS_FAILED,
        TaskFailed(
            **envelope(deps, task),
            attempt_id=task.attempt_id,
            failure=failure,
        ),
    )
    count_inflight(deps)


async def _job_ended(deps: PollerDeps, task: Tracked) -> None:
    """The job left the active states under us (cancelled, failed), or the attempt is no
    longer in flight (another poll recorded its end): stop, and cancel if the job was."""
    deps.track().forget(task.key)
    job = await deps.repo.get(task.job_id)
    if job is not None and job.state is JobState.CANCELLED:
        await _cancel_at_provider(deps, task)


async def cancel_task(deps: PollerDeps, key: tuple[str, str]) -> None:
    task = deps.track().forget(key)
    if task is None:
        job = await deps.repo.get(key[0])
        attempt = job.attempts.get(key[1]) if job else None
        if attempt is None or attempt.task is None:
            return
        task = Tracked(
            job_id=key[0],
            tenant_id=job.tenant_id if job else "",
            attempt_id=key[1],
            ref=attempt.task,
            submitted_at=now(),
            deadline_at=now(),
            expected_s=0,
            partition=logic.partition_of(key[0], deps.partitions),
        )
    await _cancel_at_provider(deps, task)


async def _cancel_at_provider(deps: PollerDeps, task: Tracked) -> None:
    cancelled = False
    if deps.provider.capabilities.cancel:
        try:
            cancelled = await deps.provider.cancel(task.ref)
        except ProviderError as exc:
            log.warning("could not cancel %s at %s: %s", task.ref.task_id, deps.name, exc)
    await deps.repo.update(
        task.job_id,
        {
            f"attempts.{task.attempt_id}.state": AttemptState.CANCELLED,
            f"attempts.{task.attempt_id}.raw_status": "cancelled at provider"
            if cancelled
            else "abandoned (provider has no cancel)",
        },
        attempt_in=(task.attempt_id, (AttemptState.PENDING, *IN_FLIGHT)),
    )
