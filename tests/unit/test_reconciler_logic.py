"""What the reconciler does with a job that stopped moving (the pure verdict)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.reconciler.logic import Action, verdict
from shared.jobs import Attempt, AttemptState, Job, JobRequest, JobState, new_job_id, now
from shared.providers.base import TaskRef


def attempt(attempt_id: str, state: AttemptState, candidate: int = 0) -> Attempt:
    return Attempt(
        attempt_id=attempt_id,
        candidate=candidate,
        provider="kling",
        model="kling-v2-master",
        state=state,
        task=TaskRef(provider="kling", model="kling-v2-master", task_id=f"task-{attempt_id}"),
    )


def job(state: JobState, *attempts: Attempt, candidates: int = 1, **extra: object) -> Job:
    return Job(
        job_id=new_job_id(),
        tenant_id="demo",
        request=JobRequest(prompt="a kite", candidates=candidates),
        state=state,
        attempts={a.attempt_id: a for a in attempts},
        **extra,
    )


@pytest.mark.parametrize("state", [JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED])
def test_ended_jobs_are_left_alone(state: JobState) -> None:
    assert verdict(job(state), now()).action is Action.NOTHING


def test_a_job_past_its_deadline_fails_whatever_it_was_doing() -> None:
    late = job(JobState.RUNNING, deadline_at=now() - timedelta(seconds=1))
    found = verdict(late, now())
    assert found.action is Action.FAIL_DEADLINE
    assert "deadline passed while running" in found.reason


def test_accepted_is_announced_again_and_submitting_is_requeued() -> None:
    assert verdict(job(JobState.ACCEPTED), now()).action is Action.ANNOUNCE
    assert verdict(job(JobState.SUBMITTING), now()).action is Action.REQUEUE


def test_an_unstored_result_is_sent_to_storage_again() -> None:
    found = verdict(job(JobState.STORING, attempt("c0-0", AttemptState.SUCCEEDED)), now())
    assert found.action is Action.RESEND_RESULT
    assert [a.attempt_id for a in found.attempts] == ["c0-0"]


def test_a_running_task_is_tracked_again() -> None:
    found = verdict(job(JobState.RUNNING, attempt("c0-0", AttemptState.RUNNING)), now())
    assert found.action is Action.RETRACK


@pytest.mark.parametrize("state", [JobState.STORING, JobState.SCORING])
def test_the_other_candidates_still_rendering_while_one_is_stored_are_tracked_again(
    state: JobState,
) -> None:
    stuck = job(
        state,
        attempt("c0-0", AttemptState.STORED, candidate=0),
        attempt("c1-0", AttemptState.SUBMITTED, candidate=1),
        candidates=2,
    )
    found = verdict(stuck, now())
    assert found.action is Action.RETRACK
    assert [a.attempt_id for a in found.attempts] == ["c1-0"]


def test_a_storing_job_with_nothing_in_flight_waits_for_storage() -> None:
    storing = job(JobState.STORING, attempt("c0-0", AttemptState.STORED))
    assert verdict(storing, now()).action is Action.NOTHING
