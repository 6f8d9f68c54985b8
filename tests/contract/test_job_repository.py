"""One behaviour suite for the JobRepository port, run on the fake and on the real server."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from shared.jobs import Attempt, AttemptState, Job, JobRequest, JobState, new_job_id, now
from shared.providers.base import TaskRef
from shared.repository import JobRepository
from tests.conftest import random_id
from tests.fakes import FakeJobRepository


def make_job(tenant: str = "t1", key: str | None = None, prompt: str = "a cat") -> Job:
    request = JobRequest(prompt=prompt)
    return Job(
        job_id=new_job_id(),
        tenant_id=tenant,
        request=request,
        idempotency_key=key,
        fingerprint=request.fingerprint(),
    )


class JobRepositoryContract:
    @pytest.fixture
    def repo(self) -> JobRepository:
        raise NotImplementedError

    async def test_creates_and_reads_back_a_job(self, repo: JobRepository) -> None:
        job = make_job()
        created = await repo.create(job)
        assert created.created
        loaded = await repo.get(job.job_id)
        assert loaded is not None
        assert loaded.request == job.request
        assert loaded.state is JobState.ACCEPTED

    async def test_same_idempotency_key_returns_the_existing_job(self, repo: JobRepository) -> None:
        key = random_id("idem")
        first = await repo.create(make_job(key=key))
        second = await repo.create(make_job(key=key, prompt="another"))
        assert first.created and not second.created
        assert second.job.job_id == first.job.job_id
        assert second.job.request.prompt == "a cat"

    async def test_idempotency_keys_are_per_tenant(self, repo: JobRepository) -> None:
        key = random_id("idem")
        a = await repo.create(make_job(tenant="ta", key=key))
        b = await repo.create(make_job(tenant="tb", key=key))
        assert a.created and b.created

    async def test_concurrent_creates_with_one_key_make_one_job(self, repo: JobRepository) -> None:
        key = random_id("idem")
        results = await asyncio.gather(*(repo.create(make_job(key=key)) for _ in range(5)))
        assert sum(r.created for r in results) == 1
        assert len({r.job.job_id for r in results}) == 1

    async def test_other_tenant_cannot_read_a_job(self, repo: JobRepository) -> None:
        job = make_job(tenant="owner")
        await repo.create(job)
        assert await repo.get(job.job_id, tenant_id="intruder") is None
        assert await repo.get(job.job_id, tenant_id="owner") is not None

    async def test_legal_transition_applies_changes_and_bumps_version(
        self, repo: JobRepository
    ) -> None:
        job = make_job()
        await repo.create(job)
        moved = await repo.transition(job.job_id, JobState.QUEUED, {"queue_position": 3})
        assert moved is not None
        assert moved.state is JobState.QUEUED
        assert moved.queue_position == 3
        assert moved.version == job.version + 1

    async def test_illegal_or_replayed_transition_is_a_no_op(self, repo: JobRepository) -> None:
        job = make_job()
        await repo.create(job)
        assert await repo.transition(job.job_id, JobState.COMPLETED) is None
        assert await repo.transition(job.job_id, JobState.CANCELLED) is not None
        assert await repo.transition(job.job_id, JobState.CANCELLED) is None
        loaded = await repo.get(job.job_id)
        assert loaded is not None and loaded.state is JobState.CANCELLED

    async def test_optimistic_version_rejects_a_stale_writer(self, repo: JobRepository) -> None:
        job = make_job()
        await repo.create(job)
        assert await repo.update(job.job_id, {"progress": 0.5}, expected_version=0) is not None
        assert await repo.update(job.job_id, {"progress": 0.9}, expected_version=0) is None
        loaded = await repo.get(job.job_id)
        assert loaded is not None and loaded.progress == 0.5

    async def test_an_attempt_condition_stops_a_late_writer(self, repo: JobRepository) -> None:
        job = make_job()
        await repo.create(job)
        await repo.update(
            job.job_id,
            {"attempts.a1": Attempt(attempt_id="a1", provider="kling", model="kling-v2")},
        )
        running = (AttemptState.SUBMITTED, AttemptState.RUNNING)
        stored = await repo.update(job.job_id, {"attempts.a1.state": AttemptState.STORED})
        assert stored is not None and stored.attempts["a1"].state is AttemptState.STORED
        late = await repo.update(
            job.job_id, {"attempts.a1.state": AttemptState.RUNNING}, attempt_in=("a1", running)
        )
        assert late is None
        missing = await repo.update(job.job_id, {"progress": 0.5}, attempt_in=("a9", running))
        assert missing is None
        loaded = await repo.get(job.job_id)
        assert loaded is not None and loaded.attempts["a1"].state is AttemptState.STORED
        assert loaded.progress != 0.5
        fits = await repo.update(
            job.job_id,
            {"progress": 0.5},
            attempt_in=("a1", (AttemptState.STORED,)),
            expected_states=[JobState.ACCEPTED],
        )
        assert fits is not None and fits.progress == 0.5

    async def test_attempts_are_updated_by_dotted_path_and_found_by_task(
        self, repo: JobRepository
    ) -> None:
        job = make_job()
        await repo.create(job)
        attempt = Attempt(attempt_id="a1", provider="runway", model="gen4.5")
        await repo.update(job.job_id, {"attempts.a1": attempt})
        ref = TaskRef(provider="runway", model="gen4.5", task_id=random_id("task"))
        updated = await repo.update(
            job.job_id,
            {"attempts.a1.task": ref, "attempts.a1.state": "submitted"},
            index_task=("runway", ref.task_id),
        )
        assert updated is not None
        assert updated.attempts["a1"].task == ref
        found = await repo.find_by_task("runway", ref.task_id)
        assert found is not None and found.job_id == job.job_id
        assert await repo.find_by_task("kling", ref.task_id) is None

    async def test_lists_a_tenants_jobs_newest_first_in_pages(self, repo: JobRepository) -> None:
        tenant = random_id("tenant")
        ids = []
        for _ in range(5):
            job = make_job(tenant=tenant)
            await repo.create(job)
            ids.append(job.job_id)
            await asyncio.sleep(0.002)
        await repo.transition(ids[0], JobState.CANCELLED)
        first = await repo.list_jobs(tenant, limit=3)
        assert [j.job_id for j in first.jobs] == ids[::-1][:3]
        assert first.next_cursor is not None
        second = await repo.list_jobs(tenant, limit=3, cursor=first.next_cursor)
        assert [j.job_id for j in second.jobs] == ids[::-1][3:]
        assert second.next_cursor is None
        cancelled = await repo.list_jobs(tenant, state=JobState.CANCELLED)
        assert [j.job_id for j in cancelled.jobs] == [ids[0]]

    async def test_finds_stale_jobs_by_state_and_age(self, repo: JobRepository) -> None:
        job = make_job()
        await repo.create(job)
        await repo.transition(job.job_id, JobState.QUEUED)
        stale = await repo.find_stale([JobState.QUEUED], now() + timedelta(seconds=1))
        assert job.job_id in {j.job_id for j in stale}
        fresh = await repo.find_stale([JobState.QUEUED], now() - timedelta(hours=1))
        assert job.job_id not in {j.job_id for j in fresh}

    async def test_provider_queue_is_oldest_first_and_respects_not_before(
        self, repo: JobRepository
    ) -> None:
        provider = random_id("prov")
        base = now()
        ids = []
        for i in range(3):
            job = make_job()
            await repo.create(job)
            await repo.transition(
                job.job_id,
                JobState.QUEUED,
                {"active_provider": provider, "queued_at": base + timedelta(seconds=i)},
            )
            ids.append(job.job_id)
        await repo.update(ids[0], {"not_before": base + timedelta(hours=1)})
        queued = await repo.next_queued(provider, 10, at=base + timedelta(seconds=5))
        assert [j.job_id for j in queued] == ids[1:]
        assert await repo.count_queued_before(provider, base + timedelta(seconds=2)) == 2
        assert await repo.next_queued("other", 10, at=base) == []
        everyone = await repo.next_queued(None, 1000, at=base + timedelta(seconds=5))
        assert [j.job_id for j in everyone if j.job_id in ids] == ids[1:]

    async def test_inflight_slots_count_candidates_of_submitting_and_running_jobs(
        self, repo: JobRepository
    ) -> None:
        provider = random_id("prov")
        for state, candidates in ((JobState.SUBMITTING, 2), (JobState.QUEUED, 5)):
            request = JobRequest(prompt="x", candidates=candidates)
            job = Job(job_id=new_job_id(), tenant_id="t", request=request)
            await repo.create(job)
            await repo.update(job.job_id, {"state": state, "active_provider": provider})
        assert (await repo.inflight_slots()).get(provider) == 2

    async def test_counts_jobs_by_state_in_one_read(self, repo: JobRepository) -> None:
        before = await repo.count_by_state([JobState.ACCEPTED, JobState.CANCELLED])
        job = make_job()
        await repo.create(job)
        await repo.create(make_job())
        await repo.transition(job.job_id, JobState.CANCELLED)
        after = await repo.count_by_state([JobState.ACCEPTED, JobState.CANCELLED])
        assert after[JobState.ACCEPTED] - before[JobState.ACCEPTED] == 1
        assert after[JobState.CANCELLED] - before[JobState.CANCELLED] == 1


class TestFakeJobRepository(JobRepositoryContract):
    @pytest.fixture
    def repo(self) -> JobRepository:
        return FakeJobRepository()


@pytest.mark.integration
class TestMongoJobRepository(JobRepositoryContract):
    @pytest.fixture
    def repo(self, mongo_repo: JobRepository) -> JobRepository:
        return mongo_repo
