"""One behaviour suite for the JobRepository port, run on the fake and on the real server."""

from __future__ import annotations

import asyncio
import math
from datetime import timedelta
from typing import Any

import pytest

from shared import attempts
from shared.errors import ConfigurationError
from shared.events import JobCancelled, JobUpdated
from shared.jobs import Attempt, AttemptState, Job, JobRequest, JobState, new_job_id, now
from shared.mongo_outbox import MongoOutboxRelay
from shared.mongo_repository import MongoJobRepository, check_atomic_server, ferretdb_version
from shared.outbox import OutboxEvent, stable_event_id
from shared.pg import connect_pool, migrate
from shared.pg_migrations import MIGRATIONS
from shared.pg_repository import PgJobRepository
from shared.providers.base import TaskRef
from shared.repository import JobRepository
from shared.settings import InfraSettings
from shared.topics import Topic
from tests.conftest import random_id
from tests.fakes import FakeJobRepository
from tests.pg_fixtures import throwaway_database

CLAIMERS = 8


def make_job(tenant: str = "t1", key: str | None = None, prompt: str = "a cat") -> Job:
    request = JobRequest(prompt=prompt)
    return Job(
        job_id=new_job_id(),
        tenant_id=tenant,
        request=request,
        idempotency_key=key,
        fingerprint=request.fingerprint(),
    )


def cancelled_event(job: Job) -> list[tuple[str, JobCancelled]]:
    event_id = stable_event_id(job.job_id, None, "reelforge.job.cancelled")
    return [(Topic.JOBS_FINISHED, JobCancelled(id=event_id, subject=job.job_id, tenant_id="t"))]


class JobRepositoryContract:
    # Stores whose claim_queued serializes replicas (row locks); the others claim job by job.
    strict_claims = True

    @pytest.fixture
    def repo(self) -> JobRepository:
        raise NotImplementedError

    async def pending_event_ids(self, repo: JobRepository, job_id: str) -> list[str]:
        raise NotImplementedError

    async def test_concurrent_claimers_of_one_job_have_exactly_one_winner(
        self, repo: JobRepository
    ) -> None:
        for _ in range(5):
            job = make_job()
            await repo.create(job)
            await repo.transition(job.job_id, JobState.QUEUED)
            results = await asyncio.gather(
                *(
                    repo.transition(job.job_id, JobState.SUBMITTING, expected=[JobState.QUEUED])
                    for _ in range(CLAIMERS)
                )
            )
            assert sum(r is not None for r in results) == 1

    async def test_concurrent_updates_of_different_fields_lose_nothing(
        self, repo: JobRepository
    ) -> None:
        job = make_job()
        await repo.create(job)
        await asyncio.gather(
            *(
                repo.update(
                    job.job_id,
                    {f"attempts.a{k}": Attempt(attempt_id=f"a{k}", provider="p", model="m")},
                )
                for k in range(CLAIMERS)
            )
        )
        loaded = await repo.get(job.job_id)
        assert loaded is not None
        assert sorted(loaded.attempts) == sorted(f"a{k}" for k in range(CLAIMERS))
        assert loaded.version == CLAIMERS

    async def test_increments_are_atomic(self, repo: JobRepository) -> None:
        job = make_job()
        await repo.create(job)
        await asyncio.gather(
            *(repo.update(job.job_id, {}, inc={"spent_usd": 0.25}) for _ in range(CLAIMERS))
        )
        loaded = await repo.get(job.job_id)
        assert loaded is not None and loaded.spent_usd == pytest.approx(0.25 * CLAIMERS)

    async def test_a_grant_on_a_stale_version_is_refused_and_adds_nothing(
        self, repo: JobRepository
    ) -> None:
        job = make_job()
        await repo.create(job)
        grants = await asyncio.gather(
            *(
                repo.update(job.job_id, {}, expected_version=0, inc={"reserved_usd": 2.5})
                for _ in range(CLAIMERS)
            )
        )
        assert sum(g is not None for g in grants) == 1
        loaded = await repo.get(job.job_id)
        assert loaded is not None and loaded.reserved_usd == pytest.approx(2.5)

    @pytest.mark.parametrize("closer_first", [True, False])
    async def test_a_found_task_and_an_unknown_close_of_one_attempt_charge_it_once(
        self, repo: JobRepository, closer_first: bool
    ) -> None:
        job = make_job()
        pending = Attempt(attempt_id="a1", provider="kling", model="kling-v2-6")
        job = job.model_copy(update={"attempts": {"a1": pending}})
        await repo.create(job)
        ref = TaskRef(provider="kling", model="kling-v2-6", task_id=random_id("task"))
        at = now()
        event = attempts.submitted_event(
            job, "test", "a1", ref, deadline_at=at, expected_render_s=1.0, at=at
        )
        record = attempts.record_task(repo, job, "a1", ref, 0.75, event, at)
        close = attempts.close_unknown(repo, job, "a1", 0.75, "answer lost", at)
        first, second = (close, record) if closer_first else (record, close)
        await first
        await second
        loaded = await repo.get(job.job_id)
        assert loaded is not None
        assert loaded.spent_usd == pytest.approx(0.75)  # charged once, whoever came first
        assert loaded.attempts["a1"].state is AttemptState.SUBMITTED  # the found task wins
        assert loaded.attempts["a1"].task == ref
        assert (await repo.find_by_task("kling", ref.task_id)) is not None

    async def test_a_transition_that_happened_stores_its_events_and_one_that_did_not_none(
        self, repo: JobRepository
    ) -> None:
        job = make_job()
        await repo.create(job)
        moved = await repo.transition(job.job_id, JobState.CANCELLED, announce=cancelled_event)
        assert moved is not None
        again = await repo.transition(job.job_id, JobState.CANCELLED, announce=cancelled_event)
        assert again is None
        expected_id = stable_event_id(job.job_id, None, "reelforge.job.cancelled")
        assert await self.pending_event_ids(repo, job.job_id) == [expected_id]

    async def test_the_events_see_the_job_after_the_change(self, repo: JobRepository) -> None:
        job = make_job()
        seen: list[Job] = []

        def progress(after: Job) -> list[tuple[str, JobUpdated]]:
            seen.append(after)
            update = JobUpdated(
                id=stable_event_id(after.job_id, None, "u", after.version),
                subject=after.job_id,
                tenant_id=after.tenant_id,
                state=after.state,
                progress=after.progress,
            )
            return [(Topic.JOB_UPDATES, update)]

        await repo.create(job, announce=progress)
        await repo.update(job.job_id, {"progress": 0.5}, announce=progress)
        assert [(j.version, j.progress) for j in seen] == [(0, 0.0), (1, 0.5)]
        assert len(await self.pending_event_ids(repo, job.job_id)) == 2

    async def test_a_replayed_create_stores_no_second_announcement(
        self, repo: JobRepository
    ) -> None:
        key = random_id("idem")
        first = make_job(key=key)
        await repo.create(first, announce=cancelled_event)
        second = await repo.create(make_job(key=key), announce=cancelled_event)
        assert not second.created
        assert len(await self.pending_event_ids(repo, first.job_id)) == 1

    async def test_concurrent_admission_never_exceeds_a_providers_slots(
        self, repo: JobRepository
    ) -> None:
        if not self.strict_claims:
            pytest.skip("this store claims job by job; replicas may overshoot a limit")
        provider = random_id("prov")
        base = now()
        for i in range(10):
            request = JobRequest(prompt="x", candidates=2 if i == 0 else 1)
            job = Job(job_id=new_job_id(), tenant_id="t", request=request)
            await repo.create(job)
            await repo.transition(
                job.job_id,
                JobState.QUEUED,
                {"active_provider": provider, "queued_at": base + timedelta(seconds=i)},
            )
        rounds = await asyncio.gather(
            *(repo.claim_queued({provider: 3}, 50, base + timedelta(minutes=1)) for _ in range(4))
        )
        claimed = [j for r in rounds for j in r]
        assert len({j.job_id for j in claimed}) == len(claimed)
        assert sum(j.request.candidates for j in claimed) == 3  # 2 + 1: the oldest first
        assert (await repo.inflight_slots()).get(provider) == 3
        # A slot frees when a job leaves submitting/running: the next job is admitted.
        single = next(j for j in claimed if j.request.candidates == 1)
        await repo.transition(single.job_id, JobState.CANCELLED)
        more = await repo.claim_queued({provider: 3}, 50, base + timedelta(minutes=1))
        assert len(more) == 1

    async def test_an_idle_provider_admits_one_job_larger_than_its_limit(
        self, repo: JobRepository
    ) -> None:
        provider = random_id("prov")
        request = JobRequest(prompt="x", candidates=4)
        job = Job(job_id=new_job_id(), tenant_id="t", request=request)
        await repo.create(job)
        await repo.transition(
            job.job_id, JobState.QUEUED, {"active_provider": provider, "queued_at": now()}
        )
        claimed = await repo.claim_queued({provider: 2}, 10, now() + timedelta(seconds=1))
        assert [j.job_id for j in claimed] == [job.job_id]

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

    async def test_non_finite_scores_round_trip(self, repo: JobRepository) -> None:
        job = make_job()
        await repo.create(job)
        attempt = Attempt(attempt_id="a1", provider="p", model="m", qc={"audio_db": -math.inf})
        await repo.update(job.job_id, {"attempts.a1": attempt})
        loaded = await repo.get(job.job_id)
        assert loaded is not None and loaded.attempts["a1"].qc is not None
        assert float(loaded.attempts["a1"].qc["audio_db"]) == -math.inf

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

    async def test_a_job_storing_or_scoring_still_holds_its_slots(
        self, repo: JobRepository
    ) -> None:
        """A multi-candidate job moves to storing with its first stored candidate, while the
        others still render: its slots stay taken until it leaves storing and scoring."""
        provider = random_id("prov")
        for state in (JobState.STORING, JobState.SCORING):
            request = JobRequest(prompt="x", candidates=2)
            job = Job(job_id=new_job_id(), tenant_id="t", request=request)
            await repo.create(job)
            await repo.update(job.job_id, {"state": JobState.RUNNING, "active_provider": provider})
            await repo.update(job.job_id, {"state": state})
        assert (await repo.inflight_slots()).get(provider) == 4
        queued = Job(job_id=new_job_id(), tenant_id="t", request=JobRequest(prompt="x"))
        await repo.create(queued)
        await repo.transition(
            queued.job_id, JobState.QUEUED, {"active_provider": provider, "queued_at": now()}
        )
        assert await repo.claim_queued({provider: 4}, 10, now() + timedelta(seconds=1)) == []

    async def test_counts_jobs_by_state_in_one_read(self, repo: JobRepository) -> None:
        before = await repo.count_by_state([JobState.ACCEPTED, JobState.CANCELLED])
        job = make_job()
        await repo.create(job)
        await repo.create(make_job())
        await repo.transition(job.job_id, JobState.CANCELLED)
        after = await repo.count_by_state([JobState.ACCEPTED, JobState.CANCELLED])
        assert after[JobState.ACCEPTED] - before[JobState.ACCEPTED] == 1
        assert after[JobState.CANCELLED] - before[JobState.CANCELLED] == 1

    async def test_counts_a_tenants_active_jobs_up_to_a_limit(self, repo: JobRepository) -> None:
        tenant = random_id("tenant")
        jobs = [make_job(tenant=tenant) for _ in range(3)]
        for job in jobs:
            await repo.create(job)
        await repo.create(make_job(tenant=random_id("other")))
        await repo.transition(jobs[0].job_id, JobState.CANCELLED)
        assert await repo.count_active(tenant, limit=10) == 2
        assert await repo.count_active(tenant, limit=1) == 1


class TestFakeJobRepository(JobRepositoryContract):
    @pytest.fixture
    def repo(self) -> JobRepository:
        return FakeJobRepository()

    async def pending_event_ids(self, repo: JobRepository, job_id: str) -> list[str]:
        assert isinstance(repo, FakeJobRepository)
        return [e.id for e in repo.announced() if e.subject == job_id]


@pytest.mark.integration
class TestPgJobRepository(JobRepositoryContract):
    @pytest.fixture
    def repo(self, pg_repo: JobRepository) -> JobRepository:
        return pg_repo

    async def pending_event_ids(self, repo: JobRepository, job_id: str) -> list[str]:
        assert isinstance(repo, PgJobRepository)
        rows = await repo.pool.fetch(
            "SELECT event_id FROM outbox WHERE key = $1 ORDER BY id", job_id
        )
        return [r["event_id"] for r in rows]


FERRETDB_NOT_ATOMIC = "FerretDB v1 is not atomic: FerretDB#3040"
# What the local FerretDB cannot show; all of it runs on a real MongoDB.
FERRETDB_SKIPS = {
    # These prove single-document atomicity under concurrency.
    "test_concurrent_claimers_of_one_job_have_exactly_one_winner": FERRETDB_NOT_ATOMIC,
    "test_concurrent_updates_of_different_fields_lose_nothing": FERRETDB_NOT_ATOMIC,
    "test_increments_are_atomic": FERRETDB_NOT_ATOMIC,
    "test_concurrent_announced_updates_each_store_their_events": FERRETDB_NOT_ATOMIC,
    # Concurrent compare-and-set on `version`: FerretDB lets two stale writers win (seen in CI).
    "test_a_grant_on_a_stale_version_is_refused_and_adds_nothing": FERRETDB_NOT_ATOMIC,
    "test_non_finite_scores_round_trip": "FerretDB v1 rejects infinite doubles (BSON and MongoDB"
    " store them)",
}


async def server_ferretdb_version(repo: JobRepository) -> str | None:
    assert isinstance(repo, MongoJobRepository)
    info = await repo.collection.database.client.admin.command("buildInfo")
    return ferretdb_version(info)


@pytest.mark.integration
class TestMongoJobRepository(JobRepositoryContract):
    strict_claims = False  # claim_one_by_one: replicas may together overshoot a limit

    @pytest.fixture
    async def repo(
        self, mongo_repo: JobRepository, request: pytest.FixtureRequest
    ) -> JobRepository:
        name = getattr(request.node, "originalname", request.node.name)
        if name in FERRETDB_SKIPS and await server_ferretdb_version(mongo_repo):
            pytest.skip(FERRETDB_SKIPS[name])
        return mongo_repo

    async def pending_event_ids(self, repo: JobRepository, job_id: str) -> list[str]:
        assert isinstance(repo, MongoJobRepository)
        doc = await repo.collection.find_one({"_id": job_id}, projection={"outbox": 1})
        assert doc is not None
        return [e["event_id"] for e in doc.get("outbox", [])]

    async def test_concurrent_announced_updates_each_store_their_events(
        self, repo: JobRepository
    ) -> None:
        job = make_job()
        await repo.create(job)
        results = await asyncio.gather(
            *(
                repo.update(job.job_id, {}, inc={"spent_usd": 0.25}, announce=progress_event)
                for _ in range(CLAIMERS)
            )
        )
        assert sorted(r.version for r in results if r is not None) == list(range(1, CLAIMERS + 1))
        expected = [stable_event_id(job.job_id, None, "u", v) for v in range(1, CLAIMERS + 1)]
        assert sorted(await self.pending_event_ids(repo, job.job_id)) == sorted(expected)
        loaded = await repo.get(job.job_id)
        assert loaded is not None and loaded.spent_usd == pytest.approx(0.25 * CLAIMERS)

    async def test_an_announced_update_whose_condition_fails_stores_nothing(
        self, repo: JobRepository
    ) -> None:
        job = make_job()
        await repo.create(job)
        stale = await repo.update(
            job.job_id, {"progress": 0.5}, expected_version=7, announce=progress_event
        )
        assert stale is None
        wrong_state = await repo.update(
            job.job_id,
            {"progress": 0.5},
            expected_states=[JobState.RUNNING],
            announce=progress_event,
        )
        assert wrong_state is None
        assert await self.pending_event_ids(repo, job.job_id) == []
        moved = await repo.update(
            job.job_id,
            {"attempts.a1": Attempt(attempt_id="a1", provider="p", model="m")},
            expected_version=0,
            index_task=("p", "task-1"),
            inc={"spent_usd": 0.5},
            announce=progress_event,
        )
        assert moved is not None and moved.version == 1 and moved.spent_usd == 0.5
        assert "a1" in moved.attempts
        assert (await repo.find_by_task("p", "task-1")) is not None
        assert await self.pending_event_ids(repo, job.job_id) == [
            stable_event_id(job.job_id, None, "u", 1)
        ]

    async def test_the_relay_publishes_in_order_and_keeps_events_pushed_meanwhile(
        self, repo: JobRepository
    ) -> None:
        assert isinstance(repo, MongoJobRepository)
        job = make_job()
        await repo.create(job, announce=progress_event)
        await repo.update(job.job_id, {"progress": 0.5}, announce=progress_event)
        sent: list[OutboxEvent] = []

        async def send(event: OutboxEvent) -> None:
            if not sent:  # a write lands while the relay publishes
                await repo.update(job.job_id, {"progress": 0.9}, announce=progress_event)
            sent.append(event)

        relay = MongoOutboxRelay(repo.collection, send, batch=10)
        assert await relay.publish_once() == 2
        ids = [stable_event_id(job.job_id, None, "u", v) for v in range(3)]
        assert [e.event_id for e in sent] == ids[:2]
        assert {e.key for e in sent} == {job.job_id}
        assert all(e.topic == str(Topic.JOB_UPDATES) for e in sent)
        assert JobUpdated.model_validate_json(sent[1].payload).progress == 0.5
        assert await self.pending_event_ids(repo, job.job_id) == ids[2:]
        assert await relay.publish_once() == 1
        assert [e.event_id for e in sent] == ids
        doc = await repo.collection.find_one({"_id": job.job_id})
        assert doc is not None and "has_outbox" not in doc and not doc.get("outbox")
        assert await relay.publish_once() == 0
        loaded = await repo.get(job.job_id)
        assert loaded is not None and loaded.progress == 0.9

    async def test_relays_working_together_publish_everything(self, repo: JobRepository) -> None:
        assert isinstance(repo, MongoJobRepository)
        jobs = [make_job() for _ in range(6)]
        for job in jobs:
            await repo.create(job, announce=progress_event)
        sent: list[str] = []

        async def send(event: OutboxEvent) -> None:
            sent.append(event.event_id)

        relays = [MongoOutboxRelay(repo.collection, send, batch=4) for _ in range(2)]
        for _ in range(50):  # rounds of both relays at once, until nothing is pending
            published = await asyncio.gather(*(r.publish_once() for r in relays))
            pending = await repo.collection.count_documents({"has_outbox": True})
            if sum(published) == 0 and pending == 0:
                break
        expected = {stable_event_id(j.job_id, None, "u", 0) for j in jobs}
        assert set(sent) == expected  # duplicates allowed: they carry the same ids
        assert await repo.collection.count_documents({"has_outbox": True}) == 0

    async def test_a_running_relay_publishes_what_is_announced(self, repo: JobRepository) -> None:
        assert isinstance(repo, MongoJobRepository)
        sent: list[str] = []

        async def send(event: OutboxEvent) -> None:
            sent.append(event.event_id)

        relay = MongoOutboxRelay(repo.collection, send, interval_s=0.01)
        task = asyncio.create_task(relay.run())
        try:
            job = make_job()
            await repo.create(job)
            await repo.update(job.job_id, {"progress": 0.3}, announce=progress_event)
            expected = [stable_event_id(job.job_id, None, "u", 1)]
            for _ in range(500):
                if sent == expected and not await self.pending_event_ids(repo, job.job_id):
                    break
                await asyncio.sleep(0.01)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert sent == expected
        assert await self.pending_event_ids(repo, job.job_id) == []

    async def test_the_server_check_matches_the_server(self, repo: JobRepository) -> None:
        assert isinstance(repo, MongoJobRepository)
        client = repo.collection.database.client
        if await server_ferretdb_version(repo):
            with pytest.raises(
                ConfigurationError, match="JOB_STORE_URI: FerretDB v1 is not atomic"
            ):
                await check_atomic_server(client, allow_non_atomic=False)
        else:
            await check_atomic_server(client, allow_non_atomic=False)
        await check_atomic_server(client, allow_non_atomic=True)


def progress_event(after: Job) -> list[tuple[str, JobUpdated]]:
    update = JobUpdated(
        id=stable_event_id(after.job_id, None, "u", after.version),
        subject=after.job_id,
        tenant_id=after.tenant_id,
        state=after.state,
        progress=after.progress,
    )
    return [(Topic.JOB_UPDATES, update)]


MONGODB_BUILD_INFO: dict[str, object] = {"version": "7.0.14", "versionArray": [7, 0, 14, 0]}
# As FerretDB v1.24.2 answers (abridged).
FERRETDB_V1_BUILD_INFO: dict[str, object] = {
    "version": "7.0.42",
    "ferretdbVersion": "v1.24.2",
    "ferretdbFeatures": {"aggregationStages": ["$match", "$group"]},
}
FERRETDB_V2_BUILD_INFO: dict[str, object] = {"version": "7.0.77", "ferretdb": {"version": "v2.1.0"}}


class TestCheckAtomicServer:
    """The decision of `check_atomic_server`, on `buildInfo` replies (no server)."""

    async def test_mongodb_is_accepted(self) -> None:
        await check_atomic_server(fake_client(MONGODB_BUILD_INFO), allow_non_atomic=False)

    async def test_ferretdb_v1_is_refused_in_one_line_naming_the_setting(self) -> None:
        with pytest.raises(ConfigurationError) as raised:
            await check_atomic_server(fake_client(FERRETDB_V1_BUILD_INFO), allow_non_atomic=False)
        assert raised.value.setting == "JOB_STORE_URI"
        message = str(raised.value)
        assert "\n" not in message
        assert (
            "FerretDB v1 is not atomic: it does not make single-document updates atomic" in message
        )
        assert "ALLOW_NON_ATOMIC_STORE=1" in message

    async def test_ferretdb_is_allowed_when_explicitly_asked(self) -> None:
        await check_atomic_server(fake_client(FERRETDB_V1_BUILD_INFO), allow_non_atomic=True)

    async def test_other_ferretdb_versions_are_refused_too(self) -> None:
        assert ferretdb_version(FERRETDB_V2_BUILD_INFO) == "v2.1.0"
        assert ferretdb_version(FERRETDB_V1_BUILD_INFO) == "v1.24.2"
        assert ferretdb_version(MONGODB_BUILD_INFO) is None
        with pytest.raises(ConfigurationError, match=r"FerretDB v2\.1\.0"):
            await check_atomic_server(fake_client(FERRETDB_V2_BUILD_INFO), allow_non_atomic=False)


def fake_client(reply: dict[str, object]) -> Any:
    """Just enough of AsyncMongoClient: `await client.admin.command("buildInfo")`."""

    class Admin:
        async def command(self, name: str) -> dict[str, object]:
            assert name == "buildInfo"
            return {**reply, "ok": 1.0}

    class Client:
        admin = Admin()

    return Client()


@pytest.mark.integration
async def test_migrations_apply_once_in_order_even_from_replicas_starting_together(
    infra: InfraSettings,
) -> None:
    uri, drop = await throwaway_database(infra.job_store_uri)
    try:
        pools = [await connect_pool(uri, min_size=1, max_size=1) for _ in range(3)]
        try:
            applied = await asyncio.gather(*(migrate(p) for p in pools))
            assert sorted(applied, key=len)[-1] == [m.version for m in MIGRATIONS]
            assert sorted(len(a) for a in applied) == [0, 0, len(MIGRATIONS)]
            assert await migrate(pools[0]) == []
        finally:
            for p in pools:
                await p.close()
    finally:
        await drop()
