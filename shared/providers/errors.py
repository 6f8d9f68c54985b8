"""Failure classes, decided once at the adapter edge.

Hierarchy::

    ProviderError                  every failure an adapter reports; carries a FailureClass
    ├── ProviderRejected           permanent for this request on this provider (4xx, moderation)
    └── ProviderUnavailable        transient (429, 5xx, timeouts, connection errors);
                                   `retry_after` holds the provider's Retry-After when it sent one

Adapters translate httpx exceptions and provider error bodies into these with
`raise ... from exc`; nothing above the adapter looks at HTTP status codes.

`outcome_unknown` marks an error after which the request may still have taken effect: the
request was sent but its answer was lost (read timeout, connection dropped mid-answer) or
came back unreadable under a 2xx. For a create this means a paid task may exist: the
dispatcher never blindly sends that create again (see `services/dispatcher/handlers.py`).

A failed task (the provider accepted it, then it failed asynchronously) is not an exception:
it is a `TaskStatus` with state FAILED and a `Failure`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class FailureClass(StrEnum):
    INVALID_INPUT = "invalid_input"
    MODERATION_INPUT = "moderation_input"
    MODERATION_OUTPUT = "moderation_output"
    RATE_LIMITED = "rate_limited"
    QUOTA_EXHAUSTED = "quota_exhausted"
    PROVIDER_ERROR = "provider_error"
    GENERATION_FAILED = "generation_failed"
    TIMEOUT = "timeout"
    RESULT_EXPIRED = "result_expired"
    AUTH = "auth"
    NOT_FOUND = "not_found"
    MODEL_RETIRED = "model_retired"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class RetryAdvice:
    """Whether retrying on the same provider, or falling back to another, can help."""

    retry_same_provider: bool
    fallback_to_other_provider: bool
    reason: str


RETRY_ADVICE: dict[FailureClass, RetryAdvice] = {
    FailureClass.INVALID_INPUT: RetryAdvice(
        False, True, "this provider rejected the input; another provider's contract may accept it"
    ),
    FailureClass.MODERATION_INPUT: RetryAdvice(
        False, False, "the prompt or image was refused by a safety filter before rendering"
    ),
    FailureClass.MODERATION_OUTPUT: RetryAdvice(
        True, True, "the rendered video was filtered after rendering; a re-roll often passes"
    ),
    FailureClass.RATE_LIMITED: RetryAdvice(True, True, "rate or concurrency limit; wait and retry"),
    FailureClass.QUOTA_EXHAUSTED: RetryAdvice(
        False, True, "account credit or quota used up on this provider"
    ),
    FailureClass.PROVIDER_ERROR: RetryAdvice(True, True, "provider outage or 5xx"),
    FailureClass.GENERATION_FAILED: RetryAdvice(
        True, True, "the provider failed the render; a retry may succeed"
    ),
    FailureClass.TIMEOUT: RetryAdvice(True, True, "no answer or no result before the deadline"),
    FailureClass.RESULT_EXPIRED: RetryAdvice(
        True, True, "the result expired at the provider before it was re-hosted"
    ),
    FailureClass.AUTH: RetryAdvice(False, True, "credentials refused: a configuration error"),
    FailureClass.NOT_FOUND: RetryAdvice(False, True, "the provider no longer knows this task"),
    FailureClass.MODEL_RETIRED: RetryAdvice(False, True, "the model is retired"),
    FailureClass.CANCELLED: RetryAdvice(False, False, "the task was cancelled"),
}


@dataclass(frozen=True)
class Billing:
    """Whether a task that failed with this class has most likely been charged for."""

    billed: bool
    reason: str


# The billing rules, in one place: what a failed attempt leaves on the job's spend. Two rules
# sit above this table (`services/dispatcher/logic.refund`): an attempt whose render
# succeeded is billed whatever went wrong afterwards (a lost or invalid result, a failed
# upload), and a create whose answer was lost stays charged (`AttemptState.UNKNOWN`).
# When in doubt a class is billed: the budget is a hard cap, so spend is never under-counted.
BILLING: dict[FailureClass, Billing] = {
    FailureClass.INVALID_INPUT: Billing(False, "refused at create: nothing rendered"),
    FailureClass.MODERATION_INPUT: Billing(False, "refused at create by a safety filter"),
    FailureClass.MODERATION_OUTPUT: Billing(True, "rendered, then filtered: the render is paid"),
    FailureClass.RATE_LIMITED: Billing(False, "refused at create: nothing started"),
    FailureClass.QUOTA_EXHAUSTED: Billing(False, "refused at create: no credit to charge"),
    FailureClass.PROVIDER_ERROR: Billing(False, "the provider failed the task it accepted"),
    FailureClass.GENERATION_FAILED: Billing(False, "the provider failed the render"),
    FailureClass.TIMEOUT: Billing(True, "no end seen by the deadline: it may still render"),
    FailureClass.RESULT_EXPIRED: Billing(True, "rendered, result expired before re-hosting"),
    FailureClass.AUTH: Billing(False, "credentials refused: nothing started"),
    FailureClass.NOT_FOUND: Billing(False, "the provider knows no such task"),
    FailureClass.MODEL_RETIRED: Billing(False, "refused at create: the model is gone"),
    FailureClass.CANCELLED: Billing(True, "a cancel may land after rendering started"),
}


class ProviderError(Exception):
    """A failure reported by a provider adapter, already classified."""

    transient = False

    def __init__(
        self,
        failure_class: FailureClass,
        message: str,
        *,
        provider_code: str | None = None,
        retry_after: float | None = None,
        outcome_unknown: bool = False,
    ) -> None:
        super().__init__(message)
        self.failure_class = failure_class
        self.message = message
        self.provider_code = provider_code
        self.retry_after = retry_after
        self.outcome_unknown = outcome_unknown

    @property
    def advice(self) -> RetryAdvice:
        return RETRY_ADVICE[self.failure_class]


class ProviderRejected(ProviderError):
    """Permanent for this request on this provider: do not resend it unchanged."""


class ProviderUnavailable(ProviderError):
    """Transient: the same call may succeed later (honour `retry_after` when set)."""

    transient = True
