"""The QC service on fakes: scoring stored candidates, picking, completing the job, queueing
reviews, announcing once, the sweep, and the review API (tenant isolation, decisions,
refinement requests). Candidates are real clips from the labelled set, scored for real."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from services.qc.app import wire
from services.qc.pipeline import QcPipeline
from services.qc.settings import QcSettings
from shared.events import CandidateStored, JobCompleted, JobFailed, RequestJob
from shared.jobs import AttemptState, JobRequest, JobState
from shared.runtime import ServiceProcess
from shared.topics import Topic
from tests.conftest import random_id
from tests.fakes import FakeBlobStore, FakeJobRepository
from tests.qc_clips import labelled_set, write_clip
from tests.qc_fakes import (
    FakeReviewStore,
    RecordingPublisher,
    job_with_candidates,
    small_clip_scorer,
)

CLIPS = {c.name: c for c in labelled_set()}
SETTINGS = QcSettings(api_keys="k-demo:demo,k-other:other", metrics_port=0)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("svc-clips")
    return {n: write_clip(CLIPS[n].spec, root / f"{n}.mp4") for n in ("good", "shaky", "black")}


class World:
    def __init__(self) -> None:
        self.repo, self.blobs = FakeJobRepository(), FakeBlobStore()
        self.reviews, self.sent = FakeReviewStore(), RecordingPublisher()
        self.repo.relay_to(self.sent.record)
        self.process = ServiceProcess(settings=SETTINGS, registry=CollectorRegistry())
        self.pipeline: QcPipeline = wire(
            self.process, SETTINGS, self.repo, self.blobs, self.reviews, self.sent
        )
        self.pipeline.score = small_clip_scorer
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.process.http), base_url="http://qc"
        )

    async def stored(self, job_id: str, attempt_id: str) -> None:
        job = await self.repo.get(job_id)
        assert job is not None
        video = job.attempts[attempt_id].video
        assert video is not None
        await self.pipeline.on_candidate_stored(
            CandidateStored(
                subject=job_id, tenant_id=job.tenant_id, attempt_id=attempt_id, video=video
            )
        )


@pytest.fixture
async def world() -> World:
    w = World()
    yield w
    await w.http.aclose()


async def _three_candidates(world: World, clips: dict[str, Path], **kw: object) -> str:
    job_id = random_id("job")
    job = await job_with_candidates(
        world.blobs, job_id, [clips["shaky"], clips["good"], clips["black"]], **kw
    )
    await world.repo.create(job)
    return job_id


async def test_picks_the_good_candidate_completes_the_job_and_queues_the_others(
    world: World, clips: dict[str, Path]
) -> None:
    job_id = await _three_candidates(world, clips)
    for aid in ("att0", "att1"):
        await world.stored(job_id, aid)
        job = await world.repo.get(job_id)
        assert job is not None
        assert job.state is JobState.SCORING, "must wait for every candidate"
    await world.stored(job_id, "att2")
    job = await world.repo.get(job_id)
    assert job is not None
    assert job.state is JobState.COMPLETED
    assert job.picked_attempt == "att1"
    assert job.result == job.attempts["att1"].video
    assert job.attempts["att0"].qc["soft_failures"] == ["too_shaky"]
    assert job.attempts["att2"].qc["disqualified_by"] == ["black_frames"]
    (done,) = world.sent.on(Topic.JOBS_FINISHED)
    assert isinstance(done, JobCompleted)
    assert done.attempt_id == "att1"
    assert done.subject == job_id
    queued = {r.attempt_id: r.reason for r in await world.reviews.find("demo")}
    assert set(queued) == {"att0", "att2"}
    assert queued["att2"].startswith("disqualified")
    assert queued["att0"].startswith("not picked")


async def test_redelivered_events_change_nothing_and_publish_nothing_more(
    world: World, clips: dict[str, Path]
) -> None:
    job_id = await _three_candidates(world, clips)
    for aid in ("att0", "att1", "att2"):
        await world.stored(job_id, aid)
    before = (await world.repo.get(job_id), len(world.reviews.docs))
    for aid in ("att2", "att0"):
        await world.stored(job_id, aid)
    after = await world.repo.get(job_id)
    assert after is not None
    assert before[0] is not None
    assert after.picked_attempt == before[0].picked_attempt
    assert after.state is JobState.COMPLETED
    assert len(world.sent.on(Topic.JOBS_FINISHED)) == 1
    assert len(world.reviews.docs) == before[1]


async def test_fails_the_job_when_no_candidate_qualifies(
    world: World, clips: dict[str, Path]
) -> None:
    job_id = random_id("job")
    await world.repo.create(await job_with_candidates(world.blobs, job_id, [clips["black"]]))
    await world.stored(job_id, "att0")
    job = await world.repo.get(job_id)
    assert job is not None
    assert job.state is JobState.FAILED
    assert job.failure is not None
    assert "black_frames" in job.failure.message
    (failed,) = world.sent.on(Topic.JOBS_FINISHED)
    assert isinstance(failed, JobFailed)
    assert [r.attempt_id for r in await world.reviews.find("demo")] == ["att0"]


async def test_the_sweep_finishes_a_job_whose_last_candidate_failed(
    world: World, clips: dict[str, Path]
) -> None:
    job_id = random_id("job")
    request = JobRequest(prompt="p", duration_s=2, candidates=2)
    job = await job_with_candidates(world.blobs, job_id, [clips["good"], None], request=request)
    running = job.attempts["att1"].model_copy(update={"state": AttemptState.RUNNING})
    await world.repo.create(job.model_copy(update={"attempts": {**job.attempts, "att1": running}}))
    await world.stored(job_id, "att0")
    assert (await world.repo.get(job_id)).state is JobState.SCORING  # type: ignore[union-attr]
    await world.repo.update(job_id, {"attempts.att1.state": AttemptState.FAILED})
    assert await world.pipeline.sweep_once(stale_s=3600, batch=10) == 0, "not stale yet"
    assert await world.pipeline.sweep_once(stale_s=0, batch=10) == 1
    job = await world.repo.get(job_id)
    assert job is not None
    assert job.state is JobState.COMPLETED
    assert job.picked_attempt == "att0"
    assert job.attempts["att1"].state is AttemptState.FAILED


AUTH = {"Authorization": "Bearer k-demo"}


async def test_review_api_lists_shows_and_isolates_tenants(
    world: World, clips: dict[str, Path]
) -> None:
    job_id = await _three_candidates(world, clips)
    for aid in ("att0", "att1", "att2"):
        await world.stored(job_id, aid)
    assert (await world.http.get("/v1/reviews")).status_code == 401
    listed = (await world.http.get("/v1/reviews", headers=AUTH)).json()["reviews"]
    assert len(listed) == 2
    other = await world.http.get("/v1/reviews", headers={"Authorization": "Bearer k-other"})
    assert other.json()["reviews"] == []
    review_id = listed[0]["review_id"]
    hidden = await world.http.get(
        f"/v1/reviews/{review_id}", headers={"Authorization": "Bearer k-other"}
    )
    assert hidden.status_code == 404
    detail = (await world.http.get(f"/v1/reviews/{review_id}", headers=AUTH)).json()
    assert [c["attempt_id"] for c in detail["candidates"]] == ["att0", "att1", "att2"]
    assert all(c["video_url"] and c["checks"] for c in detail["candidates"])
    assert [c["picked"] for c in detail["candidates"]] == [False, True, False]
    page = await world.http.get("/review")
    assert page.status_code == 200
    assert "Review queue" in page.text


async def test_reject_with_feedback_requests_a_refined_attempt_once(
    world: World, clips: dict[str, Path]
) -> None:
    job_id = await _three_candidates(world, clips)
    for aid in ("att0", "att1", "att2"):
        await world.stored(job_id, aid)
    shaky = next(r for r in await world.reviews.find("demo") if r.attempt_id == "att0")
    url = f"/v1/reviews/{shaky.review_id}/decision"
    assert (
        await world.http.post(url, json={"decision": "reject"}, headers=AUTH)
    ).status_code == 422
    body = {"decision": "reject", "feedback": "the camera wobbles"}
    first = await world.http.post(url, json=body, headers=AUTH)
    again = await world.http.post(url, json=body, headers=AUTH)
    assert first.status_code == again.status_code == 200
    (request,) = world.sent.on(Topic.JOB_REQUESTS)
    assert isinstance(request, RequestJob)
    assert request.request.prompt == (
        "a slow pan over a textured landscape Avoid: the camera "
        "wobbles. Fix: a steady, stabilised camera."
    )
    assert request.request.metadata["refines"] == job_id
    assert request.request.budget_usd == pytest.approx(10.0 - 1.2)
    assert request.subject == first.json()["review"]["refinement"]["request_key"]
    conflict = await world.http.post(url, json={"decision": "approve"}, headers=AUTH)
    assert conflict.status_code == 409
    job = await world.repo.get(job_id)
    assert job is not None
    assert job.attempts["att0"].qc["review"]["status"] == "rejected"


async def test_approve_records_the_verdict_without_changing_the_pick(
    world: World, clips: dict[str, Path]
) -> None:
    job_id = await _three_candidates(world, clips)
    for aid in ("att0", "att1", "att2"):
        await world.stored(job_id, aid)
    shaky = next(r for r in await world.reviews.find("demo") if r.attempt_id == "att0")
    res = await world.http.post(
        f"/v1/reviews/{shaky.review_id}/decision", json={"decision": "approve"}, headers=AUTH
    )
    assert res.status_code == 200
    assert res.json()["review"]["status"] == "approved"
    assert world.sent.on(Topic.JOB_REQUESTS) == []
    job = await world.repo.get(job_id)
    assert job is not None
    assert job.picked_attempt == "att1"


async def test_no_refinement_when_the_budget_is_spent(world: World, clips: dict[str, Path]) -> None:
    request = JobRequest(prompt="p", duration_s=2, candidates=3, budget_usd=1.2)
    job_id = await _three_candidates(world, clips, request=request)
    for aid in ("att0", "att1", "att2"):
        await world.stored(job_id, aid)
    review = next(r for r in await world.reviews.find("demo") if r.attempt_id == "att2")
    res = await world.http.post(
        f"/v1/reviews/{review.review_id}/decision",
        json={"decision": "reject", "feedback": "too dark"},
        headers=AUTH,
    )
    assert res.status_code == 200
    assert "budget exhausted" in res.json()["review"]["refinement"]["not_requested"]
    assert world.sent.on(Topic.JOB_REQUESTS) == []


async def test_rejections_of_one_job_never_grant_more_than_its_budget(
    world: World, clips: dict[str, Path]
) -> None:
    job_id = await _three_candidates(world, clips)
    for aid in ("att0", "att1", "att2"):
        await world.stored(job_id, aid)
    for review in await world.reviews.find("demo"):
        if review.attempt_id == "att1":
            continue  # the pick is not queued for review
        res = await world.http.post(
            f"/v1/reviews/{review.review_id}/decision",
            json={"decision": "reject", "feedback": "the camera wobbles"},
            headers=AUTH,
        )
        assert res.status_code == 200
    job = await world.repo.get(job_id)
    assert job is not None
    budget = job.request.budget_usd
    assert budget is not None
    granted = [r.request.budget_usd or 0.0 for r in world.sent.on(Topic.JOB_REQUESTS)]
    assert len(granted) == 1  # the first rejection got what was left; the second got nothing
    assert job.spent_usd + sum(granted) <= budget + 1e-9
    assert job.reserved_usd == pytest.approx(sum(granted))
