"""Versioned, frozen event and command models with one common envelope.

The envelope uses CloudEvents attribute names (`specversion`, `id`, `type`, `source`, `time`,
`subject` = job id) plus `tenant_id`, `schema_version` and the W3C `traceparent`. Every
message is keyed by job id. Within a schema version only optional fields may be added;
anything else is a new class with `schema_version: Literal[2]` in a discriminated union.
Commands are imperative (`RequestJob`), events past tense (`JobAccepted`).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from shared.jobs import Job, JobRequest, JobState, StoredVideo, now
from shared.providers.base import Failure, TaskRef, VideoOutput


class Envelope(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(default_factory=lambda: str(uuid.uuid4()), description="Unique event id.")
    source: str = Field("reelforge", description="Producing service.")
    time: datetime = Field(default_factory=now)
    subject: str = Field(description="The job id (also the Kafka message key).")
    tenant_id: str
    traceparent: str | None = Field(None, description="W3C trace context of the job.")

    @property
    def job_id(self) -> str:
        return self.subject


class RequestJob(Envelope):
    """Public command on `job-requests`: create a job without HTTP. `subject` is the caller's
    idempotency key (a re-published command with the same key and body creates nothing new)."""

    type: Literal["reelforge.job.request"] = "reelforge.job.request"
    schema_version: Literal[1] = 1
    request: JobRequest


class JobAccepted(Envelope):
    type: Literal["reelforge.job.accepted"] = "reelforge.job.accepted"
    schema_version: Literal[1] = 1


class TaskSubmitted(Envelope):
    """A provider task now exists for this attempt; its poller owns it from here."""

    type: Literal["reelforge.task.submitted"] = "reelforge.task.submitted"
    schema_version: Literal[1] = 1
    attempt_id: str
    task: TaskRef
    deadline_at: datetime
    expected_render_s: float
    submitted_at: datetime | None = Field(None, description="When the provider call returned.")


class TaskHinted(Envelope):
    """A verified provider webhook said this task changed; the poller confirms by polling."""

    type: Literal["reelforge.task.hinted"] = "reelforge.task.hinted"
    schema_version: Literal[1] = 1
    attempt_id: str
    task_id: str
    hint: str
    received_at: datetime = Field(default_factory=now)


class TaskSucceeded(Envelope):
    type: Literal["reelforge.task.succeeded"] = "reelforge.task.succeeded"
    schema_version: Literal[1] = 1
    attempt_id: str
    task: TaskRef
    outputs: tuple[VideoOutput, ...]
    provider_finished_at: datetime | None = None


class TaskFailed(Envelope):
    type: Literal["reelforge.task.failed"] = "reelforge.task.failed"
    schema_version: Literal[1] = 1
    attempt_id: str
    failure: Failure


class CandidateStored(Envelope):
    type: Literal["reelforge.candidate.stored"] = "reelforge.candidate.stored"
    schema_version: Literal[1] = 1
    attempt_id: str
    video: StoredVideo


class JobCompleted(Envelope):
    """Public: the job's video is stored and checked. Exactly one outcome event per job is the
    goal; consumers must still de-duplicate on `subject` (at-least-once delivery)."""

    type: Literal["reelforge.job.completed"] = "reelforge.job.completed"
    schema_version: Literal[1] = 1
    attempt_id: str
    provider: str
    model: str
    video: StoredVideo
    cost_usd: float
    metadata: dict[str, str] = Field(default_factory=dict)


class JobFailed(Envelope):
    type: Literal["reelforge.job.failed"] = "reelforge.job.failed"
    schema_version: Literal[1] = 1
    failure: Failure
    cost_usd: float = 0.0
    metadata: dict[str, str] = Field(default_factory=dict)


class JobCancelled(Envelope):
    type: Literal["reelforge.job.cancelled"] = "reelforge.job.cancelled"
    schema_version: Literal[1] = 1
    reason: str = "cancelled by the caller"
    metadata: dict[str, str] = Field(default_factory=dict)


class JobUpdated(Envelope):
    """Ephemeral progress for live streams; the job record stays the source of truth."""

    type: Literal["reelforge.job.updated"] = "reelforge.job.updated"
    schema_version: Literal[1] = 1
    state: JobState
    progress: float = 0.0
    queue_position: int | None = None
    detail: str = ""


_EVENT_IDS = uuid.UUID("5b0e8f52-6c1d-4f7e-9a55-7265656c666f")
E = TypeVar("E", bound="Envelope")


def stable_event_id(job_id: str, attempt_id: str | None, event_type: str, seq: object = "") -> str:
    """The CloudEvents id of an event about a job: derived from (job, attempt, event type) and,
    for events that legitimately repeat (progress), a sequence number such as the job version.
    A replay after a crash therefore repeats the id."""
    name = f"{job_id}/{attempt_id or '-'}/{event_type}/{seq}"
    return str(uuid.uuid5(_EVENT_IDS, name))


def event_about(
    cls: type[E],
    job: Job,
    source: str,
    *,
    attempt: str | None = None,
    seq: object = "",
    **fields: Any,
) -> E:
    """An event about `job` with its stable id (see `stable_event_id`); `attempt` also fills
    the event's `attempt_id` when it has one."""
    event_type = str(cls.model_fields["type"].default)
    if attempt is not None and "attempt_id" in cls.model_fields:
        fields["attempt_id"] = attempt
    return cls(
        id=stable_event_id(job.job_id, attempt, event_type, seq),
        **envelope_of(job, source),
        **fields,
    )


def job_failed(job: Job, failure: Failure, source: str) -> JobFailed:
    """The outcome event of a failed job, as written (its id is the job's: one per job)."""
    return event_about(
        JobFailed,
        job,
        source,
        failure=failure,
        cost_usd=round(job.spent_usd, 4),
        metadata=job.request.metadata,
    )


def envelope_of(job: Job, source: str) -> dict[str, Any]:
    """The envelope fields of every event about `job`: keyed by it, its tenant, its trace."""
    return {
        "subject": job.job_id,
        "tenant_id": job.tenant_id,
        "traceparent": job.trace_parent,
        "source": source,
    }


ProviderTaskEvent = Annotated[TaskSubmitted | TaskHinted, Field(discriminator="type")]
JobOutcome = Annotated[JobCompleted | JobFailed | JobCancelled, Field(discriminator="type")]

PROVIDER_TASK_EVENT: TypeAdapter[TaskSubmitted | TaskHinted] = TypeAdapter(ProviderTaskEvent)
JOB_OUTCOME: TypeAdapter[JobCompleted | JobFailed | JobCancelled] = TypeAdapter(JobOutcome)

ALL_EVENTS: tuple[type[Envelope], ...] = (
    RequestJob,
    JobAccepted,
    TaskSubmitted,
    TaskHinted,
    TaskSucceeded,
    TaskFailed,
    CandidateStored,
    JobCompleted,
    JobFailed,
    JobCancelled,
    JobUpdated,
)
