"""What the reconciler does with a job that has not moved for a while (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from shared.jobs import Attempt, AttemptState, Job, JobState


class Action(StrEnum):
    FAIL_DEADLINE = "fail_deadline"
    ANNOUNCE = "announce"  # re-publish JobAccepted
    REQUEUE = "requeue"  # SUBMITTING -> QUEUED, the admission loop re-claims it
    RETRACK = "retrack"  # re-publish TaskSubmitted for attempts in flight
    RESEND_RESULT = "resend_result"  # re-publish TaskSucceeded for unstored results
    RESOLVE = "resolve"  # settle creates whose answer was never recorded
    NOTHING = "nothing"


@dataclass(frozen=True)
class Verdict:
    action: Action
    reason: str
    attempts: tuple[Attempt, ...] = ()


def verdict(job: Job, at: datetime) -> Verdict:
    if job.state.terminal:
        return Verdict(Action.NOTHING, "terminal")
    unanswered = tuple(
        a for a in job.attempts.values() if a.state is AttemptState.PENDING and a.task is None
    )
    if job.deadline_at is not None and at > job.deadline_at:
        # The unanswered creates are settled first: a task they made is recorded (and its
        # poller cancels it where it can) or charged as unknown, never left an orphan.
        return Verdict(
            Action.FAIL_DEADLINE,
            f"deadline passed while {job.state.value} (deadline {job.deadline_at.isoformat()})",
            unanswered,
        )
    if unanswered and job.state in (JobState.RUNNING, JobState.STORING, JobState.SCORING):
        # SUBMITTING ones are the dispatcher's (it settles them when it re-claims the job).
        return Verdict(Action.RESOLVE, "creates without a recorded answer", unanswered)
    if job.state is JobState.ACCEPTED:
        return Verdict(Action.ANNOUNCE, "accepted but never queued")
    if job.state is JobState.SUBMITTING:
        return Verdict(Action.REQUEUE, "stuck while submitting")
    unstored = tuple(a for a in job.attempts.values() if a.state is AttemptState.SUCCEEDED)
    if unstored and job.state in (JobState.RUNNING, JobState.STORING):
        return Verdict(Action.RESEND_RESULT, "provider result not stored yet", unstored)
    # STORING and SCORING too: the other candidates of a multi-candidate job are still
    # rendering while the first ones are stored, and QC waits for every one of them.
    in_flight = tuple(a for a in job.attempts.values() if a.active and a.task is not None)
    if in_flight and job.state in (JobState.RUNNING, JobState.STORING, JobState.SCORING):
        return Verdict(Action.RETRACK, "tasks in flight without recent updates", in_flight)
    return Verdict(Action.NOTHING, "nothing to do")
