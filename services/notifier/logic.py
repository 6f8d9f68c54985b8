"""Notifier decisions, pure: what a webhook response means, when to try again, record shapes.

No I/O imports here (a unit test walks the imports).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from shared.events import JobCancelled, JobCompleted, JobFailed, JobUpdated
from shared.jobs import JobState

SOURCE = "notifier"
JobOutcome = JobCompleted | JobFailed | JobCancelled

_STATE_OF: dict[str, JobState] = {
    "reelforge.job.completed": JobState.COMPLETED,
    "reelforge.job.failed": JobState.FAILED,
    "reelforge.job.cancelled": JobState.CANCELLED,
}


class Verdict(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    DEAD = "dead"


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    next_attempt_at: datetime | None = None
    reason: str = ""


def delivery_id(job_id: str, event_type: str) -> str:
    """One delivery per job and outcome type: a redelivered event finds it already queued."""
    return f"{job_id}:{event_type}"


def terminal_state(event: JobOutcome) -> JobState:
    return _STATE_OF[event.type]


def job_updated(event: JobOutcome) -> JobUpdated:
    state = terminal_state(event)
    return JobUpdated(
        source=SOURCE,
        subject=event.subject,
        tenant_id=event.tenant_id,
        traceparent=event.traceparent,
        state=state,
        progress=1.0 if state is JobState.COMPLETED else 0.0,
        detail=event.type,
    )


def describe(status_code: int | None, error: str | None) -> str:
    return f"HTTP {status_code}" if status_code is not None else (error or "no response")


def decide(
    status_code: int | None,
    error: str | None,
    attempts_made: int,
    schedule: Sequence[float],
    at: datetime,
    jitter: float = 0.2,
    rand: random.Random | None = None,
    refused: str | None = None,
) -> Decision:
    """After attempt number `attempts_made` (1-based) got `status_code` (None: no response);
    `refused`: the egress policy refused the URL (dead at once: it cannot become public)."""
    if refused is not None:
        return Decision(Verdict.DEAD, reason=f"egress refused: {refused}")
    if status_code is not None and 200 <= status_code < 300:
        return Decision(Verdict.DELIVERED)
    what = describe(status_code, error)
    if status_code == 410:
        return Decision(Verdict.DEAD, reason="receiver answered 410 Gone: stopped at once")
    delay = retry_delay(attempts_made, schedule, jitter, rand)
    if delay is None:
        reason = f"gave up after {attempts_made} attempts; last: {what}"
        return Decision(Verdict.DEAD, reason=reason)
    return Decision(Verdict.RETRY, at + timedelta(seconds=delay), what)


def retry_delay(
    attempts_made: int,
    schedule: Sequence[float],
    jitter: float = 0.2,
    rand: random.Random | None = None,
) -> float | None:
    """Wait before the next attempt, or None when the schedule is exhausted. Jitter spreads
    the retries of many webhooks that failed together (a receiver outage) over time."""
    if attempts_made < 1 or attempts_made > len(schedule):
        return None
    base = schedule[attempts_made - 1]
    spread = (rand or random).uniform(-jitter, jitter)
    return max(0.0, base * (1 + spread))
