"""The reconciler's sweep on the real job store: no state starves another (finding 5 of
issue 11). A fresh migrated database per test; events go to faststream's in-memory broker,
so nothing reaches the shared topics other runs consume."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker
from prometheus_client import CollectorRegistry

from services.reconciler.handlers import ReconcilerDeps, sweep
from services.reconciler.settings import ReconcilerSettings
from shared.jobs import Job, JobRequest, JobState, new_job_id, now
from shared.metrics import ServiceMetrics
from shared.pg import connect_pool
from shared.pg_repository import PgJobRepository
from shared.settings import InfraSettings
from tests.pg_fixtures import migrated_database

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
BATCH = 200


@pytest.fixture
async def repo() -> AsyncIterator[PgJobRepository]:
    uri, drop = await migrated_database(InfraSettings().job_store_uri)
    pool = await connect_pool(uri, min_size=1, max_size=4)
    yield PgJobRepository(pool)
    await pool.close()
    await drop()


def stale_job(state: JobState, stale_s: float, **fields: object) -> Job:
    at = now() - timedelta(seconds=stale_s)
    request = JobRequest(prompt="a stale job")
    return Job(
        job_id=new_job_id(),
        tenant_id="t",
        request=request,
        state=state,
        created_at=at,
        updated_at=at,
        **fields,  # type: ignore[arg-type]
    )


async def test_two_hundred_stale_accepted_jobs_do_not_keep_overdue_running_jobs_alive(
    repo: PgJobRepository,
) -> None:
    # the accepted jobs are the oldest, so a single oldest-first read would return only them
    for n in range(BATCH):
        await repo.create(stale_job(JobState.ACCEPTED, stale_s=3600 + n))
    overdue = stale_job(JobState.RUNNING, stale_s=600, deadline_at=now() - timedelta(seconds=1))
    await repo.create(overdue)
    broker = KafkaBroker("127.0.0.1:1")
    async with TestKafkaBroker(broker):
        deps = ReconcilerDeps(
            settings=ReconcilerSettings(batch=BATCH),
            repo=repo,
            broker=broker,
            metrics=ServiceMetrics(CollectorRegistry(), "reconciler"),
        )
        counts = await sweep(deps)
    after = await repo.get(overdue.job_id)
    assert after is not None and after.state is JobState.FAILED
    assert after.failure is not None and "deadline passed" in after.failure.message
    assert counts == {"announce": BATCH, "fail_deadline": 1}


async def test_queued_jobs_waiting_for_a_slot_do_not_fill_the_batch(
    repo: PgJobRepository,
) -> None:
    """Queued jobs are stale for the shortest grace long before their own: they were read,
    skipped, and took every slot of the batch."""
    settings = ReconcilerSettings(batch=BATCH)
    running_stale = settings.tracking_grace_s + 1
    assert running_stale + 10 + BATCH < settings.storing_grace_s  # queued: not stale yet
    for n in range(BATCH):  # older than the running job, stale for the shortest grace only
        await repo.create(stale_job(JobState.QUEUED, stale_s=running_stale + 10 + n))
    deadline = now() - timedelta(seconds=1)
    overdue = stale_job(JobState.RUNNING, stale_s=running_stale, deadline_at=deadline)
    await repo.create(overdue)
    broker = KafkaBroker("127.0.0.1:1")
    async with TestKafkaBroker(broker):
        deps = ReconcilerDeps(settings, repo, broker, ServiceMetrics(CollectorRegistry(), "r"))
        await sweep(deps)
    after = await repo.get(overdue.job_id)
    assert after is not None and after.state is JobState.FAILED
