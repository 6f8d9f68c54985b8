"""The QC service's ports on the real servers: a whole score -> pick -> complete -> review ->
reject round on the default stores (PostgreSQL + MinIO), the outcome read from the outbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.qc.desk import ReviewDesk
from services.qc.logic import QcRules
from services.qc.pg_reviews import PgReviewStore
from services.qc.pipeline import QcPipeline
from services.qc.reviews import Refinement, ReviewStatus
from shared.blobstore import MinioBlobStore
from shared.events import CandidateStored, JobCompleted, RequestJob
from shared.jobs import JobState
from shared.pg import Pool
from shared.pg_repository import PgJobRepository
from shared.topics import Topic
from tests.conftest import random_id
from tests.fakes import pg_outbox
from tests.qc_clips import labelled_set, write_clip
from tests.qc_fakes import RecordingPublisher, job_with_candidates, small_clip_scorer

pytestmark = pytest.mark.integration


@pytest.fixture
async def review_store(pg_pool: Pool) -> PgReviewStore:
    return PgReviewStore(pg_pool)


async def test_whole_round_on_real_servers(
    pg_repo: PgJobRepository,
    minio_store: MinioBlobStore,
    review_store: PgReviewStore,
    tmp_path: Path,
) -> None:
    clips = {c.name: c for c in labelled_set()}
    paths = [write_clip(clips[n].spec, tmp_path / f"{n}.mp4") for n in ("shaky", "good", "black")]
    job_id = random_id("job")
    job = await job_with_candidates(minio_store, job_id, paths)
    await pg_repo.create(job)
    sent = RecordingPublisher()
    pipeline = QcPipeline(
        repo=pg_repo,
        blobs=minio_store,
        reviews=review_store,
        publish=sent,
        rules=QcRules(),
        score=small_clip_scorer,
    )
    for attempt in job.attempts.values():
        assert attempt.video is not None
        event = CandidateStored(
            subject=job_id, tenant_id="demo", attempt_id=attempt.attempt_id, video=attempt.video
        )
        await pipeline.on_candidate_stored(event)
        await pipeline.on_candidate_stored(event)  # redelivered
    done = await pg_repo.get(job_id)
    assert done is not None
    assert done.state is JobState.COMPLETED
    assert done.picked_attempt == "att1"
    assert sent.on(Topic.JOBS_FINISHED) == []  # not sent aside: stored with the completion
    (completed,) = [e for t, e in await pg_outbox(pg_repo.pool, job_id) if t == "jobs-finished"]
    assert isinstance(completed, JobCompleted)

    queued = await review_store.find("demo", ReviewStatus.PENDING)
    assert sorted(r.attempt_id for r in queued) == ["att0", "att2"]
    assert await review_store.find("other") == []
    assert not await review_store.add(queued[0]), "unique per (job, attempt)"

    desk = ReviewDesk(repo=pg_repo, reviews=review_store, publish=sent)
    shaky = next(r for r in queued if r.attempt_id == "att0")
    decided = await desk.decide("demo", shaky.review_id, ReviewStatus.REJECTED, "wobbly camera")
    assert decided.refinement is not None
    assert decided.refinement.request_key
    (request,) = sent.on(Topic.JOB_REQUESTS)
    assert isinstance(request, RequestJob)
    assert request.request.metadata["refines"] == job_id
    assert await review_store.decide(shaky.review_id, "demo", ReviewStatus.APPROVED, None) is None
    assert await review_store.set_refinement(shaky.review_id, Refinement()) is None
    assert await review_store.get(shaky.review_id, "other") is None
