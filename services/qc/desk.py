"""Human decisions on the review queue, through ports only.

* approve: the review is marked approved and the verdict is copied to the candidate's qc
  (`attempts.<id>.qc.review`). The job's pick does not change: its outcome is already
  published, and a reviewer approving an alternative records that it is acceptable.
* reject (feedback required): the review is marked rejected, the verdict is copied likewise,
  and a new attempt is requested: a `RequestJob` on `job-requests` with the refined prompt
  (`logic.refine_prompt`), linked through `metadata.refines = <job id>`, its budget capped at
  what the original job has left after its spend and the refinements granted before
  (reserved on the job in `reserved_usd`, so they never add up past the cap), and
  idempotency key `refine-<review id>` (one new job per rejected review, however often the
  decision is re-sent).

Deciding again with the same decision is idempotent (and completes a refinement that a crash
interrupted); deciding the opposite way is a conflict.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from services.qc.logic import (
    BudgetExhausted,
    CandidateReport,
    refine_prompt,
    refined_request,
    refinement_key,
)
from services.qc.pipeline import Publish
from services.qc.reviews import Refinement, Review, ReviewStatus, ReviewStore
from shared.events import RequestJob
from shared.jobs import Job, JobRequest, now
from shared.repository import JobRepository
from shared.topics import Topic

log = logging.getLogger(__name__)
_RESERVE_TRIES = 5


class ReviewNotFound(LookupError):
    pass


class DecisionConflict(ValueError):
    pass


@dataclass
class ReviewDesk:
    repo: JobRepository
    reviews: ReviewStore
    publish: Publish

    async def decide(
        self, tenant_id: str, review_id: str, status: ReviewStatus, feedback: str | None
    ) -> Review:
        if status is ReviewStatus.PENDING:
            raise ValueError("a decision is approve or reject")
        feedback = " ".join((feedback or "").split()) or None
        if status is ReviewStatus.REJECTED and not feedback:
            raise ValueError("a rejection needs written feedback")
        review = await self.reviews.get(review_id, tenant_id)
        if review is None:
            raise ReviewNotFound(review_id)
        if review.status is ReviewStatus.PENDING:
            review = await self.reviews.decide(review_id, tenant_id, status, feedback) or review
            review = await self.reviews.get(review_id, tenant_id) or review
        if review.status is not status:
            raise DecisionConflict(f"review {review_id} is already {review.status.value}")
        await self.repo.update(
            review.job_id,
            {
                f"attempts.{review.attempt_id}.qc.review": {
                    "status": review.status.value,
                    "feedback": review.feedback,
                    "at": review.decided_at,
                }
            },
        )
        if status is ReviewStatus.REJECTED and review.refinement is None:
            review = await self._refine(review)
        return review

    async def _refine(self, review: Review) -> Review:
        job = await self.repo.get(review.job_id, review.tenant_id)
        if job is None:
            raise ReviewNotFound(review.job_id)
        failed = CandidateReport.model_validate(
            {k: v for k, v in review.qc.items() if k in CandidateReport.model_fields}
        ).failed()
        prompt = refine_prompt(job.request.prompt, review.feedback or "", failed)
        key = refinement_key(review.review_id)
        try:
            request = await self._reserve(job, review, prompt)
        except BudgetExhausted as exc:
            refinement = Refinement(prompt=prompt, not_requested=f"budget exhausted: {exc}")
        else:
            await self.publish(
                Topic.JOB_REQUESTS,
                RequestJob(
                    subject=key,
                    tenant_id=job.tenant_id,
                    source="qc",
                    traceparent=job.trace_parent,
                    request=request,
                ),
            )
            refinement = Refinement(request_key=key, prompt=prompt, requested_at=now())
            log.info(
                "review %s rejected: requested %s refining %s", review.review_id, key, job.job_id
            )
        updated = await self.reviews.set_refinement(review.review_id, refinement)
        return updated or review

    async def _reserve(self, job: Job, review: Review, prompt: str) -> JobRequest:
        """Grant the refinement what is left of the budget and set it aside on the original
        job in the same conditional write (on the version read), so concurrent rejections
        never grant the same dollars twice. A crash between this and the request leaves the
        grant reserved: spend can only be under the cap, never over it."""
        for _ in range(_RESERVE_TRIES):
            request = refined_request(
                job.request,
                prompt=prompt,
                job_id=job.job_id,
                review_id=review.review_id,
                spent_usd=job.spent_usd,
                reserved_usd=job.reserved_usd,
            )
            if request.budget_usd is None:
                return request
            held = await self.repo.update(
                job.job_id,
                {},
                expected_version=job.version,
                inc={"reserved_usd": request.budget_usd},
            )
            if held is not None:
                return request
            fresh = await self.repo.get(job.job_id)
            if fresh is None:
                raise ReviewNotFound(job.job_id)
            job = fresh
        raise BudgetExhausted(f"the job kept changing; no grant after {_RESERVE_TRIES} tries")
