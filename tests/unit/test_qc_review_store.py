"""The ReviewStore contract (`services.qc.reviews`), as plain async functions taking a store,
run here on `FakeReviewStore`; `tests/integration/test_qc_reviews_pg.py` runs the same
functions on `PgReviewStore` and `MongoReviewStore`.

Timestamps are whole seconds so that a server that keeps milliseconds (MongoDB) returns
exactly what was stored."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from services.qc.reviews import Refinement, Review, ReviewStatus, ReviewStore, review_id_for
from shared.jobs import StoredVideo, now
from tests.qc_fakes import FakeReviewStore


def _second(at: datetime | None = None) -> datetime:
    return (at or now()).replace(microsecond=0)


def make_review(
    job_id: str | None = None,
    attempt_id: str = "att0",
    *,
    tenant_id: str = "tenant-a",
    candidate: int = 0,
    created_at: datetime | None = None,
) -> Review:
    job_id = job_id or "job_" + secrets.token_hex(6)
    return Review(
        review_id=review_id_for(job_id, attempt_id),
        job_id=job_id,
        tenant_id=tenant_id,
        attempt_id=attempt_id,
        candidate=candidate,
        provider="openai",
        model="sora-2",
        picked=False,
        reason="below the score of the pick",
        prompt="a slow pan over a textured landscape",
        video=StoredVideo(
            bucket="videos",
            object_key=f"videos/{job_id}/{attempt_id}.mp4",
            sha256="ab" * 32,
            size_bytes=12345,
            width=320,
            height=180,
            fps=24.0,
        ),
        qc={
            "score": 0.75,
            "checks": [{"name": "black_frames", "status": "pass", "measured": 0.0}],
            "disqualified_by": [],
        },
        created_at=_second(created_at),
    )


# ---- the contract -------------------------------------------------------------------------


async def contract_add_round_trips_and_is_once_per_job_attempt(store: ReviewStore) -> None:
    review = make_review()
    assert await store.add(review) is True
    assert await store.get(review.review_id, review.tenant_id) == review
    assert await store.add(review) is False
    # Same (job, attempt) under another id: still a duplicate.
    assert await store.add(review.model_copy(update={"review_id": "rev_other"})) is False
    assert await store.get("rev_other", review.tenant_id) is None
    # A replayed pick never resets a decision.
    decided = await store.decide(review.review_id, review.tenant_id, ReviewStatus.APPROVED, "ok")
    assert decided is not None
    assert await store.add(review) is False
    again = await store.get(review.review_id, review.tenant_id)
    assert again is not None
    assert again.status is ReviewStatus.APPROVED


async def contract_reads_and_decisions_are_tenant_scoped(store: ReviewStore) -> None:
    mine = make_review(tenant_id="tenant-a")
    theirs = make_review(tenant_id="tenant-b")
    assert await store.add(mine)
    assert await store.add(theirs)
    assert await store.get(mine.review_id, "tenant-b") is None
    assert [r.review_id for r in await store.find("tenant-b")] == [theirs.review_id]
    assert await store.find("tenant-nobody") == []
    assert await store.list_for_job(mine.job_id, "tenant-b") == []
    assert await store.decide(mine.review_id, "tenant-b", ReviewStatus.REJECTED, "no") is None
    still = await store.get(mine.review_id, "tenant-a")
    assert still is not None
    assert still.status is ReviewStatus.PENDING
    assert still.feedback is None


async def contract_find_is_newest_first_by_status_and_limited(store: ReviewStore) -> None:
    tenant = "tenant-" + secrets.token_hex(4)
    t0 = _second()
    made = [make_review(tenant_id=tenant, created_at=t0 + timedelta(seconds=n)) for n in range(4)]
    for review in made:
        assert await store.add(review)
    newest_first = [r.review_id for r in reversed(made)]
    assert [r.review_id for r in await store.find(tenant)] == newest_first
    assert [r.review_id for r in await store.find(tenant, limit=2)] == newest_first[:2]
    await store.decide(made[1].review_id, tenant, ReviewStatus.REJECTED, "blurry")
    pending = await store.find(tenant, ReviewStatus.PENDING)
    assert [r.review_id for r in pending] == [
        made[3].review_id,
        made[2].review_id,
        made[0].review_id,
    ]
    rejected = await store.find(tenant, ReviewStatus.REJECTED)
    assert [(r.review_id, r.feedback) for r in rejected] == [(made[1].review_id, "blurry")]
    assert await store.find(tenant, ReviewStatus.APPROVED) == []


async def contract_list_for_job_is_by_candidate(store: ReviewStore) -> None:
    job_id = "job_" + secrets.token_hex(6)
    for n in (2, 0, 1):
        assert await store.add(make_review(job_id, f"att{n}", candidate=n))
    assert await store.add(make_review(attempt_id="att9", candidate=9))  # another job
    listed = await store.list_for_job(job_id, "tenant-a")
    assert [(r.candidate, r.attempt_id) for r in listed] == [(0, "att0"), (1, "att1"), (2, "att2")]


async def contract_decide_only_moves_pending_reviews(store: ReviewStore) -> None:
    review = make_review()
    await store.add(review)
    before = now()
    decided = await store.decide(
        review.review_id, review.tenant_id, ReviewStatus.REJECTED, "wobbly camera"
    )
    assert decided is not None
    assert decided.status is ReviewStatus.REJECTED
    assert decided.feedback == "wobbly camera"
    assert decided.decided_at is not None
    assert decided.decided_at >= before - timedelta(seconds=1)
    assert decided.video == review.video
    assert decided.qc == review.qc
    assert (
        await store.decide(review.review_id, review.tenant_id, ReviewStatus.APPROVED, None) is None
    )
    stored = await store.get(review.review_id, review.tenant_id)
    assert stored is not None
    assert (stored.status, stored.feedback) == (ReviewStatus.REJECTED, "wobbly camera")
    assert await store.decide("rev_missing", review.tenant_id, ReviewStatus.APPROVED, None) is None


async def contract_set_refinement_happens_once(store: ReviewStore) -> None:
    review = make_review()
    await store.add(review)
    first = Refinement(request_key="refine-1", prompt="steadier", requested_at=_second())
    updated = await store.set_refinement(review.review_id, first)
    assert updated is not None
    assert updated.refinement == first
    assert await store.set_refinement(review.review_id, Refinement(not_requested="x")) is None
    stored = await store.get(review.review_id, review.tenant_id)
    assert stored is not None
    assert stored.refinement == first
    assert stored.status is ReviewStatus.PENDING
    assert await store.set_refinement("rev_missing", first) is None


REVIEW_CONTRACT: list[Callable[[ReviewStore], Awaitable[None]]] = [
    contract_add_round_trips_and_is_once_per_job_attempt,
    contract_reads_and_decisions_are_tenant_scoped,
    contract_find_is_newest_first_by_status_and_limited,
    contract_list_for_job_is_by_candidate,
    contract_decide_only_moves_pending_reviews,
    contract_set_refinement_happens_once,
]


async def test_fake_review_store_meets_the_contract() -> None:
    for check in REVIEW_CONTRACT:
        await check(FakeReviewStore())
