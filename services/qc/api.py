"""The review API and page, mounted on the service's HTTP app.

    GET  /v1/reviews                    the tenant's queue (?status=pending|approved|rejected|all)
    GET  /v1/reviews/{id}               one review with every candidate of its job, side by side
    POST /v1/reviews/{id}/decision      {"decision": "approve"|"reject", "feedback": "..."}
    GET  /review                        the page (plain HTML + JS, no build step)

Every /v1 call needs `Authorization: Bearer <api key>`; the key maps to a tenant exactly as at
intake (`API_KEYS`, the same `TenantDirectory`), and another tenant's review answers 404, never 403.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Query
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from services.qc.desk import DecisionConflict, ReviewDesk, ReviewNotFound
from services.qc.reviews import Review, ReviewStatus, ReviewStore
from shared.blobstore import BlobStore
from shared.jobs import Job
from shared.limits import IdParam
from shared.repository import JobRepository
from shared.tenants import TenantDirectory

PAGE = Path(__file__).with_name("review_page.html")


class Decision(BaseModel):
    decision: Literal["approve", "reject"]
    feedback: str | None = Field(None, max_length=2000)


def build_router(
    desk: ReviewDesk,
    reviews: ReviewStore,
    repo: JobRepository,
    blobs: BlobStore,
    tenants: TenantDirectory,
    presign_expiry_s: int = 3600,
) -> APIRouter:
    router = APIRouter()

    def tenant(authorization: Annotated[str | None, Header()] = None) -> str:
        scheme, _, key = (authorization or "").partition(" ")
        found = tenants.tenant_for(key.strip()) if scheme.lower() == "bearer" else None
        if found is None:
            raise HTTPException(
                401, "missing or unknown API key", headers={"WWW-Authenticate": "Bearer"}
            )
        return found

    # A default, not an `Annotated` alias: annotations are strings here (PEP 563) and FastAPI
    # resolves them in module globals, where a per-router alias does not exist.
    auth = Depends(tenant)

    @router.get("/review", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    @router.get("/v1/reviews")
    async def list_reviews(
        status: Annotated[str, Query()] = "pending",
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        tenant_id: str = auth,
    ) -> dict[str, Any]:
        wanted = None if status == "all" else _status(status)
        found = await reviews.find(tenant_id, wanted, limit)
        return {"reviews": [_summary(r) for r in found]}

    @router.get("/v1/reviews/{review_id}")
    async def get_review(review_id: IdParam, tenant_id: str = auth) -> dict[str, Any]:
        review = await reviews.get(review_id, tenant_id)
        if review is None:
            raise HTTPException(404, "no such review")
        return await _detail(review)

    @router.post("/v1/reviews/{review_id}/decision")
    async def decide(review_id: IdParam, body: Decision, tenant_id: str = auth) -> dict[str, Any]:
        status = ReviewStatus.APPROVED if body.decision == "approve" else ReviewStatus.REJECTED
        try:
            review = await desk.decide(tenant_id, review_id, status, body.feedback)
        except ReviewNotFound as exc:
            raise HTTPException(404, "no such review") from exc
        except DecisionConflict as exc:
            raise HTTPException(409, str(exc)) from exc
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        return await _detail(review)

    async def _detail(review: Review) -> dict[str, Any]:
        job = await repo.get(review.job_id, review.tenant_id)
        others = {
            r.attempt_id: r for r in await reviews.list_for_job(review.job_id, review.tenant_id)
        }
        return {
            "review": {
                **_summary(review),
                "feedback": review.feedback,
                "refinement": await _refinement(review),
            },
            "job": _job(job) if job else None,
            "candidates": await _candidates(job, others) if job else [],
        }

    async def _refinement(review: Review) -> dict[str, Any] | None:
        if review.refinement is None:
            return None
        out = review.refinement.model_dump(mode="json")
        key = review.refinement.request_key
        new_job = await repo.find_by_idempotency_key(review.tenant_id, key) if key else None
        out["job"] = {"job_id": new_job.job_id, "state": new_job.state.value} if new_job else None
        return out

    async def _candidates(job: Job, others: dict[str, Review]) -> list[dict[str, Any]]:
        out = []
        for a in sorted(job.attempts.values(), key=lambda a: (a.candidate, a.attempt_id)):
            if a.video is None or not a.qc:
                continue
            other = others.get(a.attempt_id)
            out.append(
                {
                    "attempt_id": a.attempt_id,
                    "candidate": a.candidate,
                    "provider": a.provider,
                    "model": a.model,
                    "picked": a.attempt_id == job.picked_attempt,
                    "video_url": await blobs.presigned_get(a.video.object_key, presign_expiry_s),
                    "score": a.qc.get("score"),
                    "checks": a.qc.get("checks", []),
                    "review_id": other.review_id if other else None,
                    "review_status": other.status.value if other else None,
                }
            )
        return out

    return router


def _status(value: str) -> ReviewStatus:
    try:
        return ReviewStatus(value)
    except ValueError as exc:
        raise HTTPException(422, "status is pending, approved, rejected or all") from exc


def _summary(r: Review) -> dict[str, Any]:
    failed = [c["name"] for c in r.qc.get("checks", []) if c.get("status") == "fail"]
    return {
        "review_id": r.review_id,
        "job_id": r.job_id,
        "attempt_id": r.attempt_id,
        "candidate": r.candidate,
        "provider": r.provider,
        "model": r.model,
        "picked": r.picked,
        "reason": r.reason,
        "status": r.status.value,
        "prompt": r.prompt,
        "score": r.qc.get("score"),
        "failed_checks": failed,
        "created_at": r.created_at.isoformat(),
        "decided_at": r.decided_at.isoformat() if r.decided_at else None,
    }


def _job(job: Job) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "state": job.state.value,
        "prompt": job.request.prompt,
        "picked_attempt": job.picked_attempt,
        "candidates": job.request.candidates,
        "budget_usd": job.request.budget_usd,
        "spent_usd": job.spent_usd,
    }
