"""Dispatcher decisions, free of I/O: admission, what to submit, what to do after a failure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from shared.jobs import Attempt, AttemptState, Job
from shared.providers.base import Failure, GenerationRequest, ModelSpec
from shared.providers.catalog import all_models, find_model
from shared.providers.errors import RETRY_ADVICE, FailureClass
from shared.routing import price

# Failures after which the provider has most likely charged for the render.
BILLED_FAILURES = frozenset({FailureClass.MODERATION_OUTPUT, FailureClass.RESULT_EXPIRED})


def concurrency_limits(override: str, providers: tuple[str, ...]) -> dict[str, int]:
    """Per-provider in-flight limit: the override, else the largest catalog limit."""
    limits = {
        p: max((m.concurrency_limit for m in all_models() if m.provider == p), default=1)
        for p in providers
    }
    for entry in filter(None, (e.strip() for e in override.split(","))):
        name, _, value = entry.partition(":")
        limits[name.strip()] = int(value)
    return limits


def current_spec(job: Job) -> ModelSpec:
    choice = job.route[job.route_index]
    spec = find_model(choice.provider, choice.model or "")
    if spec is None:
        raise ValueError(f"route entry {choice.provider}/{choice.model} is not in the catalog")
    return spec


def generation_request(job: Job, attempt_id: str, callback_url: str | None) -> GenerationRequest:
    """`external_id` is per attempt: providers that take one (Kling) require it unique."""
    r = job.request
    return GenerationRequest(
        prompt=r.prompt,
        negative_prompt=r.negative_prompt,
        duration_s=r.duration_s,
        resolution=r.resolution,
        aspect_ratio=r.aspect_ratio,
        fps=r.fps,
        audio=r.audio,
        image_url=r.image_url,
        seed=r.seed,
        callback_url=callback_url,
        external_id=f"{job.job_id}.{attempt_id}",
    )


def attempts_to_submit(job: Job) -> list[tuple[int, str]]:
    """(candidate, attempt id) for every candidate with nothing in flight or done on the
    current route entry. A PENDING attempt (written ahead, task unknown) is reused, so a
    redelivered message never opens a second attempt for the same candidate."""
    spec = current_spec(job)
    out: list[tuple[int, str]] = []
    for candidate in range(job.request.candidates):
        mine = [a for a in job.attempts.values() if a.candidate == candidate]
        live = [
            a
            for a in mine
            if a.provider == spec.provider
            and a.model == spec.model
            and a.state not in (AttemptState.FAILED, AttemptState.CANCELLED)
        ]
        pending = [a for a in live if a.state is AttemptState.PENDING and a.task is None]
        if pending:
            out.append((candidate, pending[0].attempt_id))
        elif not live:
            out.append((candidate, f"c{candidate}-{len(mine)}"))
    return out


class Next(StrEnum):
    WAIT = "wait"  # other candidates are still running or already stored
    RETRY_SAME = "retry_same"
    FALLBACK = "fallback"
    FAIL = "fail"


@dataclass(frozen=True)
class Decision:
    next: Next
    reason: str
    route_index: int


def after_failure(job: Job, failure: Failure, same_retries: int) -> Decision:
    """What to do once an attempt failed (the attempt is already marked failed in `job`)."""
    if any(
        a.active or a.state in (AttemptState.SUCCEEDED, AttemptState.STORED)
        for a in job.attempts.values()
    ):
        return Decision(Next.WAIT, "other candidates are still in play", job.route_index)
    advice = RETRY_ADVICE[failure.failure_class]
    spec = current_spec(job)
    tries_here = sum(
        1
        for a in job.attempts.values()
        if a.provider == spec.provider
        and a.model == spec.model
        and a.state is AttemptState.FAILED
        and a.task is not None
    )
    retry_left = tries_here <= same_retries * job.request.candidates
    if advice.retry_same_provider and retry_left and _affordable(job, spec):
        return Decision(Next.RETRY_SAME, advice.reason, job.route_index)
    if advice.fallback_to_other_provider and job.request.allow_fallback:
        for index in range(job.route_index + 1, len(job.route)):
            nxt = find_model(job.route[index].provider, job.route[index].model or "")
            if nxt is not None and _affordable(job, nxt):
                return Decision(
                    Next.FALLBACK,
                    f"{advice.reason}; falling back to {nxt.provider}/{nxt.model}",
                    index,
                )
        return Decision(
            Next.FAIL, f"{failure.message} (no affordable fallback left)", job.route_index
        )
    return Decision(Next.FAIL, failure.message, job.route_index)


def _affordable(job: Job, spec: ModelSpec) -> bool:
    if job.request.budget_usd is None:
        return True
    return (
        job.spent_usd + price(job.request, spec) * job.request.candidates
        <= job.request.budget_usd + 1e-9
    )


def requeue_delay(requeues: int, retry_after: float | None) -> timedelta:
    base = retry_after if retry_after is not None else min(60.0, 2.0 * (2**requeues))
    return timedelta(seconds=max(0.5, base))


def refund(attempt: Attempt, failure: Failure) -> float:
    """Amount to take back off the job's spend for a failed attempt."""
    return 0.0 if failure.failure_class in BILLED_FAILURES else attempt.cost_usd


def deadline_for(job: Job, at: datetime) -> datetime:
    return job.deadline_at or at + timedelta(seconds=job.request.deadline_s)
