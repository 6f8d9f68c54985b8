"""Storage decisions, pure: object keys, what to do with a succeeded task, the events to emit.

No I/O imports here (a unit test walks the imports). Handlers load state, ask these functions
what to do, then persist and publish.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from shared.events import CandidateStored, JobCompleted, JobUpdated, TaskFailed
from shared.jobs import Attempt, AttemptState, Job, JobState, StoredVideo
from shared.providers.base import Failure
from shared.providers.errors import FailureClass

SOURCE = "storage"
VIDEO_PREFIX = "videos/"
# Failure classes that mean "the provider's copy is gone": re-render, don't retry the download.
LOST_RESULT = frozenset({FailureClass.RESULT_EXPIRED, FailureClass.NOT_FOUND})
_EVENT_IDS = uuid.UUID("8f1f6c3e-5b0a-4e59-9a43-2f3c1d7e9b10")


@dataclass(frozen=True)
class ObjectKeys:
    video: str
    thumbnail: str


@dataclass(frozen=True)
class KeyRef:
    tenant_id: str
    job_id: str
    attempt_id: str
    is_video: bool


class Plan(StrEnum):
    STORE = "store"  # download, upload, probe, then finish
    REPLAY = "replay"  # already stored by an earlier delivery: only finish again
    DISCARD = "discard"  # the job ended: keep nothing, free the provider copy
    WAIT = "wait"  # the job is not running yet (a race with the dispatcher): retry later


def object_keys(tenant_id: str, job_id: str, attempt_id: str) -> ObjectKeys:
    """Deterministic keys: a redelivered message overwrites the same objects, never duplicates."""
    base = f"{VIDEO_PREFIX}{tenant_id}/{job_id}/{attempt_id}"
    return ObjectKeys(video=f"{base}.mp4", thumbnail=f"{base}.jpg")


def parse_object_key(key: str) -> KeyRef | None:
    """The inverse of `object_keys`, or None for a key this service did not write."""
    if not key.startswith(VIDEO_PREFIX):
        return None
    parts = key[len(VIDEO_PREFIX) :].split("/")
    if len(parts) != 3 or not all(parts):
        return None
    tenant_id, job_id, name = parts
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or ext not in ("mp4", "jpg"):
        return None
    return KeyRef(tenant_id, job_id, stem, is_video=ext == "mp4")


def plan_for(job: Job, attempt: Attempt) -> Plan:
    """What a TaskSucceeded for `attempt` should do given the job as it is now."""
    if attempt.state is AttemptState.STORED and attempt.video is not None:
        return Plan.REPLAY
    if job.state.terminal:
        return Plan.DISCARD
    # SUBMITTING too: a fast provider's result can arrive before the dispatcher marks the job
    # running (the state machine allows submitting -> storing).
    if job.state in (JobState.SUBMITTING, JobState.RUNNING, JobState.STORING, JobState.SCORING):
        return Plan.STORE
    return Plan.WAIT


def completes_job(job: Job) -> bool:
    """Single-candidate jobs complete here; multi-candidate ones go to QC for the pick."""
    return job.request.candidates == 1


def stored_changes(attempt_id: str, video: StoredVideo, at: datetime) -> dict[str, object]:
    prefix = f"attempts.{attempt_id}"
    return {
        f"{prefix}.state": AttemptState.STORED,
        f"{prefix}.video": video,
        f"{prefix}.finished_at": at,
    }


def completion_changes(attempt_id: str, video: StoredVideo) -> dict[str, object]:
    return {"result": video, "picked_attempt": attempt_id, "progress": 1.0}


def event_id(job_id: str, attempt_id: str, kind: str) -> str:
    """Stable ids, so a replayed event carries the id consumers already de-duplicated on."""
    return str(uuid.uuid5(_EVENT_IDS, f"{job_id}/{attempt_id}/{kind}"))


def cost_of(job: Job, attempt: Attempt) -> float:
    return attempt.cost_usd or job.spent_usd


def job_completed(job: Job, attempt: Attempt, video: StoredVideo) -> JobCompleted:
    return JobCompleted(
        id=event_id(job.job_id, attempt.attempt_id, "completed"),
        source=SOURCE,
        subject=job.job_id,
        tenant_id=job.tenant_id,
        traceparent=job.trace_parent,
        attempt_id=attempt.attempt_id,
        provider=attempt.provider,
        model=attempt.model,
        video=video,
        cost_usd=cost_of(job, attempt),
        metadata=dict(job.request.metadata),
    )


def candidate_stored(job: Job, attempt: Attempt, video: StoredVideo) -> CandidateStored:
    return CandidateStored(
        id=event_id(job.job_id, attempt.attempt_id, "stored"),
        source=SOURCE,
        subject=job.job_id,
        tenant_id=job.tenant_id,
        traceparent=job.trace_parent,
        attempt_id=attempt.attempt_id,
        video=video,
    )


def job_updated(job: Job, state: JobState, detail: str = "") -> JobUpdated:
    progress = 1.0 if state is JobState.COMPLETED else job.progress
    return JobUpdated(
        id=event_id(job.job_id, "-", f"updated/{state.value}/{job.version}"),
        source=SOURCE,
        subject=job.job_id,
        tenant_id=job.tenant_id,
        traceparent=job.trace_parent,
        state=state,
        progress=progress,
        detail=detail,
    )


def task_failed(job: Job, attempt_id: str, failure: Failure) -> TaskFailed:
    return TaskFailed(
        source=SOURCE,
        subject=job.job_id,
        tenant_id=job.tenant_id,
        traceparent=job.trace_parent,
        attempt_id=attempt_id,
        failure=failure,
    )


def expiry_margin_s(expires_at: datetime | None, at: datetime) -> float | None:
    """Seconds the provider URL still had when the re-host finished (None: no expiry known)."""
    return None if expires_at is None else (expires_at - at).total_seconds()


def stored_video(
    bucket: str, keys: ObjectKeys, size: int, sha256: str, info: MediaFacts
) -> StoredVideo:
    return StoredVideo(
        bucket=bucket,
        object_key=keys.video,
        sha256=sha256,
        size_bytes=size,
        thumbnail_key=keys.thumbnail,
        duration_s=info.duration_s,
        width=info.width,
        height=info.height,
        fps=info.fps,
        codec=info.codec,
        has_audio=info.has_audio,
    )


class MediaFacts(Protocol):
    """What a probe found (`shared.media.MediaInfo` fits; that module is not imported here
    because it pulls in FFmpeg)."""

    @property
    def duration_s(self) -> float | None: ...
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def fps(self) -> float | None: ...
    @property
    def codec(self) -> str: ...
    @property
    def has_audio(self) -> bool: ...
