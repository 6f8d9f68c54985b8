"""on_task_succeeded on the fakes: assertions on job state, stored objects and published events."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from services.storage import logic
from services.storage.handlers import on_task_succeeded
from shared.events import CandidateStored, JobCompleted, JobUpdated, TaskFailed
from shared.jobs import AttemptState, JobState
from shared.messaging import PermanentError, TransientError
from shared.providers.errors import FailureClass, ProviderRejected, ProviderUnavailable
from shared.topics import Topic
from tests.fakes import FakeBlobStore, FakeJobRepository
from tests.unit.test_media import make_mp4
from tests.unit.test_storage_fakes import FakeProvider, make_context, make_job, succeeded


@pytest.fixture(scope="module")
def mp4(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    buffer = io.BytesIO()
    make_mp4(buffer, seconds=2.0, fps=12, size=(160, 96), audio=True)
    return buffer.getvalue()


@pytest.fixture
def repo() -> FakeJobRepository:
    return FakeJobRepository()


@pytest.fixture
def blob() -> FakeBlobStore:
    return FakeBlobStore("videos-test")


async def test_stores_a_single_candidate_and_completes_the_job(
    repo: FakeJobRepository, blob: FakeBlobStore, mp4: bytes
) -> None:
    job = make_job()
    await repo.create(job)
    provider = FakeProvider(data=mp4)
    registry = CollectorRegistry()
    ctx, published = make_context(repo, blob, provider, registry)

    await on_task_succeeded(ctx, succeeded(job))

    keys = logic.object_keys("tenant-a", job.job_id, "a1")
    assert blob.objects[keys.video][0] == mp4
    assert blob.objects[keys.thumbnail][0][:2] == b"\xff\xd8"
    done = await repo.get(job.job_id)
    assert done is not None
    assert done.state is JobState.COMPLETED
    assert done.picked_attempt == "a1"
    assert done.progress == 1.0
    video = done.attempts["a1"].video
    assert done.attempts["a1"].state is AttemptState.STORED
    assert video is not None
    assert done.result == video
    assert video.object_key == keys.video
    assert video.thumbnail_key == keys.thumbnail
    assert video.sha256 == hashlib.sha256(mp4).hexdigest()
    assert video.size_bytes == len(mp4)
    assert (video.width, video.height, video.codec, video.has_audio) == (160, 96, "h264", True)
    [completed] = published.on(Topic.JOBS_FINISHED)
    assert isinstance(completed, JobCompleted)
    assert completed.video == video
    assert completed.cost_usd == 0.8
    assert completed.metadata == {"order": "42"}
    assert completed.provider == "openai"
    states = [e.state for e in published.on(Topic.JOB_UPDATES) if isinstance(e, JobUpdated)]
    assert states == [JobState.STORING, JobState.COMPLETED]
    assert provider.deleted == [job.attempts["a1"].task.task_id]  # type: ignore[union-attr]
    rehosted = registry.get_sample_value("reelforge_rehost_bytes_total", {"provider": "openai"})
    assert rehosted == len(mp4)


async def test_multi_candidate_job_gets_a_candidate_stored_event_and_waits_for_qc(
    repo: FakeJobRepository, blob: FakeBlobStore, mp4: bytes
) -> None:
    job = make_job(candidates=2)
    await repo.create(job)
    ctx, published = make_context(repo, blob, FakeProvider(data=mp4))

    await on_task_succeeded(ctx, succeeded(job))

    stored = await repo.get(job.job_id)
    assert stored is not None
    assert stored.state is JobState.STORING
    assert stored.attempts["a1"].state is AttemptState.STORED
    [candidate] = published.on(Topic.CANDIDATES_STORED)
    assert isinstance(candidate, CandidateStored)
    assert candidate.attempt_id == "a1"
    assert published.on(Topic.JOBS_FINISHED) == []


async def test_redelivery_after_completion_re_emits_the_same_completion_without_downloading(
    repo: FakeJobRepository, blob: FakeBlobStore, mp4: bytes
) -> None:
    job = make_job()
    await repo.create(job)
    provider = FakeProvider(data=mp4)
    ctx, published = make_context(repo, blob, provider)
    await on_task_succeeded(ctx, succeeded(job))
    provider.error = ProviderRejected(FailureClass.RESULT_EXPIRED, "gone")  # a new copy would fail

    await on_task_succeeded(ctx, succeeded(job))

    first, second = published.on(Topic.JOBS_FINISHED)
    assert first.id == second.id
    assert first.model_dump(exclude={"time"}) == second.model_dump(exclude={"time"})
    done = await repo.get(job.job_id)
    assert done is not None
    assert done.state is JobState.COMPLETED


async def test_crash_between_store_and_completion_is_finished_by_the_replay(
    repo: FakeJobRepository, blob: FakeBlobStore, mp4: bytes
) -> None:
    job = make_job()
    await repo.create(job)
    ctx, published = make_context(repo, blob, FakeProvider(data=mp4))
    await on_task_succeeded(ctx, succeeded(job))
    video = (await repo.get(job.job_id)).attempts["a1"].video  # type: ignore[union-attr]
    # rewind to "stored but not completed", as if the process died before the transition
    repo.docs[job.job_id]["state"] = JobState.STORING.value
    published.sent.clear()

    await on_task_succeeded(ctx, succeeded(job))

    done = await repo.get(job.job_id)
    assert done is not None
    assert done.state is JobState.COMPLETED
    assert done.result == video
    assert len(published.on(Topic.JOBS_FINISHED)) == 1


async def test_cancelled_job_stores_nothing_and_frees_the_provider_copy(
    repo: FakeJobRepository, blob: FakeBlobStore, mp4: bytes
) -> None:
    job = make_job(state=JobState.CANCELLED)
    await repo.create(job)
    provider = FakeProvider(data=mp4)
    ctx, published = make_context(repo, blob, provider)

    await on_task_succeeded(ctx, succeeded(job))

    assert blob.objects == {}
    assert published.sent == []
    assert len(provider.deleted) == 1


async def test_job_cancelled_during_the_copy_keeps_no_objects(
    repo: FakeJobRepository, blob: FakeBlobStore, mp4: bytes
) -> None:
    job = make_job()
    await repo.create(job)

    async def cancel() -> None:
        await repo.transition(job.job_id, JobState.CANCELLED)

    ctx, published = make_context(repo, blob, FakeProvider(data=mp4, on_chunk=cancel))

    await on_task_succeeded(ctx, succeeded(job))

    assert blob.objects == {}
    assert published.on(Topic.JOBS_FINISHED) == []
    ended = await repo.get(job.job_id)
    assert ended is not None
    assert ended.state is JobState.CANCELLED


@pytest.mark.parametrize("failure_class", [FailureClass.RESULT_EXPIRED, FailureClass.NOT_FOUND])
async def test_expired_result_is_reported_as_a_failed_task_for_the_dispatcher(
    repo: FakeJobRepository, blob: FakeBlobStore, failure_class: FailureClass
) -> None:
    job = make_job()
    await repo.create(job)
    registry = CollectorRegistry()
    provider = FakeProvider(error=ProviderRejected(failure_class, "HTTP 410", provider_code="410"))
    ctx, published = make_context(repo, blob, provider, registry)

    await on_task_succeeded(ctx, succeeded(job))

    [failed] = published.on(Topic.TASKS_FAILED)
    assert isinstance(failed, TaskFailed)
    assert failed.attempt_id == "a1"
    assert failed.failure.failure_class is failure_class
    misses = registry.get_sample_value("reelforge_url_expiry_misses_total", {"provider": "openai"})
    assert misses == 1
    assert blob.objects == {}


async def test_provider_outage_during_download_is_transient(
    repo: FakeJobRepository, blob: FakeBlobStore
) -> None:
    job = make_job()
    await repo.create(job)
    outage = ProviderUnavailable(FailureClass.PROVIDER_ERROR, "HTTP 503")
    ctx, published = make_context(repo, blob, FakeProvider(error=outage))

    with pytest.raises(TransientError):
        await on_task_succeeded(ctx, succeeded(job))
    assert published.on(Topic.TASKS_FAILED) == []


async def test_bytes_that_are_not_a_video_fail_the_task_and_are_removed(
    repo: FakeJobRepository, blob: FakeBlobStore
) -> None:
    job = make_job()
    await repo.create(job)
    ctx, published = make_context(repo, blob, FakeProvider(data=b"<html>oops</html>" * 50))

    await on_task_succeeded(ctx, succeeded(job))

    [failed] = published.on(Topic.TASKS_FAILED)
    assert failed.failure.failure_class is FailureClass.GENERATION_FAILED  # type: ignore[attr-defined]
    assert blob.objects == {}


async def test_unknown_job_is_a_permanent_error(
    repo: FakeJobRepository, blob: FakeBlobStore
) -> None:
    ctx, _ = make_context(repo, blob, FakeProvider())
    with pytest.raises(PermanentError, match="does not exist"):
        await on_task_succeeded(ctx, succeeded(make_job()))


async def test_job_not_submitted_yet_is_retried_later(
    repo: FakeJobRepository, blob: FakeBlobStore, mp4: bytes
) -> None:
    job = make_job(state=JobState.QUEUED)
    await repo.create(job)
    ctx, _ = make_context(repo, blob, FakeProvider(data=mp4))
    with pytest.raises(TransientError):
        await on_task_succeeded(ctx, succeeded(job))


async def test_a_result_that_beats_the_dispatchers_running_mark_is_stored(
    repo: FakeJobRepository, blob: FakeBlobStore, mp4: bytes
) -> None:
    job = make_job(state=JobState.SUBMITTING)
    await repo.create(job)
    ctx, _ = make_context(repo, blob, FakeProvider(data=mp4))
    await on_task_succeeded(ctx, succeeded(job))
    stored = await repo.get(job.job_id)
    assert stored is not None and stored.state is JobState.COMPLETED


async def test_provider_delete_failure_never_fails_the_message(
    repo: FakeJobRepository, blob: FakeBlobStore, mp4: bytes, tmp_path: Path
) -> None:
    job = make_job()
    await repo.create(job)
    provider = FakeProvider(data=mp4)

    async def broken_delete(ref: object) -> bool:
        raise ProviderUnavailable(FailureClass.PROVIDER_ERROR, "HTTP 500")

    provider.delete = broken_delete  # type: ignore[method-assign]
    registry = CollectorRegistry()
    ctx, published = make_context(repo, blob, provider, registry)

    await on_task_succeeded(ctx, succeeded(job))

    assert len(published.on(Topic.JOBS_FINISHED)) == 1
    labels = {"provider": "openai", "operation": "delete", "outcome": "error"}
    assert registry.get_sample_value("reelforge_provider_requests_total", labels) == 1
