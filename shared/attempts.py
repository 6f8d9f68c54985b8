"""Writes that settle what one create did, shared by the dispatcher (which sends creates) and
the reconciler (which resolves creates whose answer was never recorded).

An attempt is written ahead (PENDING, no task) before its create is sent. If the answer is
lost (a timeout after the provider accepted it, or a crash before the record), the attempt
is settled by one of these atomic writes, never by sending the create again blind:

* `record_task`: the task is known (the answer, or a lookup by our id): the attempt becomes
  SUBMITTED with its task and price, the job's spend grows by the price (unless the attempt
  was already charged as unknown), and the poller's `TaskSubmitted` goes to the outbox.
* `close_unknown`: the provider has no way to find the task by our id: the attempt becomes
  UNKNOWN ("possibly billed"), its price is charged, it is never sent again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.events import TaskSubmitted, event_about
from shared.jobs import AttemptState, Job
from shared.providers.base import Failure, TaskRef
from shared.providers.errors import FailureClass
from shared.repository import JobRepository
from shared.topics import provider_topic

# States an attempt may be in when its task turns up (a cancelled job still records its
# paid task, so its poller cancels it; a reconciler may have found the create never landed).
_RECORDABLE = (AttemptState.PENDING, AttemptState.CANCELLED, AttemptState.FAILED)


async def record_task(
    repo: JobRepository,
    job: Job,
    attempt_id: str,
    ref: TaskRef,
    cost: float,
    submitted: TaskSubmitted,
    at: datetime,
) -> Job | None:
    """Record a paid task, its spend and the poller's `TaskSubmitted`, in one write."""
    changes: dict[str, Any] = {
        f"attempts.{attempt_id}.task": ref,
        f"attempts.{attempt_id}.state": AttemptState.SUBMITTED,
        f"attempts.{attempt_id}.submitted_at": at,
        f"attempts.{attempt_id}.cost_usd": cost,
        f"attempts.{attempt_id}.failure": None,
    }

    async def write(states: tuple[AttemptState, ...], charge: float) -> Job | None:
        return await repo.update(
            job.job_id,
            changes,
            index_task=(ref.provider, ref.task_id),
            attempt_in=(attempt_id, states),
            inc={"spent_usd": charge} if charge else None,
            announce=lambda _: [(provider_topic(ref.provider), submitted)],
        )

    recorded = await write(_RECORDABLE, cost)
    if recorded is None:  # closed as unknown meanwhile: its price is charged already
        recorded = await write((AttemptState.UNKNOWN,), 0.0)
    return recorded


def submitted_event(
    job: Job,
    source: str,
    attempt_id: str,
    ref: TaskRef,
    *,
    deadline_at: datetime,
    expected_render_s: float,
    at: datetime,
) -> TaskSubmitted:
    return event_about(
        TaskSubmitted,
        job,
        source,
        attempt=attempt_id,
        task=ref,
        deadline_at=deadline_at,
        expected_render_s=expected_render_s,
        submitted_at=at,
    )


async def close_unknown(
    repo: JobRepository, job: Job, attempt_id: str, cost: float, message: str, at: datetime
) -> Job | None:
    """Close a PENDING attempt whose create may have made a task no one can find: UNKNOWN,
    charged, with the reason. None when the attempt is no longer PENDING."""
    failure = Failure(failure_class=FailureClass.TIMEOUT, message=message)
    return await repo.update(
        job.job_id,
        {
            f"attempts.{attempt_id}.state": AttemptState.UNKNOWN,
            f"attempts.{attempt_id}.failure": failure,
            f"attempts.{attempt_id}.finished_at": at,
            f"attempts.{attempt_id}.cost_usd": cost,
        },
        attempt_in=(attempt_id, [AttemptState.PENDING]),
        inc={"spent_usd": cost},
    )


async def close_never_created(
    repo: JobRepository, job: Job, attempt_id: str, provider: str, at: datetime
) -> Job | None:
    """The provider, asked by our id, knows no task of this PENDING attempt: nothing was paid."""
    failure = Failure(
        failure_class=FailureClass.PROVIDER_ERROR,
        message=f"{provider} has no task for this attempt: its create never landed",
    )
    return await repo.update(
        job.job_id,
        {
            f"attempts.{attempt_id}.state": AttemptState.FAILED,
            f"attempts.{attempt_id}.failure": failure,
            f"attempts.{attempt_id}.finished_at": at,
        },
        attempt_in=(attempt_id, [AttemptState.PENDING]),
    )
