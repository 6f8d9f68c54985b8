"""The dispatcher's handlers on the fakes (FakeJobRepository, FakeVideoProvider at the edge):
assertions on the job record, on what the provider created (what it bills) and on the outbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from services.dispatcher.handlers import DispatcherDeps, admit, on_job_accepted, on_task_failed
from services.dispatcher.settings import DispatcherSettings
from shared.events import JobAccepted, JobFailed, TaskFailed, TaskSubmitted, event_about
from shared.jobs import Attempt, AttemptState, Job, JobRequest, JobState, ModelChoice
from shared.metrics import ServiceMetrics
from shared.providers.base import Failure, TaskRef
from shared.providers.catalog import find_model
from shared.providers.errors import FailureClass, ProviderRejected
from shared.routing import price
from shared.topics import Topic, provider_topic
from tests.fakes import CrashAfterCreate, FakeJobRepository, FakeVideoProvider

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
KLING = ModelChoice(provider="kling", model="kling-v2-6")
RUNWAY = ModelChoice(provider="runway", model="gen4.5")


class Clock:
    def __init__(self) -> None:
        self.at = T0

    def __call__(self) -> datetime:
        return self.at


def cost_on(choice: ModelChoice, request: JobRequest) -> float:
    spec = find_model(choice.provider, choice.model or "")
    assert spec is not None
    return price(request, spec)


def queued_job(
    *route: ModelChoice, budget: float | None = None, deadline: timedelta = timedelta(hours=1)
) -> Job:
    request = JobRequest(prompt="a paper boat", duration_s=5, budget_usd=budget)
    return Job(
        job_id=f"job_{route[0].provider}",
        tenant_id="t",
        request=request,
        state=JobState.QUEUED,
        route=route,
        active_provider=route[0].provider,
        queued_at=T0 - timedelta(seconds=1),
        deadline_at=T0 + deadline,
    )


def make_deps(
    repo: FakeJobRepository, *providers: FakeVideoProvider, clock: Clock | None = None
) -> tuple[DispatcherDeps, CollectorRegistry]:
    registry = CollectorRegistry()
    deps = DispatcherDeps(
        settings=DispatcherSettings(submit_retries=2),
        repo=repo,
        broker=None,  # type: ignore[arg-type]  # the handlers publish through the outbox
        metrics=ServiceMetrics(registry, "dispatcher"),
        providers={p.name: p for p in providers},
        limits={p.name: 5 for p in providers},
        clock=clock or Clock(),
    )
    return deps, registry


async def stored(repo: FakeJobRepository, job_id: str) -> Job:
    job = await repo.get(job_id)
    assert job is not None
    return job


async def test_an_accepted_job_is_queued_for_its_first_route_entry() -> None:
    repo = FakeJobRepository()
    job = queued_job(KLING).model_copy(update={"state": JobState.ACCEPTED, "queued_at": None})
    await repo.create(job)
    deps, _ = make_deps(repo, FakeVideoProvider())

    await on_job_accepted(deps, event_about(JobAccepted, job, "intake"))
    await on_job_accepted(deps, event_about(JobAccepted, job, "intake"))  # redelivered

    after = await stored(repo, job.job_id)
    assert after.state is JobState.QUEUED
    assert after.active_provider == "kling"
    assert after.version == 1  # the replay changed nothing


async def test_a_submitted_task_is_recorded_with_its_price_and_its_poller_event() -> None:
    repo = FakeJobRepository()
    job = queued_job(KLING)
    await repo.create(job)
    kling = FakeVideoProvider()
    deps, _ = make_deps(repo, kling)

    assert await admit(deps) == 1

    after = await stored(repo, job.job_id)
    assert after.state is JobState.RUNNING
    attempt = after.attempts["c0-0"]
    assert attempt.state is AttemptState.SUBMITTED
    assert attempt.task is not None and attempt.task.task_id == "task-1"
    assert after.spent_usd == pytest.approx(cost_on(KLING, job.request))
    submitted = repo.announced(provider_topic("kling"))
    assert [e.task.task_id for e in submitted if isinstance(e, TaskSubmitted)] == ["task-1"]


async def test_a_create_whose_answer_is_lost_is_found_by_our_id_and_paid_once() -> None:
    repo = FakeJobRepository()
    job = queued_job(KLING)
    await repo.create(job)
    kling = FakeVideoProvider(lose_answers=1)
    deps, _ = make_deps(repo, kling)

    await admit(deps)

    assert [task for task, _ in kling.created] == ["task-1"]  # exactly one paid task
    after = await stored(repo, job.job_id)
    assert after.state is JobState.RUNNING
    assert after.attempts["c0-0"].task is not None
    assert after.attempts["c0-0"].task.task_id == "task-1"
    assert after.spent_usd == pytest.approx(cost_on(KLING, job.request))
    submitted = repo.announced(provider_topic("kling"))
    assert len(submitted) == 1 and isinstance(submitted[0], TaskSubmitted)


async def test_a_lost_answer_without_a_handle_is_charged_shown_and_never_resent() -> None:
    repo = FakeJobRepository()
    request_price = cost_on(RUNWAY, queued_job(RUNWAY).request)
    job = queued_job(RUNWAY, budget=request_price * 1.5)  # room for one paid task only
    await repo.create(job)
    runway = FakeVideoProvider("runway", findable=False, lose_answers=1)
    deps, registry = make_deps(repo, runway)

    await admit(deps)

    assert len(runway.created) == 1  # the create was not sent again blind
    after = await stored(repo, job.job_id)
    orphan = after.attempts["c0-0"]
    assert orphan.state is AttemptState.UNKNOWN
    assert orphan.failure is not None and "possibly billed" in orphan.failure.message
    assert orphan.cost_usd == pytest.approx(request_price)
    assert after.spent_usd == pytest.approx(request_price)  # charged against the budget
    assert registry.get_sample_value(
        "reelforge_unknown_creates_total", {"provider": "runway"}
    ) == pytest.approx(1.0)
    # No second paid task fits in the budget: the job fails rather than overspend.
    assert after.state is JobState.FAILED
    assert after.spent_usd <= (job.request.budget_usd or 0.0)


async def test_a_lost_answer_without_a_handle_is_retried_as_a_new_attempt_within_budget() -> None:
    repo = FakeJobRepository()
    job = queued_job(RUNWAY)
    await repo.create(job)
    runway = FakeVideoProvider("runway", findable=False, lose_answers=1)
    deps, _ = make_deps(repo, runway)

    await admit(deps)  # c0-0 closed as unknown, the job requeued for a retry
    assert (await stored(repo, job.job_id)).state is JobState.QUEUED
    await admit(deps)  # c0-1

    after = await stored(repo, job.job_id)
    assert after.attempts["c0-0"].state is AttemptState.UNKNOWN
    assert after.attempts["c0-1"].state is AttemptState.SUBMITTED
    assert len(runway.created) == 2  # both paid, both on the record
    assert after.spent_usd == pytest.approx(2 * cost_on(RUNWAY, job.request))


async def test_a_crash_between_the_create_and_its_record_does_not_create_a_second_task() -> None:
    repo = FakeJobRepository()
    job = queued_job(KLING)
    await repo.create(job)
    kling = FakeVideoProvider(crash_after_create=1)
    deps, _ = make_deps(repo, kling)

    with pytest.raises(CrashAfterCreate):
        await admit(deps)
    stuck = await stored(repo, job.job_id)
    assert stuck.state is JobState.SUBMITTING
    assert stuck.attempts["c0-0"].task is None
    # What the reconciler does with a job stuck submitting; admission then re-claims it.
    await repo.transition(job.job_id, JobState.QUEUED, expected=[JobState.SUBMITTING])
    await admit(deps)

    assert [task for task, _ in kling.created] == ["task-1"]
    after = await stored(repo, job.job_id)
    assert after.state is JobState.RUNNING
    assert after.attempts["c0-0"].task is not None
    assert after.attempts["c0-0"].task.task_id == "task-1"
    assert after.spent_usd == pytest.approx(cost_on(KLING, job.request))


async def test_a_crash_before_the_record_without_a_handle_charges_the_orphan_once() -> None:
    repo = FakeJobRepository()
    request_price = cost_on(RUNWAY, queued_job(RUNWAY).request)
    job = queued_job(RUNWAY, budget=request_price * 1.5)
    await repo.create(job)
    runway = FakeVideoProvider("runway", findable=False, crash_after_create=1)
    deps, _ = make_deps(repo, runway)

    with pytest.raises(CrashAfterCreate):
        await admit(deps)
    await repo.transition(job.job_id, JobState.QUEUED, expected=[JobState.SUBMITTING])
    await admit(deps)

    assert len(runway.created) == 1  # not sent again
    after = await stored(repo, job.job_id)
    assert after.attempts["c0-0"].state is AttemptState.UNKNOWN
    assert after.spent_usd == pytest.approx(request_price)
    assert after.state is JobState.FAILED  # a second task would break the budget


async def test_admission_fails_a_job_past_its_deadline_without_submitting_it() -> None:
    repo = FakeJobRepository()
    job = queued_job(KLING, deadline=timedelta(minutes=5))
    await repo.create(job)
    kling = FakeVideoProvider()
    clock = Clock()
    clock.at = T0 + timedelta(minutes=6)
    deps, _ = make_deps(repo, kling, clock=clock)

    await admit(deps)

    assert kling.created == []
    after = await stored(repo, job.job_id)
    assert after.state is JobState.FAILED
    assert after.failure is not None
    assert after.failure.failure_class is FailureClass.TIMEOUT
    assert "deadline" in after.failure.message and "nothing was submitted" in after.failure.message
    finished = repo.announced(Topic.JOBS_FINISHED)
    assert len(finished) == 1 and isinstance(finished[0], JobFailed)


async def test_a_rejected_create_falls_back_to_the_next_route_entry() -> None:
    repo = FakeJobRepository()
    job = queued_job(KLING, RUNWAY)
    await repo.create(job)
    refused = ProviderRejected(FailureClass.INVALID_INPUT, "kling: bad aspect ratio")
    kling = FakeVideoProvider(reject=refused)
    deps, _ = make_deps(repo, kling, FakeVideoProvider("runway", findable=False))

    await admit(deps)

    after = await stored(repo, job.job_id)
    assert after.attempts["c0-0"].state is AttemptState.FAILED
    assert after.state is JobState.QUEUED
    assert after.route_index == 1 and after.active_provider == "runway"
    assert after.spent_usd == 0.0


async def running_job(repo: FakeJobRepository, state: AttemptState) -> Job:
    job = queued_job(KLING, KLING)
    attempt = Attempt(
        attempt_id="c0-0",
        provider="kling",
        model="kling-v2-6",
        state=state,
        task=TaskRef(provider="kling", model="kling-v2-6", task_id="task-1"),
        cost_usd=cost_on(KLING, job.request),
    )
    job = job.model_copy(
        update={
            "state": JobState.RUNNING,
            "attempts": {"c0-0": attempt},
            "spent_usd": attempt.cost_usd,
        }
    )
    await repo.create(job)
    return job


def task_failed(job: Job, cls: FailureClass) -> TaskFailed:
    failure = Failure(failure_class=cls, message=f"{cls.value} (test)")
    return event_about(TaskFailed, job, "poller-kling", attempt="c0-0", failure=failure)


async def test_a_result_lost_after_a_succeeded_render_stays_billed() -> None:
    repo = FakeJobRepository()
    job = await running_job(repo, AttemptState.SUCCEEDED)
    deps, _ = make_deps(repo, FakeVideoProvider())

    await on_task_failed(deps, task_failed(job, FailureClass.PROVIDER_ERROR))

    after = await stored(repo, job.job_id)
    assert after.attempts["c0-0"].state is AttemptState.FAILED
    assert after.attempts["c0-0"].cost_usd == pytest.approx(job.spent_usd)
    assert after.spent_usd == pytest.approx(job.spent_usd)  # the render was paid


async def test_an_unbilled_failure_is_refunded_once_and_retried() -> None:
    repo = FakeJobRepository()
    job = await running_job(repo, AttemptState.RUNNING)
    deps, _ = make_deps(repo, FakeVideoProvider())
    event = task_failed(job, FailureClass.GENERATION_FAILED)

    await on_task_failed(deps, event)
    await on_task_failed(deps, event)  # redelivered

    after = await stored(repo, job.job_id)
    assert after.spent_usd == 0.0
    assert after.attempts["c0-0"].cost_usd == 0.0
    assert after.state is JobState.QUEUED  # a re-render on the same model


async def test_a_timed_out_task_stays_billed() -> None:
    repo = FakeJobRepository()
    job = await running_job(repo, AttemptState.RUNNING)
    deps, _ = make_deps(repo, FakeVideoProvider())

    await on_task_failed(deps, task_failed(job, FailureClass.TIMEOUT))

    assert (await stored(repo, job.job_id)).spent_usd == pytest.approx(job.spent_usd)
