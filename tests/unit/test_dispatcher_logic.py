from __future__ import annotations

import pytest

from services.dispatcher.logic import (
    Next,
    after_failure,
    attempts_to_submit,
    concurrency_limits,
    refund,
)
from shared.jobs import Attempt, AttemptState, Job, JobRequest, ModelChoice
from shared.providers.base import Failure, TaskRef
from shared.providers.errors import BILLING, FailureClass

ROUTE = (
    ModelChoice(provider="kling", model="kling-v2-6"),
    ModelChoice(provider="runway", model="gen4.5"),
)


def job_with(
    *attempts: Attempt, candidates: int = 1, budget: float | None = None, spent: float = 0.0
) -> Job:
    request = JobRequest(prompt="x", duration_s=5, candidates=candidates, budget_usd=budget)
    return Job(
        job_id="job_1",
        tenant_id="t",
        request=request,
        route=ROUTE,
        spent_usd=spent,
        attempts={a.attempt_id: a for a in attempts},
    )


def failed(
    attempt_id: str, provider: str = "kling", model: str = "kling-v2-6", candidate: int = 0
) -> Attempt:
    return Attempt(
        attempt_id=attempt_id,
        candidate=candidate,
        provider=provider,
        model=model,
        state=AttemptState.FAILED,
        task=TaskRef(provider=provider, model=model, task_id=attempt_id),
    )


def failure(cls: FailureClass) -> Failure:
    return Failure(failure_class=cls, message=cls.value)


def test_every_candidate_gets_one_attempt_and_a_written_ahead_one_is_reused() -> None:
    assert attempts_to_submit(job_with(candidates=3)) == [(0, "c0-0"), (1, "c1-0"), (2, "c2-0")]
    pending = Attempt(attempt_id="c0-0", provider="kling", model="kling-v2-6")
    running = Attempt(
        attempt_id="c1-0",
        candidate=1,
        provider="kling",
        model="kling-v2-6",
        state=AttemptState.RUNNING,
        task=TaskRef(provider="kling", model="kling-v2-6", task_id="t"),
    )
    assert attempts_to_submit(job_with(pending, running, candidates=2)) == [(0, "c0-0")]


def test_a_retryable_failure_is_retried_once_on_the_same_model_then_falls_back() -> None:
    first = after_failure(job_with(failed("c0-0")), failure(FailureClass.MODERATION_OUTPUT), 1)
    assert first.next is Next.RETRY_SAME
    second = after_failure(
        job_with(failed("c0-0"), failed("c0-1")), failure(FailureClass.MODERATION_OUTPUT), 1
    )
    assert second.next is Next.FALLBACK and second.route_index == 1


def test_input_moderation_fails_the_job_without_fallback() -> None:
    decision = after_failure(job_with(failed("c0-0")), failure(FailureClass.MODERATION_INPUT), 1)
    assert decision.next is Next.FAIL


def test_fallback_respects_the_budget() -> None:
    job = job_with(failed("c0-0"), failed("c0-1"), budget=0.5, spent=0.3)
    decision = after_failure(job, failure(FailureClass.PROVIDER_ERROR), 1)
    assert decision.next is Next.FAIL
    assert "no affordable fallback" in decision.reason


def test_a_failed_candidate_waits_while_another_is_still_running() -> None:
    running = Attempt(
        attempt_id="c1-0",
        candidate=1,
        provider="kling",
        model="kling-v2-6",
        state=AttemptState.RUNNING,
    )
    decision = after_failure(
        job_with(failed("c0-0"), running, candidates=2), failure(FailureClass.TIMEOUT), 1
    )
    assert decision.next is Next.WAIT


def test_only_failures_after_a_render_stay_billed() -> None:
    attempt = Attempt(attempt_id="a", provider="kling", model="kling-v2-6", cost_usd=0.2)
    assert refund(attempt, failure(FailureClass.MODERATION_OUTPUT)) == 0.0
    assert refund(attempt, failure(FailureClass.PROVIDER_ERROR)) == 0.2


def test_concurrency_limits_come_from_the_catalog_unless_overridden() -> None:
    limits = concurrency_limits("runway:7", ("runway", "kling"))
    assert limits == {"runway": 7, "kling": 5}


def test_each_attempt_gets_its_own_external_id() -> None:
    from services.dispatcher.logic import generation_request

    job = job_with(candidates=2)
    ids = {generation_request(job, a, None).external_id for a in ("c0-0", "c1-0")}
    assert ids == {"job_1.c0-0", "job_1.c1-0"}


def test_every_failure_class_has_a_billing_rule_with_its_reason() -> None:
    missing = [cls.value for cls in FailureClass if cls not in BILLING]
    assert missing == []
    assert all(BILLING[cls].reason for cls in FailureClass)


@pytest.mark.parametrize("cls", list(FailureClass))
def test_a_failed_attempt_is_refunded_exactly_as_the_billing_table_says(cls: FailureClass) -> None:
    running = Attempt(
        attempt_id="a", provider="kling", model="kling-v2-6", state=AttemptState.RUNNING
    ).model_copy(update={"cost_usd": 1.25})
    expected = 0.0 if BILLING[cls].billed else 1.25
    assert refund(running, failure(cls)) == expected


@pytest.mark.parametrize("cls", list(FailureClass))
@pytest.mark.parametrize("state", [AttemptState.SUCCEEDED, AttemptState.STORED])
def test_a_finished_render_is_billed_whatever_failed_after_it(
    cls: FailureClass, state: AttemptState
) -> None:
    rendered = Attempt(
        attempt_id="a", provider="kling", model="kling-v2-6", state=state, cost_usd=1.25
    )
    assert refund(rendered, failure(cls)) == 0.0


def test_an_unknown_create_counts_as_a_try_and_is_never_submitted_again() -> None:
    unknown = Attempt(
        attempt_id="c0-0",
        provider="kling",
        model="kling-v2-6",
        state=AttemptState.UNKNOWN,
        cost_usd=1.0,
    )
    job = job_with(unknown, budget=100.0, spent=1.0)
    assert attempts_to_submit(job) == [(0, "c0-1")]
    twice = job_with(unknown, unknown.model_copy(update={"attempt_id": "c0-1"}), budget=100.0)
    decision = after_failure(twice, failure(FailureClass.TIMEOUT), same_retries=1)
    assert decision.next is Next.FALLBACK  # two tries on kling: the retry allowance is spent
