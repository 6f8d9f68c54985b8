"""The human review queue: the `Review` record and the `ReviewStore` port.

Contract (the fake in `tests/qc_fakes.py` and `MongoReviewStore` keep it):

* `add` inserts a review unless one exists for the same (job, attempt): a replayed pick adds
  nothing and never resets a decision. It returns True when it inserted.
* `get`, `list` and `list_for_job` only ever return the given tenant's reviews.
* `decide` moves a *pending* review to approved or rejected (conditional update) and returns
  it; None when it was not pending (already decided: the caller re-reads and compares).
* `set_refinement` records the new attempt a rejection produced, once; None if already set.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from shared.jobs import StoredVideo, now


class ReviewStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class Refinement(BaseModel):
    """What a rejection produced: a `RequestJob` keyed `request_key`, or why not."""

    model_config = ConfigDict(frozen=True)

    request_key: str | None = None
    prompt: str | None = None
    requested_at: datetime | None = None
    not_requested: str | None = None


class Review(BaseModel):
    model_config = ConfigDict(frozen=True)

    review_id: str
    job_id: str
    tenant_id: str
    attempt_id: str
    candidate: int
    provider: str
    model: str
    picked: bool
    reason: str
    prompt: str
    video: StoredVideo
    qc: dict[str, Any]
    status: ReviewStatus = ReviewStatus.PENDING
    feedback: str | None = None
    created_at: datetime
    decided_at: datetime | None = None
    refinement: Refinement | None = None


def review_id_for(job_id: str, attempt_id: str) -> str:
    """Deterministic, so a replayed pick finds the review it already made."""
    return "rev_" + hashlib.sha256(f"{job_id}\x00{attempt_id}".encode()).hexdigest()[:24]


class ReviewStore(Protocol):
    async def ensure_indexes(self) -> None: ...

    async def add(self, review: Review) -> bool: ...

    async def get(self, review_id: str, tenant_id: str) -> Review | None: ...

    async def find(
        self, tenant_id: str, status: ReviewStatus | None = None, limit: int = 100
    ) -> list[Review]: ...

    async def list_for_job(self, job_id: str, tenant_id: str) -> list[Review]: ...

    async def decide(
        self, review_id: str, tenant_id: str, status: ReviewStatus, feedback: str | None
    ) -> Review | None: ...

    async def set_refinement(self, review_id: str, refinement: Refinement) -> Review | None: ...


def decided_changes(status: ReviewStatus, feedback: str | None) -> dict[str, Any]:
    return {"status": status.value, "feedback": feedback, "decided_at": now()}
