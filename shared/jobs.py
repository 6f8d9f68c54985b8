"""The job record and its pure state machine (no I/O: a unit test walks the imports).

A job is one "make this video" request. It owns one or more *attempts*: an attempt is one
provider task for one candidate (several candidates render in parallel; a fallback is a new
attempt on the next model of the route). Job states:

    accepted -> queued -> submitting -> running -> storing -> completed
                  ^           |            |          |  \\-> scoring -> completed
                  \\-----------+------------+----------/      (multi-candidate jobs, QC)
    any non-terminal state -> failed | cancelled

`queued` means waiting for admission to the provider (the job shows its queue position).
Every transition in the store is a conditional update on the current state, so a replayed
message finds the job already moved and does nothing.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator

from shared.providers.base import AspectRatio, Failure, Resolution, TaskRef, VideoOutput


class JobState(StrEnum):
    ACCEPTED = "accepted"
    QUEUED = "queued"
    SUBMITTING = "submitting"
    RUNNING = "running"
    STORING = "storing"
    SCORING = "scoring"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED})
_ACTIVE = frozenset(JobState) - TERMINAL_STATES
# Job states in which provider tasks may still be running.
ACTIVE_TASK_STATES = (JobState.SUBMITTING, JobState.RUNNING, JobState.STORING, JobState.SCORING)

TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.ACCEPTED: frozenset({JobState.QUEUED, JobState.SUBMITTING}),
    JobState.QUEUED: frozenset({JobState.SUBMITTING}),
    # A fast provider's result can reach storage before the dispatcher marks the job running.
    JobState.SUBMITTING: frozenset({JobState.RUNNING, JobState.QUEUED, JobState.STORING}),
    JobState.RUNNING: frozenset({JobState.STORING, JobState.QUEUED, JobState.SUBMITTING}),
    JobState.STORING: frozenset(
        {JobState.COMPLETED, JobState.SCORING, JobState.RUNNING, JobState.QUEUED}
    ),
    JobState.SCORING: frozenset({JobState.COMPLETED, JobState.QUEUED}),
    JobState.COMPLETED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}
for _state in _ACTIVE:
    TRANSITIONS[_state] = TRANSITIONS[_state] | {JobState.FAILED, JobState.CANCELLED}


class IllegalTransition(ValueError):
    def __init__(self, current: JobState, target: JobState) -> None:
        super().__init__(f"a job cannot go from {current.value} to {target.value}")
        self.current = current
        self.target = target


def can_transition(current: JobState, target: JobState) -> bool:
    return target in TRANSITIONS[current]


def sources_of(target: JobState) -> frozenset[JobState]:
    """States from which `target` is legal: the filter of a conditional update."""
    return frozenset(s for s, targets in TRANSITIONS.items() if target in targets)


def check_transition(current: JobState, target: JobState) -> None:
    if not can_transition(current, target):
        raise IllegalTransition(current, target)


class Policy(StrEnum):
    CHEAPEST = "cheapest"
    BEST_QUALITY = "best_quality"
    BEST_PHYSICS = "best_physics"
    CHARACTER_CONSISTENCY = "character_consistency"
    FASTEST = "fastest"
    EXPLICIT = "explicit"
    FALLBACK_CHAIN = "fallback_chain"


class ModelChoice(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: str
    model: str | None = Field(None, description="None: the policy picks among the provider's.")


class JobRequest(BaseModel):
    """What a caller asks for, over HTTP or on the `job-requests` topic."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt: str = Field(min_length=1, max_length=4000)
    negative_prompt: str | None = Field(None, max_length=2000)
    duration_s: int = Field(8, ge=1, le=60)
    resolution: Resolution = "720p"
    aspect_ratio: AspectRatio = "16:9"
    fps: int | None = Field(None, ge=1, le=60)
    audio: bool = False
    image_url: str | None = Field(None, max_length=7_000_000)
    seed: int | None = None
    candidates: int = Field(1, ge=1, le=5, description="Candidates to render and score.")
    policy: Policy = Policy.CHEAPEST
    provider: str | None = Field(None, description="With policy=explicit: the provider.")
    model: str | None = Field(None, description="With policy=explicit: the model (optional).")
    fallback_chain: tuple[ModelChoice, ...] = Field(
        (), description="With policy=fallback_chain: models to try in order."
    )
    allow_fallback: bool = Field(True, description="Fall back to the next route entry on failure.")
    budget_usd: float | None = Field(None, gt=0, description="Hard cap, retries included.")
    callback_url: HttpUrl | None = Field(None, description="Signed webhook on completion.")
    deadline_s: int = Field(1800, ge=30, le=86_400, description="Give up after this long.")
    metadata: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _policy_needs_its_fields(self) -> JobRequest:
        if self.policy is Policy.EXPLICIT and not self.provider:
            raise ValueError("policy 'explicit' needs 'provider' (and optionally 'model')")
        if self.policy is Policy.FALLBACK_CHAIN and not self.fallback_chain:
            raise ValueError("policy 'fallback_chain' needs a non-empty 'fallback_chain'")
        return self

    def fingerprint(self) -> str:
        """Stable hash of the request: the same Idempotency-Key must come with the same body."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class AttemptState(StrEnum):
    PENDING = "pending"
    SUBMITTED = "submitted"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    STORED = "stored"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # The create was sent and its answer lost, on a provider where no id lets us find the
    # task: it may exist and be billed. Charged against the budget, never sent again.
    UNKNOWN = "unknown"


class StoredVideo(BaseModel):
    model_config = ConfigDict(frozen=True)

    bucket: str
    object_key: str
    sha256: str
    size_bytes: int
    content_type: str = "video/mp4"
    thumbnail_key: str | None = None
    duration_s: float | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    codec: str | None = None
    has_audio: bool = False


class Attempt(BaseModel):
    """One provider task for one candidate. `task` is written before the provider call
    (state pending, task None) and right after it (state submitted, task set)."""

    model_config = ConfigDict(frozen=True)

    attempt_id: str
    candidate: int = 0
    provider: str
    model: str
    state: AttemptState = AttemptState.PENDING
    task: TaskRef | None = None
    raw_status: str | None = None
    progress: float | None = None
    outputs: tuple[VideoOutput, ...] = ()
    failure: Failure | None = None
    cost_usd: float = 0.0
    video: StoredVideo | None = None
    qc: dict[str, Any] | None = Field(None, description="QC scores and verdict of this candidate.")
    created_at: datetime = Field(default_factory=lambda: now())
    submitted_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.state in (AttemptState.PENDING, AttemptState.SUBMITTED, AttemptState.RUNNING)


class Job(BaseModel):
    model_config = ConfigDict(frozen=True)

    job_id: str
    tenant_id: str
    request: JobRequest
    state: JobState = JobState.ACCEPTED
    version: int = 0
    idempotency_key: str | None = None
    fingerprint: str = ""
    route: tuple[ModelChoice, ...] = ()
    route_index: int = 0
    quote_usd: float = 0.0
    spent_usd: float = 0.0
    reserved_usd: float = Field(
        0.0, description="Budget set aside for refinements QC requested (other jobs' spend)."
    )
    attempts: dict[str, Attempt] = Field(default_factory=dict)
    queue_position: int | None = Field(None, description="Computed when read, never stored.")
    active_provider: str | None = Field(None, description="Provider of the current route entry.")
    queued_at: datetime | None = Field(None, description="When it joined the provider's queue.")
    not_before: datetime | None = Field(None, description="Rate-limited: not before this time.")
    progress: float = 0.0
    result: StoredVideo | None = None
    picked_attempt: str | None = None
    failure: Failure | None = None
    result_deleted_at: datetime | None = Field(None, description="Retention removed the video.")
    source: str = "http"
    trace_parent: str | None = None
    created_at: datetime = Field(default_factory=lambda: now())
    updated_at: datetime = Field(default_factory=lambda: now())
    deadline_at: datetime | None = None

    def active_attempts(self) -> list[Attempt]:
        return [a for a in self.attempts.values() if a.active]

    def public_view(self) -> dict[str, Any]:
        """What a tenant may see of its job (no other tenant's data, no provider secrets)."""
        return self.model_dump(mode="json", exclude={"tenant_id", "fingerprint", "version"})


def now() -> datetime:
    return datetime.now(UTC)


def new_job_id() -> str:
    """Opaque and unguessable (not derived from tenant or time), so ids leak nothing."""
    return "job_" + secrets.token_hex(12)
