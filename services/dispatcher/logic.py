"""Dispatcher decisions, free of I/O: admission, what to submit, what to do after a failure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from shared.jobs import Attempt, AttemptState, Job
from shared.providers.base import Failure, ModelSpec
from shared.providers.catalog import MODELS, find_model
from shared.providers.errors import BILLING, RETRY_ADVICE
from shared.routing import generation_request as generation_request  # the reconciler's too
from shared.routing import price

# Attempts whose render the provider finished: paid, whatever happens to the result later.
RENDERED = (AttemptState.SUCCEEDED, AttemptState.STORED)


def concurrency_limits(override: str, providers: tuple[str, ...]) -> dict[str, int]:
    """Per-provider in-flight limit: the override, else the largest catalog limit."""
    limits = {
        p: max((m.concurrency_limit for m in MODELS if m.provider == p), default=1)
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
            and a.state not in (AttemptState.FAILED, AttemptState.CANCELLED, AttemptState.UNKNOWN)
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
        and (
            (a.state is AttemptState.FAILED and a.task is not None)
            or a.state is AttemptState.UNKNOWN
        )
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
    """Amount to take back off the job's spend for a failed attempt (`attempt` as it was
    before the failure): nothing for a finished render or a billed class (`BILLING`)."""
    if attempt.state in RENDERED or BILLING[failure.failure_class].billed:
        return 0.0
    return attempt.cost_usd


def past_deadline(job: Job, at: datetime) -> bool:
    """Admission submits nothing for a job whose deadline has passed."""
    return job.deadline_at is not None and at >= job.deadline_at


def deadline_for(job: Job, at: datetime) -> datetime:
    return job.deadline_at or at + timedelta(seconds=job.request.deadline_s)
