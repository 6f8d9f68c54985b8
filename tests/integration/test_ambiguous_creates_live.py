"""Finding 1 of issue 11 on real parts: the dispatcher's admission with the real provider
adapters, the provider emulator as a process (its "created, answer lost" fault) and the
PostgreSQL job store. A create whose answer is lost is paid for once, or recorded as unknown
and charged, never sent again blind."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from prometheus_client import CollectorRegistry

from services.dispatcher.handlers import DispatcherDeps, admit
from services.dispatcher.settings import DispatcherSettings
from shared.jobs import AttemptState, Job, JobRequest, JobState, ModelChoice, new_job_id, now
from shared.metrics import ServiceMetrics
from shared.pg_repository import PgJobRepository
from shared.providers.catalog import find_model
from shared.providers.registry import build_provider
from shared.providers.settings import ProviderSettings
from shared.routing import price
from tests.contract.conftest import KLING_ACCESS_KEY, KLING_SECRET_KEY
from tests.contract.conftest import emulator_url as emulator_url  # the session fixture

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def provider_settings(url: str) -> ProviderSettings:
    return ProviderSettings(
        runway_base_url=f"{url}/runway",
        kling_base_url=f"{url}/kling",
        kling_access_key=KLING_ACCESS_KEY,
        kling_secret_key=KLING_SECRET_KEY,
    )


async def task_ids(http: httpx.AsyncClient, url: str, provider: str) -> set[str]:
    answer = await http.get(f"{url}/_emulator/tasks", params={"provider": provider})
    return {str(t["id"]) for t in answer.json()["tasks"]}


async def admitted(
    repo: PgJobRepository, http: httpx.AsyncClient, url: str, choice: ModelChoice
) -> tuple[Job, set[str], float]:
    """Queue one job whose create answer the emulator loses, run one admission round; the
    job as stored after it, the tasks the provider made for it, and one task's price."""
    request = JobRequest(prompt="a kite over the dunes [fail:answer_lost]", duration_s=5)
    spec = find_model(choice.provider, choice.model or "")
    assert spec is not None
    one = price(request, spec)
    request = request.model_copy(update={"budget_usd": one * 1.5})  # one paid task fits
    job = Job(
        job_id=new_job_id(),
        tenant_id="t",
        request=request,
        state=JobState.QUEUED,
        route=(choice,),
        active_provider=choice.provider,
        queued_at=now() - timedelta(seconds=1),
        deadline_at=now() + timedelta(hours=1),
    )
    await repo.create(job)
    before = await task_ids(http, url, choice.provider)
    deps = DispatcherDeps(
        settings=DispatcherSettings(),
        repo=repo,
        broker=None,  # type: ignore[arg-type]  # the handlers publish through the outbox
        metrics=ServiceMetrics(CollectorRegistry(), "dispatcher"),
        providers={choice.provider: build_provider(choice.provider, provider_settings(url), http)},
        limits={choice.provider: 1000},
    )
    await admit(deps)
    after = await repo.get(job.job_id)
    assert after is not None
    return after, await task_ids(http, url, choice.provider) - before, one


async def test_kling_finds_the_task_of_a_lost_answer_by_our_id_and_pays_once(
    pg_repo: PgJobRepository, http: httpx.AsyncClient, emulator_url: str
) -> None:
    job, made, one = await admitted(
        pg_repo, http, emulator_url, ModelChoice(provider="kling", model="kling-v2-6")
    )

    assert len(made) == 1
    attempt = job.attempts["c0-0"]
    assert attempt.state is AttemptState.SUBMITTED
    assert attempt.task is not None and {attempt.task.task_id} == made
    assert job.state is JobState.RUNNING
    assert job.spent_usd == pytest.approx(one)
    assert await pg_repo.find_by_task("kling", attempt.task.task_id) is not None


async def test_runway_records_a_lost_answer_as_unknown_charged_and_never_resends_it(
    pg_repo: PgJobRepository, http: httpx.AsyncClient, emulator_url: str
) -> None:
    job, made, one = await admitted(
        pg_repo, http, emulator_url, ModelChoice(provider="runway", model="gen4.5")
    )

    assert len(made) == 1
    assert job.attempts["c0-0"].state is AttemptState.UNKNOWN
    assert job.spent_usd == pytest.approx(one)
    assert job.state is JobState.FAILED  # a second task would not fit in the budget
    assert job.spent_usd <= (job.request.budget_usd or 0.0)
