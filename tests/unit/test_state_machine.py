from __future__ import annotations

import itertools

import pytest

from shared.jobs import (
    TERMINAL_STATES,
    TRANSITIONS,
    IllegalTransition,
    JobRequest,
    JobState,
    Policy,
    check_transition,
    sources_of,
)


def test_happy_path_is_legal() -> None:
    path = [
        JobState.ACCEPTED,
        JobState.QUEUED,
        JobState.SUBMITTING,
        JobState.RUNNING,
        JobState.STORING,
        JobState.COMPLETED,
    ]
    for current, target in itertools.pairwise(path):
        check_transition(current, target)


def test_terminal_states_have_no_way_out() -> None:
    for state in TERMINAL_STATES:
        assert TRANSITIONS[state] == frozenset()
        with pytest.raises(IllegalTransition, match=f"from {state.value}"):
            check_transition(state, JobState.QUEUED)


@pytest.mark.parametrize("state", sorted(set(JobState) - TERMINAL_STATES))
def test_every_active_state_can_fail_or_be_cancelled(state: JobState) -> None:
    check_transition(state, JobState.FAILED)
    check_transition(state, JobState.CANCELLED)


def test_a_job_cannot_complete_before_its_video_is_stored() -> None:
    assert sources_of(JobState.COMPLETED) == {JobState.STORING, JobState.SCORING}
    with pytest.raises(IllegalTransition):
        check_transition(JobState.RUNNING, JobState.COMPLETED)


def test_fallback_after_async_failure_goes_back_to_queued() -> None:
    check_transition(JobState.RUNNING, JobState.QUEUED)


def test_fingerprint_is_stable_and_sensitive_to_the_body() -> None:
    a = JobRequest(prompt="a cat", duration_s=8)
    assert a.fingerprint() == JobRequest(duration_s=8, prompt="a cat").fingerprint()
    assert a.fingerprint() != JobRequest(prompt="a dog", duration_s=8).fingerprint()


def test_explicit_policy_requires_a_provider() -> None:
    with pytest.raises(ValueError, match="needs 'provider'"):
        JobRequest(prompt="x", policy=Policy.EXPLICIT)
